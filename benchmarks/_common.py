"""The timer and the compute-bound yardstick shared by the benchmarks in this folder.

Every benchmark that reports "measured / compute bound" divides its FLOPs by the same yardstick, so
the ratios of different benchmarks can be compared with each other. The yardstick is the FLOP/s
of one dense 3x3 convolution, of a fixed shape per device type, in the better of NCHW and
channels_last. Scripts import this module from their own folder: they run as
``python benchmarks/bench_x.py`` from a checkout, without installing anything.

Every script imports this module first (``import _common``, before torch), because importing it
also prepares the process:

* ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise, set before torch loads OpenMP.
  On a machine shared with other busy processes, threads that spin at every barrier get
  descheduled and each small op then waits a scheduler slice (measured: e4e at 64 px 10x slower,
  1024 px inversion 2x, 2-thread pixel metrics 3-4x slower than 1 thread). Sleeping threads avoid
  that; ``OMP_WAIT_POLICY=ACTIVE`` restores spinning (marginally faster on an idle machine).
* the checkout's root on ``sys.path`` when ``egain`` is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if importlib.util.find_spec("egain") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

#: (batch, channels in = out, height = width) of the yardstick convolution per device type. It is
#: big enough to run at the library's best rate, and it fits any machine.
YARDSTICK_SHAPE = {"cpu": (8, 256, 64), "cuda": (32, 512, 64)}


def sync(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work, so that a wall-clock interval covers the kernels it launched."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], object], device: torch.device | str | None = None, reps: int = 3, warmup: int = 1
) -> float:
    """Best wall time in seconds of ``reps`` calls of ``fn``, after ``warmup`` untimed calls.

    We report the best call and not the mean, because on a shared machine load spikes only ever add
    time. The warm-up calls fill weight caches and the allocator.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(max(1, reps)):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def dense_conv_flops_per_s(device: torch.device | str = "cpu", reps: int = 1) -> float:
    """FLOP/s of the yardstick 3x3 convolution, taking the better of NCHW and channels_last.

    Taking the better layout makes the bound what the convolution library can reach at its best,
    whichever layout the measured model happens to use.
    """
    device = torch.device(device)
    n, c, hw = YARDSTICK_SHAPE.get(device.type, YARDSTICK_SHAPE["cpu"])
    x = torch.randn(n, c, hw, hw, device=device)
    w = torch.randn(c, c, 3, 3, device=device)
    flops = 2.0 * n * c * c * 9 * hw * hw
    best = 0.0
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
            t = timed(lambda xf=xf, wf=wf: F.conv2d(xf, wf, padding=1), device, reps)
            best = max(best, flops / t)
    return best

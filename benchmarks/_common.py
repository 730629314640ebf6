"""The timer and the compute-bound yardstick shared by the benchmarks in this folder.

Every benchmark that reports "measured / compute bound" divides its FLOPs by the same yardstick, so
the ratios of different benchmarks can be compared with each other. The yardstick is the FLOP/s
of one dense 3x3 convolution, of a fixed shape per device type, in the better of NCHW and
channels_last. Scripts import this module from their own folder: they run as
``python benchmarks/bench_x.py`` from a checkout, without installing anything.

Set ``OMP_WAIT_POLICY`` before importing this module where a script wants it: importing it loads
torch, and so OpenMP.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

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

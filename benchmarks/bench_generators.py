"""Generator throughput against the dense-convolution compute bound, measured in one run.

For StyleGAN2 and SWAGAN at 64, 256 and 1024 px with the published channel table (rosinality,
channel_multiplier 2) this prints images/s and the ratio

    measured time / compute bound,   compute bound = FLOPs / dense-conv FLOP/s

where FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one synthesis and the dense
FLOP/s is the yardstick 3x3 convolution of ``benchmarks/_common.py`` (shared by every benchmark;
the better of NCHW and channels_last) timed in the same process, so machine load affects both
sides alike. The synthesis runs in the library's default layout (channels_last on CPU);
``--memory-format contiguous channels_last`` times both. A ratio of 1.0 would mean the generator
runs at the speed of its convolutions alone; everything above is FIR filtering, modulation,
noise, activations and memory traffic.

    python benchmarks/bench_generators.py                    # all sizes (a few minutes on CPU)
    python benchmarks/bench_generators.py --sizes 256 --compare-modes
    python benchmarks/bench_generators.py --sizes 1024 --memory-format contiguous channels_last
"""

from __future__ import annotations

import argparse
import os

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch
from torch.utils.flop_counter import FlopCounterMode

from egain.generators import build_generator
from egain.nn.layout import MEMORY_FORMATS

DEFAULT_BATCH = {64: 8, 128: 8, 256: 8, 512: 2, 1024: 1}


def count_flops(arch: str, size: int, batch: int) -> float:
    """Forward FLOPs of one synthesis, counted on a meta-device copy (no real compute)."""
    with torch.device("meta"):
        g = build_generator(arch, size, channel_preset="rosinality", channel_multiplier=2)
        w = torch.zeros(batch, g.style_dim)
    g.set_modconv_mode("shared")
    # FlopCounterMode's module tracker needs autograd on; the forward FLOPs are the same.
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        g.synthesize(w, "const")
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["stylegan2", "swagan"])
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 256, 1024])
    p.add_argument("--batch", type=int, default=None, help="override the per-size default batch")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--compare-modes", action="store_true", help="also time the fused and shared modconv forms"
    )
    p.add_argument(
        "--memory-format",
        nargs="+",
        default=["auto"],
        choices=list(MEMORY_FORMATS),
        help="synthesis layout(s) to time (auto: channels_last on CPU, the library default)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(
        "dense = best 3x3-conv throughput measured right before and after each generator timing; "
        "ratio = median over --reps such pairs [min-max]"
    )
    header = (
        f"{'arch':<10}{'size':>6}{'batch':>6}{'mode':>8}{'layout':>15}{'GFLOP':>9}{'dense GF/s':>11}"
        f"{'s/batch':>9}{'img/s':>8}{'bound s':>9}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for arch in args.archs:
        for size in args.sizes:
            batch = args.batch or DEFAULT_BATCH.get(size, 1)
            flops = count_flops(arch, size, batch)
            g = (
                build_generator(arch, size, channel_preset="rosinality", channel_multiplier=2)
                .to(device)
                .eval()
            )
            w = g.mapping(torch.randn(batch, g.style_dim, device=device)).detach()
            modes = ["auto", "fused", "shared"] if args.compare_modes else ["auto"]
            for mode, layout in [(m, f) for m in modes for f in args.memory_format]:
                g.set_modconv_mode(mode)
                g.set_memory_format(layout)
                with torch.inference_mode():
                    g.synthesize(w, "const")  # warm-up (weight caches, allocator)
                # Interleave: dense yardstick, generator, dense yardstick -- each ratio compares
                # numbers taken seconds apart; the median over repetitions is reported.
                ratios, times, peaks = [], [], []
                for _ in range(args.reps):
                    before = _common.dense_conv_flops_per_s(device)
                    with torch.inference_mode():
                        t = _common.timed(lambda g=g, w=w: g.synthesize(w, "const"), device, 1, warmup=0)
                    peak = max(before, _common.dense_conv_flops_per_s(device))
                    ratios.append(t * peak / flops)
                    times.append(t)
                    peaks.append(peak)
                k = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
                t, peak = times[k], peaks[k]
                print(
                    f"{arch:<10}{size:>6}{batch:>6}{mode:>8}{layout:>15}{flops / 1e9:>9.1f}{peak / 1e9:>11.1f}"
                    f"{t:>9.3f}{batch / t:>8.2f}{flops / peak:>9.3f}{ratios[k]:>7.2f}"
                    f"   [{min(ratios):.2f}-{max(ratios):.2f}]",
                    flush=True,
                )
            del g


if __name__ == "__main__":
    main()

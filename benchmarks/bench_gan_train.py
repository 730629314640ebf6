"""GAN trainer throughput: steps/s of ``egain gan train``, its overhead and its compute bound.

Usage::

    python benchmarks/bench_gan_train.py --size 64 --channel-max 128 --batch 16

For each architecture, all in one run:

1. FLOPs of the bare D step (G forward without grad, D forward+backward on fakes and reals) and G
   step (G and D forward+backward), from ``torch.utils.flop_counter``;
2. the measured time of that bare D+G step (best of 3), and the compute bound = FLOPs /
   dense-convolution throughput (the shared 3x3-conv yardstick of ``benchmarks/_common.py``,
   measured in the same run);
3. the trainer (``train_gan`` on a synthetic folder): mean s/step over one whole lazy-regularisation
   period (16 steps: one R1 pass, four path-length passes), from its own log.

``trainer/bare`` is the cost of everything but the two adversarial passes: lazy R1 and path-length
passes (double backward), augmentation, EMA, data, optimiser, logging. ``bare/bound`` is how far
the generator/discriminator ops are from dense-conv speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import _common  # first: prepares OpenMP and sys.path before torch loads
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from egain.generators import build_discriminator, build_generator
from egain.training.gan import GanTrainConfig, sample_wplus, train_gan


def make_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"{i:04d}.png")


def bare_step(arch: str, cfg: dict, batch: int, repeats: int) -> tuple[float, float]:
    """(best seconds, FLOPs) of one bare D step + G step."""
    G = build_generator(arch, cfg["size"], **{k: v for k, v in cfg.items() if k != "size"})
    D = build_discriminator(arch, cfg["size"], channel_max=cfg["channel_max"])
    real = torch.randn(batch, 3, cfg["size"], cfg["size"])
    cpu = torch.device("cpu")

    def step() -> None:
        with torch.no_grad():
            fake = G.synthesize(sample_wplus(G, batch, 0.9, cpu), noise_mode="random")
        (D(fake).mean() + D(real).mean()).backward()
        fake = G.synthesize(sample_wplus(G, batch, 0.9, cpu), noise_mode="random")
        D(fake).mean().backward()

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up of the timing below
    return _common.timed(step, cpu, repeats, warmup=0), float(counter.get_total_flops())


def trainer_step_seconds(arch: str, cfg: dict, batch: int, data: Path, out: Path) -> float:
    """Mean s/step over steps 1..16 (step 0 warms up): exactly one R1 and four path-length passes."""
    os.environ["EGAIN_NO_PROGRESS"] = "1"
    train_gan(
        GanTrainConfig(
            data=str(data), out=str(out), arch=arch, batch=batch, iters=17, log_every=1,
            ckpt_every=10**9, sample_every=10**9, n_sample=16, **cfg,
        )
    )  # fmt: skip
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return statistics.mean(r["sec_per_step"] for r in recs if "sec_per_step" in r and r["step"] >= 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channel-max", type=int, default=128)
    ap.add_argument("--style-dim", type=int, default=128)
    ap.add_argument("--n-mlp", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--archs", default="stylegan2,swagan")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dict(size=args.size, channel_max=args.channel_max, style_dim=args.style_dim, n_mlp=args.n_mlp)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, config {cfg}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        make_folder(data, 256, args.size)
        conv = _common.dense_conv_flops_per_s("cpu", reps=3)
        print(f"dense 3x3 conv: {conv / 1e9:.1f} GFLOP/s")
        for arch in args.archs.split(","):
            bare, flops = bare_step(arch, cfg, args.batch, repeats=3)
            full = trainer_step_seconds(arch, cfg, args.batch, data, Path(tmp) / arch)
            bound = flops / conv
            print(
                f"{arch:9s} trainer {1 / full:6.3f} steps/s ({args.batch / full:6.1f} img/s); bare D+G step "
                f"{bare:.2f} s, {flops / 1e9:.0f} GFLOP, bound {bound:.2f} s; "
                f"trainer/bare {full / bare:.2f}, bare/bound {bare / bound:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

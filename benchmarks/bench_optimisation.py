"""Speed of the batched optimisation methods (``optim-wplus``; the others share the optimiser).

Two ratios, each measured within one run so machine load cancels as far as it can:

* **step overhead**: seconds per optimisation step at batch B, divided by one bare generator
  forward + backward of the same batch (a W+ code that requires grad, ``y.square().sum()``
  backward). The step time is (t(S2 steps) - t(S1 steps)) / (S2 - S1), so the one-off setup
  (image preparation, the final render) cancels. Shown for a pixel-only loss (the optimiser's own
  overhead; target <= 1.3x) and for the default loss with the face-feature distance (which adds
  a second network's forward and backward).
* **sam**: a SAM step (W+ plus three masked feature residuals injected after their blocks, the MVG,
  delta and feature-residual terms; pixel loss) against an ``optim-wplus`` step, and the time per
  image of both at S2 steps (SAM's includes its predictor, segmentation and mask resizing).
* **batching**: throughput of one batch of B images against the same B images one at a time,
  the same number of steps each (target >= 1.5x at B = 8 on CPU).

    python benchmarks/bench_optimisation.py                   # 64 px, batch 8
    python benchmarks/bench_optimisation.py --size 1024 --batch 2 --steps 2 3 --reps 1

The 64 px generator has the synthfaces-world shape (256-d styles, 128 channels), 1024 px the
published StyleGAN2 shape; weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch

from egain.generators import build_generator
from egain.methods import create


def make_generator(size: int, channel_max: int = 128):
    torch.manual_seed(0)
    if size >= 256:
        g = build_generator("stylegan2", size, style_dim=512, n_mlp=8, channel_preset="rosinality")
    else:
        g = build_generator(
            "stylegan2", size, style_dim=256, n_mlp=4, channel_max=channel_max, channel_multiplier=1
        )
    g.latent_avg = g.mean_latent(1000, seed=0)[0]
    return g.eval().requires_grad_(False)


def bare_forward_backward(g, batch: int) -> float:
    w = g.latent_avg.view(1, 1, -1).repeat(batch, g.n_latent, 1).requires_grad_(True)

    def fn():
        y = g.synthesize(w, noise_mode="const")
        y.square().sum().backward()
        w.grad = None

    return _common.timed(fn, reps=args.reps)


def step_time(method, x, s1: int, s2: int) -> float:
    t1 = _common.timed(lambda: method.invert(x, steps=s1), reps=args.reps)
    t2 = _common.timed(lambda: method.invert(x, steps=s2), reps=args.reps)
    return max(t2 - t1, 1e-9) / (s2 - s1)


def main() -> None:
    torch.set_num_threads(args.threads)
    parts = {t for t in args.parts.split(",") if t}
    unknown = parts - {"perceptual", "sam", "batching"}
    if unknown:
        raise SystemExit(f"unknown --parts {', '.join(sorted(unknown))} (perceptual, sam, batching)")
    g = make_generator(args.size, args.channel_max)
    b = args.batch
    x = torch.rand(b, 3, args.size, args.size) * 2 - 1
    s1, s2 = args.steps
    print(
        f"stylegan2 {args.size} px ({sum(t.numel() for t in g.parameters())} parameters), batch {b}, steps {s1} -> {s2}, threads {args.threads}"
    )
    bare = bare_forward_backward(g, b)
    print(f"bare generator forward+backward: {bare * 1000:.1f} ms")
    pixel = create("optim-wplus", generator=g, lambda_perceptual=0.0)
    t_pixel = step_time(pixel, x, s1, s2)
    print(
        f"optim-wplus step, pixel loss:       {t_pixel * 1000:.1f} ms = {t_pixel / bare:.2f}x bare (target <= 1.3x)"
    )
    if not args.no_perceptual and "perceptual" in parts:
        perc = create("optim-wplus", generator=g)
        t_perc = step_time(perc, x, s1, s2)
        print(f"optim-wplus step, + face features:  {t_perc * 1000:.1f} ms = {t_perc / bare:.2f}x bare")
    if "sam" in parts:
        sam_timings(g, x, t_pixel, pixel)
    if "batching" in parts:
        batched = _common.timed(lambda: pixel.invert(x, steps=s2), reps=args.reps)
        single = _common.timed(
            lambda: [pixel.invert(x[i : i + 1], steps=s2) for i in range(b)], reps=args.reps
        )
        print(
            f"batched {b} images: {batched:.3f} s; one at a time: {single:.3f} s; "
            f"throughput {single / batched:.2f}x (target >= 1.5x at batch 8)"
        )


def sam_timings(g, x, t_pixel: float, pixel) -> None:
    s1, s2 = args.steps
    b = x.shape[0]
    # SAM: W+ and the masked feature residuals through the injection hook, with its regularisers,
    # maps from an (untrained) predictor: the per-step cost of the multilayer latent
    pred = create("sam-invertibility", generator=g)
    sam = create("sam", generator=g, invertibility=pred, init="mean", lambda_perceptual=0.0, mvg_samples=2000)
    t_sam = step_time(sam, x, s1, s2)
    print(
        f"sam step, pixel loss ({','.join(s.name for s in sam.spaces)}): {t_sam * 1000:.1f} ms = "
        f"{t_sam / t_pixel:.2f}x optim-wplus step"
    )
    per_image = {
        name: _common.timed(lambda m=m: m.invert(x, steps=s2), reps=args.reps) / b
        for name, m in (("optim-wplus", pixel), ("sam", sam))
    }
    print(
        f"time per image at {s2} steps, batch {b}: optim-wplus {per_image['optim-wplus'] * 1000:.1f} ms, "
        f"sam {per_image['sam'] * 1000:.1f} ms ({per_image['sam'] / per_image['optim-wplus']:.2f}x)"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, nargs=2, default=(5, 15), metavar=("S1", "S2"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--channel-max", type=int, default=128, help="channels of the 64 px generator")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--parts",
        default="perceptual,sam,batching",
        help="which timings besides the pixel-loss step overhead (comma list of perceptual, sam, batching)",
    )
    p.add_argument("--no-perceptual", action="store_true", help="skip the face-feature-distance timing")
    args = p.parse_args()
    main()

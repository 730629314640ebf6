"""How well the bundled SAM invertibility predictor stands in for the measured maps it learned.

On held-out synthfaces test images (with their ground-truth parsing maps, face classes fused as
the published segmenter does), the maps SAM would *measure* (one single-space inversion per
space, ``--measure-steps`` steps from the e4e start: the predictor's training targets) against the
maps the predictor gives in one forward pass:

* per space: mean squared error, Pearson correlation over pixels, and the correlation of the
  images' mean errors (does it rank images by how hard they are?);
* what SAM does with them: the share of pixels whose latent space, chosen by the threshold rule at
  the default tau, is the same with predicted as with measured maps; beside two references: a
  constant map (each space's mean measured map over the *other* test images, leave-one-out) and
  "everything in W+";
* the time per image of both.

    python benchmarks/sam_predictor.py --images 16             # ~10 CPU minutes at 1 thread
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (first: prepares OpenMP and sys.path before torch loads)
import torch

from egain.data.synthfaces import SynthFacesDataset
from egain.methods import create
from egain.methods.sam import bundled_predictor_name, refine


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def main() -> None:
    args = p.parse_args()
    if args.images < 2:
        raise SystemExit("--images must be at least 2 (the constant reference leaves one image out)")
    torch.manual_seed(0)
    measured_m = create("sam", generator=args.generator, invertibility="measure", device="cpu")
    name = bundled_predictor_name(measured_m.generator)
    if name is None:
        raise SystemExit("no bundled sam-invertibility model for this generator")
    predicted_m = create("sam", generator=args.generator, invertibility=f"zoo:{name}", device="cpu")
    ds = SynthFacesDataset(identities=400, per_identity=1, size=measured_m.input_size, seed=0, split="test",
                           return_parsing=True)  # fmt: skip
    items = [ds[args.offset + i] for i in range(args.images)]
    x = torch.stack([it[0] for it in items])
    parsing = torch.stack([it[-1] for it in items])
    cfg_m = measured_m._resolve({"measure_steps": args.measure_steps}, measured_m.config)
    cfg_p = predicted_m._resolve({}, predicted_m.config)
    w0 = measured_m.initial_codes(x, cfg_m)
    # one-off setup outside the timings: the predictor's file, the perceptual network and prior
    predicted_m.predictor(cfg_p)
    measured_m.error_maps(x[:1], w0[:1], {**cfg_m, "measure_steps": 1})
    t0 = time.perf_counter()
    measured = measured_m.error_maps(x, w0, cfg_m)
    t_measure = (time.perf_counter() - t0) / len(x)
    t0 = time.perf_counter()
    with torch.no_grad():
        predicted = predicted_m.error_maps(x, w0, cfg_p)
    t_predict = (time.perf_counter() - t0) / len(x)
    segments = measured_m.segmenter(cfg_m)(x, parsing)
    tau = predicted_m.default_tau(predicted, cfg_p, segments)[0]
    spaces = measured_m.spaces
    print(f"{name} on {len(x)} held-out test images; maps measured with {args.measure_steps} steps per space")
    print(
        f"time per image: measured {t_measure:.2f} s, predicted {t_predict * 1000:.1f} ms ({t_measure / t_predict:.0f}x)"
    )
    print(f"{'space':6} {'MSE':>8} {'MSE const':>9} {'r pixels':>8} {'r images':>8}")
    n = len(x)
    loo = (measured.sum(0, keepdim=True) - measured) / max(n - 1, 1)  # leave-one-out mean map
    loo = loo.mean(dim=(-2, -1), keepdim=True).expand_as(measured) if args.flat_constant else loo
    for i, sp in enumerate(spaces):
        m, q, c = measured[:, i], predicted[:, i], loo[:, i]
        print(f"{sp.name:6} {float((q - m).square().mean()):8.4f} {float((c - m).square().mean()):9.4f} "
              f"{pearson(q, m):8.3f} {pearson(q.mean((-2, -1)), m.mean((-2, -1))):8.3f}")  # fmt: skip
    choice_m = refine(measured, segments, tau, spaces)
    rows = [("predicted maps", refine(predicted, segments, tau, spaces)),
            ("constant maps (leave-one-out mean)", refine(loo, segments, tau, spaces)),
            ("everything in W+", torch.zeros_like(choice_m))]  # fmt: skip
    print(f"threshold rule at tau {tau:.3f}: share of pixels given the same space as with measured maps")
    for label, choice in rows:
        same = (choice == choice_m).float()
        face = segments == 1
        print(f"  {label:36} all {float(same.mean()):.3f}, face {float(same[face].mean()):.3f}")
    share = ", ".join(f"{sp.name} {float((choice_m == i).float().mean()):.2f}" for i, sp in enumerate(spaces))
    print(f"measured maps' choice: {share}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--generator", default="zoo:gan-stylegan2-64")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--offset", type=int, default=0, help="skip this many test images first")
    p.add_argument("--measure-steps", type=int, default=200, help="steps of each single-space inversion")
    p.add_argument("--flat-constant", action="store_true", help="constant reference: one value per space")
    main()

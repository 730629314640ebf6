"""What SAM's threshold tau does on held-out synthfaces images: per tau, the share of pixels each
latent space takes and the reconstruction's PSNR, perceptual distance and SAM loss; plus the tau
:func:`egain.methods.sam.calibrate_tau` gives on these images and the default ``invert`` uses.

The images are the first ``--images`` of the synthfaces test split (after ``--offset``) with their
ground-truth parsing maps (the published face segmenter's classes, face fused). The maps are
measured (``--measure-steps`` single-space inversions) unless ``--invertibility`` names a
predictor; they and the segments are computed once for all taus.

    python benchmarks/sam_tau.py --taus 0.225,0.3,0.4,1 --images 4 --steps 100
    python benchmarks/sam_tau.py --taus published --json out.json

Keep a run to a few CPU minutes at 1 thread: 4 images x (4 spaces x 200 measure steps + 100 steps
per tau) at 64 px is about 2 + 1 min per tau on the shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json

import _common  # noqa: F401  (first: prepares OpenMP and sys.path before torch loads)
import torch

from egain.data.synthfaces import SynthFacesDataset
from egain.methods import create
from egain.methods.sam import parse_taus, tau_sweep_report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="zoo:gan-stylegan2-64")
    p.add_argument("--taus", default="0.225,0.3,0.4,1", help="comma list, or 'published' (0.1..0.375 and 1)")
    p.add_argument("--images", type=int, default=4, help="held-out synthfaces test images")
    p.add_argument("--offset", type=int, default=0, help="skip this many test images first")
    p.add_argument("--steps", type=int, default=100, help="SAM steps per tau (published 1001)")
    p.add_argument("--measure-steps", type=int, default=200, help="steps of each single-space inversion")
    p.add_argument(
        "--invertibility", default="measure", help="measure (default), or a predictor: model.pt or zoo:NAME"
    )
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args()
    torch.manual_seed(0)

    method = create("sam", generator=args.generator, device="cpu")
    size = method.input_size
    ds = SynthFacesDataset(
        identities=400, per_identity=1, size=size, seed=0, split="test", return_parsing=True
    )
    items = [ds[args.offset + i] for i in range(args.images)]
    x = torch.stack([it[0] for it in items])
    parsing = torch.stack([it[-1] for it in items])
    opts = {"steps": args.steps, "measure_steps": args.measure_steps, "invertibility": args.invertibility}
    report = tau_sweep_report(method, x, parse_taus(args.taus), parsing=parsing, **opts)

    print(f"error scale {report['error_scale']}; {args.images} images; SAM {args.steps} steps per tau")
    print(f"calibrated tau on these images {report['calibrated_tau']:.4f}")
    print(f"default tau {report['default_tau']:.4f} ({report['default_tau_how']})")
    spaces = report["spaces"]
    print("tau    " + " ".join(f"{s:>6}" for s in spaces) + "   PSNR  percept    loss")
    for row in report["rows"]:
        fr = " ".join(f"{row['fractions'][s]:6.3f}" for s in spaces)
        print(f"{row['tau']:<6.3f} {fr} {row['psnr']:6.2f} {row['perceptual']:8.4f} {row['loss']:7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **report}, f, indent=1)


if __name__ == "__main__":
    main()

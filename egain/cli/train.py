"""``egain train``: train an inversion method (e4e, hfgi, egain, egain-external) on a frozen generator.

Examples::

    egain train --method e4e --generator G.pt --data synthfaces:... --out runs/e4e
    egain train --method egain --generator G.pt --data DIR --basic-encoder runs/e4e/model.pt --out runs/egain
    torchrun --nproc_per_node 4 -m egain train ...        (DDP; --batch is per process)
"""

from __future__ import annotations

import argparse
import json
import os

from egain.errors import EgainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an inversion method",
        description="Train an inversion method with the EGAIN loss (seeds/000 Eq. 1) on a frozen generator. "
        "Writes RUN_DIR/model.pt (for 'egain invert'), checkpoint.pt (resumable), log.jsonl, samples/*.png, run.json.",
    )
    from egain.methods import available

    p.add_argument("--method", required=True, choices=available())
    p.add_argument("--generator", required=True, help="generator checkpoint (ours or rosinality .pt)")
    p.add_argument("--data", required=True, help="image folder, or synthfaces:SPEC")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--basic-encoder", help="e4e checkpoint for E_b and w-bar (ours, or a published e4e .pt)")
    p.add_argument("--train-basic-encoder", action="store_true", help="train E_b too (frozen by default)")
    p.add_argument("--iters", type=int, default=10000)
    p.add_argument("--batch", type=int, default=8, help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=1e-4)
    for term, what in (
        ("l2", "pixel MSE"),
        ("lpips", "LPIPS (the face-feature distance without --lpips)"),
        ("id", "identity loss"),
        ("avg-reg", "pull w_b toward w-bar"),
        ("d-reg", "e4e delta regulariser"),
        ("w-reg", "e4e latent-discriminator loss"),
        ("adv", "HFGI adversarial loss"),
        ("align", "HFGI ADA alignment L1"),
    ):
        p.add_argument(
            f"--lambda-{term}",
            type=float,
            default=None,
            help=f"weight of the {what} (default: the method's published value)",
        )
    p.add_argument("--passes", type=int, default=1, help="EGAIN iterative scheme: number of delta passes")
    p.add_argument(
        "--resume",
        default="auto",
        help="'auto' (continue RUN_DIR/checkpoint.pt if present), a path, or 'none'",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--id-net", default="synthfaces-arcface", help="face embedder for the ID loss (egain.faces spec)"
    )
    p.add_argument("--perceptual-net", help="face embedder for the LPIPS fallback (default: --id-net)")
    p.add_argument(
        "--lpips",
        choices=["alex", "vgg"],
        help="use real LPIPS with this backbone (published weights needed); default: face-feature distance",
    )
    p.add_argument(
        "--lpips-backbone", help="torchvision backbone weights for --lpips (alexnet-owt-*.pth / vgg16-*.pth)"
    )
    p.add_argument("--lpips-linear", help="LPIPS v0.1 linear weights for --lpips (alex.pth / vgg.pth)")
    p.add_argument("--discriminator", help="image discriminator for --lambda-adv (default: from --generator)")
    p.add_argument(
        "--progressive-start",
        type=int,
        default=20000,
        help="e4e: step at which W+ offsets start (-1: all at once)",
    )
    p.add_argument(
        "--progressive-every", type=int, default=2000, help="e4e: steps between enabling two offsets"
    )
    p.add_argument("--distortion-scale", type=float, default=0.15, help="HFGI ADA: perspective warp strength")
    p.add_argument("--aug-rate", type=float, default=0.9, help="HFGI ADA: probability of warping")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument(
        "--config", help='JSON of component overrides, e.g. \'{"delta_encoder": {"type": "consultation"}}\''
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.utils.paths import check_output_dir  # a file at --out is one line, not a traceback

    check_output_dir(args.out, "run folder")
    from egain.training.inversion import InversionTrainConfig, train_inversion

    overrides = {}
    if args.config:
        try:
            overrides = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise EgainError(f"--config must be a JSON object ({exc})") from None
        if not isinstance(overrides, dict):
            raise EgainError("--config must be a JSON object of component settings")
    lambdas = {
        "l2": args.lambda_l2,
        "lpips": args.lambda_lpips,
        "id": args.lambda_id,
        "avg_reg": args.lambda_avg_reg,
        "d_reg": args.lambda_d_reg,
        "w_reg": args.lambda_w_reg,
        "adv": args.lambda_adv,
        "align": args.lambda_align,
    }
    if args.iters < 1 or args.batch < 1:
        raise EgainError(f"--iters and --batch must be >= 1 (got {args.iters}, {args.batch})")
    cfg = InversionTrainConfig(
        method=args.method,
        generator=args.generator,
        data=args.data,
        out=args.out,
        basic_encoder=args.basic_encoder,
        train_basic_encoder=args.train_basic_encoder,
        iters=args.iters,
        batch=args.batch,
        lr=args.lr,
        lambdas={k: v for k, v in lambdas.items() if v is not None},
        passes=args.passes,
        resume=None if args.resume in ("none", "") else args.resume,
        device=args.device,
        seed=args.seed,
        id_net=args.id_net,
        perceptual_net=args.perceptual_net,
        lpips=args.lpips,
        lpips_backbone=args.lpips_backbone,
        lpips_linear=args.lpips_linear,
        discriminator=args.discriminator,
        progressive_start=None if args.progressive_start < 0 else args.progressive_start,
        progressive_every=args.progressive_every,
        distortion_scale=args.distortion_scale,
        aug_rate=args.aug_rate,
        log_every=args.log_every,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        workers=args.workers,
        method_config=overrides,
    )
    record = train_inversion(cfg)
    if record and os.environ.get("RANK", "0") == "0":
        shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}
        print(json.dumps(shown))
    return 0

"""``egain evaluate``: score reconstructions against their sources and write a report.

    egain evaluate --source SRC --method e4e=OUT/e4e --method egain=OUT/egain --out REPORT

Pairs files by name, writes REPORT/scores.csv (one row per image and method), summary.{md,csv,json}
(mean ± std, median, bootstrap CI, paired Wilcoxon p against the best other method, Holm-corrected),
plots/box_<metric>.png and grid.png. Bad or unpaired files are reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from egain.cli.argtypes import non_negative_int, positive_int
from egain.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from egain.metrics.table import METRIC_NAMES

    p = sub.add_parser(
        "evaluate",
        help="score reconstructions against sources (SSIM, SCC, VIF, ID, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, help="folder of source (reference) images")
    p.add_argument(
        "--method",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a method's reconstructions, paired with the sources by file name (repeat per method)",
    )
    p.add_argument("--out", required=True, help="report folder (created)")
    names = ",".join(m for m in METRIC_NAMES if m != "ssim_raw")  # "ssim" gives both SSIM columns
    p.add_argument(
        "--metrics",
        default="all",
        help=f"comma list of {names} (default: all; ones that cannot run are reported as unavailable)",
    )
    p.add_argument(
        "--identity-backend",
        default="synthfaces-cosface",
        help="face embedder for the ID metric and the face-feature distance 'feat' (default: the bundled CosFace "
        "scorer, independent of the ArcFace ID loss methods train with): synthfaces-cosface, synthfaces-arcface, "
        "arcface-irse50:PATH, dlib (ID only), an embedder.pt, or none",
    )
    p.add_argument(
        "--magface-backend",
        default="synthfaces-magface",
        help="face embedder for MagFace quality: synthfaces-magface, magface-iresnet100:PATH, or none",
    )
    p.add_argument(
        "--lpips-net", default="alex", choices=["alex", "vgg"], help="LPIPS backbone (default alex)"
    )
    p.add_argument(
        "--lpips-backbone",
        help="torchvision ImageNet weights: alexnet-owt-7be5be79.pth or vgg16-397923af.pth (path or folder)",
    )
    p.add_argument(
        "--lpips-linear",
        help="LPIPS v0.1 linear layers alex.pth / vgg.pth (default: from an installed 'lpips' package)",
    )
    p.add_argument(
        "--grid", type=non_negative_int, default=8, metavar="N", help="images in grid.png (0: no grid)"
    )
    p.add_argument(
        "--size", type=positive_int, help="resize+centre-crop both images of each pair to NxN first"
    )
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--bootstrap", type=non_negative_int, default=2000, help="bootstrap resamples for the CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.set_defaults(func=run)


def parse_method_args(values: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs (a bare DIR is named after its folder); names must be unique."""
    methods: dict[str, Path] = {}
    for v in values:
        name, sep, folder = v.partition("=")
        if not sep:
            name, folder = Path(v).name, v
        name = name.strip()
        if not name or not folder:
            raise InputError(f"--method '{v}': expected NAME=DIR")
        if name in methods:
            raise InputError(f"--method: the name '{name}' is given twice; method names must be unique")
        methods[name] = Path(folder)
    return methods


def run(args: argparse.Namespace) -> int:
    from egain.metrics.evaluate import evaluate_folders, format_console_summary
    from egain.utils.paths import check_not_inside_inputs, check_output_dir

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_output_dir(args.out, "report folder")
    check_not_inside_inputs(args.out, [args.source, *parse_method_args(args.method).values()])
    report = evaluate_folders(
        args.source,
        parse_method_args(args.method),
        args.out,
        metrics=args.metrics,
        identity_backend=args.identity_backend,
        magface_backend=args.magface_backend,
        lpips_net=args.lpips_net,
        lpips_backbone=args.lpips_backbone,
        lpips_linear=args.lpips_linear,
        grid=args.grid,
        size=args.size,
        device=args.device,
        batch_size=args.batch_size,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    print(format_console_summary(report))
    for metric, reason in report.unavailable.items():
        print(f"not computed: {metric}: {reason}", file=sys.stderr)
    if report.issues:
        print(
            f"{len(report.issues)} input problem(s), listed in {report.files.get('issues')}:", file=sys.stderr
        )
        for line in report.issues[:10]:
            print(f"  {line}", file=sys.stderr)
    print(f"report: {Path(args.out) / 'summary.md'} ({len(report.rows)} scored pairs)")
    return 0

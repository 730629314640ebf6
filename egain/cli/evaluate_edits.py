"""``egain evaluate-edits``: edit fidelity of methods against synthfaces ground truth.

For held-out synthfaces images, each method inverts and edits along each attribute's direction;
the ground truth is the same face re-rendered with only that attribute changed by what the
attribute classifier says the edit achieved. The evaluation runs on each of ``--seeds``
(independent draws of held-out identities, as ``egain compare``); OUT/seed<k>/ holds each seed's
report, OUT/ the pooled one (``edit_scores.csv``, per-image scores, ``edit_summary.md``,
``grid_<attribute>.png``), ``edit_scores_by_seed.csv``, ``edit_tests.csv`` and ``claims.csv`` (see
:mod:`egain.editing.evaluate` and :mod:`egain.workflows.edit_eval`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from egain.cli.argtypes import non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-edits", help="score methods' edits against synthfaces ground truth")
    p.add_argument(
        "--method",
        action="append",
        required=True,
        help="METHOD or LABEL=METHOD[:CHECKPOINT] (bundled weights when no checkpoint); repeat",
    )
    p.add_argument(
        "--attributes",
        default="smile,yaw,age",
        help="comma list of smile, eyes_open, yaw, age, glasses, beard, hat",
    )
    p.add_argument("--strength", default="-3,3", help="comma-separated strengths")
    p.add_argument("--n", type=positive_int, default=64, help="held-out images (synthfaces eval recipe)")
    p.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds, each an independent draw of --n held-out identities (default 0,1,2)",
    )
    p.add_argument(
        "--replicate",
        type=non_negative_int,
        default=None,
        help="deprecated: one draw only; the same as --seeds K",
    )
    p.add_argument(
        "--min-n", type=positive_int, default=None, help="fewest images per seed for a verdict (default 30)"
    )
    p.add_argument(
        "--regions",
        choices=("parsing", "proxy"),
        default="parsing",
        help="region of 'change outside region': the renderer's exact parsing maps, or the landmark proxy",
    )
    p.add_argument("--classifier", default="synthfaces-attributes")
    p.add_argument(
        "--id-net", default="synthfaces-arcface", help="face embedder for ID, feature distance and FID"
    )
    p.add_argument(
        "--no-ada-variants", action="store_true", help="do not also score methods with ADA switched off"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p._negative_number_matcher = re.compile(r"^-\d*\.?\d+([,:]-?\d*\.?\d+)*$")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "--out")  # a file where a folder is expected: one line, before any work
    from egain.editing.apply import parse_strengths
    from egain.errors import InputError
    from egain.faces import load_embedder
    from egain.faces.attributes import load_classifier
    from egain.methods import create
    from egain.utils.device import resolve_device
    from egain.workflows.compare import MIN_N, parse_seeds
    from egain.workflows.edit_eval import run_edit_evaluation

    if args.replicate is not None:
        if args.seeds is not None:
            raise InputError("give --seeds or the deprecated --replicate, not both")
        print(f"note: --replicate is deprecated; running --seeds {args.replicate}", file=sys.stderr)
    seeds = parse_seeds(args.seeds if args.replicate is None else [args.replicate])
    device = resolve_device(args.device)
    methods = {}
    for spec in args.method:
        label, _, rest = spec.rpartition("=")
        name, _, ckpt = rest.partition(":")
        methods[label or name] = create(name, checkpoint=ckpt or None, device=device)
    result = run_edit_evaluation(
        methods,
        [a.strip() for a in args.attributes.split(",") if a.strip()],
        parse_strengths(args.strength),
        classifier=load_classifier(args.classifier, device=device),
        embedder=load_embedder(args.id_net, device=device),
        out=Path(args.out),
        n=args.n,
        seeds=seeds,
        min_n=args.min_n or MIN_N,
        with_no_ada=not args.no_ada_variants,
        regions=args.regions,
    )
    print(result.markdown)
    return 0

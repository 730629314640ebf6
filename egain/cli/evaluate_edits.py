"""``egain evaluate-edits``: edit fidelity of methods against synthfaces ground truth.

For held-out synthfaces images, each method inverts and edits along each attribute's direction;
the ground truth is the same face re-rendered with only that attribute changed by what the
attribute classifier says the edit achieved. Writes ``edit_scores.csv``, per-image scores,
``edit_summary.md`` and ``grid_<attribute>.png`` (see :mod:`egain.editing.evaluate`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from egain.cli.argtypes import positive_int


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
    p.add_argument("--replicate", type=int, default=0)
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
    from egain.editing.evaluate import evaluate_edits, write_edit_report
    from egain.faces import load_embedder
    from egain.faces.attributes import load_classifier
    from egain.methods import create
    from egain.utils.device import resolve_device

    device = resolve_device(args.device)
    methods = {}
    for spec in args.method:
        label, _, rest = spec.rpartition("=")
        name, _, ckpt = rest.partition(":")
        methods[label or name] = create(name, checkpoint=ckpt or None, device=device)
    result = evaluate_edits(
        methods,
        [a.strip() for a in args.attributes.split(",") if a.strip()],
        parse_strengths(args.strength),
        classifier=load_classifier(args.classifier, device=device),
        embedder=load_embedder(args.id_net, device=device),
        n=args.n,
        replicate=args.replicate,
        with_no_ada=not args.no_ada_variants,
    )
    files = write_edit_report(result, Path(args.out))
    print(Path(files["summary"]).read_text())
    return 0

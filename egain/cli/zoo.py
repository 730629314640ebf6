"""``egain zoo``: list, verify and add bundled weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from egain.errors import EgainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list and check the bundled weights")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    pl = zsub.add_parser("list", help="show the bundled weights with their provenance and scores")
    pl.add_argument("--json", action="store_true", help="print the manifests as JSON")
    pl.set_defaults(func=_list)
    pv = zsub.add_parser("verify", help="recompute sha256 of every bundled file")
    pv.set_defaults(func=_verify)
    pa = zsub.add_parser("add", help="copy a trained export into the zoo and write its manifest")
    pa.add_argument("--name", required=True)
    pa.add_argument("--weights", required=True, help="exported weights (.pt or .safetensors)")
    pa.add_argument(
        "--format",
        choices=["pt", "safetensors"],
        default=None,
        help="how to store the weights in the zoo (default: as the --weights file is)",
    )
    pa.add_argument("--run-info", required=True, help="the run.json written by the trainer")
    pa.add_argument(
        "--kind",
        required=True,
        choices=["generator", "face-embedder", "method", "attribute-classifier", "face-parser"],
    )
    pa.add_argument("--scores", help="JSON file of scores to record")
    pa.add_argument("--notes", default="")
    pa.add_argument(
        "--generator-zoo",
        help="(methods) the zoo generator the model was trained with; stored as a reference, not a copy",
    )
    pa.add_argument(
        "--half",
        action="store_true",
        help="(methods) store the model's tensors as float16 (half the size; loaded back as float32)",
    )
    pa.set_defaults(func=_add)


def _list(args: argparse.Namespace) -> int:
    from egain.zoo.manage import listing

    rows = listing()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no bundled weights")
        return 0
    for m in rows:
        size = m.get("size_bytes", 0) / 1e6
        hours = (m.get("wall_time_s") or 0) / 3600
        scores = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (m.get("scores") or {}).items()
        )
        print(
            f"{m['name']:<24} {m.get('kind', '?'):<14} {size:6.1f} MB  {m.get('steps', '?')} steps  "
            f"{hours:.2f} h  {scores}"
        )
        print(f"    {m.get('command', '')}  @ {str(m.get('commit', ''))[:12]}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from egain.zoo import available
    from egain.zoo.manage import verify

    bad = 0
    for name in available():
        ok, msg = verify(name)
        print(msg)
        bad += not ok
    if bad:
        raise EgainError(f"{bad} bundled file(s) do not match their manifest")
    return 0


def _add(args: argparse.Namespace) -> int:
    from egain.zoo.manage import add_to_zoo

    scores = json.loads(Path(args.scores).read_text()) if args.scores else None
    rec = add_to_zoo(
        args.name,
        args.weights,
        args.run_info,
        kind=args.kind,
        scores=scores,
        notes=args.notes,
        generator_zoo=args.generator_zoo,
        fmt=args.format,
        half=args.half,
    )
    print(f"added {rec['name']} ({rec['size_bytes'] / 1e6:.1f} MB, sha256 {rec['sha256'][:12]})")
    return 0

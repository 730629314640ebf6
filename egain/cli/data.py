"""``egain data synthfaces``: render the procedural face world to a folder.

Writes ``DIR/idNNNNN_vKK.png``, ``DIR/labels.jsonl`` (identity, split, attributes, rare details
with boxes, landmarks) and ``DIR/contact_sheet.png``; ``--parsing`` adds each image's per-pixel
class map ``DIR/idNNNNN_vKK_parsing.png`` and ``DIR/parsing_sheet.png``. ``--eval-set`` / ``--hard-set`` write the
fixed evaluation recipes instead (500 held-out identities; 200 with at least one rare detail each).
"""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make datasets (synthfaces)", description="Make datasets.")
    sub = p.add_subparsers(dest="data_command", metavar="DATASET")
    s = sub.add_parser(
        "synthfaces",
        help="render synthfaces images + labels.jsonl + contact sheet",
        description="Render the synthfaces procedural face world (deterministic in its arguments).",
    )
    s.add_argument("--out", required=True, help="output folder (new or empty)")
    s.add_argument("--identities", type=int, default=1000, help="identities 0..N-1 (default 1000)")
    s.add_argument("--per-identity", type=int, default=10, help="images per identity (default 10)")
    s.add_argument("--size", type=int, default=64, help="image size, a power of two >= 16 (default 64)")
    s.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    s.add_argument(
        "--rare-rate",
        type=float,
        default=None,
        help="probability of each rare detail per image (default: per-kind rates of 4-8%%)",
    )
    rec = s.add_mutually_exclusive_group()
    rec.add_argument(
        "--eval-set", action="store_true", help="write the fixed eval recipe (500 held-out identities)"
    )
    rec.add_argument(
        "--hard-set", action="store_true", help="write the fixed hard recipe (200, all with rare details)"
    )
    s.add_argument(
        "--count", type=int, default=None, help="images of --eval-set/--hard-set (default 500/200)"
    )
    s.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="write only the identities of this split (e.g. a training folder free of eval identities)",
    )
    s.add_argument(
        "--parsing",
        action="store_true",
        help="also write each image's per-pixel class map NAME_parsing.png (see docs/synthfaces.md)",
    )
    s.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (default 1)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier synthfaces dataset in --out")
    s.set_defaults(func=_synthfaces)
    __import__("egain.cli.apply", fromlist=["register_sequences"]).register_sequences(sub)  # synthfaces clips
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _synthfaces(args: argparse.Namespace) -> int:
    from egain.data.synthfaces.writer import write_synthfaces
    from egain.errors import InputError

    recipe = "eval" if args.eval_set else ("hard" if args.hard_set else None)
    if args.split is not None and recipe is not None:
        raise InputError("--split applies to the plain recipe; the eval/hard recipes are held-out already")
    if args.count is not None and recipe is None:
        raise InputError(
            "--count applies to --eval-set or --hard-set; use --identities/--per-identity otherwise"
        )
    t0 = time.perf_counter()
    records = write_synthfaces(
        args.out,
        args.identities,
        args.per_identity,
        args.size,
        args.seed,
        args.rare_rate,
        recipe=recipe,
        count=args.count,
        workers=args.workers,
        overwrite=args.overwrite,
        split=args.split,
        parsing=args.parsing,
    )
    dt = time.perf_counter() - t0
    splits = {}
    for r in records:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    rare = sum(1 for r in records if r["rare_kinds"])
    parts = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
    maps = " and parsing maps" if args.parsing else ""
    print(
        f"wrote {len(records)} images{maps} ({parts}; {rare} with rare details) to {args.out} "
        f"in {dt:.1f}s ({len(records) / max(dt, 1e-9):.0f} img/s)"
    )
    return 0

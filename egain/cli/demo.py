"""``egain demo``: the quick start -- invert the bundled examples with the bundled e4e, hfgi and egain.

    egain demo --out outputs [--methods e4e,hfgi,egain] [--device auto]

Writes OUT/<method>/*.png (reconstructions with the example file names), OUT/comparison.png
(source | method ... per example, labelled), OUT/report/ (the ``egain evaluate`` report) and
OUT/table.md, and prints the table. A missing bundled weight is one error line (exit code 2).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from egain.workflows.bundled import BUNDLED_METHODS, DEMO_METHODS

    p = sub.add_parser(
        "demo",
        help="invert the bundled examples with the bundled models and report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument(
        "--methods",
        default=",".join(DEMO_METHODS),
        help=f"comma list of bundled methods (default {','.join(DEMO_METHODS)}; "
        f"available: {', '.join(BUNDLED_METHODS)})",
    )
    p.add_argument("--input", help="invert these images (file or folder) instead of the bundled examples")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out folder that holds other files or another run",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.workflows.demo import run_demo

    result = run_demo(
        args.out,
        args.methods,
        device=args.device,
        inputs=args.input,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    flagged = 0
    if args.input:  # the bundled models on the user's pictures: say when they are unlike synthfaces
        from egain.cli.invert import warn_unlike_synthfaces
        from egain.utils.device import resolve_device
        from egain.utils.images import list_images

        files = list_images(args.input)
        flagged = warn_unlike_synthfaces(files, resolve_device(args.device), command="demo")
    if flagged:
        caveat = (
            f"NOT MEANINGFUL: {flagged} of {len(files)} picture(s) do not look like synthfaces, the only world "
            "the bundled models know; these numbers compare their output with pictures they were not made "
            "for and do not measure inversion quality (ID included)."
        )
        print(caveat)
        table_md = result.out / "table.md"
        if table_md.exists():
            from egain.runtime.files import atomic_write_text

            atomic_write_text(table_md, f"**{caveat}**\n\n" + table_md.read_text())
    print(result.table)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"reconstructions: {', '.join(str(r.out_dir) for r in result.runs.values())}\n"
        f"comparison grid: {result.grid}\nreport: {result.report_dir / 'summary.md'}"
    )
    return 0

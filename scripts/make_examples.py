"""Render the bundled example pictures into egain/assets/examples/ (deterministic; see
egain/workflows/examples.py for what each picture is).

    python scripts/make_examples.py [--out DIR] [--size 64]
"""

from __future__ import annotations

import argparse

from egain.workflows.examples import EXAMPLES_DIR, write_examples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(EXAMPLES_DIR), help=f"output folder (default {EXAMPLES_DIR})")
    p.add_argument("--size", type=int, default=64, help="image size (default 64)")
    args = p.parse_args()
    records = write_examples(args.out, size=args.size)
    kinds = {}
    for r in records:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"wrote {len(records)} examples to {args.out}: " + ", ".join(f"{v} {k}" for k, v in kinds.items()))


if __name__ == "__main__":
    main()

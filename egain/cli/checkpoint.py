"""``egain checkpoint``: turn a checkpoint egain refuses into one it loads safely.

egain never unpickles code from a weight file (docs/safety.md). A file that needs more than plain
data (a pickled model object, a custom class) is refused; if you trust where it came from,
``egain checkpoint convert FILE OUT.safetensors --trust`` unpickles it once, here, and writes only its
data, after which every egain command loads ``OUT`` without the opt-in.
"""

from __future__ import annotations

import argparse

from egain.errors import EgainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="convert checkpoints to a format egain loads safely")
    csub = p.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    c = csub.add_parser(
        "convert",
        help="rewrite a checkpoint as .safetensors (or a plain-data .pt)",
        description="Rewrite SRC as DST holding only data; .safetensors or .pt chosen by DST's suffix.",
    )
    c.add_argument("src", help="checkpoint to read")
    c.add_argument("dst", help="file to write (.safetensors or .pt)")
    c.add_argument(
        "--trust",
        action="store_true",
        help="fully unpickle SRC (runs any code it names: only for files from a source you trust)",
    )
    c.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from egain.runtime.checkpoint import convert_checkpoint
    from egain.utils.paths import check_output_file

    if Path(args.src).resolve() == Path(args.dst).resolve():
        raise EgainError(f"'{args.dst}' is the file being converted; write the result elsewhere")
    check_output_file(args.dst, "converted checkpoint")
    out = convert_checkpoint(args.src, args.dst, trust=args.trust)
    print(f"wrote {out}")
    return 0

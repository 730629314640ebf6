"""``egain app``: serve the browser demo (Gradio) on a loopback port; see :mod:`egain.app`."""

from __future__ import annotations

import argparse

from egain.cli.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="the browser demo: upload, invert, compare, download (needs egain[app])",
        description="Serve the demo at http://HOST:PORT (offline; bundled models on CPU, or published "
        "checkpoints given as --method NAME=CHECKPOINT).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (loopback by default)")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="also offer a registered method loaded from a checkpoint (repeatable)",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.app import launch
    from egain.errors import EgainError

    for spec in args.method:
        if "=" not in spec:
            raise EgainError(f"--method takes NAME=CHECKPOINT, got {spec!r}")
    launch(args.host, args.port, args.method, args.device)
    return 0

"""Entry point of the ``egain`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``; that function adds its
parser(s) and sets ``func`` (called with the parsed namespace, returning an exit code or None).
Modules are imported only when their command runs, so ``egain --help`` stays fast and one
broken optional dependency cannot take the whole command down.

User-facing failures raise :class:`~egain.errors.EgainError` and are printed as one line.
Set ``EGAIN_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

# command name -> (module, one-line help). Keep alphabetical within groups.
COMMANDS: dict[str, tuple[str, str]] = {
    "align": ("egain.cli.align", "detect and FFHQ-align the face of each photo (needs egain[align])"),
    "app": ("egain.cli.app", "the browser demo: upload, invert, compare, download (needs egain[app])"),
    "checkpoint": ("egain.cli.checkpoint", "convert checkpoints to a format egain loads safely"),
    "apply": (
        "egain.cli.apply",
        "applications: face swap, style mixing, interpolation, deep hiding, video, restoration",
    ),
    "compare": ("egain.cli.compare", "compare the bundled methods on the synthfaces evaluation sets"),
    "data": ("egain.cli.data", "make datasets (synthfaces)"),
    "demo": ("egain.cli.demo", "invert the bundled examples with the bundled models and report"),
    "edit": (
        "egain.cli.edit",
        "edit images with a method along directions: edited images and a grid of strengths",
    ),
    "directions": (
        "egain.cli.directions",
        "learn and list latent edit directions (InterFaceGAN, GANSpace, SeFa)",
    ),
    "evaluate": ("egain.cli.evaluate", "score reconstructions against sources (SSIM, SCC, VIF, ID, ...)"),
    "evaluate-edits": ("egain.cli.evaluate_edits", "score methods' edits against synthfaces ground truth"),
    "faces": (
        "egain.cli.faces",
        "face-embedding networks (ArcFace / MagFace) and the attribute classifier: train, evaluate",
    ),
    "gan": ("egain.cli.gan", "train and sample StyleGAN2 / SWAGAN generators"),
    "invert": ("egain.cli.invert", "invert images with a method and save reconstructions / latents"),
    "train": ("egain.cli.train", "train an inversion method"),
    "zoo": ("egain.cli.zoo", "list and check the bundled weights"),
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``egain CMD: error: ...``), like every
    other egain error; the full usage stays one ``--help`` away. Sub-parsers inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="egain", description="High-fidelity GAN inversion toolkit.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--trust-checkpoints",
        action="store_true",
        help="fully unpickle checkpoint files for this run (runs code a file names: trusted files only; "
        "see docs/safety.md)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if wanted == name:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name == module:
                    sub.add_parser(name, help=help_text + " (not available in this build)")
                    continue
                raise
            mod.register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from egain import __version__

    return f"egain {__version__}"


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin at barriers stall badly when the cores are shared (measured: e4e at
    # 64 px, 2 threads, 2.78 s active vs 0.28 s passive); must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) and usage errors (2), as exit codes
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    from egain.errors import EgainError
    from egain.runtime.runinfo import set_command

    set_command(["egain", *argv])

    try:
        with _trust(args.trust_checkpoints):
            code = func(args)
    except EgainError as exc:
        if os.environ.get("EGAIN_DEBUG") == "1":
            raise
        print(f"egain {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"egain {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _trust(enabled: bool) -> contextlib.AbstractContextManager:
    """``--trust-checkpoints``; imported only when asked, so commands without torch stay light."""
    if not enabled:
        return contextlib.nullcontext()
    from egain.runtime.checkpoint import trust_checkpoints

    return trust_checkpoints(True)


if __name__ == "__main__":
    sys.exit(main())

"""Named configurations (presets) for the training commands, shipped as small TOML files here.

``egain gan train --preset NAME`` and ``egain train --preset NAME`` take their defaults from
``egain/presets/NAME.toml`` instead of the FFHQ-scale values of the papers (widths of 512, 800,000
steps): a flag given on the command line always wins over the preset. Each file has a
``description`` and one table per command (``[gan-train]``, ``[train]``); keys are the flags'
names with underscores (``channel_max``), method-declared options included (``progressive_start``,
``id_net``). ``[train.METHOD]`` tables hold per-method values (e.g. a shorter schedule for one method).

Shipped presets:

* ``synthfaces-64`` -- the recipe of the bundled weights (``scripts/train_zoo.sh``): hours on a CPU.
* ``synthfaces-64-quick`` -- the same world at a fraction of the width and steps: the README's Use
  section runs start to finish in minutes on 2 cores. Its models are for trying the commands, not
  for results (its generator makes blurry blobs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from egain.errors import EgainError

PRESETS_DIR = Path(__file__).resolve().parent


def _toml_load(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def available() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load(name: str) -> dict[str, Any]:
    """The preset ``name`` as a dict; a one-line error naming the shipped ones when unknown."""
    path = PRESETS_DIR / f"{name}.toml"
    if not path.exists():
        raise EgainError(f"unknown preset {name!r}; shipped presets: {', '.join(available())}")
    return _toml_load(path)


def help_text(section: str) -> str:
    """One line per preset (name: description), for ``--help``."""
    lines = []
    for name in available():
        data = load(name)
        if section in data:
            lines.append(f"{name}: {data.get('description', '')}")
    return "; ".join(lines)


def add_argument(parser: argparse.ArgumentParser, section: str) -> None:
    """Add ``--preset NAME`` to a command's parser (its help lists the presets)."""
    names = [n for n in available() if section in load(n)]
    parser.add_argument(
        "--preset",
        choices=names,
        default=None,
        help="take the defaults of a named configuration (egain/presets/NAME.toml); flags given on the "
        "command line win. " + help_text(section),
    )
    parser.set_defaults(_preset_parser=parser, _preset_section=section)


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Destinations of the options written on the command line (exact names or unique prefixes)."""
    options = parser._option_string_actions
    found: set[str] = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        action = options.get(name)
        if action is None:
            matches = {a for s, a in options.items() if s.startswith(name)}
            action = matches.pop() if len(matches) == 1 else None
        if action is not None:
            found.add(action.dest)
    return found


def apply(args: argparse.Namespace, argv: list[str] | None = None, method: str | None = None) -> dict:
    """Fill the options not given on the command line from ``args.preset``; returns what was applied.

    ``argv``: the command line (default: the one the CLI recorded). ``method``: also apply the
    preset's ``[SECTION.METHOD]`` table.
    """
    name = getattr(args, "preset", None)
    if not name:
        return {}
    parser: argparse.ArgumentParser = args._preset_parser
    section: str = args._preset_section
    if argv is None:
        import shlex

        from egain.runtime.runinfo import command_line

        argv = shlex.split(command_line())
    data = load(name)
    table = dict(data.get(section, {}))
    per_method = {k: v for k, v in table.items() if isinstance(v, dict)}
    values = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if method and method in per_method:
        values.update(per_method[method])
    explicit = explicit_dests(parser, argv)
    applied = {}
    for key, value in values.items():
        dest = next(
            (d for d in (key, f"option__{key}", f"lambda__{key}") if hasattr(args, d)),
            None,
        )
        if dest is None:
            raise EgainError(f"preset {name!r} sets {key!r}, which is not an option of this command")
        if dest in explicit:
            continue
        setattr(args, dest, value)
        applied[key] = value
    return applied


__all__ = ["PRESETS_DIR", "add_argument", "apply", "available", "explicit_dests", "help_text", "load"]

"""The bundled weights ("zoo"): small models trained on synthfaces by the project's own commands.

Layout: ``egain/zoo/weights/<name>.pt`` (or ``<name>.safetensors``) with a manifest
``egain/zoo/weights/<name>.json`` that says which command made it, at which commit, how long it took,
on what hardware, its sha256 and scores.
"""

from __future__ import annotations

import json
from pathlib import Path

from egain.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: file suffixes a bundled weight may have, in order of preference
WEIGHT_SUFFIXES = (".pt", ".safetensors")


def bundled_path(name: str) -> Path:
    """Path of bundled weight ``name`` (e.g. "gan-swagan-64"); a clear error when it is not bundled."""
    for suffix in WEIGHT_SUFFIXES:
        path = WEIGHTS_DIR / f"{name}{suffix}"
        if path.exists():
            return path
    if not path.exists():
        have = ", ".join(available()) or "none"
        raise CheckpointError(
            f"bundled weights '{name}' are not in this installation ({path}); bundled: {have}. "
            "Train them with the command in docs/zoo.md or pass a checkpoint path."
        )
    return path


def manifest(name: str) -> dict:
    """The manifest dict of bundled weight ``name``."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.exists():
        raise CheckpointError(f"bundled weights '{name}' have no manifest at {path}")
    return json.loads(path.read_text())


def available() -> list[str]:
    return sorted({p.stem for suffix in WEIGHT_SUFFIXES for p in WEIGHTS_DIR.glob(f"*{suffix}")})

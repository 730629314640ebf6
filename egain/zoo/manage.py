"""Adding weights to the zoo and checking them.

``add_to_zoo`` copies a trained export into ``egain/zoo/weights/<name>.pt`` and writes the manifest
from the run's own ``run.json`` (written by the trainer), so the manifest's command, commit, steps and
wall time are measured, not typed. ``verify`` recomputes every sha256.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from egain.errors import CheckpointError
from egain.training.checkpoint import sha256_file
from egain.zoo import WEIGHTS_DIR, available, manifest

MANIFEST_FIELDS = (
    "name",
    "kind",
    "file",
    "sha256",
    "size_bytes",
    "command",
    "commit",
    "steps",
    "wall_time_s",
    "hardware",
    "scores",
    "notes",
    "added",
)


def add_to_zoo(
    name: str,
    weights: str | os.PathLike,
    run_info: str | os.PathLike,
    *,
    kind: str,
    scores: dict[str, Any] | None = None,
    notes: str = "",
    weights_dir: Path = WEIGHTS_DIR,
) -> dict:
    """Copy ``weights`` into the zoo as ``name`` and write its manifest from ``run_info``."""
    weights, run_info = Path(weights), Path(run_info)
    if not weights.is_file():
        raise CheckpointError(f"weights '{weights}' do not exist")
    if not run_info.is_file():
        raise CheckpointError(
            f"run record '{run_info}' does not exist (trainers write run.json in their run folder)"
        )
    info = json.loads(run_info.read_text())
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{name}.pt"
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(weights, tmp)
    os.replace(tmp, target)
    record = {
        "name": name,
        "kind": kind,
        "file": target.name,
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "command": info.get("command"),
        "commit": info.get("commit"),
        "steps": info.get("steps"),
        "wall_time_s": info.get("wall_time_s"),
        "hardware": info.get("hardware"),
        "sessions": info.get("sessions", []),
        "scores": {**info.get("scores", {}), **(scores or {})},
        "notes": notes,
        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (weights_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def verify(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[bool, str]:
    """(ok, message): recompute the sha256 of bundled weight ``name`` and compare with its manifest."""
    path = weights_dir / f"{name}.pt"
    meta = json.loads((weights_dir / f"{name}.json").read_text())
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        return False, f"{name}: sha256 {digest[:12]} does not match manifest {str(meta.get('sha256'))[:12]}"
    return True, f"{name}: ok"


def listing() -> list[dict[str, Any]]:
    rows = []
    for name in available():
        try:
            meta = manifest(name)
        except CheckpointError:
            meta = {"name": name, "notes": "no manifest"}
        rows.append(meta)
    return rows

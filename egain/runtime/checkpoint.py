"""Atomic, resumable checkpoints.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then renamed
over the target: a run killed mid-write leaves the previous checkpoint intact. ``load_checkpoint``
turns every way a file can be wrong (missing, truncated, not a torch file, another model's file)
into one :class:`~egain.errors.CheckpointError` line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from egain.errors import CheckpointError
from egain.runtime.files import atomic_open

FORMAT_KEY = "egain_format"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    with atomic_open(path, "wb", fsync=True) as fh:
        torch.save(obj, fh)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    what: str = "checkpoint",
    required_keys: Iterable[str] = (),
    weights_only: bool = False,
) -> dict:
    """Load a torch checkpoint dict, with a one-line error for every failure mode.

    ``weights_only=False`` is the default because published rosinality files pickle an
    ``argparse.Namespace``; only load files you trust (as with any pickle).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a folder; expected a .pt file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(
            f"{what} '{path}' is corrupt or not a PyTorch file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} '{path}' holds a {type(obj).__name__}; expected a dict of weights")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise CheckpointError(
            f"{what} '{path}' lacks {', '.join(repr(k) for k in missing)} (has: {', '.join(map(str, list(obj)[:12]))})"
        )
    return obj


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.PID.tmp`` files a killed :func:`atomic_torch_save` left in ``folder``.

    Only files of processes that no longer run are removed, so a concurrent writer is never hurt.
    Returns the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

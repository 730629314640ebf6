"""Atomic file writes: the one way egain writes a result file.

Every file a command leaves behind (reports, tables, JSON records, PNGs, checkpoints) is written to
a hidden temporary file beside its target and renamed over it once complete, so a run killed
mid-write leaves either the old file or the new one, never a torn one, and readers that list a
folder (``egain evaluate``, ``list_images``) never see a half-written image: the temporary name
starts with a dot and ends in ``.tmp`` plus the target's suffix (so matplotlib and Pillow still
infer the format from it). The process id in the name keeps two processes writing the same target
from sharing a temporary file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temporary_name(path: Path) -> Path:
    """The hidden temporary file beside ``path`` that :func:`atomic_path` renames over it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    For writers that take a file name (``fig.savefig(tmp)``, ``image.save(tmp)``); the parent
    folder is created first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    fsync: bool = False,
) -> Iterator[IO]:
    """``open`` for writing whose result appears at ``path`` only once the block completes.

    ``fsync`` flushes the data to disk before the rename (checkpoints: survive a power cut too).
    """
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, newline=newline) as fh:
        yield fh
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, newlines as given); returns the path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def json_ready(value: Any) -> Any:
    """``value`` with what strict JSON cannot hold made plain: NaN -> null, +-inf -> "inf"/"-inf",
    paths -> strings, tuples -> lists (a PSNR of +inf or an unscored NaN must not make the file
    unreadable to other tools, which reject the bare ``NaN`` / ``Infinity`` Python writes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def atomic_write_json(
    path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Write ``obj`` as strict JSON (see :func:`json_ready`) with a final newline, atomically."""
    text = json.dumps(json_ready(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy the file ``src`` to ``dst`` atomically (contents only, like ``shutil.copyfile``)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)

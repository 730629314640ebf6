"""JSONL training logs and progress bars with ETA (only on rank 0)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class JsonlLogger:
    """Append one JSON object per line; each record gets wall time. Safe to reopen on resume."""

    def __init__(self, path: str | os.PathLike | None, enabled: bool = True):
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and self.path is not None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"time": round(time.time(), 3)}
        for k, v in record.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            rec[k] = v
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


def progress(
    iterable=None,
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
):
    """A tqdm bar with ETA; silent on non-main ranks or when disabled (e.g. ``EGAIN_NO_PROGRESS=1``)."""
    disable = (not enabled) or os.environ.get("EGAIN_NO_PROGRESS") == "1"
    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        disable=disable,
        unit=unit,
        dynamic_ncols=True,
        file=sys.stderr,
        mininterval=1.0,
    )

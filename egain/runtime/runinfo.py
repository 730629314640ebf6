"""Provenance of a training run: the command, the commit, the hardware and the wall time.

Every trainer keeps a :class:`RunClock` in its checkpoint so that wall time accumulates across
resumed sessions, and writes ``run.json`` next to its outputs. The zoo manifest of a bundled weight
file is made from that record (``egain zoo add``), so "which command, at which commit, how long" is
measured, never typed by hand.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the CLI imports this module for every
    import torch  # command, and torch-free ones (``egain data synthfaces``) must stay torch-free

from egain.runtime.files import atomic_write_json


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit of the egain source tree (``None`` outside a git checkout)."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def hardware_description(device: torch.device | str | None = None) -> str:
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # the thread count is part of the record: it sets the speed, and the float rounding on CPU
    threads = f"; {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return (
        f"{device.type}:{name}; {os.cpu_count()} cpu cores{threads}; torch {torch.__version__}; "
        f"world_size {world}"
    )


_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the command being run (the CLI calls this with ``["egain", *args]``)."""
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str:
    """The command as the user typed it (``egain ...`` when run through the entry point)."""
    if _COMMAND is not None:
        return shlex.join(_COMMAND)
    argv = list(sys.argv)
    prog = Path(argv[0]).name if argv else "egain"
    if prog in ("egain", "__main__.py", "main.py"):
        prog = "egain"
    return shlex.join([prog, *argv[1:]])


class RunClock:
    """Wall time and session list that survive resumes (store ``state_dict()`` in the checkpoint)."""

    def __init__(self) -> None:
        self.previous_seconds = 0.0
        self.sessions: list[dict[str, Any]] = []
        self._start = time.time()
        self._session = {"command": command_line(), "commit": git_commit(), "started": _now()}

    @property
    def seconds(self) -> float:
        return self.previous_seconds + (time.time() - self._start)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "sessions": [*self.sessions, {**self._session, "until": _now()}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous_seconds = float(state.get("seconds", 0.0))
        self.sessions = list(state.get("sessions", []))
        self._start = time.time()


def write_run_info(
    path: str | os.PathLike,
    clock: RunClock,
    *,
    steps: int,
    device: torch.device | str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``run.json``: command, commit, hardware, steps, wall time (all sessions).

    ``command``/``commit`` are the last invocation's: the one that finished the run. A resumed run
    may extend ``--iters`` or change ``--threads``; the last command, run from scratch, trains the
    same run to its end. Every invocation stays listed under ``sessions``.
    """
    state = clock.state_dict()
    info = {
        "command": state["sessions"][-1]["command"] if state["sessions"] else command_line(),
        "commit": state["sessions"][-1]["commit"] if state["sessions"] else git_commit(),
        "sessions": state["sessions"],
        "steps": int(steps),
        "wall_time_s": round(state["seconds"], 1),
        "hardware": hardware_description(device),
        **(extra or {}),
    }
    atomic_write_json(path, info)
    return info


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

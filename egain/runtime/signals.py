"""Stop cleanly on SIGINT/SIGTERM: the trainers save a checkpoint and leave at the end of the step.

A session that ends (or a user's Ctrl-C, or a cluster's pre-emption) sends SIGTERM/SIGINT; losing
the steps since the last periodic checkpoint is avoidable, so every trainer polls a flag instead.
"""

from __future__ import annotations

import signal
from typing import Any

import torch
import torch.distributed as dist


class StopFlag:
    """Context manager: SIGINT/SIGTERM set ``stop``; previous handlers are restored on exit."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not in the main thread
            pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device: torch.device | str = "cpu") -> bool:
        """Whether any rank was signalled (a collective under DDP: every rank must call it)."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.stop
        flag = torch.tensor([1.0 if self.stop else 0.0], device=device)  # nccl needs device tensors
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

"""Seeded blocks: run code from a fixed torch random state and give the caller's state back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block from torch's random state ``seed``, restoring the caller's state afterwards (the
    CPU generator and, on CUDA, ``device``'s). ``None`` leaves the state alone. The inversion loops
    use it so that methods drawing at inference (DSE's encoder noise) give the same result on every
    run, whatever drew random numbers before."""
    device = torch.device(device)
    forked = []
    if device.type == "cuda":
        forked = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=forked, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield

"""Device selection shared by every command: CUDA when present, else CPU."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None``/"auto" picks CUDA when available.

    Under torchrun, "auto" and a bare "cuda" mean this process's GPU, ``cuda:LOCAL_RANK``.
    """
    from egain.errors import EgainError

    if device is None or device == "auto":
        return rank_cuda_device() if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise EgainError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EgainError(
                f"--device {device} asks for a CUDA GPU, but none is visible to torch {torch.__version__} "
                "here; use --device cpu (or auto)"
            )
        if dev.index is None and "LOCAL_RANK" in os.environ:
            return rank_cuda_device()
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EgainError(
                f"--device {device} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise EgainError(f"--device {device} is not available here; use --device cpu (or auto)")
    return dev


def rank_cuda_device() -> torch.device:
    """``cuda:LOCAL_RANK``, or a one-line error when this node has fewer GPUs than processes.

    Without the check, torchrun with more processes per node than GPUs fails deep in CUDA with
    "invalid device ordinal" on the surplus ranks.
    """
    from egain.errors import EgainError

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise EgainError(
            f"process LOCAL_RANK={local_rank} needs cuda:{local_rank}, but this machine has {count} CUDA "
            f"device(s): start at most {count} process(es) per node (torchrun --nproc_per_node {count}), "
            "or pass --device cpu to train on CPU processes (gloo)"
        )
    return torch.device("cuda", local_rank)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)

"""Pieces shared by the small synthfaces trainers (attributes, parsing) and the face trainer.

Each trainer keeps its own loop (losses, logging and exports differ); what is here is the part whose
correctness must not drift between them: batches that depend only on (seed, rank, step), the RNG
state a resume restores, the train-split guard on the data spec, the checkpoint checks of a resume
and the end-of-session rule (checkpoint always, export only when the run is complete).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egain.data.synthfaces import SynthFacesDataset, dataset_from_spec
from egain.errors import CheckpointError, InputError
from egain.runtime.checkpoint import load_checkpoint, load_state_checked
from egain.runtime.distributed import DistInfo, barrier
from egain.runtime.runinfo import RunClock

#: ``--resume`` values that start afresh whatever is in the run folder
NO_RESUME = (None, "", "none", "never")


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of step ``step`` on ``rank``: batches and dropout are functions of it alone."""
    return ((seed * 1_000_003 + rank) * 10_000_019 + step) % (2**63)


class StepBatches(torch.utils.data.Sampler):
    """Batch indices of steps ``start .. end-1``; step ``s``'s batch is a function of (seed, rank, s).

    A resumed session builds it with ``start`` = the checkpoint's step and so draws exactly the
    batches the uninterrupted run would have, in either the preloaded or the streamed mode.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int, start: int, end: int):
        self.n, self.batch, self.seed, self.rank, self.start, self.end = n, batch, seed, rank, start, end

    def indices(self, step: int) -> list[int]:
        gen = torch.Generator().manual_seed(step_seed(self.seed, self.rank, step))
        return torch.randint(0, self.n, (self.batch,), generator=gen).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def rng_state() -> dict:
    """This process's torch, numpy, Python (and CUDA) RNG states, for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA only when the device count is the same)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "python" in state:
        random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def gathered_rng_states(dist_info: DistInfo) -> list:
    """Every rank's RNG state (a collective under DDP: all ranks call it), so that a resumed DDP run
    restores each rank's own stream."""
    states = [rng_state()]
    if dist_info.enabled:
        gathered: list = [None] * dist_info.world_size
        torch.distributed.all_gather_object(gathered, states[0])
        states = gathered
    return states


def adamw_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and kernels only, none on biases and norm scales
    (decaying those pulls normalisation gains toward zero for no regularising benefit)."""
    params = list(module.parameters())
    return [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]


def synthfaces_train_dataset(
    spec: str, size: int, what: str, *, return_labels: bool = False, return_parsing: bool = False
) -> SynthFacesDataset:
    """The training recipe of ``spec`` (``synthfaces:NxK,...``), restricted to the train split.

    ``what`` names the training in messages ("attribute training"). The eval/hard recipes and other
    splits are refused so that held-out figures stay held out.
    """
    body = spec.removeprefix("synthfaces:")
    if "recipe=" in body:
        raise InputError(f"--data {spec}: the eval/hard recipes are held out; train on 'NxK' identities")
    if "split=" not in body:
        body = f"{body},split=train" if body.strip() else "split=train"
    ds = dataset_from_spec(body, size=size, return_labels=return_labels, return_parsing=return_parsing)
    if ds.split != "train":
        raise InputError(f"--data {spec}: {what} uses the train split only, got split={ds.split}")
    if ds.size != size:
        raise InputError(f"--data {spec} renders {ds.size} px but --size is {size}")
    if len(ds) == 0:
        raise InputError(f"--data {spec} selects no train-split identities")
    return ds


def resume(
    resume_arg: str | None,
    ckpt_path: Path,
    *,
    fmt: str,
    what: str,
    config: Any,
    keys: Sequence[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    clock: RunClock,
    dist_info: DistInfo,
) -> int:
    """Load a training checkpoint into ``module``/``optimizer``/``clock`` and this rank's RNG; returns
    the step to continue from (0 when there is nothing to resume).

    ``resume_arg`` is ``--resume``: "auto" (``ckpt_path`` if it exists), a path (must exist) or one of
    :data:`NO_RESUME`. ``what`` names the checkpoint in messages ("attribute training checkpoint");
    the settings named in ``keys`` must equal the checkpoint's (the rest may change between sessions).
    """
    if resume_arg in NO_RESUME:
        return 0
    path = ckpt_path if resume_arg == "auto" else Path(resume_arg)
    if not path.exists():
        if resume_arg != "auto":
            raise CheckpointError(f"--resume '{path}' does not exist")
        return 0
    state = load_checkpoint(path, what=what, required_keys=("model", "optimizer", "step"))
    if state.get("egain_format") != fmt:
        article = "an" if what[:1] in "aeiou" else "a"
        raise CheckpointError(f"'{path}' is not {article} {what}")
    saved, now = state.get("config", {}), asdict(config)
    for key in keys:
        if key in saved and saved[key] != now[key]:
            raise CheckpointError(
                f"cannot resume '{path}': it was trained with {key}={saved[key]!r}, now {now[key]!r}"
            )
    load_state_checked(module, state["model"], f"'{path}' ['model']")
    optimizer.load_state_dict(state["optimizer"])
    step = int(state["step"])
    clock.load_state_dict(state.get("clock", {}))
    rng = state.get("rng", [])
    if dist_info.rank < len(rng):
        set_rng_state(rng[dist_info.rank])
    if dist_info.is_main:
        print(f"resumed from {path} at step {step}")
    return step


def finish_session(
    bar: Any,
    save_checkpoint: Callable[[], None],
    step: int,
    total: int,
    main: bool,
    time_up: bool = False,
) -> bool:
    """End a session's loop: close the bar and checkpoint; True when the run is complete (all steps,
    or the time budget is up) and the caller should evaluate and export.

    A stopped session (``--stop-after``, a signal) says how to continue and waits for every rank, so
    that no rank leaves while another still writes.
    """
    bar.close()
    save_checkpoint()
    if step < total and not time_up:
        if main:
            print(f"stopped at step {step} of {total}; run the same command again to continue")
        barrier()
        return False
    return True

"""Pieces shared by the small synthfaces trainers (attributes, parsing) and the face trainer.

What is here is the part whose correctness must not drift between them: batches that depend only on
(seed, rank, step), the RNG state a resume restores, the train-split guard on the data spec, the
checkpoint checks of a resume, the learning-rate schedule and the end-of-session rule (checkpoint
always, export only when the run is complete). :class:`SupervisedSession` carries the whole session
of the two small supervised trainers (attributes, parsing), whose loops differ only in the loss, the
augmentation and what they log; the face trainer keeps its own loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egain.data.synthfaces import SynthFacesDataset, dataset_from_spec
from egain.errors import CheckpointError, InputError
from egain.runtime.checkpoint import atomic_torch_save, clean_stale_tmp, load_checkpoint, load_state_checked
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from egain.runtime.files import atomic_write_json
from egain.runtime.logging import JsonlLogger, progress
from egain.runtime.runinfo import RunClock, write_run_info
from egain.runtime.signals import StopFlag
from egain.utils.device import seed_everything

#: ``--resume`` values that start afresh whatever is in the run folder
NO_RESUME = (None, "", "none", "never")


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of step ``step`` on ``rank``: batches and dropout are functions of it alone."""
    return ((seed * 1_000_003 + rank) * 10_000_019 + step) % (2**63)


def warmup_cosine_lr(step: int, peak: float, warmup: int, total: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero at step ``total``.

    ``time_fraction`` (elapsed / budget under a wall-time limit) moves the decay along when time runs
    out before the steps do, so a time-limited run still ends annealed; 0 leaves the step schedule.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    t = max((step - warmup) / max(1, total - warmup), time_fraction)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 (the pixels a preloaded training set keeps)."""
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def from_uint8(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> [-1, 1] float on ``device`` (the inverse of :func:`to_uint8` up to rounding)."""
    return x.to(device).float().div_(127.5).sub_(1.0)


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


# --------------------------------------------------------------------------------------------------
# the session of a small supervised trainer (attributes, parsing)


def check_schedule_options(cfg: Any) -> None:
    """``--steps``/``--batch`` and ``--preload`` of a supervised trainer's config."""
    if cfg.steps < 1 or cfg.batch < 2:
        raise InputError(f"need --steps >= 1 and --batch >= 2 (got {cfg.steps}, {cfg.batch})")
    if cfg.preload not in ("auto", "yes", "no"):
        raise InputError(f"--preload must be auto, yes or no, got '{cfg.preload}'")


def check_run_options(cfg: Any) -> None:
    """``--workers`` and ``--out`` of a supervised trainer's config."""
    if cfg.workers < 0:
        raise InputError(f"--workers must be >= 0, got {cfg.workers}")
    if not cfg.out:
        raise InputError("--out (the run folder) is required")


def run_distributed(
    train: Callable[[Any, str | None, DistInfo], dict], cfg: Any, resume_arg: str | None
) -> dict:
    """``train(cfg, resume_arg, dist_info)`` inside the process group of ``cfg.device`` (torchrun or
    a single process), which is torn down however the training ends."""
    dist_info = init_distributed(cfg.device)
    try:
        return train(cfg, resume_arg, dist_info)
    finally:
        cleanup()


class SupervisedSession:
    """One session of a small supervised trainer: run folder, network, AdamW, resume, DDP, checkpoint,
    log, the step loop and the exports.

    The trainer supplies what differs (the network, the batches, one step's loss, the evaluation);
    the order of the RNG draws and collectives is the one both trainers had, so runs and resumes are
    what they were. ``cfg`` is the trainer's config dataclass (``out``, ``seed``, ``steps``, ``batch``,
    ``weight_decay``, ``lr``, ``stop_after``, ``preload``, ``log_every``, ``ckpt_every``,
    ``eval_every``); ``fmt``/``what``/``keys`` are those of :func:`resume`; ``desc`` labels the bar.
    """

    def __init__(self, cfg: Any, dist_info: DistInfo, *, fmt: str, what: str, keys: Sequence[str], desc: str):
        self.cfg, self.dist_info = cfg, dist_info
        self.fmt, self.what, self.keys, self.desc = fmt, what, tuple(keys), desc
        self.device, self.main, self.out = dist_info.device, dist_info.is_main, Path(cfg.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.step = 0
        seed_everything(cfg.seed)
        if self.main:  # half-written files of a run killed mid-save
            clean_stale_tmp(self.out)

    def build(self, make_net: Callable[[], nn.Module], resume_arg: str | None) -> nn.Module:
        """The network (its initial weights a function of the seed alone), its optimiser and clock,
        resumed from the run folder's checkpoint when ``resume_arg`` says so."""
        torch.manual_seed(self.cfg.seed)
        self.net = make_net().to(self.device)
        self.optimizer = torch.optim.AdamW(
            adamw_param_groups(self.net, self.cfg.weight_decay), lr=self.cfg.lr
        )
        self.clock = RunClock()
        self.step = resume(
            resume_arg,
            self.ckpt_path,
            fmt=self.fmt,
            what=self.what,
            config=self.cfg,
            keys=self.keys,
            module=self.net,
            optimizer=self.optimizer,
            clock=self.clock,
            dist_info=self.dist_info,
        )
        return self.net

    def sampler(self, n: int) -> tuple[StepBatches, bool]:
        """This session's batches over ``n`` training items, and whether to preload them (``auto``:
        when the session draws at least as many images as there are)."""
        cfg = self.cfg
        session_end = cfg.steps if cfg.stop_after is None else min(cfg.steps, self.step + cfg.stop_after)
        remaining = (session_end - self.step) * cfg.batch
        preload = cfg.preload == "yes" or (cfg.preload == "auto" and remaining >= n)
        return StepBatches(n, cfg.batch, cfg.seed, self.dist_info.rank, self.step, session_end), preload

    def step_seed(self) -> int:
        """The seed of the current step on this rank (augmentation, dropout)."""
        return step_seed(self.cfg.seed, self.dist_info.rank, self.step)

    def start(self) -> nn.Module:
        """Open the log and return the module to train (the network, in DDP under torchrun)."""
        train_model: nn.Module = self.net
        if self.dist_info.enabled:
            train_model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.logger = JsonlLogger(self.out / "log.jsonl", enabled=self.main)
        return train_model

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def save_checkpoint(self) -> None:
        """``checkpoint.pt`` (every rank calls it: the RNG states are gathered)."""
        states = gathered_rng_states(self.dist_info)
        if self.main:
            atomic_torch_save(
                {
                    "egain_format": self.fmt,
                    "config": asdict(self.cfg),
                    "model": self.net.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "step": self.step,
                    "clock": self.clock.state_dict(),
                    "rng": states,
                },
                self.ckpt_path,
            )

    def log_eval(self, figures: dict) -> None:
        self.logger.log({"kind": "eval", "step": self.step, **figures})

    def run(
        self,
        batches: Iterable[Any],
        train_step: Callable[[Any], tuple[float, torch.Tensor, Any]],
        evaluate: Callable[[], dict],
        *,
        log_terms: Callable[[Any], dict] | None = None,
        time_up: Callable[[], bool] | None = None,
    ) -> bool:
        """The step loop; True when the run is complete and the caller should evaluate and export.

        ``train_step(batch)`` sets the learning rate and returns (lr, loss, aux); ``log_terms(aux)``
        adds to the train records (it may reduce across ranks: every rank calls it); ``evaluate()``
        (rank 0) gives the figures of an eval record; ``time_up()`` ends the run early (after the
        step's checkpoint and eval checks, like a signal but with the export).
        """
        cfg, net, optimizer = self.cfg, self.net, self.optimizer
        self.bar = progress(
            total=cfg.steps, initial=self.step, desc=self.desc, enabled=self.main, unit="step"
        )
        net.train()
        out_of_time = False
        with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
            for batch in batches:
                lr, loss, aux = train_step(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.step += 1
                step = self.step
                self.bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    loss_v = float(all_reduce_mean(loss.detach()).item())
                    terms = log_terms(aux) if log_terms is not None else {}
                    self.bar.set_postfix(loss=f"{loss_v:.3f}")
                    self.logger.log({"kind": "train", "step": step, "lr": lr, "loss": loss_v, **terms})
                if step % cfg.ckpt_every == 0 and step < cfg.steps:
                    self.save_checkpoint()
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                    if self.main:
                        self.log_eval(evaluate())
                    net.train()
                    barrier()
                if stop_flag.agreed(self.device):
                    break
                if time_up is not None and time_up():
                    out_of_time = True
                    break
        return finish_session(self.bar, self.save_checkpoint, self.step, cfg.steps, self.main, out_of_time)

    def held_out(self, data: SynthFacesDataset, held: SynthFacesDataset) -> dict:
        """The held-out set's description in the report (test-split identities of the training world)."""
        return {
            "seed": data.seed,
            "identities": self.cfg.eval_identities,
            "per_identity": self.cfg.eval_per_identity,
            "images": len(held),
            "split": "test",
        }

    def train_record(self, data: SynthFacesDataset, **extra: Any) -> dict:
        """The ``train`` entry of the export: data, steps, training set and config."""
        return {
            "train": {
                "data": self.cfg.data,
                "steps": self.step,
                "train_identities": len(data.identity_ids),
                "train_images": len(data),
                **extra,
                "config": asdict(self.cfg),
            }
        }

    def write_outputs(self, export: dict, artefact: str, result: dict, scores: dict) -> None:
        """The export ``artefact`` (e.g. ``classifier.pt``), ``report.json`` (``result``) and
        ``run.json`` (with ``scores``)."""
        atomic_torch_save(export, self.out / artefact)
        atomic_write_json(self.out / "report.json", result)
        write_run_info(
            self.out / "run.json", self.clock, steps=self.step, device=self.device, extra={"scores": scores}
        )

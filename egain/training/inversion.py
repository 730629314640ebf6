"""The inversion trainer (``egain train``): the loop, DDP, checkpoints, logging, resume, progress.

The trainer knows nothing of any method's internals. A method (a registered
:class:`~egain.methods.InversionMethod`) declares its loss weights and training options, builds
itself for training (:meth:`build_for_training`), names the modules to optimise
(:meth:`trainable_modules`) and computes one step's loss (:meth:`training_step`); the EGAIN family's
step (seeds/000 Eq. 1) lives in :mod:`egain.methods.composition`.

Runs are resumable exactly (weights, optimiser, the method's auxiliary state, data order and every
RNG): ``RUN_DIR/checkpoint.pt`` (full training state) and ``RUN_DIR/model.pt`` (the method, loadable
by ``egain invert`` / ``egain.methods.create``) are written atomically; ``RUN_DIR/log.jsonl`` gets
one record per log interval, ``RUN_DIR/samples/`` validation grids, ``RUN_DIR/run.json`` the
provenance. SIGTERM/SIGINT save at the end of the step and raise :class:`TrainingInterrupted`.
Under ``torchrun`` the step runs in PyTorch DDP (gloo on CPU, nccl on CUDA); the batch size is per
process.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from egain.errors import CheckpointError, EgainError, InputError
from egain.methods import InversionMethod, TrainingContext, generator_io, method_class
from egain.methods.composition import TRAIN_FORMAT
from egain.runtime.checkpoint import atomic_torch_save, clean_stale_tmp, load_checkpoint
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from egain.runtime.logging import JsonlLogger, progress
from egain.utils.device import seed_everything
from egain.utils.images import save_grid


class TrainingInterrupted(EgainError):
    """A run stopped by SIGTERM/SIGINT after saving its state; the same command resumes it."""


@dataclass
class InversionTrainConfig:
    """One training run. ``lambdas`` and ``options`` override the method's declared defaults."""

    method: str
    generator: str
    data: str
    out: str
    iters: int = 10000
    batch: int = 8
    lr: float = 1e-4
    lambdas: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    resume: str | None = "auto"
    device: str = "auto"
    seed: int = 0
    log_every: int = 25
    val_every: int = 500
    ckpt_every: int = 500
    n_val: int = 8
    workers: int = 0
    hflip: bool = True
    method_config: dict[str, Any] = field(default_factory=dict)
    #: restoration/translation training (seeds/004 Alg. 5/6): the encoder sees ``corrupt(x)`` and
    #: the loss compares with the clean ``x`` (see :mod:`egain.applications.restoration`)
    corrupt: str | None = None

    def method_cls(self) -> type[InversionMethod]:
        return method_class(self.method)

    def resolved_lambdas(self) -> dict[str, float]:
        cls = self.method_cls()
        base = dict(cls.loss_weights)
        for k, v in self.lambdas.items():
            if k not in base:
                raise EgainError(
                    f"{self.method} has no loss term {k!r}; its terms: {', '.join(base) or 'none'}"
                )
            if v is not None:
                base[k] = float(v)
        return base

    def resolved_options(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(training options, method config overrides): declared defaults overridden by the run's."""
        cls = self.method_cls()
        declared = {o.name: o for o in cls.training_options}
        unknown = sorted(set(self.options) - set(declared))
        if unknown:
            raise EgainError(
                f"{self.method} has no training option {unknown[0]!r}; its options: {', '.join(declared) or 'none'}"
            )
        options: dict[str, Any] = {}
        config = dict(self.method_config)
        for name, opt in declared.items():
            value = self.options.get(name)
            value = opt.default if value is None else value
            if opt.target == "config":
                if name in self.options and self.options[name] is not None or name not in config:
                    config[name] = value
            else:
                options[name] = value
        return options, config


# ------------------------------------------------------------------------------------------------
# data


def make_dataset(spec: str, size: int, parsing: bool = False) -> Dataset:
    """``DIR`` (any images, resized) or ``synthfaces:SPEC`` (rendered on the fly).

    ``parsing``: items carry their parsing map as a fourth plane (``--corrupt parsing``; see
    :mod:`egain.data.parsing_pairs`); a folder then needs ``X_parsing.png`` beside each image.
    """
    if spec.startswith("synthfaces:") or spec == "synthfaces":
        from egain.data import synthfaces

        if parsing:
            from egain.data.parsing_pairs import ParsingPlanes

            return ParsingPlanes(
                synthfaces.dataset_from_spec(spec.partition(":")[2], size=size, return_parsing=True)
            )
        return synthfaces.dataset_from_spec(spec.partition(":")[2], size=size)
    from egain.data.folder import ImageFolderDataset
    from egain.data.parsing_pairs import ParsingFolderDataset

    if not Path(spec).exists():
        raise InputError(
            f"training data '{spec}' does not exist; expected an image folder or synthfaces:SPEC"
        )
    ds = ParsingFolderDataset(spec, size) if parsing else ImageFolderDataset(spec, size, hflip=False)
    if len(ds) * 3 * size * size <= 1 << 30:  # decode once; removes JPEG/PNG decoding from the loop
        ds.preload(progress_bar=True)
    return ds


def _infinite(loader: DataLoader, sampler: Any) -> Iterator[torch.Tensor]:
    epoch = 0
    while True:
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for batch in loader:
            yield batch[0] if isinstance(batch, list | tuple) else batch
        epoch += 1


# ------------------------------------------------------------------------------------------------
# the loop


class _Step(nn.Module):
    """The differentiable part of one step, as one module (what DDP wraps)."""

    def __init__(self, method: InversionMethod):
        super().__init__()
        self.method = method

    def forward(
        self, x: torch.Tensor, step: int, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if target is None:  # every method's plain signature keeps working
            return self.method.training_step(x, step)
        return self.method.training_step(x, step, target=target)


def build_method(cfg: InversionTrainConfig, device: torch.device) -> InversionMethod:
    """The method a run starts from, built by the method class itself."""
    cls = cfg.method_cls()
    if not cls.trains():
        raise EgainError(
            f"{cfg.method} needs no training: it inverts each image by optimisation "
            f"(use 'egain invert --method {cfg.method}')"
        )
    n_in = 3
    if cfg.corrupt:
        from egain.applications.restoration import Corruption

        n_in = Corruption(cfg.corrupt).input_channels
        if not getattr(cls, "accepts_target", False):
            raise EgainError(
                f"{cfg.method} cannot train with --corrupt: its training step takes no separate clean target "
                "(methods declaring accepts_target = True can)"
            )
        if n_in != 3 and not cls.input_channels_config:
            raise EgainError(
                f"{cfg.method} cannot train with --corrupt {cfg.corrupt}: its encoder takes 3-channel images only "
                f"(the input has {n_in} channels; methods declaring input_channels_config can: e4e, psp, e2style)"
            )
    options, config = cfg.resolved_options()
    if n_in != 3:
        config = _with_input_channels(config, cls.input_channels_config, n_in)
    generator = generator_io.load_generator(cfg.generator, device)
    method = cls.build_for_training(generator, options, device, **config)
    if method.input_nc != n_in:  # e.g. a 3-channel --basic-encoder / --stage-checkpoint replaced it
        raise EgainError(
            f"--corrupt {cfg.corrupt} needs a {n_in}-channel encoder input; the model built has {method.input_nc} "
            "(its initial weights come from an image encoder)"
        )
    return method


def _with_input_channels(config: dict[str, Any], where: str, n: int) -> dict[str, Any]:
    """``config`` with ``"component.key"`` (the method's ``input_channels_config``) set to ``n``."""
    component, _, key = where.partition(".")
    return {**config, component: {**dict(config.get(component) or {}), key: n}}


def train_inversion(cfg: InversionTrainConfig) -> dict[str, Any]:
    """Train (or resume) ``cfg.method``; returns the last logged record."""
    dist = init_distributed(cfg.device)
    try:
        return _train(cfg, dist)
    finally:
        cleanup()


def _train(cfg: InversionTrainConfig, dist: DistInfo) -> dict[str, Any]:
    from egain.runtime.runinfo import RunClock, write_run_info
    from egain.runtime.signals import StopFlag

    device = dist.device
    seed_everything(cfg.seed + dist.rank)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if dist.is_main:
        clean_stale_tmp(out)
    lambdas = cfg.resolved_lambdas()
    options, _ = cfg.resolved_options()

    method = build_method(cfg, device)
    method.setup_training(
        TrainingContext(device, options, lambdas, generator=str(cfg.generator), world_size=dist.world_size)
    )
    modules = method.trainable_modules()
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)

    runner: nn.Module = _Step(method)
    if dist.enabled:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=method.ddp_find_unused_parameters,
        )

    clock = RunClock()
    step = 0
    resume_state: dict[str, Any] | None = None
    if cfg.resume == "auto" and ckpt_path.exists() or cfg.resume not in (None, "auto", "none", ""):
        path = ckpt_path if cfg.resume == "auto" else Path(cfg.resume)
        step, resume_state = _resume(path, cfg, method, optimizer, clock, device)

    corruption = None
    if cfg.corrupt:
        from egain.applications.restoration import Corruption

        corruption = Corruption(cfg.corrupt)
    dataset = make_dataset(cfg.data, method.input_size, parsing=bool(corruption and corruption.needs_maps))
    n_val = min(cfg.n_val, max(1, len(dataset) // 10)) if len(dataset) > 1 else 1
    val = torch.stack([_item(dataset, len(dataset) - 1 - i) for i in range(n_val)]).to(device)
    train_idx = list(range(len(dataset) - n_val)) if len(dataset) > n_val else list(range(len(dataset)))
    train_set = torch.utils.data.Subset(dataset, train_idx)
    if len(train_set) < cfg.batch * dist.world_size:
        raise InputError(
            f"training data has {len(train_set)} images (after {n_val} held out); need at least "
            f"--batch {cfg.batch} per process"
        )
    batches = _Batches(train_set, cfg.batch, dist, cfg.seed, cfg.workers)
    if resume_state is not None:
        batches.load_state_dict(resume_state.get("data", {}), step)
        _set_rng_state(resume_state, device, dist.rank)
    logger = JsonlLogger(out / "log.jsonl", enabled=dist.is_main)
    if dist.is_main:
        (out / "samples").mkdir(parents=True, exist_ok=True)

    val_input = None
    if corruption is not None:  # fixed corruptions of the held-out images, scored against the clean ones
        val_input, val = corruption.split(val.cpu(), torch.Generator().manual_seed(cfg.seed))
        val_input, val = val_input.to(device), val.to(device)
    record: dict[str, Any] = {}
    scores: dict[str, float | int] = {}  # the last validation, for run.json
    method.set_training_mode()
    bar = progress(total=cfg.iters, initial=step, desc=f"train {cfg.method}", enabled=dist.is_main)
    running: dict[str, float] = {}
    interrupted = False
    with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
        while step < cfg.iters:
            x = batches.next().to(device, non_blocking=True)
            if cfg.hflip:
                flip = torch.rand(x.shape[0], device=device) < 0.5
                mirrored = corruption.mirror(x) if corruption is not None else x.flip(-1)
                x = torch.where(flip.view(-1, 1, 1, 1), mirrored, x)
            if corruption is not None:  # the clean batch is the target; after_training_step gets it too
                x_in, x = corruption.split(x)
                loss, terms = runner(x_in, step, x)
            else:
                loss, terms = runner(x, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_training_step(x, step)
            step += 1
            bar.update(1)
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            running["loss"] = running.get("loss", 0.0) + float(loss.detach())
            running["n"] = running.get("n", 0.0) + 1
            if step % cfg.log_every == 0 or step == cfg.iters:
                n = running.pop("n")
                record = {"step": step, **{k: _reduce(v / n, device) for k, v in running.items()}}
                record.update(method.training_info())
                running = {}
                logger.log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if step % cfg.val_every == 0 or step == cfg.iters:
                if val_input is None:
                    vrec, rows = method.validate(val)
                else:
                    vrec, rows = _validate_restoration(method, val_input, val)
                    rows[1] = corruption.picture(rows[1])  # e.g. one-hot parsing maps in colour
                if dist.is_main:
                    save_grid(
                        torch.cat(rows).cpu(), out / "samples" / f"val_{step:06d}.png", nrow=val.shape[0]
                    )
                logger.log({"step": step, **vrec})
                record.update(vrec)
                # the manifest's scores: the last validation (mean squared error in [-1, 1] of the
                # held-out images' reconstructions; "basic" is the basic encoder's alone)
                scores = {**{k: round(v, 5) for k, v in vrec.items()}, "val_images": int(val.shape[0])}
                method.set_training_mode()
            stop_now = stop_flag.agreed(device)
            if step % cfg.ckpt_every == 0 or step == cfg.iters or stop_now:
                # every rank gathers (data order and RNG are per rank); the main rank writes
                state = _training_state(cfg, step, method, optimizer, clock, batches, dist)
                if dist.is_main:
                    atomic_torch_save(state["model"], out / "model.pt")
                    atomic_torch_save(state, ckpt_path)
                    extra: dict = {"method": cfg.method}
                    if scores:
                        extra["scores"] = scores
                    write_run_info(out / "run.json", clock, steps=step, device=device, extra=extra)
            barrier()
            if stop_now:
                interrupted = step < cfg.iters
                break
    bar.close()
    if interrupted:
        raise TrainingInterrupted(
            f"training stopped by a signal at step {step} of {cfg.iters}; its state is saved in {ckpt_path} "
            "and the same command resumes it"
        )
    return record


class _Batches:
    """An endless, resumable stream of training batches.

    The order is a function of (seed, epoch, rank) alone, so a resumed run draws exactly the
    batches the uninterrupted run would have drawn: the position is the step count.
    """

    def __init__(self, dataset: Dataset, batch: int, dist: DistInfo, seed: int, workers: int):
        self.dataset, self.batch, self.dist, self.seed, self.workers = dataset, batch, dist, seed, workers
        self.per_epoch = len(dataset) // (batch * dist.world_size)
        self.position = 0  # batches drawn so far
        self._iter: Iterator | None = None

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        perm = torch.randperm(len(self.dataset), generator=g).tolist()
        n = self.per_epoch * self.batch * self.dist.world_size
        return perm[self.dist.rank : n : self.dist.world_size]

    def _start(self) -> None:
        epoch, offset = divmod(self.position, self.per_epoch)
        order = self._order(epoch)[offset * self.batch :]
        loader = DataLoader(
            torch.utils.data.Subset(self.dataset, order),
            batch_size=self.batch,
            shuffle=False,
            drop_last=True,
            num_workers=self.workers,
            # its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run (which creates one more) would drift from the uninterrupted one
            generator=torch.Generator().manual_seed(self.seed * 1000003 + epoch),
        )
        self._iter = iter(loader)

    def next(self) -> torch.Tensor:
        if self._iter is None:
            self._start()
        try:
            item = next(self._iter)
        except StopIteration:
            self._start()
            item = next(self._iter)
        self.position += 1
        if self.position % self.per_epoch == 0:
            self._iter = None  # the next epoch starts with a fresh order
        return item[0] if isinstance(item, list | tuple) else item

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: Mapping[str, int], step: int) -> None:
        self.position = int(state.get("position", step))
        self._iter = None


@torch.no_grad()
def _validate_restoration(
    method: InversionMethod, inputs: torch.Tensor, clean: torch.Tensor
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Restoration validation: L2 of the restored images against the clean ones; rows clean, input, output."""
    rec = method.invert(inputs).reconstruction
    return {"val_l2": float(torch.nn.functional.mse_loss(rec, clean))}, [clean, inputs, rec]


def _item(ds: Dataset, i: int) -> torch.Tensor:
    item = ds[i]
    return item[0] if isinstance(item, list | tuple) else item


def _reduce(v: float, device: torch.device) -> float:
    return float(all_reduce_mean(torch.tensor(v, device=device)))


def _plain_config(cfg: InversionTrainConfig) -> dict[str, Any]:
    """The run config with objects (e.g. an embedder passed from Python) replaced by their repr."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v if isinstance(v, str | int | float | bool | type(None)) else repr(v)

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's generators: torch (CPU and CUDA), numpy and Python's ``random``."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        # hflip, ADA's warps and the latent discriminator draw on the device's own stream
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _all_rng_states(device: torch.device, dist: DistInfo) -> list[dict[str, Any]]:
    mine = _rng_state(device)
    if not dist.enabled:
        return [mine]
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, mine)
    return states


def _set_rng_state(state: Mapping[str, Any], device: torch.device, rank: int) -> None:
    states = state.get("rng")
    if not isinstance(states, list) or rank >= len(states):
        return
    mine = states[rank]
    torch.set_rng_state(mine["torch"].cpu())
    np.random.set_state(("MT19937", mine["numpy"].numpy().astype(np.uint32), mine["numpy_pos"], 0, 0.0))
    version, internal, gauss = mine["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in mine and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"].cpu(), device)


def _training_state(cfg, step, method, optimizer, clock, batches, dist: DistInfo) -> dict[str, Any]:
    model = method.checkpoint_dict({"train": {"step": step, "config": _plain_config(cfg)}})
    return {
        "egain_format": TRAIN_FORMAT,
        "step": step,
        "config": _plain_config(cfg),
        "model": model,
        "optimizer": optimizer.state_dict(),
        "aux": method.training_state(),
        "clock": clock.state_dict(),
        "data": batches.state_dict(),
        "rng": _all_rng_states(method.device, dist),
    }


def _resume(path, cfg, method, optimizer, clock, device) -> tuple[int, dict[str, Any]]:
    state = load_checkpoint(
        path, map_location=device, what="training checkpoint", required_keys=("egain_format",)
    )
    if state["egain_format"] != TRAIN_FORMAT:
        raise CheckpointError(
            f"'{path}' is not an inversion training checkpoint (format {state['egain_format']!r})"
        )
    if state["config"]["method"] != cfg.method:
        raise CheckpointError(
            f"run '{cfg.out}' trains '{state['config']['method']}', not '{cfg.method}'; use another --out or the same --method"
        )
    model = state["model"]
    try:
        missing, unexpected = method.load_state_dict(model["state_dict"], strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"'{path}' does not fit this model ({str(exc).splitlines()[-1].strip()})"
        ) from None
    missing = [k for k in missing if not k.startswith("generator.")]
    if missing or unexpected:
        raise CheckpointError(
            f"'{path}' does not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    try:
        optimizer.load_state_dict(state["optimizer"])
        method.load_training_state(state.get("aux") or {})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"'{path}' was written with other training options ({exc})") from None
    clock.load_state_dict(state.get("clock", {}))
    return int(state["step"]), state


__all__ = [
    "InversionTrainConfig",
    "TrainingInterrupted",
    "build_method",
    "make_dataset",
    "train_inversion",
]

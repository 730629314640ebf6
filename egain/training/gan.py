"""The StyleGAN2 / SWAGAN trainer behind ``egain gan train``.

The algorithm is StyleGAN2's (Karras et al. 2020) with the defaults of rosinality's ``train.py``:
non-saturating logistic loss; lazy R1 on reals (gamma 10, every 16 D steps); lazy path-length
regularisation (weight 2, every 4 G steps, EMA decay 0.01, half batch); style mixing with p 0.9;
Adam(lr 0.002, betas (0, 0.99)) with lr/betas corrected for the lazy intervals; an EMA copy of G
whose half-life is ``ema_kimg`` thousand images (10k per 32 images of batch, ramped up over the
first 5% of the images seen, as in StyleGAN2-ADA). Optional augmentation for small data: DiffAugment
or adaptive (ADA) augmentation, applied to every image the discriminator sees.

Runs are robust for long CPU jobs: the checkpoint (``RUN_DIR/checkpoint.pt``) is written atomically
and holds both optimisers, the EMA, the augmentation state and every rank's RNG state, and the data
order is a pure function of ``(seed, step)``; so a killed run continued with ``--resume auto``
reproduces the uninterrupted run exactly on CPU. SIGINT/SIGTERM make the run save and stop cleanly.

Distributed: under ``torchrun`` every rank draws its own share of the batch (``--batch`` is the
global batch) through a ``DistributedSampler`` and gradients are averaged with one all-reduce per
optimiser step. We average gradients explicitly instead of wrapping G and D in
``DistributedDataParallel`` because the lazy regularisers differentiate through gradients
(``create_graph``) and touch only part of the parameters, and the generator is driven through
``mapping``/``synthesize`` rather than ``forward`` -- all cases where DDP's autograd-hook reducer needs
workarounds; the explicit all-reduce is the same arithmetic and keeps every rank bit-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from egain.data.folder import ImageFolderDataset, uint8_to_float
from egain.errors import CheckpointError, EgainError, InputError
from egain.losses.adversarial import (
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_regularization_adam_params,
    path_length_penalty,
    r1_penalty,
)
from egain.runtime.checkpoint import atomic_torch_save, clean_stale_tmp, load_checkpoint, load_state_checked
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, broadcast_module, cleanup
from egain.runtime.files import atomic_path, atomic_write_json, atomic_write_text
from egain.runtime.logging import JsonlLogger, progress
from egain.runtime.runinfo import RunClock, write_run_info
from egain.runtime.signals import StopFlag
from egain.training.augment import AUGMENT_KINDS, build_augment
from egain.utils.images import save_grid

GAN_TRAIN_FORMAT = "gan-train"
ARCHS = ("stylegan2", "swagan")
CHECKPOINT_NAME = "checkpoint.pt"
GENERATOR_NAME = "generator.pt"
PRELOAD_AUTO_BYTES = 2 << 30  # preload datasets up to 2 GiB of uint8 pixels


@dataclass
class GanTrainConfig:
    """Every option of ``egain gan train``; saved in the checkpoint as ``args``."""

    data: str
    out: str
    arch: str = "stylegan2"
    size: int = 64
    # generator / discriminator shape (None = the generator package's default)
    style_dim: int | None = None
    n_mlp: int | None = None
    channel_base: int | None = None
    channel_max: int | None = None
    channel_multiplier: int | None = None
    # optimisation (rosinality train.py defaults)
    batch: int = 16  # global batch over all processes
    iters: int = 800_000
    lr: float = 0.002
    r1: float | str = 10.0  # "auto": StyleGAN2-ADA's heuristic 0.0002 * size^2 / batch
    d_reg_every: int = 16
    path_regularize: float = 2.0
    path_batch_shrink: int = 2
    path_decay: float = 0.01
    g_reg_every: int = 4
    mixing: float = 0.9
    ema_kimg: float | None = None  # None: 10 * batch / 32 (StyleGAN2-ADA)
    ema_rampup: float | None = 0.05
    # data and augmentation
    mirror: bool = False
    augment: str = "none"
    augment_p: float = 0.0
    ada_target: float | None = 0.6
    ada_kimg: float = 500.0
    ada_interval: int = 4
    diffaug_policy: str = "color,translation,cutout"
    preload: str = "auto"  # auto | yes | no
    workers: int = 2
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    resume: str | None = None  # None | "auto" | path
    ckpt_every: int = 1000
    keep_snapshots: int = 0
    sample_every: int = 1000
    n_sample: int = 64
    log_every: int = 50
    stop_after: int | None = None  # stop (as if killed, no save) after this many completed steps
    # Wall-time budget: once this many minutes have passed since the trainer started, the run ends
    # at the step in progress as if --iters had been reached there (checkpoint, samples,
    # generator.pt / --export). For fixed-length GPU slots, where the step rate is unknown up front.
    max_minutes: float | None = None
    export: str | None = None

    def generator_config(self) -> dict[str, Any]:
        """The config dict for ``build_generator``/``build_discriminator`` (``arch``/``size`` included)."""
        cfg: dict[str, Any] = {"arch": self.arch, "size": self.size}
        for key in ("style_dim", "n_mlp", "channel_base", "channel_max", "channel_multiplier"):
            value = getattr(self, key)
            if value is not None:
                cfg[key] = value
        return cfg

    def discriminator_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"arch": self.arch, "size": self.size}
        for key in ("channel_base", "channel_max", "channel_multiplier"):
            value = getattr(self, key)
            if value is not None:
                cfg[key] = value
        return cfg


def validate_config(cfg: GanTrainConfig) -> None:
    """Reject impossible settings with one line each, before any model is built."""
    if cfg.arch not in ARCHS:
        raise EgainError(f"unknown --arch '{cfg.arch}'; expected one of {', '.join(ARCHS)}")
    if cfg.size < 16 or cfg.size & (cfg.size - 1):
        raise EgainError(f"--size must be a power of two >= 16 (e.g. 64, 256), got {cfg.size}")
    if cfg.batch < 1:
        raise EgainError(f"--batch must be >= 1, got {cfg.batch}")
    if cfg.iters < 0:
        raise EgainError(f"--iters must be >= 0, got {cfg.iters}")
    if cfg.augment not in AUGMENT_KINDS:
        raise EgainError(f"unknown --augment '{cfg.augment}'; expected one of {', '.join(AUGMENT_KINDS)}")
    if cfg.preload not in ("auto", "yes", "no"):
        raise EgainError(f"--preload must be auto, yes or no, got '{cfg.preload}'")
    if not 0.0 <= cfg.mixing <= 1.0:
        raise EgainError(f"--mixing is a probability in [0, 1], got {cfg.mixing}")
    if cfg.device not in ("auto", "cpu") and not cfg.device.startswith("cuda"):
        raise EgainError(f"--device must be auto, cpu or cuda[:N], got '{cfg.device}'")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise EgainError(f"--device {cfg.device} asks for CUDA but none is available; use --device cpu")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise EgainError(f"--max-minutes must be > 0, got {cfg.max_minutes}")
    if isinstance(cfg.r1, str) and cfg.r1 != "auto":
        raise EgainError(f"--r1 must be a number or 'auto', got '{cfg.r1}'")
    for name in (
        "d_reg_every",
        "g_reg_every",
        "ckpt_every",
        "sample_every",
        "n_sample",
        "log_every",
        "path_batch_shrink",
    ):
        if getattr(cfg, name) < 1:
            raise EgainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")


def r1_gamma(cfg: GanTrainConfig) -> float:
    if cfg.r1 == "auto":
        return 0.0002 * cfg.size**2 / cfg.batch
    return float(cfg.r1)


def ema_beta(cfg: GanTrainConfig, images_seen: int) -> float:
    """EMA decay per step for a half-life of ``ema_kimg`` thousand images (with ramp-up)."""
    ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else 10.0 * cfg.batch / 32) * 1000
    if cfg.ema_rampup:
        ema_nimg = min(ema_nimg, images_seen * cfg.ema_rampup)
    return 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))


# --------------------------------------------------------------------------------------------------
# data


class _Uint8Items(torch.utils.data.Dataset):
    """Serve uint8 items to DataLoader workers: 4x less inter-process traffic than float."""

    def __init__(self, dataset: ImageFolderDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        return self.dataset.load_uint8(index)


class IndexStream:
    """Endless batches of dataset indices for one rank, resumable at any step.

    Epoch ``e`` is the ``DistributedSampler`` permutation for ``(seed, e)`` restricted to this rank;
    epochs are concatenated, so batches straddle epoch boundaries and a dataset smaller than a batch
    still works. Batch ``k`` therefore depends only on ``(seed, k)``: a resumed run sees the data the
    killed run would have seen.
    """

    def __init__(self, n_items: int, batch: int, rank: int, world: int, seed: int, start_batch: int = 0):
        self.sampler = torch.utils.data.DistributedSampler(
            range(n_items), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.batch = batch
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = len(self.sampler)
        epoch, offset = divmod(self.start_batch * self.batch, per_epoch)
        buf: list[int] = []
        while True:
            self.sampler.set_epoch(epoch)
            buf.extend(list(self.sampler)[offset:])
            offset, epoch = 0, epoch + 1
            while len(buf) >= self.batch:
                yield buf[: self.batch]
                buf = buf[self.batch :]


def _one_line(exc: BaseException) -> str:
    """DataLoader re-raises worker errors with the worker's traceback in the message; keep the cause."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    for prefix in ("egain.errors.InputError: ", "egain.errors.EgainError: ", "InputError: "):
        if last.startswith(prefix):
            last = last[len(prefix) :]
    return last


def real_batches(
    dataset: ImageFolderDataset,
    batch: int,
    dist_info: DistInfo,
    seed: int,
    start_batch: int,
    workers: int,
) -> Iterator[Tensor]:
    """uint8 (batch, 3, S, S) batches for this rank, from memory or from DataLoader workers."""
    stream = IndexStream(len(dataset), batch, dist_info.rank, dist_info.world_size, seed, start_batch)
    if dataset.preloaded:
        cache = dataset.preload()
        for idx in stream:
            yield cache[torch.as_tensor(idx)]
        return
    loader = torch.utils.data.DataLoader(
        _Uint8Items(dataset),
        batch_sampler=stream,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=dist_info.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        # own generator: creating the loader must not consume the (checkpointed) global RNG
        generator=torch.Generator().manual_seed(seed + dist_info.rank),
    )
    it = iter(loader)
    while True:
        try:
            yield next(it)
        except EgainError as exc:
            raise InputError(_one_line(exc)) from None


# --------------------------------------------------------------------------------------------------
# models and steps


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def sync_gradients(module: nn.Module, dist_info: DistInfo) -> None:
    """Average the gradients of ``module`` over ranks with a single flat all-reduce."""
    if not dist_info.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist_info.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    ema_p = list(ema.parameters())
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def sample_wplus(G: nn.Module, n: int, mixing: float, device: torch.device) -> Tensor:
    """W+ latents (n, n_latent, style_dim) from fresh z; style mixing with probability ``mixing``.

    As in rosinality's trainer one decision and one crossover layer per batch: layers before the
    crossover take w1, the others w2.
    """
    n_latent, dim = G.n_latent, G.style_dim
    if mixing > 0 and torch.rand(()).item() < mixing:
        z = torch.randn(2 * n, dim, device=device)
        w = G.mapping(z)
        cut = int(torch.randint(1, n_latent, ()).item())
        return torch.cat(
            [w[:n].unsqueeze(1).repeat(1, cut, 1), w[n:].unsqueeze(1).repeat(1, n_latent - cut, 1)], dim=1
        )
    w = G.mapping(torch.randn(n, dim, device=device))
    return w.unsqueeze(1).repeat(1, n_latent, 1)


def state_hash(module: nn.Module) -> str:
    """sha256 over the exact bytes of a module's state (to compare ranks or runs)."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_objects(obj: Any, dist_info: DistInfo) -> list[Any]:
    if not dist_info.enabled:
        return [obj]
    out: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(out, obj)
    return out


def _resolve_resume(cfg: GanTrainConfig, out: Path) -> Path | None:
    default = out / CHECKPOINT_NAME
    if cfg.resume is None:
        if default.exists():
            raise EgainError(
                f"'{default}' already exists; pass --resume auto to continue that run or choose a new --out"
            )
        return None
    if cfg.resume == "auto":
        return default if default.exists() else None
    path = Path(cfg.resume)
    if not path.exists():
        raise CheckpointError(f"--resume checkpoint '{path}' does not exist (expected a {CHECKPOINT_NAME})")
    return path


def _logged_seconds(log: Path) -> float:
    """Wall time covered by a run's log.jsonl (sum over its sessions, each start..last record)."""
    if not log.exists():
        return 0.0
    total, first, last = 0.0, None, None
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        t = rec.get("time")
        if t is None:
            continue
        if rec.get("event") in ("start", "resume") and first is not None:
            total += last - first
            first = None
        first = t if first is None else first
        last = t
    if first is not None:
        total += last - first
    return total


def _load_train_checkpoint(path: Path) -> dict:
    ckpt = load_checkpoint(
        path, what="GAN training checkpoint", required_keys=("config", "g", "d", "g_ema", "step")
    )
    if ckpt.get("egain_format") != GAN_TRAIN_FORMAT:
        raise CheckpointError(
            f"'{path}' is not an egain GAN training checkpoint (egain_format={ckpt.get('egain_format')!r}, "
            f"expected '{GAN_TRAIN_FORMAT}')"
        )
    return ckpt


def _decide_preload(cfg: GanTrainConfig, dataset: ImageFolderDataset) -> bool:
    if cfg.preload == "yes":
        return True
    if cfg.preload == "no":
        return False
    return len(dataset) * 3 * cfg.size * cfg.size <= PRELOAD_AUTO_BYTES


def _set_threads(cfg: GanTrainConfig, device: torch.device) -> str | None:
    """Set torch's CPU threads; returns a warning when the machine is already busy.

    Multi-threaded CPU ops on an oversubscribed machine stall at every parallel region (measured
    here: 17x slower per step with 2 threads than with 1 at a load of 10 on 2 cores), so a busy
    machine is worth a warning that names ``--threads 1``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if local_world > 1:  # processes on one host share its cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if device.type != "cpu" or torch.get_num_threads() <= 1 or not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load >= cores:
        return (
            f"the machine is busy (load {load:.1f} on {cores} cores) and torch uses "
            f"{torch.get_num_threads()} threads per process; multi-threaded ops stall under "
            "oversubscription -- consider --threads 1"
        )
    return None


def train_gan(cfg: GanTrainConfig, dist_info: DistInfo | None = None) -> dict[str, Any]:
    """Run (or continue) a GAN training run; returns a summary (final step, paths, hashes).

    Must be called on every rank when distributed (``dist_info`` from ``init_distributed``).
    """
    from egain.runtime.distributed import init_distributed

    validate_config(cfg)
    own_dist = dist_info is None
    if dist_info is None:
        dist_info = init_distributed(cfg.device)
    try:
        return _train(cfg, dist_info)
    finally:
        if own_dist:
            cleanup()


def _now() -> float:
    """Clock of the wall-time budget (a function of its own so tests can drive it)."""
    return time.monotonic()


def _time_up(deadline: float | None, di: DistInfo) -> bool:
    """Whether the wall-time budget is spent, agreed by all ranks (one stops, all stop)."""
    if deadline is None:
        return False
    up = _now() >= deadline
    if not di.enabled:
        return up
    flag = torch.tensor([1.0 if up else 0.0], device=di.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def _train(cfg: GanTrainConfig, di: DistInfo) -> dict[str, Any]:
    device = di.device
    deadline = _now() + 60.0 * cfg.max_minutes if cfg.max_minutes else None
    thread_warning = _set_threads(cfg, device)
    out = Path(cfg.out)
    if di.is_main:  # half-written files of a run killed mid-save
        clean_stale_tmp(out)
        clean_stale_tmp(out / "samples")
    resume_path = _resolve_resume(cfg, out)
    if cfg.batch % di.world_size:
        raise EgainError(
            f"--batch {cfg.batch} must be divisible by the number of processes ({di.world_size})"
        )
    batch_local = cfg.batch // di.world_size

    ckpt = _load_train_checkpoint(resume_path) if resume_path is not None else None
    g_config = dict(ckpt["config"]) if ckpt else cfg.generator_config()
    d_config = dict(ckpt.get("d_config", g_config)) if ckpt else cfg.discriminator_config()
    if ckpt and (g_config.get("arch"), g_config.get("size")) != (cfg.arch, cfg.size):
        raise EgainError(
            f"checkpoint '{resume_path}' trains a {g_config.get('arch')} at {g_config.get('size')} px; "
            f"the command asks for {cfg.arch} at {cfg.size} px (pass the same --arch/--size)"
        )

    dataset = ImageFolderDataset(cfg.data, cfg.size)
    if _decide_preload(cfg, dataset):
        dataset.preload(progress_bar=di.is_main)

    import egain.generators as gen_api  # late: keeps 'egain gan --help' light

    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    g_build = {k: v for k, v in g_config.items() if k not in ("arch", "size")}
    d_build = {k: v for k, v in d_config.items() if k not in ("arch", "size")}
    G = gen_api.build_generator(g_config["arch"], g_config["size"], **g_build).to(device)
    D = gen_api.build_discriminator(d_config["arch"], d_config["size"], **d_build).to(device)
    G_ema = gen_api.build_generator(g_config["arch"], g_config["size"], **g_build).to(device)
    G_ema.load_state_dict(G.state_dict())
    if not ckpt:  # store the resolved configs (channel widths included), as the generator package does
        g_config, d_config = dict(G.config), dict(D.config)
    G.train()
    D.train()
    G_ema.eval()
    requires_grad(G_ema, False)

    g_opt = torch.optim.Adam(
        G.parameters(), **lazy_regularization_adam_params(cfg.lr, (0.0, 0.99), cfg.g_reg_every)
    )
    d_opt = torch.optim.Adam(
        D.parameters(), **lazy_regularization_adam_params(cfg.lr, (0.0, 0.99), cfg.d_reg_every)
    )
    augment = build_augment(
        cfg.augment,
        policy=cfg.diffaug_policy,
        p=cfg.augment_p,
        target=cfg.ada_target,
        kimg=cfg.ada_kimg,
        interval=cfg.ada_interval,
    )
    fixed_z = torch.randn(cfg.n_sample, G.style_dim, generator=torch.Generator().manual_seed(cfg.seed))
    step = 0
    mean_path_length = torch.zeros((), device=device)
    if ckpt:
        load_state_checked(G, ckpt["g"], f"'{resume_path}' ['g']")
        load_state_checked(D, ckpt["d"], f"'{resume_path}' ['d']")
        load_state_checked(G_ema, ckpt["g_ema"], f"'{resume_path}' ['g_ema']")
        if "g_optim" in ckpt:
            g_opt.load_state_dict(ckpt["g_optim"])
            d_opt.load_state_dict(ckpt["d_optim"])
        augment.load_state_dict(ckpt.get("augment", {}))
        mean_path_length = torch.as_tensor(float(ckpt.get("mean_path_length", 0.0)), device=device)
        fixed_z = ckpt.get("fixed_z", fixed_z)
        step = int(ckpt["step"])
    else:
        broadcast_module(G)
        broadcast_module(D)
        broadcast_module(G_ema)
    fixed_z = fixed_z.to(device)
    start_step = step

    batches = real_batches(dataset, batch_local, di, cfg.seed, step, cfg.workers)
    rng_states = ckpt.get("rng") if ckpt else None
    if rng_states and len(rng_states) == di.world_size:
        _set_rng_state(rng_states[di.rank])
    else:  # a fresh run, or a resume on a different number of processes
        seed = cfg.seed * 1000 + di.rank + 7919 * step
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    logger = JsonlLogger(out / "log.jsonl", enabled=di.is_main)
    clock = RunClock()
    if ckpt and "clock" in ckpt:
        clock.load_state_dict(ckpt["clock"])
    elif ckpt:  # a checkpoint from before the clock was stored: its wall time comes from the log
        clock.previous_seconds = _logged_seconds(out / "log.jsonl")
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        if thread_warning:
            print(f"egain gan train: warning: {thread_warning}", file=sys.stderr)
            logger.log({"event": "warning", "message": thread_warning})
        logger.log(
            {
                "event": "resume" if ckpt else "start",
                "step": step,
                "images": len(dataset),
                "world_size": di.world_size,
                "device": str(device),
                "generator": g_config,
            }
        )

    gamma = r1_gamma(cfg)
    path_batch = max(1, batch_local // cfg.path_batch_shrink)
    target_steps = cfg.iters
    stop_at = min(target_steps, cfg.stop_after) if cfg.stop_after is not None else target_steps
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def record(name: str, value: Tensor) -> None:
        v = value.detach().float()
        sums[name] = sums[name] + v if name in sums else v
        counts[name] = counts.get(name, 0) + 1

    def save_checkpoint(at_step: int) -> None:
        rng = _gather_objects(_rng_state(), di)  # collective: every rank calls it
        if not di.is_main:
            return
        state = {
            "egain_format": GAN_TRAIN_FORMAT,
            "config": g_config,
            "d_config": d_config,
            "g": G.state_dict(),
            "d": D.state_dict(),
            "g_ema": G_ema.state_dict(),
            "g_optim": g_opt.state_dict(),
            "d_optim": d_opt.state_dict(),
            "step": at_step,
            "images_seen": at_step * cfg.batch,
            "mean_path_length": float(mean_path_length),
            "augment": augment.state_dict(),
            "ada_aug_p": float(augment.p),
            "fixed_z": fixed_z.cpu(),
            "rng": rng,
            "world_size": di.world_size,
            "args": dataclasses.asdict(cfg),
            "clock": clock.state_dict(),
        }
        atomic_torch_save(state, out / CHECKPOINT_NAME)
        write_run_info(
            out / "run.json",
            clock,
            steps=at_step,
            device=device,
            extra={"images_seen": at_step * cfg.batch, "generator": g_config},
        )
        plot_training_log(out / "log.jsonl", out / "losses.png")
        if cfg.keep_snapshots > 0:
            snaps = out / "snapshots"
            atomic_torch_save(state, snaps / f"{at_step:06d}.pt")
            for old in sorted(snaps.glob("[0-9]*.pt"))[: -cfg.keep_snapshots]:
                old.unlink()

    def write_samples(at_step: int) -> None:
        if not di.is_main:
            return
        with torch.no_grad():
            imgs = torch.cat(
                [
                    G_ema.synthesize(G_ema.mapping(z), noise_mode="const").cpu()
                    for z in fixed_z.split(max(1, batch_local))
                ]
            )
        save_grid(imgs, out / "samples" / f"{at_step:06d}.png")

    first_real = next(batches)
    if di.is_main and not ckpt:
        save_grid(uint8_to_float(first_real[: cfg.n_sample]), out / "reals.png")
    batches_iter = _chain_first(first_real, batches)

    bar = progress(total=target_steps, initial=step, desc="gan train", enabled=di.is_main, unit="step")
    t_last, step_last = time.perf_counter(), step
    stopped_by_signal = False
    with StopFlag() as stop_flag:
        while step < stop_at:
            real = uint8_to_float(next(batches_iter)).to(device, non_blocking=True)
            if cfg.mirror:
                flip = torch.rand(real.shape[0], 1, 1, 1) < 0.5
                real = torch.where(flip.to(device), real.flip(3), real)

            # ---- discriminator: logistic loss on augmented reals and fakes
            requires_grad(G, False)
            requires_grad(D, True)
            with torch.no_grad():
                fake = G.synthesize(sample_wplus(G, batch_local, cfg.mixing, device), noise_mode="random")
            fake_logits = D(augment(fake))
            real_logits = D(augment(real))
            d_loss = d_logistic_loss(real_logits, fake_logits)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            sync_gradients(D, di)
            d_opt.step()
            augment.observe(real_logits)
            augment.step(cfg.batch)
            record("d_loss", d_loss)
            record("real_score", real_logits.mean())
            record("fake_score", fake_logits.mean())

            # ---- lazy R1 on (augmented) reals. The penalty is taken w.r.t. the augmented image,
            # which avoids a double backward through the augmentation's resampling.
            if gamma > 0 and step % cfg.d_reg_every == 0:
                real_in = augment(real).detach().requires_grad_(True)
                logits = D(real_in)
                r1 = r1_penalty(logits, real_in)
                d_opt.zero_grad(set_to_none=True)
                # ``0 * logits``: every D parameter joins the graph, as in the reference trainer
                (gamma / 2 * r1 * cfg.d_reg_every + 0 * logits[0].sum()).backward()
                sync_gradients(D, di)
                d_opt.step()
                record("r1", r1)

            # ---- generator: non-saturating loss
            requires_grad(G, True)
            requires_grad(D, False)
            fake = G.synthesize(sample_wplus(G, batch_local, cfg.mixing, device), noise_mode="random")
            fake_logits = D(augment(fake))
            g_loss = g_nonsaturating_loss(fake_logits)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            sync_gradients(G, di)
            g_opt.step()
            record("g_loss", g_loss)

            # ---- lazy path-length regularisation on a reduced batch
            if cfg.path_regularize > 0 and step % cfg.g_reg_every == 0:
                wplus = sample_wplus(G, path_batch, cfg.mixing, device)
                fake = G.synthesize(wplus, noise_mode="random")
                penalty, mean_path_length, lengths = path_length_penalty(
                    fake, wplus, mean_path_length, cfg.path_decay, reduce=all_reduce_mean
                )
                g_opt.zero_grad(set_to_none=True)
                weighted = cfg.path_regularize * cfg.g_reg_every * penalty
                (weighted + 0 * fake[0, 0, 0, 0]).backward()  # biases of to_rgb get a (zero) grad too
                sync_gradients(G, di)
                g_opt.step()
                record("path_loss", penalty)
                record("path_length", lengths.mean())

            step += 1
            beta = ema_beta(cfg, step * cfg.batch)
            update_ema(G_ema, G, beta)
            bar.update(1)

            stop_now = stop_flag.agreed(device)
            if not stop_now and _time_up(deadline, di):
                # the budget ends the run here: what follows treats this step as the last one
                target_steps = stop_at = step
                if di.is_main:
                    logger.log({"event": "time_budget", "step": step, "max_minutes": cfg.max_minutes})

            if step % cfg.log_every == 0 or step == stop_at or stop_now:
                now = time.perf_counter()
                names = sorted(sums)
                means = (
                    torch.stack([sums[k] / counts[k] for k in names])
                    if names
                    else torch.zeros(0, device=device)
                )
                means = all_reduce_mean(means).cpu()
                rec: dict[str, Any] = {"step": step, "kimg": step * cfg.batch / 1000}
                rec.update({k: round(float(v), 6) for k, v in zip(names, means.tolist(), strict=True)})
                rec["mean_path_length"] = round(float(mean_path_length), 6)
                rec["ema_beta"] = beta
                rec.update(augment.stats())
                rec["sec_per_step"] = round((now - t_last) / max(1, step - step_last), 5)
                logger.log(rec)
                bar.set_postfix(
                    d=f"{rec.get('d_loss', 0):.3f}", g=f"{rec.get('g_loss', 0):.3f}", refresh=False
                )
                sums.clear()
                counts.clear()
                t_last, step_last = now, step
            if step % cfg.sample_every == 0 or step == target_steps:
                write_samples(step)
            if step % cfg.ckpt_every == 0 or step == target_steps or stop_now:
                save_checkpoint(step)
            if stop_now:
                stopped_by_signal = True
                break
    bar.close()

    summary: dict[str, Any] = {"step": step, "out": str(out), "stopped": stopped_by_signal}
    finished = step >= target_steps and not stopped_by_signal
    if finished and step == start_step:
        # nothing ran in this call (e.g. --iters 0, or resuming a finished run): still leave outputs
        save_checkpoint(step)
        write_samples(step)
    if finished and di.is_main:
        _export(G_ema, out / GENERATOR_NAME, cfg, step)
        if cfg.export:
            _export(G_ema, Path(cfg.export), cfg, step)
        summary["generator"] = str(out / GENERATOR_NAME)
    hashes = {"g": state_hash(G), "d": state_hash(D), "g_ema": state_hash(G_ema)}
    summary["hashes"] = hashes
    if di.enabled:
        # every rank leaves its weights' fingerprint; they must agree bit for bit
        (out / "ranks").mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "ranks" / f"rank{di.rank}.json", {"step": step, **hashes}, indent=None)
        all_hashes = _gather_objects(hashes, di)
        summary["ranks_agree"] = all(h == all_hashes[0] for h in all_hashes)
        if di.is_main and not summary["ranks_agree"]:
            logger.log({"event": "warning", "message": "weights differ between ranks", "hashes": all_hashes})
        barrier()
    if di.is_main:
        logger.log({"event": "stopped" if stopped_by_signal else "end", "step": step})
    return summary


def plot_training_log(log_path: str | os.PathLike, out_png: str | os.PathLike) -> Path | None:
    """Plot the losses of a ``log.jsonl`` against kimg (one panel per quantity) as a PNG."""
    records = []
    for line in Path(log_path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
        if "kimg" in rec:
            records.append(rec)
    keys = [
        k
        for k in ("d_loss", "g_loss", "real_score", "fake_score", "r1", "path_loss", "ada_p")
        if any(isinstance(r.get(k), (int, float)) for r in records)
    ]
    if not records or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        pts = [(r["kimg"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        ax.set_title(key)
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return Path(out_png)


def _chain_first(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest


def _export(G_ema: nn.Module, path: Path, cfg: GanTrainConfig, step: int) -> None:
    """Write the EMA generator in egain's bundling ("generator") format via ``save_generator``.

    ``latent_avg`` is computed here (10000 mapped z, seed 0) so loading the file needs no extra pass.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    import egain.generators as gen_api  # late: keeps 'egain gan --help' light

    latent_avg = G_ema.mean_latent(10000, seed=0)[0]
    meta = {
        "trained_steps": step,
        "trained_images": step * cfg.batch,
        "data": str(cfg.data),
        "seed": cfg.seed,
    }
    gen_api.save_generator(G_ema, path, latent_avg=latent_avg, extra=meta)


def checkpoint_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Step, images and generator config of a training checkpoint (for tools and tests)."""
    ckpt = _load_train_checkpoint(Path(path))
    return {"step": ckpt["step"], "config": ckpt["config"], "images_seen": ckpt.get("images_seen")}

"""Trainer of the face-parsing UNet (``egain faces parsing train``) on on-the-fly synthfaces maps.

Images and their exact class maps are rendered by :class:`~egain.data.synthfaces.SynthFacesDataset`
(``return_parsing=True``) from the ``train`` split; the held-out mIoU is on the first
``eval_identities`` identities of the ``test`` split (never seen in training). Like the attribute
trainer (:mod:`egain.training.attributes`; both use :mod:`egain.training.common`), images
are rendered once into memory (``preload``: uint8 images and maps) or streamed through a DataLoader,
and batches depend only on (seed, rank, step), so a resumed run draws exactly what the uninterrupted
one would have. A horizontal flip (with left/right classes swapped) is drawn per image from the same
step seed.

Loss: per-pixel cross-entropy, optionally class-balanced (``class_weights="balanced"``: weights
``sqrt(median frequency / frequency)`` from the maps of the first 512 training items, clipped to
[0.2, 10], so thin classes -- glasses frames, earrings, lash lines -- are not drowned by background
and skin).

A run folder holds ``checkpoint.pt`` (``--resume auto``), ``log.jsonl`` (loss per step, mIoU at each
evaluation), ``parser.pt`` (the export :func:`~egain.faces.parsing.load_parser` reads, 3.8 MB at the
default widths, with its held-out figures), ``report.json`` and ``run.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egain.data.synthfaces import SynthFacesDataset
from egain.data.synthfaces.recipes import held_out_identities
from egain.errors import InputError
from egain.faces.parsing import (
    ParsingNet,
    ParsingNetConfig,
    evaluate_parser,
    format_iou,
    mirror_table,
    parser_checkpoint,
)
from egain.runtime.checkpoint import atomic_torch_save, clean_stale_tmp
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from egain.runtime.files import atomic_write_json
from egain.runtime.logging import JsonlLogger, progress
from egain.runtime.runinfo import RunClock, write_run_info
from egain.runtime.signals import StopFlag
from egain.training.common import (
    StepBatches,
    adamw_param_groups,
    finish_session,
    gathered_rng_states,
    step_seed,
    synthfaces_train_dataset,
)
from egain.training.common import resume as resume_training
from egain.utils.device import seed_everything

CHECKPOINT_FORMAT = "parsing-train-checkpoint"
#: settings a resume must share with the checkpoint (the rest may change between sessions)
_RESUME_KEYS = ("data", "size", "net", "batch", "seed", "class_weights", "flip")
#: training items whose maps give the class frequencies of ``class_weights="balanced"``
WEIGHT_SAMPLE = 512


@dataclass
class ParsingTrainConfig:
    """Options of ``egain faces parsing train`` (stored in the checkpoint)."""

    out: str = ""
    data: str = "synthfaces:4000x4"  # a synthfaces spec; the train split is implied
    size: int = 64
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    class_weights: str = "none"  # 'none' | 'balanced'
    flip: bool = True
    preload: str = "auto"  # 'auto' | 'yes' | 'no'
    workers: int = 0
    eval_identities: int = 200
    eval_per_identity: int = 2
    eval_every: int = 500
    ckpt_every: int = 250
    log_every: int = 20
    seed: int = 0
    device: str = "auto"
    stop_after: int | None = None  # end this session after N steps (checkpoint, no export)
    # Wall-time budget of the whole run (all sessions, from its RunClock): the cosine schedule
    # follows whichever of steps and time is further along; the run ends (eval, export) when it is up.
    max_minutes: float | None = None
    net: dict = field(default_factory=lambda: ParsingNetConfig().to_dict())


def lr_at(step: int, cfg: ParsingTrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to zero at ``steps`` (or at the time budget, if sooner)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = max((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup), time_fraction)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def train_dataset(spec: str, size: int) -> SynthFacesDataset:
    """The training recipe of ``spec`` (``synthfaces:NxK,...``) on the train split, with maps."""
    return synthfaces_train_dataset(spec, size, "parsing training", return_parsing=True)


def eval_dataset(seed: int, size: int, identities: int, per_identity: int) -> SynthFacesDataset:
    """Held-out data: the first ``identities`` test-split identities of world ``seed``, with maps."""
    return SynthFacesDataset(
        held_out_identities(seed, identities), per_identity, size, seed, return_parsing=True
    )


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def preload_dataset(
    ds: SynthFacesDataset, workers: int = 0, progress_bar: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every item once: uint8 images (N, 3, H, W) and uint8 class maps (N, H, W)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=workers)
    images, maps = [], []
    for x, _ids, m in progress(
        loader, total=len(loader), desc="render train set", enabled=progress_bar, unit="batch"
    ):
        images.append(_to_uint8(x))
        maps.append(m.to(torch.uint8))
    return torch.cat(images), torch.cat(maps)


def class_weights(maps: torch.Tensor, classes: int) -> torch.Tensor:
    """``sqrt(median / frequency)`` per class, clipped to [0.2, 10]; unseen classes get 10."""
    freq = torch.bincount(maps.reshape(-1).long(), minlength=classes).double()
    freq = freq / freq.sum()
    seen = freq > 0
    med = freq[seen].median()
    w = torch.full((classes,), 10.0, dtype=torch.float64)
    w[seen] = (med / freq[seen]).sqrt().clamp(0.2, 10.0)
    return w.float()


def flip_batch(
    x: torch.Tensor, maps: torch.Tensor, table: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror about half the images (drawn from ``seed``) with their maps, left/right classes swapped."""
    gen = torch.Generator().manual_seed(seed)
    which = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    if not bool(which.any()):
        return x, maps
    x = torch.where(which[:, None, None, None], x.flip(-1), x)
    mirrored = table.to(maps.device)[maps.flip(-1)]
    return x, torch.where(which[:, None, None], mirrored, maps)


def train_parsing(cfg: ParsingTrainConfig, resume: str | None = "auto") -> dict:
    """Train the parser; returns the held-out figures (on rank 0; other ranks and stopped sessions
    return {})."""
    if cfg.steps < 1 or cfg.batch < 2:
        raise InputError(f"need --steps >= 1 and --batch >= 2 (got {cfg.steps}, {cfg.batch})")
    if cfg.preload not in ("auto", "yes", "no"):
        raise InputError(f"--preload must be auto, yes or no, got '{cfg.preload}'")
    if cfg.class_weights not in ("none", "balanced"):
        raise InputError(f"--class-weights must be none or balanced, got '{cfg.class_weights}'")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise InputError(f"--max-minutes must be > 0, got {cfg.max_minutes}")
    if cfg.workers < 0:
        raise InputError(f"--workers must be >= 0, got {cfg.workers}")
    if not cfg.out:
        raise InputError("--out (the run folder) is required")
    dist_info = init_distributed(cfg.device)
    try:
        return _train(cfg, resume, dist_info)
    finally:
        cleanup()


def _train(cfg: ParsingTrainConfig, resume, dist_info: DistInfo) -> dict:
    device, main, out = dist_info.device, dist_info.is_main, Path(cfg.out)
    seed_everything(cfg.seed)
    if main:  # half-written files of a run killed mid-save
        clean_stale_tmp(out)
    net_cfg = ParsingNetConfig.from_dict({**cfg.net, "size": cfg.size})
    n_classes = len(net_cfg.classes)
    data = train_dataset(cfg.data, cfg.size)
    held = eval_dataset(data.seed, cfg.size, cfg.eval_identities, cfg.eval_per_identity)

    torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed alone
    net = ParsingNet(net_cfg).to(device)
    optimizer = torch.optim.AdamW(adamw_param_groups(net, cfg.weight_decay), lr=cfg.lr)
    clock = RunClock()
    ckpt_path = out / "checkpoint.pt"
    step = resume_training(
        resume,
        ckpt_path,
        fmt=CHECKPOINT_FORMAT,
        what="parsing training checkpoint",
        config=cfg,
        keys=_RESUME_KEYS,
        module=net,
        optimizer=optimizer,
        clock=clock,
        dist_info=dist_info,
    )

    session_end = cfg.steps if cfg.stop_after is None else min(cfg.steps, step + cfg.stop_after)
    remaining = (session_end - step) * cfg.batch
    preload = cfg.preload == "yes" or (cfg.preload == "auto" and remaining >= len(data))
    sampler = StepBatches(len(data), cfg.batch, cfg.seed, dist_info.rank, step, session_end)
    table = mirror_table(net_cfg.classes)
    if preload:
        cache_images, cache_maps = preload_dataset(data, cfg.workers, progress_bar=main)

        def batches():
            for idx in sampler:
                yield (
                    cache_images[idx].to(device).float().div_(127.5).sub_(1.0),
                    cache_maps[idx].to(device).long(),
                )

    else:
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=cfg.workers)

        def batches():
            for x, _ids, maps in loader:
                # the same uint8 rounding as the cache, so both modes train on identical pixels
                yield _to_uint8(x).to(device).float().div_(127.5).sub_(1.0), maps.to(device)

    weights = None
    if cfg.class_weights == "balanced":
        n = min(WEIGHT_SAMPLE, len(data))
        sample = cache_maps[:n] if preload else torch.stack([data[i][-1] for i in range(n)])
        weights = class_weights(sample, n_classes).to(device)

    train_model: nn.Module = net
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    logger = JsonlLogger(out / "log.jsonl", enabled=main)

    def time_fraction() -> float:
        if cfg.max_minutes is None:
            return 0.0
        frac = clock.seconds / (60.0 * cfg.max_minutes)
        if dist_info.enabled:  # rank 0's clock decides, so every rank stops at the same step
            t = torch.tensor([frac], device=device, dtype=torch.float64)
            torch.distributed.broadcast(t, src=0)
            frac = float(t.item())
        return frac

    def save_checkpoint() -> None:
        states = gathered_rng_states(dist_info)  # a collective: every rank calls it
        if main:
            atomic_torch_save(
                {
                    "egain_format": CHECKPOINT_FORMAT,
                    "config": asdict(cfg),
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "clock": clock.state_dict(),
                    "rng": states,
                },
                ckpt_path,
            )

    def run_eval() -> dict:
        report = evaluate_parser(net, held, batch=64, workers=cfg.workers)
        net.train()
        return report

    bar = progress(total=cfg.steps, initial=step, desc="parsing", enabled=main, unit="step")
    net.train()
    time_up = False
    with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
        for x, maps in batches():
            if cfg.flip:
                x, maps = flip_batch(x, maps, table, step_seed(cfg.seed, dist_info.rank, step))
            frac = time_fraction()
            lr = lr_at(step, cfg, frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(train_model(x), maps, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss_v = float(all_reduce_mean(loss.detach()).item())
                bar.set_postfix(loss=f"{loss_v:.3f}")
                logger.log({"kind": "train", "step": step, "lr": lr, "loss": loss_v})
            if step % cfg.ckpt_every == 0 and step < cfg.steps:
                save_checkpoint()
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                if main:
                    r = run_eval()
                    logger.log(
                        {
                            "kind": "eval",
                            "step": step,
                            "miou": r["miou"],
                            "pixel_accuracy": r["pixel_accuracy"],
                        }
                    )
                barrier()
            if stop_flag.agreed(device):
                break
            if frac >= 1.0:
                time_up = True
                if main:
                    logger.log({"kind": "time_budget", "step": step, "max_minutes": cfg.max_minutes})
                break
    if not finish_session(bar, save_checkpoint, step, cfg.steps, main, time_up):
        return {}

    result: dict = {}
    if main:
        report = run_eval()
        logger.log(
            {"kind": "eval", "step": step, "miou": report["miou"], "pixel_accuracy": report["pixel_accuracy"]}
        )
        held_out = {
            "seed": data.seed,
            "identities": cfg.eval_identities,
            "per_identity": cfg.eval_per_identity,
            "images": len(held),
            "split": "test",
        }
        result = {**report, "held_out": held_out, "steps": step}
        export = parser_checkpoint(
            net,
            scores=result,
            extra={
                "train": {
                    "data": cfg.data,
                    "steps": step,
                    "train_identities": len(data.identity_ids),
                    "train_images": len(data),
                    "class_weights": None if weights is None else weights.cpu().tolist(),
                    "config": asdict(cfg),
                }
            },
        )
        atomic_torch_save(export, out / "parser.pt")
        atomic_write_json(out / "report.json", result)
        write_run_info(out / "run.json", clock, steps=step, device=device, extra={"scores": _brief(result)})
        print(format_iou(report))
    barrier()
    return result


def _brief(result: dict) -> dict:
    """The figures run.json keeps (per-class IoU rounded)."""
    per = {k: (None if np.isnan(v["iou"]) else round(v["iou"], 4)) for k, v in result["per_class"].items()}
    return {
        "miou": result["miou"],
        "pixel_accuracy": result["pixel_accuracy"],
        "iou": per,
        "held_out": result["held_out"],
    }

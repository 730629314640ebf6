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

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

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
from egain.runtime.distributed import DistInfo, barrier
from egain.runtime.logging import progress
from egain.training.common import (
    SupervisedSession,
    check_run_options,
    check_schedule_options,
    from_uint8,
    run_distributed,
    synthfaces_train_dataset,
    to_uint8,
    warmup_cosine_lr,
)

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
    return warmup_cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps, time_fraction)


def train_dataset(spec: str, size: int) -> SynthFacesDataset:
    """The training recipe of ``spec`` (``synthfaces:NxK,...``) on the train split, with maps."""
    return synthfaces_train_dataset(spec, size, "parsing training", return_parsing=True)


def eval_dataset(seed: int, size: int, identities: int, per_identity: int) -> SynthFacesDataset:
    """Held-out data: the first ``identities`` test-split identities of world ``seed``, with maps."""
    return SynthFacesDataset(
        held_out_identities(seed, identities), per_identity, size, seed, return_parsing=True
    )


def preload_dataset(
    ds: SynthFacesDataset, workers: int = 0, progress_bar: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every item once: uint8 images (N, 3, H, W) and uint8 class maps (N, H, W)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=workers)
    images, maps = [], []
    for x, _ids, m in progress(
        loader, total=len(loader), desc="render train set", enabled=progress_bar, unit="batch"
    ):
        images.append(to_uint8(x))
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
    check_schedule_options(cfg)
    if cfg.class_weights not in ("none", "balanced"):
        raise InputError(f"--class-weights must be none or balanced, got '{cfg.class_weights}'")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise InputError(f"--max-minutes must be > 0, got {cfg.max_minutes}")
    check_run_options(cfg)
    return run_distributed(_train, cfg, resume)


def _train(cfg: ParsingTrainConfig, resume, dist_info: DistInfo) -> dict:
    session = SupervisedSession(
        cfg,
        dist_info,
        fmt=CHECKPOINT_FORMAT,
        what="parsing training checkpoint",
        keys=_RESUME_KEYS,
        desc="parsing",
    )
    device, main = session.device, session.main
    net_cfg = ParsingNetConfig.from_dict({**cfg.net, "size": cfg.size})
    n_classes = len(net_cfg.classes)
    data = train_dataset(cfg.data, cfg.size)
    held = eval_dataset(data.seed, cfg.size, cfg.eval_identities, cfg.eval_per_identity)
    net = session.build(lambda: ParsingNet(net_cfg), resume)

    sampler, preload = session.sampler(len(data))
    table = mirror_table(net_cfg.classes)
    if preload:
        cache_images, cache_maps = preload_dataset(data, cfg.workers, progress_bar=main)

        def batches():
            for idx in sampler:
                yield from_uint8(cache_images[idx], device), cache_maps[idx].to(device).long()

    else:
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=cfg.workers)

        def batches():
            for x, _ids, maps in loader:
                # the same uint8 rounding as the cache, so both modes train on identical pixels
                yield from_uint8(to_uint8(x), device), maps.to(device)

    weights = None
    if cfg.class_weights == "balanced":
        n = min(WEIGHT_SAMPLE, len(data))
        sample = cache_maps[:n] if preload else torch.stack([data[i][-1] for i in range(n)])
        weights = class_weights(sample, n_classes).to(device)

    train_model = session.start()

    def time_fraction() -> float:
        if cfg.max_minutes is None:
            return 0.0
        frac = session.clock.seconds / (60.0 * cfg.max_minutes)
        if dist_info.enabled:  # rank 0's clock decides, so every rank stops at the same step
            t = torch.tensor([frac], device=device, dtype=torch.float64)
            torch.distributed.broadcast(t, src=0)
            frac = float(t.item())
        return frac

    frac = 0.0

    def train_step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, torch.Tensor, None]:
        nonlocal frac
        x, maps = batch
        if cfg.flip:
            x, maps = flip_batch(x, maps, table, session.step_seed())
        frac = time_fraction()
        lr = lr_at(session.step, cfg, frac)
        session.set_lr(lr)
        return lr, F.cross_entropy(train_model(x), maps, weight=weights), None

    def time_up() -> bool:
        if frac < 1.0:
            return False
        if main:
            session.logger.log({"kind": "time_budget", "step": session.step, "max_minutes": cfg.max_minutes})
        return True

    def run_eval() -> dict:
        report = evaluate_parser(net, held, batch=64, workers=cfg.workers)
        net.train()
        return report

    def eval_figures(report: dict) -> dict:
        return {"miou": report["miou"], "pixel_accuracy": report["pixel_accuracy"]}

    if not session.run(batches(), train_step, lambda: eval_figures(run_eval()), time_up=time_up):
        return {}

    result: dict = {}
    if main:
        report = run_eval()
        session.log_eval(eval_figures(report))
        result = {**report, "held_out": session.held_out(data, held), "steps": session.step}
        train = session.train_record(data, class_weights=None if weights is None else weights.cpu().tolist())
        export = parser_checkpoint(net, scores=result, extra=train)
        session.write_outputs(export, "parser.pt", result, _brief(result))
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

"""Trainer of the attribute classifier (``egain faces attributes train``) on on-the-fly synthfaces.

The training images are rendered by :class:`~egain.data.synthfaces.SynthFacesDataset` from the
``train`` split (identities of the ``val``/``test`` splits are never seen); the held-out figures are
on the first ``eval_identities`` identities of the ``test`` split, the pool the fixed ``eval`` recipe
draws from. Images are either rendered once into memory (``preload``: when every image is seen
more than once, rendering is the larger cost) or streamed through a DataLoader with ``workers``.

Batches depend only on (seed, rank, step), in both modes, so a resumed run draws exactly what the
uninterrupted one would have. A run folder holds:

* ``checkpoint.pt`` -- network, optimiser, step, RNG states and wall-clock state (``--resume auto``);
* ``log.jsonl`` -- loss per step (and per attribute), held-out figures at every evaluation;
* ``classifier.pt`` -- the export read by :func:`~egain.faces.attributes.load_classifier`, with its
  held-out figures; ``report.json`` (the same figures) and ``run.json`` (command, commit, time).

Under ``torchrun`` the network is wrapped in DDP (gloo on CPU, nccl on CUDA); each rank draws its own
batches, so the effective batch is ``batch * world_size``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from egain.data.synthfaces import SynthFacesDataset, collate_with_labels
from egain.data.synthfaces.recipes import held_out_identities
from egain.errors import InputError
from egain.faces.attributes import (
    AttributeClassifier,
    AttributeNet,
    AttributeNetConfig,
    attribute_loss,
    classifier_checkpoint,
    evaluate_classifier,
    format_metrics,
    get_attributes,
    label_values,
    normalise_targets,
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

CHECKPOINT_FORMAT = "attribute-train-checkpoint"
#: settings a resume must share with the checkpoint (the rest may change between sessions)
_RESUME_KEYS = ("data", "size", "net", "batch", "seed")


@dataclass
class AttributeTrainConfig:
    """Options of ``egain faces attributes train`` (stored in the checkpoint)."""

    out: str = ""
    data: str = "synthfaces:4000x4"  # a synthfaces spec; the train split is implied
    size: int = 64
    steps: int = 2000
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    preload: str = "auto"  # 'auto' | 'yes' | 'no'
    workers: int = 0  # DataLoader workers (rendering) for streaming and for the preload pass
    eval_identities: int = 300
    eval_per_identity: int = 2
    eval_every: int = 500
    ckpt_every: int = 250
    log_every: int = 20
    seed: int = 0
    device: str = "auto"
    stop_after: int | None = None  # end this session after N steps (checkpoint, no export)
    net: dict = field(default_factory=lambda: AttributeNetConfig().to_dict())


def lr_at(step: int, cfg: AttributeTrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def train_dataset(spec: str, size: int) -> SynthFacesDataset:
    """The training recipe of ``spec`` (``synthfaces:NxK,...``), restricted to the train split."""
    return synthfaces_train_dataset(spec, size, "attribute training", return_labels=True)


def eval_dataset(seed: int, size: int, identities: int, per_identity: int) -> SynthFacesDataset:
    """Held-out figures' data: the first ``identities`` test-split identities of world ``seed``."""
    return SynthFacesDataset(
        held_out_identities(seed, identities), per_identity, size, seed, return_labels=True
    )


def preload_dataset(
    ds: SynthFacesDataset, attributes, workers: int = 0, progress_bar: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every item once: uint8 images (N, 3, H, W) and label values (N, A) float32."""
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=False, num_workers=workers, collate_fn=collate_with_labels
    )
    images, values = [], []
    for x, _ids, labels in progress(
        loader, total=len(loader), desc="render train set", enabled=progress_bar, unit="batch"
    ):
        images.append(x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8))
        values.append(torch.from_numpy(label_values(labels, attributes)).float())
    return torch.cat(images), torch.cat(values)


def train_attributes(cfg: AttributeTrainConfig, resume: str | None = "auto") -> dict:
    """Train the classifier; returns the held-out figures (on rank 0; other ranks and stopped
    sessions return {})."""
    if cfg.steps < 1 or cfg.batch < 2:
        raise InputError(f"need --steps >= 1 and --batch >= 2 (got {cfg.steps}, {cfg.batch})")
    if cfg.preload not in ("auto", "yes", "no"):
        raise InputError(f"--preload must be auto, yes or no, got '{cfg.preload}'")
    if cfg.workers < 0:
        raise InputError(f"--workers must be >= 0, got {cfg.workers}")
    if not cfg.out:
        raise InputError("--out (the run folder) is required")
    dist_info = init_distributed(cfg.device)
    try:
        return _train(cfg, resume, dist_info)
    finally:
        cleanup()


def _train(cfg: AttributeTrainConfig, resume, dist_info: DistInfo) -> dict:
    device, main, out = dist_info.device, dist_info.is_main, Path(cfg.out)
    seed_everything(cfg.seed)
    if main:  # half-written files of a run killed mid-save
        clean_stale_tmp(out)
    net_cfg = AttributeNetConfig.from_dict({**cfg.net, "size": cfg.size})
    attributes = get_attributes(net_cfg.attributes)
    data = train_dataset(cfg.data, cfg.size)
    held = eval_dataset(data.seed, cfg.size, cfg.eval_identities, cfg.eval_per_identity)

    torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed alone
    net = AttributeNet(net_cfg).to(device)
    optimizer = torch.optim.AdamW(adamw_param_groups(net, cfg.weight_decay), lr=cfg.lr)
    clock = RunClock()
    ckpt_path = out / "checkpoint.pt"
    step = resume_training(
        resume,
        ckpt_path,
        fmt=CHECKPOINT_FORMAT,
        what="attribute training checkpoint",
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
    if preload:
        cache_images, cache_values = preload_dataset(data, attributes, cfg.workers, progress_bar=main)

        def batches():
            for idx in sampler:
                x = cache_images[idx].to(device).float().div_(127.5).sub_(1.0)
                yield x, cache_values[idx].to(device)

    else:
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=collate_with_labels
        )

        def batches():
            for x, _ids, labels in loader:
                yield x.to(device), torch.from_numpy(label_values(labels, attributes)).float().to(device)

    train_model: nn.Module = net
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    logger = JsonlLogger(out / "log.jsonl", enabled=main)

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

    def run_eval() -> tuple[dict, dict]:
        clf = AttributeClassifier(AttributeNet(net_cfg), name="eval").to(device)
        clf.net.load_state_dict(net.state_dict())
        return evaluate_classifier(clf, held, batch=128, workers=cfg.workers)

    bar = progress(total=cfg.steps, initial=step, desc="attributes", enabled=main, unit="step")
    net.train()
    with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
        for x, values in batches():
            torch.manual_seed(step_seed(cfg.seed, dist_info.rank, step))  # dropout
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, per = attribute_loss(train_model(x), normalise_targets(values, attributes), attributes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss_v = float(all_reduce_mean(loss.detach()).item())
                per_v = all_reduce_mean(per).cpu().tolist()
                bar.set_postfix(loss=f"{loss_v:.3f}")
                logger.log(
                    {
                        "kind": "train",
                        "step": step,
                        "lr": lr,
                        "loss": loss_v,
                        **{f"loss_{a.name}": v for a, v in zip(attributes, per_v, strict=True)},
                    }
                )
            if step % cfg.ckpt_every == 0 and step < cfg.steps:
                save_checkpoint()
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                if main:
                    metrics, summary = run_eval()
                    logger.log({"kind": "eval", "step": step, **summary, "attributes": metrics})
                net.train()
                barrier()
            if stop_flag.agreed(device):
                break
    if not finish_session(bar, save_checkpoint, step, cfg.steps, main):
        return {}

    result: dict = {}
    if main:
        metrics, summary = run_eval()
        logger.log({"kind": "eval", "step": step, **summary, "attributes": metrics})
        held_out = {
            "seed": data.seed,
            "identities": cfg.eval_identities,
            "per_identity": cfg.eval_per_identity,
            "images": len(held),
            "split": "test",
        }
        result = {"summary": summary, "attributes": metrics, "held_out": held_out}
        export = classifier_checkpoint(
            net,
            scores=result,
            extra={
                "train": {
                    "data": cfg.data,
                    "steps": step,
                    "train_identities": len(data.identity_ids),
                    "train_images": len(data),
                    "config": asdict(cfg),
                }
            },
        )
        atomic_torch_save(export, out / "classifier.pt")
        atomic_write_json(out / "report.json", result)
        write_run_info(out / "run.json", clock, steps=step, device=device, extra={"scores": result})
        print(format_metrics(metrics))
    barrier()
    return result

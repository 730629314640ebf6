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

from dataclasses import dataclass, field

import torch

from egain.data.synthfaces import SynthFacesDataset, collate_with_labels
from egain.data.synthfaces.recipes import held_out_identities
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
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier
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
    return warmup_cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)


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
        images.append(to_uint8(x))
        values.append(torch.from_numpy(label_values(labels, attributes)).float())
    return torch.cat(images), torch.cat(values)


def train_attributes(cfg: AttributeTrainConfig, resume: str | None = "auto") -> dict:
    """Train the classifier; returns the held-out figures (on rank 0; other ranks and stopped
    sessions return {})."""
    check_schedule_options(cfg)
    check_run_options(cfg)
    return run_distributed(_train, cfg, resume)


def _train(cfg: AttributeTrainConfig, resume, dist_info: DistInfo) -> dict:
    session = SupervisedSession(
        cfg,
        dist_info,
        fmt=CHECKPOINT_FORMAT,
        what="attribute training checkpoint",
        keys=_RESUME_KEYS,
        desc="attributes",
    )
    device, main = session.device, session.main
    net_cfg = AttributeNetConfig.from_dict({**cfg.net, "size": cfg.size})
    attributes = get_attributes(net_cfg.attributes)
    data = train_dataset(cfg.data, cfg.size)
    held = eval_dataset(data.seed, cfg.size, cfg.eval_identities, cfg.eval_per_identity)
    net = session.build(lambda: AttributeNet(net_cfg), resume)

    sampler, preload = session.sampler(len(data))
    if preload:
        cache_images, cache_values = preload_dataset(data, attributes, cfg.workers, progress_bar=main)

        def batches():
            for idx in sampler:
                yield from_uint8(cache_images[idx], device), cache_values[idx].to(device)

    else:
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=collate_with_labels
        )

        def batches():
            for x, _ids, labels in loader:
                yield x.to(device), torch.from_numpy(label_values(labels, attributes)).float().to(device)

    train_model = session.start()

    def train_step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, torch.Tensor, torch.Tensor]:
        x, values = batch
        torch.manual_seed(session.step_seed())  # dropout
        lr = lr_at(session.step, cfg)
        session.set_lr(lr)
        loss, per = attribute_loss(train_model(x), normalise_targets(values, attributes), attributes)
        return lr, loss, per

    def per_attribute(per: torch.Tensor) -> dict:
        per_v = all_reduce_mean(per).cpu().tolist()
        return {f"loss_{a.name}": v for a, v in zip(attributes, per_v, strict=True)}

    def run_eval() -> tuple[dict, dict]:
        clf = AttributeClassifier(AttributeNet(net_cfg), name="eval").to(device)
        clf.net.load_state_dict(net.state_dict())
        return evaluate_classifier(clf, held, batch=128, workers=cfg.workers)

    def eval_figures() -> dict:
        metrics, summary = run_eval()
        return {**summary, "attributes": metrics}

    if not session.run(batches(), train_step, eval_figures, log_terms=per_attribute):
        return {}

    result: dict = {}
    if main:
        metrics, summary = run_eval()
        session.log_eval({**summary, "attributes": metrics})
        result = {"summary": summary, "attributes": metrics, "held_out": session.held_out(data, held)}
        export = classifier_checkpoint(net, scores=result, extra=session.train_record(data))
        session.write_outputs(export, "classifier.pt", result, result)
        print(format_metrics(metrics))
    barrier()
    return result

"""Trainer for face-embedding networks (``egain faces train``): identities as classes, ArcFace or MagFace loss.

One loop serves both losses; only the margin head differs. A run folder holds:

* ``checkpoint.pt`` -- network, loss head, optimiser, step, RNG and wall-clock state, written
  atomically every ``ckpt_every`` steps (``--resume auto`` continues from it);
* ``log.jsonl`` -- loss, accuracy, learning rate (and MagFace's regulariser and mean magnitude);
* ``embedder.pt`` -- the final export in our ``face-embedder`` format, with its verification scores
  on held-out identities; ``load_embedder(RUN_DIR/embedder.pt)`` uses it;
* ``roc.png`` (ROC and score histograms), ``curves.png`` (training curves), and for MagFace
  ``quality.png`` (held-out faces sorted by magnitude, i.e. by predicted quality); ``run.json``.

Under ``torchrun`` the network and head are wrapped in DDP (gloo on CPU, nccl on CUDA); each rank
draws its own batches from its own RNG stream, so the effective batch is ``batch * world_size``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from egain.errors import CheckpointError, InputError
from egain.faces.data import FaceSet, augment, balanced_subset_indices, holdout_identities, load_faces
from egain.faces.embedder import FaceEmbedder, embedder_checkpoint
from egain.faces.losses import make_loss
from egain.faces.nets import FaceNetConfig, IRSEFaceNet
from egain.faces.preprocess import FacePreprocess
from egain.faces.verification import distortion_scores, plot_verification, verify
from egain.runtime.checkpoint import atomic_torch_save, clean_stale_tmp, load_checkpoint
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from egain.runtime.files import atomic_path
from egain.runtime.logging import JsonlLogger, progress
from egain.runtime.runinfo import RunClock, write_run_info
from egain.runtime.signals import StopFlag
from egain.training.common import finish_session, warmup_cosine_lr
from egain.utils.device import seed_everything

CHECKPOINT_FORMAT = "face-train-checkpoint"


@dataclass
class FaceTrainConfig:
    """Options of ``egain faces train`` (stored in the checkpoint; a resume must match the network part)."""

    loss: str = "arcface"
    data: str = ""
    out: str = ""
    size: int = 64  # image size the data is decoded/rendered at
    crop: str = "auto"  # 'auto' (central 3/4, like the ArcFace crop), 'none', or 'top,bottom,left,right' px
    iters: int = 2500
    batch: int = 64
    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.1 for SGD, 1e-3 for AdamW
    weight_decay: float = 5e-4
    warmup: int = 100
    holdout: str = "auto"  # 'auto', 'split', a fraction or a count (see faces.data.holdout_identities)
    max_shift: int = 4
    eval_every: int = 500
    ckpt_every: int = 250
    log_every: int = 20
    eval_per_identity: int = 10
    seed: int = 0
    device: str = "auto"
    stop_after: int | None = None  # end this session after N steps (checkpoint, no export): CPU time slots
    # Wall-time budget in minutes (from the trainer's start): the cosine schedule follows whichever
    # of steps and time is further along, and the run ends (eval, export) when time is up.
    max_minutes: float | None = None
    net: dict = field(default_factory=lambda: FaceNetConfig().to_dict())
    loss_options: dict = field(default_factory=dict)

    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 0.1 if self.optimizer == "sgd" else 1e-3


class _TrainModel(nn.Module):
    """Network + margin head behind one ``forward`` so DDP can wrap both."""

    def __init__(self, net: IRSEFaceNet, head: nn.Module):
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.net(images), labels)


def lr_at(step: int, cfg: FaceTrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to zero at ``iters``.

    ``time_fraction`` (elapsed / budget under ``max_minutes``) moves the decay along when time runs
    out before the steps do, so a wall-time-limited run still ends annealed rather than at a high
    rate mid-schedule.
    """
    return warmup_cosine_lr(step, cfg.learning_rate(), cfg.warmup, cfg.iters, time_fraction)


def _now() -> float:
    """Clock of the wall-time budget (a function of its own so tests can drive it)."""
    return time.monotonic()


def _make_optimizer(cfg: FaceTrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on BN/PReLU/bias parameters: decaying PReLU slopes and BN scales only hurts.
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate(), momentum=0.9)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate())
    raise InputError(f"unknown optimizer '{cfg.optimizer}'; expected 'sgd' or 'adamw'")


def preprocess_for(size: int, crop: str = "auto", stages: int = 4) -> FacePreprocess:
    """The input convention of a synthfaces network trained on ``size`` px images.

    ``auto`` keeps the central 3/4 of the frame (rows and columns size/8 .. 7 size/8: 8:56 at 64 px),
    which holds the face and hair of a synthfaces image and drops most background, in the spirit of
    the ArcFace crop (35:223 of 256). The network input is the crop size rounded down to a multiple
    of 2^stages (one stride-2 per stage); 48 px at 64.
    """
    if crop == "none":
        box = None
        side = size
    else:
        if crop == "auto":
            m = size // 8
            box = (m, size - m, m, size - m)
        else:
            try:
                box = tuple(int(v) for v in crop.split(","))
            except ValueError:
                box = ()
            if len(box) != 4:
                raise InputError(f"--crop must be 'auto', 'none' or 'top,bottom,left,right'; got '{crop}'")
        side = min(box[1] - box[0], box[3] - box[2])
    unit = 2**stages
    net_in = max(unit, side // unit * unit)
    try:
        return FacePreprocess(input_size=net_in, reference_size=size if box else None, crop=box)
    except ValueError as exc:
        raise InputError(f"--crop {crop}: {exc}") from None


@torch.no_grad()
def embed_all(embedder: FaceEmbedder, faces: FaceSet, batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(faces), batch):
        out.append(embedder.embed(faces.float_images(slice(i, i + batch))).float().cpu())
    return torch.cat(out)


def evaluate_faces(
    embedder: FaceEmbedder, faces: FaceSet, far: float = 1e-3, per_identity: int | None = None
) -> tuple[dict, np.ndarray, np.ndarray, torch.Tensor]:
    """Verification report (dict) on ``faces``; also the raw genuine/impostor scores and embeddings.

    The report includes ``distortion_blur2`` / ``distortion_round16``: the mean cosine between up
    to 500 of the faces and their sigma-2 blurred / 16 px round-trip copies, to read against
    ``genuine_mean`` (a useful ID column needs them clearly below it; see
    :func:`egain.faces.verification.distortion_scores`).
    """
    if per_identity:
        idx = torch.from_numpy(balanced_subset_indices(faces.labels.numpy(), per_identity))
        faces = FaceSet(faces.images[idx], faces.labels[idx], faces.identities)
    emb = embed_all(embedder, faces)
    report, genuine, impostor = verify(emb, faces.labels.numpy(), far=far)
    out = report.to_dict()
    mags = emb.norm(dim=1)
    out["magnitude_mean"] = float(mags.mean())
    out["magnitude_std"] = float(mags.std()) if len(mags) > 1 else 0.0
    probe = faces.float_images(slice(0, min(len(faces), 500))).to(embedder.device)
    for name, value in distortion_scores(embedder.embed, probe).items():
        out[f"distortion_{name}"] = value
    return out, genuine, impostor, emb


def _save_curves(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if not train:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], label="loss")
    axes[0].plot(steps, [r["ce"] for r in train], label="cross-entropy")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].plot(steps, [r["acc"] for r in train])
    axes[1].set_ylabel("train accuracy")
    axes[1].set_xlabel("step")
    if evals:
        es = [r["step"] for r in evals]
        axes[2].plot(es, [r["eer"] for r in evals], "o-", label="EER")
        axes[2].plot(es, [1 - r["tar_at_far"] for r in evals], "s-", label="1 - TAR@FAR")
        axes[2].set_ylim(0, 1)
        axes[2].legend()
        axes[2].set_xlabel("step")
        axes[2].set_title("held-out identities")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def save_quality_grid(faces: FaceSet, emb: torch.Tensor, path: Path, n: int = 16) -> None:
    """Held-out faces from lowest (top row) to highest magnitude: what MagFace calls quality."""
    from egain.utils.images import save_grid

    mags = emb.norm(dim=1)
    order = torch.argsort(mags)
    pick = order[torch.linspace(0, len(order) - 1, min(n, len(order))).round().long()]
    save_grid(faces.float_images(pick), path, nrow=int(math.ceil(math.sqrt(len(pick)))))


def train_faces(cfg: FaceTrainConfig, resume: str | None = "auto") -> dict:
    """Train an embedding network; returns the final scores (on rank 0; other ranks return {})."""
    if cfg.loss not in ("arcface", "cosface", "magface"):
        raise InputError(f"--loss must be 'arcface', 'cosface' or 'magface', got '{cfg.loss}'")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise InputError(f"--max-minutes must be > 0, got {cfg.max_minutes}")
    if cfg.iters < 1 or cfg.batch < 2:
        raise InputError(f"need --iters >= 1 and --batch >= 2 (got {cfg.iters}, {cfg.batch})")
    started = _now()
    dist_info: DistInfo = init_distributed(cfg.device)
    device = dist_info.device
    main = dist_info.is_main
    out = Path(cfg.out)
    try:
        return _train(cfg, resume, dist_info, device, main, out, started)
    finally:
        cleanup()


def _time_fraction(started: float, cfg: FaceTrainConfig, dist_info: DistInfo, device) -> float:
    """Elapsed share of the wall-time budget, the same on every rank (rank 0's clock decides)."""
    if cfg.max_minutes is None:
        return 0.0
    frac = (_now() - started) / (60.0 * cfg.max_minutes)
    if dist_info.enabled:
        t = torch.tensor([frac], device=device, dtype=torch.float64)
        torch.distributed.broadcast(t, src=0)
        frac = float(t.item())
    return frac


def _train(
    cfg: FaceTrainConfig, resume, dist_info: DistInfo, device, main: bool, out: Path, started: float
) -> dict:
    seed_everything(cfg.seed)
    if main:  # half-written files of a run killed mid-save
        clean_stale_tmp(out)
    preprocess = preprocess_for(cfg.size, cfg.crop, stages=len(cfg.net.get("widths", FaceNetConfig().widths)))
    net_cfg = FaceNetConfig.from_dict({**cfg.net, "input_size": preprocess.input_size})
    faces = load_faces(cfg.data, cfg.size, progress_bar=main)
    train_ids, held_ids = holdout_identities(faces, cfg.holdout)
    train_set, held_set = faces.subset(train_ids), faces.subset(held_ids)
    if len(train_set) < 2:
        raise InputError(f"'{cfg.data}' leaves fewer than 2 training images after holding out identities")

    net = IRSEFaceNet.from_config(net_cfg)
    head = make_loss(cfg.loss, net_cfg.embedding_dim, train_set.num_identities, **cfg.loss_options)
    model = _TrainModel(net, head).to(device)
    optimizer = _make_optimizer(cfg, model)
    clock = RunClock()
    step = 0
    ckpt_path = out / "checkpoint.pt"
    gen = torch.Generator()

    if resume not in (None, "", "none", "never"):
        path = ckpt_path if resume == "auto" else Path(resume)
        if path.exists():
            state = load_checkpoint(path, what="face training checkpoint", required_keys=("model", "step"))
            if state.get("egain_format") != CHECKPOINT_FORMAT:
                raise CheckpointError(f"'{path}' is not a face training checkpoint")
            saved = state.get("config", {})
            for key in ("loss", "size", "crop", "net"):
                if key in saved and saved[key] != asdict(cfg)[key]:
                    raise CheckpointError(
                        f"cannot resume '{path}': it was trained with {key}={saved[key]!r}, now {asdict(cfg)[key]!r}"
                    )
            if state.get("identities", train_ids) != train_ids:
                raise CheckpointError(
                    f"cannot resume '{path}': it was trained on other identities than --data '{cfg.data}' gives"
                )
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as exc:
                raise CheckpointError(
                    f"cannot resume '{path}': the data has other identities ({exc})"
                ) from None
            optimizer.load_state_dict(state["optimizer"])
            step = int(state["step"])
            clock.load_state_dict(state.get("clock", {}))
            if main:
                print(f"resumed from {path} at step {step}")
        elif resume != "auto":
            raise CheckpointError(f"--resume '{path}' does not exist")

    ddp_model: nn.Module = model
    if dist_info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    logger = JsonlLogger(out / "log.jsonl", enabled=main)
    # On a GPU the whole uint8 training set lives there (a few hundred MB for 30k faces at 64 px):
    # batches are then gathered and augmented on the device instead of sliced on the CPU each step.
    on_device = device.type == "cuda"
    train_images = train_set.images.to(device) if on_device else train_set.images
    train_labels = train_set.labels.to(device) if on_device else train_set.labels

    def save_checkpoint() -> None:
        if main:
            atomic_torch_save(
                {
                    "egain_format": CHECKPOINT_FORMAT,
                    "config": asdict(cfg),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "clock": clock.state_dict(),
                    "identities": train_ids,
                },
                ckpt_path,
            )

    def run_eval() -> tuple[dict, np.ndarray, np.ndarray, torch.Tensor] | None:
        if not main or held_set.num_identities < 2:
            return None
        emb = FaceEmbedder(IRSEFaceNet.from_config(net_cfg), preprocess, name="eval", loss=cfg.loss)
        emb.net.load_state_dict(model.net.state_dict())
        emb.to(device)
        return evaluate_faces(emb, held_set, per_identity=cfg.eval_per_identity)

    bar = progress(total=cfg.iters, initial=step, desc=f"faces {cfg.loss}", enabled=main, unit="step")
    model.train()
    session_end = cfg.iters if cfg.stop_after is None else min(cfg.iters, step + cfg.stop_after)
    time_up = False
    with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
        while step < session_end:
            # Batches depend only on (seed, rank, step), so a resumed run draws what the original would have.
            step_seed = (cfg.seed * 1_000_003 + dist_info.rank) * 10_000_019 + step
            gen.manual_seed(step_seed)
            torch.manual_seed(step_seed)  # dropout, so a resumed run matches an uninterrupted one
            idx = torch.randint(0, len(train_set), (cfg.batch,), generator=gen)
            if on_device:
                idx = idx.to(device)
            x = train_images[idx].float().div_(127.5).sub_(1.0)
            x = preprocess(augment(x, cfg.max_shift, generator=gen).to(device))
            y = train_labels[idx].to(device)
            time_frac = _time_fraction(started, cfg, dist_info, device)
            lr = lr_at(step, cfg, time_frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            parts = ddp_model(x, y)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.iters:
                rec = {k: float(all_reduce_mean(v.detach()).item()) for k, v in parts.items()}
                bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.2f}")
                logger.log({"kind": "train", "step": step, "lr": lr, **rec})
            if step % cfg.ckpt_every == 0 and step < cfg.iters:
                save_checkpoint()
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.iters:
                res = run_eval()
                if res is not None:
                    logger.log({"kind": "eval", "step": step, **res[0]})
                model.train()
                barrier()
            if stop_flag.agreed(device):
                break
            if time_frac >= 1.0:
                time_up = True
                if main:
                    logger.log({"kind": "time_budget", "step": step, "max_minutes": cfg.max_minutes})
                break
    if not finish_session(bar, save_checkpoint, step, cfg.iters, main, time_up):
        return {}

    scores: dict = {}
    if main:
        res = run_eval()
        if res is not None:
            scores, genuine, impostor, emb = res
            logger.log({"kind": "eval", "step": step, **scores})
            plot_verification(
                genuine,
                impostor,
                out / "roc.png",
                title=f"{cfg.loss}: {held_set.num_identities} held-out identities",
            )
            if cfg.loss == "magface":
                save_quality_grid(held_set, emb, out / "quality.png")
        _save_curves(out / "log.jsonl", out / "curves.png")
        export = embedder_checkpoint(
            model.net,
            net_cfg,
            preprocess,
            cfg.loss,
            scores=scores,
            extra={
                "train": {
                    "data": cfg.data,
                    "steps": step,
                    "stopped_by_time_budget": time_up,
                    "train_identities": len(train_ids),
                    "heldout_identities": held_ids,
                    "holdout": cfg.holdout,
                    "config": asdict(cfg),
                }
            },
        )
        atomic_torch_save(export, out / "embedder.pt")
        write_run_info(out / "run.json", clock, steps=step, device=device, extra={"scores": scores})
    barrier()
    return scores

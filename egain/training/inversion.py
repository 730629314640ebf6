"""Training of inversion methods (``egain train``): EGAIN's six steps and loss (seeds/000 Eq. 1).

Per iteration, for a batch x: (1) w_b = E_b(x), (2) + w-bar, (3) y0 = G(w_b), (4) Delta0 = x - y0,
(5) E_Delta(Delta0), (6) y = G(fused) -- all inside :meth:`EGAINMethod.run` -- then

    L = l_d-reg L_d-reg + l_w-reg L_w-reg + l_l2 L2 + l_lpips LPIPS + l_id ID + l_avg-reg L_avg-reg
        [+ l_align L1(ADA(warp(Delta0)) - Delta0) + l_adv L_adv   (HFGI)]

The generator is frozen. The basic encoder is frozen (HFGI, EGAIN) unless ``train_basic_encoder``;
for ``e4e`` it is the model being trained. With a frozen basic encoder, steps 1-4 run without a
graph (Delta0 is a constant), so each iteration back-propagates through one generator pass only.
The latent regularisers act on w_b and are computed only when the basic encoder trains.

Runs are resumable: ``RUN_DIR/checkpoint.pt`` (full training state) and ``RUN_DIR/model.pt`` (the
method, loadable by ``egain invert`` / ``egain.methods.create``) are written atomically;
``RUN_DIR/log.jsonl`` gets one record per log interval, ``RUN_DIR/samples/`` validation grids
(rows: source, y0, y, |Delta0|), ``RUN_DIR/run.json`` the provenance. Under ``torchrun`` the step
runs in PyTorch DDP (gloo on CPU, nccl on CUDA); the batch size is per process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from egain.encoders.ada import random_perspective
from egain.encoders.e4e import LatentCodesDiscriminator
from egain.errors import CheckpointError, EgainError, InputError
from egain.losses.adversarial import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from egain.losses.latent import avg_reg, delta_reg, w_reg_discriminator_loss, w_reg_generator_loss, w_reg_r1
from egain.losses.reconstruction import FeatureDistance, IdentityLoss, l2_loss
from egain.runtime.checkpoint import atomic_torch_save, load_checkpoint
from egain.runtime.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from egain.runtime.logging import JsonlLogger, progress
from egain.utils.device import seed_everything
from egain.utils.images import save_grid

TRAIN_FORMAT = "egain-inversion-train"
LOSS_TERMS = ("l2", "lpips", "id", "avg_reg", "d_reg", "w_reg", "adv", "align")

#: Published settings. pSp/e4e/HFGI/EGAIN: L2 1.0, LPIPS 0.8 (alex); ID 0.1 (e4e, HFGI train.sh;
#: EGAIN's code defaults to 0 but its Eq. 1 has the term); e4e: delta-reg 2e-4, w-reg 0.1;
#: pSp w_norm (avg-reg) 0; HFGI: res (alignment) 0.1, adversarial 0 (the released code comments the
#: discriminator out; the paper's term is available with --lambda-adv).
_E4E_LAMBDAS = {
    "l2": 1.0,
    "lpips": 0.8,
    "id": 0.1,
    "avg_reg": 0.0,
    "d_reg": 2e-4,
    "w_reg": 0.1,
    "adv": 0.0,
    "align": 0.0,
}
#: every method starts from e4e's weights; HFGI adds its ADA alignment term
DEFAULT_LAMBDAS: dict[str, dict[str, float]] = {
    "e4e": dict(_E4E_LAMBDAS),
    "hfgi": {**_E4E_LAMBDAS, "align": 0.1},
    "egain": dict(_E4E_LAMBDAS),
    "egain-external": dict(_E4E_LAMBDAS),
}


@dataclass
class InversionTrainConfig:
    method: str
    generator: str
    data: str
    out: str
    basic_encoder: str | None = None
    train_basic_encoder: bool = False
    iters: int = 10000
    batch: int = 8
    lr: float = 1e-4
    lambdas: dict[str, float] = field(default_factory=dict)
    passes: int = 1
    resume: str | None = "auto"
    device: str = "auto"
    seed: int = 0
    id_net: str | None = "synthfaces-arcface"
    perceptual_net: str | None = None  # face embedder for the LPIPS fallback (default: id_net)
    lpips: str | None = (
        None  # "alex" | "vgg": real LPIPS (published weights needed); None: face-feature distance
    )
    lpips_backbone: str | None = None
    lpips_linear: str | None = None
    discriminator: str | None = None  # image D for HFGI's adversarial term (default: the generator file)
    progressive_start: int | None = 20000
    progressive_every: int = 2000
    distortion_scale: float = 0.15
    aug_rate: float = 0.9
    w_disc_lr: float = 2e-5
    d_lr: float = 2e-5
    r1: float = 10.0
    r1_every: int = 16
    log_every: int = 25
    val_every: int = 500
    ckpt_every: int = 500
    n_val: int = 8
    workers: int = 0
    hflip: bool = True
    method_config: dict[str, Any] = field(default_factory=dict)

    def resolved_lambdas(self) -> dict[str, float]:
        base = dict(DEFAULT_LAMBDAS.get(self.method, DEFAULT_LAMBDAS["egain"]))
        for k, v in self.lambdas.items():
            if k not in LOSS_TERMS:
                raise EgainError(f"unknown loss term {k!r}; expected one of {', '.join(LOSS_TERMS)}")
            if v is not None:
                base[k] = float(v)
        return base


# ------------------------------------------------------------------------------------------------
# data


def make_dataset(spec: str, size: int) -> Dataset:
    """``DIR`` (any images, resized) or ``synthfaces:SPEC`` (rendered on the fly)."""
    if spec.startswith("synthfaces:") or spec == "synthfaces":
        from egain.data import synthfaces

        maker = getattr(synthfaces, "dataset_from_spec", None)
        if maker is None:
            raise EgainError(
                "this build has no synthfaces dataset; render one with 'egain data' and pass its folder"
            )
        return maker(spec.partition(":")[2], size=size)
    from egain.data.folder import ImageFolderDataset

    if not Path(spec).exists():
        raise InputError(
            f"training data '{spec}' does not exist; expected an image folder or synthfaces:SPEC"
        )
    ds = ImageFolderDataset(spec, size, hflip=False)
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
# model set-up


def build_method(cfg: InversionTrainConfig, device: torch.device) -> nn.Module:
    """The method to train; ``cfg.basic_encoder`` (ours or a published e4e) initialises E_b and w-bar."""
    from egain.methods import create, generator_io

    generator = generator_io.load_generator(cfg.generator, device)
    overrides = dict(cfg.method_config)
    overrides["passes"] = cfg.passes
    basic_state: dict[str, torch.Tensor] | None = None
    if cfg.basic_encoder:
        basic_cfg, basic_state = basic_encoder_from_checkpoint(cfg.basic_encoder, generator)
        overrides.update(basic_cfg)
    # memory_format=None: train in the NCHW layout the components are built with (channels_last
    # train-mode BatchNorm is less precise on CPU; see EGAINMethod.set_memory_format).
    method = create(cfg.method, generator=generator, device=device, memory_format=None, **overrides)
    if basic_state is not None:
        missing, unexpected = method.load_state_dict(basic_state, strict=False)
        bad = [k for k in missing if k.startswith("basic_encoder.")] + list(unexpected)
        if bad:
            raise CheckpointError(f"basic encoder '{cfg.basic_encoder}' does not fit this method ({bad[:4]})")
    elif method.has_delta_branch and not cfg.train_basic_encoder:
        raise EgainError(
            f"{cfg.method} trains with a frozen basic encoder: pass --basic-encoder (an e4e checkpoint, e.g. from "
            "'egain train --method e4e') or --train-basic-encoder to train it jointly"
        )
    return method


def basic_encoder_from_checkpoint(path: str, generator: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config overrides, state) for E_b and w-bar from an egain checkpoint or a published e4e file."""
    from egain.methods import generator_io
    from egain.methods.composition import CHECKPOINT_FORMAT

    ckpt = load_checkpoint(path, what="basic encoder checkpoint")
    if ckpt.get("egain_format") == TRAIN_FORMAT:
        ckpt = ckpt["model"]
    if ckpt.get("egain_format") == CHECKPOINT_FORMAT:
        generator_io.check_compatible(ckpt.get("generator", {}), generator, f"basic encoder '{path}'")
        state = {
            k: v for k, v in ckpt["state_dict"].items() if k.startswith("basic_encoder.") or k == "latent_avg"
        }
        conf = ckpt["config"]
        return {
            "basic_encoder": conf["basic_encoder"],
            "input_size": conf["input_size"],
            "preset": conf["preset"],
        }, state
    from egain.methods.published import basic_encoder_from_published

    return basic_encoder_from_published(ckpt, generator, where=f"basic encoder '{path}'")


class _Step(nn.Module):
    """The differentiable part of one iteration, as one module (what DDP wraps)."""

    def __init__(
        self, method: nn.Module, losses: _Losses, cfg: InversionTrainConfig, lambdas: dict[str, float]
    ):
        super().__init__()
        self.method = method
        self.losses = losses
        self.cfg = cfg
        self.lambdas = lambdas

    def forward(self, x: torch.Tensor, stage: int, w_disc: nn.Module | None, img_disc: nn.Module | None):
        cfg, lam = self.cfg, self.lambdas
        train_basic = cfg.train_basic_encoder or not self.method.has_delta_branch
        augment = None
        if self.method.aligner is not None and lam["align"] > 0:
            augment = _Augment(cfg.distortion_scale, cfg.aug_rate)
        out = self.method.run(x, grad_basic=train_basic, augment_delta=augment)
        y = out.reconstruction
        terms: dict[str, torch.Tensor] = {"l2": l2_loss(y, x)}
        if lam["lpips"] > 0:
            terms["lpips"] = self.losses.perceptual(y, x)
        if lam["id"] > 0:
            terms["id"] = self.losses.identity(y, x)
        if train_basic:
            w_b = out.basic_latents
            if lam["avg_reg"] > 0:
                terms["avg_reg"] = avg_reg(w_b, self.method.latent_avg)
            if lam["d_reg"] > 0 and stage < w_b.shape[1] - 1:  # e4e: only while progressive
                terms["d_reg"] = delta_reg(w_b - self.method.latent_avg, stage)
            if lam["w_reg"] > 0 and w_disc is not None:
                terms["w_reg"] = w_reg_generator_loss(w_disc, w_b, rows=stage + 1)
        if out.aligned and lam["align"] > 0:
            terms["align"] = sum(
                (a - d).abs().mean() for a, d in zip(out.aligned, out.deltas, strict=True)
            ) / len(out.aligned)
        if lam["adv"] > 0 and img_disc is not None:
            terms["adv"] = g_nonsaturating_loss(img_disc(out.full))
        loss = sum(lam[k] * v for k, v in terms.items())
        return loss, terms, out


class _Augment:
    def __init__(self, distortion_scale: float, p: float):
        self.distortion_scale, self.p = distortion_scale, p

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        return random_perspective(delta.detach(), self.distortion_scale, self.p).detach()


@dataclass
class _Losses:
    perceptual: nn.Module | None = None
    identity: nn.Module | None = None


def build_losses(cfg: InversionTrainConfig, lambdas: dict[str, float], device: torch.device) -> _Losses:
    losses = _Losses()
    embedder = None

    def get_embedder(spec: str | None, term: str):
        from egain.faces import load_embedder

        if spec is None:
            raise EgainError(
                f"--lambda-{term} > 0 needs a face embedder (--id-net SPEC) or pass --lambda-{term} 0"
            )
        try:
            return load_embedder(spec, device=device)
        except EgainError as exc:
            raise type(exc)(f"{exc} (or pass --lambda-{term} 0 to train without this term)") from None

    if lambdas["id"] > 0:
        embedder = get_embedder(cfg.id_net, "id")
        losses.identity = IdentityLoss(embedder)
    if lambdas["lpips"] > 0:
        if cfg.lpips:
            losses.perceptual = _lpips_module(cfg, device)
        else:
            spec = cfg.perceptual_net or cfg.id_net
            net = embedder if (embedder is not None and spec == cfg.id_net) else get_embedder(spec, "lpips")
            losses.perceptual = FeatureDistance(net)
    return losses


def _lpips_module(cfg: InversionTrainConfig, device: torch.device) -> nn.Module:
    from egain.metrics.lpips import load_lpips

    return _MeanLoss(load_lpips(cfg.lpips, cfg.lpips_backbone, cfg.lpips_linear, device=device))


class _MeanLoss(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.inner(y, x).mean()


def progressive_stage(step: int, n_latent: int, start: int | None, every: int) -> int:
    """e4e's schedule: W only until ``start``, then one more offset every ``every`` steps."""
    if start is None or start < 0:
        return n_latent - 1
    if step < start:
        return 0
    return int(min(n_latent - 1, 1 + (step - start) // max(1, every)))


# ------------------------------------------------------------------------------------------------
# the loop


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
    lambdas = cfg.resolved_lambdas()

    method = build_method(cfg, device)
    train_basic = cfg.train_basic_encoder or not method.has_delta_branch
    modules = method.trainable_modules(train_basic)
    params = [p for m in modules.values() for p in m.parameters()]
    for m in modules.values():
        m.requires_grad_(True)
    if not train_basic:
        method.basic_encoder.requires_grad_(False)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)

    w_disc = w_disc_opt = None
    if train_basic and lambdas["w_reg"] > 0:
        w_disc = LatentCodesDiscriminator(method.generator.style_dim).to(device)
        w_disc_opt = torch.optim.Adam(w_disc.parameters(), lr=cfg.w_disc_lr)
    img_disc = img_disc_opt = None
    if lambdas["adv"] > 0:
        img_disc = _load_image_discriminator(cfg, device)
        img_disc_opt = torch.optim.Adam(img_disc.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99))
    losses = build_losses(cfg, lambdas, device)

    step_module = _Step(method, losses, cfg, lambdas)
    runner: nn.Module = step_module
    if dist.enabled:
        runner = torch.nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=train_basic,  # e4e's progressive stages leave heads unused
        )

    clock = RunClock()
    step = 0
    if cfg.resume == "auto" and ckpt_path.exists() or cfg.resume not in (None, "auto", "none", ""):
        path = ckpt_path if cfg.resume == "auto" else Path(cfg.resume)
        step = _resume(
            path, cfg, method, optimizer, w_disc, w_disc_opt, img_disc, img_disc_opt, clock, device
        )

    dataset = make_dataset(cfg.data, method.input_size)
    n_val = min(cfg.n_val, max(1, len(dataset) // 10)) if len(dataset) > 1 else 1
    val = torch.stack([_item(dataset, len(dataset) - 1 - i) for i in range(n_val)]).to(device)
    train_idx = list(range(len(dataset) - n_val)) if len(dataset) > n_val else list(range(len(dataset)))
    train_set = torch.utils.data.Subset(dataset, train_idx)
    if len(train_set) < cfg.batch:
        raise InputError(
            f"training data has {len(train_set)} images (after {n_val} held out); need at least --batch {cfg.batch}"
        )
    sampler = None
    if dist.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_set, dist.world_size, dist.rank, seed=cfg.seed
        )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
    )
    batches = _infinite(loader, sampler)
    logger = JsonlLogger(out / "log.jsonl", enabled=dist.is_main)
    if dist.is_main:
        (out / "samples").mkdir(parents=True, exist_ok=True)

    record: dict[str, Any] = {}
    scores: dict[str, float | int] = {}  # the last validation, for run.json
    method.train()
    method.generator.eval()
    if not train_basic:
        method.basic_encoder.eval()  # frozen: BN keeps its statistics
    bar = progress(total=cfg.iters, initial=step, desc=f"train {cfg.method}", enabled=dist.is_main)
    running: dict[str, float] = {}
    with StopFlag() as stop_flag:  # SIGTERM/SIGINT: save and leave at the end of the step
        while step < cfg.iters:
            x = next(batches).to(device, non_blocking=True)
            if cfg.hflip:
                flip = torch.rand(x.shape[0], device=device) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            stage = progressive_stage(
                step, method.generator.n_latent, cfg.progressive_start, cfg.progressive_every
            )
            if train_basic:
                method.basic_encoder.set_progressive_stage(stage)
            loss, terms, result = runner(x, stage, w_disc, img_disc)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if w_disc is not None:
                _w_disc_step(cfg, method, w_disc, w_disc_opt, result.basic_latents, stage, step, device)
            if img_disc is not None:
                _img_disc_step(cfg, img_disc, img_disc_opt, x, result.full, step)
            step += 1
            bar.update(1)
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            running["loss"] = running.get("loss", 0.0) + float(loss.detach())
            running["n"] = running.get("n", 0.0) + 1
            if step % cfg.log_every == 0 or step == cfg.iters:
                n = running.pop("n")
                record = {"step": step, **{k: _reduce(v / n, device) for k, v in running.items()}}
                if train_basic:
                    record["stage"] = stage
                running = {}
                logger.log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if step % cfg.val_every == 0 or step == cfg.iters:
                vrec = validate(
                    method, val, out / "samples" / f"val_{step:06d}.png" if dist.is_main else None
                )
                logger.log({"step": step, **vrec})
                record.update(vrec)
                # the manifest's scores: the last validation (mean squared error in [-1, 1] of the
                # held-out images' reconstructions; "basic" is the basic encoder's alone)
                scores = {**{k: round(v, 5) for k, v in vrec.items()}, "val_images": int(val.shape[0])}
                method.train()
                method.generator.eval()
                if not train_basic:
                    method.basic_encoder.eval()
            stop_now = stop_flag.agreed(device)
            if dist.is_main and (step % cfg.ckpt_every == 0 or step == cfg.iters or stop_now):
                _save(
                    ckpt_path,
                    out / "model.pt",
                    cfg,
                    step,
                    method,
                    optimizer,
                    w_disc,
                    w_disc_opt,
                    img_disc,
                    img_disc_opt,
                    clock,
                )
                extra: dict = {"method": cfg.method}
                if scores:
                    extra["scores"] = scores
                write_run_info(out / "run.json", clock, steps=step, device=device, extra=extra)
            barrier()
            if stop_now:
                break
    bar.close()
    return record


def _item(ds: Dataset, i: int) -> torch.Tensor:
    item = ds[i]
    return item[0] if isinstance(item, list | tuple) else item


def _reduce(v: float, device: torch.device) -> float:
    return float(all_reduce_mean(torch.tensor(v, device=device)))


def _w_disc_step(cfg, method, w_disc, opt, w_b, stage, step, device) -> None:
    rows = stage + 1
    with torch.no_grad():
        z = torch.randn(w_b.shape[0] * rows, method.generator.style_dim, device=device)
        real = method.generator.mapping(z)
    loss = w_reg_discriminator_loss(w_disc, real, w_b, rows=rows)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cfg.r1 > 0 and step % cfg.r1_every == 0:
        opt.zero_grad(set_to_none=True)
        (cfg.r1 / 2 * w_reg_r1(w_disc, real) * cfg.r1_every).backward()
        opt.step()


def _img_disc_step(cfg, disc, opt, x, y_full, step) -> None:
    real = x if x.shape[-1] == y_full.shape[-1] else F.interpolate(x, size=y_full.shape[-2:], mode="bilinear")
    loss = d_logistic_loss(disc(real), disc(y_full.detach()))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cfg.r1 > 0 and step % cfg.r1_every == 0:
        real = real.detach().requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        (cfg.r1 / 2 * r1_penalty(disc(real), real) * cfg.r1_every).backward()
        opt.step()


def _load_image_discriminator(cfg: InversionTrainConfig, device: torch.device) -> nn.Module:
    from egain.methods.generator_io import generators_api

    load_discriminator = generators_api().load_discriminator

    path = cfg.discriminator or cfg.generator
    try:
        return load_discriminator(path, device=device)
    except EgainError as exc:
        raise EgainError(
            f"--lambda-adv needs the image discriminator (HFGI initialises it from the GAN's D): {exc}; "
            "pass --discriminator PATH or --lambda-adv 0"
        ) from None


@torch.no_grad()
def validate(method: nn.Module, val: torch.Tensor, grid_path: Path | None) -> dict[str, float]:
    """Reconstruction L2 of y0 (basic encoder alone) and y on the held-out batch; writes the grid."""
    method.eval()
    out = method.run(val)
    rec = {
        "val_l2_basic": float(F.mse_loss(out.basic_reconstruction, val)),
        "val_l2": float(F.mse_loss(out.reconstruction, val)),
    }
    if grid_path is not None:
        rows = [val, out.basic_reconstruction, out.reconstruction]
        if out.deltas:
            rows.append((out.deltas[0].abs() * 2 - 1).clamp(-1, 1))
        save_grid(torch.cat(rows).cpu(), grid_path, nrow=val.shape[0])
    return rec


def _plain_config(cfg: InversionTrainConfig) -> dict[str, Any]:
    """The run config with objects (e.g. an embedder passed from Python) replaced by their repr."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = (
            v if isinstance(v, str | int | float | bool | dict | list | tuple | type(None)) else repr(v)
        )
    return out


def _save(
    ckpt_path, model_path, cfg, step, method, optimizer, w_disc, w_disc_opt, img_disc, img_disc_opt, clock
) -> None:
    model = method.checkpoint_dict({"train": {"step": step, "config": _plain_config(cfg)}})
    atomic_torch_save(model, model_path)
    state = {
        "egain_format": TRAIN_FORMAT,
        "step": step,
        "config": _plain_config(cfg),
        "model": model,
        "optimizer": optimizer.state_dict(),
        "w_disc": w_disc.state_dict() if w_disc is not None else None,
        "w_disc_opt": w_disc_opt.state_dict() if w_disc_opt is not None else None,
        "img_disc": img_disc.state_dict() if img_disc is not None else None,
        "img_disc_opt": img_disc_opt.state_dict() if img_disc_opt is not None else None,
        "clock": clock.state_dict(),
        "rng": torch.get_rng_state(),
    }
    if method.device.type == "cuda":
        # hflip, ADA's warps and the latent discriminator draw on the device's own stream
        state["cuda_rng"] = torch.cuda.get_rng_state(method.device)
    atomic_torch_save(state, ckpt_path)


def _resume(path, cfg, method, optimizer, w_disc, w_disc_opt, img_disc, img_disc_opt, clock, device) -> int:
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
    missing, unexpected = method.load_state_dict(model["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith("generator.")]
    if missing or unexpected:
        raise CheckpointError(
            f"'{path}' does not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    try:
        optimizer.load_state_dict(state["optimizer"])
        if w_disc is not None and state.get("w_disc") is not None:
            w_disc.load_state_dict(state["w_disc"])
            w_disc_opt.load_state_dict(state["w_disc_opt"])
        if img_disc is not None and state.get("img_disc") is not None:
            img_disc.load_state_dict(state["img_disc"])
            img_disc_opt.load_state_dict(state["img_disc_opt"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"'{path}' was written with other training options ({exc})") from None
    clock.load_state_dict(state.get("clock", {}))
    if isinstance(state.get("rng"), torch.Tensor):
        torch.set_rng_state(state["rng"].cpu())
    if isinstance(state.get("cuda_rng"), torch.Tensor) and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    return int(state["step"])


__all__ = [
    "DEFAULT_LAMBDAS",
    "InversionTrainConfig",
    "build_method",
    "make_dataset",
    "progressive_stage",
    "train_inversion",
    "validate",
]

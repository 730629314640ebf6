"""``restyle-psp`` and ``restyle-e4e``: ReStyle's iterative residual encoder (Alaluf et al. 2021).

The loop, exactly as the published code runs it (reference secs. 1.1, 5.5, 11):

* the average image y_avg = face_pool(G(w-bar)) with the fixed noise maps, made once;
* step 0: w_0 = E(cat(x, y_avg)) + w-bar  (w-bar is added whatever ``start_from_latent_avg`` says);
* step t >= 1: w_t = E(cat(x, y_{t-1})) + w_{t-1};
* y_t = face_pool(G(w_t)): the generator output area-averaged to the input size, which is also
  the image fed back.

Training runs N steps per batch (``--iterations``, default 5) with the full loss at every step;
between steps y and w are detached, so no gradient crosses steps. The published coach calls
``backward`` per step and takes one optimiser step per batch; returning the sum of the per-step
losses gives the same gradients (the trainer calls ``backward`` once). The logged terms are the
last step's, as published. Inference runs 5 steps unless told otherwise
(``create(..., iterations=N)``, ``invert(images, iterations=N)``, ``egain invert --iterations N``)
and returns every step's reconstruction and code in ``extras`` (``reconstructions``,
``latents_per_iteration``) so convergence can be plotted.

The two variants share :class:`ReStyle` and differ in the encoder's head and the regularisers:

* ``restyle-psp``: ``BackboneEncoder`` (every row from its own head; or ``encoder={"type": "fpn"}``,
  the pSp ``GradualStyleEncoder`` on 6 channels); L2 1, LPIPS 0.8, ID 0.1, W-norm 0 (README).
* ``restyle-e4e``: ``ProgressiveBackboneEncoder`` (w_0 broadcast plus per-row offsets) with e4e's
  regularisers as ``coach_restyle_e4e`` applies them: the delta regulariser (2e-4) on each step's
  full code while the progressive schedule runs (start 20000, one more offset every 2000 steps),
  and the latent discriminator (0.1; R1 10 every 16 steps, lr 2e-5, pools of 50 codes) whose encoder
  term is computed on each step's code and whose fake codes are the encoder's raw first-step
  output (no w-bar added), one row per image, as published.

The trainer's optimiser is Adam at ``--lr`` (1e-4), not the published Ranger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from egain.encoders.e4e import LatentCodesDiscriminator
from egain.encoders.psp import GradualStyleEncoder
from egain.encoders.restyle import BackboneStyleEncoder
from egain.errors import CheckpointError, EgainError
from egain.losses.latent import delta_reg, w_reg_discriminator_loss, w_reg_generator_loss, w_reg_r1
from egain.methods import generator_io
from egain.methods.base import ImageInput, Inversion, TrainOption, prepare_images
from egain.methods.composition import progressive_stage
from egain.methods.psp import (
    LOSS_OPTIONS,
    PSP_LOSS_WEIGHTS,
    PUBLISHED_AT,
    StyleEncoderMethod,
    check_styles,
    encoder_options,
)
from egain.methods.published import (
    _generator_for,
    _strict_load,
    e4e_encoder_config,
    encoder_to_ours,
    split_prefixes,
)
from egain.methods.registry import register_method
from egain.nn.layout import plain

ENCODER_TYPES = ("backbone", "fpn")
#: published ``opts['encoder_type']`` -> (our encoder type, the method that runs it)
PUBLISHED_ENCODERS = {
    "BackboneEncoder": ("backbone", "restyle-psp"),
    "GradualStyleEncoder": ("fpn", "restyle-psp"),
    "ProgressiveBackboneEncoder": ("backbone", "restyle-e4e"),
}


@dataclass
class IterationResult:
    """Every step of one run of the loop (input-size images; codes with w-bar / w_{t-1} added)."""

    latents: list[torch.Tensor] = field(default_factory=list)
    reconstructions: list[torch.Tensor] = field(default_factory=list)
    full: torch.Tensor | None = None  # the last step's image at the generator's size
    first_offsets: torch.Tensor | None = None  # E(cat(x, y_avg)) before w-bar is added


class ReStyle(StyleEncoderMethod):
    """ReStyle over pSp or e4e (``variant``): ``generator`` plus ``input_size``, ``preset``,
    ``encoder`` (``type`` backbone/fpn and IR-SE sizes), ``iterations``, ``noise_mode``."""

    variant: ClassVar[str] = "psp"
    runtime_options: ClassVar[tuple[str, ...]] = ("iterations", "noise_mode")

    def __init__(
        self,
        generator: nn.Module,
        *,
        input_size: int | None = None,
        preset: str = "auto",
        encoder: Mapping[str, Any] | None = None,
        iterations: int = 5,
        noise_mode: str = "const",
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        self._init_common(generator, input_size, preset, noise_mode, latent_avg)
        overrides = dict(encoder or {})
        etype = overrides.pop("type", "backbone")
        if etype not in ENCODER_TYPES:
            raise EgainError(f"ReStyle encoder type must be one of {', '.join(ENCODER_TYPES)}, got {etype!r}")
        if etype == "fpn" and self.variant == "e4e":
            raise EgainError("restyle-e4e runs the progressive backbone encoder only (type 'backbone')")
        self.iterations = int(iterations)
        if self.iterations < 1:
            raise EgainError(f"ReStyle needs at least 1 iteration, got {self.iterations}")
        enc = encoder_options(self.preset, overrides)
        enc.setdefault("input_nc", 6)
        n, dim = generator.n_latent, generator.style_dim
        if etype == "fpn":
            self.encoder: nn.Module = GradualStyleEncoder(n, dim, self.input_size, **enc)
        else:
            for key in ("coarse_index", "middle_index"):
                enc.pop(key, None)
            self.encoder = BackboneStyleEncoder(
                n, dim, self.input_size, progressive=self.variant == "e4e", **enc
            )
        self.config = {
            "input_size": self.input_size,
            "preset": self.preset,
            "encoder": {"type": etype, **enc},
            "iterations": self.iterations,
            "noise_mode": self.noise_mode,
        }
        self._avg_cache: tuple[tuple, torch.Tensor] | None = None

    # -- the loop --------------------------------------------------------------------------------

    @torch.no_grad()
    def average_image(self) -> torch.Tensor:
        """y_avg = face_pool(G(w-bar)) with the fixed noise maps, (1, 3, S, S); cached."""
        a = self.latent_avg
        key = (a.device, a.dtype, a._version, a.data_ptr(), self.input_size)
        if self._avg_cache is None or self._avg_cache[0] != key:
            y = self.to_input_size(self.generator.synthesize(a.unsqueeze(0), noise_mode="const"))
            self._avg_cache = (key, plain(y).detach())
        return self._avg_cache[1]

    def run(
        self,
        x: torch.Tensor,
        iterations: int | None = None,
        *,
        noise_mode: str | None = None,
        step_hook: Any = None,
    ) -> IterationResult:
        """The published loop on a prepared batch; gradients flow within a step, never across steps.

        ``step_hook(t, x, y_t, w_t)`` is called after each step (the training step computes its
        losses there, so each step's graph can be freed before the next).
        """
        n = self.iterations if iterations is None else int(iterations)
        if n < 1:
            raise EgainError(f"ReStyle needs at least 1 iteration, got {n}")
        out = IterationResult()
        y_prev = self.average_image().expand(x.shape[0], -1, -1, -1)
        w_prev = None
        for t in range(n):
            offsets = self.encoder(torch.cat([x, y_prev], dim=1))
            if t == 0:
                out.first_offsets = offsets
                w = offsets + self.latent_avg
            else:
                w = offsets + w_prev
            full = self.synthesize(w, noise_mode)
            y = self.to_input_size(full)
            out.latents.append(w)
            out.reconstructions.append(y)
            out.full = full
            if step_hook is not None:
                step_hook(t, y, w)
            y_prev, w_prev = y.detach(), w.detach()
        return out

    @torch.no_grad()
    def invert(self, images: ImageInput, *, iterations: int | None = None) -> Inversion:
        was = self.training
        self.eval()
        try:
            x = prepare_images(images, self.input_size, self.device)
            r = self.run(x, iterations)
        finally:
            self.train(was)
        extras: dict[str, Any] = {
            "reconstructions": r.reconstructions,
            "latents_per_iteration": r.latents,
        }
        if r.full is not None and r.full.shape[-1] != self.input_size:
            extras["full_resolution"] = r.full
        return Inversion(r.latents[-1].contiguous(), plain(r.reconstructions[-1]), plain(extras))

    # -- training --------------------------------------------------------------------------------

    training_options: ClassVar[tuple[TrainOption, ...]] = LOSS_OPTIONS + (
        TrainOption(
            "iterations", 5, "ReStyle: refinement steps per batch (and at inference)", int, target="config"
        ),
    )

    accepts_target = True  # egain train --corrupt: iterate on ``batch``, compare with ``target``

    def training_step(
        self, batch: torch.Tensor, step: int, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total: list[torch.Tensor] = []
        logged: dict[str, torch.Tensor] = {}
        clean = batch if target is None else target

        def on_step(t: int, y: torch.Tensor, w: torch.Tensor) -> None:
            terms = self.step_terms(y, clean, w)
            total.append(self.weighted(terms))
            if t == 0:
                logged["l2_first"] = terms["l2"].detach()
            logged.update({k: v.detach() for k, v in terms.items()})  # the last step's, as published

        self.before_loop(step)
        r = self.run(batch, noise_mode=self.train_noise, step_hook=on_step)
        self.after_loop(r)
        return torch.stack(total).sum(), logged

    def step_terms(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.image_terms(y, x, w)

    def before_loop(self, step: int) -> None:
        """Variant hook before a training step's loop (restyle-e4e: the progressive stage)."""

    def after_loop(self, result: IterationResult) -> None:
        """Variant hook after a training step's loop (restyle-e4e: keep codes for the discriminator)."""

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> tuple[dict[str, float], list[torch.Tensor]]:
        """L2 of the first and last steps; grid rows: sources, then every step's reconstruction."""
        was = self.training
        self.eval()
        r = self.run(images)
        self.train(was)
        scores = {
            "val_l2_first": float(torch.nn.functional.mse_loss(r.reconstructions[0], images)),
            "val_l2": float(torch.nn.functional.mse_loss(r.reconstructions[-1], images)),
        }
        return scores, [images, *[plain(y) for y in r.reconstructions]]

    # -- published weights -----------------------------------------------------------------------

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> ReStyle:
        parts = split_prefixes(ckpt)
        enc = parts.get("encoder")
        if not enc:
            raise CheckpointError(
                f"{where} has no encoder.* weights; expected a published ReStyle checkpoint"
            )
        opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
        if "conv1.weight" in enc or str(opts.get("encoder_type", "")).startswith("ResNet"):
            raise CheckpointError(
                f"{where} uses ReStyle's ResNet34 backbone (other domains), which egain does not implement; "
                "the FFHQ files use IR-SE50 (restyle_psp_ffhq_encode.pt, restyle_e4e_ffhq_encode.pt)"
            )
        etype_pub = opts.get("encoder_type")
        if etype_pub is not None:
            if etype_pub not in PUBLISHED_ENCODERS:
                raise CheckpointError(f"{where}: encoder_type {etype_pub!r} is not a ReStyle encoder")
            etype, owner = PUBLISHED_ENCODERS[etype_pub]
            if owner != cls.name:
                raise CheckpointError(f"{where} holds a {etype_pub} ({owner}); use --method {owner}")
        else:  # no opts: the keys tell FPN from backbone; the method names the head
            etype = "fpn" if "latlayer1.weight" in enc else "backbone"
        cfg = e4e_encoder_config(enc, where)
        if cfg["input_nc"] != 6:
            raise CheckpointError(
                f"{where} has a {cfg['input_nc']}-channel encoder input; ReStyle's takes 6 (image + reconstruction)"
            )
        g = _generator_for(parts, ckpt, generator, torch.device(device), where)
        check_styles(cfg["n_styles"], cfg["style_dim"], g, where)
        encoder_cfg = {
            "type": etype,
            **{k: v for k, v in cfg.items() if k not in ("n_styles", "style_dim", "input_size")},
        }
        if etype == "backbone":
            encoder_cfg.pop("coarse_index")
            encoder_cfg.pop("middle_index")
        avg = ckpt.get("latent_avg")
        latent_avg = generator_io.as_wplus(
            avg if isinstance(avg, torch.Tensor) else generator_io.mean_latent(g), g
        )
        state = encoder_to_ours(enc, prefix="encoder.")
        state["latent_avg"] = latent_avg
        method = cls(
            generator=g, input_size=cfg["input_size"], encoder=encoder_cfg, latent_avg=latent_avg, **config
        )
        _strict_load(method, state, ["encoder.", "latent_avg"], where)
        return method


@register_method(
    "restyle-psp",
    summary="ReStyle over pSp (Alaluf et al.): iterative residual encoder on cat(image, current reconstruction)",
    generator="stylegan2",
)
class ReStylePSP(ReStyle):
    """ReStyle-pSp: ``BackboneEncoder`` heads, pSp's losses."""

    variant = "psp"
    published_at = PUBLISHED_AT["restyle-psp"]
    bundled_weights = "restyle-psp-stylegan2-64"
    loss_weights = dict(PSP_LOSS_WEIGHTS)


@register_method(
    "restyle-e4e",
    summary="ReStyle over e4e (Alaluf et al.): iterative residual encoder with e4e's offsets and regularisers",
    generator="stylegan2",
)
class ReStyleE4E(ReStyle):
    """ReStyle-e4e: progressive w_0 + offsets heads, e4e's delta and latent-discriminator terms."""

    variant = "e4e"
    published_at = PUBLISHED_AT["restyle-e4e"]
    bundled_weights = "restyle-e4e-stylegan2-64"
    loss_weights = {**PSP_LOSS_WEIGHTS, "d_reg": 2e-4, "w_reg": 0.1}
    training_options = ReStyle.training_options + (
        TrainOption("progressive_start", 20000, "e4e: step at which W+ offsets start (-1: all at once)", int),
        TrainOption("progressive_every", 2000, "e4e: steps between enabling two offsets", int),
        TrainOption("w_disc_lr", 2e-5, "e4e latent discriminator learning rate", float),
        TrainOption("r1", 10.0, "R1 weight of the discriminators", float),
        TrainOption("r1_every", 16, "lazy R1 interval", int),
        TrainOption(
            "w_pool_size",
            50,
            "e4e: pools of real/fake codes shown to the latent discriminator (0: none)",
            int,
        ),
    )

    @property
    def ddp_find_unused_parameters(self) -> bool:
        return True  # the progressive stages leave heads unused

    def setup_training(self, ctx: Any) -> None:
        super().setup_training(ctx)
        opt = ctx.options
        start = opt.get("progressive_start")
        self._progressive = start is not None and int(start) >= 0
        self._stage = self.generator.n_latent - 1
        # Training-only networks live outside the module tree: not in state_dict, not in model.pt.
        aux = self._aux = _Aux()
        aux.pools = (
            LatentPool(int(opt.get("w_pool_size") or 0)),
            LatentPool(int(opt.get("w_pool_size") or 0)),
        )
        if ctx.lambdas.get("w_reg", 0) > 0:
            aux.w_disc = LatentCodesDiscriminator(self.generator.style_dim).to(ctx.device)
            aux.w_disc_opt = torch.optim.Adam(aux.w_disc.parameters(), lr=float(opt["w_disc_lr"]))
        self._first_offsets: torch.Tensor | None = None

    def before_loop(self, step: int) -> None:
        opt = self.training_ctx.options
        n = self.generator.n_latent
        if self._progressive:
            self._stage = progressive_stage(
                step, n, int(opt["progressive_start"]), int(opt["progressive_every"])
            )
        else:
            self._stage = n - 1
        self.encoder.set_progressive_stage(self._stage)

    def step_terms(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self.image_terms(y, x, w)
        lam = self.training_ctx.lambdas
        if self._aux.w_disc is not None:
            rows = self._stage + 1 if self._progressive else None
            terms["w_reg"] = w_reg_generator_loss(self._aux.w_disc, w, rows=rows)
        if self._progressive and lam.get("d_reg", 0) > 0:  # published: whenever progressive training is on
            terms["d_reg"] = delta_reg(w, self._stage)
        return terms

    def after_loop(self, result: IterationResult) -> None:
        self._first_offsets = result.first_offsets.detach() if result.first_offsets is not None else None

    def training_info(self) -> dict[str, Any]:
        return {"stage": self._stage}

    def after_training_step(self, batch: torch.Tensor, step: int) -> None:
        """The latent discriminator's step (published ``train_discriminator``)."""
        aux = self._aux
        if aux.w_disc is None or self._first_offsets is None:
            return
        opt = self.training_ctx.options
        fake = self._first_offsets
        if self._progressive:
            fake = fake[:, : self._stage + 1]
        with torch.no_grad():
            z = torch.randn(batch.shape[0], self.generator.style_dim, device=batch.device)
            real = self.generator.mapping(z)
        real_pool, fake_pool = aux.pools
        real = real_pool.query(real)
        fake = fake_pool.query(fake)
        if fake.ndim == 3:  # no pool: row 0 of each image
            fake = fake[:, 0]
        loss = w_reg_discriminator_loss(aux.w_disc, real, fake)
        aux.w_disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        aux.w_disc_opt.step()
        if opt["r1"] > 0 and step % int(opt["r1_every"]) == 0:
            aux.w_disc_opt.zero_grad(set_to_none=True)
            (float(opt["r1"]) / 2 * w_reg_r1(aux.w_disc, real) * int(opt["r1_every"])).backward()
            aux.w_disc_opt.step()
        self._first_offsets = None

    def training_state(self) -> dict[str, Any]:
        aux = self._aux
        if aux.w_disc is None:
            return {}
        return {
            "w_disc": aux.w_disc.state_dict(),
            "w_disc_opt": aux.w_disc_opt.state_dict(),
            "pools": [p.state_dict() for p in aux.pools],
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        aux = self._aux
        if aux.w_disc is not None and state.get("w_disc") is not None:
            aux.w_disc.load_state_dict(state["w_disc"])
            aux.w_disc_opt.load_state_dict(state["w_disc_opt"])
            for pool, s in zip(aux.pools, state.get("pools", []), strict=False):
                pool.load_state_dict(s)


@dataclass
class _Aux:
    """restyle-e4e's training-only state: the latent discriminator, its optimiser, the code pools."""

    w_disc: nn.Module | None = None
    w_disc_opt: torch.optim.Optimizer | None = None
    pools: tuple = ()


class LatentPool:
    """e4e's ``LatentCodesPool``: a history of codes shown to the latent discriminator.

    Each query element (a (rows, D) block gives one randomly chosen row) is returned as is while
    the pool fills; afterwards, with probability 1/2, it replaces a random stored code, which is
    returned instead. Random numbers come from torch's generator (saved and restored by the
    trainer), so resumed runs draw the same.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self.codes: list[torch.Tensor] = []

    def query(self, ws: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return ws
        if self.codes and self.codes[0].device != ws.device:  # restored from a checkpoint on CPU
            self.codes = [c.to(ws.device) for c in self.codes]
        out = []
        for w in ws:
            if w.ndim == 2:
                w = w[int(torch.randint(0, w.shape[0], ()))]
            w = w.detach()
            if len(self.codes) < self.size:
                self.codes.append(w)
                out.append(w)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.codes[i].clone())
                self.codes[i] = w
            else:
                out.append(w)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "codes": [c.cpu() for c in self.codes]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.codes = list(state.get("codes", []))

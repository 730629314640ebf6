"""``psp``: pixel2style2pixel (Richardson et al. 2021), and what ReStyle shares with it.

pSp maps an image to a W+ code in one pass: an IR-SE50 body, a feature pyramid and one
``map2style`` head per style row (18 at 1024 px; 2 log2(size) - 2, i.e. ``generator.n_latent``,
for other sizes), all rows predicted at once (:class:`~egain.encoders.psp.GradualStyleEncoder`).
``start_from_latent_avg`` (on, as the published FFHQ encoder was trained) adds the average latent
to the encoder's output; ``learn_in_w`` predicts a single W code instead
(:class:`~egain.encoders.psp.IntoWEncoder`), broadcast to every layer.

Training (published ``ffhq_encode`` settings; reference sec. 2.1): L2 1.0, LPIPS 0.8 (here the
face-feature distance unless ``--lpips`` names real LPIPS weights), ID 0.1, W-norm 0; one forward,
one loss, one step per batch; the generator's noise is random during training (the published
forward's default) and fixed (``noise_mode="const"``) at inference, as the published scripts run.
The trainer's optimiser is Adam at ``--lr`` (1e-4), not the published Ranger.

Published weights: ``psp_ffhq_encode.pt`` (``{'state_dict': {encoder.*, decoder.*}, 'opts',
'latent_avg'}``) loads through ``create("psp", checkpoint=PATH)``; the architecture is read from
the tensors, so smaller files in the same layout load too.

The shared base :class:`StyleEncoderMethod` (generator, average latent, ``face_pool``, the image
losses, memory format, editing) also serves ReStyle (:mod:`egain.methods.restyle`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from egain.editing.directions import DirectionLike, apply_edit
from egain.encoders.psp import GradualStyleEncoder, IntoWEncoder
from egain.errors import CheckpointError, EgainError
from egain.losses.latent import avg_reg
from egain.losses.reconstruction import build_reconstruction_losses, l2_loss
from egain.methods import generator_io
from egain.methods.base import (
    RECONSTRUCTION_OPTIONS,
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
)
from egain.methods.components import face_pool, resolve_preset
from egain.methods.composition import PRESETS
from egain.methods.published import (
    _generator_for,
    _strict_load,
    e4e_encoder_config,
    encoder_to_ours,
    split_prefixes,
)
from egain.methods.registry import register_method
from egain.nn.layout import plain

PUBLISHED_AT = {
    "psp": "https://github.com/eladrich/pixel2style2pixel (psp_ffhq_encode.pt)",
    "restyle-psp": "https://github.com/yuval-alaluf/restyle-encoder (restyle_psp_ffhq_encode.pt)",
    "restyle-e4e": "https://github.com/yuval-alaluf/restyle-encoder (restyle_e4e_ffhq_encode.pt)",
}

#: pSp README ``ffhq_encode`` (the code defaults id to 0); ReStyle's README uses the same four.
PSP_LOSS_WEIGHTS = {"l2": 1.0, "lpips": 0.8, "id": 0.1, "w_norm": 0.0}
LOSS_HELP = {
    "l2": "pixel MSE",
    "lpips": "LPIPS (the face-feature distance without --lpips)",
    "id": "identity loss",
    "w_norm": "pSp W-norm: ||w - w-bar|| over all rows",
    "d_reg": "e4e delta regulariser",
    "w_reg": "e4e latent-discriminator loss",
}
#: the loss-network and noise options every method of the family declares (same names and types
#: as the EGAIN family's, so ``egain train`` shows one flag for each)
LOSS_OPTIONS: tuple[TrainOption, ...] = (
    *RECONSTRUCTION_OPTIONS,
    TrainOption(
        "train_noise",
        "random",
        "generator noise while training (published: random; const = the fixed noise maps)",
        str,
        choices=("random", "const"),
    ),
)


def encoder_options(preset: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The IR-SE body and head sizes: the preset's (the composition's e4e sizes), then ``overrides``."""
    opts = {**PRESETS[preset]["e4e"], **dict(overrides or {})}
    if opts.get("units") is not None:
        opts["depth"] = None
    if opts.get("depth") is None and opts.get("units") is None:
        raise EgainError("encoder needs 'depth' (50/100/152) or 'units' (per stage)")
    for key in ("units", "widths"):
        if opts.get(key) is not None:
            opts[key] = tuple(int(v) for v in opts[key])
    return opts


class StyleEncoderMethod(InversionMethod):
    """Shared base of pSp and ReStyle: a frozen generator, w-bar, ``face_pool``, losses, editing.

    Subclasses build ``self.encoder`` and define ``invert`` and ``training_step``.
    """

    runtime_options: ClassVar[tuple[str, ...]] = ("noise_mode",)
    loss_weights: ClassVar[dict[str, float]] = dict(PSP_LOSS_WEIGHTS)
    loss_help: ClassVar[dict[str, str]] = LOSS_HELP
    encoder: nn.Module

    def _init_common(
        self,
        generator: nn.Module,
        input_size: int | None,
        preset: str,
        noise_mode: str,
        latent_avg: torch.Tensor | None,
    ) -> None:
        self.generator = generator
        generator.requires_grad_(False)
        generator.eval()
        self.input_size = int(input_size or min(generator.size, 256))
        self.preset = resolve_preset(generator, preset)
        self.noise_mode = str(noise_mode)
        if latent_avg is None:
            latent_avg = generator_io.mean_latent(generator)
        # w-bar per latent row ([n_latent, style_dim], the published layout)
        self.register_buffer("latent_avg", generator_io.as_wplus(latent_avg, generator).clone())

    # -- shared pieces ---------------------------------------------------------------------------

    def synthesize(self, w: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        return self.generator.synthesize(w, noise_mode=noise_mode or self.noise_mode)

    def to_input_size(self, y: torch.Tensor) -> torch.Tensor:
        """The published ``face_pool``: area-average a larger generator output to the input size."""
        return face_pool(y, self.input_size)

    def _inference_modules(self) -> tuple[nn.Module, ...]:
        # Same reasoning as EGAINMethod.set_memory_format: the encoder's weights are converted
        # once so no convolution reorders them per call; the trainer keeps NCHW.
        return (self.encoder,)

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: DirectionLike, strength: float = 1.0) -> torch.Tensor:
        """G(w + offset) at the input size: pSp and ReStyle add the direction to the (last
        iteration's) W+ code on every row (``latent_offset`` gives a Direction's semantics)."""
        self.eval()
        w = inversion.latents.to(self.device)
        return plain(self.to_input_size(self.synthesize(apply_edit(w, direction, strength))))

    # -- training --------------------------------------------------------------------------------

    training_options: ClassVar[tuple[TrainOption, ...]] = LOSS_OPTIONS

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        for m in self.trainable_modules().values():
            m.requires_grad_(True)
        # loss networks live outside the module tree: not in state_dict, not in model.pt (a plain
        # attribute; nn.Module.__setattr__ would register the embedder as a submodule)
        object.__setattr__(self, "_losses", build_reconstruction_losses(ctx.lambdas, ctx.options, ctx.device))
        self.train_noise = str(ctx.options.get("train_noise") or "random")

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    def image_terms(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """L2, perceptual, ID and W-norm of one reconstruction ``y`` of ``x`` from code ``w``."""
        lam = self.training_ctx.lambdas
        terms = {"l2": l2_loss(y, x)}
        if lam.get("lpips", 0) > 0:
            terms["lpips"] = self._losses.perceptual(y, x)
        if lam.get("id", 0) > 0:
            terms["id"] = self._losses.identity(y, x)
        if lam.get("w_norm", 0) > 0:
            terms["w_norm"] = avg_reg(w, self.latent_avg)
        return terms

    def weighted(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        lam = self.training_ctx.lambdas
        return sum(lam[k] * v for k, v in terms.items())


@register_method(
    "psp",
    summary="pSp encoder (Richardson et al.): IR-SE + FPN, all W+ rows at once (or one W code with learn_in_w)",
    generator="stylegan2",
)
class PSP(StyleEncoderMethod):
    """pSp: ``generator`` plus ``input_size``, ``preset``, ``encoder`` (IR-SE sizes),
    ``learn_in_w``, ``start_from_latent_avg``, ``noise_mode``; ``latent_avg`` is w-bar."""

    published_at = PUBLISHED_AT["psp"]
    bundled_weights = "psp-stylegan2-64"
    training_options = LOSS_OPTIONS + (
        TrainOption("learn_in_w", False, "pSp: predict one W code for all layers", bool, target="config"),
    )

    def __init__(
        self,
        generator: nn.Module,
        *,
        input_size: int | None = None,
        preset: str = "auto",
        encoder: Mapping[str, Any] | None = None,
        learn_in_w: bool = False,
        start_from_latent_avg: bool = True,
        noise_mode: str = "const",
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        self._init_common(generator, input_size, preset, noise_mode, latent_avg)
        enc = encoder_options(self.preset, encoder)
        self.input_nc = int(enc.get("input_nc", 3))
        self.learn_in_w = bool(learn_in_w)
        self.start_from_latent_avg = bool(start_from_latent_avg)
        if self.learn_in_w:
            enc.pop("head_channels", None)
            enc.pop("coarse_index", None)
            enc.pop("middle_index", None)
            self.encoder: nn.Module = IntoWEncoder(generator.style_dim, **enc)
        else:
            self.encoder = GradualStyleEncoder(
                generator.n_latent, generator.style_dim, self.input_size, **enc
            )
        self.config = {
            "input_size": self.input_size,
            "preset": self.preset,
            "encoder": enc,
            "learn_in_w": self.learn_in_w,
            "start_from_latent_avg": self.start_from_latent_avg,
            "noise_mode": self.noise_mode,
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """W+ code (N, n_latent, D): encoder output, plus w-bar when ``start_from_latent_avg``."""
        codes = self.encoder(x)
        if self.learn_in_w:  # one W code; the generator receives it on every layer
            if self.start_from_latent_avg:
                codes = codes + self.latent_avg[0]
            return codes.unsqueeze(1).expand(-1, self.generator.n_latent, -1)
        return codes + self.latent_avg if self.start_from_latent_avg else codes

    @torch.no_grad()
    def invert(self, images: ImageInput) -> Inversion:
        was = self.training
        self.eval()
        try:
            x = prepare_images(images, self.input_size, self.device, self.input_nc)
            w = self.encode(x)
            y = self.synthesize(w)
        finally:
            self.train(was)
        extras = {"full_resolution": y} if y.shape[-1] != self.input_size else {}
        return Inversion(w.contiguous(), plain(self.to_input_size(y)), plain(extras))

    accepts_target = True  # egain train --corrupt: encode ``batch``, compare with ``target``
    input_channels_config = "encoder.input_nc"  # --corrupt parsing: pSp's seg-to-face input_nc

    def training_step(
        self, batch: torch.Tensor, step: int, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.encode(batch)
        y = self.to_input_size(self.synthesize(w, self.train_noise))
        terms = self.image_terms(y, batch if target is None else target, w)
        return self.weighted(terms), terms

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> PSP:
        parts = split_prefixes(ckpt)
        enc = parts.get("encoder")
        if not enc:
            raise CheckpointError(f"{where} has no encoder.* weights; expected a published pSp checkpoint")
        opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
        etype = str(opts.get("encoder_type", ""))
        if etype == "Encoder4Editing":
            raise CheckpointError(
                f"{where} is an e4e checkpoint (encoder_type Encoder4Editing); use --method e4e"
            )
        if "output_layer_2.3.weight" in enc or etype == "BackboneEncoderUsingLastLayerIntoWPlus":
            raise CheckpointError(
                f"{where} holds pSp's BackboneEncoderUsingLastLayerIntoWPlus, which egain does not implement "
                "(supported: GradualStyleEncoder and, with learn_in_w, BackboneEncoderUsingLastLayerIntoW)"
            )
        g = _generator_for(parts, ckpt, generator, torch.device(device), where)
        learn_in_w = "linear.weight" in enc and not any(k.startswith("styles.") for k in enc)
        if learn_in_w:
            body = irse_body_config(enc, where)
            if body["input_nc"] != 3:
                raise CheckpointError(
                    f"{where}: a pSp encoder with {body['input_nc']} input channels is not an image encoder"
                )
            encoder_cfg = body
            input_size = min(g.size, 256)
            state = {
                f"encoder.body.{k}": v for k, v in enc.items() if k.startswith(("input_layer.", "body."))
            }
            state |= {f"encoder.{k}": v for k, v in enc.items() if k.startswith("linear.")}
            unknown = [k for k in enc if not k.startswith(("input_layer.", "body.", "linear."))]
            if unknown:
                raise CheckpointError(
                    f"{where}: published key 'encoder.{unknown[0]}' has no place in the pSp model"
                )
        else:
            cfg = e4e_encoder_config(enc, where)
            if cfg["input_nc"] != 3:
                raise CheckpointError(
                    f"{where} has a {cfg['input_nc']}-channel encoder input: it is a ReStyle checkpoint "
                    "(use --method restyle-psp or restyle-e4e), not pSp"
                )
            check_styles(cfg["n_styles"], cfg["style_dim"], g, where)
            input_size = cfg["input_size"]
            encoder_cfg = {k: v for k, v in cfg.items() if k not in ("n_styles", "style_dim", "input_size")}
            state = encoder_to_ours(enc, prefix="encoder.")
        avg = ckpt.get("latent_avg")
        start = bool(opts["start_from_latent_avg"]) if "start_from_latent_avg" in opts else avg is not None
        latent_avg = generator_io.as_wplus(
            avg if isinstance(avg, torch.Tensor) else generator_io.mean_latent(g), g
        )
        state["latent_avg"] = latent_avg
        method = cls(
            generator=g,
            input_size=input_size,
            encoder=encoder_cfg,
            learn_in_w=learn_in_w,
            start_from_latent_avg=start,
            latent_avg=latent_avg,
            **config,
        )
        _strict_load(method, state, ["encoder.", "latent_avg"], where)
        return method


def check_styles(n_styles: int, style_dim: int, generator: nn.Module, where: str) -> None:
    if n_styles != generator.n_latent or style_dim != generator.style_dim:
        raise CheckpointError(
            f"{where}: the encoder predicts {n_styles} x {style_dim} codes; the generator "
            f"({generator.size} px {generator_io.arch_of(generator)}) takes {generator.n_latent} x {generator.style_dim}"
        )


def irse_body_config(enc: Mapping[str, torch.Tensor], where: str) -> dict[str, Any]:
    """IR-SE body options (units, widths, stem, input channels, SE) read from published tensors."""
    if "input_layer.0.weight" not in enc or "body.0.res_layer.1.weight" not in enc:
        raise CheckpointError(
            f"{where} has no IR-SE encoder body (expected encoder.input_layer.*, encoder.body.*)"
        )
    n_units = 1 + max(int(m.group(1)) for k in enc if (m := re.match(r"body\.(\d+)\.", k)))
    widths: list[int] = []
    units: list[int] = []
    for i in range(n_units):
        depth = int(enc[f"body.{i}.res_layer.1.weight"].shape[0])
        if not widths or depth != widths[-1]:  # a stage starts where the width changes
            widths.append(depth)
            units.append(1)
        else:
            units[-1] += 1
    return {
        "units": tuple(units),
        "widths": tuple(widths),
        "stem_channels": int(enc["input_layer.0.weight"].shape[0]),
        "input_nc": int(enc["input_layer.0.weight"].shape[1]),
        "se": any(".res_layer.5." in k for k in enc),
    }

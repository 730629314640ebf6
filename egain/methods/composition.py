"""The EGAIN composition: five components assembled by configuration (seeds/000 sec. III).

Flow of one inversion (single pass; the iterative scheme repeats steps 4-6 with the newest y):
1. w_b = E_b(x) + w-bar                  (basic encoder + average-latent normalisation)
2. y0 = G(w_b)                           (generator)
3. Delta = C_Delta(x, y0)                (delta calculator; resize/clamp of G's output)
   [HFGI: Delta <- ADA(Delta, y0), the adaptive distortion alignment]
4. M_d = E_Delta(Delta) or w_d = E_Delta(Delta)   (delta encoder)
5. internal: y = G(w_b, fusion=F(M_d));  external: y = G(F(w_b, w_d))   (fusion module)
6. y is pooled to the input size (the published ``face_pool``) for losses and outputs.

Every component is built from a small config dict (``{"type": ..., **options}``) through
:data:`COMPONENTS`, so a different delta encoder or fusion is a config change, not a new class.
The EGAIN-family methods (``e4e``, ``hfgi``, ``egain``, ``egain-external``; one module each) are
subclasses of :class:`EGAINMethod` that set its ``defaults``, loss weights and bundled weights. The
family's training step (seeds/000 Eq. 1, plus e4e's and HFGI's terms) lives here too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.editing.directions import DirectionLike, latent_offset
from egain.encoders.ada import ResidualAligner, random_perspective
from egain.encoders.delta import ConsultationEncoder, DeltaCNN, LatentDeltaEncoder
from egain.encoders.e4e import E4EEncoder, LatentCodesDiscriminator
from egain.errors import CheckpointError, EgainError
from egain.losses.adversarial import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from egain.losses.latent import avg_reg, delta_reg, w_reg_discriminator_loss, w_reg_generator_loss, w_reg_r1
from egain.losses.reconstruction import build_reconstruction_losses, l2_loss
from egain.methods import generator_io
from egain.methods.base import (
    CHECKPOINT_FORMAT,
    RECONSTRUCTION_OPTIONS,
    ImageInput,
    Inversion,
    InversionMethod,
    TrainingContext,
    TrainOption,
    prepare_images,
)
from egain.methods.components import (
    DeltaCalculator,
    ExternalFusion,
    Fusion,
    InternalFusion,
    compose_fusion,
    face_pool,
    resolve_preset,
)
from egain.nn.layout import is_channels_last, plain

RUNTIME_OPTIONS = ("passes", "noise_mode")
#: the training checkpoint's format (its ``model`` entry is an inversion checkpoint)
TRAIN_FORMAT = "egain-inversion-train"
#: Published settings. pSp/e4e/HFGI/EGAIN: L2 1.0, LPIPS 0.8 (alex); ID 0.1 (e4e, HFGI train.sh;
#: EGAIN's code defaults to 0 but its Eq. 1 has the term); e4e: delta-reg 2e-4, w-reg 0.1;
#: pSp w_norm (avg-reg) 0; HFGI: res (alignment) 0.1, adversarial 0 (the released code comments the
#: discriminator out; the paper's term is available with --lambda-adv).
EGAIN_LOSS_WEIGHTS = {
    "l2": 1.0,
    "lpips": 0.8,
    "id": 0.1,
    "avg_reg": 0.0,
    "d_reg": 2e-4,
    "w_reg": 0.1,
    "adv": 0.0,
    "align": 0.0,
}


def merge_config(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` merged in: a component dict of the same type (or without a
    type) merges one level deep; anything else replaces the default."""
    cfg = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        old = cfg.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(old, Mapping)
            and ("type" not in value or value.get("type") == old.get("type"))
        ):
            cfg[key] = {**old, **copy.deepcopy(dict(value))}
        else:
            cfg[key] = copy.deepcopy(value)
    return cfg


# ------------------------------------------------------------------------------------------------
# presets: the published sizes, and small networks for the 64 px synthfaces world


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "published": {
        "e4e": {"depth": 50, "widths": (64, 128, 256, 512)},
        "consultation": {"widths": (32, 48, 64)},
        "cnn": {"base": 32, "width": 64},
        "latent": {"units": (1, 1, 1, 1), "widths": (32, 64, 128, 256), "head_channels": 128},
        "ada": {"widths": (16, 32, 48, 64)},
    },
    "small": {
        "e4e": {"units": (1, 1, 2, 1), "widths": (32, 48, 64, 128), "head_channels": 64},
        "consultation": {"widths": (16, 24, 32)},
        "cnn": {"base": 16, "width": 32},
        "latent": {"units": (1, 1, 1, 1), "widths": (16, 24, 32, 64), "head_channels": 32},
        "ada": {"widths": (8, 16, 24, 32)},
    },
}


# ------------------------------------------------------------------------------------------------
# component builders


@dataclass
class BuildContext:
    """What a component builder may need to know about the generator and the input."""

    generator: nn.Module
    input_size: int
    preset: str
    fusion_layers: dict[str, tuple[int, int]] = field(default_factory=dict)


def _build_e4e(cfg: dict, ctx: BuildContext, input_nc: int = 3) -> nn.Module:
    opts = {**PRESETS[ctx.preset]["e4e"], **{k: v for k, v in cfg.items() if k != "type"}}
    if "units" in opts and opts["units"] is not None:
        opts["depth"] = None
    opts.setdefault("input_nc", input_nc)
    return E4EEncoder(ctx.generator.n_latent, ctx.generator.style_dim, ctx.input_size, **opts)


def _build_consultation(cfg: dict, ctx: BuildContext) -> nn.Module:
    opts = {**PRESETS[ctx.preset]["consultation"], **{k: v for k, v in cfg.items() if k != "type"}}
    return ConsultationEncoder(**opts)


def _build_cnn(cfg: dict, ctx: BuildContext) -> nn.Module:
    opts = {k: v for k, v in cfg.items() if k != "type"}
    if "widths" not in opts:
        p = PRESETS[ctx.preset]["cnn"]
        base, width = opts.pop("base", p["base"]), opts.pop("width", p["width"])
        # Downsample until M_d is no smaller than the largest fusion layer (so no detail is lost).
        target = max((res for _, res in ctx.fusion_layers.values()), default=ctx.input_size // 4)
        n_down = 0
        while ctx.input_size // 2 ** (n_down + 1) >= target and n_down < 4:
            n_down += 1
        opts["widths"] = (base,) + (width,) * n_down
    opts.pop("base", None)
    opts.pop("width", None)
    return DeltaCNN(**opts)


def _build_latent(cfg: dict, ctx: BuildContext) -> nn.Module:
    opts = {**PRESETS[ctx.preset]["latent"], **{k: v for k, v in cfg.items() if k != "type"}}
    if opts.get("units") is not None:
        opts["depth"] = None
    return LatentDeltaEncoder(ctx.generator.n_latent, ctx.generator.style_dim, ctx.input_size, **opts)


def _build_ada(cfg: dict, ctx: BuildContext) -> nn.Module:
    opts = {
        **PRESETS[ctx.preset]["ada"],
        **{k: v for k, v in cfg.items() if k not in ("type", "distortion_scale", "aug_rate")},
    }
    return ResidualAligner(**opts)


COMPONENTS: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "basic_encoder": {"e4e": _build_e4e},
    "delta_encoder": {"consultation": _build_consultation, "cnn": _build_cnn, "latent": _build_latent},
    "aligner": {"ada": _build_ada},
}
FUSION_TYPES = ("internal", "external")
#: which delta encoders produce feature maps (internal fusion) or latents (external fusion)
DELTA_OUTPUT = {"consultation": "maps", "cnn": "maps", "latent": "latent"}


def register_component(
    slot: str, type_name: str, builder: Callable[..., nn.Module], output: str | None = None
) -> None:
    """Add a component type (e.g. a new delta encoder) usable by ``type`` in any method config."""
    COMPONENTS.setdefault(slot, {})[type_name] = builder
    if output is not None:
        DELTA_OUTPUT[type_name] = output


def _build(slot: str, cfg: Mapping | None, ctx: BuildContext) -> nn.Module | None:
    if cfg is None:
        return None
    kind = cfg.get("type")
    table = COMPONENTS[slot]
    if kind not in table:
        raise EgainError(f"unknown {slot} type {kind!r}; available: {', '.join(sorted(table))}")
    return table[kind](dict(cfg), ctx)


# ------------------------------------------------------------------------------------------------
# the composed model


@dataclass
class ForwardResult:
    """Everything one forward pass computes (the trainer's losses read from it)."""

    reconstruction: torch.Tensor  # final y at input size
    full: torch.Tensor  # final y at generator size
    latents: torch.Tensor  # code given to G for the final image
    basic_latents: torch.Tensor  # w_b (with w-bar)
    basic_reconstruction: torch.Tensor  # y0 at input size
    deltas: list[torch.Tensor] = field(default_factory=list)
    aligned: list[torch.Tensor] = field(default_factory=list)
    fusion: Fusion | None = None


class EGAINMethod(InversionMethod):
    """The EGAIN composition: the shared base of e4e, hfgi, egain and egain-external.

    ``generator`` plus configuration keywords (``basic_encoder``, ``delta_calculator``,
    ``delta_encoder``, ``fusion``, ``aligner``: component dicts; ``input_size``, ``preset``,
    ``passes``, ``noise_mode``, ``normalise``, ``reuse_prefix``), merged over the subclass's
    ``defaults``; ``latent_avg`` is w-bar (default: the generator's mean latent).
    """

    #: the subclass's default configuration (component dicts and options)
    defaults: dict[str, Any] = {}
    runtime_options = RUNTIME_OPTIONS

    def __init__(self, generator: nn.Module, *, latent_avg: torch.Tensor | None = None, **config: Any):
        super().__init__()
        cfg = merge_config(self.defaults, config)
        self.generator = generator
        generator.requires_grad_(False)
        generator.eval()
        self.input_size = int(cfg.get("input_size") or min(generator.size, 256))
        cfg["input_size"] = self.input_size
        self.preset = resolve_preset(generator, cfg.get("preset", "auto"))
        cfg["preset"] = self.preset
        self.passes = int(cfg.get("passes", 1))
        self.noise_mode = str(cfg.get("noise_mode", "const"))
        self.normalise = bool(cfg.get("normalise", True))

        fusion_cfg = cfg.get("fusion")
        delta_cfg = cfg.get("delta_encoder")
        if (fusion_cfg is None) != (delta_cfg is None):
            raise EgainError("a delta encoder and a fusion module go together: set both or neither")
        fusion_layers: dict[str, tuple[int, int]] = {}
        if fusion_cfg is not None:
            ftype = fusion_cfg.get("type")
            if ftype not in FUSION_TYPES:
                raise EgainError(f"unknown fusion type {ftype!r}; available: {', '.join(FUSION_TYPES)}")
            want = "maps" if ftype == "internal" else "latent"
            got = DELTA_OUTPUT.get(delta_cfg.get("type"))
            if got is not None and got != want:
                raise EgainError(
                    f"{ftype} fusion needs a delta encoder producing {'feature maps' if want == 'maps' else 'a latent'}; "
                    f"{delta_cfg.get('type')!r} produces {'feature maps' if got == 'maps' else 'a latent'}"
                )
            if ftype == "internal":
                names = fusion_cfg.get("layers") or list(generator_io.default_fusion_layers(generator))
                fusion_cfg["layers"] = list(names)
                fusion_layers = {n: generator_io.layer_shape(generator, n) for n in names}
        ctx = BuildContext(generator, self.input_size, self.preset, fusion_layers)

        basic_cfg = cfg.get("basic_encoder") or {"type": "e4e"}
        self.input_nc = int(basic_cfg.get("input_nc", 3))
        if self.input_nc != 3 and delta_cfg is not None:
            raise EgainError(
                f"a {self.input_nc}-channel input (translation) needs a method without a delta branch: the "
                "delta branch compares the input image with its reconstruction (use e4e, psp or e2style)"
            )
        self.basic_encoder = _build("basic_encoder", basic_cfg, ctx)
        self.delta_calculator = DeltaCalculator(
            **{k: v for k, v in (cfg.get("delta_calculator") or {}).items()}
        )
        self.delta_encoder = _build("delta_encoder", delta_cfg, ctx)
        self.aligner = _build("aligner", cfg.get("aligner"), ctx)
        self.fusion_type = fusion_cfg.get("type") if fusion_cfg else None
        if self.fusion_type == "internal":
            opts = {k: v for k, v in fusion_cfg.items() if k not in ("type", "layers")}
            self.fusion: nn.Module | None = InternalFusion(
                fusion_layers, self.delta_encoder.out_channels, **opts
            )
        elif self.fusion_type == "external":
            opts = {k: v for k, v in fusion_cfg.items() if k != "type"}
            self.fusion = ExternalFusion(generator.n_latent, generator.style_dim, **opts)
        else:
            self.fusion = None
        # w-bar, repeated per latent row ([n_latent, style_dim], the published latent_avg layout).
        if latent_avg is None:
            latent_avg = generator_io.mean_latent(generator)
        self.register_buffer("latent_avg", generator_io.as_wplus(latent_avg, generator).clone())
        self.config = cfg

    # -- components -------------------------------------------------------------------------------

    def set_memory_format(self, memory_format: str = "auto") -> EGAINMethod:
        """Run the encoders, ADA, fusion heads and generator in channels_last or NCHW memory.

        ``"auto"`` resolves for the method's current device: channels_last on CPU, where oneDNN's
        convolutions are faster on it (measured: a published-size HFGI inversion at 0.90x the
        all-NCHW time, see docs/generators.md), NCHW elsewhere. The weights of the
        trainable components are converted in place, once, so no convolution reorders them per
        call. The generator gets the same setting and follows it with its activations. Inputs and
        outputs stay ordinary tensors; the numbers agree with NCHW to float rounding.

        :func:`egain.methods.create` applies ``"auto"``. Call this again after moving the method
        to another device. The inversion trainer does not call it, so its encoders stay NCHW:
        train-mode BatchNorm on channels_last CPU tensors computes its batch statistics less
        precisely (measured: 20-30x the NCHW float32 error), and through an IR stack that grew to
        0.6% in the weight gradients.
        """
        return super().set_memory_format(memory_format)

    def _inference_modules(self) -> tuple[nn.Module | None, ...]:
        return (self.basic_encoder, self.delta_encoder, self.aligner, self.fusion)

    @property
    def has_delta_branch(self) -> bool:
        return self.delta_encoder is not None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: w_b = E_b(x) (+ w-bar)."""
        w = self.basic_encoder(x)
        return w + self.latent_avg if self.normalise else w

    def synthesize(self, w: torch.Tensor, fusion: Fusion | None = None) -> torch.Tensor:
        return self.generator.synthesize(w, noise_mode=self.noise_mode, fusion=fusion)

    def to_input_size(self, y: torch.Tensor) -> torch.Tensor:
        """The published ``face_pool``: area-average a larger G output to the input size."""
        return face_pool(y, self.input_size)

    # -- the flow ---------------------------------------------------------------------------------

    def run(
        self,
        x: torch.Tensor,
        *,
        passes: int | None = None,
        grad_basic: bool = False,
        augment_delta: Callable[[torch.Tensor], torch.Tensor] | None = None,
        basic_latents: torch.Tensor | None = None,
    ) -> ForwardResult:
        """The EGAIN flow on a prepared batch (see module docstring).

        ``grad_basic``: keep the graph through E_b, y0 and Delta (needed when E_b is trained);
        otherwise y0 is computed without a graph and Delta is a constant, the cheap setting used
        with a frozen basic encoder. ``augment_delta`` warps Delta before ADA (HFGI self-supervision).
        ``basic_latents`` replaces steps 1-2 by a given w_b (e.g. a code found by optimisation).
        """
        passes = self.passes if passes is None else int(passes)
        prefix = self._prefix_layer() if self.has_delta_branch and passes > 0 else None
        cache: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(grad_basic and torch.is_grad_enabled()):
            w_b = self.encode(x) if basic_latents is None else basic_latents
            if prefix is None:
                y0 = self.synthesize(w_b)
            else:
                wanted = [prefix[0]] + ([prefix[1]] if prefix[1] else [])
                y0, cache = self.generator.synthesize(w_b, noise_mode=self.noise_mode, return_features=wanted)
        y0_small = self.to_input_size(y0)
        result = ForwardResult(y0_small, y0, w_b, w_b, y0_small)
        if not self.has_delta_branch or passes <= 0:
            return result
        w, y_full, fusion = w_b, y0, None
        for _ in range(passes):
            with torch.set_grad_enabled(grad_basic and torch.is_grad_enabled()):
                delta = self.delta_calculator(x, y_full)
            if not grad_basic:
                delta = delta.detach()
            result.deltas.append(delta)
            target = self.delta_calculator.match(y_full.detach(), x.shape[-2:])
            delta_in = self._align(delta, target, augment_delta)
            if self.aligner is not None:
                result.aligned.append(delta_in)
            w, fusion = self._fuse(w, fusion, delta_in)
            if prefix is not None:
                y_full = self._synthesize_from(prefix, cache, w_b, fusion)
            else:
                y_full = self.synthesize(w if self.fusion_type == "external" else w_b, fusion)
        result.full = y_full
        result.reconstruction = self.to_input_size(y_full)
        result.latents = w
        result.fusion = fusion
        return result

    def _prefix_layer(self) -> tuple[str, str | None] | None:
        """(first fusion layer, its skip layer) when the layers before it can be reused.

        With internal fusion, every pass renders the same w_b up to the first fused layer, so the
        features there (and the RGB/wavelet skip) are computed once, in the y0 pass, and later
        passes start from them (``synthesize(start_from=...)``): at 1024 px this saves the 4-64 px
        layers of each extra generator pass. Off for noise_mode "random" (fresh noise per pass).
        """
        if (
            self.fusion_type != "internal"
            or self.noise_mode == "random"
            or not self.config.get("reuse_prefix", True)
        ):
            return None
        order = list(self.generator.layer_names)
        first = min(self.fusion.layer_names, key=order.index)
        return first, self.generator.layer_info(first).skip_name

    def _synthesize_from(
        self,
        prefix: tuple[str, str | None],
        cache: dict[str, torch.Tensor],
        w_b: torch.Tensor,
        fusion: Fusion,
    ) -> torch.Tensor:
        first, skip_name = prefix
        scale, shift = fusion[first]
        feature = cache[first]  # returned features are NCHW; the fusion maps follow the heads' layout
        if is_channels_last(scale):  # fuse in the generator's layout: no mixed-layout passes
            feature = feature.contiguous(memory_format=torch.channels_last)
        feature = feature * (1 + scale) + shift
        rest = {k: v for k, v in fusion.items() if k != first}
        return self.generator.synthesize(
            w_b,
            noise_mode=self.noise_mode,
            start_from=(first, feature, cache.get(skip_name) if skip_name else None),
            fusion=rest or None,
        )

    def _align(self, delta: torch.Tensor, target: torch.Tensor, augment: Callable | None) -> torch.Tensor:
        if self.aligner is None:
            return delta
        if augment is not None:
            delta = augment(delta)
        return self.aligner(delta, target)

    def _fuse(
        self, w: torch.Tensor, fusion: Fusion | None, delta: torch.Tensor
    ) -> tuple[torch.Tensor, Fusion | None]:
        code = self.delta_encoder(delta)
        if self.fusion_type == "internal":
            return w, compose_fusion(fusion, self.fusion(code))
        return self.fusion(w, code), None

    # -- the public interface ---------------------------------------------------------------------

    @torch.no_grad()
    def invert(self, images: ImageInput, *, passes: int | None = None) -> Inversion:
        was_training = self.training
        self.eval()
        try:
            x = prepare_images(images, self.input_size, self.device, self.input_nc)
            r = self.run(x, passes=passes)
        finally:
            self.train(was_training)
        extras: dict[str, Any] = {
            "basic_latents": r.basic_latents,
            "basic_reconstruction": r.basic_reconstruction,
        }
        if r.deltas:
            extras["delta"] = r.deltas[0]
            extras["deltas"] = r.deltas
        if r.aligned:
            extras["aligned_delta"] = r.aligned[0]
        if r.fusion:
            extras["gate_maps"] = {k: (1 + s).mean(1, keepdim=True) for k, (s, _) in r.fusion.items()}
            extras["detail_maps"] = {k: h.abs().mean(1, keepdim=True) for k, (_, h) in r.fusion.items()}
        if r.full.shape[-1] != r.reconstruction.shape[-1]:
            extras["full_resolution"] = r.full
        # Channels_last components may leave NHWC strides on maps; callers get ordinary tensors.
        return Inversion(r.latents, plain(r.reconstruction), plain(extras))

    @torch.no_grad()
    def edit(
        self, inversion: Inversion, direction: DirectionLike, strength: float = 1.0, *, ada: bool = True
    ) -> torch.Tensor:
        """Edit the basic code w_b and re-synthesise with this method's fusion (HFGI's rule).

        ``direction``: a tensor ((D,), (L, D)), a :class:`~egain.editing.Direction` (with its
        published strength semantics) or an :class:`~egain.editing.EditSet` (several at once).
        Internal fusion (HFGI/egain): w_b + offset gives the edited low-fidelity image; each
        stored Delta is re-aligned to it by ADA (``ada=False`` fuses the unaligned Delta, which
        shows what ADA is for; methods without ADA, such as egain, fuse the stored Delta either
        way) and fused into G. External fusion (egain-external): the edited w_b is re-fused with the
        delta latents. Methods without a delta branch (e4e) render w_b + offset. At strength 0 the
        result equals the reconstruction (``latent_offset`` is zero, ADA sees the unedited y0).
        """
        self.eval()
        w_b = inversion.extras.get("basic_latents", inversion.latents).to(self.device)
        w_edit = w_b + latent_offset(w_b, direction, strength)
        if not self.has_delta_branch:
            return plain(self.to_input_size(self.synthesize(w_edit)))
        y_full = self.synthesize(w_edit)
        w, fusion = w_edit, None
        for delta in inversion.extras.get("deltas", [inversion.extras["delta"]]):
            target = self.delta_calculator.match(y_full, (self.input_size, self.input_size))
            delta = delta.to(self.device)
            delta_in = self._align(delta, target, None) if ada else delta
            w, fusion = self._fuse(w, fusion, delta_in)
            y_full = self.synthesize(w if self.fusion_type == "external" else w_edit, fusion)
        return plain(self.to_input_size(y_full))

    # -- training (seeds/000 Eq. 1 with e4e's and HFGI's terms) -----------------------------------
    #
    #   L = l_d-reg L_d-reg + l_w-reg L_w-reg + l_l2 L2 + l_lpips LPIPS + l_id ID + l_avg-reg L_avg-reg
    #       [+ l_align L1(ADA(warp(Delta0)) - Delta0) + l_adv L_adv   (HFGI)]
    #
    # The generator is frozen. The basic encoder is frozen (HFGI, EGAIN) unless
    # ``train_basic_encoder``; for ``e4e`` it is the model being trained. With a frozen basic
    # encoder, steps 1-4 run without a graph (Delta0 is a constant), so each step back-propagates
    # through one generator pass only. The latent regularisers act on w_b and are computed only
    # when the basic encoder trains.

    loss_weights = dict(EGAIN_LOSS_WEIGHTS)
    loss_help = {
        "l2": "pixel MSE",
        "lpips": "LPIPS (the face-feature distance without --lpips)",
        "id": "identity loss",
        "avg_reg": "pull w_b toward w-bar",
        "d_reg": "e4e delta regulariser",
        "w_reg": "e4e latent-discriminator loss",
        "adv": "HFGI adversarial loss",
        "align": "HFGI ADA alignment L1",
    }
    training_options = (
        TrainOption(
            "basic_encoder",
            None,
            "e4e checkpoint for E_b and w-bar (ours, zoo:NAME, or a published e4e .pt)",
            str,
        ),
        TrainOption(
            "train_basic_encoder", False, "train E_b too (frozen by default when a delta branch exists)", bool
        ),
        TrainOption("passes", 1, "EGAIN iterative scheme: number of delta passes", int, target="config"),
        *RECONSTRUCTION_OPTIONS,
        TrainOption(
            "discriminator", None, "image discriminator for --lambda-adv (default: from --generator)", str
        ),
        TrainOption("progressive_start", 20000, "e4e: step at which W+ offsets start (-1: all at once)", int),
        TrainOption("progressive_every", 2000, "e4e: steps between enabling two offsets", int),
        TrainOption("distortion_scale", 0.15, "HFGI ADA: perspective warp strength", float),
        TrainOption("aug_rate", 0.9, "HFGI ADA: probability of warping", float),
        TrainOption("w_disc_lr", 2e-5, "e4e latent discriminator learning rate", float),
        TrainOption("d_lr", 2e-5, "HFGI image discriminator learning rate", float),
        TrainOption("r1", 10.0, "R1 weight of the discriminators", float),
        TrainOption("r1_every", 16, "lazy R1 interval", int),
    )

    @classmethod
    def build_for_training(
        cls, generator: nn.Module, options: Mapping[str, Any], device: torch.device, **config: Any
    ) -> EGAINMethod:
        """A fresh model; ``options["basic_encoder"]`` (ours or a published e4e) initialises E_b and w-bar."""
        basic_state: dict[str, torch.Tensor] | None = None
        path = options.get("basic_encoder")
        if path:
            basic_cfg, basic_state = basic_encoder_from_checkpoint(path, generator)
            config = {**config, **basic_cfg}
        method = cls(generator=generator, **config).to(device)
        if basic_state is not None:
            missing, unexpected = method.load_state_dict(basic_state, strict=False)
            bad = [k for k in missing if k.startswith("basic_encoder.")] + list(unexpected)
            if bad:
                raise CheckpointError(f"basic encoder '{path}' does not fit this method ({bad[:4]})")
        elif method.has_delta_branch and not options.get("train_basic_encoder"):
            raise EgainError(
                f"{cls.name} trains with a frozen basic encoder: pass --basic-encoder (an e4e checkpoint, e.g. from "
                "'egain train --method e4e', or zoo:e4e-stylegan2-64) or --train-basic-encoder to train it jointly"
            )
        return method

    @property
    def trains_basic_encoder(self) -> bool:
        return bool(self.training_ctx.options.get("train_basic_encoder")) or not self.has_delta_branch

    def setup_training(self, ctx: TrainingContext) -> None:
        super().setup_training(ctx)
        lam, opt = ctx.lambdas, ctx.options
        for m in self.trainable_modules().values():
            m.requires_grad_(True)
        if not self.trains_basic_encoder:
            self.basic_encoder.requires_grad_(False)
        # Training-only networks live outside the module tree: not in state_dict, not in model.pt.
        aux = self._aux = _TrainingAux()
        if self.trains_basic_encoder and lam["w_reg"] > 0:
            aux.w_disc = LatentCodesDiscriminator(self.generator.style_dim).to(ctx.device)
            aux.w_disc_opt = torch.optim.Adam(aux.w_disc.parameters(), lr=opt["w_disc_lr"])
        if lam["adv"] > 0:
            aux.img_disc = _load_image_discriminator(opt.get("discriminator") or ctx.generator, ctx.device)
            aux.img_disc_opt = torch.optim.Adam(aux.img_disc.parameters(), lr=opt["d_lr"], betas=(0.0, 0.99))
        aux.losses = build_reconstruction_losses(lam, opt, ctx.device)
        self._augment = None
        if self.aligner is not None and lam["align"] > 0:
            self._augment = _Augment(opt["distortion_scale"], opt["aug_rate"])
        self._stage = self.generator.n_latent - 1

    def trainable_modules(self) -> dict[str, nn.Module]:
        train_basic = getattr(self, "training_ctx", None) is None or self.trains_basic_encoder
        mods = {
            k: m
            for k, m in (
                ("delta_encoder", self.delta_encoder),
                ("fusion", self.fusion),
                ("aligner", self.aligner),
            )
            if m is not None
        }
        if train_basic or not self.has_delta_branch:
            mods = {"basic_encoder": self.basic_encoder, **mods}
        return mods

    accepts_target = True  # egain train --corrupt: the encoders see ``batch``, the losses ``target``
    input_channels_config = "basic_encoder.input_nc"  # --corrupt parsing (the e4e encoder alone)

    def training_step(
        self, batch: torch.Tensor, step: int, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lam, opt = self.training_ctx.lambdas, self.training_ctx.options
        train_basic = self.trains_basic_encoder
        stage = progressive_stage(
            step, self.generator.n_latent, _start(opt["progressive_start"]), opt["progressive_every"]
        )
        self._stage = stage
        if train_basic:
            self.basic_encoder.set_progressive_stage(stage)
        out = self.run(batch, grad_basic=train_basic, augment_delta=self._augment)
        self._last = out
        y, x = out.reconstruction, (batch if target is None else target)
        terms: dict[str, torch.Tensor] = {"l2": l2_loss(y, x)}
        if lam["lpips"] > 0:
            terms["lpips"] = self._aux.losses.perceptual(y, x)
        if lam["id"] > 0:
            terms["id"] = self._aux.losses.identity(y, x)
        if train_basic:
            w_b = out.basic_latents
            if lam["avg_reg"] > 0:
                terms["avg_reg"] = avg_reg(w_b, self.latent_avg)
            if lam["d_reg"] > 0 and stage < w_b.shape[1] - 1:  # e4e: only while progressive
                terms["d_reg"] = delta_reg(w_b - self.latent_avg, stage)
            if lam["w_reg"] > 0 and self._aux.w_disc is not None:
                terms["w_reg"] = w_reg_generator_loss(self._aux.w_disc, w_b, rows=stage + 1)
        if out.aligned and lam["align"] > 0:
            terms["align"] = sum(
                (a - d).abs().mean() for a, d in zip(out.aligned, out.deltas, strict=True)
            ) / len(out.aligned)
        if lam["adv"] > 0 and self._aux.img_disc is not None:
            terms["adv"] = g_nonsaturating_loss(self._aux.img_disc(out.full))
        loss = sum(lam[k] * v for k, v in terms.items())
        return loss, terms

    def training_info(self) -> dict[str, Any]:
        return {"stage": self._stage} if self.trains_basic_encoder else {}

    def after_training_step(self, batch: torch.Tensor, step: int) -> None:
        opt, out, aux = self.training_ctx.options, self._last, self._aux
        if aux.w_disc is not None:
            _w_disc_step(
                opt, self.generator, aux.w_disc, aux.w_disc_opt, out.basic_latents, self._stage, step
            )
        if aux.img_disc is not None:
            _img_disc_step(opt, aux.img_disc, aux.img_disc_opt, batch, out.full, step)
        self._last = None

    def set_training_mode(self) -> None:
        self.train()
        self.generator.eval()
        if not self.trains_basic_encoder:
            self.basic_encoder.eval()  # frozen: BN keeps its statistics

    @property
    def ddp_find_unused_parameters(self) -> bool:
        return self.trains_basic_encoder  # e4e's progressive stages leave heads unused

    def training_state(self) -> dict[str, Any]:
        aux = self._aux
        return {
            k: (m.state_dict() if m is not None else None)
            for k, m in (
                ("w_disc", aux.w_disc),
                ("w_disc_opt", aux.w_disc_opt),
                ("img_disc", aux.img_disc),
                ("img_disc_opt", aux.img_disc_opt),
            )
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        aux = self._aux
        if aux.w_disc is not None and state.get("w_disc") is not None:
            aux.w_disc.load_state_dict(state["w_disc"])
            aux.w_disc_opt.load_state_dict(state["w_disc_opt"])
        if aux.img_disc is not None and state.get("img_disc") is not None:
            aux.img_disc.load_state_dict(state["img_disc"])
            aux.img_disc_opt.load_state_dict(state["img_disc_opt"])

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> tuple[dict[str, float], list[torch.Tensor]]:
        """Reconstruction L2 of y0 (basic encoder alone) and y; grid rows source, y0, y, |Delta0|."""
        self.eval()
        out = self.run(images)
        scores = {
            "val_l2_basic": float(F.mse_loss(out.basic_reconstruction, images)),
            "val_l2": float(F.mse_loss(out.reconstruction, images)),
        }
        rows = [images, out.basic_reconstruction, out.reconstruction]
        if out.deltas:
            rows.append((out.deltas[0].abs() * 2 - 1).clamp(-1, 1))
        return scores, rows


@dataclass
class _TrainingAux:
    """The family's training-only state: discriminators, their optimisers, the loss networks."""

    w_disc: nn.Module | None = None
    w_disc_opt: torch.optim.Optimizer | None = None
    img_disc: nn.Module | None = None
    img_disc_opt: torch.optim.Optimizer | None = None
    losses: Any = None


def _start(value: int | None) -> int | None:
    return None if value is None or int(value) < 0 else int(value)


def progressive_stage(step: int, n_latent: int, start: int | None, every: int) -> int:
    """e4e's schedule: W only until ``start``, then one more offset every ``every`` steps."""
    if start is None or start < 0:
        return n_latent - 1
    if step < start:
        return 0
    return int(min(n_latent - 1, 1 + (step - start) // max(1, every)))


class _Augment:
    """HFGI's self-supervision: a random perspective warp of Delta0 before ADA."""

    def __init__(self, distortion_scale: float, p: float):
        self.distortion_scale, self.p = distortion_scale, p

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        return random_perspective(delta.detach(), self.distortion_scale, self.p).detach()


def _w_disc_step(opt, generator, w_disc, w_opt, w_b, stage, step) -> None:
    rows = stage + 1
    with torch.no_grad():
        z = torch.randn(w_b.shape[0] * rows, generator.style_dim, device=w_b.device)
        real = generator.mapping(z)
    loss = w_reg_discriminator_loss(w_disc, real, w_b.detach(), rows=rows)
    w_opt.zero_grad(set_to_none=True)
    loss.backward()
    w_opt.step()
    if opt["r1"] > 0 and step % opt["r1_every"] == 0:
        w_opt.zero_grad(set_to_none=True)
        (opt["r1"] / 2 * w_reg_r1(w_disc, real) * opt["r1_every"]).backward()
        w_opt.step()


def _img_disc_step(opt, disc, d_opt, x, y_full, step) -> None:
    real = x if x.shape[-1] == y_full.shape[-1] else F.interpolate(x, size=y_full.shape[-2:], mode="bilinear")
    loss = d_logistic_loss(disc(real), disc(y_full.detach()))
    d_opt.zero_grad(set_to_none=True)
    loss.backward()
    d_opt.step()
    if opt["r1"] > 0 and step % opt["r1_every"] == 0:
        real = real.detach().requires_grad_(True)
        d_opt.zero_grad(set_to_none=True)
        (opt["r1"] / 2 * r1_penalty(disc(real), real) * opt["r1_every"]).backward()
        d_opt.step()


def _load_image_discriminator(path: str | None, device: torch.device) -> nn.Module:
    from egain.generators import load_discriminator

    try:
        if path is None:
            raise EgainError("no generator file to read it from")
        return load_discriminator(generator_io.resolve_path(path), device=device)
    except EgainError as exc:
        raise EgainError(
            f"--lambda-adv needs the image discriminator (HFGI initialises it from the GAN's D): {exc}; "
            "pass --discriminator PATH or --lambda-adv 0"
        ) from None


def basic_encoder_from_checkpoint(path: str, generator: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config overrides, state) for E_b and w-bar from an egain checkpoint or a published e4e file."""
    from egain.methods.published import basic_encoder_from_published
    from egain.runtime.checkpoint import float32_state, load_checkpoint

    ckpt = load_checkpoint(generator_io.resolve_path(path), what="basic encoder checkpoint")
    if ckpt.get("egain_format") == TRAIN_FORMAT:
        ckpt = ckpt["model"]
    if ckpt.get("egain_format") == CHECKPOINT_FORMAT:
        generator_io.check_compatible(ckpt.get("generator", {}), generator, f"basic encoder '{path}'")
        state = {
            k: v
            for k, v in float32_state(ckpt["state_dict"]).items()
            if k.startswith("basic_encoder.") or k == "latent_avg"
        }
        conf = ckpt["config"]
        return {
            "basic_encoder": conf["basic_encoder"],
            "input_size": conf["input_size"],
            "preset": conf["preset"],
        }, state
    return basic_encoder_from_published(ckpt, generator, where=f"basic encoder '{path}'")

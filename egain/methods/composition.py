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
Methods in the registry are just default configs of this one class.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.encoders.ada import ResidualAligner
from egain.encoders.delta import ConsultationEncoder, DeltaCNN, LatentDeltaEncoder
from egain.encoders.e4e import E4EEncoder
from egain.errors import EgainError
from egain.methods import generator_io
from egain.methods.base import ImageInput, Inversion, InversionMethod, prepare_images
from egain.methods.components import (
    DeltaCalculator,
    ExternalFusion,
    Fusion,
    InternalFusion,
    compose_fusion,
)
from egain.nn.layout import convert_weights, is_channels_last, plain, wants_channels_last
from egain.runtime.checkpoint import atomic_torch_save

CHECKPOINT_FORMAT = "egain-inversion"
RUNTIME_OPTIONS = ("passes", "noise_mode")


# ------------------------------------------------------------------------------------------------
# presets: the published sizes, and small networks for the 64 px synthfaces world


def _preset(generator: nn.Module, requested: str) -> str:
    if requested != "auto":
        if requested not in ("published", "small"):
            raise EgainError(f"preset must be 'auto', 'published' or 'small', got {requested!r}")
        return requested
    return "published" if generator.size >= 256 and generator.style_dim >= 512 else "small"


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
    """One class for e4e, hfgi, egain and egain-external: a configured EGAIN composition."""

    def __init__(
        self,
        name: str,
        generator: nn.Module,
        config: Mapping[str, Any],
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        self.name = name
        cfg = copy.deepcopy(dict(config))
        self.generator = generator
        generator.requires_grad_(False)
        generator.eval()
        self.input_size = int(cfg.get("input_size") or min(generator.size, 256))
        cfg["input_size"] = self.input_size
        self.preset = _preset(generator, cfg.get("preset", "auto"))
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

        self.basic_encoder = _build("basic_encoder", cfg.get("basic_encoder") or {"type": "e4e"}, ctx)
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
        # The last set_memory_format choice; None = never set (NCHW weights as built, the generator
        # on its own setting). Not part of the config: a checkpoint loads into either layout.
        self.memory_format: str | None = None

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
        channels_last = wants_channels_last(memory_format, self.device)
        for module in (self.basic_encoder, self.delta_encoder, self.aligner, self.fusion):
            if module is not None:
                convert_weights(module, channels_last)
        self.generator.set_memory_format(memory_format)
        self.memory_format = memory_format
        return self

    @property
    def has_delta_branch(self) -> bool:
        return self.delta_encoder is not None

    def trainable_modules(self, train_basic_encoder: bool = False) -> dict[str, nn.Module]:
        mods = {
            k: m
            for k, m in (
                ("delta_encoder", self.delta_encoder),
                ("fusion", self.fusion),
                ("aligner", self.aligner),
            )
            if m is not None
        }
        if train_basic_encoder or not self.has_delta_branch:
            mods = {"basic_encoder": self.basic_encoder, **mods}
        return mods

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: w_b = E_b(x) (+ w-bar)."""
        w = self.basic_encoder(x)
        return w + self.latent_avg if self.normalise else w

    def synthesize(self, w: torch.Tensor, fusion: Fusion | None = None) -> torch.Tensor:
        return self.generator.synthesize(w, noise_mode=self.noise_mode, fusion=fusion)

    def to_input_size(self, y: torch.Tensor) -> torch.Tensor:
        """The published ``face_pool``: area-average a larger G output to the input size."""
        s = self.input_size
        if y.shape[-1] == s:
            return y
        if y.shape[-1] > s:
            return F.adaptive_avg_pool2d(y, (s, s))
        return F.interpolate(y, size=(s, s), mode="bilinear", align_corners=False)

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
            x = prepare_images(images, self.input_size, self.device)
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
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """Shift the latent by ``strength * direction`` and re-synthesise with this method's fusion.

        Internal fusion (HFGI/egain): the basic code w_b is edited, the stored Deltas are (for HFGI)
        re-aligned by ADA to the edited low-fidelity image, then fused into G. External fusion: the
        fused code is edited directly. ``direction``: (style_dim,) or (n_latent, style_dim).
        """
        self.eval()
        direction = direction.to(self.device, torch.float32)
        if direction.ndim == 1:
            direction = direction.view(1, 1, -1)
        elif direction.ndim == 2:
            direction = direction.unsqueeze(0)
        if self.fusion_type == "external" or not self.has_delta_branch:
            return self.to_input_size(
                self.synthesize(inversion.latents.to(self.device) + strength * direction)
            )
        w_edit = inversion.extras["basic_latents"].to(self.device) + strength * direction
        y0 = self.synthesize(w_edit)
        target = self.delta_calculator.match(y0, (self.input_size, self.input_size))
        fusion = None
        for delta in inversion.extras.get("deltas", [inversion.extras["delta"]]):
            delta_in = self._align(delta.to(self.device), target, None)
            _, fusion = self._fuse(w_edit, fusion, delta_in)
        return plain(self.to_input_size(self.synthesize(w_edit, fusion)))

    def state_without_generator(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("generator.")}

    def checkpoint_dict(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "egain_format": CHECKPOINT_FORMAT,
            "version": 1,
            "method": self.name,
            "config": copy.deepcopy(self.config),
            "generator": generator_io.generator_record(self.generator),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_without_generator().items()},
            **(dict(extra) if extra else {}),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write an atomic checkpoint that ``egain.methods.create(name, checkpoint=path)`` loads."""
        return atomic_torch_save(self.checkpoint_dict(), path)

"""EGAIN's swappable components (seeds/000 sec. III) other than the encoders and the generator.

* :class:`DeltaCalculator` C_Delta: Delta0 = x - y0, batched on the device. ``mode="signed"`` is the
  paper / HFGI definition (float, differentiable, y0 clamped to [-1, 1] and resized to x's size);
  ``mode="released"`` reproduces the authors' released code (reference sec. 7.3): both images
  quantised to uint8 by truncation, y0 resized bicubically, the *absolute* difference, mapped back
  to [-1, 1] so that "no difference" is -1. It is not differentiable, by construction.
* :class:`InternalFusion` F (HFGI's gated consultation fusion): for each chosen generator layer i,
  M_d is embedded by two conv heads into a gate map and a details map; the generator applies
  ``f * (1 + scale) + shift`` after that layer, i.e. gate ``g_i = 1 + scale`` and details
  ``h_i = shift`` combined with the features of w_b.
* :class:`ExternalFusion` F: w = w_b + MLP_j([w_b,j ; w_d,j]) per latent row j, all rows in one
  batched matmul. A compact replacement for the released 387M-parameter MLP (sec. 7.2); its last
  layer starts at zero, so training starts from the basic reconstruction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import EgainError
from egain.ops.equalized import EqualConv2d, fused_leaky_relu

#: the encoder presets every encoder method offers: the published sizes and a small network
PRESET_NAMES = ("published", "small")


def resolve_preset(generator: nn.Module, requested: str) -> str:
    """ "published" (the paper's encoder sizes) for >= 256 px, 512-d generators; else "small" (the
    64 px synthfaces world); an explicit ``requested`` must be one of :data:`PRESET_NAMES`."""
    if requested == "auto":
        return "published" if generator.size >= 256 and generator.style_dim >= 512 else "small"
    if requested not in PRESET_NAMES:
        raise EgainError(f"preset must be 'auto', 'published' or 'small', got {requested!r}")
    return requested


def face_pool(y: torch.Tensor, size: int) -> torch.Tensor:
    """The published ``face_pool``: area-average a larger generator output to ``size`` (bilinear up
    for a smaller one), so encoder methods compare and return images at their input size."""
    if y.shape[-1] == size:
        return y
    if y.shape[-1] > size:
        return F.adaptive_avg_pool2d(y, (size, size))
    return F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)


Fusion = dict[str, tuple[torch.Tensor, torch.Tensor]]


class DeltaCalculator(nn.Module):
    """C_Delta: the information delta between the source x and a reconstruction y (any resolution)."""

    MODES = ("signed", "released")

    def __init__(self, mode: str = "signed", resize: str = "bilinear", clamp: bool = True):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"delta mode must be one of {self.MODES}, got {mode!r}")
        if resize not in ("bilinear", "area", "bicubic"):
            raise ValueError(f"delta resize must be bilinear, area or bicubic, got {resize!r}")
        self.mode, self.resize, self.clamp = mode, resize, clamp

    def match(self, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bring a generator output to the source's size (HFGI: clamp then bilinear, no antialias)."""
        if self.clamp:
            y = y.clamp(-1, 1)
        if tuple(y.shape[-2:]) == tuple(size):
            return y
        if self.resize == "area":
            return F.adaptive_avg_pool2d(y, size)
        return F.interpolate(y, size=size, mode=self.resize, align_corners=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "released":
            return released_delta(x, y)
        return x - self.match(y, x.shape[-2:])


def released_delta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The released EGAIN ``img_difference``, batched: |uint8(x) - bicubic(uint8(y))| -> [-1, 1]."""
    with torch.no_grad():
        qx = _to_uint8_trunc(x)
        qy = _to_uint8_trunc(y)
        if qy.shape[-2:] != qx.shape[-2:]:
            # PIL resizes the uint8 image with an antialiased bicubic filter and rounds back to uint8.
            qy = F.interpolate(qy, size=qx.shape[-2:], mode="bicubic", align_corners=False, antialias=True)
            qy = qy.round().clamp(0, 255)
        return (qx - qy).abs() / 255.0 * 2.0 - 1.0


def _to_uint8_trunc(t: torch.Tensor) -> torch.Tensor:
    return torch.floor(((t.float() + 1) / 2).clamp(0, 1) * 255)


def layer_key(name: str) -> str:
    """A generator layer name as a ModuleDict key (no dots)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class ConditionHead(nn.Module):
    """EqualConv3x3 -> leaky ReLU * sqrt(2) -> EqualConv3x3 (HFGI ``condition_scale3`` layout: ``0``, ``2``)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                EqualConv2d(in_channels, hidden, 3, padding=1, bias=bias),
                nn.Identity(),
                EqualConv2d(hidden, out_channels, 3, padding=1, bias=bias),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[2](fused_leaky_relu(self.layers[0](x)))

    def zero_output(self) -> None:
        nn.init.zeros_(self.layers[2].weight)
        if self.layers[2].bias is not None:
            nn.init.zeros_(self.layers[2].bias)


class InternalFusion(nn.Module):
    """Gated consultation fusion: M_d -> {layer: (scale, shift)} for ``G.synthesize(fusion=...)``.

    ``layers`` maps generator layer names to (channels, resolution). ``bias=False`` makes the heads
    homogeneous (M_d = 0 gives scale = shift = 0, so the generator features pass unchanged);
    ``zero_init`` starts the heads at zero output (the untrained fusion is the identity).
    """

    def __init__(
        self,
        layers: Mapping[str, tuple[int, int]],
        in_channels: int,
        hidden: int | None = None,
        bias: bool = True,
        zero_init: bool = True,
    ):
        super().__init__()
        if not layers:
            raise ValueError("internal fusion needs at least one generator layer")
        self.layer_names = list(layers)
        self.resolutions = {name: int(res) for name, (_, res) in layers.items()}
        self.scale_heads = nn.ModuleDict()
        self.shift_heads = nn.ModuleDict()
        for name, (channels, _) in layers.items():
            h = hidden or channels
            self.scale_heads[layer_key(name)] = ConditionHead(in_channels, h, channels, bias)
            self.shift_heads[layer_key(name)] = ConditionHead(in_channels, h, channels, bias)
            if zero_init:
                self.scale_heads[layer_key(name)].zero_output()
                self.shift_heads[layer_key(name)].zero_output()

    def forward(self, features: torch.Tensor) -> Fusion:
        out: Fusion = {}
        for name in self.layer_names:
            key, res = layer_key(name), self.resolutions[name]
            scale = self.scale_heads[key](features)
            shift = self.shift_heads[key](features)
            if scale.shape[-1] != res:  # HFGI interpolates the heads' output to the layer size
                scale = F.interpolate(scale, size=(res, res), mode="bilinear", align_corners=False)
                shift = F.interpolate(shift, size=(res, res), mode="bilinear", align_corners=False)
            out[name] = (scale, shift)
        return out


def compose_fusion(first: Fusion | None, second: Fusion) -> Fusion:
    """Fusion ``second`` applied after ``first`` as one (scale, shift) per layer.

    (f(1+s1)+h1)(1+s2)+h2 = f(1+s1)(1+s2) + h1(1+s2) + h2: the iterative scheme refines the
    modulation of the previous pass instead of replacing it.
    """
    if first is None:
        return second
    out = dict(first)
    for name, (s2, h2) in second.items():
        if name in first:
            s1, h1 = first[name]
            out[name] = ((1 + s1) * (1 + s2) - 1, h1 * (1 + s2) + h2)
        else:
            out[name] = (s2, h2)
    return out


class ExternalFusion(nn.Module):
    """Per-layer residual MLP fusing w_b and w_d: one hidden layer per latent row, batched."""

    def __init__(self, n_latent: int, style_dim: int, hidden: int | None = None, zero_init: bool = True):
        super().__init__()
        hidden = hidden or style_dim
        self.n_latent, self.style_dim, self.hidden = n_latent, style_dim, hidden
        self.weight1 = nn.Parameter(torch.randn(n_latent, 2 * style_dim, hidden))
        self.bias1 = nn.Parameter(torch.zeros(n_latent, hidden))
        self.weight2 = nn.Parameter(torch.randn(n_latent, hidden, style_dim))
        self.bias2 = nn.Parameter(torch.zeros(n_latent, style_dim))
        self.scale1 = 1.0 / math.sqrt(2 * style_dim)
        self.scale2 = 1.0 / math.sqrt(hidden)
        if zero_init:
            nn.init.zeros_(self.weight2)

    def forward(self, w_b: torch.Tensor, w_d: torch.Tensor) -> torch.Tensor:
        v = torch.cat([w_b, w_d], dim=-1)  # (N, L, 2D)
        h = fused_leaky_relu(torch.einsum("nli,lih->nlh", v, self.weight1 * self.scale1) + self.bias1, None)
        return w_b + torch.einsum("nlh,lhd->nld", h, self.weight2 * self.scale2) + self.bias2

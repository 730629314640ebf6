"""StyleGAN2 and SWAGAN generators with feature hooks for GAN inversion.

One class serves both architectures: they share the mapping network, the constant input, the
styled convolutions and the latent schedule, and differ only in the output branch (SWAGAN's ToRGB
emits 4 Haar sub-bands x RGB at half the output resolution and the image is their inverse
transform).

Execution order (``G.layer_names`` holds the conv layers in this order)::

    const -> conv4 -> rgb4 -> up8 -> conv8 -> rgb8 -> up16 -> conv16 -> rgb16 -> ...

``up{r}`` is the up-sampling styled conv producing an r x r map, ``conv{r}`` the second conv at
r x r, ``rgb{r}`` the ToRGB skip after resolution r (RGB, or Haar sub-bands for SWAGAN). For
SWAGAN ``r`` is the *feature-map* resolution, half the output-equivalent one. Conv layer ``j`` uses
W+ row ``j``; ``rgb{r}`` uses the row of the next up-sampling conv (the published schedule).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import EgainError, InputError
from egain.generators.config import (
    DEFAULT_BLUR_KERNEL,
    check_arch,
    check_size,
    log2,
    resolve_channels,
)
from egain.nn.layout import check_memory_format, wants_channels_last
from egain.ops.equalized import LRELU_GAIN, LRELU_SLOPE, EqualLinear, fused_leaky_relu, pixel_norm
from egain.ops.modconv import MODES, ModulatedConv2d
from egain.ops.upfirdn import Upsample
from egain.ops.wavelets import haar_dwt, haar_iwt

logger = logging.getLogger("egain.generators")

NOISE_MODES = ("const", "random", "none")


class StyledConv(nn.Module):
    """Modulated conv -> + per-pixel noise (learned strength) -> bias + leaky ReLU * sqrt(2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        resolution: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.modconv = ModulatedConv2d(
            in_channels, out_channels, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Fixed noise for deterministic synthesis (noise_mode="const"); published files carry it.
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None, consume_input: bool = False
    ) -> torch.Tensor:
        """``consume_input``: the caller will not read ``x`` again (inference may overwrite it)."""
        if torch.is_grad_enabled():
            x = self.modconv(x, w)
            if noise is not None:
                x = x + self.noise_strength * noise
            return fused_leaky_relu(x, self.bias)
        # Inference: leaky ReLU is positively homogeneous, so its sqrt(2) gain can be folded into
        # the conv's output scale and the bias/noise terms; the rest runs in place on the fresh
        # conv output (three memory passes instead of five, no new buffers).
        x = self.modconv(x, w, out_gain=LRELU_GAIN, consume_input=consume_input)
        x.add_(self.bias.view(1, -1, 1, 1) * LRELU_GAIN)
        if noise is not None:
            x.add_(noise * (self.noise_strength * LRELU_GAIN))
        return F.leaky_relu_(x, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias, plus the up-sampled skip of the previous ToRGB.

    For SWAGAN the skip lives in the Haar domain; it is up-sampled in the pixel domain
    (inverse Haar -> FIR up-sampling -> Haar), as published.
    """

    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        out_channels: int = 3,
        upsample_skip: bool = True,
        wavelet: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.modconv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.wavelet = wavelet
        self.upsample = Upsample(blur_kernel) if upsample_skip else None

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modconv(x, w) + self.bias.view(1, -1, 1, 1)
        if skip is not None:
            skip = haar_dwt(self.upsample(haar_iwt(skip))) if self.wavelet else self.upsample(skip)
            out = out + skip
        return out


@dataclass(frozen=True)
class LayerInfo:
    """Where a hookable layer sits: its output map size, width and W+ row."""

    name: str
    index: int  # position in G.layer_names (conv layers) or in G.rgb_names (ToRGB layers)
    kind: str  # "conv4" | "up" | "conv" | "rgb"
    resolution: int  # spatial size of the feature map this layer outputs
    output_resolution: int  # image resolution it corresponds to (2x resolution for SWAGAN)
    channels: int
    latent_index: int
    skip_name: str | None  # the rgb layer whose output is the skip state right after this layer


class Generator(nn.Module):
    """StyleGAN2 / SWAGAN generator with the calling convention every egain method relies on.

    * ``mapping(z, truncation, truncation_latent)`` -> W (N, style_dim)
    * ``synthesize(w, noise_mode, ...)`` -> image (N, 3, size, size), roughly in [-1, 1], unclamped
    * ``forward(z_or_list, ...)`` -> image: mapping + style mixing + synthesis (GAN training)
    * ``layer_names``, ``layer_info(name)``, ``default_fusion_layers``: hooks for inversion methods.
    """

    def __init__(
        self,
        arch: str = "stylegan2",
        size: int = 256,
        style_dim: int = 512,
        n_mlp: int = 8,
        lr_mlp: float = 0.01,
        channels: Mapping[Any, Any] | None = None,
        channel_base: int | None = None,
        channel_max: int | None = None,
        channel_multiplier: int = 2,
        channel_preset: str | None = None,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.arch = check_arch(arch)
        self.size = check_size(size)
        if int(style_dim) < 1 or int(n_mlp) < 1:
            raise EgainError(f"style_dim and n_mlp must be >= 1, got {style_dim} and {n_mlp}")
        self.style_dim = int(style_dim)
        self.n_mlp = int(n_mlp)
        self.lr_mlp = float(lr_mlp)
        self.blur_kernel = [float(k) for k in blur_kernel]
        wavelet = self.arch == "swagan"
        self.feature_size = self.size // 2 if wavelet else self.size
        self.rgb_channels = 12 if wavelet else 3
        self.channels = resolve_channels(
            self.feature_size, channels, channel_base, channel_max, channel_multiplier, channel_preset
        )
        ch = self.channels

        self.mlp = nn.ModuleList(
            EqualLinear(self.style_dim, self.style_dim, lr_mul=self.lr_mlp, activation=True)
            for _ in range(self.n_mlp)
        )
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))

        self.resolutions = [2**i for i in range(2, log2(self.feature_size) + 1)]
        convs = [StyledConv(ch[4], ch[4], self.style_dim, 4, blur_kernel=blur_kernel)]
        to_rgbs = [ToRGB(ch[4], self.style_dim, self.rgb_channels, upsample_skip=False, wavelet=wavelet)]
        names, rgb_names = ["conv4"], ["rgb4"]
        for r in self.resolutions[1:]:
            convs.append(
                StyledConv(ch[r // 2], ch[r], self.style_dim, r, upsample=True, blur_kernel=blur_kernel)
            )
            convs.append(StyledConv(ch[r], ch[r], self.style_dim, r, blur_kernel=blur_kernel))
            to_rgbs.append(
                ToRGB(ch[r], self.style_dim, self.rgb_channels, wavelet=wavelet, blur_kernel=blur_kernel)
            )
            names += [f"up{r}", f"conv{r}"]
            rgb_names.append(f"rgb{r}")
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(to_rgbs)
        self.n_latent = 2 * log2(self.feature_size) - 2
        self.layer_names: list[str] = names
        self.rgb_names: list[str] = rgb_names

        # Execution plan: ("conv", j, latent row) / ("rgb", b, latent row), with each op's name.
        plan: list[tuple[str, int, int, str]] = [("conv", 0, 0, "conv4"), ("rgb", 0, 1, "rgb4")]
        for b in range(1, len(self.resolutions)):
            plan.append(("conv", 2 * b - 1, 2 * b - 1, names[2 * b - 1]))
            plan.append(("conv", 2 * b, 2 * b, names[2 * b]))
            plan.append(("rgb", b, 2 * b + 1, rgb_names[b]))
        self._plan = plan
        self._step_of = {name: i for i, (_, _, _, name) in enumerate(plan)}
        self._infos = self._make_infos()

        # Activation layout of synthesis: None follows the device (channels_last on CPU, NCHW
        # elsewhere); True / False force it. Set through set_memory_format (egain.nn.layout).
        self.channels_last: bool | None = None
        # Average W (set by loaders / the trainer); not in the state dict (published g_ema lacks it).
        self.register_buffer("latent_avg", None, persistent=False)

    # ------------------------------------------------------------------ description
    @property
    def config(self) -> dict[str, Any]:
        """Plain dict that rebuilds this network with ``build_generator(**config)``."""
        return {
            "arch": self.arch,
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "lr_mlp": self.lr_mlp,
            "channels": {int(r): int(c) for r, c in self.channels.items()},
            "blur_kernel": list(self.blur_kernel),
        }

    @property
    def num_noise(self) -> int:
        return len(self.convs)

    def _make_infos(self) -> dict[str, LayerInfo]:
        scale = 2 if self.arch == "swagan" else 1
        infos: dict[str, LayerInfo] = {}
        last_rgb: str | None = None
        for kind, idx, row, name in self._plan:
            if kind == "conv":
                conv = self.convs[idx]
                k = "conv4" if idx == 0 else ("up" if idx % 2 == 1 else "conv")
                infos[name] = LayerInfo(
                    name,
                    idx,
                    k,
                    conv.resolution,
                    conv.resolution * scale,
                    conv.modconv.out_channels,
                    row,
                    last_rgb,
                )
            else:
                r = self.resolutions[idx]
                infos[name] = LayerInfo(name, idx, "rgb", r, r * scale, self.rgb_channels, row, name)
                last_rgb = name
        return infos

    def layer_info(self, name: str) -> LayerInfo:
        """Resolution, channels and W+ row of a hookable layer (a name from layer_names or rgb_names)."""
        try:
            return self._infos[name]
        except KeyError:
            raise EgainError(
                f"unknown generator layer {name!r}; expected one of {', '.join(self.layer_names + self.rgb_names)}"
            ) from None

    @property
    def default_fusion_layers(self) -> list[str]:
        """Where HFGI/EGAIN-style consultation fusion goes by default.

        The published code fuses after the up-sampling conv that makes the 64x64 map (loop index
        i == 7), for every generator size it supports (256-1024). We keep 64x64 and, for generators
        too small to have 64x64 with room after it, use ``size // 4`` (16x16 for 64 px), always
        measured on the feature map (so SWAGAN-1024 fuses at its internal 64x64, as EGAIN's code).
        """
        r = min(64, self.size // 4)
        r = min(r, self.feature_size)
        return [f"up{r}" if r > 4 else "conv4"]

    def set_modconv_mode(self, mode: str) -> Generator:
        """Force the modulated-conv form ("fused", "shared") or let it pick per call ("auto")."""
        if mode not in MODES:
            raise EgainError(f"modconv mode must be one of {MODES}, got {mode!r}")
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.mode = mode
        return self

    @property
    def memory_format(self) -> str:
        """The synthesis layout setting: "auto" (channels_last on CPU), "channels_last" or "contiguous"."""
        if self.channels_last is None:
            return "auto"
        return "channels_last" if self.channels_last else "contiguous"

    def set_memory_format(self, memory_format: str = "auto") -> Generator:
        """Run synthesis on channels_last (NHWC) or NCHW activations; "auto" = channels_last on CPU.

        On CPU channels_last is oneDNN's native layout. The FIR blurs and most convs are faster
        there: 1024 px batch-1 synthesis takes 0.90x (StyleGAN2) and 0.96x (SWAGAN) the NCHW
        time, see docs/generators.md. The input is converted once at entry. Images and returned
        features are ordinary contiguous tensors in either layout. Only the inference weight
        caches follow the layout; the parameters keep their NCHW storage, so training,
        checkpoints and EMA do not see it.
        """
        fmt = check_memory_format(memory_format)
        self.channels_last = None if fmt == "auto" else fmt == "channels_last"
        return self

    def clear_cache(self) -> Generator:
        """Drop the inference caches of conv-layout weights (needed only after writing ``weight.data``)."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m._cache = None
        return self

    # ------------------------------------------------------------------ latent space
    def mapping(
        self,
        z: torch.Tensor,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z (..., style_dim) -> w (..., style_dim): pixel norm, MLP, optional truncation toward w_avg."""
        if z.shape[-1] != self.style_dim:
            raise InputError(f"z has last dim {z.shape[-1]}; expected style_dim={self.style_dim}")
        w = pixel_norm(z, dim=-1)
        for layer in self.mlp:
            w = layer(w)
        if truncation != 1.0:
            w = self.truncate(w, truncation, truncation_latent)
        return w

    def truncate(
        self, w: torch.Tensor, truncation: float, truncation_latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``w_avg + psi * (w - w_avg)``; w_avg defaults to ``latent_avg`` (computed once if unset)."""
        if truncation == 1.0:
            return w
        avg = truncation_latent if truncation_latent is not None else self.average_latent()
        return avg + truncation * (w - avg)

    def average_latent(self) -> torch.Tensor:
        """``latent_avg`` as (style_dim,); computed from the mapping network (and said so) if unset."""
        if self.latent_avg is None:
            logger.warning(
                "generator has no stored latent_avg; computing it as the mean of 10000 mapped z (seed 0)"
            )
            self.latent_avg = self.mean_latent(10000, seed=0)[0]
        return self.latent_avg

    @torch.no_grad()
    def mean_latent(self, n: int = 10000, seed: int | None = None) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` random z, shape (1, style_dim). Batched to bound memory.

        With a ``seed`` the z are drawn on the CPU and moved to the generator's device: CUDA's
        random stream differs from the CPU's, and w-bar (added to every encoder output) must not
        depend on where the generator happens to live.
        """
        device = self.const.device
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        total = torch.zeros(self.style_dim, device=device, dtype=torch.float64)
        done = 0
        n = int(n)
        while done < n:
            b = min(8192, n - done)
            if gen is not None:
                z = torch.randn(b, self.style_dim, generator=gen).to(device)
            else:
                z = torch.randn(b, self.style_dim, device=device)
            total += self.mapping(z).double().sum(0)
            done += b
        return (total / n).to(self.const.dtype).unsqueeze(0)

    def mix_latents(self, w1: torch.Tensor, w2: torch.Tensor, inject_index: int) -> torch.Tensor:
        """Style mixing: W+ with rows [0, inject_index) from w1 and the rest from w2 (W or W+ each)."""
        if not 0 <= inject_index <= self.n_latent:
            raise InputError(f"inject_index must be in [0, {self.n_latent}], got {inject_index}")
        a = self.to_wplus(w1)
        b = self.to_wplus(w2)
        return torch.cat([a[:, :inject_index], b[:, inject_index:]], dim=1)

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """W (N, D) -> W+ (N, n_latent, D) by repetition; W+ is checked and returned as is."""
        w = self._check_w(w)
        if w.ndim == 2:
            return w.unsqueeze(1).repeat(1, self.n_latent, 1)  # a real copy: callers edit rows in place
        return w

    def _check_w(self, w: torch.Tensor, what: str = "w") -> torch.Tensor:
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w
        if w.ndim == 3 and w.shape[2] == self.style_dim:
            if w.shape[1] != self.n_latent:
                raise InputError(
                    f"{what} is a W+ code with {w.shape[1]} layers; this {self.arch} {self.size}px "
                    f"generator expects {self.n_latent} (shape (N, {self.n_latent}, {self.style_dim}))"
                )
            return w
        raise InputError(
            f"{what} has shape {tuple(w.shape)}; expected W (N, {self.style_dim}) or "
            f"W+ (N, {self.n_latent}, {self.style_dim})"
        )

    # ------------------------------------------------------------------ synthesis
    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-layer noise maps (N, 1, r, r), one per conv layer."""
        dev = self.const.device
        return [
            torch.randn(batch, 1, c.resolution, c.resolution, device=dev, generator=generator)
            for c in self.convs
        ]

    def synthesize(
        self,
        w: torch.Tensor,
        noise_mode: str = "const",
        *,
        noise: Sequence[torch.Tensor | None] | None = None,
        return_features: Sequence[str] | None = None,
        fusion: Mapping[str, tuple[torch.Tensor | float | None, torch.Tensor | float | None]] | None = None,
        injection: Mapping[str, torch.Tensor] | None = None,
        w_late: torch.Tensor | None = None,
        late_after: str | None = None,
        start_from: tuple[str, torch.Tensor, torch.Tensor | None] | None = None,
    ):
        """Render W (N, D) or W+ (N, n_latent, D) to an image (N, 3, size, size).

        noise_mode: "const" (the stored maps; deterministic, what published inference uses),
            "random" (fresh N(0,1) per call) or "none" (no noise). ``noise`` (a list with one entry
            per conv layer, None = use ``noise_mode``) overrides it.
        return_features: layer names (``layer_names`` or ``rgb_names``); returns
            ``(image, {name: feature})`` with each feature as it leaves the layer (after fusion /
            injection, i.e. the tensor that flows on).
        fusion: ``{layer: (scale, shift)}``; ``f <- f * (1 + scale) + shift`` after that conv layer
            (HFGI/EGAIN consultation fusion; either may be None).
        injection: ``{layer: delta}``; ``f <- f + delta`` after that layer (SAM Eq. 3.3-3.4; the
            caller applies its masks: ``delta = m_k * df_k``). Applied after ``fusion``.
            ``fusion`` and ``injection`` keyed by a ToRGB name (``rgb{r}``) change the block's
            output feature after that ToRGB has run, so only the next blocks see the change (the
            published SAM attach point: after a whole synthesis block).
        w_late / late_after: every op executed *after* layer ``late_after`` uses ``w_late`` instead
            of ``w`` (SAM sec. 3.4: an edit applies only to layers after F_k).
        start_from: ``(layer, feature, skip)`` starts synthesis right after ``layer`` from the given
            feature map; ``skip`` is the output of ``layer_info(layer).skip_name`` at that point
            (None for ``conv4``). Together with ``return_features`` this resumes a cut synthesis.
        """
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        w = self._check_w(w)
        hooked = bool(return_features or fusion or injection or late_after or start_from)
        features: dict[str, torch.Tensor] = {}
        if noise is not None and len(noise) != len(self.convs):
            raise InputError(f"noise has {len(noise)} maps; expected one per conv layer ({len(self.convs)})")

        n = w.shape[0]
        first = 0
        skip: torch.Tensor | None = None
        if start_from is not None:
            name, x, skip = start_from
            first = self._step(name) + 1
        else:
            x = self.const.expand(n, -1, -1, -1)
        if wants_channels_last(self.memory_format, x.device):
            # Once here; every op below keeps the layout (the image leaves contiguous at the end).
            x = x.contiguous(memory_format=torch.channels_last)
        if hooked:
            wanted = set(return_features or ())
            for name in list(wanted) + list(fusion or {}) + list(injection or {}):
                self._step(name)
            switch = self._step(late_after) if late_after is not None else len(self._plan)
            if late_after is not None:
                if w_late is None:
                    raise InputError("late_after needs w_late (the code for the layers after it)")
                w_late = self._check_w(w_late, "w_late")
        plan = self._plan
        for step in range(first, len(plan)):
            kind, idx, row, name = plan[step]
            src = w_late if hooked and step > switch else w
            ws = src[:, row] if src.ndim == 3 else src
            if kind == "conv":
                conv = self.convs[idx]
                nz = noise[idx] if noise is not None else None
                if nz is None:
                    if noise_mode == "const":
                        nz = conv.noise_const
                    elif noise_mode == "random":
                        r = conv.resolution
                        nz = torch.randn(n, 1, r, r, device=x.device, dtype=x.dtype)
                # Without hooks nobody else holds x (the ToRGB before an up-conv has already
                # read it), so inference may modulate it in place; never the first (const) input.
                x = conv(x, ws, nz, consume_input=not hooked and step > first)
                if hooked:
                    if fusion and name in fusion:
                        scale, shift = fusion[name]
                        if scale is not None:
                            x = x * (1 + scale)
                        if shift is not None:
                            x = x + shift
                    if injection and name in injection:
                        x = x + injection[name]
                    if name in wanted:
                        features[name] = x.contiguous()
            else:
                skip = self.to_rgbs[idx](x, ws, skip)
                if hooked:
                    if name in wanted:
                        features[name] = skip.contiguous()
                    # Hooks keyed by a ToRGB name act on the block's output feature x after its
                    # ToRGB has read it (SAM's attach point): only the following blocks see them.
                    if fusion and name in fusion:
                        scale, shift = fusion[name]
                        if scale is not None:
                            x = x * (1 + scale)
                        if shift is not None:
                            x = x + shift
                    if injection and name in injection:
                        x = x + injection[name]
        image = haar_iwt(skip) if self.arch == "swagan" else skip
        image = image.contiguous()
        if return_features is not None:
            return image, features
        return image

    def _step(self, name: str) -> int:
        try:
            return self._step_of[name]
        except KeyError:
            raise EgainError(
                f"unknown generator layer {name!r}; expected one of {', '.join(self.layer_names + self.rgb_names)}"
            ) from None

    def forward(
        self,
        styles: torch.Tensor | Sequence[torch.Tensor],
        *,
        input_is_latent: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
        noise_mode: str = "random",
        return_latents: bool = False,
        **synthesis_kwargs: Any,
    ):
        """Mapping + style mixing + synthesis, the published ``Generator.forward`` semantics.

        ``styles`` is z (or w with ``input_is_latent``), or a list of two for style mixing: rows
        ``[0, inject_index)`` from the first, the rest from the second (``inject_index`` uniform in
        [1, n_latent - 1] when not given). Returns the image, or ``(image, w_plus)`` with
        ``return_latents`` (the W+ actually used; path-length regularisation differentiates it).
        """
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        styles = list(styles)
        if not 1 <= len(styles) <= 2:
            raise InputError(f"expected one latent or a list of two (style mixing), got {len(styles)}")
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation != 1.0:
            styles = [self.truncate(s, truncation, truncation_latent) for s in styles]
        if len(styles) == 1:
            latent = self.to_wplus(styles[0])
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = self.mix_latents(styles[0], styles[1], inject_index)
        image = self.synthesize(latent, noise_mode, **synthesis_kwargs)
        if return_latents:
            return image, latent
        return image

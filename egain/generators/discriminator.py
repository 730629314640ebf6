"""Discriminators: the StyleGAN2 residual D and the SWAGAN wavelet input-skip D.

Both end with minibatch standard deviation, a 3x3 conv at 4x4 and two equalised linear layers
(the published head). Channel widths come from the same table as the generator, indexed by the
resolution a block works at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import InputError
from egain.generators.config import DEFAULT_BLUR_KERNEL, check_arch, check_size, log2, resolve_channels
from egain.ops.equalized import EqualLinear, fused_leaky_relu
from egain.ops.upfirdn import Blur, Downsample
from egain.ops.wavelets import haar_dwt, haar_iwt


class ConvLayer(nn.Module):
    """Equalised conv with optional FIR-blurred stride-2 down-sampling and fused leaky ReLU.

    With ``downsample`` the input is blurred first and the conv runs at stride 2 without padding
    (anti-aliased down-sampling, as published). With an activation the bias goes into it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
            self.stride, self.padding = 2, 0
        else:
            self.blur = None
            self.stride, self.padding = 1, kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur is not None:
            x = self.blur(x)
        w = self.weight * self.scale
        if self.activate:
            return fused_leaky_relu(F.conv2d(x, w, stride=self.stride, padding=self.padding), self.bias)
        return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)


class ResBlock(nn.Module):
    """3x3 conv, 3x3 down conv, plus a 1x1 down skip; the sum is scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float]):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, bias=False, activate=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1.0 / math.sqrt(2.0))


class ConvBlock(nn.Module):
    """SWAGAN D block: 3x3 conv then 3x3 down conv, no residual."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float]):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class FromWavelets(nn.Module):
    """SWAGAN input skip: (optionally) halve the wavelet image (via pixels), conv it, add to features."""

    def __init__(self, out_channels: int, downsample: bool, kernel_size: int, blur_kernel: Sequence[float]):
        super().__init__()
        self.downsample = Downsample(blur_kernel) if downsample else None
        self.conv = ConvLayer(12, out_channels, kernel_size, blur_kernel=blur_kernel)

    def forward(
        self, wavelets: torch.Tensor, features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample is not None:
            wavelets = haar_dwt(self.downsample(haar_iwt(wavelets)))
        out = self.conv(wavelets)
        if features is not None:
            out = out + features
        return wavelets, out


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_features: int = 1) -> torch.Tensor:
    """Append the (group-wise) standard deviation across the batch as extra channel(s).

    Sample i is grouped with samples i + k * (N / G), the published layout. When the batch is not
    divisible by the group size, the largest divisor of the batch below it is used (instead of failing).
    """
    n, c, h, w = x.shape
    g = min(n, group_size)
    while n % g:
        g -= 1
    y = x.reshape(g, -1, n_features, c // n_features, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (N/G, F, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (``arch="stylegan2"``) or SWAGAN wavelet D (``"swagan"``).

    ``from_rgb_kernel`` (SWAGAN only): 3 in rosinality's SWAGAN, 1 in EGAIN's copy.
    Returns logits (N, 1).
    """

    def __init__(
        self,
        arch: str = "stylegan2",
        size: int = 256,
        channels: Mapping[Any, Any] | None = None,
        channel_base: int | None = None,
        channel_max: int | None = None,
        channel_multiplier: int = 2,
        channel_preset: str | None = None,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        from_rgb_kernel: int = 3,
        stddev_group: int = 4,
        stddev_features: int = 1,
    ):
        super().__init__()
        self.arch = check_arch(arch)
        self.size = check_size(size)
        self.blur_kernel = [float(k) for k in blur_kernel]
        self.channels = resolve_channels(
            self.size, channels, channel_base, channel_max, channel_multiplier, channel_preset
        )
        self.from_rgb_kernel = int(from_rgb_kernel)
        self.stddev_group = int(stddev_group)
        self.stddev_features = int(stddev_features)
        ch = self.channels
        if self.arch == "stylegan2":
            self.from_rgb = ConvLayer(3, ch[self.size], 1, blur_kernel=blur_kernel)
            self.blocks = nn.ModuleList(
                ResBlock(ch[r], ch[r // 2], blur_kernel) for r in self._down_resolutions(self.size)
            )
        else:
            top = log2(self.size) - 1
            from_rgbs, blocks = [], []
            in_ch = ch[self.size]
            for i in range(top, 2, -1):
                out_ch = ch[2 ** (i - 1)]
                from_rgbs.append(FromWavelets(in_ch, i != top, self.from_rgb_kernel, blur_kernel))
                blocks.append(ConvBlock(in_ch, out_ch, blur_kernel))
                in_ch = out_ch
            from_rgbs.append(FromWavelets(ch[4], True, self.from_rgb_kernel, blur_kernel))
            self.from_rgbs = nn.ModuleList(from_rgbs)
            self.blocks = nn.ModuleList(blocks)
        self.final_conv = ConvLayer(ch[4] + self.stddev_features, ch[4], 3, blur_kernel=blur_kernel)
        self.final_fc = EqualLinear(ch[4] * 16, ch[4], activation=True)
        self.out = EqualLinear(ch[4], 1)

    @staticmethod
    def _down_resolutions(size: int) -> list[int]:
        return [2**i for i in range(log2(size), 2, -1)]

    @property
    def config(self) -> dict[str, Any]:
        """Plain dict that rebuilds this network with ``build_discriminator(**config)``."""
        cfg: dict[str, Any] = {
            "arch": self.arch,
            "size": self.size,
            "channels": {int(r): int(c) for r, c in self.channels.items()},
            "blur_kernel": list(self.blur_kernel),
            "stddev_group": self.stddev_group,
            "stddev_features": self.stddev_features,
        }
        if self.arch == "swagan":
            cfg["from_rgb_kernel"] = self.from_rgb_kernel
        return cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or images.shape[-1] != self.size
            or images.shape[-2] != self.size
        ):
            raise InputError(
                f"discriminator input has shape {tuple(images.shape)}; expected (N, 3, {self.size}, {self.size})"
            )
        if self.arch == "stylegan2":
            x = self.from_rgb(images)
            for block in self.blocks:
                x = block(x)
        else:
            wav = haar_dwt(images)
            x = None
            for from_rgb, block in zip(self.from_rgbs, self.blocks, strict=False):
                wav, x = from_rgb(wav, x)
                x = block(x)
            _, x = self.from_rgbs[-1](wav, x)
        x = minibatch_stddev(x, self.stddev_group, self.stddev_features)
        x = self.final_conv(x)
        x = self.final_fc(x.flatten(1))
        return self.out(x)

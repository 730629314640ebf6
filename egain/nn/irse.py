"""IR / IR-SE residual units and bodies (ArcFace "Backbone" family).

One implementation serves the e4e/pSp/HFGI basic encoders and the ArcFace face-embedding network.
Module names reproduce the published key layout (``input_layer.{0,1,2}``,
``body.{i}.shortcut_layer.{0,1}``, ``body.{i}.res_layer.{0..5}``, SE ``fc1``/``fc2``), so a
published IR-SE50 state dict loads strictly into :class:`IRSEBody` built with ``irse50_stages()``.
Depth and width are configuration, so the same code gives the tiny networks of the synthfaces world.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _fold_allowed(module: nn.Module, *params: torch.Tensor) -> bool:
    """Folding BatchNorm into the conv before it is exact only with frozen statistics (eval) and
    without autograd (training keeps the two ops so gradients reach the BN parameters)."""
    return not module.training and not torch.is_grad_enabled() and not any(p.is_inference() for p in params)


class FoldedConvBN:
    """Inference cache of ``conv -> BatchNorm`` folded into one biased conv (weight * scale, shift).

    ``BN(conv(x)) = conv(x) * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``: the same
    numbers to float32 rounding, one pass over the activations fewer. The cache is rebuilt whenever
    any of the five tensors changes (optimiser steps and load_state_dict bump their versions).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(
        self, conv: nn.Conv2d, bn: nn.BatchNorm2d, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ts = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = (dtype, *((t._version, t.data_ptr()) for t in ts))
        if self._key != key or self._value is None:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            weight = (conv.weight * scale.view(-1, 1, 1, 1)).to(dtype)
            bias = (bn.bias - bn.running_mean * scale).to(dtype)
            if conv.bias is not None:
                bias = bias + (conv.bias * scale).to(dtype)
            self._key, self._value = key, (weight.detach(), bias.detach())
        return self._value


def folded_conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, cache: FoldedConvBN) -> torch.Tensor:
    """``bn(conv(x))``, as one conv with the BN folded in when that is exact (see FoldedConvBN)."""
    stats = (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    exporting = torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    if exporting or any(t is None for t in stats) or not _fold_allowed(bn, conv.weight, *stats):
        return bn(conv(x))
    weight, bias = cache.get(conv, bn, x.dtype)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


@dataclass(frozen=True)
class Stage:
    """``units`` residual units at ``channels`` channels; the first one has stride 2."""

    channels: int
    units: int


def irse_stages(num_layers: int = 50, widths: Sequence[int] = (64, 128, 256, 512)) -> list[Stage]:
    """The published stage tables: IR-50 (3,4,14,3), IR-100 (3,13,30,3), IR-152 (3,8,36,3).

    ``num_layers`` may also be a small custom depth given through :func:`custom_stages`.
    """
    table = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
    if num_layers not in table:
        raise ValueError(f"num_layers must be one of {sorted(table)}, got {num_layers}")
    return [Stage(c, u) for c, u in zip(widths, table[num_layers], strict=True)]


def custom_stages(units: Sequence[int], widths: Sequence[int]) -> list[Stage]:
    if len(units) != len(widths):
        raise ValueError(f"units {tuple(units)} and widths {tuple(widths)} must have the same length")
    return [Stage(int(c), int(u)) for c, u in zip(widths, units, strict=True)]


class SEModule(nn.Module):
    """Squeeze-and-excitation: global pool -> 1x1 conv (C/r) -> ReLU -> 1x1 conv (C) -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, C, 1, 1) channel weights, so a caller can fuse the scaling with its own add."""
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class BottleneckIR(nn.Module):
    """BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN [-> SE], plus a (projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool = True):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)
        self.stride = stride
        self._fold_res = FoldedConvBN()
        self._fold_shortcut = FoldedConvBN()

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # The published identity shortcut is MaxPool2d(kernel 1, stride): a max over one sample,
        # i.e. plain subsampling. A strided view gives the same numbers without a pass over x.
        if isinstance(self.shortcut_layer, nn.MaxPool2d):
            return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        conv, bn = self.shortcut_layer
        return folded_conv_bn(x, conv, bn, self._fold_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self._shortcut(x)
        bn_in, conv1, prelu, conv2, bn_out = self.res_layer[:5]
        res = folded_conv_bn(prelu(conv1(bn_in(x))), conv2, bn_out, self._fold_res)
        if len(self.res_layer) > 5:
            # SE scaling and the residual add in one pass (addcmul) instead of two.
            return torch.addcmul(shortcut, res, self.res_layer[5].gate(res))
        return res + shortcut


class IRSEBody(nn.Module):
    """``input_layer`` + ``body`` of the IR(-SE) family; returns the last map or all stage outputs.

    ``forward(x, return_units=(6, 20, 23))`` also returns the outputs of the listed unit indices,
    which is how pSp/e4e take their FPN taps (c1, c2, c3).
    """

    def __init__(self, stages: Sequence[Stage], input_nc: int = 3, stem_channels: int = 64, se: bool = True):
        super().__init__()
        self.stages = list(stages)
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, stem_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.PReLU(stem_channels),
        )
        units: list[nn.Module] = []
        in_c = stem_channels
        self.stage_ends: list[int] = []
        for stage in self.stages:
            for i in range(stage.units):
                units.append(BottleneckIR(in_c, stage.channels, 2 if i == 0 else 1, se=se))
                in_c = stage.channels
            self.stage_ends.append(len(units) - 1)
        self.body = nn.Sequential(*units)
        self._fold_stem = FoldedConvBN()
        self.out_channels = in_c

    @property
    def downsampling(self) -> int:
        return 2 ** len(self.stages)

    def forward(self, x: torch.Tensor, return_units: Sequence[int] = ()) -> torch.Tensor | tuple:
        conv, bn, prelu = self.input_layer
        x = prelu(folded_conv_bn(x, conv, bn, self._fold_stem))
        if not return_units:
            return self.body(x)
        taps = {}
        wanted = set(return_units)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in wanted:
                taps[i] = x
        return x, [taps[i] for i in return_units]

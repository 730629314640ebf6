"""Delta encoders E_Delta: encode the distortion map Delta0 = x - y0.

* :class:`ConsultationEncoder` -- HFGI's consultation encoder trunk (``ResidualEncoder`` without its
  two condition heads, which are the fusion module here): conv + two IR stages, giving feature maps
  M_d at 1/4 of the input (64 x 64^2 for 256 px input in the published layout, reference sec. 4.3).
* :class:`DeltaCNN` -- the ``egain`` model's custom CNN (seeds/000 sec. III). A plain stride-2 conv
  stack *without biases or normalisation* and with LeakyReLU, so it is positively homogeneous:
  Delta0 = 0 gives M_d = 0 exactly, and with bias-free fusion heads a perfect basic reconstruction
  passes through unchanged. That keeps the delta branch a pure correction of y0.
* :class:`LatentDeltaEncoder` -- for external fusion: an e4e-structured encoder (its own small
  weights) mapping Delta0 to a W+ code w_d. The released EGAIN code reused the basic encoder's
  weights for this; a separate compact encoder is cheaper and can specialise on distortion maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from egain.encoders.e4e import E4EEncoder
from egain.nn.irse import BottleneckIR


class ConsultationEncoder(nn.Module):
    """HFGI Ec trunk: Conv3x3 -> BN -> PReLU, then IR stages (stride 2 first unit, 3 units each).

    Keys ``conv_layer1.{0,1,2}``, ``conv_layer2.{0,1,2}``, ``conv_layer3.{0,1,2}`` as published.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 48, 64), units_per_stage: int = 3):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(
                f"the consultation encoder has 3 widths (stem, stage 2, stage 3), got {tuple(widths)}"
            )
        c0, c1, c2 = widths
        self.conv_layer1 = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.PReLU(c0)
        )
        self.conv_layer2 = _ir_stage(c0, c1, units_per_stage)
        self.conv_layer3 = _ir_stage(c1, c2, units_per_stage)
        self.out_channels = c2
        self.reduction = 4

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.conv_layer3(self.conv_layer2(self.conv_layer1(delta)))


def _ir_stage(in_c: int, out_c: int, units: int) -> nn.Sequential:
    layers = [BottleneckIR(in_c, out_c, 2, se=False)]
    layers += [BottleneckIR(out_c, out_c, 1, se=False) for _ in range(units - 1)]
    return nn.Sequential(*layers)


class DeltaCNN(nn.Module):
    """egain's delta encoder: bias-free conv stack, ``len(widths)-1`` stride-2 stages.

    Each stage is Conv3x3(stride 2) -> LReLU -> Conv3x3 -> LReLU; the stem is Conv3x3 -> LReLU.
    Output M_d has ``widths[-1]`` channels at ``input / 2**(len(widths)-1)``.
    """

    def __init__(
        self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 64), negative_slope: float = 0.2
    ):
        super().__init__()
        if len(widths) < 1:
            raise ValueError("DeltaCNN needs at least one width")
        act = nn.LeakyReLU(negative_slope)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), act]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                act,
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                act,
            ]
        self.net = nn.Sequential(*layers)
        self.out_channels = widths[-1]
        self.reduction = 2 ** (len(widths) - 1)
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.net(delta)


class LatentDeltaEncoder(nn.Module):
    """Delta0 -> w_d (N, n_styles, style_dim) with an e4e-structured encoder (offsets, no w-bar)."""

    def __init__(self, n_styles: int, style_dim: int, input_size: int, **encoder_config):
        super().__init__()
        self.encoder = E4EEncoder(n_styles, style_dim, input_size, **encoder_config)

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.encoder(delta)

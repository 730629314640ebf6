"""Equalised-learning-rate layers and the fused leaky ReLU of StyleGAN2.

StyleGAN2 stores *raw* weights initialised from N(0, 1/lr_mul) and scales them at run time by
``lr_mul / sqrt(fan_in)``. Keeping the scaling at run time (instead of baking it into the stored
tensor) is what makes published checkpoints load unchanged, and it makes Adam see the same
effective learning rate for every layer, whatever its fan-in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, slope: float = LRELU_SLOPE, gain: float = LRELU_GAIN
) -> torch.Tensor:
    """``leaky_relu(x + bias, slope) * gain``, bias broadcast over every dim after the channel dim.

    The gain sqrt(2) keeps activations at unit variance through the network (He-style); the
    published CUDA kernel does the same three steps in one pass, so the order here matches it.
    """
    if bias is not None:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = x + bias.view(shape)
    return F.leaky_relu(x, slope) * gain


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) * sqrt(2): the activation (and the only bias) of every StyleGAN2 conv."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


def pixel_norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Normalise to unit mean square over ``dim`` (the feature dim of z, before the mapping MLP)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=dim, keepdim=True) + eps)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional fused leaky-ReLU activation.

    Effective weight ``W * lr_mul / sqrt(in)``, effective bias ``b * lr_mul``. With an activation the
    bias goes into the activation (linear without bias, then ``lrelu(. + b)``), the published order.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scale the (small) product instead of the weight: no per-call copy of the weight matrix.
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = fused_leaky_relu(torch.mm(x2, self.weight.t()) * self.scale, bias)
        elif bias is None:
            out = torch.mm(x2, self.weight.t()) * self.scale
        else:
            out = torch.addmm(bias, x2, self.weight.t(), alpha=self.scale)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate: effective weight ``W / sqrt(in * k * k)``, bias unscaled."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

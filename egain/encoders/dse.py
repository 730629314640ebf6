"""The DSE encoder, symmetric to the StyleGAN generator (Yu & Wang, seeds/003 sec. III-C, Table I).

The generator turns (w, z_c) into an image block by block, 4 px up to S px, two style rows per
block. The encoder walks the same blocks backwards, S px down to 4 px, and at each of its two
convolutions reads a style row back out of the activation statistics (the inverse of AdaIN):

* ``w1 = FC(mean, std of the block input)``; InstanceNorm -> 3x3 conv -> + learnable-weight noise
  -> + bias -> LeakyReLU 0.2;
* ``w2 = FC(mean, std of that activation)``; InstanceNorm -> 3x3 conv (C_in -> C_out) -> noise ->
  bias -> LeakyReLU -> average pool 2 (the last block has no second conv and no pooling);
* residual bypass: ``0.111 * branch + 0.889 * skip``, skip = avg-pool 2 (+ 1x1 conv when the width
  changes), as published.

The last block's output is the predicted constant input z_c' (N, C, 4, 4); the rows are stacked
so that row 0-1 come from the last (4 px) block, matching the generator's row order.

All convolutions and linear layers use an equalised learning rate (ALAE-style, gain sqrt(2),
the style FCs gain 1): weights are stored N(0, 1) and scaled at run time. The published code
(``implicit_lreq``) stores the scaled weight instead and lets its optimiser rescale the updates;
:func:`published_to_ours` divides by the scale, so both give the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NOISE_MODES = ("random", "none")


class EqLinear(nn.Module):
    """Linear with equalised learning rate: effective weight ``W * gain / sqrt(in)``."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqConv2d(nn.Module):
    """Conv2d with equalised learning rate: effective weight ``W * gain / sqrt(in * k * k)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def _mean_std(x: torch.Tensor) -> torch.Tensor:
    """(N, 2C): per-channel mean and (population) std over the spatial positions."""
    mean = x.mean(dim=(2, 3))
    var = (x - mean[:, :, None, None]).pow(2).mean(dim=(2, 3))
    # clamp only guards the gradient of sqrt at an exactly constant map; it changes no other value
    return torch.cat([mean, var.clamp_min(1e-20).sqrt()], dim=1)


class DSEBlock(nn.Module):
    """One encoder block (published ``BEBlock`` with ``fused_scale=False``); returns (x, w1, w2)."""

    def __init__(self, inputs: int, outputs: int, style_dim: int, last: bool = False):
        super().__init__()
        if last and inputs != outputs:
            raise ValueError(f"the last DSE block keeps its width (bypass add); got {inputs} -> {outputs}")
        self.last = last
        self.noise_weight_1 = nn.Parameter(torch.zeros(1, inputs, 1, 1))
        self.bias_1 = nn.Parameter(torch.zeros(1, inputs, 1, 1))
        self.inver_mod1 = EqLinear(2 * inputs, style_dim, gain=1.0)
        self.conv_1 = EqConv2d(inputs, inputs, 3, bias=False)
        self.noise_weight_2 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.bias_2 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.inver_mod2 = EqLinear(2 * inputs, style_dim, gain=1.0)
        self.conv_2 = None if last else EqConv2d(inputs, outputs, 3, bias=False)
        self.conv_3 = EqConv2d(inputs, outputs, 1) if inputs != outputs else None

    @staticmethod
    def _noise(x: torch.Tensor, weight: torch.Tensor, mode: str) -> torch.Tensor:
        if mode == "none":
            return x
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + weight * noise

    def forward(
        self, x: torch.Tensor, noise_mode: str = "random"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w1 = self.inver_mod1(_mean_std(x))
        skip = x
        h = self.conv_1(F.instance_norm(x, eps=1e-8))
        h = F.leaky_relu(self._noise(h, self.noise_weight_1, noise_mode) + self.bias_1, 0.2)
        w2 = self.inver_mod2(_mean_std(h))
        h = F.instance_norm(h, eps=1e-8)
        if self.conv_2 is not None:
            h = self.conv_2(h)
            h = F.leaky_relu(self._noise(h, self.noise_weight_2, noise_mode) + self.bias_2, 0.2)
            h = F.avg_pool2d(h, 2)
            skip = F.avg_pool2d(skip, 2)
        if self.conv_3 is not None:
            skip = self.conv_3(skip)
        return 0.111 * h + 0.889 * skip, w1, w2


def block_widths(n_blocks: int, startf: int, maxf: int) -> list[tuple[int, int]]:
    """(inputs, outputs) per block: ``min(maxf, startf 2^i)`` -> ``min(maxf, 2 startf 2^i)``; the last keeps its width."""
    widths = []
    for i in range(n_blocks):
        cin = min(maxf, startf * 2**i)
        cout = cin if i == n_blocks - 1 else min(maxf, 2 * startf * 2**i)
        widths.append((cin, cout))
    return widths


class DSEEncoder(nn.Module):
    """Image (N, 3, S, S) -> (z_c' (N, C, r, r), w' (N, 2 * n_blocks, style_dim)).

    ``n_blocks`` = n_latent / 2 (log2(S) - 1 for StyleGAN2: 9 at 1024 px). ``startf``: width of
    the first block (published: 16 at 1024, 32 at 512, 64 at 256 px); ``maxf``: the cap (512).
    """

    def __init__(
        self, n_blocks: int, style_dim: int = 512, startf: int = 16, maxf: int = 512, channels: int = 3
    ):
        super().__init__()
        self.style_dim = style_dim
        self.from_rgb = EqConv2d(channels, startf, 1)
        widths = block_widths(n_blocks, startf, maxf)
        self.blocks = nn.ModuleList(
            DSEBlock(cin, cout, style_dim, last=i == n_blocks - 1) for i, (cin, cout) in enumerate(widths)
        )

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        x = F.leaky_relu(self.from_rgb(x), 0.2)
        rows: list[torch.Tensor] = []
        for block in self.blocks:
            x, w1, w2 = block(x, noise_mode)
            rows = [w2, w1, *rows]  # each block's pair goes in front: row 0-1 from the 4 px block
        return x, torch.stack(rows, dim=1)


def published_to_ours(state: dict[str, torch.Tensor], encoder: DSEEncoder) -> dict[str, torch.Tensor]:
    """The published ``BE`` state dict (``FromRGB.from_rgb.*``, ``decode_block.{i}.*``) in our names.

    Published weights are stored already scaled (implicit equalised lr); ours are stored unscaled,
    so each weight is divided by its layer's run-time scale. Biases and noise weights are unchanged.
    """
    scales = {name: m.scale for name, m in encoder.named_modules() if isinstance(m, EqLinear | EqConv2d)}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("FromRGB.from_rgb."):
            new = "from_rgb." + key[len("FromRGB.from_rgb.") :]
        elif key.startswith("decode_block."):
            new = "blocks." + key[len("decode_block.") :]
        else:
            new = "<unknown>" + key
        layer, _, leaf = new.rpartition(".")
        if leaf == "weight" and layer in scales:
            value = value / scales[layer]
        out[new] = value
    return out

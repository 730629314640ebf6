"""Orthonormal Haar wavelet transforms, as used by SWAGAN.

Layout (that of the published SWAGAN, so its checkpoints work unchanged): the forward transform
maps (N, C, H, W) to (N, 4C, H/2, W/2) with sub-band-major channels ``[LL, LH, HL, HH]``. For a
2x2 block ``[[a, b], [c, d]]`` (a top-left):

    LL = (a + b + c + d) / 2      LH = (a + b - c - d) / 2   (top minus bottom)
    HL = (a - b + c - d) / 2      HH = (a - b - c + d) / 2   (left minus right, diagonal)

The transform is orthonormal, so the inverse uses the same coefficients. Each direction is a
single convolution with a fixed block-diagonal 2x2 kernel (stride 2 forward, transposed stride 2
inverse) that writes the sub-band-major layout directly: one op instead of a dozen slices, adds
and concatenations, which matters for the small 3/12-channel tensors of the SWAGAN skip path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Per-band 2x2 patterns: value of each band's basis at (row, col) of the 2x2 block.
_PATTERNS = (
    ((0.5, 0.5), (0.5, 0.5)),  # LL
    ((0.5, 0.5), (-0.5, -0.5)),  # LH: top minus bottom
    ((0.5, -0.5), (0.5, -0.5)),  # HL: left minus right
    ((0.5, -0.5), (-0.5, 0.5)),  # HH
)
_KERNELS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def haar_kernel(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(4C, C, 2, 2) block-diagonal kernel: output channel ``b*C + c`` = band ``b`` of channel ``c``."""
    key = (channels, dtype, torch.device(device))
    k = _KERNELS.get(key)
    if k is None:
        with torch.inference_mode(False):  # a plain tensor, usable later under autograd too
            k = torch.zeros(4 * channels, channels, 2, 2, dtype=dtype, device=device)
            pats = torch.tensor(_PATTERNS, dtype=dtype, device=device)
            for b in range(4):
                for c in range(channels):
                    k[b * channels + c, c] = pats[b]
        if not torch.onnx.is_in_onnx_export():
            _KERNELS[key] = k
    return k


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """Haar analysis: (N, C, H, W) -> (N, 4C, H/2, W/2), channels [LL, LH, HL, HH] (each C wide)."""
    return F.conv2d(x, haar_kernel(x.shape[1], x.dtype, x.device), stride=2)


def haar_iwt(x: torch.Tensor) -> torch.Tensor:
    """Haar synthesis, the exact inverse of :func:`haar_dwt`: (N, 4C, H, W) -> (N, C, 2H, 2W)."""
    return F.conv_transpose2d(x, haar_kernel(x.shape[1] // 4, x.dtype, x.device), stride=2)


class HaarTransform(nn.Module):
    """Module form of :func:`haar_dwt` (no parameters, no state-dict entries)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_dwt(x)


class InverseHaarTransform(nn.Module):
    """Module form of :func:`haar_iwt` (no parameters, no state-dict entries)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_iwt(x)

"""FIR up-sampling / filtering / down-sampling ("upfirdn2d") in plain PyTorch.

Semantics (those of the published CUDA op, which published checkpoints were trained with):
insert ``up - 1`` zeros *after* every sample along each axis, pad (``pad0`` before, ``pad1`` after;
negative pads crop), take a *true* convolution with the 2-D FIR kernel (flipped, then correlated),
then keep every ``down``-th sample starting at 0.

The implementation never materialises the zero-stuffed tensor: up-sampling is a depthwise
transposed convolution with stride ``up`` (which *is* zero insertion followed by a true
convolution), down-sampling is the stride of a depthwise convolution. Both are ordinary ATen ops,
so the code runs on every device, autograd works through it and it exports to ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Pad = int | Sequence[int]


def make_kernel(kernel: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A normalised 2-D FIR kernel: a 1-D kernel becomes the outer product with itself; sum = 1."""
    k = torch.as_tensor(kernel, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    if k.ndim != 2:
        raise ValueError(f"FIR kernel must be 1-D or 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def _pads(pad: Pad) -> tuple[int, int, int, int]:
    """Return (x0, x1, y0, y1); an int or a 2-tuple applies to both axes (published convention)."""
    if isinstance(pad, int):
        return pad, pad, pad, pad
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must be an int, (p0, p1) or (x0, x1, y0, y1); got {pad}")


def _crop_or_pad(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Pad with zeros where positive and crop where negative (slicing keeps ONNX export simple)."""
    if max(x0, x1, y0, y1) > 0:
        x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    if min(x0, x1, y0, y1) < 0:
        h, w = x.shape[-2:]
        x = x[..., max(-y0, 0) : h - max(-y1, 0), max(-x0, 0) : w - max(-x1, 0)]
    return x


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Pad = (0, 0)
) -> torch.Tensor:
    """Up-sample by zero insertion, FIR-filter (true convolution) and down-sample, per channel.

    ``x`` is (N, C, H, W); ``kernel`` a 2-D tensor applied to every channel independently.
    """
    x0, x1, y0, y1 = _pads(pad)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    if up > 1:
        # conv_transpose2d scatters each input sample times the (unflipped) kernel at stride `up`:
        # exactly "zero-insert then true convolution", without the zero-stuffed intermediate.
        if torch.onnx.is_in_onnx_export():
            full = F.conv_transpose2d(x.reshape(n * c, 1, h, w), kernel[None, None], stride=up)
            full = full.reshape(n, c, full.shape[-2], full.shape[-1])
        else:
            full = F.conv_transpose2d(x, kernel[None, None].expand(c, 1, kh, kw), stride=up, groups=c)
        # `full` is the full convolution of the zero-stuffed signal minus its trailing
        # (up - 1) zero samples; select the window that padding + valid correlation would give.
        out_h = h * up + y0 + y1 - kh + 1
        out_w = w * up + x0 + x1 - kw + 1
        sy, sx = kh - 1 - y0, kw - 1 - x0
        fh, fw = full.shape[-2:]
        full = _crop_or_pad(full, -sx, sx + out_w - fw, -sy, sy + out_h - fh)
        if down > 1:
            full = full[..., ::down, ::down]
        return full
    padding: int | tuple[int, int] = 0
    if x0 == x1 == y0 == y1 and x0 >= 0:
        padding = x0  # let the convolution pad: no padded copy of the input
    elif x0 == x1 >= 0 and y0 == y1 >= 0:
        padding = (y0, x0)
    else:
        x = _crop_or_pad(x, x0, x1, y0, y1)
    flipped = torch.flip(kernel, (0, 1))[None, None]
    if torch.onnx.is_in_onnx_export():
        # A per-channel weight would depend on a traced size; fold channels into the batch instead.
        hp, wp = x.shape[-2:]
        y = F.conv2d(x.reshape(n * c, 1, hp, wp), flipped, stride=down, padding=padding)
        return y.reshape(n, c, y.shape[-2], y.shape[-1])
    return F.conv2d(x, flipped.expand(c, 1, kh, kw), stride=down, padding=padding, groups=c)


class Blur(nn.Module):
    """FIR low-pass with padding, no resampling (used after a stride-2 transposed conv, before a
    stride-2 conv). ``upsample_factor`` rescales the kernel so that the zeros a transposed conv
    inserts do not darken the signal."""

    def __init__(self, kernel: Sequence[float], pad: Pad, upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel) * (upsample_factor**2)
        self.register_buffer("kernel", k, persistent=False)
        self.pad = _pads(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """FIR up-sampling by ``factor`` (H -> factor*H), kernel scaled by factor**2 to keep the mean."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor**2)
        self.register_buffer("kernel", k, persistent=False)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Downsample(nn.Module):
    """FIR down-sampling by ``factor`` (H -> H/factor): low-pass, then keep every factor-th sample."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel)
        self.register_buffer("kernel", k, persistent=False)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, down=self.factor, pad=self.pad)

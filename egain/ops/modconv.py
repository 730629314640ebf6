"""Modulated convolution (StyleGAN2 "weight demodulation"), in two numerically equal forms.

* **fused** (the published default): build one weight per sample, ``W_b = g * W * s_b`` (then
  demodulate), and run a grouped convolution with ``groups = batch``. Best when the batch is 1 or
  on GPUs for small batches, because it is a single kernel launch.
* **shared**: scale the *activations* by the style, convolve every sample with the same weight and
  scale the output channels by the demodulation coefficients. One dense convolution over the
  whole batch, which is what CPU convolution libraries are fastest at, and no per-sample weights to
  materialise. The demodulation coefficients are ``rsqrt(s^2 @ sum_k(W^2)^T + eps)``: the same sum
  as the fused form, computed without the (B, out, in, k, k) tensor.

In the shared form, inference at batch 1 on a map much larger than the weight folds style and
demodulation into the weight instead (the fused form's numbers with a dense conv), which saves two
activation passes at the few-channel high-resolution layers.

``mode="auto"`` picks per call (see :func:`choose_mode`). Up-sampling is a stride-2 transposed
convolution followed by a [1,3,3,1] blur, as in the published model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from egain.nn.layout import is_channels_last, torch_memory_format
from egain.ops.equalized import EqualLinear
from egain.ops.upfirdn import Blur

MODES = ("auto", "fused", "shared")
DEMOD_EPS = 1e-8
# Batch-1 inference folds the style into the weight when the map has at least this many pixels per
# weight tap of one input channel (h*w >= this * out*k*k): then the weight is far smaller than the
# activations and building it costs less than the activation passes it saves (measured on CPU with
# benchmarks/bench_generators.py; at 1024 px this covers the 128-1024 px layers).
FOLD_MIN_PIXELS_PER_TAP = 16


def choose_mode(x: torch.Tensor) -> str:
    """The faster form for this input, measured with benchmarks/bench_generators.py: "shared".

    CPU: one dense (channels_last) convolution over the batch, and no per-sample weights to build,
    which at small resolutions costs as much as the convolution. CUDA (an H100, NCHW, inference):
    "shared" was also faster than the published "fused" grouped convolution, 1.10-1.33x at batch
    8-16 from 64 to 256 px and 1.06x at 1024 px batch 16, and equal at batch 1; under autograd it
    also avoids per-sample weight gradients. The input is taken so that a device whose measurements
    differ can choose otherwise here.
    """
    del x
    return "shared"


def conv_layout_weight(weight: torch.Tensor, upsample: bool, channels_last: bool) -> torch.Tensor:
    """The shared weight as the convolution wants it: (in, out, k, k) for the transposed conv, and in
    channels_last memory when the activations are (oneDNN would otherwise reorder it every call)."""
    w = weight.transpose(0, 1) if upsample else weight
    return w.contiguous(memory_format=torch_memory_format(channels_last))


def _pointwise(x: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Per-sample 1x1 conv as a batched matmul: ``wb`` (N, out, in); no copy of ``x`` in either layout."""
    n, c, h, w = x.shape
    if is_channels_last(x):
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, c), wb.transpose(1, 2))
        return y.view(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.bmm(wb, x.reshape(n, c, h * w)).view(n, -1, h, w)


def _single_sample_folded(
    x: torch.Tensor,
    weight: torch.Tensor,
    sg: torch.Tensor,
    wsq: torch.Tensor,
    demodulate: bool,
    upsample: bool,
    blur: nn.Module | None,
    out_gain: float,
) -> torch.Tensor:
    """Batch-1 inference on a large map: fold style and demodulation into the (small) weight.

    Numerically the fused form for one sample, but with a dense (not grouped) convolution and the
    weight in the activations' memory layout. On CPU at high resolution this saves the two passes
    over the activations (modulate the input, demodulate the output) that the shared form makes,
    which cost more than the convolution itself when there are few channels (32-64 at 512-1024 px).
    """
    out_ch, in_ch, k, _ = weight.shape
    wb = weight.to(x.dtype) * sg.view(1, in_ch, 1, 1).to(x.dtype)
    if demodulate:
        scale = torch.rsqrt(sg.pow(2) @ wsq.t() + DEMOD_EPS).view(out_ch, 1, 1, 1) * out_gain
        wb = wb * scale.to(x.dtype)
    elif out_gain != 1.0:
        wb = wb * out_gain
    wb = conv_layout_weight(wb, upsample, is_channels_last(x))
    out = F.conv_transpose2d(x, wb, stride=2) if upsample else F.conv2d(x, wb, padding=k // 2)
    return blur(out) if upsample and blur is not None else out


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    upsample: bool = False,
    blur: nn.Module | None = None,
    weight_gain: float | None = None,
    mode: str = "auto",
    out_gain: float = 1.0,
    prepared: tuple[torch.Tensor, torch.Tensor] | None = None,
    consume_input: bool = False,
) -> torch.Tensor:
    """Convolve ``x`` (N, in, H, W) with ``weight`` (out, in, k, k) modulated per sample by ``styles``.

    ``weight_gain`` is the equalised-lr factor (default ``1/sqrt(in*k*k)``). With ``upsample`` the
    conv is a stride-2 transposed conv giving (2H+1)x(2W+1), and ``blur`` (pad (1,1)) brings it to
    2Hx2W. Without it the padding is ``k // 2`` ("same"). ``out_gain`` multiplies the result; it is
    folded into the per-sample weights or the demodulation coefficients, so it costs no extra pass.
    ``prepared`` = (``conv_layout_weight(...)``, ``sum_k W**2``) lets a caller reuse them across calls.
    ``consume_input`` (inference only) lets the shared form modulate ``x`` in place, for callers
    that never read ``x`` again: it saves allocating an activation-sized buffer.
    A 1x1 conv without up-sampling (ToRGB) is always a batched matmul with per-sample weights.
    """
    n, in_ch, h, w = x.shape
    out_ch, _, k, _ = weight.shape
    if weight_gain is None:
        weight_gain = 1.0 / math.sqrt(in_ch * k * k)
    if mode not in MODES:
        raise ValueError(f"modulated conv mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        mode = choose_mode(x)
    if k == 1 and not upsample:
        mode = "pointwise"

    if mode in ("fused", "pointwise"):
        # Published order: (gain * W) * s, demodulate, then one conv per sample.
        wb = weight_gain * weight.unsqueeze(0) * styles.view(n, 1, in_ch, 1, 1)
        if demodulate:
            d = torch.rsqrt(wb.pow(2).sum(dim=(2, 3, 4)) + DEMOD_EPS)
            if out_gain != 1.0:
                d = d * out_gain
            wb = wb * d.view(n, out_ch, 1, 1, 1)
        elif out_gain != 1.0:
            wb = wb * out_gain
        if mode == "pointwise":
            return _pointwise(x, wb.view(n, out_ch, in_ch))
        xg = x.reshape(1, n * in_ch, h, w)
        if upsample:
            wt = wb.transpose(1, 2).reshape(n * in_ch, out_ch, k, k)
            out = F.conv_transpose2d(xg, wt, stride=2, groups=n)
        else:
            out = F.conv2d(xg, wb.reshape(n * out_ch, in_ch, k, k), padding=k // 2, groups=n)
        out = out.reshape(n, out_ch, out.shape[-2], out.shape[-1])
    else:
        # Shared weight: modulate the activations (equalised-lr gain folded into the styles, so
        # the weight is used raw), convolve the whole batch at once, demodulate the output.
        sg = styles * weight_gain
        if prepared is None:
            w_conv = weight.transpose(0, 1) if upsample else weight
            wsq = weight.pow(2).sum(dim=(2, 3))  # (out, in)
        else:
            w_conv, wsq = prepared
        if n == 1 and not torch.is_grad_enabled() and h * w >= FOLD_MIN_PIXELS_PER_TAP * out_ch * k * k:
            return _single_sample_folded(x, weight, sg, wsq, demodulate, upsample, blur, out_gain)
        sv = sg.view(n, in_ch, 1, 1).to(x.dtype)
        xs = x.mul_(sv) if consume_input and not torch.is_grad_enabled() else x * sv
        out = F.conv_transpose2d(xs, w_conv, stride=2) if upsample else F.conv2d(xs, w_conv, padding=k // 2)
        scale = None
        if demodulate:
            scale = torch.rsqrt(sg.pow(2) @ wsq.t() + DEMOD_EPS)  # (n, out)
            if out_gain != 1.0:
                scale = scale * out_gain
        elif out_gain != 1.0:
            scale = torch.full((n, out_ch), out_gain, dtype=out.dtype, device=out.device)
        if scale is not None:
            scale = scale.view(n, out_ch, 1, 1)
            # In inference the conv output is ours alone: scale it in place (no new buffer).
            out = out.mul_(scale) if not torch.is_grad_enabled() else out * scale

    if upsample and blur is not None:
        out = blur(out)
    return out


class ModulatedConv2d(nn.Module):
    """A modulated conv layer: the style affine ``affine`` (bias initialised to 1) and the raw weight.

    ``mode`` ("auto", "fused", "shared") selects the implementation; every mode gives the same
    numbers to float rounding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.mode = "auto"
        self._cache: tuple | None = None
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        else:
            self.blur = None

    def _prepared(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Inference-only cache of the conv-layout weight and its squared sums (reused until the
        weight changes: optimiser steps, EMA updates and load_state_dict bump its version)."""
        if torch.is_grad_enabled() or self.kernel_size == 1 or self.weight.is_inference():
            return None  # (inference tensors have no version counter to watch)
        cl = is_channels_last(x)
        key = (self.weight._version, self.weight.data_ptr(), self.weight.device, x.dtype, cl)
        if self._cache is None or self._cache[0] != key:
            w = self.weight.detach().to(x.dtype)
            self._cache = (key, conv_layout_weight(w, self.upsample, cl), w.pow(2).sum(dim=(2, 3)))
        return self._cache[1], self._cache[2]

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, out_gain: float = 1.0, consume_input: bool = False
    ) -> torch.Tensor:
        styles = self.affine(w)
        return modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=self.demodulate,
            upsample=self.upsample,
            blur=self.blur,
            weight_gain=self.weight_gain,
            mode=self.mode,
            out_gain=out_gain,
            prepared=self._prepared(x) if self.mode != "fused" else None,
            consume_input=consume_input,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}, mode={self.mode!r}"
        )

"""egain.ops against direct, obviously-correct reference computations written here."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from egain.ops import (
    Blur,
    Downsample,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    Upsample,
    fused_leaky_relu,
    haar_dwt,
    haar_iwt,
    make_kernel,
    modulated_conv2d,
    pixel_norm,
    upfirdn2d,
)

# ---------------------------------------------------------------- references


def ref_upfirdn(x: torch.Tensor, k: torch.Tensor, up: int, down: int, pad) -> torch.Tensor:
    """Literal definition with numpy loops: zero-insert after each sample, pad/crop, true conv, keep every down-th."""
    if len(pad) == 2:
        x0, x1, y0, y1 = pad[0], pad[1], pad[0], pad[1]
    else:
        x0, x1, y0, y1 = pad
    a = x.detach().double().numpy()
    kk = k.double().numpy()
    n, c, h, w = a.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = a
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0) : u.shape[2] - max(-y1, 0), max(-x0, 0) : u.shape[3] - max(-x1, 0)]
    kh, kw = kk.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            # true convolution: out[i, j] = sum_{p,q} u[i + p, j + q] * k[kh-1-p, kw-1-q]
            out[:, :, i, j] = (u[:, :, i : i + kh, j : j + kw] * kk[::-1, ::-1]).sum(axis=(2, 3))
    return torch.from_numpy(out[:, :, ::down, ::down]).float()


def ref_modconv(x, weight, styles, demodulate, upsample, blur_kernel=(1, 3, 3, 1)):
    """Per-sample loop: build the sample's weight, demodulate, convolve (transposed conv written as
    zero-stuffing + full padding + correlation with the flipped kernel), then blur."""
    outs = []
    out_ch, in_ch, k, _ = weight.shape
    for b in range(x.shape[0]):
        wb = weight / math.sqrt(in_ch * k * k) * styles[b].view(1, in_ch, 1, 1)
        if demodulate:
            for o in range(out_ch):
                wb[o] = wb[o] / torch.sqrt((wb[o] ** 2).sum() + 1e-8)
        xb = x[b : b + 1]
        if upsample:
            h, w = xb.shape[-2:]
            z = torch.zeros(1, in_ch, 2 * h - 1, 2 * w - 1)
            z[:, :, ::2, ::2] = xb
            z = F.pad(z, (k - 1, k - 1, k - 1, k - 1))
            y = F.conv2d(z, torch.flip(wb, (2, 3)))
            y = ref_upfirdn(y, make_kernel(blur_kernel) * 4, 1, 1, (1, 1))
        else:
            y = F.conv2d(xb, wb, padding=k // 2)
        outs.append(y)
    return torch.cat(outs)


def ref_haar_filters(inverse=False):
    """The published 2x2 filters (reference table, rows = y)."""
    f = {
        "ll": [[0.5, 0.5], [0.5, 0.5]],
        "lh": [[-0.5, -0.5], [0.5, 0.5]],
        "hl": [[-0.5, 0.5], [-0.5, 0.5]],
        "hh": [[0.5, -0.5], [-0.5, 0.5]],
    }
    out = {k: torch.tensor(v) for k, v in f.items()}
    if inverse:
        out["lh"], out["hl"] = -out["lh"], -out["hl"]
    return out


# ---------------------------------------------------------------- upfirdn


@pytest.mark.parametrize(
    "up,down,pad",
    [
        (1, 1, (1, 1)),
        (2, 1, (2, 1)),
        (1, 2, (1, 1)),
        (2, 1, (1, 0, 1, 0)),
        (2, 2, (1, 2)),
        (1, 1, (-1, 2, 0, 3)),
    ],
)
def test_upfirdn2d_matches_literal_definition(up, down, pad):
    x = torch.randn(2, 3, 5, 6)
    k = torch.randn(4, 3)  # asymmetric: the flip of a true convolution matters
    got = upfirdn2d(x, k, up=up, down=down, pad=pad)
    want = ref_upfirdn(x, k, up, down, pad)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


def test_fir_modules_change_size_as_published():
    x = torch.randn(1, 2, 8, 8)
    assert Upsample((1, 3, 3, 1))(x).shape[-1] == 16
    assert Downsample((1, 3, 3, 1))(x).shape[-1] == 4
    assert Blur((1, 3, 3, 1), pad=(1, 1), upsample_factor=2)(torch.randn(1, 2, 17, 17)).shape[-1] == 16
    # Upsample keeps the mean of a constant image (kernel scaled by factor^2), away from borders.
    up = Upsample((1, 3, 3, 1))(torch.ones(1, 1, 8, 8))
    assert torch.allclose(up[..., 4:-4, 4:-4], torch.ones(1, 1, 8, 8), atol=1e-6)
    want = ref_upfirdn(x, make_kernel((1, 3, 3, 1)) * 4, 2, 1, (2, 1))
    assert torch.allclose(Upsample((1, 3, 3, 1))(x), want, atol=1e-5)
    want = ref_upfirdn(x, make_kernel((1, 3, 3, 1)), 1, 2, (1, 1))
    assert torch.allclose(Downsample((1, 3, 3, 1))(x), want, atol=1e-5)


def test_make_kernel_is_normalised_outer_product():
    k = make_kernel([1, 3, 3, 1])
    assert torch.allclose(k, torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64)


# ---------------------------------------------------------------- modulated conv


@pytest.mark.parametrize("mode", ["fused", "shared", "auto"])
@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
def test_modulated_conv_matches_per_sample_loop(mode, upsample, demodulate, k):
    x = torch.randn(3, 4, 6, 6)
    weight = torch.randn(5, 4, k, k)
    styles = torch.randn(3, 4)
    conv = ModulatedConv2d(4, 5, k, 8, demodulate=demodulate, upsample=upsample)
    got = modulated_conv2d(
        x, weight, styles, demodulate=demodulate, upsample=upsample, blur=conv.blur, mode=mode
    )
    want = ref_modconv(x, weight, styles, demodulate, upsample)
    assert got.shape == want.shape == (3, 5, 12 if upsample else 6, 12 if upsample else 6)
    assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_batch1_folded_modconv_matches_per_sample_loop(upsample, demodulate, channels_last):
    # Batch 1 in inference on a map large against the weight takes the folded-weight path.
    from egain.ops.modconv import FOLD_MIN_PIXELS_PER_TAP

    out_ch, side = 2, 18
    assert side * side >= FOLD_MIN_PIXELS_PER_TAP * out_ch * 9
    x, weight, styles = torch.randn(1, 3, side, side), torch.randn(out_ch, 3, 3, 3), torch.randn(1, 3)
    conv = ModulatedConv2d(3, out_ch, 3, 8, demodulate=demodulate, upsample=upsample)
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with torch.inference_mode():
        got = modulated_conv2d(
            xin, weight, styles, demodulate=demodulate, upsample=upsample, blur=conv.blur, out_gain=1.5
        )
    want = ref_modconv(x, weight, styles, demodulate, upsample) * 1.5
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4)


def test_modconv_module_forms_agree_and_affine_starts_at_one():
    conv = ModulatedConv2d(4, 6, 3, 8, upsample=True)
    assert torch.all(conv.affine.bias == 1)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 8)
    conv.mode = "fused"
    a = conv(x, w)
    conv.mode = "shared"
    b = conv(x, w)
    assert torch.allclose(a, b, atol=1e-5)
    # gradients flow through both forms identically
    x.requires_grad_(True)
    conv.mode = "fused"
    (ga,) = torch.autograd.grad(conv(x, w).square().sum(), x)
    conv.mode = "shared"
    (gb,) = torch.autograd.grad(conv(x, w).square().sum(), x)
    assert torch.allclose(ga, gb, atol=1e-4)


# ---------------------------------------------------------------- equalised layers


def test_equalized_layers_use_runtime_scaling():
    lin = EqualLinear(6, 3, lr_mul=0.01, activation=True)
    x = torch.randn(4, 6)
    pre = x @ (lin.weight * 0.01 / math.sqrt(6)).T + lin.bias * 0.01
    assert torch.allclose(lin(x), F.leaky_relu(pre, 0.2) * math.sqrt(2), atol=1e-6)
    lin = EqualLinear(6, 3, bias_init=1.0)
    assert torch.allclose(lin(x), x @ (lin.weight / math.sqrt(6)).T + 1.0, atol=1e-6)
    conv = EqualConv2d(2, 3, 3, padding=1)
    xi = torch.randn(1, 2, 5, 5)
    assert torch.allclose(
        conv(xi), F.conv2d(xi, conv.weight / math.sqrt(18), conv.bias, padding=1), atol=1e-6
    )


def test_fused_leaky_relu_and_pixel_norm():
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    y = x + b.view(1, 3, 1, 1)
    want = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    assert torch.allclose(fused_leaky_relu(x, b), want, atol=1e-6)
    z = torch.randn(5, 7)
    n = pixel_norm(z)
    assert torch.allclose(n.pow(2).mean(1), torch.ones(5), atol=1e-5)


# ---------------------------------------------------------------- Haar wavelets


def test_haar_dwt_matches_published_filters_and_block_formula():
    x = torch.randn(2, 3, 6, 8)
    filters = ref_haar_filters()
    want = torch.cat([ref_upfirdn(x, filters[b], 1, 2, (0, 0)) for b in ("ll", "lh", "hl", "hh")], 1)
    got = haar_dwt(x)
    assert got.shape == (2, 12, 3, 4)
    assert torch.allclose(got, want, atol=1e-5)
    a, b, c, d = x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]
    assert torch.allclose(got[0, 3, 0, 0], (a + b - c - d) / 2)  # LH: top minus bottom
    assert torch.allclose(got[0, 6, 0, 0], (a - b + c - d) / 2)  # HL: left minus right
    assert torch.allclose(got[0, 0], 2 * x[0, 0].reshape(3, 2, 4, 2).mean((1, 3)), atol=1e-6)


def test_haar_iwt_matches_published_filters_and_inverts_dwt():
    y = torch.randn(2, 12, 3, 4)
    filters = ref_haar_filters(inverse=True)
    bands = y.chunk(4, 1)
    want = sum(
        ref_upfirdn(bands[i], filters[b], 2, 1, (1, 0, 1, 0)) for i, b in enumerate(("ll", "lh", "hl", "hh"))
    )
    got = haar_iwt(y)
    assert got.shape == (2, 3, 6, 8)
    assert torch.allclose(got, want, atol=1e-5)
    x = torch.randn(1, 3, 8, 8)
    assert torch.allclose(haar_iwt(haar_dwt(x)), x, atol=1e-6)
    assert torch.allclose(haar_dwt(haar_iwt(y)), y, atol=1e-6)


# ---------------------------------------------------------------- export


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx package not installed")
def test_ops_export_to_onnx(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = ModulatedConv2d(4, 4, 3, 8, upsample=True)
            self.up = Upsample((1, 3, 3, 1))

        def forward(self, x, w):
            y = self.conv(x, w)
            return haar_iwt(haar_dwt(y)) + self.up(x)

    net = Net().eval()
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    path = tmp_path / "ops.onnx"
    torch.onnx.export(net, (x, w), str(path), dynamo=False)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))

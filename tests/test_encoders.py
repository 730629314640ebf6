"""Encoders of the inversion methods: e4e, delta encoders, ADA and its warps, the delta calculator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageChops

from egain.encoders.ada import ResidualAligner, perspective_homographies, random_perspective, warp_perspective
from egain.encoders.delta import ConsultationEncoder, DeltaCNN
from egain.encoders.e4e import E4EEncoder, LatentCodesDiscriminator, Map2Style
from egain.methods.components import DeltaCalculator, ExternalFusion, InternalFusion, compose_fusion
from egain.methods.published import encoder_to_published, residue_to_published

TINY = {"units": (1, 1, 1, 1), "widths": (8, 8, 16, 16)}


def test_e4e_progressive_stages_grow_offsets_from_w0():
    enc = E4EEncoder(6, 16, 32, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    enc.set_progressive_stage(0)
    w = enc(x)
    assert w.shape == (2, 6, 16)
    assert torch.equal(w, w[:, :1].expand_as(w))  # W training: one code for every layer
    enc.set_progressive_stage(2)
    w2 = enc(x)
    assert torch.allclose(w2[:, 0], w[:, 0])
    assert not torch.allclose(w2[:, 1], w2[:, 0]) and not torch.allclose(w2[:, 2], w2[:, 0])
    assert torch.equal(w2[:, 3:], w2[:, :1].expand(-1, 3, -1))
    enc.set_progressive_stage(100)  # clamped to "all offsets"
    assert enc.progressive_stage == 5


def test_map2style_matches_reference_convs_and_equalised_linear():
    head = Map2Style(8, 12, 4)
    feat = torch.randn(3, 8, 4, 4)
    ref = feat
    for i in (0, 2):
        conv = head.convs[i]
        ref = F.leaky_relu(F.conv2d(ref, conv.weight, conv.bias, stride=2, padding=1), 0.01)
    ref = ref.flatten(1) @ (head.linear.weight / math.sqrt(12)).T + head.linear.bias
    assert torch.allclose(head(feat), ref, atol=1e-5)


def test_latent_discriminator_has_published_keys():
    d = LatentCodesDiscriminator(16)
    assert sorted(d.state_dict()) == sorted(f"mlp.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias"))
    assert d(torch.randn(5, 16)).shape == (5, 1)


def test_delta_cnn_is_homogeneous_and_consultation_shape():
    cnn = DeltaCNN(widths=(8, 16, 16))
    assert torch.equal(cnn(torch.zeros(2, 3, 32, 32)), torch.zeros(2, 16, 8, 8))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(cnn(3 * x), 3 * cnn(x), atol=1e-4)  # positively homogeneous: no bias anywhere
    ec = ConsultationEncoder(widths=(8, 12, 16)).eval()
    assert ec(x).shape == (2, 16, 8, 8)


def test_perspective_warp_identity_and_corner_mapping():
    x = torch.randn(3, 3, 20, 24)
    assert torch.allclose(random_perspective(x, 0.5, p=0.0), x, atol=1e-5)
    g = torch.Generator().manual_seed(3)
    h = perspective_homographies(4, 20, 24, 0.5, generator=g)
    starts = torch.tensor([[0, 0], [23, 0], [23, 19], [0, 19]], dtype=torch.float32)
    # H maps the moved corners (output) back onto the image corners (input sample positions).
    g = torch.Generator().manual_seed(3)
    dx, dy = int(0.5 * 12), int(0.5 * 10)
    r = lambda lo, hi: torch.randint(lo, hi, (4,), generator=g).float()  # noqa: E731
    tl = torch.stack([r(0, dx + 1), r(0, dy + 1)], -1)
    tr = torch.stack([r(24 - dx - 1, 24), r(0, dy + 1)], -1)
    br = torch.stack([r(24 - dx - 1, 24), r(20 - dy - 1, 20)], -1)
    bl = torch.stack([r(0, dx + 1), r(20 - dy - 1, 20)], -1)
    ends = torch.stack([tl, tr, br, bl], 1)
    mapped = torch.cat([ends, torch.ones(4, 4, 1)], -1) @ h.transpose(1, 2)
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], starts.expand(4, 4, 2), atol=1e-3)
    # a pure translation homography shifts the image by whole pixels
    t = torch.eye(3).unsqueeze(0)
    t[0, 0, 2] = 2.0
    shifted = warp_perspective(x[:1], t)
    assert torch.allclose(shifted[..., :, :-2], x[:1, ..., :, 2:], atol=1e-5)
    assert torch.equal(shifted[..., -2:], torch.zeros_like(shifted[..., -2:]))


def test_untrained_ada_with_skip_is_exactly_the_identity():
    ada = ResidualAligner(widths=(4, 8, 8, 8)).eval()
    d, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    assert torch.equal(ada(d, y), d)
    assert ResidualAligner(widths=(4, 8, 8, 8), skip=False).eval()(d, y).shape == d.shape


def test_signed_delta_is_differentiable_and_resizes_clamped_output():
    calc = DeltaCalculator("signed", "bilinear")
    x = torch.randn(2, 3, 16, 16)
    y = (torch.randn(2, 3, 32, 32) * 2).requires_grad_(True)
    d = calc(x, y)
    ref = x - F.interpolate(y.clamp(-1, 1), size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(d, ref)
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_released_delta_matches_the_pil_procedure():
    """Reference sec. 7.3: uint8 truncation, PIL bicubic resize of G's output, |difference|, -> [-1, 1]."""
    torch.manual_seed(1)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2.2 - 1.1
    out = DeltaCalculator("released")(x, y)

    def to_pil(t):
        arr = ((t.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1) * 255
        return Image.fromarray(arr.astype(np.uint8))

    for i in range(2):
        gen = to_pil(y[i]).resize((16, 16), Image.BICUBIC)
        diff = np.asarray(ImageChops.difference(to_pil(x[i]), gen), dtype=np.float32) / 255 * 2 - 1
        ref = torch.from_numpy(diff).permute(2, 0, 1)
        # one uint8 level is 2/255 here; PIL and torch bicubic taps differ by a few levels on noise
        assert (out[i] - ref).abs().max() <= 6 * 2 / 255 + 1e-6
        assert (out[i] - ref).abs().mean() <= 1 * 2 / 255
    assert out.min() >= -1 and not out.requires_grad


def test_fusion_composition_equals_sequential_application():
    f = torch.randn(2, 4, 8, 8)
    s1, h1, s2, h2 = (torch.randn(2, 4, 8, 8) * 0.3 for _ in range(4))
    seq = (f * (1 + s1) + h1) * (1 + s2) + h2
    s, h = compose_fusion({"a": (s1, h1)}, {"a": (s2, h2)})["a"]
    assert torch.allclose(f * (1 + s) + h, seq, atol=1e-5)


def test_internal_fusion_heads_reference_and_zero_init():
    fus = InternalFusion({"up8": (6, 8)}, 5, hidden=7, bias=True, zero_init=False)
    m = torch.randn(2, 5, 4, 4)
    head = fus.scale_heads["up8"].layers
    a = F.conv2d(m, head[0].weight / math.sqrt(5 * 9), head[0].bias, padding=1)
    a = F.leaky_relu(a, 0.2) * math.sqrt(2)
    a = F.conv2d(a, head[2].weight / math.sqrt(7 * 9), head[2].bias, padding=1)
    a = F.interpolate(a, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(fus(m)["up8"][0], a, atol=1e-5)
    zero = InternalFusion({"up8": (6, 8)}, 5)
    s, h = zero(m)["up8"]
    assert torch.equal(s, torch.zeros_like(s)) and torch.equal(h, torch.zeros_like(h))


def test_external_fusion_matches_per_layer_loop():
    fus = ExternalFusion(3, 4, hidden=5, zero_init=False)
    wb, wd = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    out = fus(wb, wd)
    for j in range(3):
        v = torch.cat([wb[:, j], wd[:, j]], 1)
        h = F.leaky_relu(v @ fus.weight1[j] / math.sqrt(8) + fus.bias1[j], 0.2) * math.sqrt(2)
        ref = wb[:, j] + h @ fus.weight2[j] / math.sqrt(5) + fus.bias2[j]
        assert torch.allclose(out[:, j], ref, atol=1e-5)
    assert torch.equal(ExternalFusion(3, 4)(wb, wd), wb)  # zero-initialised: starts at w_b


def test_published_sizes_have_the_published_key_and_parameter_counts():
    """Reference secs. 4.3, 4.4, 5.2: 621 / 105 / 295 entries; 267,136,704 / 5,647,344 / 596,801 params."""
    with torch.device("meta"):
        enc = E4EEncoder(18, 512, 256, depth=50)
        sd = encoder_to_published({f"basic_encoder.{k}": v for k, v in enc.state_dict().items()})
        assert len(sd) == 621
        assert sum(p.numel() for p in enc.parameters()) == 267_136_704
        assert tuple(sd["encoder.styles.17.convs.10.weight"].shape) == (512, 512, 3, 3)
        assert tuple(sd["encoder.latlayer1.weight"].shape) == (512, 256, 1, 1)
        ec, fus = ConsultationEncoder(), InternalFusion({"up64": (512, 64)}, 64, hidden=512)
        res = residue_to_published(
            {f"delta_encoder.{k}": v for k, v in ec.state_dict().items()}
            | {f"fusion.{k}": v for k, v in fus.state_dict().items()}
        )
        assert len(res) == 105
        assert sum(p.numel() for m in (ec, fus) for p in m.parameters()) == 5_647_344
        assert tuple(res["residue.condition_shift3.2.weight"].shape) == (512, 512, 3, 3)
        ada = ResidualAligner(skip=False)
        assert len(ada.state_dict()) == 295
        assert sum(p.numel() for p in ada.parameters()) == 596_801
        assert tuple(ada.state_dict()["dconv_layer1.0.shortcut_layer.0.weight"].shape) == (64, 112, 1, 1)


@pytest.mark.parametrize("size", [16, 48])
def test_e4e_rejects_unusable_input_sizes(size):
    if size % 16 == 0 and size >= 16 and (size // 16) & (size // 16 - 1) == 0:
        E4EEncoder(4, 8, size, **TINY)
    else:
        with pytest.raises(ValueError):
            E4EEncoder(4, 8, size, **TINY)


def test_irse_inference_fast_path_matches_plain_modules():
    """Eval + no-grad folds BN into the conv before it, subsamples instead of MaxPool2d(1, s) and
    fuses SE scaling with the residual add; the numbers must equal the modules run one by one."""
    from egain.nn.irse import IRSEBody, custom_stages

    torch.manual_seed(0)
    body = IRSEBody(custom_stages([2, 1], [8, 16]), stem_channels=8).eval()
    for m in body.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()

    def plain(x):
        x = body.input_layer(x)
        for unit in body.body:
            x = unit.res_layer(x) + unit.shortcut_layer(x)
        return x

    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        want = plain(x)
        got = body(x)
        assert torch.allclose(got, want, atol=1e-5)
        body.body[0].res_layer[4].running_var.mul_(3.0)  # cache must follow the statistics
        assert torch.allclose(body(x), plain(x), atol=1e-5)
    # the training path (autograd on) through the strided shortcut and addcmul: exact gradients
    unit = body.body[0].double()  # stride 2: the subsampled identity shortcut
    xd = torch.randn(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit, (xd,))

"""Channels_last (NHWC) and NCHW give the same numbers: generators, IR-SE encoders, composed methods.

CPU inference runs in channels_last by default, because oneDNN is faster on it. These tests pin
down that the layout is only a speed choice. Outputs and gradients agree with the NCHW path to
float rounding, and callers always get ordinary contiguous tensors back.
"""

from __future__ import annotations

import copy

import pytest
import torch
from inversion_helpers import TINY_BASIC, tiny_generator

from egain.encoders.e4e import E4EEncoder
from egain.errors import EgainError
from egain.generators import build_generator
from egain.methods import create
from egain.nn.layout import convert_weights, is_channels_last, plain, wants_channels_last

RTOL = 1e-5  # relative to the largest magnitude of the compared tensor
GRAD_RTOL = 2e-5  # gradients sum more terms (measured: at most 4e-6)


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> None:
    scale = a.detach().abs().max().clamp_min(1e-12)
    err = ((a.detach() - b.detach()).abs().max() / scale).item()
    assert err < rtol, f"relative difference {err:.2e} >= {rtol:.0e}"


def small_generator(arch: str) -> torch.nn.Module:
    """32 px output with few channels at the top, so batch-1 inference also takes the folded
    modconv path (map pixels >= 16 x out channels x 9)."""
    torch.manual_seed(0)
    size = 32
    feat = size // 2 if arch == "swagan" else size
    channels = {4: 16, 8: 16, 16: 8, 32: 4}
    g = build_generator(
        arch, size, style_dim=16, n_mlp=2, channels={r: c for r, c in channels.items() if r <= feat}
    )
    with torch.no_grad():  # non-zero noise strengths and biases, so every term is exercised
        for name, p in g.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.normal_(0, 0.3)
    return g.eval()


def hooks(g: torch.nn.Module, n: int) -> dict:
    """Fusion on one layer, injection on another, features of a conv and an rgb layer."""
    up, conv = "up8", "conv16"
    c8, c16 = g.layer_info(up).channels, g.layer_info(conv).channels
    gen = torch.Generator().manual_seed(1)
    return {
        "return_features": [up, conv, "rgb8"],
        "fusion": {
            up: (0.1 * torch.randn(n, c8, 8, 8, generator=gen), 0.1 * torch.randn(n, c8, 8, 8, generator=gen))
        },
        "injection": {conv: 0.1 * torch.randn(n, c16, 16, 16, generator=gen)},
    }


@pytest.mark.parametrize("arch", ["stylegan2", "swagan"])
@pytest.mark.parametrize("batch", [1, 2])
def test_generator_inference_same_in_both_layouts(arch, batch):
    g = small_generator(arch)
    w = torch.randn(batch, g.n_latent, g.style_dim)
    results = {}
    for fmt in ("contiguous", "channels_last"):
        g.set_memory_format(fmt)
        assert g.memory_format == fmt
        with torch.no_grad():
            plain_image = g.synthesize(w, "const")
            image, feats = g.synthesize(w, "const", **hooks(g, batch))
        assert plain_image.is_contiguous() and image.is_contiguous()
        assert all(f.is_contiguous() for f in feats.values())
        results[fmt] = (plain_image, image, feats)
    (a0, a1, fa), (b0, b1, fb) = results["contiguous"], results["channels_last"]
    assert_close(a0, b0)
    assert_close(a1, b1)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert_close(fa[k], fb[k])


@pytest.mark.parametrize("arch", ["stylegan2", "swagan"])
def test_generator_gradients_same_in_both_layouts(arch):
    """Training runs the generator in channels_last on CPU: every gradient must match NCHW."""
    g0 = small_generator(arch)
    w0 = torch.randn(2, g0.n_latent, g0.style_dim)
    h0 = hooks(g0, 2)
    grads = {}
    for fmt in ("contiguous", "channels_last"):
        g = copy.deepcopy(g0).set_memory_format(fmt)
        w = w0.clone().requires_grad_(True)
        h = {
            "return_features": h0["return_features"],
            "fusion": {k: tuple(t.clone().requires_grad_(True) for t in v) for k, v in h0["fusion"].items()},
            "injection": {k: t.clone().requires_grad_(True) for k, t in h0["injection"].items()},
        }
        image, feats = g.synthesize(w, "const", **h)
        weight = torch.linspace(-1, 1, image.numel()).view_as(image)  # a loss with no symmetry
        loss = (image * weight).sum() + sum(f.square().mean() for f in feats.values())
        loss.backward()
        leaves = {"w": w, **{f"fusion.{i}": t for i, t in enumerate(h["fusion"]["up8"])}}
        leaves["injection"] = h["injection"]["conv16"]
        grads[fmt] = {k: t.grad for k, t in leaves.items()}
        grads[fmt].update({k: p.grad for k, p in g.named_parameters() if p.grad is not None})
    assert grads["contiguous"].keys() == grads["channels_last"].keys()
    for k, ga in grads["contiguous"].items():
        if ga.abs().max() > 0:  # (a layer whose gradient is exactly zero has nothing to compare)
            assert_close(ga, grads["channels_last"][k], GRAD_RTOL)


def tiny_irse_encoder() -> E4EEncoder:
    opts = {k: v for k, v in TINY_BASIC.items() if k != "type"}
    return E4EEncoder(6, 16, 32, depth=None, **opts)


def test_irse_encoder_same_in_both_layouts():
    """Eval-mode IR-SE encoder (BN folded in inference, SE gates, PReLU, strided shortcuts, FPN heads)."""
    enc = tiny_irse_encoder()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the folding matters
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    enc.eval()
    enc_cl = convert_weights(copy.deepcopy(enc), True)
    assert is_channels_last(enc_cl.body.input_layer[0].weight)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert_close(enc(x), enc_cl(x))
        assert_close(enc(x), enc_cl(x.contiguous(memory_format=torch.channels_last)))
    # Autograd (BatchNorm not folded): input and parameter gradients.
    grads = []
    for m in (enc, enc_cl):
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = m(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    for ga, gb in zip(*grads, strict=True):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert_close(ga, gb, GRAD_RTOL)


@pytest.mark.parametrize(("name", "arch"), [("hfgi", "stylegan2"), ("egain", "swagan")])
def test_composed_method_invert_same_in_both_layouts(name, arch):
    g = tiny_generator(arch)
    m = create(name, generator=g, basic_encoder=TINY_BASIC, passes=2, memory_format="contiguous")
    with torch.no_grad():  # a non-zero fusion (the heads start at zero)
        for key, p in m.named_parameters():
            if not key.startswith("generator."):
                p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = m.invert(x)
    m.set_memory_format("channels_last")
    assert is_channels_last(
        m.delta_encoder.conv_layer1[0].weight if name == "hfgi" else m.delta_encoder.net[0].weight
    )
    b = m.invert(x)
    assert_close(a.latents, b.latents)
    assert_close(a.reconstruction, b.reconstruction)
    assert b.reconstruction.is_contiguous()
    for key, va in a.extras.items():
        vb = b.extras[key]
        if isinstance(va, torch.Tensor):
            assert vb.is_contiguous(), key
            assert_close(va, vb)
        elif isinstance(va, dict):
            for layer in va:
                assert vb[layer].is_contiguous()
                assert_close(va[layer], vb[layer])
    direction = torch.randn(g.style_dim)
    edited = m.edit(b, direction, 0.5)
    assert edited.is_contiguous()
    m.set_memory_format("contiguous")
    assert_close(m.edit(a, direction, 0.5), edited)


def test_create_picks_the_layout_by_device():
    g = tiny_generator("stylegan2")
    m = create("hfgi", generator=g, basic_encoder=TINY_BASIC)  # "auto" on CPU: channels_last
    assert m.memory_format == "auto" and g.memory_format == "auto"
    assert is_channels_last(m.basic_encoder.body.input_layer[0].weight)
    assert is_channels_last(m.aligner.conv_layer1[0].weight)
    # The trainer's choice: keep the layout the components were built with (NCHW).
    m2 = create("hfgi", generator=tiny_generator("stylegan2"), basic_encoder=TINY_BASIC, memory_format=None)
    assert m2.memory_format is None
    assert m2.basic_encoder.body.input_layer[0].weight.is_contiguous()
    # A state dict saved in one layout loads into the other.
    m2.load_state_dict(m.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert_close(m.invert(x).reconstruction, m2.invert(x).reconstruction)
    with pytest.raises(EgainError, match="memory format"):
        create("e4e", generator=g, basic_encoder=TINY_BASIC, memory_format="nhwc")
    with pytest.raises(EgainError, match="memory format"):
        g.set_memory_format("nhwc")


def test_layout_helpers():
    assert wants_channels_last("auto", "cpu") and not wants_channels_last("auto", "meta")
    assert wants_channels_last("channels_last", "meta") and not wants_channels_last("contiguous", "cpu")
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert is_channels_last(x) and not is_channels_last(torch.randn(2, 1, 4, 4))
    out = plain({"a": [x, (x, 1)], "b": x})
    assert out["a"][0].is_contiguous() and out["a"][1][0].is_contiguous() and out["a"][1][1] == 1
    assert torch.equal(out["b"], x)

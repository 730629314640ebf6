"""E2Style and DSE: shapes, published layouts, stage freezing, the losses against their formulas, CLI runs.

The published-layout state dicts are built here from the reference's key tables (E2Style: sec.
5.6 of checkpoint_formats.md; DSE: the ``BE`` module of disanda/DSE), and the outputs are
re-computed by hand with plain tensor operations.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import image_folder, save_tiny_generator, smooth_images, tiny_generator
from published_layout import bn, irse_body, prefixed, ref_bn

import egain.methods as methods
from egain.cli.main import main
from egain.encoders.dse import block_widths
from egain.encoders.e2style import row_split
from egain.errors import CheckpointError, EgainError
from egain.generators import generator_to_rosinality
from egain.losses.dse import (
    cosine_distance,
    image_terms,
    kl_softmax,
    latent_loss,
    ssim_value,
    tsa_crops,
    tsa_image_loss,
)
from egain.losses.multilayer import MultiLayerParsingLoss, load_parsing_net, multilayer_cosine_loss
from egain.methods.base import TrainingContext

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# shapes


def test_row_split_follows_9_5_4():
    assert row_split(18) == (9, 5, 4)
    assert [sum(row_split(n)) for n in (6, 8, 10, 14, 16)] == [6, 8, 10, 14, 16]
    assert row_split(10) == (5, 3, 2) and row_split(6) == (3, 2, 1)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_e2style_shapes(size, stages):
    g = tiny_generator("stylegan2", size)
    m = methods.create("e2style", generator=g, stages=stages)
    inv = m.invert(smooth_images(2, size))
    assert inv.latents.shape == (2, g.n_latent, g.style_dim)
    assert inv.reconstruction.shape == (2, 3, size, size)
    assert len(inv.extras["stage_latents"]) == stages - 1
    assert [e.body.input_layer[0].in_channels for e in m.encoders] == [3] + [6] * (stages - 1)


def test_e2style_pool_sizes_and_run_stages():
    g = tiny_generator("stylegan2", 32)
    code = methods.create("e2style", generator=g, stages=1)
    paper = methods.create("e2style", generator=g, stages=1, pool_sizes="paper")
    heads = [
        paper.encoders[0].output_layer_3,
        paper.encoders[0].output_layer_4,
        paper.encoders[0].output_layer_5,
    ]
    assert [h[1].output_size for h in heads] == [(7, 7), (5, 5), (3, 3)]
    assert paper.parameter_count(False) < code.parameter_count(False)
    m = methods.create("e2style", generator=g, stages=3, run_stages=1)
    x = smooth_images(1, 32)
    one = methods.create("e2style", generator=g, stages=1)
    one.load_state_dict(
        {k: v for k, v in m.state_dict().items() if not k.startswith(("encoders.1", "encoders.2"))}
    )
    assert torch.allclose(m.invert(x).latents, one.invert(x).latents, atol=1e-6)
    with pytest.raises(EgainError, match="run_stages"):
        methods.create("e2style", generator=g, stages=2, run_stages=3)


@pytest.mark.parametrize("size", [16, 32])
def test_dse_shapes(size):
    g = tiny_generator("stylegan2", size)
    m = methods.create("dse", generator=g, noise_mode="none")
    inv = m.invert(smooth_images(2, size))
    assert inv.latents.shape == (2, g.n_latent, g.style_dim)
    assert inv.reconstruction.shape == (2, 3, size, size)
    assert inv.extras["constant"].shape[-2:] == (4, 4)
    assert torch.equal(inv.latents, m.invert(smooth_images(2, size)).latents)  # no noise: deterministic
    assert block_widths(9, 16, 512)[-1] == (512, 512) and block_widths(9, 16, 512)[0] == (16, 32)


# ------------------------------------------------------------------------------------------------
# E2Style published layout


def published_stage(input_nc, units, widths, rows, dim, pool=7, stem=16):
    """One published stage encoder: IR-SE body (4 stages, the 4th unused) and output_layer_3/4/5."""
    sd = irse_body(input_nc, units, widths, stem)
    for name, c, r in (("output_layer_3", widths[2], rows[0]), ("output_layer_4", widths[1], rows[1])) + (
        ("output_layer_5", widths[0], rows[2]),
    ):
        sd |= bn(f"{name}.0", c)
        sd[f"{name}.3.weight"] = torch.randn(r * dim, c * pool * pool) / math.sqrt(c * pool * pool)
        sd[f"{name}.3.bias"] = torch.randn(r * dim) * 0.1
    return sd


def ref_body_taps(x, sd, units, widths):
    """Published IR-SE forward by hand; returns the outputs of the first three stages."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(ref_bn(x, sd, "input_layer.1"), sd["input_layer.2.weight"])
    taps, i, cin = [], 0, x.shape[1]
    for n, w in zip(units, widths, strict=True):
        for k in range(n):
            s = 2 if k == 0 else 1
            p = f"body.{i}"
            if cin == w:
                short = x[:, :, ::s, ::s]
            else:
                short = ref_bn(
                    F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=s), sd, f"{p}.shortcut_layer.1"
                )
            r = ref_bn(x, sd, f"{p}.res_layer.0")
            r = F.prelu(F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1), sd[f"{p}.res_layer.2.weight"])
            r = ref_bn(
                F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=s, padding=1), sd, f"{p}.res_layer.4"
            )
            gate = F.adaptive_avg_pool2d(r, 1)
            gate = torch.sigmoid(
                F.conv2d(
                    F.relu(F.conv2d(gate, sd[f"{p}.res_layer.5.fc1.weight"])),
                    sd[f"{p}.res_layer.5.fc2.weight"],
                )
            )
            x = r * gate + short
            cin, i = w, i + 1
        taps.append(x)
    return taps[:3]


def ref_stage(x, sd, units, widths, dim):
    shallow, medium, deep = ref_body_taps(x, sd, units, widths)
    out = []
    for name, f in (("output_layer_3", deep), ("output_layer_4", medium), ("output_layer_5", shallow)):
        h = F.adaptive_avg_pool2d(ref_bn(f, sd, f"{name}.0"), 7).reshape(f.shape[0], -1)
        out.append((h @ sd[f"{name}.3.weight"].T + sd[f"{name}.3.bias"]).view(f.shape[0], -1, dim))
    return torch.cat(out, dim=1)


@pytest.fixture(scope="module")
def e2style_published():
    g = tiny_generator("stylegan2", 64)  # 10 latents: rows 5/3/2
    units, widths, dim = (1, 2, 2, 1), (16, 32, 48, 64), g.style_dim
    first = published_stage(3, units, widths, (5, 3, 2), dim)
    refine = published_stage(6, units, widths, (5, 3, 2), dim)
    avg = g.latent_avg.expand(g.n_latent, -1).clone()
    sd = prefixed("encoder_firststage", first) | prefixed("encoder_refinestage_list.0", refine)
    sd |= prefixed("decoder", generator_to_rosinality(g))
    ckpt = {"state_dict": sd, "latent_avg": avg, "opts": {"start_from_latent_avg": True, "training_stage": 2}}
    return {"g": g, "ckpt": ckpt, "first": first, "refine": refine, "units": units, "widths": widths}


def test_published_e2style_loads_strictly_and_matches_a_hand_computation(e2style_published):
    p = e2style_published
    m = methods.create("e2style", checkpoint=p["ckpt"])  # decoder from decoder.*
    assert (
        m.stages == 2 and m.input_size == 64 and len(m.encoders[0].body.body) == 5
    )  # unit 5 (stage 4) dropped
    assert torch.equal(m.encoders[1].output_layer_4[3].weight, p["refine"]["output_layer_4.3.weight"])
    g, x = p["g"], smooth_images(2, 64)
    with torch.no_grad():
        w1 = ref_stage(x, p["first"], p["units"], p["widths"], g.style_dim) + p["ckpt"]["latent_avg"]
        y1 = F.adaptive_avg_pool2d(g.synthesize(w1, noise_mode="const"), 64)
        w2 = w1 + ref_stage(torch.cat([x, y1], 1), p["refine"], p["units"], p["widths"], g.style_dim)
        y2 = g.synthesize(w2, noise_mode="const")
    inv = m.invert(x)
    assert torch.allclose(inv.extras["stage_latents"][0], w1, atol=1e-5, rtol=1e-5)
    assert torch.allclose(inv.latents, w2, atol=1e-5, rtol=1e-5)
    assert torch.allclose(inv.reconstruction, y2, atol=1e-5)
    one = methods.create("e2style", checkpoint=p["ckpt"], run_stages=1)
    assert torch.allclose(one.invert(x).latents, w1, atol=1e-5, rtol=1e-5)


def test_published_e2style_files_fail_clearly(e2style_published, tmp_path):
    p = e2style_published
    bad = copy.deepcopy(p["ckpt"])
    del bad["state_dict"]["encoder_firststage.output_layer_4.0.bias"]
    with pytest.raises(CheckpointError, match="output_layer_4.0.bias"):
        methods.create("e2style", checkpoint=bad)
    with pytest.raises(CheckpointError, match="github.com/wty-ustc/e2style"):
        methods.create("e2style", checkpoint=tmp_path / "e2style_ffhq_inversion_stage2.pt")


# ------------------------------------------------------------------------------------------------
# E2Style training: stage freezing


def _ctx(lambdas, **options):
    lam = {"l2": 1.0, "lpips": 0.0, "id": 0.0, "parse": 0.0, "w_norm": 0.0, **lambdas}
    return TrainingContext(torch.device("cpu"), {"parsing_net": None, **options}, lam)


def test_stage_two_trains_with_stage_one_frozen(tmp_path):
    g = tiny_generator("stylegan2", 32)
    stage1 = methods.create("e2style", generator=g, stages=1, memory_format=None)
    stage1.save(tmp_path / "s1.pt")
    with pytest.raises(EgainError, match="--stage-checkpoint"):
        methods.method_class("e2style").build_for_training(g, {}, torch.device("cpu"), stages=2)
    m = methods.method_class("e2style").build_for_training(
        g, {"stage_checkpoint": str(tmp_path / "s1.pt")}, torch.device("cpu"), stages=2
    )
    assert torch.equal(m.encoders[0].output_layer_3[3].weight, stage1.encoders[0].output_layer_3[3].weight)
    m.setup_training(_ctx({}))
    assert list(m.trainable_modules()) == ["stage2"]
    m.set_training_mode()
    assert not m.encoders[0].training and m.encoders[1].training
    before = copy.deepcopy(m.encoders[0].state_dict())
    ref_e2 = copy.deepcopy(m.encoders[1])
    x = smooth_images(4, 32)
    loss, terms = m.training_step(x, 0)
    loss.backward()
    # reference: stage 1 as a constant, stage 2 in train mode, the loss on its image only
    with torch.no_grad():
        w1 = stage1.encoders[0].eval()(x) + m.latent_avg
        y1 = F.adaptive_avg_pool2d(g.synthesize(w1, noise_mode="const"), 32)
    w2 = w1 + ref_e2.train()(torch.cat([x, y1], 1))
    ref = F.mse_loss(g.synthesize(w2, noise_mode="const"), x)
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    for (name, p), q in zip(m.encoders[1].named_parameters(), ref_e2.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), name
    assert all(p.grad is None for p in m.encoders[0].parameters())
    opt = torch.optim.Adam([p for mod in m.trainable_modules().values() for p in mod.parameters()], lr=1e-2)
    opt.step()
    m.training_step(x, 1)  # a second forward: frozen BN statistics must not move
    after = m.encoders[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_absolute_refinement_ablation():
    g = tiny_generator("stylegan2", 16)
    m = methods.create("e2style", generator=g, stages=2, residual=False)
    x = smooth_images(2, 16)
    inv = m.invert(x)
    with torch.no_grad():
        y1 = inv.extras["stage_reconstructions"][0]
        expected = m.encoders[1](torch.cat([x, y1], 1)) + m.latent_avg
    assert torch.allclose(inv.latents, expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# multi-layer losses


class TinyParsing(torch.nn.Module):
    """A random 5-level feature network standing in for the face-parsing UNet."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4, 4, 4))

    @torch.jit.export
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        x = images
        for i, c in enumerate(self.convs):
            x = torch.relu(c(x))
            if i < 4:
                x = F.max_pool2d(x, 2)
            out.append(x)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[-1]


def test_multilayer_cosine_loss_is_the_sum_of_one_minus_cos():
    torch.manual_seed(0)
    fy = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 7)]
    fx = [torch.randn(3, 4, 5, 5), torch.randn(3, 7)]
    ref = sum(
        (
            1 - (a.flatten(1) * b.flatten(1)).sum(1) / (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1))
        ).mean()
        for a, b in zip(fy, fx, strict=True)
    )
    assert torch.allclose(multilayer_cosine_loss(fy, fx), ref, atol=1e-6)


def test_parsing_loss_in_training_and_from_a_torchscript_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = TinyParsing()
    x, y = smooth_images(2, 32, seed=1), smooth_images(2, 32, seed=2)
    loss = MultiLayerParsingLoss(net, levels=5)
    fx, fy = net.features(x), net.features(y)
    assert len(fx) == 5
    assert torch.allclose(loss(y, x), multilayer_cosine_loss(fy, fx), atol=1e-6)
    torch.jit.save(torch.jit.script(net), tmp_path / "parsing.pt")
    with pytest.raises(CheckpointError, match="carries code"):  # TorchScript runs code: trusted files only
        load_parsing_net(tmp_path / "parsing.pt")
    monkeypatch.setenv("EGAIN_TRUST_CHECKPOINTS", "1")
    loaded = load_parsing_net(tmp_path / "parsing.pt")
    assert torch.allclose(MultiLayerParsingLoss(loaded)(y, x), loss(y, x), atol=1e-6)
    with pytest.raises(CheckpointError, match="--lambda-parse 0"):
        load_parsing_net(tmp_path / "missing.pt")
    g = tiny_generator("stylegan2", 32)
    m = methods.create("e2style", generator=g, stages=1, memory_format=None)
    m.setup_training(_ctx({"parse": 1.0}, parsing_net=net))
    m.set_training_mode()
    total, terms = m.training_step(x, 0)
    assert set(terms) == {"l2", "parse"} and torch.allclose(total, terms["l2"] + terms["parse"])
    with pytest.warns(UserWarning, match="parsing loss .* is skipped"):
        m.setup_training(_ctx({"parse": 1.0}))
    assert set(m.training_step(x, 0)[1]) == {"l2"}


# ------------------------------------------------------------------------------------------------
# DSE losses against their formulas


def test_dse_latent_losses_match_their_formulas():
    torch.manual_seed(0)
    w, wp = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    p, q = torch.softmax(wp.flatten(1), 1), torch.softmax(w.flatten(1), 1)
    assert torch.allclose(kl_softmax(w, wp), (p * torch.log(p / q)).sum(1).mean(), atol=1e-6)
    a, b = w.flatten(1), wp.flatten(1)
    cos = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()
    assert torch.allclose(cosine_distance(wp, w), 1 - cos, atol=1e-6)
    lam = {"kl": 1.0, "mse": 5.0, "cos": 3.0}
    ref = kl_softmax(w, wp) + 5 * ((w - wp) ** 2).mean() + 3 * (1 - cos)
    assert torch.allclose(latent_loss(w, wp, lam), ref, atol=1e-6)


def test_ssim_matches_the_pytorch_ssim_formula():
    x, y = smooth_images(2, 16, seed=3), smooth_images(2, 16, seed=4)
    taps = torch.tensor([math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)])
    taps = taps / taps.sum()
    win = (taps[:, None] * taps[None, :]).expand(3, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, win, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()
    assert torch.allclose(ssim_value(x, y), ref, atol=1e-6)
    assert torch.allclose(ssim_value(x, x), torch.tensor(1.0), atol=1e-5)


def test_tsa_areas_and_the_weighted_image_loss():
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).expand(1, 3, 32, 32)
    at1, at2 = tsa_crops(x)
    assert at1.shape[-2:] == (32, 24) and at1[0, 0, 0, 0] == 4  # columns [W/8, W - W/8)
    assert at2.shape[-2:] == (22, 22) and at2[0, 0, 0, 0] == 5 * 32 + 5  # [H/8 + H/32, H - H/8 - H/32)
    xs, ys = smooth_images(2, 32, seed=5), smooth_images(2, 32, seed=6)
    lam = {"kl": 1.0, "mse": 5.0, "cos": 3.0, "ssim": 1.0, "lpips": 2.0}

    def per_area(a, b):
        return (
            kl_softmax(a, b)
            + 5 * F.mse_loss(b, a)
            + 3 * cosine_distance(b, a)
            + (1 - ssim_value(b, a))
            + 2 * (a - b).abs().mean()
        )

    def perceptual(u, v):
        return (u - v).abs().flatten(1).mean(1)

    (a1, a2), (b1, b2) = tsa_crops(xs), tsa_crops(ys)
    ref = per_area(xs, ys) + 0.375 * per_area(a1, b1) + 0.625 * per_area(a2, b2)
    total, logged = tsa_image_loss(xs, ys, lam, (0.375, 0.625), perceptual)
    assert torch.allclose(total, ref, atol=1e-5)
    assert set(image_terms(xs, ys, {"mse": 5.0})) == {"mse"}
    assert set(logged) == {"kl", "mse", "cos", "ssim", "lpips"}


# ------------------------------------------------------------------------------------------------
# DSE published layout, training step and DSE (E)


def published_be(widths, dim, seed=0):
    """A raw published ``BE`` state dict; weights stored already scaled (implicit lreq)."""
    gen = torch.Generator().manual_seed(seed)

    def w(*shape, gain):
        fan_in = math.prod(shape[1:])
        return torch.randn(*shape, generator=gen) * gain / math.sqrt(fan_in)

    sd = {
        "FromRGB.from_rgb.weight": w(widths[0][0], 3, 1, 1, gain=math.sqrt(2)),
        "FromRGB.from_rgb.bias": torch.randn(widths[0][0], generator=gen) * 0.1,
    }
    for i, (cin, cout) in enumerate(widths):
        p = f"decode_block.{i}"
        sd[f"{p}.noise_weight_1"] = torch.randn(1, cin, 1, 1, generator=gen) * 0.1
        sd[f"{p}.bias_1"] = torch.randn(1, cin, 1, 1, generator=gen) * 0.1
        sd[f"{p}.inver_mod1.weight"] = w(dim, 2 * cin, gain=1.0)
        sd[f"{p}.inver_mod1.bias"] = torch.randn(dim, generator=gen) * 0.1
        sd[f"{p}.conv_1.weight"] = w(cin, cin, 3, 3, gain=math.sqrt(2))
        sd[f"{p}.noise_weight_2"] = torch.randn(1, cout, 1, 1, generator=gen) * 0.1
        sd[f"{p}.bias_2"] = torch.randn(1, cout, 1, 1, generator=gen) * 0.1
        sd[f"{p}.inver_mod2.weight"] = w(dim, 2 * cin, gain=1.0)
        sd[f"{p}.inver_mod2.bias"] = torch.randn(dim, generator=gen) * 0.1
        if i < len(widths) - 1:
            sd[f"{p}.conv_2.weight"] = w(cout, cin, 3, 3, gain=math.sqrt(2))
        if cin != cout:
            sd[f"{p}.conv_3.weight"] = w(cout, cin, 1, 1, gain=math.sqrt(2))
            sd[f"{p}.conv_3.bias"] = torch.randn(cout, generator=gen) * 0.1
    return sd


def ref_be(x, sd, n_blocks):
    """The published BE forward by hand (noise drawn in the published order)."""

    def stats(t):
        m = t.mean(dim=(2, 3), keepdim=True)
        return torch.cat([m, ((t - m) ** 2).mean(dim=(2, 3), keepdim=True).sqrt()], 1).flatten(1)

    def inorm(t):
        m = t.mean(dim=(2, 3), keepdim=True)
        return (t - m) / torch.sqrt(((t - m) ** 2).mean(dim=(2, 3), keepdim=True) + 1e-8)

    x = F.leaky_relu(F.conv2d(x, sd["FromRGB.from_rgb.weight"], sd["FromRGB.from_rgb.bias"]), 0.2)
    w = None
    for i in range(n_blocks):
        p = f"decode_block.{i}."
        w1 = stats(x) @ sd[p + "inver_mod1.weight"].T + sd[p + "inver_mod1.bias"]
        res = x
        h = F.conv2d(inorm(x), sd[p + "conv_1.weight"], padding=1)
        h = h + sd[p + "noise_weight_1"] * torch.randn(h.shape[0], 1, h.shape[2], h.shape[3])
        h = F.leaky_relu(h + sd[p + "bias_1"], 0.2)
        w2 = stats(h) @ sd[p + "inver_mod2.weight"].T + sd[p + "inver_mod2.bias"]
        h = inorm(h)
        if p + "conv_2.weight" in sd:
            h = F.conv2d(h, sd[p + "conv_2.weight"], padding=1)
            h = h + sd[p + "noise_weight_2"] * torch.randn(h.shape[0], 1, h.shape[2], h.shape[3])
            h = F.avg_pool2d(F.leaky_relu(h + sd[p + "bias_2"], 0.2), 2)
            res = F.avg_pool2d(res, 2)
        if p + "conv_3.weight" in sd:
            res = F.conv2d(res, sd[p + "conv_3.weight"], sd[p + "conv_3.bias"])
        x = 0.111 * h + 0.889 * res
        pair = torch.stack([w2, w1], 1)
        w = pair if w is None else torch.cat([pair, w], 1)
    return x, w


def test_published_dse_encoder_loads_strictly_and_matches_a_hand_computation(tmp_path):
    g = tiny_generator("stylegan2", 32)  # 8 latents: 4 blocks 32 -> 4 px
    widths = block_widths(4, 8, 32)
    sd = published_be(widths, g.style_dim)
    m = methods.create("dse", generator=g, checkpoint={"state_dict": sd})
    assert m.startf == 8 and m.maxf == 32
    x = smooth_images(2, 32)
    torch.manual_seed(5)
    with torch.no_grad():
        zc, w = m.encoder(x, "random")
    torch.manual_seed(5)
    with torch.no_grad():
        zc_ref, w_ref = ref_be(x, sd, 4)
    assert torch.allclose(w, w_ref, atol=1e-5, rtol=1e-4) and torch.allclose(zc, zc_ref, atol=1e-5, rtol=1e-4)
    torch.save(sd, tmp_path / "E.pth")
    from egain.methods.dse import load_published_dse

    m2 = load_published_dse(tmp_path / "E.pth", generator=g)
    assert torch.equal(m2.encoder.blocks[1].conv_2.weight, m.encoder.blocks[1].conv_2.weight)
    bad = dict(sd)
    del bad["decode_block.2.inver_mod2.bias"]
    with pytest.raises(CheckpointError, match="missing"):
        methods.create("dse", generator=g, checkpoint={"state_dict": bad})
    with pytest.raises(CheckpointError, match="github.com/disanda/DSE"):
        load_published_dse(tmp_path / "nope.pth", generator=g)


def test_dse_training_step_uses_generated_samples_only():
    g = tiny_generator("stylegan2", 16)
    m = methods.create("dse", generator=g, memory_format=None)
    lam = dict(methods.method_class("dse").loss_weights, lpips=0.0)
    opts = {"tsa_mu1": 0.375, "tsa_mu2": 0.625, "truncation": 0.7, "trunc_layers": -1}
    m.setup_training(TrainingContext(torch.device("cpu"), opts, lam))
    m.set_training_mode()
    torch.manual_seed(1)
    loss_a, terms = m.training_step(smooth_images(3, 16, seed=1), 0)
    torch.manual_seed(1)
    loss_b, _ = m.training_step(torch.zeros(3, 3, 16, 16), 0)
    assert torch.allclose(loss_a, loss_b)  # the data batch gives only its size
    assert {"mse", "cos", "kl", "ssim", "latent"} <= set(terms)
    loss_a.backward()
    unused = {
        "blocks.2.noise_weight_2",
        "blocks.2.bias_2",
    }  # the last block has no second conv (as published)
    assert all((p.grad is None) == (n in unused) for n, p in m.encoder.named_parameters())
    assert m.ddp_find_unused_parameters
    assert all(p.grad is None for p in g.parameters())


def test_dse_e_finetuning_leaves_the_encoder_alone():
    g = tiny_generator("stylegan2", 16)
    m = methods.create("dse", generator=g, noise_mode="none")
    before = copy.deepcopy(m.encoder.state_dict())
    x = smooth_images(2, 16)
    plain = m.invert(x)
    tuned = m.invert(x, finetune_steps=4)
    assert tuned.latents.shape == plain.latents.shape and tuned.extras["finetune_loss"].shape == (2,)
    assert all(torch.equal(before[k], v) for k, v in m.encoder.state_dict().items())
    # the kept code is the best one seen, so it is no worse than the encoder's own (step 0)
    lam = methods.method_class("dse").loss_weights
    for i in range(2):
        base, _ = tsa_image_loss(x[i : i + 1], plain.reconstruction[i : i + 1], lam)
        assert tuned.extras["finetune_loss"][i] <= base + 1e-5


# ------------------------------------------------------------------------------------------------
# egain train + invert, end to end


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2dse")
    return {
        "gen": save_tiny_generator(root / "g.pt", "stylegan2", 16),
        "data": image_folder(root / "data", 12, 16),
    }


def _train(world, run, method, *extra):
    args = ["train", "--method", method, "--generator", str(world["gen"]), "--data", str(world["data"])]
    args += ["--out", str(run), "--iters", "3", "--batch", "2", "--log-every", "3", "--val-every", "3"]
    args += ["--ckpt-every", "3", "--device", "cpu", *extra]
    assert main(args) == 0


def test_e2style_trains_stage_by_stage_and_inverts_through_the_cli(world, tmp_path, monkeypatch):
    monkeypatch.setenv("EGAIN_TRUST_CHECKPOINTS", "1")  # the test's parsing net is a TorchScript file
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinyParsing()), tmp_path / "parsing.pt")
    no_nets = ["--lambda-id", "0", "--lambda-lpips", "0"]
    _train(
        world,
        tmp_path / "s1",
        "e2style",
        "--stages",
        "1",
        *no_nets,
        "--parsing-net",
        str(tmp_path / "parsing.pt"),
    )
    _train(
        world,
        tmp_path / "s2",
        "e2style",
        "--stages",
        "2",
        "--stage-checkpoint",
        str(tmp_path / "s1" / "model.pt"),
        *no_nets,
        "--lambda-parse",
        "0",
    )
    m1 = methods.create("e2style", checkpoint=tmp_path / "s1" / "model.pt")
    m2 = methods.create("e2style", checkpoint=tmp_path / "s2" / "model.pt")
    assert m2.stages == 2
    assert torch.equal(m2.encoders[0].output_layer_3[3].weight, m1.encoders[0].output_layer_3[3].weight)
    out = tmp_path / "rec"
    argv = ["invert", "--method", "e2style", "--checkpoint", str(tmp_path / "s2" / "model.pt")]
    assert main([*argv, "--input", str(world["data"]), "--output", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*.png"))) == 12


def test_dse_trains_and_inverts_through_the_cli(world, tmp_path):
    _train(world, tmp_path / "dse", "dse", "--lambda-lpips", "0", "--lr", "0.0015")
    m = methods.create("dse", checkpoint=tmp_path / "dse" / "model.pt", finetune_steps=2)
    assert m.finetune_steps == 2
    out = tmp_path / "rec"
    argv = ["invert", "--method", "dse", "--checkpoint", str(tmp_path / "dse" / "model.pt")]
    assert main([*argv, "--input", str(world["data"]), "--output", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*.png"))) == 12


def test_invert_files_is_reproducible_for_random_noise_dse(tmp_path):
    """DSE's encoder draws noise at inference (published default): the shared inversion loop seeds it,
    so the same files give the same reconstructions whatever drew random numbers before, and the
    caller's random state is left as it was."""
    from egain.utils.images import open_image
    from egain.workflows.inversion import invert_files

    g = tiny_generator("stylegan2", 16)
    m = methods.create("dse", generator=g)
    assert m.noise_mode == "random"
    with torch.no_grad():  # trained weights are non-zero; at init the noise would not show
        for name, p in m.named_parameters():
            if "noise_weight" in name:
                p.fill_(0.5)
    files = sorted(image_folder(tmp_path / "src", n=3, size=16).glob("*.png"))
    invert_files(m, files, tmp_path / "a", label="a", progress=False)
    torch.manual_seed(123)
    torch.rand(7)  # another method drew numbers before
    state = torch.random.get_rng_state()
    invert_files(m, files, tmp_path / "b", label="b", progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    for f in files:
        a = torch.tensor(list(open_image(tmp_path / "a" / f.name).getdata()))
        b = torch.tensor(list(open_image(tmp_path / "b" / f.name).getdata()))
        assert torch.equal(a, b)
    invert_files(m, files, tmp_path / "c", label="c", progress=False, seed=None)
    c = [torch.tensor(list(open_image(tmp_path / "c" / f.name).getdata())) for f in files]
    a = [torch.tensor(list(open_image(tmp_path / "a" / f.name).getdata())) for f in files]
    assert any(not torch.equal(x, y) for x, y in zip(a, c, strict=True))  # unseeded: the noise differs

"""Generators and discriminators: published-layout import, numerics vs a literal reference, hooks, I/O.

The published (rosinality) state dicts are built here from the key tables of the reference sheet,
and the reference forward pass below is written directly from its order of operations (per-sample
loops, explicit zero insertion, explicit Haar filters) -- it shares no code with egain.ops.
"""

from __future__ import annotations

import importlib.util
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from test_ops import ref_haar_filters, ref_modconv, ref_upfirdn

from egain.errors import CheckpointError, EgainError, InputError
from egain.generators import (
    build_discriminator,
    build_generator,
    discriminator_from_rosinality,
    discriminator_to_rosinality,
    generator_from_rosinality,
    generator_to_rosinality,
    load_discriminator,
    load_generator,
    save_generator,
)
from egain.generators.convert import discriminator_tables, generator_tables
from egain.generators.discriminator import minibatch_stddev

SQRT2 = math.sqrt(2)
BLUR4 = torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64
TINY = {"style_dim": 16, "n_mlp": 2, "channel_base": 128, "channel_max": 16, "channel_multiplier": 1}

# ---------------------------------------------------------------- published layouts (reference tables)


def rosinality_g(arch: str, size: int, ch: dict[int, int], style_dim: int = 16, n_mlp: int = 2) -> dict:
    """A rosinality ``g_ema`` state dict with random values, keys/shapes from reference sec. 1.5 / 2.3."""
    r = torch.randn
    sd: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = r(style_dim, style_dim) * 100  # stored as randn / lr_mul
        sd[f"style.{i}.bias"] = r(style_dim)
    sd["input.input"] = r(1, ch[4], 4, 4)
    rgb = 3 if arch == "stylegan2" else 12
    log_size = int(math.log2(size)) - (1 if arch == "swagan" else 0)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        sd[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = BLUR4 * 4
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * r(cin)
        sd[f"{prefix}.noise.weight"] = 0.5 * r(1)
        sd[f"{prefix}.activate.bias"] = 0.1 * r(cout)

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        sd[f"{prefix}.bias"] = 0.1 * r(1, rgb, 1, 1)
        if up:
            if arch == "swagan":
                for name, f in ref_haar_filters(inverse=True).items():
                    sd[f"{prefix}.iwt.{name}"] = f
            sd[f"{prefix}.upsample.kernel"] = BLUR4 * 4
            if arch == "swagan":
                for name, f in ref_haar_filters().items():
                    sd[f"{prefix}.dwt.{name}"] = f
        sd[f"{prefix}.conv.weight"] = r(1, rgb, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * r(cin)

    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    cin = ch[4]
    for k, i in enumerate(range(3, log_size + 1)):
        res = 2**i
        styled(f"convs.{2 * k}", cin, ch[res], True)
        styled(f"convs.{2 * k + 1}", ch[res], ch[res], False)
        to_rgb(f"to_rgbs.{k}", ch[res], True)
        cin = ch[res]
    for j in range(2 * (log_size - 2) + 1):
        res = 2 ** ((j + 5) // 2)
        sd[f"noises.noise_{j}"] = r(1, 1, res, res)
    if arch == "swagan":
        for name, f in ref_haar_filters(inverse=True).items():
            sd[f"iwt.{name}"] = f
    return sd


def rosinality_d(arch: str, size: int, ch: dict[int, int], from_rgb_kernel: int = 3) -> dict:
    """A rosinality ``d`` state dict (reference sec. 3.1 / 3.2) with random values."""
    r = torch.randn
    sd: dict[str, torch.Tensor] = {}
    log_size = int(math.log2(size))
    if arch == "stylegan2":
        sd["convs.0.0.weight"], sd["convs.0.1.bias"] = r(ch[size], 3, 1, 1), r(ch[size])
        cin = ch[size]
        for k in range(1, log_size - 1):
            cout = ch[size >> k]
            sd[f"convs.{k}.conv1.0.weight"], sd[f"convs.{k}.conv1.1.bias"] = r(cin, cin, 3, 3), r(cin)
            sd[f"convs.{k}.conv2.0.kernel"] = BLUR4.clone()
            sd[f"convs.{k}.conv2.1.weight"], sd[f"convs.{k}.conv2.2.bias"] = r(cout, cin, 3, 3), r(cout)
            sd[f"convs.{k}.skip.0.kernel"] = BLUR4.clone()
            sd[f"convs.{k}.skip.1.weight"] = r(cout, cin, 1, 1)
            cin = cout
    else:
        for name, f in ref_haar_filters().items():
            sd[f"dwt.{name}"] = f
        top = log_size - 1
        cin = ch[size]
        n = 0
        for i in range(top, 2, -1):
            cout = ch[2 ** (i - 1)]
            _from_rgb(sd, n, cin, from_rgb_kernel)
            sd[f"convs.{n}.conv1.0.weight"], sd[f"convs.{n}.conv1.1.bias"] = r(cin, cin, 3, 3), r(cin)
            sd[f"convs.{n}.conv2.0.kernel"] = BLUR4.clone()
            sd[f"convs.{n}.conv2.1.weight"], sd[f"convs.{n}.conv2.2.bias"] = r(cout, cin, 3, 3), r(cout)
            cin = cout
            n += 1
        _from_rgb(sd, n, ch[4], from_rgb_kernel)
    sd["final_conv.0.weight"], sd["final_conv.1.bias"] = r(ch[4], ch[4] + 1, 3, 3), r(ch[4])
    sd["final_linear.0.weight"], sd["final_linear.0.bias"] = r(ch[4], ch[4] * 16), r(ch[4])
    sd["final_linear.1.weight"], sd["final_linear.1.bias"] = r(1, ch[4]), r(1)
    return sd


def _from_rgb(sd: dict, n: int, cout: int, k: int) -> None:
    if n > 0:
        for name, f in ref_haar_filters(inverse=True).items():
            sd[f"from_rgbs.{n}.iwt.{name}"] = f
        sd[f"from_rgbs.{n}.downsample.kernel"] = BLUR4.clone()
        for name, f in ref_haar_filters().items():
            sd[f"from_rgbs.{n}.dwt.{name}"] = f
    sd[f"from_rgbs.{n}.conv.0.weight"] = torch.randn(cout, 12, k, k)
    sd[f"from_rgbs.{n}.conv.1.bias"] = torch.randn(cout)


# ---------------------------------------------------------------- literal reference forward


def ref_dwt(x):
    f = ref_haar_filters()
    return torch.cat([ref_upfirdn(x, f[b], 1, 2, (0, 0)) for b in ("ll", "lh", "hl", "hh")], 1)


def ref_iwt(x):
    f = ref_haar_filters(inverse=True)
    bands = x.chunk(4, 1)
    return sum(
        ref_upfirdn(bands[i], f[b], 2, 1, (1, 0, 1, 0)) for i, b in enumerate(("ll", "lh", "hl", "hh"))
    )


def ref_synthesis(sd: dict, arch: str, wplus: torch.Tensor) -> torch.Tensor:
    """Published synthesis with stored noise (randomize_noise=False), reference sec. 1.6 order."""
    d = wplus.shape[-1]

    def styled(prefix, x, w, up, noise):
        s = (
            w @ (sd[f"{prefix}.conv.modulation.weight"] / math.sqrt(d)).T
            + sd[f"{prefix}.conv.modulation.bias"]
        )
        x = ref_modconv(x, sd[f"{prefix}.conv.weight"][0], s, True, up)
        x = x + sd[f"{prefix}.noise.weight"] * noise
        x = x + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * SQRT2

    def to_rgb(prefix, x, w, skip):
        s = (
            w @ (sd[f"{prefix}.conv.modulation.weight"] / math.sqrt(d)).T
            + sd[f"{prefix}.conv.modulation.bias"]
        )
        out = ref_modconv(x, sd[f"{prefix}.conv.weight"][0], s, False, False) + sd[f"{prefix}.bias"]
        if skip is not None:
            if arch == "swagan":
                skip = ref_dwt(ref_upfirdn(ref_iwt(skip), BLUR4 * 4, 2, 1, (2, 1)))
            else:
                skip = ref_upfirdn(skip, BLUR4 * 4, 2, 1, (2, 1))
            out = out + skip
        return out

    n_convs = sum(1 for k in sd if k.startswith("convs.") and k.endswith(".conv.weight"))
    x = sd["input.input"].repeat(wplus.shape[0], 1, 1, 1)
    x = styled("conv1", x, wplus[:, 0], False, sd["noises.noise_0"])
    skip = to_rgb("to_rgb1", x, wplus[:, 1], None)
    i = 1
    for k in range(n_convs // 2):
        x = styled(f"convs.{2 * k}", x, wplus[:, i], True, sd[f"noises.noise_{2 * k + 1}"])
        x = styled(f"convs.{2 * k + 1}", x, wplus[:, i + 1], False, sd[f"noises.noise_{2 * k + 2}"])
        skip = to_rgb(f"to_rgbs.{k}", x, wplus[:, i + 2], skip)
        i += 2
    return ref_iwt(skip) if arch == "swagan" else skip


def ref_mapping(sd: dict, z: torch.Tensor, n_mlp: int) -> torch.Tensor:
    x = z * torch.rsqrt((z**2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = x @ (sd[f"style.{i}.weight"] * 0.01 / math.sqrt(z.shape[1])).T
        x = F.leaky_relu(x + sd[f"style.{i}.bias"] * 0.01, 0.2) * SQRT2
    return x


# ---------------------------------------------------------------- import: strict, exact numerics

CASES = [("stylegan2", 16, {4: 8, 8: 6, 16: 4}), ("swagan", 32, {4: 8, 8: 6, 16: 4})]


@pytest.mark.parametrize("arch,size,ch", CASES)
def test_published_generator_imports_strictly_and_matches_reference(arch, size, ch):
    sd = rosinality_g(arch, size, ch)
    g = generator_from_rosinality(sd)
    assert (g.arch, g.size, g.style_dim, g.n_mlp) == (arch, size, 16, 2)
    assert g.n_latent == (2 * math.log2(size) - 2 if arch == "stylegan2" else 2 * math.log2(size) - 4)
    # nothing invented: every tensor we hold comes from one published key, and back again exactly
    back = generator_to_rosinality(g)
    assert set(back) == set(sd)
    for k in sd:
        assert back[k].shape == sd[k].shape, k
        assert torch.allclose(back[k], sd[k], atol=1e-6), k
    assert len(g.state_dict()) == len(
        [k for k in sd if not k.endswith(("kernel", ".ll", ".lh", ".hl", ".hh"))]
    )
    z = torch.randn(2, 16)
    w = g.mapping(z)
    assert torch.allclose(w, ref_mapping(sd, z, 2), atol=1e-5)
    wplus = torch.randn(2, g.n_latent, 16)
    want = ref_synthesis(sd, arch, wplus)
    for mode in ("fused", "shared", "auto"):
        for grad in (True, False):  # autograd path and the in-place inference path
            with torch.set_grad_enabled(grad):
                got = g.set_modconv_mode(mode).synthesize(wplus, noise_mode="const")
            assert got.shape == (2, 3, size, size)
            assert torch.allclose(got, want, atol=1e-4 * want.abs().max().item()), (mode, grad)


def test_published_generator_key_counts_match_reference_sheet():
    """1024 StyleGAN2: 171 entries / 30,370,060 params; SWAGAN 1024: 213 / 30,303,727; 256: 161 / 29,354,067."""
    cases = [
        ("stylegan2", 1024, 171, 30_370_060),
        ("swagan", 1024, 213, 30_303_727),
        ("swagan", 256, 161, 29_354_067),
    ]
    for arch, size, entries, params in cases:
        with torch.device("meta"):
            g = build_generator(arch, size, channel_preset="rosinality")
        rules, consts = generator_tables(g.config)
        assert len(rules) + len(consts) == entries, arch
        assert sum(p.numel() for p in g.parameters()) == params, arch
    for arch, size, entries, params in [
        ("stylegan2", 1024, 64, 29_012_513),
        ("stylegan2", 256, 50, 28_864_129),
        ("swagan", 256, 92, 26_469_121),
    ]:
        with torch.device("meta"):
            d = build_discriminator(arch, size, channel_preset="rosinality")
        rules, consts = discriminator_tables(d.config)
        assert len(rules) + len(consts) == entries, arch
        assert sum(p.numel() for p in d.parameters()) == params, arch


def test_import_errors_name_the_key():
    ch = {4: 8, 8: 6, 16: 4}
    sd = rosinality_g("stylegan2", 16, ch)
    bad = dict(sd)
    bad["convs.1.conv.weight"] = torch.randn(1, 6, 5, 3, 3)
    with pytest.raises(
        CheckpointError,
        match=r"'convs\.1\.conv\.weight' has shape \[1, 6, 5, 3, 3\]; expected \[1, 6, 6, 3, 3\]",
    ):
        generator_from_rosinality(bad)
    bad = dict(sd)
    bad["convs.0.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key 'convs.0.extra'"):
        generator_from_rosinality(bad)
    bad = dict(sd)
    del bad["noises.noise_3"]
    with pytest.raises(CheckpointError, match="lacks key 'noises.noise_3'"):
        generator_from_rosinality(bad)


@pytest.mark.parametrize("arch,size,k", [("stylegan2", 32, 3), ("swagan", 32, 3), ("swagan", 32, 1)])
def test_published_discriminator_imports_strictly(arch, size, k):
    ch = {4: 8, 8: 8, 16: 6, 32: 4}
    sd = rosinality_d(arch, size, ch, from_rgb_kernel=k)
    d = discriminator_from_rosinality(sd)
    assert (d.arch, d.size) == (arch, size)
    if arch == "swagan":
        assert d.from_rgb_kernel == k
    back = discriminator_to_rosinality(d)
    assert set(back) == set(sd)
    for key in sd:
        assert torch.equal(back[key], sd[key]) or torch.allclose(back[key], sd[key], atol=1e-6), key
    assert d(torch.randn(4, 3, size, size)).shape == (4, 1)
    bad = dict(sd)
    bad["final_linear.0.weight"] = torch.randn(8, 100)
    with pytest.raises(CheckpointError, match="final_linear.0.weight"):
        discriminator_from_rosinality(bad)


def test_stylegan2_discriminator_matches_literal_forward():
    ch = {4: 4, 8: 4, 16: 3}
    sd = rosinality_d("stylegan2", 16, ch)
    d = discriminator_from_rosinality(sd)
    x = torch.randn(4, 3, 16, 16)

    def layer(x, prefix, k, down, act=True, bias=True):
        i = 0
        if down:
            p = 2 + (k - 1)
            x = ref_upfirdn(x, BLUR4, 1, 1, ((p + 1) // 2, p // 2))
            i = 1
        w = sd[f"{prefix}.{i}.weight"]
        y = F.conv2d(x, w / math.sqrt(w[0].numel()), stride=2 if down else 1, padding=0 if down else k // 2)
        if act:
            y = F.leaky_relu(y + sd[f"{prefix}.{i + 1}.bias"].view(1, -1, 1, 1), 0.2) * SQRT2
        return y

    h = layer(x, "convs.0", 1, False)
    for k in (1, 2):
        a = layer(layer(h, f"convs.{k}.conv1", 3, False), f"convs.{k}.conv2", 3, True)
        h = (a + layer(h, f"convs.{k}.skip", 1, True, act=False)) / SQRT2
    # minibatch std, group 4: one std over the 4 samples, averaged over C, H, W
    std = torch.sqrt(h.var(0, unbiased=False) + 1e-8).mean()
    h = torch.cat([h, std.expand(4, 1, 4, 4)], 1)
    h = layer(h, "final_conv", 3, False).flatten(1)
    h = (
        F.leaky_relu(
            h @ (sd["final_linear.0.weight"] / math.sqrt(h.shape[1])).T + sd["final_linear.0.bias"], 0.2
        )
        * SQRT2
    )
    want = h @ (sd["final_linear.1.weight"] / math.sqrt(h.shape[1])).T + sd["final_linear.1.bias"]
    assert torch.allclose(d(x), want, atol=1e-4)


def test_minibatch_stddev_groups_like_published_and_handles_odd_batches():
    x = torch.randn(8, 2, 3, 3)
    y = minibatch_stddev(x, 4)
    # group layout: sample i pairs with samples i + 2k (view(group, -1, ...))
    std_a = torch.sqrt(x[0::2].var(0, unbiased=False) + 1e-8).mean()
    assert torch.allclose(y[0, 2], std_a.expand(3, 3), atol=1e-6)
    assert torch.allclose(y[6, 2], std_a.expand(3, 3), atol=1e-6)
    assert minibatch_stddev(torch.randn(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)


# ---------------------------------------------------------------- configuration and bad input


def test_bad_sizes_and_latents_give_one_line_errors():
    for size in (24, 8, 100, "x"):
        with pytest.raises(EgainError, match="power of two >= 16") as exc:
            build_generator("stylegan2", size, **TINY)
        assert "\n" not in str(exc.value)
    with pytest.raises(EgainError, match="unknown generator arch"):
        build_generator("biggan", 32)
    g = build_generator("swagan", 32, **TINY)
    with pytest.raises(
        InputError, match=r"W\+ code with 8 layers; this swagan 32px generator expects 6"
    ) as exc:
        g.synthesize(torch.randn(1, 8, 16))
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="expected W"):
        g.synthesize(torch.randn(1, 15))
    with pytest.raises(EgainError, match="unknown generator layer 'up1024'"):
        g.synthesize(torch.randn(1, 16), return_features=["up1024"])


def test_channel_tables_and_default_fusion_layers():
    g = build_generator(
        "stylegan2", 64, channel_preset="rosinality", channel_multiplier=2, style_dim=8, n_mlp=1
    )
    assert g.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512}
    assert g.default_fusion_layers == ["up16"]
    with torch.device("meta"):
        assert build_generator("stylegan2", 1024).default_fusion_layers == ["up64"]
        assert build_generator("stylegan2", 256).default_fusion_layers == ["up64"]
        g1024 = build_generator("stylegan2", 1024)
        # HFGI adds its conditions after rosinality's convs.6: our convs.7, named "up64"
        assert g1024.layer_names[7] == "up64" and g1024.layer_info("up64").channels == 512
        rules, _ = generator_tables(g1024.config)
        assert {r.ours: r.published for r in rules}["convs.7.modconv.weight"] == "convs.6.conv.weight"
        sw = build_generator("swagan", 1024)
        assert sw.default_fusion_layers == ["up64"]
        assert sw.layer_info("up64").output_resolution == 128
        assert sw.n_latent == 16 and build_generator("stylegan2", 1024).n_latent == 18
    assert build_generator("swagan", 16, **TINY).default_fusion_layers == ["conv4"]


# ---------------------------------------------------------------- hooks


@pytest.fixture(params=["stylegan2", "swagan"])
def tiny_g(request):
    g = build_generator(request.param, 32, **TINY).eval()
    for conv in g.convs:  # make the noise visible in the output
        conv.noise_strength.data.fill_(0.3)
    return g


def test_features_have_documented_shapes(tiny_g):
    g = tiny_g
    w = torch.randn(2, g.style_dim)
    img, feats = g.synthesize(w, return_features=g.layer_names + g.rgb_names)
    assert img.shape == (2, 3, 32, 32)
    for name, f in feats.items():
        info = g.layer_info(name)
        assert f.shape == (2, info.channels, info.resolution, info.resolution), name
    assert torch.equal(img, g.synthesize(w))


def test_zero_fusion_and_zero_injection_leave_image_unchanged(tiny_g):
    g = tiny_g
    w = torch.randn(2, g.n_latent, g.style_dim)
    base = g.synthesize(w)
    name = g.default_fusion_layers[0]
    info = g.layer_info(name)
    zeros = torch.zeros(2, info.channels, info.resolution, info.resolution)
    assert torch.equal(g.synthesize(w, fusion={name: (zeros, zeros)}), base)
    assert torch.equal(g.synthesize(w, injection={n: torch.zeros(1) for n in g.layer_names}), base)
    shifted = g.synthesize(w, fusion={name: (zeros, zeros + 0.5)})
    assert not torch.allclose(shifted, base)


def test_fusion_and_injection_act_exactly_after_the_named_layer(tiny_g):
    g = tiny_g
    w = torch.randn(2, g.n_latent, g.style_dim)
    name = "up16"
    scale, shift = torch.rand(2, 1, 16, 16), torch.randn(2, g.layer_info(name).channels, 16, 16)
    img, feats = g.synthesize(w, return_features=[name, g.layer_info(name).skip_name])
    fused = feats[name] * (1 + scale) + shift
    manual = g.synthesize(w, start_from=(name, fused, feats[g.layer_info(name).skip_name]))
    assert torch.allclose(g.synthesize(w, fusion={name: (scale, shift)}), manual, atol=1e-5)
    delta = torch.randn_like(shift)
    manual = g.synthesize(w, start_from=(name, feats[name] + delta, feats["rgb8"]))
    assert torch.allclose(g.synthesize(w, injection={name: delta}), manual, atol=1e-5)
    # resuming from the unchanged features reproduces the plain image
    assert torch.allclose(g.synthesize(w, start_from=(name, feats[name], feats["rgb8"])), img, atol=1e-6)


def test_late_latent_applies_only_after_the_layer(tiny_g):
    g = tiny_g
    w, w_edit = torch.randn(2, g.n_latent, g.style_dim), torch.randn(2, g.n_latent, g.style_dim)
    name = "conv8"
    assert torch.equal(g.synthesize(w, w_late=w, late_after=name), g.synthesize(w))
    _, feats = g.synthesize(w, return_features=[name])
    _, feats_e = g.synthesize(w, w_late=w_edit, late_after=name, return_features=[name, "up16"])
    assert torch.equal(feats_e[name], feats[name])  # layers up to and including F_k keep w
    want = g.synthesize(w_edit, start_from=(name, feats[name], _skip(g, w, name)))
    got = g.synthesize(w, w_late=w_edit, late_after=name)
    assert torch.allclose(got, want, atol=1e-6)


def _skip(g, w, name):
    skip_name = g.layer_info(name).skip_name
    return g.synthesize(w, return_features=[skip_name])[1][skip_name]


def test_style_mixing_truncation_and_noise_modes(tiny_g):
    g = tiny_g
    z1, z2 = torch.randn(2, g.style_dim), torch.randn(2, g.style_dim)
    mixed = g([z1, z2], inject_index=3, noise_mode="const")
    w1, w2 = g.mapping(z1), g.mapping(z2)
    wp = torch.cat([w1[:, None].expand(-1, 3, -1), w2[:, None].expand(-1, g.n_latent - 3, -1)], 1)
    assert torch.allclose(mixed, g.synthesize(wp), atol=1e-6)
    avg = torch.randn(g.style_dim)
    assert torch.allclose(
        g.mapping(z1, truncation=0.5, truncation_latent=avg), avg + 0.5 * (w1 - avg), atol=1e-6
    )
    img, lat = g(z1, return_latents=True, noise_mode="none")
    assert lat.shape == (2, g.n_latent, g.style_dim)
    assert torch.equal(g.synthesize(w1, "const"), g.synthesize(w1, "const"))
    assert not torch.equal(g.synthesize(w1, "random"), g.synthesize(w1, "random"))
    assert torch.equal(g.synthesize(w1, "none"), g.synthesize(w1, noise=[torch.zeros(1)] * len(g.convs)))
    assert g.mean_latent(256).shape == (1, g.style_dim)


def test_gradients_reach_latents_and_weights(tiny_g):
    g = tiny_g
    w = torch.randn(2, g.n_latent, g.style_dim, requires_grad=True)
    g.synthesize(w, "random").square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert all(p.grad is not None for p in g.convs.parameters())


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_formats_roundtrip(tmp_path, caplog):
    g = build_generator("swagan", 32, **TINY)
    w = torch.randn(2, g.style_dim)
    want = g.synthesize(w)
    # ours
    save_generator(g, tmp_path / "ours.pt", latent_avg=torch.ones(g.style_dim))
    g2 = load_generator(tmp_path / "ours.pt", device="cpu")
    assert torch.allclose(g2.synthesize(w), want, atol=1e-6) and torch.equal(g2.latent_avg, torch.ones(16))
    # gan-train container
    d = build_discriminator("swagan", 32, channel_base=128, channel_max=16, channel_multiplier=1)
    torch.save(
        {
            "egain_format": "gan-train",
            "config": g.config,
            "g_ema": g.state_dict(),
            "g": g.state_dict(),
            "d": d.state_dict(),
            "d_config": d.config,
            "step": 3,
        },
        tmp_path / "train.pt",
    )
    assert torch.allclose(load_generator(tmp_path / "train.pt", device="cpu").synthesize(w), want, atol=1e-6)
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(load_discriminator(tmp_path / "train.pt", device="cpu")(x), d(x), atol=1e-6)
    # rosinality train.py file: no latent_avg -> computed, with a notice
    torch.save(
        {"g_ema": generator_to_rosinality(g), "d": discriminator_to_rosinality(d)}, tmp_path / "ros.pt"
    )
    with caplog.at_level(logging.WARNING, logger="egain.generators"):
        g3 = load_generator(tmp_path / "ros.pt", device="cpu")
    assert "latent_avg" in caplog.text
    assert torch.allclose(g3.synthesize(w), want, atol=1e-6)
    assert torch.allclose(g3.latent_avg, g.mean_latent(10000, seed=0)[0], atol=1e-6)
    assert torch.allclose(load_discriminator(tmp_path / "ros.pt", device="cpu")(x), d(x), atol=1e-6)
    # pSp-family wrapper (e4e / HFGI): decoder.* keys and an [n_latent, D] latent_avg
    wrapped = {f"decoder.{k}": v for k, v in generator_to_rosinality(g).items()}
    wrapped["encoder.styles.0.weight"] = torch.zeros(1)
    torch.save(
        {"state_dict": wrapped, "latent_avg": torch.full((g.n_latent, 16), 2.0), "opts": {}},
        tmp_path / "e4e.pt",
    )
    g4 = load_generator(tmp_path / "e4e.pt", device="cpu")
    assert torch.allclose(g4.synthesize(w), want, atol=1e-6) and torch.allclose(
        g4.latent_avg, torch.full((16,), 2.0)
    )


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x02garbage")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pt")
    torch.save({"egain_format": "faces", "config": {}}, tmp_path / "other.pt")
    for name, pattern in [
        ("corrupt.pt", "corrupt or not a PyTorch file"),
        ("foreign.pt", "not a generator checkpoint"),
        ("other.pt", "egain 'faces' checkpoint"),
        ("missing.pt", "Generator checkpoint not found.*rosinality.*pass its path"),
    ]:
        with pytest.raises(CheckpointError, match=pattern) as exc:
            load_generator(tmp_path / name)
        assert "\n" not in str(exc.value)
    with pytest.raises(CheckpointError, match="holds no discriminator"):
        load_discriminator(tmp_path / "foreign.pt")
    g = build_generator("stylegan2", 16, **TINY)
    sd = g.state_dict()
    sd["convs.0.bias"] = torch.zeros(3)
    torch.save({"egain_format": "generator", "config": g.config, "g_ema": sd}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"'convs\.0\.bias' has shape \[3\]; expected \[16\]"):
        load_generator(tmp_path / "shape.pt")


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx package not installed")
def test_generator_exports_to_onnx(tmp_path):
    g = build_generator("swagan", 32, **TINY).eval()

    class Synth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = g

        def forward(self, w):
            return self.g.synthesize(w, "const")

    torch.onnx.export(Synth(), (torch.randn(2, g.n_latent, 16),), str(tmp_path / "g.onnx"), dynamo=False)
    import onnx

    onnx.checker.check_model(onnx.load(str(tmp_path / "g.onnx")))


def test_inference_cache_follows_weight_updates():
    g = build_generator("stylegan2", 16, **TINY).eval()
    w = torch.randn(3, g.style_dim)
    with torch.no_grad():
        before = g.synthesize(w)
        for p in g.convs.parameters():
            p.mul_(1.5)  # an optimiser-style in-place update bumps the version counter
        after = g.synthesize(w)
        g.convs[1].modconv.weight.data.mul_(2.0)  # bypasses version tracking: clear_cache() is documented
        g.clear_cache()
        cleared = g.synthesize(w)
    assert not torch.allclose(before, after)
    assert torch.allclose(cleared, g.synthesize(w), atol=1e-5)  # grad-enabled path never caches
    with torch.inference_mode():  # a generator built in inference mode has no version counters
        gi = build_generator("swagan", 32, **TINY).eval()
        assert gi.synthesize(w).shape == (3, 3, 32, 32)


def test_swagan_discriminator_matches_literal_forward():
    """The wavelet D, in the published order: DWT of the image; per level FromRGB (IWT -> FIR
    down-sampling -> DWT of the running input, then a 3x3 conv added to the features) and a
    conv + down-conv block; the last FromRGB at 4x4; then the StyleGAN2 head. (Issue 13: the
    SWAGAN checkerboard is not a D defect either.)"""
    ch = {4: 4, 8: 4, 16: 3, 32: 3}
    sd = rosinality_d("swagan", 32, ch)
    d = discriminator_from_rosinality(sd)
    x = torch.randn(4, 3, 32, 32)

    def layer(x, prefix, k, down):
        i = 0
        if down:
            x = ref_upfirdn(x, BLUR4, 1, 1, (2, 2))  # blur pad for a 3x3 stride-2 conv
            i = 1
        w = sd[f"{prefix}.{i}.weight"]
        y = F.conv2d(x, w / math.sqrt(w[0].numel()), stride=2 if down else 1, padding=0 if down else k // 2)
        return F.leaky_relu(y + sd[f"{prefix}.{i + 1}.bias"].view(1, -1, 1, 1), 0.2) * SQRT2

    inp = ref_dwt(x)  # (4, 12, 16, 16)
    out = None
    for n in range(2):  # levels at 16 and 8 (feature resolution), then the 4x4 FromRGB
        if n > 0:
            inp = ref_dwt(ref_upfirdn(ref_iwt(inp), BLUR4, 1, 2, (1, 1)))
        f = layer(inp, f"from_rgbs.{n}.conv", 3, False)
        out = f if out is None else out + f
        out = layer(layer(out, f"convs.{n}.conv1", 3, False), f"convs.{n}.conv2", 3, True)
    inp = ref_dwt(ref_upfirdn(ref_iwt(inp), BLUR4, 1, 2, (1, 1)))
    out = out + layer(inp, "from_rgbs.2.conv", 3, False)
    std = torch.sqrt(out.var(0, unbiased=False) + 1e-8).mean()
    h = torch.cat([out, std.expand(4, 1, 4, 4)], 1)
    h = layer(h, "final_conv", 3, False).flatten(1)
    h = (
        F.leaky_relu(
            h @ (sd["final_linear.0.weight"] / math.sqrt(h.shape[1])).T + sd["final_linear.0.bias"], 0.2
        )
        * SQRT2
    )
    want = h @ (sd["final_linear.1.weight"] / math.sqrt(h.shape[1])).T + sd["final_linear.1.bias"]
    assert torch.allclose(d(x), want, atol=1e-4 * want.abs().max().item())

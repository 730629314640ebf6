"""Import of published e4e / HFGI checkpoints, from state dicts built here in the published layout.

The builders below follow the reference's key tables (secs. 4.3, 4.4, 5.1-5.3) independently of
the converter: IR(-SE) units, ``styles.{j}.convs/linear``, ``latlayer1/2``, ``residue.*``,
``grid_align.*``, ``decoder.*`` (rosinality names) and ``latent_avg`` [n_styles, 512].
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import smooth_images, tiny_generator
from published_layout import bn, conv, ir_unit, irse_body, prefixed, style_head

import egain.methods as methods
from egain.errors import CheckpointError
from egain.generators import generator_to_rosinality
from egain.methods.composition import basic_encoder_from_checkpoint


def published_e4e_encoder(units, widths, n_styles, dim, input_size, stem=16):
    sd = irse_body(3, units, widths, stem)
    s3 = input_size // 16
    for j in range(n_styles):
        sd |= style_head(j, s3 if j < 3 else (2 * s3 if j < 7 else 4 * s3), widths[3], dim)
    sd["latlayer1.weight"], sd["latlayer1.bias"] = conv((widths[3], widths[2], 1, 1)), torch.zeros(widths[3])
    sd["latlayer2.weight"], sd["latlayer2.bias"] = conv((widths[3], widths[1], 1, 1)), torch.zeros(widths[3])
    return sd


def published_residue(widths, hidden, out_c):
    c0, c1, c2 = widths
    sd = {
        "conv_layer1.0.weight": conv((c0, 3, 3, 3)),
        **bn("conv_layer1.1", c0),
        "conv_layer1.2.weight": torch.full((c0,), 0.25),
    }
    for stage, (cin, d) in ((2, (c0, c1)), (3, (c1, c2))):
        for u in range(3):
            sd |= ir_unit(f"conv_layer{stage}.{u}", cin if u == 0 else d, d, se=False)
    for head in ("condition_scale3", "condition_shift3"):
        sd[f"{head}.0.weight"], sd[f"{head}.0.bias"] = (
            torch.randn(hidden, c2, 3, 3),
            torch.randn(hidden) * 0.1,
        )
        sd[f"{head}.2.weight"], sd[f"{head}.2.bias"] = (
            torch.randn(out_c, hidden, 3, 3) * 0.1,
            torch.randn(out_c) * 0.01,
        )
    return sd


def published_ada(a1, a2, a3, a4):
    sd = {
        "conv_layer1.0.weight": conv((a1, 6, 3, 3)),
        **bn("conv_layer1.1", a1),
        "conv_layer1.2.weight": torch.full((a1,), 0.25),
    }
    spec = {
        "conv_layer2": [(a1, a2), (a2, a2), (a2, a2)],
        "conv_layer3": [(a2, a3), (a3, a3), (a3, a3)],
        "conv_layer4": [(a3, a4), (a4, a4), (a4, a4)],
        "dconv_layer1": [(a4 + a3, a4), (a4, a2), (a2, a2)],
        "dconv_layer2": [(a2 + a2, a2), (a2, a1), (a1, a1)],
        "dconv_layer3": [(a1 + a1, a1), (a1, 3), (3, 3)],
    }
    for stage, units in spec.items():
        for u, (cin, d) in enumerate(units):
            sd |= ir_unit(f"{stage}.{u}", cin, d, se=False)
    return sd


@pytest.fixture(scope="module")
def published():
    """A StyleGAN2 64 px (n_latent 10, style_dim 32) with e4e and HFGI files in the published layout."""
    g = tiny_generator("stylegan2", 64)
    enc = published_e4e_encoder((1, 2, 1, 1), (16, 32, 48, 64), g.n_latent, g.style_dim, 32)
    dec = generator_to_rosinality(g)
    avg = g.latent_avg.expand(g.n_latent, -1).clone()
    opts = {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "stylegan_size": 64}
    e4e = {"state_dict": prefixed("encoder", enc) | prefixed("decoder", dec), "latent_avg": avg, "opts": opts}
    up64 = g.layer_info("up64").channels
    res = published_residue((8, 12, 16), 24, up64)
    hfgi = {
        "state_dict": e4e["state_dict"]
        | prefixed("residue", res)
        | prefixed("grid_align", published_ada(4, 8, 8, 8)),
        "latent_avg": avg,
        "opts": opts,
    }
    return {"g": g, "e4e": e4e, "hfgi": hfgi, "enc": enc, "res": res}


def test_published_e4e_loads_with_weights_in_place(published):
    m = methods.create("e4e", checkpoint=published["e4e"])
    enc = published["enc"]
    assert m.input_size == 32 and m.basic_encoder.coarse_index == 3 and m.basic_encoder.middle_index == 7
    assert torch.equal(m.basic_encoder.heads[9].linear.weight, enc["styles.9.linear.weight"])
    assert torch.equal(
        m.basic_encoder.body.body[1].res_layer[4].running_var, enc["body.1.res_layer.4.running_var"]
    )
    assert torch.equal(m.latent_avg, published["e4e"]["latent_avg"])
    # head 0 by hand from the published tensors on the c3 features: conv(s2)+lrelu(0.01), EqualLinear
    x = smooth_images(2)
    m.eval()
    with torch.no_grad():
        _, (_, _, c3) = m.basic_encoder.body(x, return_units=m.basic_encoder.taps)
        h = F.leaky_relu(
            F.conv2d(c3, enc["styles.0.convs.0.weight"], enc["styles.0.convs.0.bias"], stride=2, padding=1),
            0.01,
        )
        w0 = h.flatten(1) @ (enc["styles.0.linear.weight"] / math.sqrt(32)).T + enc["styles.0.linear.bias"]
        inv = m.invert(x)
    assert torch.allclose(inv.extras["basic_latents"][:, 0] - m.latent_avg[0], w0, atol=1e-4)
    # the decoder came from decoder.* (no generator passed): same images as the original generator
    assert torch.allclose(
        m.generator.synthesize(inv.latents), published["g"].synthesize(inv.latents), atol=1e-5
    )
    assert inv.reconstruction.shape == (2, 3, 32, 32)  # face_pool: 64 px output averaged to the input size


def test_published_hfgi_loads_consultation_fusion_and_ada(published):
    m = methods.create("hfgi", checkpoint=published["hfgi"]).eval()
    assert m.fusion.layer_names == ["up64"] and m.aligner.skip is False
    res = published["res"]
    feat = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        a = F.conv2d(
            feat,
            res["condition_scale3.0.weight"] / math.sqrt(16 * 9),
            res["condition_scale3.0.bias"],
            padding=1,
        )
        a = F.leaky_relu(a, 0.2) * math.sqrt(2)
        a = F.conv2d(
            a, res["condition_scale3.2.weight"] / math.sqrt(24 * 9), res["condition_scale3.2.bias"], padding=1
        )
        a = F.interpolate(a, size=(64, 64), mode="bilinear", align_corners=False)
        scale, _ = m.fusion(feat)["up64"]
        assert torch.allclose(scale, a, atol=1e-4)
        inv = m.invert(smooth_images(2))
    assert inv.extras["aligned_delta"].shape == (2, 3, 32, 32)
    assert not torch.allclose(inv.reconstruction, inv.extras["basic_reconstruction"])


def test_published_file_serves_as_basic_encoder_for_training(published, tmp_path):
    torch.save(published["hfgi"], tmp_path / "ckpt.pt")
    cfg, state = basic_encoder_from_checkpoint(str(tmp_path / "ckpt.pt"), published["g"])
    assert cfg["input_size"] == 32 and cfg["basic_encoder"]["units"] == (1, 2, 1, 1)
    m = methods.create("egain", generator=published["g"], **cfg)
    m.load_state_dict(state, strict=False)
    assert torch.equal(m.basic_encoder.heads[0].linear.bias, published["enc"]["styles.0.linear.bias"])


def test_published_files_for_the_wrong_method_or_generator_fail_clearly(published, tmp_path):
    with pytest.raises(CheckpointError, match="not an HFGI checkpoint"):
        methods.create("hfgi", checkpoint=published["e4e"])
    with pytest.raises(CheckpointError, match="only 'e4e' and 'hfgi' import published weights"):
        methods.create("egain", checkpoint=published["hfgi"])
    with pytest.raises(CheckpointError, match="the encoder predicts 10 x 32 codes"):
        methods.create("e4e", generator=tiny_generator("stylegan2", 32), checkpoint=published["e4e"])
    broken = {
        "state_dict": dict(published["e4e"]["state_dict"]),
        "latent_avg": published["e4e"]["latent_avg"],
    }
    del broken["state_dict"]["encoder.latlayer2.bias"]
    with pytest.raises(
        CheckpointError, match="lacks the published key for 'basic_encoder.lateral_fine.bias'"
    ):
        methods.create("e4e", checkpoint=broken)
    torch.save(published["e4e"], tmp_path / "e4e_ffhq_encode.pt")
    m = methods.create("e4e", checkpoint=tmp_path / "e4e_ffhq_encode.pt")
    assert m.name == "e4e"


def test_missing_published_file_says_where_it_is_published(tmp_path):
    with pytest.raises(CheckpointError, match="github.com/Tengfei-Wang/HFGI.*--checkpoint PATH"):
        methods.create("hfgi", checkpoint=tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="egain train --method egain"):
        methods.create("egain", checkpoint=tmp_path / "model.pt")

"""SAM (seeds/002): attach points, the threshold rule, the multilayer latent through ``injection``, the
editing rule, the regularisers, the invertibility predictor (ours and the published layout), and
``egain invert --method sam`` / ``egain train --method sam-invertibility`` / ``sam-encoder`` end to end."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import image_folder, save_tiny_generator, smooth_images, tiny_generator

from egain.cli.main import main
from egain.encoders.invertibility import (
    DeepLabBase,
    InvertibilityNet,
    LayerHead,
    deeplab_shape,
    from_published_invertibility,
)
from egain.errors import EgainError
from egain.generators import build_generator
from egain.methods import create
from egain.methods.sam import (
    Segmenter,
    default_spaces,
    delta_loss,
    edit_multilayer,
    f_rec_loss,
    feature_masks,
    lanczos_resize,
    latent_space,
    mvg_loss,
    mvg_statistics,
    parse_spaces,
    refine,
    sweep_thresholds,
    synthesize_multilayer,
)

FAST = dict(init="mean", error_metric="l2", lambda_perceptual=0.0, mvg_samples=300)


@pytest.fixture(scope="module")
def g32():
    return tiny_generator("stylegan2", 32)


# ------------------------------------------------------------------------------------------------
# spaces


def test_default_spaces_follow_the_published_blocks():
    def gen(size):
        return build_generator(
            "stylegan2", size, style_dim=8, n_mlp=1, channels={r: 4 for r in (4, 8, 16, 32, 64, 128, 256)}
        )

    assert default_spaces(gen(64)) == ["W+", "F2", "F4", "F6"]
    assert default_spaces(gen(32)) == ["W+", "F2", "F4"]
    assert default_spaces(gen(256)) == ["W+", "F4", "F6", "F8", "F10"]
    g = gen(64)
    sp = latent_space(g, "F4")  # the 16 px block: after conv16 and its ToRGB
    assert (sp.layer, sp.conv, sp.resolution) == ("rgb16", "conv16", 16)
    with pytest.raises(EgainError, match="does not exist"):
        latent_space(g, "F8")  # after the last block: nothing follows it


# ------------------------------------------------------------------------------------------------
# the multilayer latent and the editing rule against hand-written synthesis


def _manual(g, w, after_block):
    """Synthesis op by op; ``after_block(b, x) -> x`` runs after block b's ToRGB."""
    x = g.const.expand(w.shape[0], -1, -1, -1)
    skip = None
    for b in range(len(g.resolutions)):
        convs = [0] if b == 0 else [2 * b - 1, 2 * b]
        for j in convs:
            x = g.convs[j](x, w[:, j], g.convs[j].noise_const)
        skip = g.to_rgbs[b](x, w[:, convs[-1] + 1], skip)
        x = after_block(b, x)
    return skip


def _random_multilayer(g, n=2, seed=0):
    torch.manual_seed(seed)
    spaces = parse_spaces(g, "W+,F2,F4")
    w = g.to_wplus(g.mapping(torch.randn(n, g.style_dim)))
    res = {sp.name: 0.3 * torch.randn(n, sp.channels, sp.resolution, sp.resolution) for sp in spaces[1:]}
    choice = torch.randint(0, len(spaces), (n, g.size, g.size))
    return spaces, w, res, feature_masks(choice, spaces)


@torch.no_grad()
def test_multilayer_latent_through_injection_equals_manual_synthesis(g32):
    spaces, w, res, masks = _random_multilayer(g32)
    y = synthesize_multilayer(g32, w, spaces, res, masks)
    block = {1: "F2", 2: "F4"}  # F_k follows the block ending with conv k

    def add(b, x):
        return x + masks[block[b]] * res[block[b]] if b in block else x

    ref = _manual(g32, w, add)
    assert torch.allclose(y, ref, atol=1e-5)
    assert not torch.allclose(y, g32.synthesize(w, noise_mode="const"), atol=1e-3)


@torch.no_grad()
def test_editing_rule_equals_the_published_blend(g32):
    spaces, w, res, masks = _random_multilayer(g32, seed=1)
    w_edit = w + 0.8 * torch.randn_like(w)
    out = edit_multilayer(g32, w, w_edit, spaces, res, masks)
    block = {1: "F2", 2: "F4"}
    frozen = {}

    def record(b, x):  # unedited pass: features after each attach point, masked residual included
        if b in block:
            x = x + masks[block[b]] * res[block[b]]
            frozen[b] = x
        return x

    _manual(g32, w, record)

    def blend(b, x):
        if b in block:
            m = masks[block[b]]
            return x * (1 - m) + frozen[b] * m
        return x

    ref = _manual(g32, w_edit, blend)
    assert torch.allclose(out, ref, atol=1e-5)
    # zero masks: a plain edit; full F4 mask: blocks up to 16 px keep the unedited features
    zero = {k: torch.zeros_like(v) for k, v in masks.items()}
    plain = edit_multilayer(g32, w, w_edit, spaces, res, zero)
    assert torch.allclose(plain, g32.synthesize(w_edit, noise_mode="const"), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# the threshold rule


def _reference_refine(errors, segments, tau, names):
    """The published ``refine`` written out: visit F_largest..F_smallest, W+; keep the last <= tau."""
    order = sorted([n for n in names if n != "W+"], key=lambda s: -int(s[1:])) + ["W+"]
    out = np.zeros(segments.shape, dtype=np.int64)
    for b in range(segments.shape[0]):
        seg = segments[b].numpy()
        for v in np.unique(seg):
            region = seg == v
            chosen = order[0]
            for name in order:
                if float(errors[b, names.index(name)].numpy()[region].mean()) <= tau:
                    chosen = name
            out[b][region] = names.index(chosen)
    return torch.from_numpy(out)


def test_threshold_rule_matches_the_published_loop(g32):
    spaces = parse_spaces(g32, "W+,F2,F4")
    names = [s.name for s in spaces]
    gen = torch.Generator().manual_seed(0)
    errors = torch.rand(3, 3, 32, 32, generator=gen) * 0.5
    errors[:, 0] += 0.1  # W+ hardest on average, as in practice
    segments = torch.randint(0, 6, (3, 32, 32), generator=gen)
    segments[2] = 7  # one image with a single segment
    for tau in [*sweep_thresholds(), 0.0]:
        assert torch.equal(
            refine(errors, segments, tau, spaces), _reference_refine(errors, segments, tau, names)
        )
    # tau = 1.0 (the sweep's last value): every segment qualifies everywhere -> W+ (most editable)
    assert (refine(errors, segments, 1.0, spaces) == 0).all()
    # tau below every error: the least editable space (F4)
    assert (refine(errors, segments, -1.0, spaces) == names.index("F4")).all()
    assert sweep_thresholds()[:2] == [0.1, 0.125] and sweep_thresholds()[-1] == 1.0


def test_lanczos_masks_are_clipped_and_sized():
    m = torch.zeros(1, 32, 32)
    m[:, 8:24, 8:24] = 1
    r = lanczos_resize(m, 8)
    assert r.shape == (1, 1, 8, 8) and r.min() >= 0 and r.max() <= 1
    assert r[0, 0, 4, 4] == pytest.approx(1.0, abs=1e-3) and r[0, 0, 0, 0] == pytest.approx(0.0, abs=1e-3)


# ------------------------------------------------------------------------------------------------
# segmentation


def test_segmenter_modes_and_face_fusion(monkeypatch):
    from egain.data.synthfaces.parsing import PARSING_CLASSES

    x = torch.zeros(1, 3, 16, 16)
    parsing = torch.zeros(1, 16, 16, dtype=torch.long)
    parsing[0, :, :4] = PARSING_CLASSES.index("skin")
    parsing[0, :, 4:8] = PARSING_CLASSES.index("nose")
    parsing[0, :, 8:12] = PARSING_CLASSES.index("hair")
    seg = Segmenter("auto")(x, parsing)
    assert seg[0, 0, 0] == seg[0, 0, 5] == 1  # skin and nose: one face segment (published fusion)
    assert seg[0, 0, 9] == 17 and seg[0, 0, 14] == 0  # hair, background
    kept = Segmenter("given", fuse_face=False)(x, parsing)
    assert kept[0, 0, 5] == 10  # nose in the 19-class order
    grid = Segmenter("grid", grid_cells=4)(x)
    assert grid.unique().numel() == 16 and grid[0, 0, 0] != grid[0, 0, 4]
    # auto without maps: the bundled parsing network (19-class labels, face fused) when installed
    auto = Segmenter("auto")
    assert auto.resolved_mode(None) == "parsing-net"
    labels = auto(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert labels.shape == (1, 64, 64) and int(labels.max()) < 19
    import egain.faces

    monkeypatch.setitem(sys.modules, "egain.faces.parsing", None)  # the network is not installed
    monkeypatch.delattr(egain.faces, "parsing", raising=False)  # nor reachable as an attribute
    with pytest.raises(EgainError, match="parsing-net.*egain.faces.parsing"):
        Segmenter("parsing-net", parsing_checkpoint="x.pth")(x)


# ------------------------------------------------------------------------------------------------
# regularisers


def test_regularisers_match_the_published_formulas(g32):
    stats = mvg_statistics(g32, 400)
    w = torch.randn(2, g32.n_latent, g32.style_dim)
    ref = []
    for b in range(2):
        v = F.leaky_relu(w[b].double(), 5.0)
        ref.append(
            sum(
                float((v[i] - stats.mean_v) @ stats.inv_cov_v @ (v[i] - stats.mean_v))
                for i in range(v.shape[0])
            )
        )
    assert torch.allclose(mvg_loss(w, stats).double(), torch.tensor(ref, dtype=torch.float64), rtol=1e-4)
    d = [sum(float((w[b, i] - w[b, 0]).norm()) for i in range(1, w.shape[1])) for b in range(2)]
    assert torch.allclose(delta_loss(w), torch.tensor(d), rtol=1e-5)
    res = {"F2": torch.randn(2, 4, 8, 8), "F4": torch.randn(2, 3, 16, 16)}
    f = [sum(float(F.mse_loss(v[b], torch.zeros_like(v[b]))) for v in res.values()) for b in range(2)]
    assert torch.allclose(f_rec_loss(res, 2, w), torch.tensor(f), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# sam by optimisation


def test_sam_lowers_the_loss_and_edits(g32):
    m = create("sam", generator=g32, steps=40, measure_steps=10, tau=0.05, device="cpu", **FAST)
    x = smooth_images(2, 32)
    inv = m.invert(x)
    curve = inv.extras["loss_curve"]
    assert (curve[:, -1] < 0.5 * curve[:, 0]).all()
    start = g32.synthesize(g32.to_wplus(g32.average_latent().expand(2, -1)), noise_mode="const")
    assert F.mse_loss(inv.reconstruction, x) < F.mse_loss(start, x)
    assert inv.extras["layer_map"].shape == (2, 32, 32)
    assert inv.extras["invertibility_f2_map"].shape == (2, 1, 32, 32)
    assert set(inv.extras["feature_residuals"]) == {"F2", "F4"}
    # a zero edit gives the reconstruction up to the soft (Lanczos) mask edges, where the published
    # blend x (1 - m) + (x + m df) m applies m^2 df instead of m df
    edited = m.edit(inv, torch.zeros(1, g32.n_latent, g32.style_dim))
    assert (edited - inv.reconstruction).abs().mean() < 0.1 * (inv.reconstruction - start).abs().mean()
    assert not torch.allclose(m.edit(inv, torch.ones(1, g32.n_latent, g32.style_dim)), edited, atol=1e-2)
    sweep = m.sweep(x[:1], [0.0, 1.0], steps=2)
    assert (sweep[1].extras["layer_map"] == 0).all()  # tau 1: all W+


# ------------------------------------------------------------------------------------------------
# the predictor: published layout


def _tiny_deeplab_ckpt(spaces, dropout):
    torch.manual_seed(0)
    base = DeepLabBase(8, blocks=(1, 1, 1), width=4, aspp_width=8, dropout=dropout)
    for mod in base.modules():  # non-trivial batch-norm statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    heads = {s: LayerHead() for s in spaces}
    for h in heads.values():
        h.m[1].running_mean.uniform_(-0.1, 0.1)
    ckpt = {"sd_base": {"module." + k: v for k, v in base.state_dict().items()}}  # DataParallel names
    ckpt.update({s: {"module." + k: v for k, v in h.state_dict().items()} for s, h in heads.items()})
    return ckpt, base.eval(), {s: h.eval() for s, h in heads.items()}


def _head_by_hand(state, f):
    """The published head written out: ConvT 3x3 -> BN -> LeakyReLU(0.2) -> ConvT 1x1 -> ReLU."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    y = F.conv_transpose2d(f, s["m.0.weight"], s["m.0.bias"], padding=1)
    y = F.batch_norm(y, s["m.1.running_mean"], s["m.1.running_var"], s["m.1.weight"], s["m.1.bias"], eps=1e-5)
    y = F.conv_transpose2d(F.leaky_relu(y, 0.2), s["m.3.weight"], s["m.3.bias"])
    return F.relu(y)


@pytest.mark.parametrize("dropout", [False, True])
def test_published_invertibility_checkpoint_loads_strictly(dropout, tmp_path, g32):
    spaces = ["W+", "F2", "F4"]
    ckpt, base, _ = _tiny_deeplab_ckpt(spaces, dropout)
    assert ("decoder.last_conv.8.weight" in {k.removeprefix("module.") for k in ckpt["sd_base"]}) == dropout
    net = from_published_invertibility(ckpt)
    assert net.spaces == spaces
    x = smooth_images(2, 32)
    with torch.no_grad():
        f = base(x)
        ref = torch.cat([_head_by_hand(ckpt[s], f) for s in spaces], 1)
        assert torch.allclose(net(x), ref, atol=1e-5)
    # a file in that layout drives sam (its heads are picked by name)
    path = tmp_path / "sam_invertibility.pt"
    torch.save(ckpt, path)
    m = create("sam", generator=g32, invertibility=str(path), steps=2, device="cpu", **FAST)
    inv = m.invert(x)
    assert torch.allclose(inv.extras["invertibility_maps"], ref, atol=1e-5)
    bad = dict(ckpt)
    bad.pop("F4")
    with pytest.raises(EgainError, match="no head for F4"):
        from_published_invertibility(bad, spaces)


def test_full_size_deeplab_has_the_published_key_layout():
    with torch.device("meta"):
        net = InvertibilityNet(["W+", "F4", "F6", "F8", "F10"], DeepLabBase())
    sd = net.base.state_dict()
    expect = {
        "backbone.conv1.weight": (64, 3, 7, 7),
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer3.22.conv3.weight": (1024, 256, 1, 1),
        "backbone.layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "backbone.layer4.2.conv2.weight": (512, 512, 3, 3),
        "aspp.aspp4.atrous_conv.weight": (256, 2048, 3, 3),
        "aspp.global_avg_pool.1.weight": (256, 2048, 1, 1),
        "aspp.conv1.weight": (256, 1280, 1, 1),
        "decoder.conv1.weight": (48, 256, 1, 1),
        "decoder.last_conv.0.weight": (256, 304, 3, 3),
        "decoder.last_conv.6.weight": (8, 256, 1, 1),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert "backbone.layer4.3.conv1.weight" not in sd  # multi-grid layer4: three blocks
    assert net.base.backbone.layer4[2].conv2.dilation == (8, 8)  # 2 x grid (1, 2, 4)
    assert deeplab_shape(sd) == {"blocks": (3, 4, 23), "width": 64, "aspp_width": 256, "dropout": False}
    assert sorted(net.heads["Wplus"].state_dict()) == sorted(
        ["m.0.weight", "m.0.bias", "m.1.weight", "m.1.bias", "m.1.running_mean", "m.1.running_var",
         "m.1.num_batches_tracked", "m.3.weight", "m.3.bias"]
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# end to end through the CLI


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam")
    return {
        "gen": save_tiny_generator(root / "g.pt", "stylegan2", 32),
        "data": image_folder(root / "data", 8, 32),
        "root": root,
    }


@pytest.fixture(scope="module")
def trained_predictor(world):
    run = world["root"] / "inv_run"
    args = [
        "train",
        "--method",
        "sam-invertibility",
        "--generator",
        str(world["gen"]),
        "--data",
        str(world["data"]),
    ]
    args += [
        "--out",
        str(run),
        "--iters",
        "3",
        "--batch",
        "2",
        "--lr",
        "1e-3",
        "--width",
        "4",
        "--levels",
        "2",
    ]
    args += ["--target-steps", "3", "--target-init", "mean", "--error-metric", "l2"]
    args += ["--target-lambda-perceptual", "0", "--mvg-samples", "300"]
    args += ["--log-every", "1", "--val-every", "3", "--ckpt-every", "3", "--device", "cpu"]
    assert main(args) == 0
    return run


def test_train_sam_invertibility_end_to_end(trained_predictor, world):
    run = trained_predictor
    assert (run / "model.pt").exists() and (run / "log.jsonl").exists()
    m = create("sam-invertibility", checkpoint=run / "model.pt", device="cpu")
    assert m.space_names == ["W+", "F2", "F4"]
    assert m.config["target_error"] == "l2"  # the scale of its maps, which decides sam's default tau
    maps = m.predict(smooth_images(2, 32))
    assert maps.shape == (2, 3, 32, 32) and (maps >= 0).all()
    # the targets are the single-space inversions' error maps, cached by image content
    x = smooth_images(2, 32, seed=5)
    opts = {
        "target_steps": 2,
        "target_init": "mean",
        "error_metric": "l2",
        "target_lambda_perceptual": 0,
        "mvg_samples": 300,
    }
    t = m.targets(x, opts)
    assert t.shape == (2, 3, 32, 32)
    assert torch.equal(m.targets(x.flip(-1), opts), t.flip(-1))  # a flipped image reuses its mirror


def test_invert_sam_end_to_end_writes_maps(trained_predictor, world, tmp_path):
    out = tmp_path / "rec"
    args = ["invert", "--method", "sam", "--generator", str(world["gen"]), "--input", str(world["data"])]
    args += ["--output", str(out), "--steps", "3", "--init", "mean", "--error-metric", "l2"]
    args += ["--lambda-perceptual", "0", "--mvg-samples", "300", "--device", "cpu"]
    args += ["--invertibility", str(trained_predictor / "model.pt"), "--grid-cells", "4"]
    assert main(args) == 0
    assert len(list(out.glob("*.png"))) == 8
    maps = sorted(p.name for p in (out / "maps").glob("face_000_*.png"))
    assert "face_000_layer_map.png" in maps and "face_000_invertibility_wplus_map.png" in maps
    assert "face_000_segment_map.png" in maps


def test_train_and_invert_sam_encoder(trained_predictor, world, tmp_path):
    run = tmp_path / "enc"
    args = [
        "train",
        "--method",
        "sam-encoder",
        "--generator",
        str(world["gen"]),
        "--data",
        str(world["data"]),
    ]
    args += ["--out", str(run), "--iters", "3", "--batch", "2", "--lr", "1e-3", "--width", "4"]
    args += ["--invertibility", str(trained_predictor / "model.pt"), "--lambda-perceptual", "0"]
    args += ["--mvg-samples", "300", "--log-every", "1", "--val-every", "3", "--ckpt-every", "3"]
    assert main([*args, "--device", "cpu"]) == 0
    m = create("sam-encoder", checkpoint=run / "model.pt", device="cpu")
    # an l2 predictor on a 32 px generator has no stored tau: calibrated on each batch's W+ maps
    assert m.config["error_scale"] == "l2" and m.config["tau"] is None
    inv = m.invert(smooth_images(2, 32))
    assert inv.reconstruction.shape == (2, 3, 32, 32)
    assert set(inv.extras["feature_residuals"]) == {"F2", "F4"}
    e = m.edit(inv, torch.zeros(1, m.generator.n_latent, m.generator.style_dim))
    assert e.shape == inv.reconstruction.shape


# ------------------------------------------------------------------------------------------------
# spatial perceptual distances (the error maps)


def test_spatial_lpips_averages_to_the_scalar_distance():
    from egain.metrics.lpips import LPIPS

    torch.manual_seed(0)
    lp = LPIPS("alex")
    for lin in lp.linear:  # positive weights, as the published linear layers
        lin.weight.data.uniform_(0.1, 1.0)
    x, y = smooth_images(2, 64), smooth_images(2, 64, seed=1)
    scalar = lp(x, y)
    spatial = lp(x, y, spatial=True)
    assert spatial.shape == (2, 1, 64, 64)
    assert torch.allclose(spatial.mean(dim=(1, 2, 3)), scalar, rtol=0.05)


def test_spatial_face_feature_distance_is_local():
    from egain.losses.reconstruction import build_spatial_perceptual

    dist = build_spatial_perceptual({}, torch.device("cpu"))
    assert dist.kind.startswith("face-features")
    x = smooth_images(1, 64)
    y = x.clone()
    y[..., :, :24] = -x[..., :, :24]  # change the left part only
    with torch.no_grad():
        d = dist(y, x)
        assert d.shape == (1, 1, 64, 64)
        assert float(dist(x, x).abs().max()) < 1e-4
    assert d[..., :, :16].mean() > 3 * d[..., :, 48:].mean()


def test_sam_uses_given_parsing_maps_and_the_predictor_method_inverts(g32, trained_predictor):
    from egain.data.synthfaces.parsing import PARSING_CLASSES

    x = smooth_images(1, 32)
    parsing = torch.full((1, 32, 32), PARSING_CLASSES.index("hair"), dtype=torch.long)
    parsing[:, 8:24, 8:16] = PARSING_CLASSES.index("skin")
    parsing[:, 8:24, 16:24] = PARSING_CLASSES.index("left_eye")
    m = create("sam", generator=g32, steps=2, measure_steps=2, device="cpu", **FAST)
    inv = m.invert(x, parsing=parsing)
    seg = inv.extras["segment_map"]
    assert seg.unique().tolist() == [1, 17]  # skin + eye fused into one face segment; hair
    layer = inv.extras["layer_map"]
    assert layer[seg == 1].unique().numel() == 1 and layer[seg == 17].unique().numel() == 1
    pred = create("sam-invertibility", checkpoint=trained_predictor / "model.pt", device="cpu")
    inv2 = pred.invert(x, steps=2, init="mean", lambda_perceptual=0.0, mvg_samples=300)
    assert torch.allclose(inv2.extras["invertibility_maps"], pred.predict(x))


def test_auto_invertibility_uses_the_bundled_predictor_only_for_its_own_generator(
    trained_predictor, world, tmp_path, monkeypatch
):
    """``invertibility="auto"`` (the default) takes a bundled sam-invertibility model when the
    generator is the zoo generator it was trained on, and measures the maps for any other."""
    import shutil

    from egain import zoo
    from egain.generators import load_generator
    from egain.methods.sam import bundled_predictor_name
    from egain.zoo.manage import add_to_zoo

    zdir = tmp_path / "zoo"
    zdir.mkdir()
    shutil.copy(world["gen"], zdir / "gan-stylegan2-32.pt")
    add_to_zoo(
        "sam-invertibility-stylegan2-32",
        trained_predictor / "model.pt",
        trained_predictor / "run.json",
        kind="method",
        weights_dir=zdir,
        generator_zoo="gan-stylegan2-32",
    )
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", zdir)
    g = load_generator(world["gen"], device="cpu")
    assert bundled_predictor_name(g) == "sam-invertibility-stylegan2-32"
    other = tiny_generator("stylegan2", 32, seed=5)
    assert bundled_predictor_name(other) is None

    x = smooth_images(1, 32)
    pred = create("sam-invertibility", checkpoint=trained_predictor / "model.pt", device="cpu")
    m = create("sam", generator=g, steps=1, grid_cells=4, device="cpu", **FAST)
    inv = m.invert(x)
    assert torch.allclose(inv.extras["invertibility_maps"], pred.predict(x))
    # options the predictor cannot answer make "auto" measure: another error scale, a space it has
    # no head for, measure steps asked for
    for asked in ({"error_metric": "perceptual"}, {"spaces": "W+,F0"}, {"measure_steps": 1}):
        opts = {**FAST, "grid_cells": 4, **asked}
        other_ask = create("sam", generator=g, device="cpu", **opts)
        assert other_ask.predictor(other_ask._resolve({}, other_ask.config)) is None, asked
    zoo_spec = create(
        "sam", generator=g, steps=1, invertibility="zoo:sam-invertibility-stylegan2-32", grid_cells=4, **FAST
    )
    assert torch.allclose(zoo_spec.invert(x).extras["invertibility_maps"], pred.predict(x))
    measured = create("sam", generator=other, steps=1, measure_steps=1, grid_cells=4, device="cpu", **FAST)
    maps = measured.invert(x).extras["invertibility_maps"]
    assert maps.shape == (1, 3, 32, 32) and not torch.allclose(maps, pred.predict(x))


def test_invert_files_hands_sam_the_parsing_maps_beside_the_images(g32, tmp_path, monkeypatch):
    """``X_parsing.png`` beside every image reaches ``sam.invert(parsing=...)`` (egain invert's loop),
    the warm-up call included; with a map missing the method segments by itself."""
    from PIL import Image

    import egain.methods.sam as sam_mod
    from egain.data.synthfaces.parsing import PARSING_CLASSES
    from egain.workflows.inversion import invert_files

    folder = image_folder(tmp_path / "faces", 2, 32)
    files = sorted(p for p in folder.glob("*.png"))
    label = np.full((32, 32), PARSING_CLASSES.index("hair"), dtype=np.uint8)
    label[8:24, 8:24] = PARSING_CLASSES.index("skin")
    for f in files:
        Image.fromarray(label, mode="L").save(f.with_name(f.stem + "_parsing.png"))
    seen = []

    def run(m, out, warmup):
        seen.clear()
        invert_files(m, files, tmp_path / out, label="sam", progress=False, warmup=warmup,
                     on_batch=lambda c, inv: seen.append(inv))  # fmt: skip
        return seen[0].extras["segment_map"]

    # "given" fails without maps, so the warm-up call must get them too
    given = create("sam", generator=g32, steps=1, measure_steps=1, segmenter="given", device="cpu", **FAST)
    seg = run(given, "out", warmup=True)
    assert seg.shape == (2, 32, 32) and seg.unique().tolist() == [1, 17]  # face (skin) and hair
    assert (seg[:, 8:24, 8:24] == 1).all()
    # a map missing: "auto" segments by itself (the grid, with no parser installed)
    monkeypatch.setattr(sam_mod, "_bundled_parser", lambda: False)
    files[1].with_name(files[1].stem + "_parsing.png").unlink()
    auto = create("sam", generator=g32, steps=1, measure_steps=1, grid_cells=2, device="cpu", **FAST)
    assert run(auto, "out2", warmup=False).unique().numel() == 4

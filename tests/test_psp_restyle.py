"""pSp, ReStyle-pSp and ReStyle-e4e: shapes, the ReStyle loop, published layouts, train + invert.

The published-layout files are built here from the reference's key tables (secs. 5.1-5.5):
``encoder.input_layer.*``, ``encoder.body.{i}.*`` (IR-SE units), ``encoder.styles.{j}.*``
(map2style), ``encoder.latlayer1/2.*`` (pSp FPN), ``encoder.linear.*`` (pSp IntoW), ``decoder.*``
(rosinality names) and ``latent_avg``. The expected outputs come from a plain re-computation of
the published forward written in this file (``ref_*``: functional IR-SE units, FPN, map2style,
the ReStyle loop) on the published tensors, with the original generator.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import (
    smooth_images,
    tiny_generator,
    tiny_training_files,
)
from published_layout import conv, irse_body, prefixed, ref_bn, style_head

import egain.methods as methods
from egain.cli.main import main
from egain.errors import CheckpointError
from egain.generators import generator_to_rosinality

SMALL = {"units": (1, 1, 1, 1), "widths": (8, 8, 16, 16), "head_channels": 16}
UNITS, WIDTHS, STEM = (1, 2, 1, 1), (16, 32, 48, 64), 16


# ------------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize(
    "name, cfg",
    [
        ("psp", {"encoder": SMALL}),
        ("psp", {"encoder": SMALL, "learn_in_w": True}),
        ("restyle-psp", {"encoder": SMALL}),
        ("restyle-psp", {"encoder": {"type": "fpn", **SMALL}}),
        ("restyle-e4e", {"encoder": SMALL}),
    ],
)
def test_shapes(size, name, cfg):
    g = tiny_generator("stylegan2", size)
    m = methods.create(name, generator=g, **cfg)
    inv = m.invert(smooth_images(2, size))
    assert inv.latents.shape == (2, g.n_latent, g.style_dim)
    assert inv.reconstruction.shape == (2, 3, size, size)
    if name.startswith("restyle"):
        assert len(inv.extras["reconstructions"]) == 5 == len(inv.extras["latents_per_iteration"])
        assert torch.equal(inv.extras["reconstructions"][-1], inv.reconstruction)
        assert len(m.invert(smooth_images(1, size), iterations=2).extras["reconstructions"]) == 2
    if cfg.get("learn_in_w"):
        assert torch.equal(inv.latents[:, 0], inv.latents[:, -1])  # one W code on every layer
    edited = m.edit(inv, torch.randn(g.style_dim), 0.5)
    assert edited.shape == (2, 3, size, size)


def test_psp_styles_follow_the_generator_and_start_from_latent_avg():
    g = tiny_generator("stylegan2", 32)
    m = methods.create("psp", generator=g, encoder=SMALL)
    assert len(m.encoder.heads) == g.n_latent == 8
    assert [len(h.convs) // 2 for h in m.encoder.heads] == [1, 1, 1, 2, 2, 2, 2, 3]  # c3, p2, p1 at 32 px
    x = smooth_images(2)
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m.encode(x) - m.encoder(x), m.latent_avg.expand(2, -1, -1), atol=1e-5)
        m.start_from_latent_avg = False
        assert torch.equal(m.encode(x), m.encoder(x))


# ------------------------------------------------------------------------------------------------
# the ReStyle loop against a straightforward computation


@pytest.mark.parametrize("name", ["restyle-psp", "restyle-e4e"])
def test_restyle_loop_matches_a_straightforward_reference(name):
    g = tiny_generator("stylegan2", 32)
    m = methods.create(name, generator=g, input_size=16, encoder=SMALL).eval()
    x = smooth_images(2, 16)
    inv = m.invert(x, iterations=4)
    with torch.no_grad():
        avg = F.adaptive_avg_pool2d(g.synthesize(m.latent_avg[None], noise_mode="const"), 16)
        y, w = avg.expand(2, -1, -1, -1), None
        for t in range(4):
            delta = m.encoder(torch.cat([x, y], 1))
            w = delta + (m.latent_avg if t == 0 else w)
            y = F.adaptive_avg_pool2d(g.synthesize(w, noise_mode="const"), 16)
            assert torch.allclose(inv.extras["latents_per_iteration"][t], w, atol=1e-5)
            assert torch.allclose(inv.extras["reconstructions"][t], y, atol=1e-5)


def test_restyle_training_loss_is_the_sum_over_steps_and_no_gradient_crosses_steps():
    g = tiny_generator("stylegan2", 16)
    m = methods.create("restyle-psp", generator=g, encoder=SMALL, iterations=3, memory_format=None)
    m.setup_training(
        methods.TrainingContext(
            torch.device("cpu"), {"train_noise": "const"}, {**m.loss_weights, "lpips": 0, "id": 0}
        )
    )
    m.set_training_mode()
    x = smooth_images(2, 16)
    torch.manual_seed(0)
    loss, terms = m.training_step(x, 0)
    seen = []
    m.run(x, 3, noise_mode="const", step_hook=lambda t, y, w: seen.append(F.mse_loss(y, x)))
    assert torch.allclose(loss, sum(seen), atol=1e-6)
    assert torch.allclose(terms["l2"], seen[-1].detach(), atol=1e-6) and "l2_first" in terms
    # gradients of the sum equal the sum of per-step gradients (each step's inputs detached)
    loss.backward()
    grad = m.encoder.heads[0].linear.weight.grad.clone()
    m.zero_grad()
    ys = []
    m.run(x, 3, noise_mode="const", step_hook=lambda t, y, w: ys.append(F.mse_loss(y, x)))
    for v in ys:
        v.backward(retain_graph=True)
    assert torch.allclose(grad, m.encoder.heads[0].linear.weight.grad, rtol=1e-4, atol=1e-7)


def test_restyle_e4e_head_is_w0_plus_progressive_offsets():
    g = tiny_generator("stylegan2", 16)
    m = methods.create("restyle-e4e", generator=g, encoder=SMALL).eval()
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        f = m.encoder.body(x)
        w0 = m.encoder.heads[0](f)
        full = m.encoder(x)
        assert torch.allclose(full[:, 3], w0 + m.encoder.heads[3](f), atol=1e-6)
        m.encoder.set_progressive_stage(2)
        part = m.encoder(x)
    assert torch.allclose(part[:, 2], full[:, 2]) and torch.allclose(part[:, 3], w0, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# published layouts, and a functional re-computation of the published forward


def published_body(input_nc):
    return irse_body(input_nc, UNITS, WIDTHS, STEM)


def published_styles(spatials, dim, in_c):
    sd = {}
    for j, spatial in enumerate(spatials):
        sd |= style_head(j, spatial, in_c, dim)
    return sd


def ref_body(sd, x):
    """Published ``input_layer`` + ``body`` (bottleneck_IR_SE), returning every unit's output."""
    x = F.prelu(
        ref_bn(F.conv2d(x, sd["input_layer.0.weight"], padding=1), sd, "input_layer.1"),
        sd["input_layer.2.weight"],
    )
    outs, i, cin = [], 0, STEM
    for n, d in zip(UNITS, WIDTHS, strict=True):
        for u in range(n):
            stride, p = (2 if u == 0 else 1), f"body.{i}"
            if cin == d:
                short = F.max_pool2d(x, 1, stride)
            else:
                short = ref_bn(
                    F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride),
                    sd,
                    f"{p}.shortcut_layer.1",
                )
            r = ref_bn(x, sd, f"{p}.res_layer.0")
            r = F.prelu(F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1), sd[f"{p}.res_layer.2.weight"])
            r = ref_bn(
                F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=stride, padding=1), sd, f"{p}.res_layer.4"
            )
            s = F.adaptive_avg_pool2d(r, 1)
            s = torch.sigmoid(
                F.conv2d(
                    F.relu(F.conv2d(s, sd[f"{p}.res_layer.5.fc1.weight"])), sd[f"{p}.res_layer.5.fc2.weight"]
                )
            )
            x = r * s + short
            outs.append(x)
            cin, i = d, i + 1
    return outs


def ref_style(sd, j, x):
    """Published ``GradualStyleBlock``: convs (LeakyReLU 0.01), view, EqualLinear (lr_mul 1)."""
    k = 0
    while f"styles.{j}.convs.{k}.weight" in sd:
        x = F.leaky_relu(
            F.conv2d(x, sd[f"styles.{j}.convs.{k}.weight"], sd[f"styles.{j}.convs.{k}.bias"], 2, 1), 0.01
        )
        k += 2
    w = sd[f"styles.{j}.linear.weight"]
    return x.reshape(x.shape[0], -1) @ (w / math.sqrt(w.shape[1])).T + sd[f"styles.{j}.linear.bias"]


def ref_up_add(x, y):
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


def ref_psp_encoder(sd, x, n_styles):
    outs = ref_body(sd, x)
    c1, c2, c3 = outs[2], outs[3], outs[4]  # ends of stages 2, 3, 4 (units (1,2,1,1))
    p2 = ref_up_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
    p1 = ref_up_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
    return torch.stack([ref_style(sd, j, c3 if j < 3 else p2 if j < 7 else p1) for j in range(n_styles)], 1)


def ref_backbone_encoder(sd, x, n_styles, progressive):
    f = ref_body(sd, x)[-1]
    rows = [ref_style(sd, j, f) for j in range(n_styles)]
    if progressive:
        rows = [rows[0]] + [rows[0] + r for r in rows[1:]]
    return torch.stack(rows, 1)


def pool(y, size):
    return F.adaptive_avg_pool2d(y, size) if y.shape[-1] != size else y


@pytest.fixture(scope="module")
def world():
    """A StyleGAN2 64 px (n_latent 10, style_dim 32); encoders on 32 px input, as published at 256."""
    torch.manual_seed(1)
    g = tiny_generator("stylegan2", 64)
    n, dim = g.n_latent, g.style_dim
    dec = prefixed("decoder", generator_to_rosinality(g))
    avg = g.latent_avg.expand(n, -1).clone()
    psp_enc = published_body(3) | published_styles([2] * 3 + [4] * 4 + [8] * (n - 7), dim, WIDTHS[3])
    psp_enc |= {
        "latlayer1.weight": conv((WIDTHS[3], WIDTHS[2], 1, 1)),
        "latlayer1.bias": torch.randn(WIDTHS[3]) * 0.1,
        "latlayer2.weight": conv((WIDTHS[3], WIDTHS[1], 1, 1)),
        "latlayer2.bias": torch.randn(WIDTHS[3]) * 0.1,
    }
    intow = published_body(3) | {
        "linear.weight": torch.randn(dim, WIDTHS[3]),
        "linear.bias": torch.randn(dim) * 0.1,
    }
    rs_enc = published_body(6) | published_styles([2] * n, dim, WIDTHS[3])
    opts = {"start_from_latent_avg": True, "output_size": 64, "device": "cuda:0"}

    def file(enc, **o):
        return {"state_dict": prefixed("encoder", enc) | dec, "latent_avg": avg, "opts": {**opts, **o}}

    return {
        "g": g,
        "avg": avg,
        "psp_enc": psp_enc,
        "intow": intow,
        "rs_enc": rs_enc,
        "psp": file(psp_enc, encoder_type="GradualStyleEncoder", input_nc=3),
        "psp_w": {
            **file(intow, encoder_type="BackboneEncoderUsingLastLayerIntoW", learn_in_w=True),
            "latent_avg": avg[:1].clone(),
        },
        "restyle_psp": file(rs_enc, encoder_type="BackboneEncoder", input_nc=6, n_iters_per_batch=5),
        "restyle_e4e": {
            **file(rs_enc, encoder_type="ProgressiveBackboneEncoder", input_nc=6),
            "optimizer": {"state": {}},  # published e4e-variant files carry training state
            "discriminator_state_dict": {"mlp.0.weight": torch.zeros(1)},
        },
    }


def test_published_psp_loads_strictly_and_matches_the_published_forward(world):
    m = methods.create("psp", checkpoint=world["psp"])
    assert m.input_size == 32 and not m.learn_in_w and m.start_from_latent_avg
    assert (m.encoder.coarse_index, m.encoder.middle_index) == (3, 7)
    assert torch.equal(m.encoder.lateral_mid.weight, world["psp_enc"]["latlayer1.weight"])
    x = smooth_images(2, 32)
    inv = m.invert(x)
    with torch.no_grad():
        w = ref_psp_encoder(world["psp_enc"], x, 10) + world["avg"]
        y = pool(world["g"].synthesize(w, noise_mode="const"), 32)
    assert (inv.latents - w).abs().max() < 1e-4
    assert (inv.reconstruction - y).abs().max() < 1e-4
    assert inv.extras["full_resolution"].shape == (2, 3, 64, 64)


def test_published_psp_learn_in_w_loads(world):
    m = methods.create("psp", checkpoint=world["psp_w"])
    assert m.learn_in_w and m.input_size == 64  # no head sizes to read it from: min(G size, 256)
    x = smooth_images(2, 64)
    inv = m.invert(x)
    with torch.no_grad():
        f = ref_body(world["intow"], x)[-1].mean((2, 3))
        lw = world["intow"]["linear.weight"]
        w = f @ (lw / math.sqrt(lw.shape[1])).T + world["intow"]["linear.bias"] + world["avg"][0]
    assert (inv.latents - w[:, None]).abs().max() < 1e-4


@pytest.mark.parametrize("name, key", [("restyle-psp", "restyle_psp"), ("restyle-e4e", "restyle_e4e")])
def test_published_restyle_loads_strictly_and_matches_the_published_loop(world, name, key):
    m = methods.create(name, checkpoint=world[key])
    assert m.iterations == 5 and m.input_size == 32
    assert torch.equal(m.encoder.heads[4].convs[0].weight, world["rs_enc"]["styles.4.convs.0.weight"])
    x = smooth_images(2, 32)
    inv = m.invert(x)
    g, avg = world["g"], world["avg"]
    with torch.no_grad():
        y = pool(g.synthesize(avg[None], noise_mode="const"), 32).expand(2, -1, -1, -1)
        w = None
        for t in range(5):
            delta = ref_backbone_encoder(world["rs_enc"], torch.cat([x, y], 1), 10, name == "restyle-e4e")
            w = delta + (avg if t == 0 else w)
            y = pool(g.synthesize(w, noise_mode="const"), 32)
            assert (inv.extras["latents_per_iteration"][t] - w).abs().max() < 1e-4
            assert (inv.extras["reconstructions"][t] - y).abs().max() < 1e-4


def test_published_restyle_fpn_variant_loads(world):
    enc = dict(world["psp_enc"])
    enc["input_layer.0.weight"] = conv((STEM, 6, 3, 3))
    ckpt = {
        **world["restyle_psp"],
        "state_dict": prefixed("encoder", enc) | prefixed("decoder", generator_to_rosinality(world["g"])),
    }
    ckpt["opts"] = {**ckpt["opts"], "encoder_type": "GradualStyleEncoder"}
    m = methods.create("restyle-psp", checkpoint=ckpt).eval()
    assert m.config["encoder"]["type"] == "fpn"
    x = torch.randn(1, 6, 32, 32)
    with torch.no_grad():
        assert (m.encoder(x) - ref_psp_encoder(enc, x, 10)).abs().max() < 1e-4


def test_published_files_for_the_wrong_method_fail_in_one_line(world, tmp_path):
    with pytest.raises(CheckpointError, match="ProgressiveBackboneEncoder.*--method restyle-e4e"):
        methods.create("restyle-psp", checkpoint=world["restyle_e4e"])
    with pytest.raises(CheckpointError, match="ReStyle checkpoint"):
        methods.create("psp", checkpoint=world["restyle_psp"])
    with pytest.raises(CheckpointError, match="takes 6"):
        methods.create("restyle-psp", checkpoint={**world["psp"], "opts": {}})
    resnet = {**world["restyle_psp"], "opts": {"encoder_type": "ResNetBackboneEncoder"}}
    with pytest.raises(CheckpointError, match="ResNet34"):
        methods.create("restyle-psp", checkpoint=resnet)
    broken = {**world["psp"], "state_dict": dict(world["psp"]["state_dict"])}
    del broken["state_dict"]["encoder.latlayer2.bias"]
    with pytest.raises(CheckpointError, match="lacks the published key for 'encoder.lateral_fine.bias'"):
        methods.create("psp", checkpoint=broken)
    torch.save(world["restyle_e4e"], tmp_path / "restyle_e4e_ffhq_encode.pt")
    assert (
        methods.create(
            "restyle-e4e", checkpoint=tmp_path / "restyle_e4e_ffhq_encode.pt", iterations=2
        ).iterations
        == 2
    )


@pytest.mark.parametrize(
    "name, where",
    [
        ("psp", "eladrich/pixel2style2pixel \\(psp_ffhq_encode.pt\\)"),
        ("restyle-psp", "restyle-encoder \\(restyle_psp_ffhq_encode.pt\\)"),
        ("restyle-e4e", "restyle-encoder \\(restyle_e4e_ffhq_encode.pt\\)"),
    ],
)
def test_missing_published_file_names_where_it_is_published(name, where, tmp_path):
    with pytest.raises(CheckpointError, match=where):
        methods.create(name, checkpoint=tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------------
# egain train + egain invert, end to end


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("psp_restyle")
    return tiny_training_files(root)


@pytest.mark.parametrize(
    "name, extra",
    [
        ("psp", ["--lambda-w-norm", "0.01"]),
        ("restyle-psp", ["--iterations", "2"]),
        (
            "restyle-e4e",
            [
                "--iterations",
                "2",
                "--progressive-start",
                "1",
                "--progressive-every",
                "1",
                "--w-pool-size",
                "3",
                "--r1-every",
                "2",
            ],
        ),
    ],
)
def test_train_and_invert_end_to_end(files, tmp_path, name, extra):
    run = tmp_path / "run"
    args = ["train", "--method", name, "--generator", str(files["gen"]), "--data", str(files["data"])]
    args += ["--out", str(run), "--iters", "4", "--batch", "2", "--lambda-lpips", "0", "--lambda-id", "0"]
    args += ["--log-every", "2", "--val-every", "4", "--ckpt-every", "4", "--device", "cpu"]
    args += ["--config", json.dumps({"encoder": SMALL}), *extra]
    assert main(args) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 2 and "l2" in log[0]
    if name == "restyle-e4e":
        assert log[1]["stage"] >= 1 and "w_reg" in log[1] and "d_reg" in log[1]
    m = methods.create(name, checkpoint=run / "model.pt")
    assert m.config["encoder"]["widths"] == SMALL["widths"]
    out = tmp_path / "rec"
    argv = ["invert", "--method", name, "--checkpoint", str(run / "model.pt"), "--input", str(files["data"])]
    argv += ["--output", str(out), "--device", "cpu", "--save-latents"]
    if name != "psp":
        argv += ["--iterations", "3"]
    assert main(argv) == 0
    assert len(list(out.glob("*.png"))) == 12


def test_restyle_e4e_resumes_exactly_with_its_discriminator_and_pools(files, tmp_path):
    base = [
        "train",
        "--method",
        "restyle-e4e",
        "--generator",
        str(files["gen"]),
        "--data",
        str(files["data"]),
    ]
    base += [
        "--batch",
        "2",
        "--lambda-lpips",
        "0",
        "--lambda-id",
        "0",
        "--log-every",
        "1",
        "--val-every",
        "100",
    ]
    base += [
        "--ckpt-every",
        "2",
        "--device",
        "cpu",
        "--config",
        json.dumps({"encoder": SMALL}),
        "--lr",
        "1e-3",
    ]
    base += [
        "--iterations",
        "2",
        "--progressive-start",
        "1",
        "--progressive-every",
        "1",
        "--w-pool-size",
        "3",
    ]
    base += ["--r1-every", "2"]
    assert main([*base, "--out", str(tmp_path / "a"), "--iters", "5"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--iters", "3"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--iters", "5"]) == 0
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for k, v in a["model"]["state_dict"].items():
        assert torch.equal(v, b["model"]["state_dict"][k]), k
    for k, v in a["aux"]["w_disc"].items():
        assert torch.equal(v, b["aux"]["w_disc"][k]), k


@pytest.mark.parametrize("name", ["psp", "restyle-psp"])
def test_loss_networks_stay_out_of_the_saved_model(tmp_path, name):
    """The ID/LPIPS networks of training are not part of the model: not in its state, not in the
    file; and files that carried them (written before this was fixed) still load."""
    from torch import nn

    from egain.faces.embedder import embedder_checkpoint
    from egain.faces.nets import FaceNetConfig, IRSEFaceNet
    from egain.faces.preprocess import FacePreprocess

    g = tiny_generator("stylegan2", 16)
    m = methods.create(name, generator=g, encoder=SMALL, memory_format=None)
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=24)
    emb = tmp_path / "emb.pt"
    torch.save(
        embedder_checkpoint(IRSEFaceNet.from_config(cfg), cfg, FacePreprocess(input_size=16), "arcface"), emb
    )
    ctx = methods.TrainingContext(
        torch.device("cpu"),
        {"train_noise": "const", "id_net": str(emb)},
        {**m.loss_weights, "lpips": 0, "id": 0.1},
    )
    m.setup_training(ctx)
    assert m._losses.identity is not None  # the ID loss was built ...
    assert not any(k.startswith("_losses") for k in m.state_dict())  # ... outside the module tree
    m.save(tmp_path / "m.pt")
    # an older file with the leaked keys loads, the extra keys ignored
    old = methods.create(name, generator=g, encoder=SMALL, memory_format=None)
    old.add_module("_losses", nn.Linear(2, 2))
    leaked = old.state_dict()
    assert any(k.startswith("_losses.") for k in leaked)
    assert not any(k.startswith("_losses.") for k in old.state_without_generator())
    fresh = methods.create(name, generator=g, encoder=SMALL, memory_format=None)
    fresh.load_state_dict(leaked)
    methods.create(name, checkpoint=tmp_path / "m.pt")


def test_dse_loss_network_stays_out_of_the_saved_model(tmp_path):
    from egain.faces.embedder import embedder_checkpoint
    from egain.faces.nets import FaceNetConfig, IRSEFaceNet
    from egain.faces.preprocess import FacePreprocess

    g = tiny_generator("stylegan2", 16)
    m = methods.create("dse", generator=g, memory_format=None)
    before = set(m.state_dict())
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=24)
    emb = tmp_path / "emb.pt"
    torch.save(
        embedder_checkpoint(IRSEFaceNet.from_config(cfg), cfg, FacePreprocess(input_size=16), "arcface"), emb
    )
    opts = {o.name: o.default for o in type(m).training_options}
    m.setup_training(
        methods.TrainingContext(
            torch.device("cpu"), {**opts, "perceptual_net": str(emb)}, {**m.loss_weights, "lpips": 2.0}
        )
    )
    assert m._perceptual_train is not None and set(m.state_dict()) == before

"""Face-embedding networks: published layouts (ArcFace IR-SE50, MagFace iResNet), input conventions,
the FaceEmbedder interface and its error messages."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from egain.errors import CheckpointError, EgainError
from egain.faces import (
    FaceNetConfig,
    FacePreprocess,
    IRSEFaceNet,
    arcface_irse50,
    embedder_checkpoint,
    iresnet,
    load_arcface_irse50,
    load_embedder,
    load_magface_iresnet,
)
from egain.faces.preprocess import arcface_preprocess, magface_preprocess

# ------------------------------------------------------------------------------------------------
# published layouts, written out here from the reference tables (not from our modules)


def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def published_irse50_shapes() -> dict[str, tuple]:
    """ArcFace ``Backbone(112, 50, 'ir_se')``: reference sec. 5.1 / 6.1."""
    shapes = {
        "input_layer.0.weight": (64, 3, 3, 3),
        **_bn("input_layer.1", 64),
        "input_layer.2.weight": (64,),
    }
    i, in_c = 0, 64
    for depth, units in zip((64, 128, 256, 512), (3, 4, 14, 3), strict=True):
        for _ in range(units):
            p = f"body.{i}"
            if in_c != depth:  # projected shortcut; equal widths use MaxPool2d(1, stride): no keys
                shapes[f"{p}.shortcut_layer.0.weight"] = (depth, in_c, 1, 1)
                shapes.update(_bn(f"{p}.shortcut_layer.1", depth))
            shapes.update(_bn(f"{p}.res_layer.0", in_c))
            shapes[f"{p}.res_layer.1.weight"] = (depth, in_c, 3, 3)
            shapes[f"{p}.res_layer.2.weight"] = (depth,)
            shapes[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            shapes.update(_bn(f"{p}.res_layer.4", depth))
            shapes[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
            shapes[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
            i, in_c = i + 1, depth
    shapes.update(_bn("output_layer.0", 512))
    shapes["output_layer.3.weight"] = (512, 512 * 7 * 7)
    shapes["output_layer.3.bias"] = (512,)
    shapes.update(_bn("output_layer.4", 512))
    return shapes


def published_iresnet_shapes(layers, widths=(64, 128, 256, 512), emb=512) -> dict[str, tuple]:
    """MagFace ``iresnet`` backbone keys (models/iresnet.py): conv1/bn1/prelu, layerK.J.*, bn2, fc, features."""
    shapes = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    in_c = 64
    for k, (n, c) in enumerate(zip(layers, widths, strict=True), 1):
        for j in range(n):
            p = f"layer{k}.{j}"
            cin = in_c if j == 0 else c
            shapes.update(_bn(f"{p}.bn1", cin))
            shapes[f"{p}.conv1.weight"] = (c, cin, 3, 3)
            shapes.update(_bn(f"{p}.bn2", c))
            shapes[f"{p}.prelu.weight"] = (c,)
            shapes[f"{p}.conv2.weight"] = (c, c, 3, 3)
            shapes.update(_bn(f"{p}.bn3", c))
            if j == 0:  # every stage starts with stride 2, hence a projected identity
                shapes[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", c))
        in_c = c
    shapes.update(_bn("bn2", in_c))
    shapes["fc.weight"] = (emb, in_c * 49)
    shapes["fc.bias"] = (emb,)
    shapes.update(_bn("features", emb))
    return shapes


def _n_params(shapes: dict[str, tuple]) -> int:
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(stats))


def _random_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(s, generator=g) + 0.5
        else:
            out[k] = torch.randn(s, generator=g) * 0.05
    return out


def test_irse50_layout_matches_published_table():
    with torch.device("meta"):
        net = arcface_irse50()
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    published = published_irse50_shapes()
    assert ours == published
    assert len(published) == 397
    assert _n_params(published) == 43_797_696 == sum(p.numel() for p in net.parameters())


def test_iresnet100_layout_matches_published_table():
    with torch.device("meta"):
        net = iresnet(100)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    published = published_iresnet_shapes((3, 13, 30, 3))
    assert ours == published
    assert len(published) == 925
    assert _n_params(published) == sum(p.numel() for p in net.parameters())


def test_arcface_irse50_loads_strictly_and_applies_published_crop(tmp_path):
    state = _random_state(published_irse50_shapes())
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    emb = load_embedder(f"arcface-irse50:{path}", device="cpu")
    assert torch.equal(emb.net.output_layer[3].weight, state["output_layer.3.weight"])
    assert not emb.net.training and not any(p.requires_grad for p in emb.net.parameters())
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    # the pSp IDLoss pipeline, written out: crop 35:223 x 32:220, adaptive-avg-pool to 112, [-1,1] as is
    ref_in = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112))
    with torch.no_grad():
        ref = emb.net(ref_in)
        got = emb.embed(x)
    torch.testing.assert_close(got, ref)
    # files written by old PyTorch lack the BN step counters: still accepted
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    load_arcface_irse50(path)
    # a foreign or truncated dict is refused with the counts
    del old["output_layer.3.bias"]
    torch.save(old, path)
    with pytest.raises(CheckpointError, match="1 keys missing"):
        load_arcface_irse50(path)


def test_magface_checkpoint_with_ddp_prefix_loads_and_uses_bgr_01(tmp_path):
    layers, widths = (1, 2, 1, 1), (8, 16, 16, 32)
    backbone = _random_state(published_iresnet_shapes(layers, widths))
    ckpt = {
        "epoch": 25,
        "state_dict": {f"features.module.{k}": v for k, v in backbone.items()}
        | {"fc.weight": torch.randn(512, 10)},  # the MagLinear classifier, not part of the backbone
    }
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save(ckpt, path)
    emb = load_magface_iresnet(path, layers=layers, widths=widths)
    assert torch.equal(emb.net.layer2[1].conv2.weight, backbone["layer2.1.conv2.weight"])
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        ref = emb.net(((x + 1) / 2)[:, [2, 1, 0]])  # aligned 112 px crop, BGR, [0, 1]
        got = emb.embed(x)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(emb.quality(x), ref.norm(dim=1))


def test_preprocess_pools_like_adaptive_average_windows():
    pre = arcface_preprocess()
    x = torch.randn(1, 3, 256, 256)
    y = pre(x)
    assert y.shape == (1, 3, 112, 112)
    crop = x[0, :, 35:223, 32:220]
    for i, j in [(0, 0), (5, 77), (111, 111), (56, 3)]:
        r0, r1 = (i * 188) // 112, -((-(i + 1) * 188) // 112)  # floor / ceil window bounds
        c0, c1 = (j * 188) // 112, -((-(j + 1) * 188) // 112)
        torch.testing.assert_close(y[0, :, i, j], crop[:, r0:r1, c0:c1].mean(dim=(1, 2)))
    # 1024 px input: pooled to 256 first (the face_pool of the inversion code), then the same crop
    big = torch.randn(1, 3, 1024, 1024)
    torch.testing.assert_close(pre(big), pre(F.avg_pool2d(big, 4)))
    # a 112 px input is taken as an aligned crop; MagFace adds BGR and [0,1]
    small = torch.rand(1, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(pre(small), small)
    torch.testing.assert_close(magface_preprocess()(small), ((small + 1) / 2).flip(1))
    # smaller than the network input: bilinear up-sampling
    ours = FacePreprocess(input_size=32)
    assert ours(torch.randn(2, 3, 16, 16)).shape == (2, 3, 32, 32)


def _tiny_checkpoint(tmp_path, loss="arcface"):
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=24)
    net = IRSEFaceNet.from_config(cfg).eval()
    path = tmp_path / "embedder.pt"
    torch.save(embedder_checkpoint(net, cfg, FacePreprocess(input_size=16), loss, scores={"eer": 0.1}), path)
    return net, path


def test_own_checkpoint_embedder_interface(tmp_path):
    net, path = _tiny_checkpoint(tmp_path)
    emb = load_embedder(str(path), device="cpu")
    assert emb.embedding_dim == 24 and emb.loss == "arcface" and emb.meta["scores"] == {"eer": 0.1}
    emb.train()  # must stay in eval mode (frozen BN statistics)
    assert not emb.net.training
    x = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_(True)
    e = emb.embed(x)
    with torch.no_grad():
        torch.testing.assert_close(e, net(F.avg_pool2d(x, 2)))
    e.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in emb.parameters())
    with torch.no_grad():
        sim = emb.similarity(x, x.flip(0))
        a, b = emb.embed(x), emb.embed(x.flip(0))
        ref = torch.stack([torch.dot(a[i], b[i]) / (a[i].norm() * b[i].norm()) for i in range(3)])
        torch.testing.assert_close(sim, ref)
        torch.testing.assert_close(emb.quality(x), a.norm(dim=1))
        feats = emb.features(x)
    assert [f.shape[1] for f in feats[:-1]] == [8, 16]
    torch.testing.assert_close(feats[-1], a)
    # the run folder works as a spec too
    assert load_embedder(str(tmp_path)).embedding_dim == 24


def test_missing_and_foreign_files_explain_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        load_embedder(f"arcface-irse50:{tmp_path / 'model_ir_se50.pth'}")
    msg = str(exc.value)
    assert "model_ir_se50.pth" in msg and "drive.google.com" in msg and "arcface-irse50:PATH" in msg
    with pytest.raises(CheckpointError) as exc:
        load_embedder(f"magface-iresnet100:{tmp_path / 'm.pth'}")
    assert "magface_epoch_00025.pth" in str(exc.value) and "magface-iresnet100:PATH" in str(exc.value)
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a face-embedder checkpoint"):
        load_embedder(str(tmp_path / "other.pt"))
    with pytest.raises(EgainError, match="unknown face embedder"):
        load_embedder("vggface")


def test_bundled_specs_use_the_zoo_and_explain_how_to_train(tmp_path, monkeypatch):
    from egain import zoo

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    with pytest.raises(CheckpointError, match="egain faces train --loss magface"):
        load_embedder("synthfaces-magface")
    _, path = _tiny_checkpoint(tmp_path)
    path.rename(weights / "faces-arcface-64.pt")
    emb = load_embedder("synthfaces-arcface", device="cpu")
    assert emb.name == "synthfaces-arcface" and emb.embedding_dim == 24


def test_dlib_backend_absent_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(EgainError, match=r"egain\[dlib\]"):
        load_embedder("dlib")

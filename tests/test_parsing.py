"""Face parsing (egain.faces.parsing): our UNet, its trainer and CLI, the published BiSeNet and E2Style
UNet layouts, and E2Style's parsing loss taking a parser spec.

The published-layout state dicts are built here from the key names and shapes of the authors' code
(face-parsing.PyTorch ``model.py``/``resnet.py``; E2Style ``criteria/parsing_loss/unet.py`` and
``model_utils.py``), and the outputs are re-computed by hand with plain tensor operations.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import smooth_images, tiny_generator
from published_layout import bn, conv
from synthfaces_train_helpers import tiny_train_config

import egain.methods as methods
from egain.cli.main import main
from egain.data.synthfaces import SynthFacesDataset
from egain.data.synthfaces.parsing import CELEBAMASK_CLASSES, PARSING_CLASSES
from egain.errors import CheckpointError, InputError
from egain.faces.parsing import (
    SAM_FACE_CLASSES,
    BiSeNet,
    ParsingNet,
    ParsingNetConfig,
    confusion_matrix,
    evaluate_parser,
    iou_from_confusion,
    load_bisenet,
    load_e2style_unet,
    load_parser,
    mirror_table,
    region_mask,
    save_parser,
)
from egain.losses.multilayer import MultiLayerParsingLoss, load_parsing_net, multilayer_cosine_loss
from egain.methods.base import TrainingContext
from egain.training.parsing import ParsingTrainConfig, class_weights, flip_batch, train_parsing

torch.set_num_threads(1)

TINY = {"size": 32, "widths": [8, 8, 16, 16, 16]}


def tiny_parser(seed: int = 0, **kw) -> ParsingNet:
    torch.manual_seed(seed)
    return ParsingNet(ParsingNetConfig(**{**TINY, **kw}))


def tiny_config(out, **kw) -> ParsingTrainConfig:
    return tiny_train_config(ParsingTrainConfig, out, ParsingNetConfig(**TINY).to_dict(), 3, **kw)


# ------------------------------------------------------------------------------------------------
# our network


def test_shapes_features_and_gradients():
    net = tiny_parser().eval()
    x = smooth_images(2, 32)
    logits = net(x)
    assert logits.shape == (2, len(PARSING_CLASSES), 32, 32)
    assert net(smooth_images(2, 48)).shape[-2:] == (48, 48)  # resized in and back out
    maps = net.parse(x)
    assert maps.dtype == torch.long and maps.shape == (2, 32, 32)
    feats = net.features(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16), (8, 8, 8), (16, 4, 4), (16, 2, 2), (16, 2, 2)]
    # the encoder-only features equal those of the full pass
    full, _ = net.run(net.prepare(x))
    assert all(torch.equal(a, b) for a, b in zip(feats, full, strict=True))
    frozen = load_parser(net, device="cpu")
    assert not any(p.requires_grad for p in frozen.parameters())
    y = x.clone().requires_grad_(True)
    MultiLayerParsingLoss(frozen, levels=5)(y, x.flip(-1)).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    with pytest.raises(InputError):
        ParsingNetConfig(size=40)
    with pytest.raises(InputError):
        ParsingNetConfig(widths=(8, 8, 8))


def test_loss_decreases_at_32px():
    ds = SynthFacesDataset(8, 2, size=32, return_parsing=True)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    maps = torch.stack([ds[i][-1] for i in range(len(ds))])
    assert maps.dtype == torch.long and maps.max() < len(PARSING_CLASSES)
    net = tiny_parser()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(net(x), maps, weight=class_weights(maps, len(PARSING_CLASSES)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_save_load_round_trip(tmp_path):
    net = tiny_parser().eval()
    path = save_parser(net, tmp_path / "parser.pt", scores={"miou": 0.5})
    back = load_parser(tmp_path, device="cpu")  # the run folder works too
    assert isinstance(back, ParsingNet) and back.class_names == PARSING_CLASSES
    assert back.meta["scores"] == {"miou": 0.5}
    x = smooth_images(2, 32)
    assert torch.equal(net(x), back(x))
    assert all(torch.equal(a, b) for a, b in zip(net.features(x), back.features(x), strict=True))
    torch.save({"egain_format": "other", "config": {}, "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError):
        load_parser(tmp_path / "bad.pt", device="cpu")
    with pytest.raises(CheckpointError):
        load_parser(tmp_path / "missing.pt", device="cpu")
    assert path.stat().st_size < 5 << 20


def test_bundled_name_resolves_or_says_how_to_train():
    from egain import zoo

    if "faces-parsing-64" in zoo.available():
        net = load_parser("synthfaces-parsing", device="cpu")
        assert net.parse(smooth_images(1, 64)).shape == (1, 64, 64)
    else:
        with pytest.raises(CheckpointError, match="egain faces parsing train"):
            load_parser("synthfaces-parsing", device="cpu")


def test_mirror_flip_and_metrics():
    table = mirror_table(PARSING_CLASSES)
    assert torch.equal(table[table], torch.arange(len(PARSING_CLASSES)))
    assert PARSING_CLASSES[int(table[PARSING_CLASSES.index("left_eye")])] == "right_eye"
    assert CELEBAMASK_CLASSES[int(mirror_table(CELEBAMASK_CLASSES)[7])] == "r_ear"
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    maps = torch.tensor([[[0, 6, 7, 1]] * 4] * 2)
    fx, fm = flip_batch(x, maps, table, seed=3)
    for i in range(2):
        flipped = not torch.equal(fx[i], x[i])
        assert torch.equal(fx[i], x[i].flip(-1) if flipped else x[i])
        assert fm[i, 0].tolist() == ([1, 6, 7, 0] if flipped else [0, 6, 7, 1])
    conf = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
    rep = iou_from_confusion(conf, ["a", "b", "c", "d"])
    assert rep["per_class"]["a"]["iou"] == 1.0 and rep["per_class"]["b"]["iou"] == 0.5
    assert rep["per_class"]["c"]["iou"] == 0.5 and math.isnan(rep["per_class"]["d"]["iou"])
    assert rep["miou"] == pytest.approx(2 / 3) and rep["pixel_accuracy"] == 0.75
    labels = torch.tensor([[0, 1, 6, 16]])
    assert region_mask(labels, CELEBAMASK_CLASSES, SAM_FACE_CLASSES).tolist() == [[False, True, False, False]]


def test_evaluate_maps_truth_into_celebamask_classes():
    """A 19-class parser is scored on the CelebAMask-HQ fusion of the synthfaces maps."""

    class Oracle(ParsingNet):
        def forward(self, images):  # predicts the fused truth of the dataset exactly
            return self._logits

    ds = SynthFacesDataset(3, 1, size=32, return_parsing=True)
    from egain.data.synthfaces.parsing import to_celebamask

    truth = torch.stack([torch.from_numpy(to_celebamask(ds[i][-1].numpy())).long() for i in range(len(ds))])
    net = Oracle(ParsingNetConfig(**{**TINY, "classes": CELEBAMASK_CLASSES}))
    net._logits = F.one_hot(truth, 19).permute(0, 3, 1, 2).float()
    rep = evaluate_parser(net, ds, batch=8)
    assert rep["miou"] == 1.0 and rep["images"] == 3


# ------------------------------------------------------------------------------------------------
# trainer and CLI


def test_resume_equals_uninterrupted(tmp_path):
    full = train_parsing(tiny_config(tmp_path / "full", class_weights="balanced"))
    assert "miou" in full and (tmp_path / "full" / "parser.pt").exists()
    assert train_parsing(tiny_config(tmp_path / "split", class_weights="balanced", stop_after=2)) == {}
    assert not (tmp_path / "split" / "parser.pt").exists()
    resumed = train_parsing(tiny_config(tmp_path / "split", class_weights="balanced"))
    a = torch.load(tmp_path / "full" / "parser.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "split" / "parser.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["miou"] == full["miou"]
    # streaming (no preload) draws the same batches as the in-memory cache
    train_parsing(tiny_config(tmp_path / "stream", class_weights="balanced", preload="no"))
    c = torch.load(tmp_path / "stream" / "parser.pt", weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k].float(), c[k].float(), atol=1e-5) for k in a)
    with pytest.raises(InputError):
        train_parsing(tiny_config(tmp_path / "x", data="synthfaces:24x2,split=test"))


def test_cli_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["faces", "parsing", "train", "--out", str(run), "--data", "synthfaces:24x2", "--size", "32"]
    args += ["--steps", "3", "--batch", "4", "--widths", "8,8,16,16,16", "--warmup", "1"]
    args += ["--eval-identities", "3", "--eval-per-identity", "1", "--device", "cpu", "--max-minutes", "5"]
    assert main(args) == 0
    for name in ("parser.pt", "checkpoint.pt", "log.jsonl", "report.json", "run.json"):
        assert (run / name).exists(), name
    out = capsys.readouterr().out
    assert "held-out" in out and "mIoU" in out
    report = tmp_path / "eval"
    cmd = ["faces", "parsing", "evaluate", "--parser", str(run / "parser.pt"), "--device", "cpu"]
    assert main([*cmd, "--out", str(report)]) == 0
    rep = json.loads((report / "report.json").read_text())
    assert rep["images"] == 3 and set(rep["per_class"]) == set(PARSING_CLASSES)
    assert main([*cmd, "--data", "synthfaces:recipe=eval,count=2"]) == 0
    assert main(["faces", "parsing", "evaluate", "--parser", str(tmp_path / "nope.pt")]) != 0


# ------------------------------------------------------------------------------------------------
# E2Style's parsing loss takes our parsers


def test_e2style_accepts_a_parser_spec_or_path(tmp_path):
    net = tiny_parser().eval()
    save_parser(net, tmp_path / "run" / "parser.pt")
    x, y = smooth_images(2, 32, seed=1), smooth_images(2, 32, seed=2)
    ref = multilayer_cosine_loss(net.features(y), net.features(x))
    for spec in (tmp_path / "run" / "parser.pt", str(tmp_path / "run")):
        loaded = load_parsing_net(spec)
        assert isinstance(loaded, ParsingNet)
        assert torch.allclose(MultiLayerParsingLoss(loaded, levels=5)(y, x), ref, atol=1e-6)
    with pytest.raises(CheckpointError):
        load_parsing_net("bisenet:" + str(tmp_path / "missing.pth"))
    g = tiny_generator("stylegan2", 32)
    m = methods.create("e2style", generator=g, stages=1, memory_format=None)
    lam = {"l2": 1.0, "lpips": 0.0, "id": 0.0, "parse": 1.0, "w_norm": 0.0}
    m.setup_training(
        TrainingContext(torch.device("cpu"), {"parsing_net": str(tmp_path / "run" / "parser.pt")}, lam)
    )
    m.set_training_mode()
    total, terms = m.training_step(x, 0)
    assert set(terms) == {"l2", "parse"} and torch.isfinite(total)


# ------------------------------------------------------------------------------------------------
# published layouts: face-parsing.PyTorch BiSeNet


def _cbr_pub(prefix: str, cin: int, cout: int, k: int) -> dict:
    return {f"{prefix}.conv.weight": conv((cout, cin, k, k)), **bn(f"{prefix}.bn", cout)}


def published_bisenet(n: int = 19) -> dict:
    """A random state dict in face-parsing.PyTorch's BiSeNet layout (its key names and shapes)."""
    sd = {"cp.resnet.conv1.weight": conv((64, 3, 7, 7)), **bn("cp.resnet.bn1", 64)}
    cin = 64
    for layer, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for b in range(2):
            p = f"cp.resnet.layer{layer}.{b}"
            i = cin if b == 0 else cout
            sd[f"{p}.conv1.weight"] = conv((cout, i, 3, 3))
            sd |= bn(f"{p}.bn1", cout)
            sd[f"{p}.conv2.weight"] = conv((cout, cout, 3, 3))
            sd |= bn(f"{p}.bn2", cout)
            if b == 0 and (cin != cout or stride != 1):
                sd[f"{p}.downsample.0.weight"] = conv((cout, cin, 1, 1))
                sd |= bn(f"{p}.downsample.1", cout)
        cin = cout
    for name, c in (("arm16", 256), ("arm32", 512)):
        sd |= _cbr_pub(f"cp.{name}.conv", c, 128, 3)
        sd[f"cp.{name}.conv_atten.weight"] = conv((128, 128, 1, 1))
        sd |= bn(f"cp.{name}.bn_atten", 128)
    sd |= _cbr_pub("cp.conv_head32", 128, 128, 3) | _cbr_pub("cp.conv_head16", 128, 128, 3)
    sd |= _cbr_pub("cp.conv_avg", 512, 128, 1)
    sd |= _cbr_pub("ffm.convblk", 256, 256, 1)
    sd["ffm.conv1.weight"] = conv((64, 256, 1, 1))
    sd["ffm.conv2.weight"] = conv((256, 64, 1, 1))
    for name, cin_, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        sd |= _cbr_pub(f"{name}.conv", cin_, mid, 3)
        sd[f"{name}.conv_out.weight"] = conv((n, mid, 1, 1))
    return sd


def _bn_f(sd, p, x):
    return F.batch_norm(
        x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
    )


def _cbr_f(sd, p, x, pad):
    return F.relu(_bn_f(sd, f"{p}.bn", F.conv2d(x, sd[f"{p}.conv.weight"], padding=pad)))


def reference_bisenet(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """BiSeNet's main output (model.py forward) written out with the published keys."""
    h, w = x.shape[-2:]
    y = F.relu(_bn_f(sd, "cp.resnet.bn1", F.conv2d(x, sd["cp.resnet.conv1.weight"], stride=2, padding=3)))
    y = F.max_pool2d(y, 3, 2, 1)
    outs = []
    for layer in range(1, 5):
        for b in range(2):
            p = f"cp.resnet.layer{layer}.{b}"
            stride = 2 if (layer > 1 and b == 0) else 1
            r = F.relu(_bn_f(sd, f"{p}.bn1", F.conv2d(y, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
            r = _bn_f(sd, f"{p}.bn2", F.conv2d(r, sd[f"{p}.conv2.weight"], padding=1))
            s = y
            if f"{p}.downsample.0.weight" in sd:
                s = _bn_f(sd, f"{p}.downsample.1", F.conv2d(y, sd[f"{p}.downsample.0.weight"], stride=stride))
            y = F.relu(s + r)
        outs.append(y)
    f8, f16, f32 = outs[1:]

    def arm(name, f):
        f = _cbr_f(sd, f"cp.{name}.conv", f, 1)
        a = F.avg_pool2d(f, f.shape[2:])
        a = torch.sigmoid(_bn_f(sd, f"cp.{name}.bn_atten", F.conv2d(a, sd[f"cp.{name}.conv_atten.weight"])))
        return f * a

    avg = _cbr_f(sd, "cp.conv_avg", F.avg_pool2d(f32, f32.shape[2:]), 0)
    avg = F.interpolate(avg, f32.shape[2:], mode="nearest")
    up32 = _cbr_f(
        sd, "cp.conv_head32", F.interpolate(arm("arm32", f32) + avg, f16.shape[2:], mode="nearest"), 1
    )
    up16 = _cbr_f(
        sd, "cp.conv_head16", F.interpolate(arm("arm16", f16) + up32, f8.shape[2:], mode="nearest"), 1
    )
    fused = _cbr_f(sd, "ffm.convblk", torch.cat([f8, up16], 1), 0)
    a = F.avg_pool2d(fused, fused.shape[2:])
    a = torch.sigmoid(F.conv2d(F.relu(F.conv2d(a, sd["ffm.conv1.weight"])), sd["ffm.conv2.weight"]))
    fused = fused * a + fused
    out = F.conv2d(_cbr_f(sd, "conv_out.conv", fused, 1), sd["conv_out.conv_out.weight"])
    return F.interpolate(out, (h, w), mode="bilinear", align_corners=True)


def test_bisenet_published_layout_loads_strictly_and_matches(tmp_path):
    torch.manual_seed(0)
    sd = published_bisenet()
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "79999_iter.pth")  # DDP prefix too
    net = load_parser(f"bisenet:{tmp_path / '79999_iter.pth'}", device="cpu")
    assert isinstance(net, BiSeNet) and net.class_names == CELEBAMASK_CLASSES and net.input_size == 512
    small = load_bisenet(tmp_path / "79999_iter.pth", input_size=64).eval()
    images = smooth_images(2, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = reference_bisenet(sd, ((images + 1) / 2 - mean) / std)
    assert torch.allclose(small(images), ref, atol=1e-4, rtol=1e-4)
    assert len(small.features(images)) == 5
    # files saved without BatchNorm counters (old PyTorch) load too; anything else is strict
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    load_bisenet(tmp_path / "old.pth")
    for bad in (
        {k: v for k, v in sd.items() if k != "ffm.conv1.weight"},
        {**sd, "cp.extra.weight": torch.zeros(1)},
        {**sd, "conv_out.conv.conv.weight": torch.zeros(256, 256, 1, 1)},
    ):
        torch.save(bad, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError):
            load_bisenet(tmp_path / "bad.pth")


# ------------------------------------------------------------------------------------------------
# published layouts: E2Style's parsing UNet


def _unet_block(prefix: str, cin: int, cout: int) -> dict:
    sd = {}
    for i, c in (("conv1", cin), ("conv2", cout)):
        sd[f"{prefix}.{i}.0.weight"] = conv((cout, c, 3, 3))
        sd[f"{prefix}.{i}.0.bias"] = torch.randn(cout) * 0.1
        sd |= bn(f"{prefix}.{i}.1", cout)
    return sd


def published_e2style_unet(n: int = 19) -> dict:
    """A random state dict in E2Style's ``unet(feature_scale=4)`` layout."""
    f = (16, 32, 64, 128, 256)
    sd = {}
    for i, (cin, cout) in enumerate(zip((3, *f[:3]), f[:4], strict=True), start=1):
        sd |= _unet_block(f"conv{i}", cin, cout)
    sd |= _unet_block("center", f[3], f[4])
    for i in range(1, 5):
        sd[f"up_concat{i}.up.weight"] = conv((f[i], f[i - 1], 2, 2))
        sd[f"up_concat{i}.up.bias"] = torch.randn(f[i - 1]) * 0.1
        sd |= _unet_block(f"up_concat{i}.conv", f[i], f[i - 1])
    sd["final.weight"] = conv((n, f[0], 1, 1))
    sd["final.bias"] = torch.randn(n) * 0.1
    return sd


def reference_e2style_unet(sd: dict, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    def block(p, y):
        for i in ("conv1", "conv2"):
            y = F.relu(
                _bn_f(
                    sd, f"{p}.{i}.1", F.conv2d(y, sd[f"{p}.{i}.0.weight"], sd[f"{p}.{i}.0.bias"], padding=1)
                )
            )
        return y

    convs, feats, y = [], [], x
    for i in range(1, 5):
        c = block(f"conv{i}", y)
        convs.append(c)
        y = F.max_pool2d(c, 2)
        feats.append(y)
    y = block("center", y)
    feats.append(y)
    for i in range(4, 0, -1):
        up = F.conv_transpose2d(y, sd[f"up_concat{i}.up.weight"], sd[f"up_concat{i}.up.bias"], stride=2)
        y = block(f"up_concat{i}.conv", torch.cat([convs[i - 1], up], 1))
    return feats, F.conv2d(y, sd["final.weight"], sd["final.bias"])


def test_e2style_unet_published_layout_loads_strictly_and_matches(tmp_path):
    torch.manual_seed(0)
    sd = published_e2style_unet()
    torch.save(sd, tmp_path / "parsing.pth")
    net = load_parser(f"e2style-unet:{tmp_path / 'parsing.pth'}", device="cpu")
    assert net.input_size == 256 and net.class_names == CELEBAMASK_CLASSES
    small = load_e2style_unet(tmp_path / "parsing.pth", size=32).eval()
    x = smooth_images(2, 32)
    feats, logits = reference_e2style_unet(sd, x)  # images in [-1, 1] as they are (reference sec. 3.4)
    assert torch.allclose(small(x), logits, atol=1e-4, rtol=1e-4)
    got = small.features(x)
    assert [tuple(f.shape[1:]) for f in got] == [
        (16, 16, 16),
        (32, 8, 8),
        (64, 4, 4),
        (128, 2, 2),
        (256, 2, 2),
    ]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, feats, strict=True))
    # the 256 px network gives the published feature sizes
    shapes = [tuple(f.shape[1:]) for f in net.features(smooth_images(1, 256))]
    assert shapes == [(16, 128, 128), (32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 16, 16)]
    # E2Style's loss takes it as a spec
    assert isinstance(load_parsing_net(f"e2style-unet:{tmp_path / 'parsing.pth'}"), ParsingNet)
    torch.save({k: v for k, v in sd.items() if not k.startswith("final.")}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="published layout"):
        load_e2style_unet(tmp_path / "bad.pth")

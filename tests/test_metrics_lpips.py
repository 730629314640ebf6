"""LPIPS: our AlexNet / VGG16 trunks read torchvision's key layout strictly, the network matches a
plain re-computation from the state dicts, and missing weights make the metric unavailable."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egain.errors import CheckpointError
from egain.metrics.lpips import (
    LPIPS,
    AlexNetFeatures,
    LPIPSUnavailable,
    VGG16Features,
    find_backbone,
    find_linear,
    load_lpips,
)

# torchvision's ``features`` modules, as (index, kind, args): conv (cin, cout, k, stride, pad) or pool (k, s)
ALEX_LAYOUT = [
    (0, "conv", (3, 64, 11, 4, 2)),
    (1, "relu", ()),
    (2, "pool", (3, 2)),
    (3, "conv", (64, 192, 5, 1, 2)),
    (4, "relu", ()),
    (5, "pool", (3, 2)),
    (6, "conv", (192, 384, 3, 1, 1)),
    (7, "relu", ()),
    (8, "conv", (384, 256, 3, 1, 1)),
    (9, "relu", ()),
    (10, "conv", (256, 256, 3, 1, 1)),
    (11, "relu", ()),
    (12, "pool", (3, 2)),
]
ALEX_TAPS = [1, 4, 7, 9, 11]


def _vgg_layout():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layout, i, cin = [], 0, 3
    for v in cfg:
        if v == "M":
            layout.append((i, "pool", (2, 2)))
            i += 1
        else:
            layout += [(i, "conv", (cin, v, 3, 1, 1)), (i + 1, "relu", ())]
            i, cin = i + 2, v
    return layout


VGG_LAYOUT = _vgg_layout()
VGG_TAPS = [3, 8, 15, 22, 29]


def _torchvision_state(layout, seed=0, classifier=True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for idx, kind, args in layout:
        if kind == "conv":
            cin, cout, k = args[:3]
            sd[f"features.{idx}.weight"] = (
                torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
            )
            sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.1
    if classifier:  # the real files carry the classifier too; LPIPS ignores it
        sd["classifier.1.weight"] = torch.randn(8, 4, generator=g)
        sd["classifier.1.bias"] = torch.randn(8, generator=g)
    return sd


def _linear_state(channels, seed=1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(channels)}


def _reference_lpips(x, y, layout, taps, sd, lin) -> torch.Tensor:
    """LPIPS v0.1 written out plainly from the two state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(z):
        z = (z - shift) / scale
        out = []
        for idx, kind, args in layout:
            if kind == "conv":
                z = F.conv2d(
                    z,
                    sd[f"features.{idx}.weight"],
                    sd[f"features.{idx}.bias"],
                    stride=args[3],
                    padding=args[4],
                )
            elif kind == "relu":
                z = F.relu(z)
            else:
                z = F.max_pool2d(z, args[0], args[1])
            if idx in taps:
                out.append(z)
            if idx == taps[-1]:
                break
        return out

    total = 0
    for i, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + ((a - b) ** 2 * lin[f"lin{i}.model.1.weight"]).sum(1).mean((1, 2))
    return total


@pytest.mark.parametrize(
    "net,cls,layout,taps,size",
    [("alex", AlexNetFeatures, ALEX_LAYOUT, ALEX_TAPS, 64), ("vgg", VGG16Features, VGG_LAYOUT, VGG_TAPS, 32)],
)
def test_lpips_matches_plain_recomputation(net, cls, layout, taps, size):
    sd = _torchvision_state(layout)
    lin = _linear_state(cls.channels)
    model = LPIPS(net, sd, lin)
    x = torch.rand(3, 3, size, size) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    got = model(x, y)
    want = _reference_lpips(x, y, layout, taps, sd, lin)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert torch.all(model(x, x) == 0)


@pytest.mark.parametrize("cls,layout", [(AlexNetFeatures, ALEX_LAYOUT), (VGG16Features, VGG_LAYOUT)])
def test_backbones_load_torchvision_layout_strictly(cls, layout, tmp_path):
    sd = _torchvision_state(layout)
    m = LPIPS("alex" if cls is AlexNetFeatures else "vgg", sd, _linear_state(cls.channels))
    for name, idx in cls.torchvision_index.items():
        assert torch.equal(getattr(m.backbone, name).weight, sd[f"features.{idx}.weight"])
    # a missing conv, a foreign key and a wrong shape are all refused
    broken = dict(sd)
    broken.pop(next(k for k in sd if k.startswith("features.")))
    with pytest.raises(CheckpointError, match="missing"):
        LPIPS("alex" if cls is AlexNetFeatures else "vgg", broken)
    foreign = dict(sd, **{"features.99.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected"):
        LPIPS("alex" if cls is AlexNetFeatures else "vgg", foreign)
    first = next(k for k in sd if k.endswith("weight") and k.startswith("features."))
    wrong = dict(sd, **{first: torch.zeros(1, 1, 1, 1)})
    with pytest.raises(CheckpointError, match="shape"):
        LPIPS("alex" if cls is AlexNetFeatures else "vgg", wrong)


def test_from_files_and_gradients(tmp_path):
    sd = _torchvision_state(ALEX_LAYOUT)
    torch.save(sd, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(_linear_state(AlexNetFeatures.channels), tmp_path / "alex.pth")
    # a folder holding the published file names works as well as the file paths
    model = load_lpips("alex", tmp_path, tmp_path)
    assert model.sources["backbone"].endswith("alexnet-owt-7be5be79.pth")
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training  # a trainer's .train() must not switch the metric
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    y = torch.zeros_like(x, requires_grad=True)
    model(x, y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_unavailable_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    with pytest.raises(
        LPIPSUnavailable, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch\.org.*--lpips-backbone"
    ):
        find_backbone("alex")
    with pytest.raises(LPIPSUnavailable, match=r"vgg16-397923af\.pth"):
        find_backbone("vgg", tmp_path / "missing.pth")
    with pytest.raises(LPIPSUnavailable, match=r"alex\.pth.*PerceptualSimilarity"):
        find_linear("alex", tmp_path / "nope.pth")
    with pytest.raises(LPIPSUnavailable):
        LPIPS.from_files("alex", None, None)
    with pytest.raises(CheckpointError, match="expected 'alex' or 'vgg'"):
        find_backbone("squeeze")

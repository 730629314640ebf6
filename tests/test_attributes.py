"""Attribute classifier (egain.faces.attributes), its trainer and CLI, and the W linear probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthfaces_train_helpers import tiny_train_config
from torch import nn

from egain.cli.main import main
from egain.data.synthfaces import SynthFacesDataset, collate_with_labels
from egain.errors import CheckpointError, InputError
from egain.faces.attributes import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    AttributeClassifier,
    AttributeNet,
    AttributeNetConfig,
    attribute_loss,
    attribute_metrics,
    get_attributes,
    label_values,
    load_classifier,
    normalise_targets,
    roc_auc,
    save_classifier,
    spearman,
)
from egain.metrics.probe import fit_probe, latent_probe
from egain.training.attributes import AttributeTrainConfig, train_attributes

TINY = {"size": 32, "widths": [8, 16], "hidden": 16, "dropout": 0.0}


def tiny_classifier(seed: int = 0, **kw) -> AttributeClassifier:
    torch.manual_seed(seed)
    return AttributeClassifier(AttributeNet(AttributeNetConfig(**{**TINY, **kw})))


def tiny_config(out, **kw) -> AttributeTrainConfig:
    return tiny_train_config(AttributeTrainConfig, out, AttributeNetConfig(**TINY).to_dict(), 4, **kw)


def test_table_and_labels():
    assert len(set(ATTRIBUTE_NAMES)) == len(ATTRIBUTES)
    for name in ("smile", "eyes_open", "yaw", "roll", "age", "grey", "beard", "glasses", "hat", "light_x"):
        assert name in ATTRIBUTE_NAMES
    ds = SynthFacesDataset(6, 2, size=16, return_labels=True)
    labels = [ds[i][2] for i in range(len(ds))]
    v = label_values(labels, ATTRIBUTES)
    assert v.shape == (12, len(ATTRIBUTES))
    i = ATTRIBUTE_NAMES.index("yaw")
    assert np.allclose(v[:, i], [lab["attributes"]["yaw"] for lab in labels])
    for a in ATTRIBUTES:
        if a.kind == "binary":
            assert set(np.unique(v[:, ATTRIBUTE_NAMES.index(a.name)])) <= {0.0, 1.0}
    # a rare detail counts when the renderer drew it
    rec = {"attributes": labels[0]["attributes"], "rare_kinds": ["phone"]}
    assert label_values([rec], get_attributes(["phone", "watch"])).tolist() == [[1.0, 0.0]]
    with pytest.raises(InputError):
        get_attributes(["smile", "nope"])


def test_shapes_units_and_gradients():
    clf = tiny_classifier()
    x = (torch.rand(3, 3, 64, 64) * 2 - 1).requires_grad_()  # resized to the 32 px net
    p = clf.predict(x)
    s = clf.scores(x)
    assert set(p) == set(ATTRIBUTE_NAMES)
    assert all(v.shape == (3,) for v in p.values())
    for a in ATTRIBUTES:
        if a.kind == "binary":
            assert torch.all((p[a.name] >= 0) & (p[a.name] <= 1))
            assert torch.allclose(torch.sigmoid(s[a.name]), p[a.name])
        else:
            assert torch.allclose(s[a.name], p[a.name])
            raw = clf(x)[:, clf.names.index(a.name)]
            assert torch.allclose(p[a.name], raw * a.scale + a.center)
    clf.train()
    assert not clf.training  # a scorer stays in eval mode
    p["smile"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not q.requires_grad for q in clf.parameters())


def test_loss_decreases_at_32px():
    ds = SynthFacesDataset(8, 2, size=32, return_labels=True)
    x, _, labels = collate_with_labels([ds[i] for i in range(len(ds))])
    targets = normalise_targets(label_values(labels, ATTRIBUTES), ATTRIBUTES)
    torch.manual_seed(0)
    net = AttributeNet(AttributeNetConfig(**TINY))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, per = attribute_loss(net(x), targets, ATTRIBUTES)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert per.shape == (len(ATTRIBUTES),)
    assert losses[-1] < 0.7 * losses[0]


def test_save_load_round_trip(tmp_path):
    clf = tiny_classifier(attributes=["smile", "glasses", "yaw"])
    path = save_classifier(clf, tmp_path / "classifier.pt", scores={"x": 1})
    back = load_classifier(tmp_path, device="cpu")  # the run folder works too
    assert back.names == ("smile", "glasses", "yaw")
    assert back.meta["scores"] == {"x": 1}
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for k, v in clf.predict(x).items():
        assert torch.equal(v, back.predict(x)[k])
    torch.save({"egain_format": "other", "config": {}, "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "bad.pt", device="cpu")
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "missing.pt", device="cpu")
    assert path.exists()


def test_metrics():
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    attrs = get_attributes(["hat", "yaw"])
    truth = np.array([[0, 0.1], [0, 0.2], [0, 0.3], [1, 0.4]], dtype=float)
    m = attribute_metrics({"hat": np.array([0.1, 0.2, 0.3, 0.4]), "yaw": truth[:, 1] * 2}, truth, attrs)
    assert m["hat"]["accuracy"] == 0.75 and m["hat"]["balanced_accuracy"] == 0.5 and m["hat"]["auc"] == 1.0
    assert m["yaw"]["spearman"] == pytest.approx(1.0)


def test_resume_equals_uninterrupted(tmp_path):
    full = train_attributes(tiny_config(tmp_path / "full"))
    assert "attributes" in full and (tmp_path / "full" / "classifier.pt").exists()
    assert train_attributes(tiny_config(tmp_path / "split", stop_after=2)) == {}
    assert not (tmp_path / "split" / "classifier.pt").exists()
    resumed = train_attributes(tiny_config(tmp_path / "split"))
    a = torch.load(tmp_path / "full" / "classifier.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "split" / "classifier.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["summary"] == full["summary"]
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and "rng" in ck and "optimizer" in ck
    # streaming (no preload) draws the same batches as the in-memory cache
    stream = train_attributes(tiny_config(tmp_path / "stream", preload="no"))
    c = torch.load(tmp_path / "stream" / "classifier.pt", weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k].float(), c[k].float(), atol=1e-6) for k in a)
    assert stream["summary"].keys() == full["summary"].keys()


def test_train_rejects_held_out_data(tmp_path):
    with pytest.raises(InputError):
        train_attributes(tiny_config(tmp_path / "x", data="synthfaces:24x2,split=test"))


class _FakeGenerator(nn.Module):
    """w = A z; the "image" carries w in its first pixels so a fake classifier can read it back."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.style_dim = dim
        self.a = nn.Parameter(torch.randn(dim, dim), requires_grad=False)

    def mapping(self, z, truncation=1.0, truncation_latent=None):
        return z @ self.a

    def synthesize(self, w, noise_mode="const"):
        img = torch.zeros(len(w), 3, 4, 4)
        img.view(len(w), -1)[:, : w.shape[1]] = w
        return img


class _FakeClassifier:
    def __init__(self, dim: int = 8):
        g = torch.Generator().manual_seed(1)
        self.u = torch.randn(dim, generator=g)
        self.v = torch.randn(dim, generator=g)

    def scores(self, images):
        w = images.reshape(len(images), -1)[:, : len(self.u)]
        return {"smile": w @ self.u, "yaw": w @ self.v, "glasses": torch.tanh(w @ (self.u - self.v))}


def test_probe_linear_case():
    r = latent_probe(_FakeGenerator(), _FakeClassifier(), n=400, seed=0)
    assert set(r) == {"smile", "glasses", "yaw"}
    assert r["smile"] > 0.99 and r["yaw"] > 0.99 and r["glasses"] > 0.95
    g = np.random.default_rng(0)
    noise = fit_probe(g.normal(size=(400, 8)), {"x": g.normal(size=400)})
    assert abs(noise.spearman["x"]) < 0.25


def test_cli_end_to_end(tmp_path, capsys):
    from tests.inversion_helpers import save_tiny_generator

    run = tmp_path / "run"
    args = ["faces", "attributes", "train", "--out", str(run), "--data", "synthfaces:24x2", "--size", "32"]
    args += ["--steps", "3", "--batch", "4", "--widths", "8,16", "--hidden", "16", "--warmup", "1"]
    args += ["--eval-identities", "4", "--eval-per-identity", "1", "--device", "cpu"]
    assert main(args) == 0
    for name in ("classifier.pt", "checkpoint.pt", "log.jsonl", "report.json", "run.json"):
        assert (run / name).exists(), name
    assert "held-out" in capsys.readouterr().out
    report = tmp_path / "eval"
    cmd = ["faces", "attributes", "evaluate", "--classifier", str(run / "classifier.pt"), "--device", "cpu"]
    assert main([*cmd, "--out", str(report)]) == 0
    rep = json.loads((report / "report.json").read_text())
    assert rep["attributes"]["smile"]["n"] == 4
    assert main([*cmd, "--data", "synthfaces:recipe=eval,count=4"]) == 0
    gen = save_tiny_generator(tmp_path / "g.pt", "stylegan2", 32)
    out = tmp_path / "probe.json"
    probe = ["gan", "probe", "--checkpoint", str(gen), "--classifier", str(run), "--n", "48"]
    assert main([*probe, "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["spearman"]) == {"smile", "glasses", "yaw"} and res["n_test"] == 12
    assert main([*probe, "--attributes", "smile,nope", "--device", "cpu"]) == 2

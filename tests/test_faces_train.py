"""``egain faces train`` / ``evaluate``: loss goes down, resume is exact, the CLI writes what it promises."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from egain.cli.main import main
from egain.errors import InputError
from egain.faces import load_embedder
from egain.faces.data import FaceSet, holdout_identities, load_face_folder, load_faces, split_identities
from egain.faces.verification import verify
from egain.training.faces import FaceTrainConfig, embed_all, train_faces

TINY_NET = {
    "input_size": 16,
    "widths": [8, 16],
    "units": [1, 1],
    "stem_channels": 8,
    "embedding_dim": 16,
    "dropout": 0.0,
    "se": True,
}


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory):
    """12 identities x 6 images at 16 px: a per-identity colour layout plus per-image noise and shift."""
    root = tmp_path_factory.mktemp("faces")
    g = torch.Generator().manual_seed(0)
    records = []
    for ident in range(12):
        base = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=20, mode="bilinear")[
            0
        ]
        for k in range(6):
            dy, dx = torch.randint(0, 5, (2,), generator=g).tolist()
            x = base[:, dy : dy + 16, dx : dx + 16] + 0.1 * torch.randn(3, 16, 16, generator=g)
            name = f"id{ident:02d}_{k}.png"
            Image.fromarray((x.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()).save(root / name)
            records.append({"file": name, "identity": ident, "split": "train" if ident < 9 else "test"})
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _cfg(folder, out, **kw) -> FaceTrainConfig:
    base = dict(
        loss="arcface",
        data=str(folder),
        out=str(out),
        size=16,
        iters=30,
        batch=16,
        warmup=3,
        holdout="3",
        max_shift=1,
        eval_every=0,
        ckpt_every=10,
        log_every=5,
        device="cpu",
        net=dict(TINY_NET),
        loss_options={"scale": 16.0, "margin": 0.3},
    )
    base.update(kw)
    return FaceTrainConfig(**base)


def _train_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"train"' in line]


@pytest.mark.parametrize("loss", ["arcface", "cosface", "magface"])
def test_training_lowers_the_loss_and_exports(face_folder, tmp_path, loss):
    opts = {"scale": 16.0, "l_a": 1.0, "u_a": 20.0} if loss == "magface" else {"scale": 16.0, "margin": 0.3}
    scores = train_faces(_cfg(face_folder, tmp_path, loss=loss, iters=40, loss_options=opts), resume="none")
    log = _train_log(tmp_path)
    late = log[-3:]  # single batches are noisy: compare the mean of the last three logs with the first
    assert sum(r["loss"] for r in late) / 3 < 0.75 * log[0]["loss"]
    assert sum(r["acc"] for r in late) / 3 > log[0]["acc"]
    for name in ("embedder.pt", "checkpoint.pt", "roc.png", "curves.png", "run.json"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "quality.png").exists() == (loss == "magface")
    # the exported embedder reproduces the reported scores on the held-out identities
    emb = load_embedder(str(tmp_path / "embedder.pt"), device="cpu")
    assert emb.loss == loss and not emb.net.training
    faces = load_face_folder(face_folder, 16)
    held = faces.subset(split_identities(faces.identities, 3)[1])
    assert held.identities == ["9", "10", "11"]
    report, _, _ = verify(embed_all(emb, held), held.labels.numpy())
    assert report.eer == pytest.approx(scores["eer"])
    assert report.tar_at_far == pytest.approx(scores["tar_at_far"])


def test_max_minutes_anneals_by_time_and_exports(face_folder, tmp_path, monkeypatch):
    import egain.training.faces as faces_mod

    clock = {"t": 0.0}

    def fake_now() -> float:  # 6 s per look at the clock (once at the start, once per step)
        clock["t"] += 6.0
        return clock["t"]

    monkeypatch.setattr(faces_mod, "_now", fake_now)
    cfg = _cfg(face_folder, tmp_path, iters=1000, max_minutes=1.0, log_every=1)
    scores = train_faces(cfg, resume="none")
    log = _train_log(tmp_path)
    assert log[-1]["step"] == 10  # the 10th step reads 66 s: budget spent, run ends there
    assert log[-1]["lr"] < 0.01 * cfg.learning_rate()  # annealed by time, not by the 1000 steps
    assert log[5]["lr"] < log[3]["lr"]
    assert (tmp_path / "embedder.pt").exists() and scores["n_identities"] == 3
    assert "distortion_blur2" in scores and "distortion_round16" in scores
    meta = torch.load(tmp_path / "embedder.pt", map_location="cpu", weights_only=False)
    assert meta["train"]["stopped_by_time_budget"] is True


def test_resume_continues_to_the_same_weights(face_folder, tmp_path):
    straight = tmp_path / "straight"
    train_faces(_cfg(face_folder, straight, iters=20, net={**TINY_NET, "dropout": 0.3}), resume="none")
    split = tmp_path / "split"
    train_faces(
        _cfg(face_folder, split, iters=20, stop_after=10, net={**TINY_NET, "dropout": 0.3}), resume="none"
    )
    first = torch.load(split / "checkpoint.pt", weights_only=False)
    assert first["step"] == 10 and not (split / "embedder.pt").exists()
    train_faces(_cfg(face_folder, split, iters=20, net={**TINY_NET, "dropout": 0.3}), resume="auto")
    a = torch.load(straight / "embedder.pt", weights_only=False)["state_dict"]
    b = torch.load(split / "embedder.pt", weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    steps = [r["step"] for r in _train_log(split)]
    assert steps == [5, 10, 15, 20]
    # a checkpoint for another loss is refused, not silently mixed
    with pytest.raises(Exception, match="loss"):
        train_faces(_cfg(face_folder, split, iters=25, loss="magface", loss_options={}), resume="auto")


def test_cli_train_then_evaluate(face_folder, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["faces", "train", "--loss", "arcface", "--data", str(face_folder), "--out", str(run)]
    argv += ["--size", "16", "--iters", "12", "--batch", "12", "--widths", "8,16", "--units", "1,1"]
    argv += ["--stem", "8", "--embedding-dim", "16", "--warmup", "2", "--scale", "16"]
    argv += ["--eval-every", "6", "--device", "cpu"]
    assert main(argv) == 0
    assert (run / "embedder.pt").exists()
    evals = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [6, 12]

    rep = tmp_path / "report"
    argv = ["faces", "evaluate", "--embedder", str(run / "embedder.pt"), "--data", str(face_folder)]
    assert main([*argv, "--out", str(rep), "--device", "cpu"]) == 0
    report = json.loads((rep / "report.json").read_text())
    assert (rep / "roc.png").stat().st_size > 1000
    assert report["n_identities"] == 3 and report["n_images"] == 18  # the identities held out in training
    assert report["eer"] == pytest.approx(evals[-1]["eer"])
    assert "EER" in capsys.readouterr().out
    # the MagFace options reach the loss
    mag = tmp_path / "mag"
    margv = [
        "faces",
        "train",
        "--loss",
        "magface",
        "--data",
        str(face_folder),
        "--out",
        str(mag),
        "--size",
        "16",
    ]
    margv += ["--iters", "4", "--batch", "12", "--widths", "8,16", "--units", "1,1", "--stem", "8"]
    assert main([*margv, "--l-a", "1", "--u-a", "20", "--lambda-g", "5", "--device", "cpu"]) == 0
    ck = torch.load(mag / "embedder.pt", weights_only=False)
    assert ck["loss"] == "magface" and (mag / "quality.png").exists()
    assert ck["train"]["config"]["loss_options"] == {
        "scale": 64.0,
        "lambda_g": 5.0,
        "l_a": 1.0,
        "u_a": 20.0,
        "l_m": 0.45,
        "u_m": 0.8,
    }
    # all identities, restricted by split: 9 train-split identities
    assert main([*argv, "--identities", "all", "--split", "train", "--out", str(rep), "--device", "cpu"]) == 0
    assert json.loads((rep / "report.json").read_text())["n_identities"] == 9


def test_holdout_rules(face_folder):
    faces = load_face_folder(face_folder, 16)
    assert faces.identity_split["3"] == "train" and faces.identity_split["10"] == "test"
    train, held = holdout_identities(faces, "auto")  # per-identity splits present: use them
    assert held == ["9", "10", "11"] and len(train) == 9
    assert holdout_identities(faces, "0.25")[1] == ["9", "10", "11"]
    assert holdout_identities(faces, "2")[1] == ["10", "11"]
    mixed = FaceSet(faces.images, faces.labels, faces.identities, None, None)
    assert holdout_identities(mixed, "auto")[1] == ["10", "11"]  # no usable split: 10 %, at least 2
    with pytest.raises(InputError, match="split"):
        holdout_identities(mixed, "split")


def test_on_the_fly_synthfaces_data(tmp_path):
    from egain.data.synthfaces import split_of

    faces = load_faces("synthfaces:12x2,seed=3", 16)
    assert faces.images.shape == (24, 3, 16, 16) and faces.num_identities == 12
    assert faces.identity_split == {str(i): split_of(3, i) for i in range(12)}
    train, held = holdout_identities(faces, "auto")
    assert not set(train) & set(held) and len(train) + len(held) == 12
    scores = train_faces(
        _cfg("synthfaces:12x2,seed=3", tmp_path, iters=3, log_every=1, holdout="auto"), resume="none"
    )
    assert scores["n_identities"] == len(held)


def test_bad_data_is_reported(tmp_path, capsys):
    with pytest.raises(InputError, match="labels.jsonl"):
        load_face_folder(tmp_path, 16)
    (tmp_path / "labels.jsonl").write_text('{"file": "a.png"}\n')
    with pytest.raises(InputError, match="identity"):
        load_face_folder(tmp_path, 16)
    with pytest.raises(InputError, match="held-out"):
        split_identities(["a", "b", "c"], 2)
    argv = [
        "faces",
        "train",
        "--loss",
        "arcface",
        "--data",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err

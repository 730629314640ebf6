"""``egain evaluate`` end to end on small generated folders, bad inputs included."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from egain.cli.main import main
from egain.errors import InputError
from egain.metrics import SCORE_COLUMNS, evaluate_folders, pixel_metrics, read_scores_csv

SIZE = 48  # >= 41, the smallest size VIF-p's four scales fit


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field with a few edges (natural-ish statistics, not white noise)."""
    low = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(low).resize((SIZE, SIZE), Image.BICUBIC)).astype(np.float64)
    img[rng.integers(5, 40) :, : rng.integers(5, 40)] *= 0.6
    return np.clip(img, 0, 255).astype(np.uint8)


def _noisy(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture()
def folders(tmp_path):
    """source/ + good/ (mild noise) + poor/ (strong noise), with one problem of each kind."""
    rng = np.random.default_rng(0)
    src, good, poor = tmp_path / "source", tmp_path / "good", tmp_path / "poor"
    for d in (src, good, poor):
        d.mkdir()
    for i in range(8):
        a = _smooth_image(rng)
        Image.fromarray(a).save(src / f"img{i}.png")
        Image.fromarray(_noisy(a, 4, rng)).save(good / f"img{i}.png")
        Image.fromarray(_noisy(a, 25, rng)).save(poor / f"img{i}.png")
    (src / "README.txt").write_text("not an image")  # non-image file in the source folder
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(good / "img2.png")  # grayscale vs RGB source
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(poor / "img3.png")  # size mismatch
    (poor / "img4.png").write_bytes(b"this is not a png")  # unreadable image
    (poor / "img5.png").unlink()  # unpaired source image
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(poor / "extra.png")  # no source for it
    # a method that saved JPEGs is paired by stem
    Image.open(good / "img0.png").save(good / "img0.jpg", quality=95)
    (good / "img0.png").unlink()
    return tmp_path


def test_cli_end_to_end_report_matches_scores(folders, capsys):
    out = folders / "report"
    code = main(
        [
            "evaluate",
            "--source",
            str(folders / "source"),
            "--method",
            f"good={folders / 'good'}",
            "--method",
            f"poor={folders / 'poor'}",
            "--method",
            f"typo={folders / 'no-such-folder'}",
            "--out",
            str(out),
            "--identity-backend",
            "none",
            "--magface-backend",
            "none",
            "--grid",
            "3",
            "--bootstrap",
            "300",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "not computed: lpips" in captured.err and "alexnet-owt-7be5be79.pth" in captured.err

    # scores.csv: exact columns, one row per valid (image, method), values match a direct computation
    with open(out / "scores.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == SCORE_COLUMNS
    rows = read_scores_csv(out / "scores.csv")
    pairs = {(r["image"], r["method"]) for r in rows}
    assert ("img2.png", "good") not in pairs  # grayscale
    assert {("img3.png", "poor"), ("img4.png", "poor"), ("img5.png", "poor")}.isdisjoint(pairs)
    assert ("img0.png", "good") in pairs  # paired by stem with img0.jpg
    assert len(rows) == 7 + 5
    assert all(r["lpips"] is None and r["id"] is None and r["magface"] is None for r in rows)
    r1 = next(r for r in rows if r["image"] == "img1.png" and r["method"] == "poor")
    a = torch.from_numpy(np.array(Image.open(folders / "source" / "img1.png"))).permute(2, 0, 1)[None]
    b = torch.from_numpy(np.array(Image.open(folders / "poor" / "img1.png"))).permute(2, 0, 1)[None]
    direct = pixel_metrics(a, b)
    for k, v in direct.items():
        assert r1[k] == pytest.approx(float(v[0]), abs=1e-6)
    assert 0 <= r1["ssim"] <= 1 and r1["ssim"] == pytest.approx((r1["ssim_raw"] + 1) / 2)

    # the summary table agrees with the per-image CSV
    with open(out / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    doc = json.loads((out / "summary.json").read_text())
    assert doc["metrics"] == ["ssim", "ssim_raw", "scc", "vif", "psnr", "mae", "mse"]
    assert "lpips" in doc["unavailable"]
    for s in summary:
        vals = np.array([r[s["metric"]] for r in rows if r["method"] == s["method"]], dtype=np.float64)
        assert int(s["n"]) == vals.size
        assert float(s["mean"]) == pytest.approx(vals.mean(), rel=1e-12)
        assert float(s["median"]) == pytest.approx(np.median(vals), rel=1e-12)
        assert float(s["std"]) == pytest.approx(vals.std(ddof=1), rel=1e-9)
        assert float(s["ci_low"]) <= vals.mean() <= float(s["ci_high"])
        assert s["compared_with"] == ("poor" if s["method"] == "good" else "good")
        assert 0 < float(s["p_value"]) <= float(s["p_holm"]) <= 1
    good_ssim = next(s for s in summary if s["metric"] == "ssim" and s["method"] == "good")
    poor_ssim = next(s for s in summary if s["metric"] == "ssim" and s["method"] == "poor")
    assert float(good_ssim["mean"]) > float(poor_ssim["mean"])
    assert int(good_ssim["n_paired"]) == 4  # img1, img6, img7, img0 scored by both methods

    # plots, grid and issues
    for m in doc["metrics"]:
        assert (out / "plots" / f"box_{m}.png").stat().st_size > 1000
    grid = Image.open(out / "grid.png")
    assert grid.width >= 3 * SIZE and grid.height >= 3 * SIZE
    md = (out / "summary.md").read_text()
    assert "| good |" in md and "p (Holm)" in md
    issues = (out / "issues.txt").read_text()
    for needle in (
        "README.txt",
        "grayscale",
        "32x32",
        "not a readable image",
        "img5.png",
        "extra.png",
        "no-such-folder",
    ):
        assert needle in issues, needle
        assert needle in md


def test_python_api_with_injected_embedders(folders):
    class Toy:
        name = "toy"

        def embed(self, images: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(images + 1, 4).flatten(1)

    report = evaluate_folders(
        folders / "source",
        {"poor": folders / "poor"},
        None,
        metrics="ssim,id,magface",
        identity_backend=Toy(),
        magface_backend=Toy(),
        device="cpu",
        n_boot=100,
        progress=False,
    )
    assert report.metrics == ["ssim", "ssim_raw", "id", "magface"]
    assert not report.unavailable and not report.files
    row = next(r for r in report.rows if r["image"] == "img1.png")
    a = (
        torch.from_numpy(np.array(Image.open(folders / "source" / "img1.png"))).permute(2, 0, 1)[None] / 127.5
        - 1
    )
    b = (
        torch.from_numpy(np.array(Image.open(folders / "poor" / "img1.png"))).permute(2, 0, 1)[None] / 127.5
        - 1
    )
    ea, eb = Toy().embed(a), Toy().embed(b)
    assert row["id"] == pytest.approx(float(torch.nn.functional.cosine_similarity(ea, eb)[0]), abs=1e-6)
    assert row["magface"] == pytest.approx(float(eb.norm()), rel=1e-6)
    assert row["scc"] is None and row["vif"] is None
    assert any("MagFace quality of the source images" in n for n in report.notes)


class _Layers(torch.nn.Module):
    """A tiny face-network stand-in with multi-layer features: two conv stages and an embedding."""

    name = "layers"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        f1 = torch.relu(self.a(images))
        f2 = torch.relu(self.b(f1))
        return [f1, f2, f2.mean((2, 3))]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[-1]


def _feat_by_hand(net: _Layers, a: torch.Tensor, b: torch.Tensor) -> float:
    """The face-feature distance of one pair, written out: per level, unit-normalise every
    position's channel vector, squared difference summed over channels, mean over positions;
    summed over levels."""
    total = 0.0
    with torch.no_grad():
        for fa, fb in zip(net.features(a), net.features(b), strict=True):
            fa, fb = fa[0], fb[0]
            if fa.ndim == 1:  # the embedding: one position
                fa, fb = fa[:, None, None], fb[:, None, None]
            c, h, w = fa.shape
            level = 0.0
            for i in range(h):
                for j in range(w):
                    u, v = fa[:, i, j], fb[:, i, j]
                    u = u / (u.norm() + 1e-10)
                    v = v / (v.norm() + 1e-10)
                    level += float(((u - v) ** 2).sum())
            total += level / (h * w)
    return total


def test_face_feature_distance_matches_a_direct_computation_and_the_training_loss(folders):
    from egain.losses.reconstruction import FeatureDistance
    from egain.metrics import feature_distance, metric

    net = _Layers().eval()
    report = evaluate_folders(
        folders / "source",
        {"good": folders / "good", "poor": folders / "poor"},
        None,
        metrics="feat,mae",
        identity_backend=net,
        device="cpu",
        n_boot=50,
        progress=False,
    )
    assert report.metrics == ["mae", "feat"] and not report.unavailable  # id itself was not asked for
    assert any("face-feature distance through 'layers'" in n for n in report.notes)
    spec = metric("feat")
    assert not spec.higher_is_better and spec.needs == "embedder" and spec.function is feature_distance

    def load(folder, name):
        arr = np.array(Image.open(folders / folder / name).convert("RGB"))
        return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1

    for method in ("good", "poor"):
        row = next(r for r in report.rows if r["image"] == "img1.png" and r["method"] == method)
        a, b = load("source", "img1.png"), load(method, "img1.png")
        assert row["feat"] == pytest.approx(_feat_by_hand(net, a, b), rel=1e-5)
        # the training loss is the same formula (one definition, egain.metrics.identity)
        assert row["feat"] == pytest.approx(float(FeatureDistance(net).per_image(b, a)[0].detach()), rel=1e-5)
    table = report.table()
    assert np.nanmean(table["good"]["feat"]) < np.nanmean(table["poor"]["feat"])  # more noise, farther
    same = float(feature_distance(net, load("source", "img1.png"), load("source", "img1.png"))[0])
    assert same == pytest.approx(0.0, abs=1e-9)


def test_face_feature_distance_needs_an_embedder_with_layers(folders):
    class EmbedOnly:
        name = "embed-only"

        def embed(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean((2, 3))

    report = evaluate_folders(
        folders / "source",
        {"poor": folders / "poor"},
        None,
        metrics="id,feat",
        identity_backend=EmbedOnly(),
        device="cpu",
        n_boot=50,
        progress=False,
    )
    assert report.metrics == ["id"] and "no feature maps" in report.unavailable["feat"]
    assert all(r["feat"] is None and r["id"] is not None for r in report.rows)
    off = evaluate_folders(
        folders / "source", {"poor": folders / "poor"}, None, metrics="feat", identity_backend="none",
        device="cpu", n_boot=50, progress=False,
    )  # fmt: skip
    assert "feat" in off.unavailable and off.metrics == []


def test_unavailable_embedder_leaves_column_empty(folders):
    report = evaluate_folders(
        folders / "source",
        {"poor": folders / "poor"},
        folders / "rep",
        metrics="mae,id",
        identity_backend="arcface-irse50:/nowhere/model_ir_se50.pth",
        grid=0,
        device="cpu",
        n_boot=50,
        progress=False,
    )
    assert "model_ir_se50.pth" in report.unavailable["id"]
    assert all(r["id"] is None and r["mae"] is not None for r in report.rows)
    assert "model_ir_se50.pth" in (folders / "rep" / "summary.md").read_text()
    assert not (folders / "rep" / "grid.png").exists()


def test_resize_option_evaluates_mismatched_sizes(folders):
    report = evaluate_folders(
        folders / "source",
        {"poor": folders / "poor"},
        None,
        metrics="psnr",
        size=SIZE,
        device="cpu",
        progress=False,
        n_boot=50,
    )
    assert any(r["image"] == "img3.png" for r in report.rows)  # 32x32 resized to 48x48
    assert all(math.isfinite(r["psnr"]) for r in report.rows)


def test_bad_folders_are_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(other / "a.png")
    code = main(["evaluate", "--source", str(empty), "--method", f"m={other}", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "contains no images" in err and "notes.md" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", {"m": other}, progress=False)
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate_folders(other, {"m": empty}, progress=False)
    with pytest.raises(InputError, match="unknown metric"):
        evaluate_folders(other, {"m": other}, metrics="ssim,fid", progress=False)
    code = main(
        ["evaluate", "--source", str(other), "--method", f"m={other}", "--method", f"m={other}", "--out", "x"]
    )
    assert code == 2 and "given twice" in capsys.readouterr().err

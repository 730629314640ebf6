"""Summary statistics: Holm, bootstrap CI, paired Wilcoxon against the best other method; ID/MagFace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from egain.metrics import (
    bootstrap_mean_ci,
    holm,
    identity_similarity,
    magface_quality,
    paired_wilcoxon,
    resolve_embedder,
    summarise,
)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, float("nan"), 0.2]
    # sorted finite: 0.01 (x4) = 0.04, 0.03 (x3) = 0.09, 0.04 (x2) = 0.08 -> monotone 0.09, 0.2 (x1)
    got = holm(p)
    assert got[0] == pytest.approx(0.04)
    assert got[2] == pytest.approx(0.09)
    assert got[1] == pytest.approx(0.09)
    assert math.isnan(got[3])
    assert got[4] == pytest.approx(0.2)
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    v = np.random.default_rng(3).normal(5.0, 2.0, 200)
    lo, hi = bootstrap_mean_ci(v, n_boot=1000, seed=7)
    assert (lo, hi) == bootstrap_mean_ci(v, n_boot=1000, seed=7)
    assert lo < v.mean() < hi
    se = v.std(ddof=1) / math.sqrt(v.size)  # normal approximation: width ~ 2 * 1.96 * se
    assert 0.7 * 3.92 * se < hi - lo < 1.3 * 3.92 * se
    assert bootstrap_mean_ci(np.array([2.5])) == (2.5, 2.5)
    assert all(math.isnan(x) for x in bootstrap_mean_ci(np.array([np.nan])))


def test_paired_wilcoxon_against_scipy_and_edge_cases():
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.05, 30)
    b = a - rng.normal(0.02, 0.02, 30)
    b[3] = np.nan  # unpaired image dropped
    p, n = paired_wilcoxon(a, b)
    ok = ~np.isnan(b)
    assert n == 29
    assert p == pytest.approx(stats.wilcoxon(a[ok] - b[ok]).pvalue)
    assert paired_wilcoxon(a, a) == (1.0, 30)
    assert math.isnan(paired_wilcoxon(a, np.full(30, np.nan))[0])


def test_summarise_compares_with_best_other_method():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.6, 25)
    scores = {
        "good": {"ssim": base + 0.2, "mae": 0.1 - base / 10},
        "mid": {"ssim": base + 0.1, "mae": 0.2 - base / 10},
        "bad": {"ssim": base, "mae": 0.3 - base / 10},
    }
    recs = summarise(scores, ["ssim", "mae"], n_boot=300, seed=0)
    by = {(r["metric"], r["method"]): r for r in recs}
    assert by[("ssim", "good")]["compared_with"] == "mid"
    assert by[("ssim", "mid")]["compared_with"] == "good"
    assert by[("ssim", "bad")]["compared_with"] == "good"
    assert by[("mae", "bad")]["compared_with"] == "good"  # lower is better for MAE
    r = by[("ssim", "good")]
    v = scores["good"]["ssim"]
    assert (
        r["n"] == 25 and r["mean"] == pytest.approx(v.mean()) and r["median"] == pytest.approx(np.median(v))
    )
    assert r["std"] == pytest.approx(v.std(ddof=1))
    raw = [by[("ssim", m)]["p_value"] for m in ("good", "mid", "bad")]
    assert [by[("ssim", m)]["p_holm"] for m in ("good", "mid", "bad")] == pytest.approx(holm(raw))
    assert r["p_value"] < 1e-4  # every image improves: a clear paired difference


class _ToyEmbedder:
    """Deterministic 'face embedder': 4x4 average-pooled pixels, scaled so the norm varies."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images + 1.0, 4).flatten(1) * 3.0


def test_identity_and_magface_through_an_injected_backend():
    backend = resolve_embedder(_ToyEmbedder())
    assert backend.available
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = x.flip(-1)
    e_x, e_y = _ToyEmbedder().embed(x), _ToyEmbedder().embed(y)
    want = (e_x * e_y).sum(1) / (e_x.norm(dim=1) * e_y.norm(dim=1))
    torch.testing.assert_close(identity_similarity(backend.embedder, x, y), want)
    torch.testing.assert_close(identity_similarity(backend.embedder, x, x), torch.ones(3))
    torch.testing.assert_close(magface_quality(backend.embedder, x), e_x.norm(dim=1))


def test_unavailable_backends_report_a_reason():
    none = resolve_embedder(None)
    assert not none.available and "no face-embedder" in none.reason
    missing = resolve_embedder("arcface-irse50:/no/such/model_ir_se50.pth")
    assert not missing.available and "model_ir_se50.pth" in missing.reason
    fn = resolve_embedder(lambda im: im.flatten(1))
    assert fn.available

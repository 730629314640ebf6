"""The metric table, the statistics' shared helpers and the atomic writers every report uses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from egain.metrics import (
    HIGHER_IS_BETTER,
    METRIC_CHOICES,
    METRICS,
    SCORE_COLUMNS,
    bootstrap_difference_ci,
    describe,
    format_number,
    format_p,
    metric,
    pixel_metrics,
    two_sample_test,
    wilcoxon_test,
)
from egain.runtime.files import atomic_open, atomic_write_json, atomic_write_text


def test_scores_csv_columns_are_the_contract_and_come_from_the_table():
    assert SCORE_COLUMNS == (
        "image", "method", "ssim", "ssim_raw", "scc", "vif", "psnr", "mae", "mse", "lpips", "id", "magface",
        "feat",
    )  # fmt: skip
    assert METRIC_CHOICES == SCORE_COLUMNS[2:] == tuple(m.name for m in METRICS)
    assert {m.name: m.higher_is_better for m in METRICS} == HIGHER_IS_BETTER
    assert [m.name for m in METRICS if not m.higher_is_better] == ["mae", "mse", "lpips", "feat"]
    with pytest.raises(KeyError, match="known: ssim"):
        metric("nope")


def test_each_pixel_metric_function_is_the_engine_score():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 48, 48), generator=g, dtype=torch.uint8)
    y = (x.int() + torch.randint(-20, 21, x.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    pixel = [m for m in METRICS if m.needs == "pixels"]
    engine = pixel_metrics(x, y, [m.name for m in pixel])
    for spec in pixel:
        torch.testing.assert_close(spec.function(x, y), engine[spec.name], msg=spec.name)
    assert metric("lpips").function is None and metric("id").needs == "embedder"


def test_formatting_in_one_place():
    assert metric("psnr").format(31.4159) == "31.42" and metric("mae").header == "MAE ↓"
    assert format_number(float("nan"), 3) == "–" and format_number(math.inf, 3) == "inf"
    assert format_number(None, 2) == "–" and format_number(-math.inf, 1) == "-inf"
    assert format_p(1.9e-5) == "1.9e-05" and format_p(0.0423) == "0.042" and format_p(math.nan) == "–"


def test_describe_two_sample_test_and_difference_ci():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 50)
    d = describe(np.append(x, [np.nan, np.inf]), n_boot=0)
    assert d["n"] == 40 and d["mean"] == pytest.approx(x.mean()) and math.isnan(d["ci_low"])
    assert d["std"] == pytest.approx(x.std(ddof=1)) and d["median"] == pytest.approx(np.median(x))
    t = two_sample_test(x, y, n_boot=500)
    assert t["p_greater"] == pytest.approx(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    assert (
        t["difference"] == pytest.approx(x.mean() - y.mean()) and t["ci_low"] < t["difference"] < t["ci_high"]
    )
    assert (t["ci_low"], t["ci_high"]) == bootstrap_difference_ci(x, y, n_boot=500)
    w = wilcoxon_test(x[:30], y[:30])
    assert w["p_two_sided"] == pytest.approx(stats.wilcoxon(x[:30] - y[:30]).pvalue)
    assert math.isnan(two_sample_test(x, [])["p_greater"])


def test_atomic_writers_leave_the_old_file_on_failure_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]
    path = atomic_write_json(
        tmp_path / "r.json", {"nan": math.nan, "inf": math.inf, "p": tmp_path, "t": (1, 2)}
    )
    assert json.loads(path.read_text()) == {"nan": None, "inf": "inf", "p": str(tmp_path), "t": [1, 2]}

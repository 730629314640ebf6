"""egain compare: statistics against direct computations, the README block, and one tiny end-to-end run."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image
from zoo_helpers import make_tiny_zoo, use_zoo

from egain.cli.main import main
from egain.errors import InputError
from egain.workflows.compare import MARK_END, MARK_START, advantage_test, replace_block, wilcoxon_test


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _exact_signed_rank_p(d: np.ndarray) -> tuple[float, float]:
    """Two-sided and 'greater' p of the signed-rank statistic by enumerating all 2^n sign flips."""
    ranks = np.argsort(np.argsort(np.abs(d))) + 1.0  # no ties in the test data
    w = ranks[d > 0].sum()
    null = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=d.size)
        ]
    )
    mean = ranks.sum() / 2
    greater = float(np.mean(null >= w))
    two = float(np.mean(np.abs(null - mean) >= abs(w - mean)))
    return two, greater


def test_wilcoxon_matches_exact_enumeration_and_orients_lower_is_better():
    rng = np.random.default_rng(3)
    b = rng.normal(size=9)
    a = b + rng.normal(0.6, 1.0, size=9)
    t = wilcoxon_test(a, b)
    two, greater = _exact_signed_rank_p(a - b)
    assert t["p_two_sided"] == pytest.approx(two, rel=1e-9)
    assert t["p_greater"] == pytest.approx(greater, rel=1e-9)
    assert t["median_diff"] == pytest.approx(np.median(a - b))
    assert t["win_rate"] == pytest.approx(np.mean(a > b))
    # MAE-like metric: lower is better, so a < b counts for a
    low = wilcoxon_test(b - 5.0, b, higher_is_better=False)
    assert low["mean_diff"] == pytest.approx(5.0) and low["win_rate"] == 1.0 and low["p_greater"] < 0.01
    nan = wilcoxon_test(np.array([1.0, np.nan, 2.0]), np.array([1.0, 1.0, np.nan]))
    assert nan["n"] == 1 and nan["p_two_sided"] == 1.0


def test_advantage_test_against_direct_computation():
    rng = np.random.default_rng(0)
    hard = rng.normal(0.05, 0.02, size=30)
    normal = rng.normal(0.01, 0.02, size=40)
    a = advantage_test(hard, normal, n_boot=500)
    assert a["difference"] == pytest.approx(hard.mean() - normal.mean())
    assert a["ci_low"] < a["difference"] < a["ci_high"]
    # U statistic by counting pairs: P(hard > normal) is what the one-sided test is about
    u = sum((h > e) + 0.5 * (h == e) for h in hard for e in normal)
    assert u / (hard.size * normal.size) > 0.8 and a["p_greater"] < 1e-4
    flipped = advantage_test(normal, hard, n_boot=100)
    assert flipped["difference"] < 0 and flipped["p_greater"] > 0.99


def test_replace_block_rewrites_only_between_markers():
    text = f"# T\n\nbefore\n{MARK_START}\nold table\n{MARK_END}\nafter\n"
    new = replace_block(text, "new table\n")
    assert new == f"# T\n\nbefore\n{MARK_START}\nnew table\n{MARK_END}\nafter\n"
    assert replace_block(new, "new table") == new  # idempotent
    appended = replace_block("# T\n", "x")
    assert appended.startswith("# T\n") and appended.count(MARK_START) == 1 and "## Comparison" in appended
    with pytest.raises(InputError, match="unmatched"):
        replace_block(f"a {MARK_START} b", "x")
    with pytest.raises(InputError, match="more than one"):
        replace_block(f"{MARK_START}{MARK_END}{MARK_START}{MARK_END}", "x")


def test_compare_end_to_end_writes_table_stats_plots_and_readme(tmp_path, monkeypatch, capsys):
    zoo = make_tiny_zoo(tmp_path / "zoo", ("e4e", "egain"), size=64)
    use_zoo(monkeypatch, zoo)
    readme = tmp_path / "README.md"
    readme.write_text(f"# egain\n\nintro\n\n{MARK_START}\nnothing yet\n{MARK_END}\n\n## Layout\n")
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--methods", "e4e,egain", "--n", "5", "--device", "cpu"]
    assert main([*args, "--bootstrap", "200", "--readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    rows = _csv(out / "comparison.csv")
    assert [(r["set"], r["method"]) for r in rows] == [
        ("eval", "e4e"),
        ("eval", "egain"),
        ("hard", "e4e"),
        ("hard", "egain"),
    ]
    # the table's means are the means of the per-image scores of the evaluate report
    scores = _csv(out / "hard" / "report" / "scores.csv")
    for metric in ("ssim", "scc", "vif", "id", "magface", "psnr", "mae"):
        ref = np.mean([float(s[metric]) for s in scores if s["method"] == "egain"])
        got = float(next(r for r in rows if r["set"] == "hard" and r["method"] == "egain")[f"{metric}_mean"])
        assert got == pytest.approx(ref, rel=1e-9), metric
    assert all(
        float(r["ms_per_image"]) > 0 and int(r["parameters"]) > int(r["parameters_without_generator"])
        for r in rows
    )
    tests = _csv(out / "stats.csv")
    assert {(t["set"], t["metric"]) for t in tests} == {
        (s, m) for s in ("eval", "hard") for m in ("id", "ssim", "scc", "vif")
    }
    doc = json.loads((out / "comparison.json").read_text())
    adv = doc["scc_advantage"]
    assert adv["n_hard"] == adv["n_normal"] == 5 and math.isfinite(adv["difference"])
    assert (out / "plots" / "boxplots.png").exists() and (out / "plots" / "box_scc.png").exists()
    text = readme.read_text()
    assert text.startswith("# egain\n\nintro\n\n") and text.endswith(f"{MARK_END}\n\n## Layout\n")
    block = text[text.index(MARK_START) : text.index(MARK_END)]
    assert (
        "nothing yet" not in block
        and "| hard | egain |" in block
        and f"egain compare --out {out} --methods e4e,egain --n 5 --device cpu --bootstrap 200 --readme {readme}"
        in block
    )
    assert (
        "docs/comparison/boxplots.png" in block
        and (tmp_path / "docs" / "comparison" / "boxplots.png").exists()
    )
    for set_name in ("eval", "hard"):  # the reconstruction grids travel with the box plots
        assert f"docs/comparison/reconstructions_{set_name}.png" in block
        grid = Image.open(tmp_path / "docs" / "comparison" / f"reconstructions_{set_name}.png")
        assert grid.size == Image.open(out / set_name / "report" / "grid.png").size
    assert "| eval | e4e |" in printed
    # a second run reuses the rendered sets and rewrites the same block in place
    data_files = sorted(p.name for p in (out / "data").iterdir())
    assert data_files == ["eval-64px-5", "hard-64px-5"]
    mtime = (out / "data" / "hard-64px-5" / "labels.jsonl").stat().st_mtime_ns
    assert main([*args, "--sets", "hard", "--bootstrap", "50", "--readme", str(readme)]) == 0
    assert (out / "data" / "hard-64px-5" / "labels.jsonl").stat().st_mtime_ns == mtime
    assert readme.read_text().count(MARK_START) == 1


def test_compare_rejects_bad_arguments_before_work(tmp_path, monkeypatch, capsys):
    use_zoo(monkeypatch, tmp_path)  # empty zoo
    assert main(["compare", "--out", str(tmp_path / "c"), "--sets", "eval,nope"]) == 2
    assert "--sets" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "e4e-stylegan2-64" in err and "egain-swagan-64" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_the_header_keeps_the_mark_of_uncommitted_changes():
    from egain.workflows.compare import _short_commit

    assert _short_commit("0123456789abcdef0123+dirty") == "0123456789ab+dirty"
    assert _short_commit("0123456789abcdef0123") == "0123456789ab"
    assert _short_commit(None) == "unknown"


def test_verdicts_name_each_contrast_and_what_fails():
    from egain.workflows.compare import verdict_lines

    def row(ref, metric, diff, p):
        return {"set": "eval", "challenger": "egain", "reference": ref, "metric": metric, "mean_diff": diff,
                "p_two_sided": p}  # fmt: skip

    tests = [row("e4e", m, 0.1, 1e-9) for m in ("id", "ssim", "scc", "vif")]
    tests += [row("hfgi", "id", 0.01, 1e-5), row("hfgi", "scc", -0.03, 1e-9), row("hfgi", "vif", 0.01, 0.2)]
    tests += [{**row("hfgi", "ssim", 0.5, 1e-9), "set": "hard"}]  # only the evaluation set decides
    lines = verdict_lines(tests, None)
    assert (
        lines[0]
        == "- egain beats e4e on id, ssim, scc, vif on the evaluation set (Wilcoxon p < 0.01): **holds**."
    )
    assert lines[1] == (
        "- egain beats hfgi on id, scc, vif on the evaluation set (Wilcoxon p < 0.01): "
        "**does not hold** for scc, vif (holds for id)."
    )
    assert len(lines) == 2

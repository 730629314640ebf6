"""egain compare: statistics against direct computations, the README block, and one tiny end-to-end run."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
from PIL import Image
from zoo_helpers import make_tiny_zoo, use_zoo

from egain.cli.main import main
from egain.errors import InputError
from egain.workflows.compare import (
    DEFAULT_SEEDS,
    MARK_END,
    MARK_START,
    advantage_test,
    claim_verdicts,
    claims_markdown,
    parse_seeds,
    replace_block,
    verdict_lines,
    wilcoxon_test,
)


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


def test_compare_end_to_end_over_seeds_writes_tables_claims_plots_and_readme(tmp_path, monkeypatch, capsys):
    zoo = make_tiny_zoo(tmp_path / "zoo", ("e4e", "egain"), size=64)
    use_zoo(monkeypatch, zoo)
    readme = tmp_path / "README.md"
    readme.write_text(f"# egain\n\nintro\n\n{MARK_START}\nnothing yet\n{MARK_END}\n\n## Layout\n")
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--methods", "e4e,egain", "--n", "5", "--device", "cpu"]
    assert main([*args, "--seeds", "0,1", "--bootstrap", "200", "--readme", str(readme)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    rows = _csv(out / "comparison.csv")
    assert [(r["seed"], r["set"], r["method"]) for r in rows] == [
        (seed, s, m) for seed in ("0", "1", "pooled") for s in ("eval", "hard") for m in ("e4e", "egain")
    ]
    # each seed's table means are the means of its evaluate report; the pooled ones of both seeds
    for seed in ("0", "1"):
        scores = _csv(out / f"seed{seed}" / "hard" / "report" / "scores.csv")
        for metric in ("ssim", "scc", "vif", "id", "magface", "psnr", "mae"):
            ref = np.mean([float(s[metric]) for s in scores if s["method"] == "egain"])
            row = next(r for r in rows if (r["seed"], r["set"], r["method"]) == (seed, "hard", "egain"))
            assert float(row[f"{metric}_mean"]) == pytest.approx(ref, rel=1e-9), metric
    pooled_scores = [
        float(s["scc"])
        for seed in ("0", "1")
        for s in _csv(out / f"seed{seed}" / "eval" / "report" / "scores.csv")
        if s["method"] == "e4e"
    ]
    row = next(r for r in rows if (r["seed"], r["set"], r["method"]) == ("pooled", "eval", "e4e"))
    assert int(row["n"]) == 10 and float(row["scc_mean"]) == pytest.approx(np.mean(pooled_scores), rel=1e-9)
    # the seeds are different images: disjoint identities, seed 0 in the folder name it always had
    ids = {
        seed: {
            json.loads(x)["identity"] for x in (out / "data" / f"eval-64px-5{sfx}" / "labels.jsonl").open()
        }
        for seed, sfx in ((0, ""), (1, "-seed1"))
    }
    assert len(ids[0]) == len(ids[1]) == 5 and not ids[0] & ids[1]
    assert all(
        float(r["ms_per_image"]) > 0 and int(r["parameters"]) > int(r["parameters_without_generator"])
        for r in rows
    )
    tests = _csv(out / "stats.csv")
    assert {(t["seed"], t["set"], t["metric"]) for t in tests} == {
        (seed, s, m)
        for seed in ("0", "1", "pooled")
        for s in ("eval", "hard")
        for m in ("id", "ssim", "scc", "vif")
    }
    adv = {a["seed"]: a for a in _csv(out / "advantage.csv")}
    assert set(adv) == {"0", "1", "pooled"} and int(adv["pooled"]["n_hard"]) == 10
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["min_n"] == 30
    # n=5 is far below the 30 a verdict needs: no claim is said to hold, and a warning says why
    claims = _csv(out / "claims.csv")
    assert [c["claim"] for c in claims] == ["egain>e4e", "scc-advantage"]
    assert all(c["verdict"].startswith("no verdict: too few images (n=5") for c in claims)
    assert all(c["seed_0"] == c["seed_1"] == c["pooled"] == "too few images" for c in claims)
    assert "only n=5 images per set and seed" in captured.err
    assert "**holds**" not in printed and "no verdict: too few images" in printed
    assert (out / "plots" / "boxplots.png").exists() and (out / "plots" / "box_scc.png").exists()
    text = readme.read_text()
    assert text.startswith("# egain\n\nintro\n\n") and text.endswith(f"{MARK_END}\n\n## Layout\n")
    block = text[text.index(MARK_START) : text.index(MARK_END)]
    assert "nothing yet" not in block and "| hard | egain | 10 |" in block  # the pooled table
    assert (
        "#### Seed 0" in block and "#### Seed 1" in block and "| claim | seed 0 | seed 1 | pooled |" in block
    )
    assert "too few (n=5)" in block and "**Warning:** only n=5 images" in block
    assert (
        f"egain compare --out {out} --methods e4e,egain --seeds 0,1 --n 5 --device cpu --bootstrap 200 "
        f"--readme {readme}" in block
    )
    assert (
        "docs/comparison/boxplots.png" in block
        and (tmp_path / "docs" / "comparison" / "boxplots.png").exists()
        and (tmp_path / "docs" / "comparison" / "claims.csv").exists()
    )
    for set_name in ("eval", "hard"):  # the reconstruction grids (first seed) travel with the box plots
        assert f"docs/comparison/reconstructions_{set_name}.png" in block
        grid = Image.open(tmp_path / "docs" / "comparison" / f"reconstructions_{set_name}.png")
        assert grid.size == Image.open(out / "seed0" / set_name / "report" / "grid.png").size
    assert "| eval | e4e | 10 |" in printed
    # a second run reuses the rendered sets and rewrites the same block in place; with a lower
    # --min-n the claims get verdicts, and one seed cannot replicate one
    data_files = sorted(p.name for p in (out / "data").iterdir())
    assert data_files == ["eval-64px-5", "eval-64px-5-seed1", "hard-64px-5", "hard-64px-5-seed1"]
    mtime = (out / "data" / "hard-64px-5-seed1" / "labels.jsonl").stat().st_mtime_ns
    again = [*args, "--seeds", "1", "--min-n", "2", "--bootstrap", "50", "--readme", str(readme)]
    assert main(again) == 0
    assert (out / "data" / "hard-64px-5-seed1" / "labels.jsonl").stat().st_mtime_ns == mtime
    text = readme.read_text()
    assert text.count(MARK_START) == 1 and "**not replicated: " in text and "too few" not in text
    claims = _csv(out / "claims.csv")
    assert all(c["seed_1"] in ("holds", "does not hold") and c["seed_1"] == c["pooled"] for c in claims)


def _claim_rows(seed, diffs, n=40):
    """Wilcoxon records of egain vs e4e on the evaluation set: metric -> (mean diff, p)."""
    return [
        {"seed": seed, "set": "eval", "challenger": "egain", "reference": "e4e", "metric": m, "n": n,
         "mean_diff": d, "p_two_sided": p}
        for m, (d, p) in diffs.items()
    ]  # fmt: skip


def _advantage(seed, difference, p, n=40):
    return {"seed": seed, "difference": difference, "p_greater": p, "n_hard": n, "n_normal": n}


def test_a_claim_holds_only_when_it_holds_on_every_seed_and_pooled():
    good = {m: (0.1, 1e-6) for m in ("id", "ssim", "scc", "vif")}
    bad_scc = {**good, "scc": (-0.01, 0.3)}
    tests = (
        _claim_rows(0, good) + _claim_rows(1, bad_scc) + _claim_rows(2, good) + _claim_rows("pooled", good)
    )
    advantages = [
        _advantage(0, 0.02, 1.9e-5),  # seed 0's hard-set result, which the other seeds do not repeat
        _advantage(1, -0.01, 0.9),
        _advantage(2, 0.004, 0.2),
        _advantage("pooled", 0.004, 0.004),
    ]
    claims = claim_verdicts(tests, advantages, [0, 1, 2], ["e4e", "egain"])
    beats, adv = claims
    assert beats["holds_on"] == 2 and beats["pooled"] == "holds" and beats["verdict"] == "does not replicate"
    assert beats["per_seed"]["1"] == {"verdict": "does not hold", "n": 40, "detail": "fails for scc"}
    assert adv["holds_on"] == 1 and adv["pooled"] == "holds" and adv["verdict"] == "does not replicate"
    lines = verdict_lines(claims)
    assert lines[0] == (
        "- egain beats e4e on id, ssim, scc, vif on the evaluation set (Wilcoxon p < 0.01): "
        "**does not replicate** (holds on 2 of 3 seeds; pooled: holds)."
    )
    assert "larger on the hard set" in lines[1] and "(holds on 1 of 3 seeds; pooled: holds)" in lines[1]
    # every seed and the pool: holds; none of them: does not hold
    all_good = sum((_claim_rows(s, good) for s in (0, 1, 2, "pooled")), [])
    assert claim_verdicts(all_good, [], [0, 1, 2], ["e4e", "egain"])[0]["verdict"] == "holds"
    all_bad = sum((_claim_rows(s, bad_scc) for s in (0, 1, 2, "pooled")), [])
    assert claim_verdicts(all_bad, [], [0, 1, 2], ["e4e", "egain"])[0]["verdict"] == "does not hold"
    # too few images on one seed: no verdict at all, whatever the p-values say
    small = (
        _claim_rows(0, good) + _claim_rows(1, good, n=8) + _claim_rows(2, good) + _claim_rows("pooled", good)
    )
    few = claim_verdicts(small, [], [0, 1, 2], ["e4e", "egain"])[0]
    assert few["per_seed"]["1"]["detail"] == "too few images (n=8) for a verdict"
    assert few["verdict"].startswith("no verdict: too few images (n=8")
    table = claims_markdown(claims, [0, 1, 2])
    assert table.splitlines()[0] == "| claim | seed 0 | seed 1 | seed 2 | pooled | holds on | verdict |"
    assert "does not hold (fails for scc)" in table and "holds (Δ 0.0200, p 1.9e-05)" in table


def test_seeds_parse_and_replicates_are_disjoint_held_out_draws():
    from egain.data.synthfaces import EVAL_COUNT, HARD_COUNT, eval_identities, hard_identities, split_of
    from egain.data.synthfaces.recipes import held_out_identities

    assert parse_seeds(None) == list(DEFAULT_SEEDS) and len(DEFAULT_SEEDS) >= 3
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds(4) == [4]
    for bad in ("a", "1,1", "-1", ""):
        with pytest.raises(InputError, match="--seeds"):
            parse_seeds(bad)
    # replicate 0 is the original pair of sets; replicates 1 and 2 are new held-out identities
    assert eval_identities(0, EVAL_COUNT) == held_out_identities(0, EVAL_COUNT, 0)
    assert hard_identities(0, HARD_COUNT) == held_out_identities(0, HARD_COUNT, EVAL_COUNT)
    drawn = [
        set(eval_identities(0, EVAL_COUNT, r)) | set(hard_identities(0, HARD_COUNT, r)) for r in range(3)
    ]
    assert all(len(d) == EVAL_COUNT + HARD_COUNT for d in drawn)
    assert not (drawn[0] & drawn[1] or drawn[0] & drawn[2] or drawn[1] & drawn[2])
    assert all(split_of(0, i) == "test" for d in drawn for i in d)


def test_compare_rejects_bad_arguments_before_work(tmp_path, monkeypatch, capsys):
    use_zoo(monkeypatch, tmp_path)  # empty zoo
    assert main(["compare", "--out", str(tmp_path / "c"), "--sets", "eval,nope"]) == 2
    assert "--sets" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path / "c"), "--seeds", "0,x"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "e4e-stylegan2-64" in err and "egain-swagan-64" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_the_header_keeps_the_mark_of_uncommitted_changes():
    from egain.workflows.compare import _short_commit

    assert _short_commit("0123456789abcdef0123+dirty") == "0123456789ab+dirty"
    assert _short_commit("0123456789abcdef0123") == "0123456789ab"
    assert _short_commit(None) == "unknown"


# ------------------------------------------------------------------------------------------------
# plans: claims of the seed papers beyond "A beats B"


def _pair_rows(seed, c, r, diffs, n=40, set_name="eval"):
    """Records of challenger c vs reference r: metric -> (mean diff, p, reference mean)."""
    return [
        {"seed": seed, "set": set_name, "challenger": c, "reference": r, "metric": m, "n": n,
         "mean_diff": d, "p_two_sided": p, "mean_reference": ref}
        for m, (d, p, ref) in diffs.items()
    ]  # fmt: skip


def test_claim_kinds_are_judged_as_their_definitions_say():
    from egain.workflows.compare import Claim

    seeds = [0, 1]
    # close: |mean diff| <= margin * |reference mean| on every metric
    close = Claim("close", ("a", "b"), ("ssim", "psnr"), margin=0.02)
    rows = sum(
        (
            _pair_rows(s, "a", "b", {"ssim": (0.01, 0.5, 0.8), "psnr": (0.3, 0.5, 20.0)})
            for s in [0, 1, "pooled"]
        ),
        [],
    )
    assert claim_verdicts(rows, [], seeds, ["a", "b"], claims=[close])[0]["verdict"] == "holds"
    wide = [dict(r, mean_diff=0.5) if r["metric"] == "psnr" else r for r in rows]  # 0.5 > 0.02 * 20
    judged = claim_verdicts(wide, [], seeds, ["a", "b"], claims=[close])[0]
    assert judged["verdict"] == "does not hold" and judged["per_seed"]["0"]["detail"] == "fails for psnr"
    # not-beats holds exactly when beats fails
    good = {"ssim": (0.1, 1e-6, 0.8), "psnr": (1.0, 1e-6, 20.0)}
    beaten = sum((_pair_rows(s, "a", "b", good) for s in [0, 1, "pooled"]), [])
    nb = Claim("not-beats", ("a", "b"), ("ssim", "psnr"))
    bt = Claim("beats", ("a", "b"), ("ssim", "psnr"))
    v = claim_verdicts(beaten, [], seeds, ["a", "b"], claims=[bt, nb])
    assert [c["verdict"] for c in v] == ["holds", "does not hold"]
    assert v[1]["per_seed"]["0"]["detail"] == "better on every metric"
    # diminishing: gain(top over mid) <= margin * gain(mid over base)
    dim = Claim("diminishing", ("s1", "s2", "s3"), ("ssim",), margin=0.5)

    def gains(mid_gain, top_gain):
        return sum(
            (
                _pair_rows(s, "s2", "s1", {"ssim": (mid_gain, 1e-6, 0.8)})
                + _pair_rows(s, "s3", "s2", {"ssim": (top_gain, 1e-6, 0.8)})
                for s in [0, 1, "pooled"]
            ),
            [],
        )

    labels = ["s1", "s2", "s3"]
    assert claim_verdicts(gains(0.04, 0.01), [], seeds, labels, claims=[dim])[0]["verdict"] == "holds"
    assert claim_verdicts(gains(0.04, 0.03), [], seeds, labels, claims=[dim])[0]["verdict"] == "does not hold"
    # no gain from stage 2: stage 3 "adds little" only if it does not gain either
    assert (
        claim_verdicts(gains(-0.01, 0.001), [], seeds, labels, claims=[dim])[0]["verdict"] == "does not hold"
    )
    # a claim whose tests are missing (method not run) gets no record
    assert claim_verdicts(beaten, [], seeds, ["a", "b"], claims=[Claim("beats", ("a", "c"))]) == []


def test_shipped_plans_parse_and_their_labels_are_valid(monkeypatch):
    from egain.workflows.bundled import parse_spec
    from egain.workflows.compare import available_plans, load_plan

    monkeypatch.setenv("ZOO_RUNS", "/some/runs")
    assert {"e2style-stages", "encoders", "dse"} <= set(available_plans())
    for name in available_plans():
        plan = load_plan(name)
        shown = [parse_spec(m).name for m in plan.methods]
        assert len(set(shown)) == len(shown) and plan.claims, name
        for claim in plan.claims:
            assert set(claim.methods) <= set(shown), (name, claim)
    stages = load_plan("e2style-stages")
    spec = parse_spec(stages.methods[2])
    assert spec.method == "e2style" and spec.checkpoint == "/some/runs/e2style-s3-stylegan2-64/model.pt"
    assert parse_spec(stages.methods[0]).options == {"run_stages": 1}


def test_label_grammar_and_bad_plans_give_one_line(tmp_path):
    from egain.workflows.bundled import parse_spec
    from egain.workflows.compare import load_plan

    s = parse_spec("r1=e4e@noise_mode=const@passes=2")
    assert (s.name, s.bundled, s.options) == ("r1", "e4e", {"noise_mode": "const", "passes": 2})
    s = parse_spec("mine=e4e:/x/model.pt")
    assert (s.name, s.method, s.checkpoint) == ("mine", "e4e", "/x/model.pt")
    s = parse_spec("e4e=zoo:e4e-stylegan2-64")  # the older NAME=CHECKPOINT form
    assert (s.name, s.method, s.checkpoint) == ("e4e", "e4e", "zoo:e4e-stylegan2-64")
    s = parse_spec("optim-w@steps=3")
    assert (s.method, s.checkpoint, s.options) == ("optim-w", None, {"steps": 3})
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_spec("e4e@steps")
    with pytest.raises(InputError, match="unknown bundled method"):
        parse_spec("nonesuch")
    with pytest.raises(InputError, match="unknown comparison plan"):
        load_plan("nonesuch")
    bad = tmp_path / "bad.toml"
    bad.write_text('methods = ["e4e"]\n[[claims]]\nkind = "wins"\nmethods = ["e4e", "egain"]\n')
    with pytest.raises(InputError, match="kind 'wins'"):
        load_plan(bad)
    bad.write_text('methods = ["e4e"]\n[[claims]]\nkind = "diminishing"\nmethods = ["e4e", "egain"]\n')
    with pytest.raises(InputError, match="names 3 methods"):
        load_plan(bad)


def test_compare_with_a_plan_file_end_to_end(tmp_path, monkeypatch):
    zoo = make_tiny_zoo(tmp_path / "zoo", ("e4e", "egain"), size=64)
    use_zoo(monkeypatch, zoo)
    plan = tmp_path / "mine.toml"
    plan.write_text(
        'title = "Mine"\nmethods = ["e4e", "egain", "e4e-again=e4e"]\nsets = ["eval"]\nn = 4\n'
        '[[claims]]\nkind = "close"\nmethods = ["e4e-again", "e4e"]\nmetrics = ["ssim", "psnr"]\nmargin = 0.001\n'
        '[[claims]]\nkind = "beats"\nmethods = ["egain", "e4e"]\nmetrics = ["psnr"]\n'
    )
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--plan", str(plan), "--seeds", "0,1", "--min-n", "2"]
    assert main([*args, "--device", "cpu", "--bootstrap", "50"]) == 0
    claims = _csv(out / "claims.csv")
    assert [c["claim"] for c in claims] == ["e4e-again~e4e[ssim,psnr]", "egain>e4e[psnr]"]
    # the same model twice is close to itself on every seed and pooled
    assert claims[0]["verdict"] == "holds" and claims[0]["holds_on"] == "2"
    tests = _csv(out / "stats.csv")
    assert {(t["set"], t["challenger"], t["metric"]) for t in tests} == {
        ("eval", "e4e-again", "ssim"), ("eval", "e4e-again", "psnr"), ("eval", "egain", "psnr")
    }  # fmt: skip
    assert all(float(t["mean_diff"]) == 0.0 for t in tests if t["challenger"] == "e4e-again")
    assert (out / "comparison.md").read_text().startswith("**Mine.")


def test_compare_runs_optimisers_from_a_plan_and_scores_the_face_feature_distance(tmp_path, monkeypatch):
    """Optimiser labels (a method that trains nothing, built on the bundled StyleGAN2, with its
    ``@steps``) run in ``egain compare`` beside a bundled encoder, and ``feat`` reaches the table,
    the tests and the claims."""
    import shutil

    from inversion_helpers import save_tiny_generator

    zoo = make_tiny_zoo(tmp_path / "zoo", ("e4e",), size=64)
    save_tiny_generator(zoo / "gan-stylegan2-64.pt", "stylegan2", 64)  # what e4e was built on
    shutil.copy(zoo / "faces-cosface-64.pt", zoo / "faces-arcface-64.pt")  # the optimisers' perceptual net
    use_zoo(monkeypatch, zoo)
    plan = tmp_path / "optim.toml"
    plan.write_text(
        'title = "Optimisers"\n'
        'methods = ["optim-w=optim-w@steps=2", "optim-wplus=optim-wplus@steps=3", "e4e"]\n'
        'sets = ["eval"]\nn = 3\n'
        '[[claims]]\nkind = "beats"\nmethods = ["optim-wplus", "optim-w"]\nmetrics = ["psnr", "feat"]\n'
    )
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--plan", str(plan), "--seeds", "0", "--min-n", "2"]
    assert main([*args, "--device", "cpu", "--bootstrap", "20"]) == 0
    rows = _csv(out / "comparison.csv")
    assert {r["method"] for r in rows} == {"optim-w", "optim-wplus", "e4e"}
    for r in rows:
        assert (
            np.isfinite(float(r["feat_mean"])) and float(r["feat_mean"]) >= 0 and float(r["ms_per_image"]) > 0
        )
    scores = _csv(out / "seed0" / "eval" / "report" / "scores.csv")
    for m in ("optim-w", "optim-wplus"):
        row = next(r for r in rows if r["method"] == m and r["seed"] == "0")
        mine = [float(s["feat"]) for s in scores if s["method"] == m]
        assert len(mine) == 3 and float(row["feat_mean"]) == pytest.approx(np.mean(mine), rel=1e-9)
    tests = _csv(out / "stats.csv")
    assert {(t["challenger"], t["metric"]) for t in tests if t["seed"] == "0"} == {
        ("optim-wplus", "psnr"), ("optim-wplus", "feat")
    }  # fmt: skip
    claims = _csv(out / "claims.csv")
    assert [c["claim"] for c in claims] == ["optim-wplus>optim-w[psnr,feat]"]
    assert claims[0]["seed_0"] in ("holds", "does not hold")
    md = (out / "comparison.md").read_text()
    assert "Feat ↓" in md and "| eval | optim-wplus | 3 |" in md

"""``egain compare``: the comparison of the bundled methods that produces the README table.

A claim measured on one draw of images can be luck: "the SCC advantage of egain over e4e is larger
on the hard set" held on seed 0 (p = 1.9e-5) and on neither of two further seeds. So the whole
comparison is repeated on several *seeds* -- independent draws of the evaluation sets (seed k is
``replicate`` k of the synthfaces recipes: disjoint held-out identities; seed 0 is the original
pair of sets) -- and every claim is judged per seed and on the images of all seeds pooled. A claim
is stated as holding only when it holds on every seed *and* pooled (with at least two seeds), and
no verdict is given on fewer than ``min_n`` images per set and seed.

Steps (each with a progress bar), per seed:

1. render the synthfaces evaluation recipes (``eval``: 500 held-out identities; ``hard``: 200 with
   rare details) at the models' input size into OUT/data/ (reused when already there);
2. invert every set with every bundled method, timing ``invert`` per image, counting parameters;
3. score with the ``egain evaluate`` engine (OUT/seed<k>/<set>/report/);

then:

4. combine: OUT/comparison.{md,csv,json} -- per seed (and pooled), set and method: ID, SSIM in
   [0,1], SCC, VIF, MagFace, PSNR, MAE, Feat (mean ± std), time per image and parameters;
   OUT/stats.csv -- paired Wilcoxon signed-rank tests of egain against e4e, e4e-swagan and hfgi on
   ID, SSIM, SCC and VIF, and the SCC advantage of egain over e4e on the hard set against the
   evaluation set (Mann-Whitney U, bootstrap CI), per seed and pooled; OUT/claims.csv -- each
   claim's verdict per seed, pooled, and "holds on k of n seeds"; OUT/plots/ -- box plots (pooled);
5. with ``readme``: rewrite the block between ``<!-- comparison:start -->`` and
   ``<!-- comparison:end -->`` with the tables, the claims, the box plots and each set's
   reconstruction grid (``report/grid.png`` of the first seed; copied next to it).

The claims under test (seeds/000, Table I and Fig. 3): egain beats e4e (and e4e-swagan, hfgi) on
ID, SSIM, SCC and VIF (p < 0.01), and its SCC advantage over e4e is larger on images with rare
high-frequency details. The numbers are reported as they are either way.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.errors import InputError
from egain.metrics.functional import VIF_MIN_SIZE
from egain.metrics.report import write_boxplot_figure, write_csv
from egain.metrics.stats import describe, format_p, two_sample_test, wilcoxon_test
from egain.metrics.table import format_number, metric
from egain.runtime.files import atomic_copy, atomic_write_json, atomic_write_text
from egain.workflows.bundled import (
    COMPARE_METHODS,
    EMBEDDERS,
    embedder_available,
    label_name,
    load_bundled,
    parse_labels,
    require_weights,
)
from egain.workflows.inversion import InversionRun, invert_files

__all__ = [
    "ALPHA",
    "CONTRASTS",
    "DEFAULT_SEEDS",
    "MARK_END",
    "MARK_START",
    "MIN_N",
    "CompareResult",
    "advantage_test",
    "claim_verdicts",
    "parse_seeds",
    "replace_block",
    "run_compare",
    "table_markdown",
    "verdict_lines",
    "wilcoxon_test",
]

SETS = ("eval", "hard")
SET_TITLES = {"eval": "evaluation set", "hard": "hard set (rare details)"}
MARK_START = "<!-- comparison:start -->"
MARK_END = "<!-- comparison:end -->"
#: metrics of the table, in column order (headers and digits come from the metric table)
TABLE_METRICS = ("id", "ssim", "scc", "vif", "magface", "psnr", "mae", "feat")
#: metrics of the paired tests and of the claims
TESTED = ("id", "ssim", "scc", "vif")
#: metrics scored by the evaluate engine
METRICS = ("ssim", "scc", "vif", "psnr", "mae", "mse", "id", "magface", "feat")
#: metrics scored through another metric's bundled embedder: the face-feature distance (the
#: perceptual term of the plans, LPIPS's recipe where no LPIPS weights can be had) uses the ID scorer
SHARED_EMBEDDER = {"feat": "id"}
#: (challenger, reference) pairs tested per set; the first is the claim the README states first
CONTRASTS = (("egain", "e4e"), ("egain", "e4e-swagan"), ("egain", "hfgi"))
#: the contrast and metric whose advantage is compared between the hard and the evaluation set
ADVANTAGE = ("egain", "e4e", "scc")
ALPHA = 0.01
#: seeds when none are given: three independent draws of the sets
DEFAULT_SEEDS = (0, 1, 2)
#: fewest images per set and seed on which a verdict is given
MIN_N = 30
POOLED = "pooled"
HOLDS, FAILS, TOO_FEW = "holds", "does not hold", "too few images"

Scores = dict[str, dict[str, dict[str, np.ndarray]]]  # set -> method -> metric -> per-image values


@dataclass
class CompareResult:
    """What ``run_compare`` produced. ``table`` and ``tests`` hold one record per seed and set (and
    the pooled ones, ``seed == "pooled"``); ``claims`` one record per claim (see
    :func:`claim_verdicts`); ``warnings`` the lines about too small samples."""

    out: Path
    table: list[dict]
    tests: list[dict]
    advantages: list[dict]
    claims: list[dict]
    seeds: list[int]
    files: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    metrics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# data


def parse_seeds(seeds: str | int | Sequence[int] | None) -> list[int]:
    """``"0,1,2"`` (or ``"0-4"``, or a sequence) as a list of distinct non-negative seeds."""
    if seeds is None:
        return list(DEFAULT_SEEDS)
    if isinstance(seeds, int):
        seeds = [seeds]
    items: list[int] = []
    parts = [p.strip() for p in seeds.split(",")] if isinstance(seeds, str) else list(seeds)
    try:
        for p in parts:
            if isinstance(p, str) and "-" in p.strip("-"):
                lo, hi = (int(x) for x in p.split("-", 1))
                items += list(range(lo, hi + 1))
            elif p != "":
                items.append(int(p))
    except ValueError:
        items = [-1]
    if not items or any(s < 0 for s in items) or len(set(items)) != len(items):
        raise InputError(
            f"--seeds must be a comma list of distinct non-negative integers (e.g. 0,1,2), got {seeds!r}"
        )
    return items


def _recipe_count(name: str, n: int | None) -> int:
    from egain.data.synthfaces import EVAL_COUNT, HARD_COUNT

    full = EVAL_COUNT if name == "eval" else HARD_COUNT
    return full if n is None else min(int(n), full)


def prepare_set(
    root: Path, name: str, count: int, size: int, workers: int, progress: bool, seed: int = 0
) -> Path:
    """Render recipe ``name`` of ``seed`` (``count`` images at ``size`` px) into
    root/<name>-<size>px-<count>[-seed<k>], or reuse a complete earlier rendering (recipes are
    deterministic; seed 0 keeps the folder name it had before there were seeds)."""
    import json

    from egain.data.synthfaces import write_synthfaces

    folder = root / f"{name}-{size}px-{count}" if seed == 0 else root / f"{name}-{size}px-{count}-seed{seed}"
    labels = folder / "labels.jsonl"
    if labels.exists():
        lines = labels.read_text(encoding="utf-8").splitlines()
        if len(lines) == count and all((folder / json.loads(x)["file"]).exists() for x in lines):
            return folder
    write_synthfaces(
        folder,
        size=size,
        recipe=name,
        count=count,
        workers=workers,
        overwrite=True,
        show_progress=progress,
        replicate=seed,
    )
    return folder


# ------------------------------------------------------------------------------------------------
# statistics (the tests themselves live in egain.metrics.stats)


def advantage_test(
    d_hard: np.ndarray, d_normal: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Is the per-image advantage on the hard set larger than on the normal set?

    The two sets hold different images, so the test is unpaired: one-sided Mann-Whitney U
    (hard > normal) on the per-image differences, and a percentile bootstrap CI of the difference
    of the mean advantages (:func:`egain.metrics.stats.two_sample_test`, keys renamed).
    """
    t = two_sample_test(d_hard, d_normal, n_boot=n_boot, seed=seed)
    return {
        "n_hard": t["n_x"],
        "n_normal": t["n_y"],
        "mean_hard": t["mean_x"],
        "mean_normal": t["mean_y"],
        "median_hard": t["median_x"],
        "median_normal": t["median_y"],
        "difference": t["difference"],
        "p_greater": t["p_greater"],
        "ci_low": t["ci_low"],
        "ci_high": t["ci_high"],
    }


def pool_scores(per_seed: Mapping[int, Scores]) -> Scores:
    """The per-image scores of all seeds, concatenated per set, method and metric (the seeds hold
    disjoint identities, so the pool is one larger sample)."""
    first = next(iter(per_seed.values()))
    return {
        s: {
            m: {
                k: np.concatenate([np.asarray(per_seed[seed][s][m][k]) for seed in per_seed])
                for k in first[s][m]
            }
            for m in first[s]
        }
        for s in first
    }


def contrast_tests(
    scores: Scores, labels: Sequence[str], seed: int | str, claims: Sequence[Claim] | None = None
) -> list[dict]:
    """The paired Wilcoxon tests the claims rest on, on every set: by default every contrast of
    :data:`CONTRASTS` on the :data:`TESTED` metrics; with ``claims``, each claim's pairs on its
    metrics. Each record also carries both methods' means (``mean_challenger``,
    ``mean_reference``), which the ``close`` claims measure their margin against."""
    wanted: list[tuple[str, str, tuple[str, ...]]] = []
    if claims is None:
        wanted = [(c, r, TESTED) for c, r in CONTRASTS]
    else:
        for claim in claims:
            wanted += [(c, r, claim.metrics) for c, r in claim.pairs()]
    tests, seen = [], set()
    for set_name, per_method in scores.items():
        for challenger, reference, names in wanted:
            if challenger not in labels or reference not in labels:
                continue
            for name in names:
                if name not in per_method[challenger] or (set_name, challenger, reference, name) in seen:
                    continue
                seen.add((set_name, challenger, reference, name))
                a, b = per_method[challenger][name], per_method[reference][name]
                t = wilcoxon_test(a, b, metric(name).higher_is_better)
                tests.append(
                    {
                        "seed": seed,
                        "set": set_name,
                        "challenger": challenger,
                        "reference": reference,
                        "metric": name,
                        **t,
                        "mean_challenger": float(np.nanmean(a)) if np.size(a) else math.nan,
                        "mean_reference": float(np.nanmean(b)) if np.size(b) else math.nan,
                    }
                )
    return tests


def hard_set_advantage(scores: Scores, labels: Sequence[str], seed: int | str, n_boot: int) -> dict | None:
    """The advantage test of :data:`ADVANTAGE`, when both sets and both methods were run."""
    c, r, name = ADVANTAGE
    if not ({"eval", "hard"} <= set(scores) and {c, r} <= set(labels) and name in scores["eval"][c]):
        return None
    diff = {s: np.asarray(scores[s][c][name]) - np.asarray(scores[s][r][name]) for s in ("eval", "hard")}
    return {
        "seed": seed,
        "challenger": c,
        "reference": r,
        "metric": name,
        **advantage_test(diff["hard"], diff["eval"], n_boot),
    }


# ------------------------------------------------------------------------------------------------
# claims


@dataclass(frozen=True)
class Claim:
    """One claim under test, judged per seed and pooled.

    ``kind``:

    * ``beats`` -- ``methods[0]`` is better than ``methods[1]`` on every metric of ``metrics`` on
      ``set`` (paired Wilcoxon, mean difference in its favour and two-sided p < ALPHA);
    * ``not-beats`` -- the negation: ``methods[0]`` fails to beat ``methods[1]`` on at least one
      metric (Table I's "2Stage* is not better than one stage");
    * ``close`` -- on every metric the mean paired difference is within ``margin`` times the
      reference's mean (a relative margin, e.g. 0.02: "SAM-encoder is close to ReStyle");
    * ``diminishing`` -- ``methods = (base, mid, top)``: on every metric the mean gain of ``top``
      over ``mid`` is at most ``margin`` times the gain of ``mid`` over ``base`` ("3 stages add
      little over 2");
    * ``advantage`` -- the hard-set advantage test of :data:`ADVANTAGE`.
    """

    kind: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...] = TESTED
    set: str = "eval"
    margin: float = 0.0
    source: str = ""
    text: str = ""  # the statement; generated from the fields when empty

    @property
    def key(self) -> str:
        sep = {"beats": ">", "not-beats": "!>", "close": "~", "diminishing": ">>", "advantage": "+"}[
            self.kind
        ]
        if self.kind == "advantage":
            return f"{ADVANTAGE[2]}-advantage"
        return (
            sep.join(self.methods)
            + ("" if self.metrics == TESTED else f"[{','.join(self.metrics)}]")
            + ("" if self.set == "eval" else f"@{self.set}")
        )

    @property
    def statement(self) -> str:
        if self.text:
            return self.text
        where = SET_TITLES.get(self.set, self.set)
        names = ", ".join(self.metrics)
        a = self.methods[0]
        if self.kind == "beats":
            body = f"{a} beats {self.methods[1]} on {names} on the {where} (Wilcoxon p < {ALPHA})"
        elif self.kind == "not-beats":
            body = (
                f"{a} does not beat {self.methods[1]} on all of {names} on the {where} (Wilcoxon p < {ALPHA})"
            )
        elif self.kind == "close":
            body = (
                f"{a} is close to {self.methods[1]} on {names} on the {where} (mean difference within "
                f"{100 * self.margin:g} % of {self.methods[1]}'s mean)"
            )
        elif self.kind == "diminishing":
            base, mid, top = self.methods
            body = (
                f"{top} adds little over {mid} on {names} on the {where} (its mean gain is at most "
                f"{100 * self.margin:g} % of {mid}'s gain over {base})"
            )
        else:
            c, r, name = ADVANTAGE
            body = (
                f"the {metric(name).label} advantage of {c} over {r} is larger on the hard set than on the "
                f"evaluation set (Mann-Whitney U p < {ALPHA})"
            )
        return body + (f" [{self.source}]" if self.source else "")

    def pairs(self) -> list[tuple[str, str]]:
        """The (challenger, reference) pairs whose paired tests the claim rests on."""
        if self.kind == "diminishing":
            base, mid, top = self.methods
            return [(mid, base), (top, mid)]
        if self.kind == "advantage":
            return []
        return [(self.methods[0], self.methods[1])]


CLAIM_KINDS = ("beats", "not-beats", "close", "diminishing", "advantage")


@dataclass(frozen=True)
class Plan:
    """A named comparison: the methods it runs, the claims it tests, where the claims come from.

    Shipped plans are TOML files in ``egain/presets/compare/`` (``egain compare --plan NAME``); a
    path to such a file works as well. Keys: ``title``, ``description``, ``methods`` (labels, see
    :func:`egain.workflows.bundled.parse_spec`; ``$ZOO_RUNS`` in a checkpoint path is the folder of
    ``scripts/train_zoo.sh``'s runs, for ablation models that are not bundled), optional ``sets``
    and ``n``, and ``[[claims]]`` tables with the fields of :class:`Claim` (``kind``, ``methods``,
    ``metrics``, ``set``, ``margin``, ``source``, ``text``).
    """

    name: str
    title: str
    description: str
    methods: tuple[str, ...]
    claims: tuple[Claim, ...]
    sets: tuple[str, ...] = SETS
    n: int | None = None


PLANS_DIR = Path(__file__).resolve().parent.parent / "presets" / "compare"


def available_plans() -> list[str]:
    return sorted(p.stem for p in PLANS_DIR.glob("*.toml"))


def load_plan(name: str | os.PathLike) -> Plan:
    """A shipped plan by name, or a plan file; one-line errors for unknown names and bad fields."""
    from egain.presets import _toml_load

    path = Path(name)
    if not path.suffix:
        path = PLANS_DIR / f"{name}.toml"
        if not path.exists():
            raise InputError(
                f"unknown comparison plan {str(name)!r}; shipped plans: {', '.join(available_plans())}"
            )
    elif not path.is_file():
        raise InputError(f"comparison plan file {str(path)!r} does not exist")
    try:
        data = _toml_load(path)
    except Exception as exc:  # tomllib.TOMLDecodeError and OSError: one line
        raise InputError(f"comparison plan {str(path)!r} is not valid TOML: {exc}") from None
    runs = os.environ.get("ZOO_RUNS", "runs")
    methods = tuple(str(m).replace("$ZOO_RUNS", runs) for m in data.get("methods", ()))
    if not methods:
        raise InputError(f"comparison plan {str(path)!r} lists no methods")
    claims = []
    for i, c in enumerate(data.get("claims", ())):
        kind = c.get("kind")
        if kind not in CLAIM_KINDS:
            raise InputError(
                f"{path.name}: claim {i + 1} has kind {kind!r}; expected one of {', '.join(CLAIM_KINDS)}"
            )
        want = 3 if kind == "diminishing" else 2
        ms = tuple(c.get("methods", ()))
        if len(ms) != want:
            raise InputError(
                f"{path.name}: a {kind} claim names {want} methods, claim {i + 1} names {len(ms)}"
            )
        bad = [m for m in c.get("metrics", ()) if m not in METRICS]
        if bad:
            raise InputError(
                f"{path.name}: claim {i + 1}: unknown metric(s) {bad}; known: {', '.join(METRICS)}"
            )
        claims.append(
            Claim(
                kind,
                ms,
                tuple(c.get("metrics", TESTED)),
                c.get("set", "eval"),
                float(c.get("margin", 0.0)),
                c.get("source", ""),
                c.get("text", ""),
            )
        )
    return Plan(
        path.stem,
        data.get("title", path.stem),
        data.get("description", ""),
        methods,
        tuple(claims),
        tuple(data.get("sets", SETS)),
        data.get("n"),
    )


def default_claims(labels: Sequence[str]) -> list[Claim]:
    """The README comparison's claims that the chosen methods allow (seeds/000, Table I and Fig. 3)."""
    claims = [Claim("beats", (c, r)) for c, r in CONTRASTS if c in labels and r in labels]
    c, r, _ = ADVANTAGE
    if c in labels and r in labels:
        claims.append(Claim("advantage", (c, r)))
    return claims


def _claim_texts(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(key, statement) of every default claim the chosen methods allow."""
    return [(c.key, c.statement) for c in default_claims(labels)]


def _judge(claim: Claim, tests: Sequence[dict], advantage: dict | None, min_n: int) -> dict | None:
    """One claim on one seed (or pooled): {"verdict": holds | does not hold | too few images,
    "n": images it rests on, "detail": what failed, or the numbers}."""
    if claim.kind == "advantage":
        if advantage is None:
            return None
        n = min(advantage["n_hard"], advantage["n_normal"])
        ok = advantage["difference"] > 0 and advantage["p_greater"] < ALPHA
        detail = f"Δ {format_number(advantage['difference'], 4)}, p {format_p(advantage['p_greater'])}"
    else:

        def rows_of(c: str, r: str) -> dict[str, dict]:
            return {
                t["metric"]: t
                for t in tests
                if t["set"] == claim.set
                and (t["challenger"], t["reference"]) == (c, r)
                and t["metric"] in claim.metrics
            }

        per_pair = [rows_of(c, r) for c, r in claim.pairs()]
        if any(len(rows) < len(claim.metrics) for rows in per_pair):
            return None
        n = min(t["n"] for rows in per_pair for t in rows.values())
        failed = []
        for name in claim.metrics:
            first = per_pair[0][name]
            if claim.kind in ("beats", "not-beats"):
                good = first["mean_diff"] > 0 and first["p_two_sided"] < ALPHA
            elif claim.kind == "close":
                ref = abs(first.get("mean_reference", math.nan))
                good = abs(first["mean_diff"]) <= claim.margin * ref
            else:  # diminishing: gain of top over mid <= margin * (gain of mid over base)
                gain_mid, gain_top = first["mean_diff"], per_pair[1][name]["mean_diff"]
                good = gain_top <= claim.margin * max(gain_mid, 0.0)
            if not good:
                failed.append(name)
        if claim.kind == "not-beats":
            ok = bool(failed)
            detail = f"not better on {', '.join(failed)}" if failed else "better on every metric"
        else:
            ok = not failed
            detail = f"fails for {', '.join(failed)}" if failed else ""
            if claim.kind == "diminishing":
                detail = "; ".join(
                    f"{m}: {format_number(per_pair[1][m]['mean_diff'], metric(m).digits)} vs "
                    f"{format_number(per_pair[0][m]['mean_diff'], metric(m).digits)}"
                    for m in claim.metrics
                ) + (f" (fails for {', '.join(failed)})" if failed else "")
    if n < min_n:
        return {"verdict": TOO_FEW, "n": n, "detail": f"too few images (n={n}) for a verdict"}
    return {"verdict": HOLDS if ok else FAILS, "n": n, "detail": detail}


def replicated_verdict(per: Mapping[str, dict], seeds: Sequence[int], min_n: int) -> dict[str, Any]:
    """The overall verdict of one claim from its per-seed and pooled verdicts (``per`` keyed by
    ``str(seed)`` and ``"pooled"``), by the rule of :func:`egain.workflows.compare.claim_verdicts`:
    *holds* on every seed and pooled with at least two seeds, *does not hold* on none and not pooled,
    *does not replicate* otherwise; *no verdict* with too few images, *not replicated* on one seed.
    (``egain evaluate-edits`` judges its claims by the same rule.)
    """
    seed_verdicts = [per[str(s)]["verdict"] for s in seeds if str(s) in per]
    pooled = per.get(POOLED, {"verdict": TOO_FEW})["verdict"]
    k = sum(v == HOLDS for v in seed_verdicts)
    if TOO_FEW in seed_verdicts or pooled == TOO_FEW:
        n = min(v["n"] for v in per.values())
        overall = f"no verdict: too few images (n={n} per set and seed; at least {min_n} needed)"
    elif len(seeds) < 2:
        overall = f"not replicated: {per[str(seeds[0])]['verdict']} on the one seed run"
    elif k == len(seeds) and pooled == HOLDS:
        overall = HOLDS
    elif k == 0 and pooled != HOLDS:
        overall = FAILS
    else:
        overall = "does not replicate"
    return {"holds_on": k, "seeds": len(seeds), "pooled": pooled, "verdict": overall}


def claim_verdicts(
    tests: Sequence[dict],
    advantages: Sequence[dict],
    seeds: Sequence[int],
    labels: Sequence[str],
    min_n: int = MIN_N,
    claims: Sequence[Claim] | None = None,
) -> list[dict]:
    """Each claim judged per seed and pooled, with its replication count and overall verdict.

    ``claims``: the claims under test (default :func:`default_claims` of ``labels``).
    ``tests`` / ``advantages`` are records with a ``seed`` key (an int, or "pooled"). The overall
    verdict: *holds* when the claim holds on every seed and pooled, with at least two seeds;
    *does not hold* when it holds on none and not pooled; *does not replicate* otherwise; *no
    verdict* when any seed (or the pool) has fewer than ``min_n`` images, or only one seed was run
    (then it says what that seed showed).
    """
    out = []
    for claim in default_claims(labels) if claims is None else claims:
        key, statement = claim.key, claim.statement
        per: dict[str, dict] = {}
        for s in [*seeds, POOLED]:
            adv = next((a for a in advantages if a["seed"] == s), None)
            judged = _judge(claim, [t for t in tests if t["seed"] == s], adv, min_n)
            if judged is not None:
                per[str(s)] = judged
        if not per:
            continue
        summary = replicated_verdict(per, seeds, min_n)
        out.append(
            {
                "claim": key,
                "statement": statement,
                "per_seed": per,
                **summary,
            }
        )
    return out


def verdict_lines(claims: Sequence[dict]) -> list[str]:
    """Plain statements of whether each claim holds: only a claim that holds on every seed and
    pooled is stated as holding; the others say on how many seeds it held."""
    lines = []
    for c in claims:
        count = f"holds on {c['holds_on']} of {c['seeds']} seed{'s' if c['seeds'] != 1 else ''}"
        lines.append(f"- {c['statement']}: **{c['verdict']}** ({count}; pooled: {c['pooled']}).")
    return lines


def claims_markdown(claims: Sequence[dict], seeds: Sequence[int]) -> str:
    """A table: one row per claim, its verdict per seed, pooled, and overall."""
    if not claims:
        return ""
    head = "| claim | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled | holds on | verdict |"
    lines = [head, "|---|" + "---|" * (len(seeds) + 3)]

    def cell(v: dict | None) -> str:
        if v is None:
            return "–"
        if v["verdict"] == TOO_FEW:
            return f"too few (n={v['n']})"
        return v["verdict"] + (f" ({v['detail']})" if v["detail"] else "")

    for c in claims:
        cells = [cell(c["per_seed"].get(str(s))) for s in seeds] + [cell(c["per_seed"].get(POOLED))]
        lines.append(
            f"| {c['statement']} | "
            + " | ".join(cells)
            + f" | {c['holds_on']} of {c['seeds']} | **{c['verdict']}** |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# tables and plots


def combined_rows(
    scores: Scores, runs: Mapping[str, Mapping[str, Sequence[InversionRun]]], seed: int | str
) -> list[dict]:
    """One record per (set, method) of one seed (or the pool): n, mean/std/median per metric, ms
    per image (over all the runs given), parameters."""
    rows = []
    for set_name, per_method in scores.items():
        for label, values in per_method.items():
            done = runs[set_name][label]
            rec: dict[str, Any] = {"seed": seed, "set": set_name, "method": label}
            for name in TABLE_METRICS:
                d = describe(values.get(name, np.array([])), n_boot=0)
                rec.update(
                    {f"{name}_mean": d["mean"], f"{name}_std": d["std"], f"{name}_median": d["median"]}
                )
            rec["n"] = int(max((np.isfinite(np.asarray(v)).sum() for v in values.values()), default=0))
            images = sum(r.images for r in done)
            rec["ms_per_image"] = 1000.0 * sum(r.seconds_per_image * r.images for r in done) / max(1, images)
            rec["parameters"] = done[0].parameters
            rec["parameters_without_generator"] = done[0].parameters_without_generator
            rows.append(rec)
    return rows


def table_markdown(rows: Sequence[dict], metrics: Sequence[str]) -> str:
    """The Markdown table of :func:`combined_rows` records (mean ± std per metric)."""
    cols = [metric(k) for k in TABLE_METRICS if k in metrics]
    head = (
        "| set | method | n | "
        + " | ".join(c.header for c in cols)
        + " | time / image (ms) | parameters (M, encoder only) |"
    )
    lines = [head, "|---|---|---|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = [f"{c.format(r[f'{c.name}_mean'])} ± {c.format(r[f'{c.name}_std'])}" for c in cols]
        params = f"{r['parameters'] / 1e6:.2f} ({r['parameters_without_generator'] / 1e6:.2f})"
        lines.append(
            f"| {r['set']} | {r['method']} | {r['n']} | "
            + " | ".join(cells)
            + f" | {r['ms_per_image']:.1f} | {params} |"
        )
    return "\n".join(lines)


def tests_markdown(tests: Sequence[dict], advantage: dict | None) -> str:
    """The paired tests as a table, then the hard-set advantage as a sentence."""
    lines = []
    if tests:
        lines += [
            "| set | comparison | metric | n | median diff | mean diff | better on | p (two-sided) | p (one-sided) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in tests:
            spec = metric(t["metric"])
            lines.append(
                f"| {t['set']} | {t['challenger']} vs {t['reference']} | {t['metric']} | {t['n']} | "
                f"{spec.format(t['median_diff'])} | {spec.format(t['mean_diff'])} | "
                f"{format_number(100 * t['win_rate'], 0)} % | {format_p(t['p_two_sided'])} | {format_p(t['p_greater'])} |"
            )
    if advantage:
        a = advantage
        d = metric(a["metric"]).digits
        lines += [
            "",
            f"{metric(a['metric']).label} advantage of {a['challenger']} over {a['reference']} (per-image difference): "
            f"hard set mean {format_number(a['mean_hard'], d)} (median {format_number(a['median_hard'], d)}, "
            f"n={a['n_hard']}), evaluation set mean {format_number(a['mean_normal'], d)} "
            f"(median {format_number(a['median_normal'], d)}, n={a['n_normal']}); difference "
            f"{format_number(a['difference'], d)} (95 % bootstrap CI {format_number(a['ci_low'], d)} .. "
            f"{format_number(a['ci_high'], d)}), one-sided Mann-Whitney U p = {format_p(a['p_greater'])}.",
        ]
    return "\n".join(lines)


def write_boxplots(scores: Scores, metrics: Sequence[str], out_dir: Path) -> dict[str, Path]:
    """box_<metric>.png (one panel per set, a box per method) and boxplots.png (ID/SSIM/SCC/VIF)."""

    def panel(set_name: str, name: str):
        values = {m: v.get(name, np.array([])) for m, v in scores[set_name].items()}
        return values, name, SET_TITLES.get(set_name, set_name)

    files: dict[str, Path] = {}
    for name in metrics:
        row = [panel(s, name) for s in scores]
        files[f"box_{name}"] = write_boxplot_figure([row], out_dir / f"box_{name}.png")
    main = [m for m in TESTED if m in metrics]
    if main:
        grid = [[panel(s, m) for m in main] for s in scores]
        files["boxplots"] = write_boxplot_figure(grid, out_dir / "boxplots.png")
    return files


# ------------------------------------------------------------------------------------------------
# README block


def replace_block(text: str, block: str, start: str = MARK_START, end: str = MARK_END) -> str:
    """``text`` with everything between the markers replaced by ``block``.

    When the markers are absent a "Comparison" section holding them is appended, so the first run
    creates the block; a start marker without its end marker is an error (the file would be cut).
    """
    i, j = text.find(start), text.find(end)
    body = f"{start}\n{block.strip()}\n{end}"
    if i < 0 and j < 0:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}## Comparison on synthfaces\n\n{body}\n"
    if i < 0 or j < 0 or j < i:
        raise InputError(f"the README has an unmatched comparison marker; expected '{start}' ... '{end}'")
    if text.find(start, i + 1) >= 0 or text.find(end, j + 1) >= 0:
        raise InputError(f"the README holds more than one '{start}' ... '{end}' block")
    return text[:i] + body + text[j + len(end) :]


def update_readme(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    atomic_write_text(readme, replace_block(text, block))


# ------------------------------------------------------------------------------------------------
# the whole comparison


def _sample_warnings(table: Sequence[dict], seeds: Sequence[int], min_n: int) -> list[str]:
    """One line when a set of some seed has fewer images than a verdict needs."""
    small = [r["n"] for r in table if r["seed"] != POOLED]
    if not small or min(small) >= min_n:
        return []
    lines = [
        f"**Warning:** only n={min(small)} images per set and seed; a verdict needs at least {min_n} "
        f"(raise `--n`), so the claims below are given no verdict."
    ]
    if len(seeds) < 2:
        lines.append("**Warning:** one seed only: no claim can replicate (run with `--seeds 0,1,2`).")
    return lines


def _document(
    header: Sequence[str],
    warnings: Sequence[str],
    table: Sequence[dict],
    tests: Sequence[dict],
    advantages: Sequence[dict],
    claims: Sequence[dict],
    seeds: Sequence[int],
    metrics: Sequence[str],
    notes: Sequence[str],
    min_n: int,
) -> str:
    """comparison.md (and the README block): pooled table, claims, pooled tests, per-seed details."""

    def of(records: Sequence[dict], s: int | str) -> list[dict]:
        return [r for r in records if r["seed"] == s]

    def adv(s: int | str) -> dict | None:
        return next((a for a in advantages if a["seed"] == s), None)

    seeds_text = ", ".join(str(s) for s in seeds)
    parts = ["\n".join(header), "\n\n".join(warnings)]
    parts += [
        f"Pooled over seed{'s' if len(seeds) > 1 else ''} {seeds_text} (n: images per set, all seeds together):",
        table_markdown(of(table, POOLED), metrics),
        "Claims, per seed and pooled. A claim is stated as holding only when it holds on every seed and on the "
        f"pooled images (at least two seeds; no verdict on fewer than {min_n} images "
        "per set and seed):",
        claims_markdown(claims, seeds),
        "\n".join(verdict_lines(claims)),
        "Paired Wilcoxon signed-rank tests on the pooled images (differences oriented so that positive favours "
        "the first method):",
        tests_markdown(of(tests, POOLED), adv(POOLED)),
    ]
    details = ["<details><summary>Per-seed tables and tests</summary>"]
    for s in seeds:
        details += [
            f"#### Seed {s}",
            table_markdown(of(table, s), metrics),
            tests_markdown(of(tests, s), adv(s)),
        ]
    details.append("</details>")
    parts.append("\n\n".join(details))
    if notes:
        parts.append("\n".join(f"- {x}" for x in notes))
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


def run_compare(
    out: str | os.PathLike,
    methods: str | Sequence[str] = COMPARE_METHODS,
    *,
    sets: str | Sequence[str] = SETS,
    seeds: str | Sequence[int] | None = DEFAULT_SEEDS,
    n: int | None = None,
    size: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    workers: int = 1,
    readme: str | os.PathLike | None = None,
    readme_assets: str | os.PathLike | None = None,
    command: str | None = None,
    n_boot: int = 2000,
    min_n: int = MIN_N,
    progress: bool = True,
    claims: Sequence[Claim] | None = None,
    title: str | None = None,
) -> CompareResult:
    """Run the whole comparison into ``out`` (see the module docstring).

    ``claims``: the claims to test (default: the README comparison's, :func:`default_claims`);
    claims naming a method that is not run are left out. ``title``: a first line of the report
    (a plan's title and source)."""
    from egain.metrics.evaluate import evaluate_folders
    from egain.runtime.runinfo import git_commit, hardware_description
    from egain.utils.device import resolve_device
    from egain.utils.images import list_images

    labels = parse_labels(methods, COMPARE_METHODS)
    set_names = [s.strip() for s in (sets.split(",") if isinstance(sets, str) else sets) if s.strip()]
    bad = [s for s in set_names if s not in SETS]
    if bad or not set_names or len(set(set_names)) != len(set_names):
        raise InputError(f"--sets must be a comma list of {', '.join(SETS)} (each once), got {sets!r}")
    seed_list = parse_seeds(seeds)
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if min_n < 1:
        raise InputError(f"--min-n must be at least 1, got {min_n}")
    require_weights(labels, "egain compare")
    dev = resolve_device(device)
    t_start = time.perf_counter()
    commit = git_commit()  # the code that runs: taken now, not when the long run ends
    models = {label_name(label): load_bundled(label, dev) for label in labels}
    labels = list(models)
    if claims is not None:
        claims = [c for c in claims if set(c.methods) <= set(labels)]
    sizes = {int(m.input_size) for m in models.values()}
    if size is None:
        if len(sizes) != 1:
            raise InputError(
                f"the methods take different input sizes ({sorted(sizes)}); choose one with --size"
            )
        size = sizes.pop()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedder_of = {m: SHARED_EMBEDDER.get(m, m) for m in METRICS}
    metrics = [m for m in METRICS if embedder_of[m] not in EMBEDDERS or embedder_available(embedder_of[m])]
    notes = [
        f"{m} not computed: bundled face embedder {EMBEDDERS[embedder_of[m]][1]} is not installed"
        for m in METRICS
        if m not in metrics
    ]
    if size < VIF_MIN_SIZE:
        metrics.remove("vif")
        notes.append(
            f"vif not computed: VIF-p needs images of at least {VIF_MIN_SIZE} px, these are {size} px"
        )

    per_seed: dict[int, Scores] = {}
    runs: dict[int, dict[str, dict[str, InversionRun]]] = {}
    grids: dict[str, Path] = {}
    data_dirs: dict[str, str] = {}
    for seed in seed_list:
        per_seed[seed], runs[seed] = {}, {}
        for set_name in set_names:
            data = prepare_set(
                out / "data", set_name, _recipe_count(set_name, n), size, workers, progress, seed=seed
            )
            data_dirs[f"seed{seed}/{set_name}"] = str(data)
            here = out / f"seed{seed}" / set_name
            files = list_images(data)
            runs[seed][set_name] = {
                label: invert_files(  # each seed's own inference noise (DSE), the same for every method
                    model,
                    files,
                    here / label,
                    label=label,
                    batch_size=batch_size,
                    progress=progress,
                    seed=seed,
                )
                for label, model in models.items()
            }
            report = evaluate_folders(
                data,
                {label: here / label for label in labels},
                here / "report",
                metrics=metrics,
                identity_backend=EMBEDDERS["id"][0] if "id" in metrics else None,  # and "feat"
                magface_backend=EMBEDDERS["magface"][0] if "magface" in metrics else None,
                device=dev,
                batch_size=64,
                n_boot=n_boot,
                progress=progress,
            )
            notes += [
                f"seed {seed}, {set_name}: {k} not computed: {v}" for k, v in report.unavailable.items()
            ]
            per_seed[seed][set_name] = report.table()
            if "grid" in report.files and set_name not in grids:  # source | method 1 | ... (first seed)
                grids[set_name] = report.files["grid"]

    pooled = pool_scores(per_seed)
    table, tests, advantages = [], [], []
    for seed in seed_list:
        seed_runs = {s: {m: [r] for m, r in runs[seed][s].items()} for s in set_names}
        table += combined_rows(per_seed[seed], seed_runs, seed)
        tests += contrast_tests(per_seed[seed], labels, seed, claims)
        a = hard_set_advantage(per_seed[seed], labels, seed, n_boot)
        advantages += [a] if a else []
    all_runs = {s: {m: [runs[seed][s][m] for seed in seed_list] for m in labels} for s in set_names}
    table += combined_rows(pooled, all_runs, POOLED)
    tests += contrast_tests(pooled, labels, POOLED, claims)
    a = hard_set_advantage(pooled, labels, POOLED, n_boot)
    advantages += [a] if a else []
    claims_run = claim_verdicts(tests, advantages, seed_list, labels, min_n, claims)
    warnings = _sample_warnings(table, seed_list, min_n)

    files: dict[str, Path] = {}
    files.update(write_boxplots(pooled, metrics, out / "plots"))
    files["table_csv"] = write_records(out / "comparison.csv", table)
    files["stats_csv"] = write_records(out / "stats.csv", tests)
    files["advantage_csv"] = write_records(out / "advantage.csv", advantages)
    files["claims_csv"] = write_records(out / "claims.csv", [claim_row(c, seed_list) for c in claims_run])
    first = runs[seed_list[0]]
    counts = ", ".join(f"{SET_TITLES[s]}: {first[s][labels[0]].images} images" for s in set_names)
    command = command or f"egain compare --out {out}"
    header = [f"**{title}**"] if title else []
    header += [
        f"Produced by `{command}` at commit {_short_commit(commit)} on {hardware_description(dev)}; "
        f"seeds {', '.join(map(str, seed_list))} (independent draws of held-out identities), per seed {counts}; "
        f"{size} px; {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "Means ± standard deviations over images. ID: cosine similarity of synthfaces CosFace embeddings (the scorer; methods train against the independent synthfaces ArcFace); "
        "SSIM mapped to [0, 1]; SCC and VIF-p as sewar; MagFace: embedding norm of the synthfaces MagFace network; "
        "MAE on intensities in [0, 1]; Feat: face-feature distance, LPIPS's recipe on the CosFace scorer's layers "
        "(lower is better; the perceptual measure where no LPIPS weights can be had offline); time: `invert` per image on the device above, after a warm-up; "
        "parameters: whole model with the generator (encoders and fusion only in brackets).",
    ]
    markdown = _document(
        header, warnings, table, tests, advantages, claims_run, seed_list, metrics, notes, min_n
    )
    files["table_md"] = atomic_write_text(
        out / "comparison.md", markdown + "\n![box plots](plots/boxplots.png)\n"
    )
    meta = {
        "command": command,
        "device": str(dev),
        "size": size,
        "seeds": seed_list,
        "min_n": min_n,
        "sets": data_dirs,
        "methods": labels,
        "metrics": metrics,
        "table": table,
        "tests": tests,
        "advantages": advantages,
        "claims": claims_run,
        "warnings": warnings,
        "notes": notes,
        "wall_time_s": time.perf_counter() - t_start,
    }
    files["json"] = atomic_write_json(out / "comparison.json", meta)

    if readme is not None:
        readme = Path(readme)
        assets = Path(readme_assets) if readme_assets is not None else readme.parent / "docs" / "comparison"
        for key in ("boxplots", "table_csv", "stats_csv", "advantage_csv", "claims_csv"):
            if key in files:
                atomic_copy(files[key], assets / files[key].name)
        for set_name, grid in grids.items():
            atomic_copy(grid, assets / f"reconstructions_{set_name}.png")
        rel = os.path.relpath(assets, readme.parent).replace(os.sep, "/")
        block = markdown
        if "boxplots" in files:
            block += (
                f"\n![Box plots of ID, SSIM, SCC and VIF per method and set, all seeds]({rel}/boxplots.png)\n"
            )
        for set_name in grids:
            block += (
                f"\nThe first images of the {SET_TITLES[set_name]} of seed {seed_list[0]}, source and "
                f"reconstructions:\n\n![Reconstructions, {SET_TITLES[set_name]}]({rel}/reconstructions_{set_name}.png)\n"
            )
        block += (
            "\nTables as CSV: "
            + ", ".join(
                f"[{rel}/{f}]({rel}/{f})"
                for f in ("comparison.csv", "stats.csv", "advantage.csv", "claims.csv")
            )
            + ".\n"
        )
        update_readme(readme, block)
        files["readme"] = readme
    return CompareResult(
        out, table, tests, advantages, claims_run, seed_list, files, markdown, metrics, warnings
    )


def claim_row(claim: dict, seeds: Sequence[int]) -> dict:
    """A flat claims.csv record: the verdict per seed and pooled, the count and the overall verdict."""
    row = {"claim": claim["claim"], "statement": claim["statement"]}
    for s in [*seeds, POOLED]:
        v = claim["per_seed"].get(str(s))
        row[f"seed_{s}" if s != POOLED else POOLED] = "" if v is None else v["verdict"]
    row.update(holds_on=claim["holds_on"], seeds=claim["seeds"], verdict=claim["verdict"])
    return row


def write_records(path: Path, rows: Sequence[dict]) -> Path:
    """A CSV of records whose columns are every key, in first-seen order."""
    return write_csv(path, list(dict.fromkeys(k for r in rows for k in r)), rows)


def _short_commit(commit: str | None) -> str:
    """12 hex digits, keeping the "+dirty" mark of a tree with uncommitted changes."""
    if not commit:
        return "unknown"
    digest, dirty, _ = commit.partition("+dirty")
    return digest[:12] + ("+dirty" if dirty else "")

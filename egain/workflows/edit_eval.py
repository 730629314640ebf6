"""``egain evaluate-edits`` on several seeds: per-seed and pooled edit fidelity, and the editing claims.

One draw of held-out images can mislead (see :mod:`egain.workflows.compare`), so the edit evaluation
of :func:`egain.editing.evaluate.evaluate_edits` is repeated on several *seeds* -- seed k is
``replicate`` k of the synthfaces evaluation recipe (disjoint held-out identities), the convention of
``egain compare`` -- and each claim is judged per seed and on the images of all seeds pooled, with
the rules, verdict words and tables of ``egain compare`` (a claim is stated as holding only when it
holds on every seed *and* pooled, with at least two seeds and ``min_n`` images per seed).

The claims under test (paired Wilcoxon signed-rank, two-sided p < 0.01 and the mean difference in
the claimed direction on every metric named):

* seeds/001 Fig. 7: for every method scored with and without ADA (``NAME`` and ``NAME (no ADA)``),
  "NAME with ADA beats NAME without ADA on edit fidelity against ground truth" -- SSIM, PSNR and
  the feature distance against the re-rendered ground truth;
* seeds/004 Table II: "e2style preserves identity after editing better than X" for each X of psp,
  restyle-psp, restyle-e4e and e4e among the methods -- ID similarity of the edit to the source.

The paired unit is an *image*: its score is the mean over every (attribute, strength) cell
evaluated, so each image counts once (the cells of one image are not independent) and both methods
of a pair are scored on the same images. The per-cell tests are written too (``edit_tests.csv``)
as detail; they are not claims.

Outputs in OUT: ``seed<k>/`` (the single-draw report of each seed: ``edit_scores.csv``,
``edit_scores_per_image.csv``, ``edit_summary.md``, ``grid_<attribute>.png``); ``edit_scores.csv``
(the pooled means, same columns as a single-draw report; FID is the mean of the seeds' FIDs),
``edit_scores_by_seed.csv`` (every seed's means and the pooled ones, with a ``seed`` column),
``edit_scores_per_image.csv`` (with ``seed``), ``edit_tests.csv``, ``claims.csv``,
``edit_summary.md`` (claims, the pooled table, each seed's table) and the first seed's grids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from egain.editing.evaluate import edit_table_markdown, evaluate_edits, write_edit_report
from egain.metrics.stats import format_p, wilcoxon_test
from egain.runtime.files import atomic_write_text
from egain.workflows.compare import (
    ALPHA,
    FAILS,
    HOLDS,
    MIN_N,
    POOLED,
    TOO_FEW,
    claim_row,
    claims_markdown,
    parse_seeds,
    replicated_verdict,
    verdict_lines,
    write_records,
)

__all__ = [
    "ADA_METRICS",
    "DIRECTION",
    "ID_REFERENCES",
    "EditEvalResult",
    "edit_claims",
    "edit_tests",
    "image_scores",
    "parse_seeds",
    "pooled_rows",
    "run_edit_evaluation",
]

#: whether a larger value is better, per score of :func:`evaluate_edits`
DIRECTION: dict[str, bool] = {
    "gt_ssim": True,
    "gt_psnr": True,
    "gt_feat": False,
    "gt_id": True,
    "src_id": True,
    "outside_change": False,
    "other_change": False,
}
SCORES = tuple(DIRECTION)
#: edit fidelity against ground truth: the metrics of the ADA claims (seeds/001 Fig. 7)
ADA_METRICS = ("gt_ssim", "gt_psnr", "gt_feat")
#: identity preservation after editing: seeds/004 Table II, e2style against each of these
ID_CHALLENGER = "e2style"
ID_REFERENCES = ("psp", "restyle-psp", "restyle-e4e", "e4e")
ID_METRICS = ("src_id",)
METRIC_NAMES = {
    "gt_ssim": "SSIM",
    "gt_psnr": "PSNR",
    "gt_feat": "feature distance",
    "gt_id": "ID vs GT",
    "src_id": "ID vs source",
    "outside_change": "change outside region",
    "other_change": "other attributes",
}
NO_ADA = " (no ADA)"

PerImage = dict[str, dict[str, np.ndarray]]  # method -> score -> per-image values (one seed or pooled)


@dataclass
class EditEvalResult:
    """What :func:`run_edit_evaluation` produced: the pooled rows, every seed's rows (``seed``
    key, and the pooled ones with ``seed == "pooled"``), the paired tests, the claims (the
    records of :func:`egain.workflows.compare.claim_verdicts`), the files and the summary text."""

    out: Path
    rows: list[dict]
    rows_by_seed: list[dict]
    tests: list[dict]
    claims: list[dict]
    seeds: list[int]
    region: str
    files: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""


# ------------------------------------------------------------------------------------------------
# per-image scores and tests


def image_scores(per_image: Sequence[Mapping[str, Any]], cell: tuple[str, float] | None = None) -> PerImage:
    """Per method and score, one value per image: the mean over the (attribute, strength) cells
    (only ``cell`` = (attribute, strength) when given), images in order of their index."""
    acc: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in per_image:
        if cell is not None and (r["attribute"], float(r["strength"])) != (cell[0], float(cell[1])):
            continue
        per = acc.setdefault(r["method"], {})
        for k in SCORES:
            per.setdefault(k, {}).setdefault(int(r["image"]), []).append(float(r[k]))
    return {
        m: {k: np.array([np.mean(v[i]) for i in sorted(v)]) for k, v in per.items()} for m, per in acc.items()
    }


def pool_images(per_seed: Mapping[int, PerImage]) -> PerImage:
    """The seeds' per-image scores concatenated (disjoint identities: one larger sample)."""
    first = next(iter(per_seed.values()))
    return {
        m: {k: np.concatenate([per_seed[s][m][k] for s in per_seed]) for k in first[m]}
        for m in first
        if all(m in per_seed[s] for s in per_seed)
    }


def contrasts(labels: Sequence[str]) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """(key, challenger, reference, metrics, statement) of every claim the methods allow."""
    out = []
    for label in labels:
        if label.endswith(NO_ADA) or f"{label}{NO_ADA}" not in labels:
            continue
        out.append(
            (
                f"{label}:ada>no-ada",
                label,
                f"{label}{NO_ADA}",
                ADA_METRICS,
                f"{label} with ADA beats {label} without ADA on edit fidelity against ground truth "
                f"({', '.join(METRIC_NAMES[k] for k in ADA_METRICS)}; Wilcoxon p < {ALPHA})",
            )
        )
    if ID_CHALLENGER in labels:
        for ref in ID_REFERENCES:
            if ref in labels:
                out.append(
                    (
                        f"{ID_CHALLENGER}>{ref}:id",
                        ID_CHALLENGER,
                        ref,
                        ID_METRICS,
                        f"{ID_CHALLENGER} preserves identity after editing better than {ref} "
                        f"(ID vs source; Wilcoxon p < {ALPHA})",
                    )
                )
    return out


def edit_tests(scores: PerImage, seed: int | str, scope: str = "all") -> list[dict]:
    """Paired Wilcoxon tests of every contrast on its metrics (records with ``seed`` and ``scope``:
    "all" = per-image means over all cells, else "ATTRIBUTE STRENGTH")."""
    tests = []
    for key, c, r, names, _ in contrasts(list(scores)):
        for name in names:
            t = wilcoxon_test(scores[c][name], scores[r][name], DIRECTION[name])
            tests.append(
                {
                    "seed": seed,
                    "scope": scope,
                    "claim": key,
                    "challenger": c,
                    "reference": r,
                    "metric": name,
                    **t,
                }
            )
    return tests


# ------------------------------------------------------------------------------------------------
# claims


def judge(tests: Sequence[dict], min_n: int) -> dict | None:
    """One claim on one seed (or pooled) from its tests (scope "all"): holds when every metric
    differs in the claimed direction with two-sided p < ALPHA (the rule of ``egain compare``)."""
    if not tests:
        return None
    n = min(t["n"] for t in tests)
    failed = [t["metric"] for t in tests if not (t["mean_diff"] > 0 and t["p_two_sided"] < ALPHA)]
    if n < min_n:
        return {"verdict": TOO_FEW, "n": n, "detail": f"too few images (n={n}) for a verdict"}
    if failed:
        detail = "fails for " + ", ".join(
            f"{METRIC_NAMES[t['metric']]} (Δ {t['mean_diff']:+.4g}, p {format_p(t['p_two_sided'])})"
            for t in tests
            if t["metric"] in failed
        )
    else:
        detail = "; ".join(
            f"{METRIC_NAMES[t['metric']]} Δ {t['mean_diff']:+.4g}, p {format_p(t['p_two_sided'])}"
            for t in tests
        )
    return {"verdict": FAILS if failed else HOLDS, "n": n, "detail": detail}


def edit_claims(
    tests: Sequence[dict], seeds: Sequence[int], labels: Sequence[str], min_n: int = MIN_N
) -> list[dict]:
    """Each claim judged per seed and pooled on the scope-"all" tests, with its replication count
    and overall verdict (records shaped like ``egain compare``'s, so its tables and lines apply)."""
    out = []
    for key, _c, _r, _names, statement in contrasts(labels):
        per: dict[str, dict] = {}
        for s in [*seeds, POOLED]:
            judged = judge(
                [t for t in tests if t["claim"] == key and t["seed"] == s and t["scope"] == "all"], min_n
            )
            if judged is not None:
                per[str(s)] = judged
        if per:
            out.append(
                {
                    "claim": key,
                    "statement": statement,
                    "per_seed": per,
                    **replicated_verdict(per, seeds, min_n),
                }
            )
    return out


# ------------------------------------------------------------------------------------------------
# pooling the tables


def pooled_rows(per_seed_rows: Mapping[int, Sequence[dict]], per_image: Sequence[dict]) -> list[dict]:
    """One row per (method, attribute, strength): means over the images of all seeds; FID the mean
    of the seeds' FIDs (FID depends on the sample size, so it is not recomputed on the pool)."""
    first = next(iter(per_seed_rows.values()))
    out = []
    for row in first:
        key = (row["method"], row["attribute"], float(row["strength"]))
        vals = [r for r in per_image if (r["method"], r["attribute"], float(r["strength"])) == key]
        fids = [
            r["fid_embedder"]
            for rows in per_seed_rows.values()
            for r in rows
            if (r["method"], r["attribute"], float(r["strength"])) == key
        ]
        rec = {"method": key[0], "attribute": key[1], "strength": key[2]}
        for k in (*SCORES, "attr_change"):
            rec[k] = float(np.mean([v[k] for v in vals])) if vals else math.nan
        rec["fid_embedder"] = float(np.mean(fids)) if fids else math.nan
        rec["n"] = len(vals)
        rec["region"] = " + ".join(
            sorted(
                {
                    part
                    for rows in per_seed_rows.values()
                    for r in rows
                    if (r["method"], r["attribute"], float(r["strength"])) == key
                    for part in str(r.get("region", "")).split(" + ")
                    if part
                }
            )
        )
        out.append(rec)
    return out


def tests_markdown(tests: Sequence[dict]) -> str:
    """The scope-"all" tests as a table (the per-cell ones are in edit_tests.csv)."""
    rows = [t for t in tests if t["scope"] == "all"]
    if not rows:
        return ""
    lines = [
        "| seed | comparison | metric | n | mean diff | median diff | better on | p (two-sided) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        lines.append(
            f"| {t['seed']} | {t['challenger']} vs {t['reference']} | {METRIC_NAMES[t['metric']]} | {t['n']} | "
            f"{t['mean_diff']:+.4g} | {t['median_diff']:+.4g} | {100 * t['win_rate']:.0f} % | "
            f"{format_p(t['p_two_sided'])} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the run


def run_edit_evaluation(
    methods: Mapping[str, Any],
    attributes: Sequence[str],
    strengths: Sequence[float],
    *,
    classifier: Any,
    embedder: Any,
    out: str | Path,
    n: int = 64,
    seeds: str | Sequence[int] | None = None,
    min_n: int = MIN_N,
    with_no_ada: bool = True,
    regions: str = "parsing",
    directions: Mapping[str, Mapping[str, Any]] | None = None,
    batch: int = 32,
) -> EditEvalResult:
    """Evaluate the edits on every seed, pool, test and judge the claims; write the reports (see
    the module doc). ``seeds``: a comma list / sequence (default 0,1,2)."""
    seed_list = parse_seeds(seeds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed_rows: dict[int, list[dict]] = {}
    per_seed_images: dict[int, list[dict]] = {}
    scores: dict[int, PerImage] = {}
    files: dict[str, Path] = {}
    first_result: dict[str, Any] | None = None
    regions_used: set[str] = set()
    for s in seed_list:
        result = evaluate_edits(
            methods,
            attributes,
            strengths,
            classifier=classifier,
            embedder=embedder,
            n=n,
            replicate=s,
            directions=directions,
            batch=batch,
            with_no_ada=with_no_ada,
            regions=regions,
        )
        for name, path in write_edit_report(result, out / f"seed{s}").items():
            files[f"seed{s}_{name}"] = path
        per_seed_rows[s] = result["rows"]
        per_seed_images[s] = result["per_image"]
        scores[s] = image_scores(result["per_image"])
        regions_used.update(result["region"].split(" + "))
        first_result = first_result or result
    assert first_result is not None
    all_images = [{"seed": s, **r} for s in seed_list for r in per_seed_images[s]]
    rows = pooled_rows(per_seed_rows, all_images)
    rows_by_seed = [{"seed": s, **r} for s in seed_list for r in per_seed_rows[s]] + [
        {"seed": POOLED, **r} for r in rows
    ]
    pooled_scores = pool_images(scores)
    tests: list[dict] = []
    for s in [*seed_list, POOLED]:
        tests += edit_tests(pooled_scores if s == POOLED else scores[s], s)
    cells = list(dict.fromkeys((r["attribute"], float(r["strength"])) for r in per_seed_rows[seed_list[0]]))
    for s in [*seed_list, POOLED]:
        for cell in cells:
            per = (
                pool_images({k: image_scores(per_seed_images[k], cell) for k in seed_list})
                if s == POOLED
                else image_scores(per_seed_images[s], cell)
            )
            tests += edit_tests(per, s, f"{cell[0]} {cell[1]:+g}")
    labels = list(scores[seed_list[0]])
    claims = edit_claims(tests, seed_list, labels, min_n)
    region = " + ".join(sorted(regions_used))

    # the top level: the pooled report in the single-draw layout, then the multi-seed files
    pooled_result = {**first_result, "rows": rows, "per_image": all_images, "region": region}
    files.update(write_edit_report(pooled_result, out, per_image_columns=("seed",)))
    files["by_seed"] = write_records(out / "edit_scores_by_seed.csv", rows_by_seed)
    if tests:
        files["tests"] = write_records(out / "edit_tests.csv", tests)
    files["claims"] = write_records(
        out / "claims.csv",
        [claim_row(c, seed_list) for c in claims]
        or [{"claim": "", "statement": "no claim applies to these methods", "verdict": ""}],
    )
    md = _summary(rows, per_seed_rows, tests, claims, seed_list, n, region, min_n)
    atomic_write_text(files["summary"], md)
    return EditEvalResult(out, rows, rows_by_seed, tests, claims, seed_list, region, files, md)


def _summary(
    rows: Sequence[dict],
    per_seed_rows: Mapping[int, Sequence[dict]],
    tests: Sequence[dict],
    claims: Sequence[dict],
    seeds: Sequence[int],
    n: int,
    region: str,
    min_n: int,
) -> str:
    seeds_text = ", ".join(map(str, seeds))
    lines = [
        "# Edit fidelity (synthfaces ground truth)",
        "",
        f"Seeds {seeds_text} (each an independent draw of {n} held-out identities; pooled: "
        f"{n * len(seeds)} images). Region of 'change outside region': {region}.",
        "",
        "## Claims",
        "",
        f"Each image's score is its mean over all attributes and strengths; paired Wilcoxon signed-rank, "
        f"two-sided p < {ALPHA}, per seed and pooled. A claim holds only when it holds on every seed "
        f"and pooled (at least two seeds, {min_n} images per seed).",
        "",
    ]
    if claims:
        lines += verdict_lines(claims) + ["", claims_markdown(claims, seeds), ""]
    else:
        lines += [
            "No claim applies to these methods (needs a method with ADA, or e2style with psp, "
            "restyle-psp, restyle-e4e or e4e).",
            "",
        ]
    tm = tests_markdown(tests)
    if tm:
        lines += ["### Tests (per-image means over all cells)", "", tm, ""]
    lines += [
        "## Pooled over the seeds",
        "",
        "FID: the mean of the seeds' FIDs.",
        "",
        edit_table_markdown(rows),
        "",
    ]
    for s in seeds:
        lines += [f"## Seed {s}", "", edit_table_markdown(per_seed_rows[s]), ""]
    return "\n".join(lines)

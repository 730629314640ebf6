"""The statistics of per-image scores, in one place: summaries, bootstrap CIs, Wilcoxon, Mann-Whitney.

seeds/000 (Fig. 3) claims that the *median* differences between egain and the next best methods
are significant; that needs per-image scores and a paired non-parametric test. ``egain evaluate``
compares each method with the best *other* method (best median; the metric's direction decides
what "best" is) using the Wilcoxon signed-rank test on the images both scored, and corrects the
p-values of one metric for multiple comparisons across methods with Holm's step-down procedure.
``egain compare`` tests named contrasts with :func:`wilcoxon_test` and whether an advantage is
larger on one image set than on another with :func:`two_sample_test`. Every p-value that egain
prints goes through :func:`format_p`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from egain.metrics.table import METRICS

#: whether a larger value is better, per metric column (from the metric table)
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher_is_better for m in METRICS}

#: columns of the summary table (CSV / JSON records), in order
SUMMARY_COLUMNS: tuple[str, ...] = (
    "metric",
    "method",
    "n",
    "mean",
    "std",
    "median",
    "ci_low",
    "ci_high",
    "compared_with",
    "n_paired",
    "p_value",
    "p_holm",
)


def format_p(p: float | None) -> str:
    """A p-value as egain prints it everywhere: ``–`` when missing, ``1.9e-05`` below 0.001, else
    three decimals (``0.042``)."""
    if p is None or not math.isfinite(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _finite(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def _resampled_means(v: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``v`` with replacement (index matrix bounded to ~32 MB)."""
    means = np.empty(n_boot)
    block = max(1, 4_000_000 // v.size)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        means[start:stop] = v[idx].mean(axis=1)
    return means


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling images with replacement, fixed seed)."""
    v = _finite(values)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(v[0])
    return _percentile_interval(_resampled_means(v, n_boot, np.random.default_rng(seed)), level)


def bootstrap_difference_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) for two independent samples (each
    resampled within itself)."""
    a, b = _finite(a), _finite(b)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    return _percentile_interval(_resampled_means(a, n_boot, rng) - _resampled_means(b, n_boot, rng), level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _paired_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok] - b[ok]


def _signed_rank_p(d: np.ndarray, alternative: str) -> float:
    """Wilcoxon signed-rank p of the differences ``d`` (NaN without any; 1 when all are zero: no
    evidence of a difference)."""
    if d.size == 0:
        return math.nan
    if not np.any(d != 0):
        return 1.0
    from scipy import stats  # imported here: egain.metrics is imported by trainers that never test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(d, zero_method="wilcox", alternative=alternative).pvalue)


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (pairs with a non-finite value dropped).

    Returns (p, n_pairs). With no pairs the p-value is NaN; when every difference is zero there is no
    evidence of a difference and p = 1.
    """
    d = _paired_differences(a, b)
    return _signed_rank_p(d, "two-sided"), int(d.size)


def wilcoxon_test(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True) -> dict[str, Any]:
    """Paired Wilcoxon signed-rank test of a against b on the same images, with effect sizes.

    Returns ``n`` (pairs), the two-sided p (the paper's test of a median difference), the one-sided
    p for "a is better than b", the median and mean of the per-image differences (oriented so that
    positive means a is better) and the fraction of images where a is better.
    """
    d = _paired_differences(a, b) * (1.0 if higher_is_better else -1.0)
    if d.size == 0:
        nan = math.nan
        return {
            "n": 0,
            "median_diff": nan,
            "mean_diff": nan,
            "win_rate": nan,
            "p_two_sided": nan,
            "p_greater": nan,
        }
    return {
        "n": int(d.size),
        "median_diff": float(np.median(d)),
        "mean_diff": float(np.mean(d)),
        "win_rate": float(np.mean(d > 0)),
        "p_two_sided": _signed_rank_p(d, "two-sided"),
        "p_greater": _signed_rank_p(d, "greater"),
    }


def two_sample_test(x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Are the values of ``x`` larger than those of ``y``, two independent samples?

    One-sided Mann-Whitney U (x > y) and a percentile bootstrap 95 % CI of mean(x) - mean(y).
    Returns n, mean and median of each (``_x`` / ``_y``), ``difference`` of the means, ``ci_low``,
    ``ci_high`` and ``p_greater`` (1 when all values are equal, NaN when a sample is empty).
    """
    x, y = _finite(x), _finite(y)
    out: dict[str, Any] = {
        "n_x": int(x.size),
        "n_y": int(y.size),
        "mean_x": float(x.mean()) if x.size else math.nan,
        "mean_y": float(y.mean()) if y.size else math.nan,
        "median_x": float(np.median(x)) if x.size else math.nan,
        "median_y": float(np.median(y)) if y.size else math.nan,
    }
    out["difference"] = out["mean_x"] - out["mean_y"]
    if x.size == 0 or y.size == 0:
        return {**out, "p_greater": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if np.ptp(np.concatenate([x, y])) == 0:
        p = 1.0
    else:
        from scipy import stats

        p = float(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    lo, hi = bootstrap_difference_ci(x, y, n_boot=n_boot, seed=seed)
    return {**out, "p_greater": p, "ci_low": lo, "ci_high": hi}


def describe(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float | int]:
    """n, mean, sample std (ddof=1; 0 for one value), median and the bootstrap CI of the mean of
    the finite values (NaN = not scored; +inf = PSNR of identical images); ``n_boot=0`` skips the CI."""
    finite = _finite(values)
    n = int(finite.size)
    if n == 0:
        return {
            "n": 0,
            "mean": math.nan,
            "std": math.nan,
            "median": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
        }
    lo, hi = bootstrap_mean_ci(finite, n_boot=n_boot, seed=seed) if n_boot > 0 else (math.nan, math.nan)
    return {
        "n": n,
        "mean": float(np.mean(finite)),
        "std": float(np.std(finite, ddof=1)) if n > 1 else 0.0,
        "median": float(np.median(finite)),
        "ci_low": lo,
        "ci_high": hi,
    }


def summarise(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    metrics: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict]:
    """Summary records, one per (metric, method).

    ``scores[method][metric]`` is an array over the *same* image list for every method, NaN where
    that image was not scored, so that paired tests line up image by image. The std is the sample
    standard deviation (ddof=1); the CI is the 95 % percentile bootstrap of the mean. Non-finite
    scores (PSNR of an exact copy is +inf) are left out of the statistics and of the paired tests.
    """
    methods = list(scores)
    records: list[dict] = []
    for metric in metrics:
        higher = HIGHER_IS_BETTER.get(metric, True)
        described = {m: describe(scores[m][metric], n_boot, seed) for m in methods}
        pvals, partners, npairs = [], [], []
        for m in methods:
            others = [o for o in methods if o != m and described[o]["n"] > 0]
            if not others or described[m]["n"] == 0:
                pvals.append(math.nan)
                partners.append("")
                npairs.append(0)
                continue
            # the best other method by median; ties broken by mean, then by name for determinism
            sign = 1.0 if higher else -1.0
            best = max(others, key=lambda o: (sign * described[o]["median"], sign * described[o]["mean"], o))
            p, k = paired_wilcoxon(scores[m][metric], scores[best][metric])
            pvals.append(p)
            partners.append(best)
            npairs.append(k)
        adjusted = holm(pvals)
        for m, p, padj, partner, k in zip(methods, pvals, adjusted, partners, npairs, strict=True):
            records.append(
                {
                    "metric": metric,
                    "method": m,
                    **described[m],
                    "compared_with": partner,
                    "n_paired": k,
                    "p_value": p,
                    "p_holm": padj,
                }
            )
    return records

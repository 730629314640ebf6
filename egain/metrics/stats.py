"""Summary statistics for per-image scores: mean, std, median, bootstrap CI, paired Wilcoxon tests.

seeds/000 (Fig. 3) claims that the *median* differences between egain and the next best methods
are significant; that needs per-image scores and a paired non-parametric test. For every metric we
compare each method with the best *other* method (best median; the metric's direction decides
what "best" is) using the Wilcoxon signed-rank test on the images both scored, and correct the
p-values of one metric for multiple comparisons across methods with Holm's step-down procedure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

#: whether a larger value is better, per metric column
HIGHER_IS_BETTER: dict[str, bool] = {
    "ssim": True,
    "ssim_raw": True,
    "scc": True,
    "vif": True,
    "psnr": True,
    "mae": False,
    "mse": False,
    "lpips": False,
    "id": True,
    "magface": True,
}

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


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling images with replacement, fixed seed)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, 4_000_000 // v.size)  # bound the index matrix to ~32 MB
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        means[start:stop] = v[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


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


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (pairs with a non-finite value dropped).

    Returns (p, n_pairs). With no pairs the p-value is NaN; when every difference is zero there is no
    evidence of a difference and p = 1.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(ok.sum())
    if n == 0:
        return math.nan, 0
    if not np.any(d != 0):
        return 1.0, n
    from scipy import stats  # imported here: egain.metrics is imported by trainers that never test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.pvalue), n


def _describe(v: np.ndarray, n_boot: int, seed: int) -> dict[str, float | int]:
    finite = v[np.isfinite(v)]  # NaN = not scored; +inf = PSNR of identical images
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
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if n > 1 else 0.0
    lo, hi = bootstrap_mean_ci(finite, n_boot=n_boot, seed=seed)
    return {"n": n, "mean": mean, "std": std, "median": float(np.median(finite)), "ci_low": lo, "ci_high": hi}


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
        described = {
            m: _describe(np.asarray(scores[m][metric], dtype=np.float64), n_boot, seed) for m in methods
        }
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

"""``egain compare``: the comparison of the bundled methods that produces the README table.

Steps (each with a progress bar):

1. render the synthfaces evaluation recipes (``eval``: 500 held-out identities; ``hard``: 200 with
   rare details) at the models' input size into OUT/data/ (reused when already there);
2. invert every set with every bundled method, timing ``invert`` per image, counting parameters;
3. score with the ``egain evaluate`` engine (OUT/<set>/report/);
4. combine: OUT/comparison.{md,csv,json} -- per set and method: ID, SSIM in [0,1], SCC, VIF,
   MagFace, PSNR, MAE (mean ± std), time per image and parameters; OUT/stats.csv -- paired
   Wilcoxon signed-rank tests of egain against e4e, e4e-swagan and hfgi on ID, SSIM, SCC and VIF; the SCC advantage of
   egain over e4e on the hard set against the normal set (Mann-Whitney U on the per-image
   differences, bootstrap CI of the difference of mean advantages); OUT/plots/ -- box plots;
5. with ``readme``: rewrite the block between ``<!-- comparison:start -->`` and
   ``<!-- comparison:end -->`` with the table, the tests, the box plots and each set's
   reconstruction grid (``report/grid.png``; copied next to it).

The claim under test (seeds/000, Table I and Fig. 3): egain beats e4e on ID, SSIM, SCC and VIF
(p < 0.01), and its SCC advantage is larger on images with rare high-frequency details. The block
states whether the measured numbers support it; they are reported as they are either way.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.errors import InputError
from egain.metrics.functional import VIF_MIN_SIZE
from egain.workflows.bundled import (
    COMPARE_METHODS,
    EMBEDDERS,
    embedder_available,
    load_bundled,
    parse_labels,
    require_weights,
)
from egain.workflows.inversion import InversionRun, invert_files

SETS = ("eval", "hard")
SET_TITLES = {"eval": "evaluation set", "hard": "hard set (rare details)"}
MARK_START = "<!-- comparison:start -->"
MARK_END = "<!-- comparison:end -->"
#: table columns: (metric key, header, digits)
TABLE_COLUMNS = (
    ("id", "ID ↑", 3),
    ("ssim", "SSIM ↑", 3),
    ("scc", "SCC ↑", 3),
    ("vif", "VIF ↑", 3),
    ("magface", "MagFace ↑", 2),
    ("psnr", "PSNR ↑", 2),
    ("mae", "MAE ↓", 4),
)
TESTED = ("id", "ssim", "scc", "vif")
METRICS = ("ssim", "scc", "vif", "psnr", "mae", "mse", "id", "magface")
#: (challenger, reference) pairs tested per set; the first is the claim the README states first
CONTRASTS = (("egain", "e4e"), ("egain", "e4e-swagan"), ("egain", "hfgi"))
ALPHA = 0.01


@dataclass
class CompareResult:
    out: Path
    table: list[dict]
    tests: list[dict]
    advantage: dict | None
    files: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    metrics: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# data


def _recipe_count(name: str, n: int | None) -> int:
    from egain.data.synthfaces import EVAL_COUNT, HARD_COUNT

    full = EVAL_COUNT if name == "eval" else HARD_COUNT
    return full if n is None else min(int(n), full)


def prepare_set(root: Path, name: str, count: int, size: int, workers: int, progress: bool) -> Path:
    """Render recipe ``name`` (``count`` images at ``size`` px) into root/<name>-<size>px-<count>,
    or reuse it when a complete earlier rendering is there (the recipe is deterministic)."""
    from egain.data.synthfaces import write_synthfaces

    folder = root / f"{name}-{size}px-{count}"
    labels = folder / "labels.jsonl"
    if labels.exists():
        lines = labels.read_text(encoding="utf-8").splitlines()
        if len(lines) == count and all((folder / json.loads(x)["file"]).exists() for x in lines):
            return folder
    write_synthfaces(
        folder, size=size, recipe=name, count=count, workers=workers, overwrite=True, show_progress=progress
    )
    return folder


# ------------------------------------------------------------------------------------------------
# statistics


def wilcoxon_test(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True) -> dict[str, Any]:
    """Paired Wilcoxon signed-rank test of a against b on the same images.

    Returns the two-sided p (the paper's test of a median difference), the one-sided p for "a is
    better than b", the median and mean of the per-image differences (oriented so that positive
    means a is better) and the fraction of images where a is better.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = (a[ok] - b[ok]) * (1.0 if higher_is_better else -1.0)
    out: dict[str, Any] = {"n": int(d.size)}
    if d.size == 0:
        return {
            **out,
            "median_diff": math.nan,
            "mean_diff": math.nan,
            "win_rate": math.nan,
            "p_two_sided": math.nan,
            "p_greater": math.nan,
        }
    out.update(median_diff=float(np.median(d)), mean_diff=float(np.mean(d)), win_rate=float(np.mean(d > 0)))
    if not np.any(d != 0):
        return {**out, "p_two_sided": 1.0, "p_greater": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        two = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        one = stats.wilcoxon(d, zero_method="wilcox", alternative="greater")
    return {**out, "p_two_sided": float(two.pvalue), "p_greater": float(one.pvalue)}


def advantage_test(
    d_hard: np.ndarray, d_normal: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Is the per-image advantage on the hard set larger than on the normal set?

    The two sets hold different images, so the test is unpaired: one-sided Mann-Whitney U
    (hard > normal) on the per-image differences, and a percentile bootstrap CI of the difference
    of the mean advantages (resampling images within each set).
    """
    from scipy import stats

    h = np.asarray(d_hard, dtype=np.float64)
    e = np.asarray(d_normal, dtype=np.float64)
    h, e = h[np.isfinite(h)], e[np.isfinite(e)]
    out: dict[str, Any] = {
        "n_hard": int(h.size),
        "n_normal": int(e.size),
        "mean_hard": float(h.mean()) if h.size else math.nan,
        "mean_normal": float(e.mean()) if e.size else math.nan,
        "median_hard": float(np.median(h)) if h.size else math.nan,
        "median_normal": float(np.median(e)) if e.size else math.nan,
    }
    out["difference"] = out["mean_hard"] - out["mean_normal"]
    if h.size == 0 or e.size == 0:
        return {**out, "p_greater": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if np.ptp(np.concatenate([h, e])) == 0:
        p = 1.0
    else:
        p = float(stats.mannwhitneyu(h, e, alternative="greater").pvalue)
    rng = np.random.default_rng(seed)
    boots = rng.choice(h, size=(n_boot, h.size)).mean(1) - rng.choice(e, size=(n_boot, e.size)).mean(1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {**out, "p_greater": p, "ci_low": float(lo), "ci_high": float(hi)}


# ------------------------------------------------------------------------------------------------
# tables and plots


def _fmt(v: float, digits: int) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _p(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.3f}"


def combined_rows(
    scores: dict[str, dict[str, dict[str, np.ndarray]]], runs: dict[str, dict[str, InversionRun]]
) -> list[dict]:
    """One record per (set, method): n, mean/std/median per metric, ms per image, parameters."""
    rows = []
    for set_name, per_method in scores.items():
        for label, metrics in per_method.items():
            run = runs[set_name][label]
            rec: dict[str, Any] = {"set": set_name, "method": label}
            for key, _, _ in TABLE_COLUMNS:
                v = np.asarray(metrics.get(key, []), dtype=np.float64)
                v = v[np.isfinite(v)]
                rec[f"{key}_mean"] = float(v.mean()) if v.size else math.nan
                rec[f"{key}_std"] = float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size else math.nan)
                rec[f"{key}_median"] = float(np.median(v)) if v.size else math.nan
            rec["n"] = int(max((np.isfinite(np.asarray(m)).sum() for m in metrics.values()), default=0))
            rec["ms_per_image"] = run.seconds_per_image * 1000.0
            rec["parameters"] = run.parameters
            rec["parameters_without_generator"] = run.parameters_without_generator
            rows.append(rec)
    return rows


def table_markdown(rows: Sequence[dict], metrics: Sequence[str]) -> str:
    cols = [c for c in TABLE_COLUMNS if c[0] in metrics]
    head = (
        "| set | method | "
        + " | ".join(h for _, h, _ in cols)
        + " | time / image (ms) | parameters (M, encoder only) |"
    )
    lines = [head, "|---|---|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = [f"{_fmt(r[f'{k}_mean'], d)} ± {_fmt(r[f'{k}_std'], d)}" for k, _, d in cols]
        params = f"{r['parameters'] / 1e6:.2f} ({r['parameters_without_generator'] / 1e6:.2f})"
        lines.append(
            f"| {r['set']} | {r['method']} | "
            + " | ".join(cells)
            + f" | {r['ms_per_image']:.1f} | {params} |"
        )
    return "\n".join(lines)


def tests_markdown(tests: Sequence[dict], advantage: dict | None) -> str:
    lines = []
    if tests:
        lines += [
            "| set | comparison | metric | n | median diff | mean diff | better on | p (two-sided) | p (one-sided) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in tests:
            lines.append(
                f"| {t['set']} | {t['challenger']} vs {t['reference']} | {t['metric']} | {t['n']} | "
                f"{_fmt(t['median_diff'], 4)} | {_fmt(t['mean_diff'], 4)} | {_fmt(100 * t['win_rate'], 0)} % | "
                f"{_p(t['p_two_sided'])} | {_p(t['p_greater'])} |"
            )
    if advantage:
        a = advantage
        lines += [
            "",
            f"SCC advantage of {a['challenger']} over {a['reference']} (per-image SCC difference): "
            f"hard set mean {_fmt(a['mean_hard'], 4)} (median {_fmt(a['median_hard'], 4)}, n={a['n_hard']}), "
            f"evaluation set mean {_fmt(a['mean_normal'], 4)} (median {_fmt(a['median_normal'], 4)}, n={a['n_normal']}); "
            f"difference {_fmt(a['difference'], 4)} (95 % bootstrap CI {_fmt(a['ci_low'], 4)} .. {_fmt(a['ci_high'], 4)}), "
            f"one-sided Mann-Whitney U p = {_p(a['p_greater'])}.",
        ]
    return "\n".join(lines)


def verdict_lines(tests: Sequence[dict], advantage: dict | None) -> list[str]:
    """Plain statements of whether the paper's claims hold in these numbers.

    One line per contrast that was tested (egain against e4e is the issue's claim; against
    e4e-swagan it isolates the delta branch; against hfgi it is seeds/000's Table I and Fig. 3),
    then the hard-set SCC claim.
    """
    lines = []
    for c, r in CONTRASTS:
        rows = [t for t in tests if t["set"] == "eval" and (t["challenger"], t["reference"]) == (c, r)]
        if not rows:
            continue
        held = [t["metric"] for t in rows if t["mean_diff"] > 0 and t["p_two_sided"] < ALPHA]
        failed = [t["metric"] for t in rows if t["metric"] not in held]
        if not failed:
            lines.append(
                f"- {c} beats {r} on {', '.join(held)} on the evaluation set (Wilcoxon p < {ALPHA}): **holds**."
            )
        else:
            lines.append(
                f"- {c} beats {r} on {', '.join(t['metric'] for t in rows)} on the evaluation set "
                f"(Wilcoxon p < {ALPHA}): **does not hold** for {', '.join(failed)}"
                + (f" (holds for {', '.join(held)})" if held else "")
                + "."
            )
    if advantage:
        larger = advantage["difference"] > 0
        lines.append(
            f"- the SCC advantage of {advantage['challenger']} over {advantage['reference']} is larger on the hard "
            f"set than on the evaluation set: **{'holds' if larger else 'does not hold'}** "
            f"(difference {_fmt(advantage['difference'], 4)}, p = {_p(advantage['p_greater'])})."
        )
    return lines


def write_boxplots(
    scores: dict[str, dict[str, dict[str, np.ndarray]]], metrics: Sequence[str], out_dir: Path
) -> dict[str, Path]:
    """box_<metric>.png (one panel per set, a box per method) and boxplots.png (ID/SSIM/SCC/VIF)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from egain.metrics.report import METRIC_TITLES
    from egain.metrics.stats import HIGHER_IS_BETTER

    out_dir.mkdir(parents=True, exist_ok=True)
    sets = list(scores)
    files: dict[str, Path] = {}

    def panel(ax, set_name: str, metric: str) -> None:
        methods = list(scores[set_name])
        data = []
        for m in methods:
            v = np.asarray(scores[set_name][m].get(metric, []), dtype=np.float64)
            v = v[np.isfinite(v)]
            data.append(v if v.size else np.array([np.nan]))
        ax.boxplot(
            data,
            showmeans=True,
            meanprops={
                "marker": "D",
                "markerfacecolor": "white",
                "markeredgecolor": "black",
                "markersize": 4,
            },
        )
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        arrow = "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"
        ax.set_title(
            f"{METRIC_TITLES.get(metric, metric)} {arrow} -- {SET_TITLES.get(set_name, set_name)}", fontsize=8
        )
        ax.grid(axis="y", alpha=0.3)

    def save(fig, path: Path) -> Path:
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, path)
        return path

    for metric in metrics:
        fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), dpi=100, squeeze=False)
        for ax, s in zip(axes[0], sets, strict=True):
            panel(ax, s, metric)
        files[f"box_{metric}"] = save(fig, out_dir / f"box_{metric}.png")
    main = [m for m in TESTED if m in metrics]
    if main:
        fig, axes = plt.subplots(
            len(sets), len(main), figsize=(3.3 * len(main), 3.3 * len(sets)), dpi=100, squeeze=False
        )
        for i, s in enumerate(sets):
            for j, m in enumerate(main):
                panel(axes[i][j], s, m)
        files["boxplots"] = save(fig, out_dir / "boxplots.png")
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
    new = replace_block(text, block)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, readme)


# ------------------------------------------------------------------------------------------------
# the whole comparison


def _write_csv(path: Path, rows: Sequence[dict]) -> Path:
    if not rows:
        path.write_text("", encoding="utf-8")
        return path
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            )
    os.replace(tmp, path)
    return path


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def run_compare(
    out: str | os.PathLike,
    methods: str | Sequence[str] = COMPARE_METHODS,
    *,
    sets: str | Sequence[str] = SETS,
    n: int | None = None,
    size: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    workers: int = 1,
    readme: str | os.PathLike | None = None,
    readme_assets: str | os.PathLike | None = None,
    command: str | None = None,
    n_boot: int = 2000,
    progress: bool = True,
) -> CompareResult:
    """Run the whole comparison into ``out`` (see the module docstring); returns the combined table."""
    from egain.metrics.evaluate import evaluate_folders
    from egain.metrics.stats import HIGHER_IS_BETTER
    from egain.runtime.runinfo import git_commit, hardware_description
    from egain.utils.device import resolve_device
    from egain.utils.images import list_images

    labels = parse_labels(methods, COMPARE_METHODS)
    set_names = [s.strip() for s in (sets.split(",") if isinstance(sets, str) else sets) if s.strip()]
    bad = [s for s in set_names if s not in SETS]
    if bad or not set_names or len(set(set_names)) != len(set_names):
        raise InputError(f"--sets must be a comma list of {', '.join(SETS)} (each once), got {sets!r}")
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    require_weights(labels, "egain compare")
    dev = resolve_device(device)
    t_start = time.perf_counter()
    models = {label: load_bundled(label, dev) for label in labels}
    sizes = {int(m.input_size) for m in models.values()}
    if size is None:
        if len(sizes) != 1:
            raise InputError(
                f"the methods take different input sizes ({sorted(sizes)}); choose one with --size"
            )
        size = sizes.pop()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in METRICS if m not in EMBEDDERS or embedder_available(m)]
    notes = [
        f"{m} not computed: bundled face embedder {EMBEDDERS[m][1]} is not installed"
        for m in EMBEDDERS
        if m not in metrics
    ]
    if size < VIF_MIN_SIZE:
        metrics.remove("vif")
        notes.append(
            f"vif not computed: VIF-p needs images of at least {VIF_MIN_SIZE} px, these are {size} px"
        )

    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    runs: dict[str, dict[str, InversionRun]] = {}
    data_dirs: dict[str, Path] = {}
    grids: dict[str, Path] = {}
    for set_name in set_names:
        data = prepare_set(out / "data", set_name, _recipe_count(set_name, n), size, workers, progress)
        data_dirs[set_name] = data
        files = list_images(data)
        runs[set_name] = {
            label: invert_files(
                model, files, out / set_name / label, label=label, batch_size=batch_size, progress=progress
            )
            for label, model in models.items()
        }
        report = evaluate_folders(
            data,
            {label: out / set_name / label for label in labels},
            out / set_name / "report",
            metrics=metrics,
            identity_backend=EMBEDDERS["id"][0] if "id" in metrics else None,
            magface_backend=EMBEDDERS["magface"][0] if "magface" in metrics else None,
            device=dev,
            batch_size=64,
            n_boot=n_boot,
            progress=progress,
        )
        notes += [f"{set_name}: {k} not computed: {v}" for k, v in report.unavailable.items()]
        scores[set_name] = report.table()
        if "grid" in report.files:  # source | method 1 | ... for the first images of the set
            grids[set_name] = report.files["grid"]

    table = combined_rows(scores, runs)
    tests = []
    for set_name in set_names:
        for challenger, reference in CONTRASTS:
            if challenger not in labels or reference not in labels:
                continue
            for metric in TESTED:
                if metric not in scores[set_name][challenger]:
                    continue
                t = wilcoxon_test(
                    scores[set_name][challenger][metric],
                    scores[set_name][reference][metric],
                    HIGHER_IS_BETTER.get(metric, True),
                )
                tests.append(
                    {"set": set_name, "challenger": challenger, "reference": reference, "metric": metric, **t}
                )
    advantage = None
    c, r = CONTRASTS[0]
    if {"eval", "hard"} <= set(set_names) and {c, r} <= set(labels):
        diff = {
            s: np.asarray(scores[s][c]["scc"]) - np.asarray(scores[s][r]["scc"]) for s in ("eval", "hard")
        }
        advantage = {
            "challenger": c,
            "reference": r,
            "metric": "scc",
            **advantage_test(diff["hard"], diff["eval"], n_boot),
        }

    files: dict[str, Path] = {}
    files.update(write_boxplots(scores, metrics, out / "plots"))
    files["table_csv"] = _write_csv(out / "comparison.csv", table)
    files["stats_csv"] = _write_csv(out / "stats.csv", tests)
    counts = ", ".join(f"{SET_TITLES[s]}: {runs[s][labels[0]].images} images" for s in set_names)
    command = command or f"egain compare --out {out}"
    header = [
        f"Produced by `{command}` at commit {_short_commit(git_commit())} on {hardware_description(dev)}; "
        f"{counts}; {size} px; {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "Means ± standard deviations over images. ID: cosine similarity of synthfaces ArcFace embeddings; "
        "SSIM mapped to [0, 1]; SCC and VIF-p as sewar; MagFace: embedding norm of the synthfaces MagFace network; "
        "MAE on intensities in [0, 1]; time: `invert` per image on the device above, after a warm-up; "
        "parameters: whole model with the generator (encoders and fusion only in brackets).",
    ]
    tests_md = tests_markdown(tests, advantage)
    verdict = verdict_lines(tests, advantage)
    md_parts = [
        "\n".join(header),
        table_markdown(table, metrics),
        "Paired Wilcoxon signed-rank tests (differences oriented so that positive favours the first method):",
        tests_md,
        "\n".join(verdict),
    ] + (["\n".join(f"- {x}" for x in notes)] if notes else [])
    markdown = "\n\n".join(p for p in md_parts if p.strip()) + "\n"
    (out / "comparison.md").write_text(markdown + "\n![box plots](plots/boxplots.png)\n", encoding="utf-8")
    files["table_md"] = out / "comparison.md"
    meta = {
        "command": command,
        "device": str(dev),
        "size": size,
        "sets": {s: str(data_dirs[s]) for s in set_names},
        "methods": labels,
        "metrics": metrics,
        "table": table,
        "tests": tests,
        "scc_advantage": advantage,
        "notes": notes,
        "wall_time_s": time.perf_counter() - t_start,
    }
    (out / "comparison.json").write_text(json.dumps(_clean(meta), indent=2) + "\n", encoding="utf-8")
    files["json"] = out / "comparison.json"

    if readme is not None:
        readme = Path(readme)
        assets = Path(readme_assets) if readme_assets is not None else readme.parent / "docs" / "comparison"
        assets.mkdir(parents=True, exist_ok=True)
        for key in ("boxplots", "table_csv", "stats_csv"):
            if key in files:
                shutil.copyfile(files[key], assets / files[key].name)
        for set_name, grid in grids.items():
            shutil.copyfile(grid, assets / f"reconstructions_{set_name}.png")
        rel = os.path.relpath(assets, readme.parent).replace(os.sep, "/")
        block = markdown
        if "boxplots" in files:
            block += f"\n![Box plots of ID, SSIM, SCC and VIF per method and set]({rel}/boxplots.png)\n"
        for set_name in grids:
            block += (
                f"\nThe first images of the {SET_TITLES[set_name]}, source and reconstructions:\n\n"
                f"![Reconstructions, {SET_TITLES[set_name]}]({rel}/reconstructions_{set_name}.png)\n"
            )
        block += f"\nTables as CSV: [{rel}/comparison.csv]({rel}/comparison.csv), [{rel}/stats.csv]({rel}/stats.csv).\n"
        update_readme(readme, block)
        files["readme"] = readme
    return CompareResult(out, table, tests, advantage, files, markdown, metrics)


def _short_commit(commit: str | None) -> str:
    """12 hex digits, keeping the "+dirty" mark of a tree with uncommitted changes."""
    if not commit:
        return "unknown"
    digest, dirty, _ = commit.partition("+dirty")
    return digest[:12] + ("+dirty" if dirty else "")

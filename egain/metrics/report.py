"""Writing an evaluation report: per-image CSV, summary (Markdown / CSV / JSON), box plots, image grid.

``scores.csv`` is a public format that users' scripts build on: its columns and their order are
:data:`SCORE_COLUMNS` and must not change (add new measures only at the end, if ever).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from egain.metrics.stats import HIGHER_IS_BETTER, SUMMARY_COLUMNS

#: columns of scores.csv, exactly in this order
SCORE_COLUMNS: tuple[str, ...] = (
    "image",
    "method",
    "ssim",
    "ssim_raw",
    "scc",
    "vif",
    "psnr",
    "mae",
    "mse",
    "lpips",
    "id",
    "magface",
)
METRIC_COLUMNS: tuple[str, ...] = SCORE_COLUMNS[2:]

METRIC_TITLES = {
    "ssim": "SSIM, mapped to [0, 1]",
    "ssim_raw": "SSIM (raw, [-1, 1])",
    "scc": "SCC",
    "vif": "VIF-p",
    "psnr": "PSNR [dB]",
    "mae": "MAE (intensity in [0, 1])",
    "mse": "MSE (intensity in [0, 1])",
    "lpips": "LPIPS",
    "id": "Face ID similarity (cosine)",
    "magface": "MagFace quality (embedding norm)",
}


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v: float | None) -> str:
    """CSV cell: empty for not computed, shortest round-trip repr otherwise (inf stays 'inf')."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v))


def write_scores_csv(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """One row per (image, method); empty cells where a metric was not computed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(SCORE_COLUMNS)
        for r in rows:
            w.writerow([r["image"], r["method"], *(_fmt(r.get(k)) for k in METRIC_COLUMNS)])
    os.replace(tmp, path)
    return path


def read_scores_csv(path: str | os.PathLike) -> list[dict]:
    """Read scores.csv back (floats, None for empty cells)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            rows.append(
                {
                    "image": r["image"],
                    "method": r["method"],
                    **{k: float(r[k]) if r[k] != "" else None for k in METRIC_COLUMNS},
                }
            )
    return rows


def _num(v: float, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _p(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.2e}" if v < 1e-3 else f"{v:.3f}"


def _digits(metric: str) -> int:
    return {"psnr": 2, "magface": 2, "mae": 5, "mse": 6}.get(metric, 4)


def summary_markdown(
    records: Sequence[Mapping],
    *,
    title: str = "Evaluation summary",
    header_lines: Sequence[str] = (),
    unavailable: Mapping[str, str] | None = None,
    issues: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """The summary as a Markdown document: one table per metric, the best mean in bold."""
    lines = [f"# {title}", ""]
    lines += [f"- {h}" for h in header_lines]
    if header_lines:
        lines.append("")
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    for metric in metrics:
        rows = [r for r in records if r["metric"] == metric]
        higher = HIGHER_IS_BETTER.get(metric, True)
        arrow = "higher is better" if higher else "lower is better"
        finite = [r["mean"] for r in rows if r["n"] and math.isfinite(r["mean"])]
        best = (max(finite) if higher else min(finite)) if finite else None
        d = _digits(metric)
        lines += [f"## {METRIC_TITLES.get(metric, metric)} (`{metric}`, {arrow})", ""]
        lines += [
            "| method | n | mean ± std | median | 95 % CI of mean | vs (best other) | p (Wilcoxon) | p (Holm) |"
        ]
        lines += ["| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in rows:
            ms = f"{_num(r['mean'], d)} ± {_num(r['std'], d)}"
            if best is not None and r["n"] and r["mean"] == best:
                ms = f"**{ms}**"
            ci = f"[{_num(r['ci_low'], d)}, {_num(r['ci_high'], d)}]"
            lines.append(
                f"| {r['method']} | {r['n']} | {ms} | {_num(r['median'], d)} | {ci} | "
                f"{r['compared_with'] or '–'} | {_p(r['p_value'])} | {_p(r['p_holm'])} |"
            )
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if unavailable:
        lines += ["## Metrics not computed", ""]
        lines += [f"- `{k}`: {v}" for k, v in unavailable.items()]
        lines.append("")
    if issues:
        lines += [f"## Input problems ({len(issues)})", ""] + [f"- {i}" for i in issues] + [""]
    return "\n".join(lines)


def _json_clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_clean(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def write_summary(
    records: Sequence[Mapping],
    out_dir: str | os.PathLike,
    *,
    markdown: str,
    meta: Mapping | None = None,
) -> dict[str, Path]:
    """summary.md, summary.csv (one row per metric and method) and summary.json (records + meta)."""
    out = Path(out_dir)
    paths = {
        "summary_md": out / "summary.md",
        "summary_csv": out / "summary.csv",
        "summary_json": out / "summary.json",
    }
    _atomic_text(paths["summary_md"], markdown)
    tmp = paths["summary_csv"].with_name(".summary.csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(SUMMARY_COLUMNS)
        for r in records:
            w.writerow([_fmt(r[c]) if isinstance(r[c], float) else r[c] for c in SUMMARY_COLUMNS])
    os.replace(tmp, paths["summary_csv"])
    doc = {**(meta or {}), "summary": [dict(r) for r in records]}
    _atomic_text(paths["summary_json"], json.dumps(_json_clean(doc), indent=2, allow_nan=False) + "\n")
    return paths


def write_boxplots(
    scores: Mapping[str, Mapping[str, np.ndarray]], metrics: Sequence[str], out_dir: str | os.PathLike
) -> list[Path]:
    """One PNG per metric (``box_<metric>.png``): a box per method, the mean as a marker."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(scores)
    paths = []
    for metric in metrics:
        data = []
        for m in methods:
            v = np.asarray(scores[m][metric], dtype=np.float64)
            data.append(v[np.isfinite(v)])
        if not any(d.size for d in data):
            continue
        fig, ax = plt.subplots(figsize=(max(3.5, 1.2 * len(methods) + 1.5), 4.0), dpi=110)
        ax.boxplot(
            [d if d.size else np.array([np.nan]) for d in data],
            showmeans=True,
            meanprops={
                "marker": "D",
                "markerfacecolor": "white",
                "markeredgecolor": "black",
                "markersize": 5,
            },
        )
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=20 if len(methods) > 4 else 0)
        arrow = "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"
        ax.set_title(f"{METRIC_TITLES.get(metric, metric)} {arrow}")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / f"box_{metric}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def fit_tile(tile: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize a (3, H, W) uint8 tile for a grid: nearest when enlarging (keeps pixels visible),
    area when shrinking."""
    import torch.nn.functional as F

    if tuple(tile.shape[-2:]) == tuple(hw):
        return tile
    mode = "area" if tile.shape[-1] > hw[1] else "nearest"
    return F.interpolate(tile[None].float(), size=hw, mode=mode)[0].round().clamp(0, 255).to(torch.uint8)


def write_image_grid(
    rows: Sequence[Sequence[torch.Tensor | None]],
    labels: Sequence[str],
    path: str | os.PathLike,
    padding: int = 2,
) -> Path:
    """A grid with one row per image and one column per label (source | method1 | ...).

    Tiles are (3, H, W) uint8 tensors of the same size, or None (drawn grey: not evaluated); the
    caller sizes them (64 px faces are best enlarged by nearest neighbour, so that the pixel-level
    detail each method keeps or loses stays visible). Column labels are drawn in a header strip
    whose font grows with the tiles and are shortened to fit their column. The PNG is written
    atomically. The one grid writer of
    ``egain evaluate``, ``egain demo`` and ``egain compare``.
    """
    from PIL import Image, ImageDraw, ImageFont

    tiles = [t for r in rows for t in r if t is not None]
    if not tiles:
        raise ValueError("no images for the grid")
    _, h, w = tiles[0].shape
    header = max(16, w // 6)
    width = len(labels) * (w + padding) + padding
    canvas = Image.new("RGB", (width, header + len(rows) * (h + padding) + padding), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            x, y = padding + j * (w + padding), header + padding + i * (h + padding)
            if tile is None:
                canvas.paste((128, 128, 128), (x, y, x + w, y + h))
            else:
                canvas.paste(Image.fromarray(tile.permute(1, 2, 0).contiguous().numpy(), "RGB"), (x, y))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(10, header - 6))
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        font = ImageFont.load_default()
    for j, label in enumerate(labels):
        text = str(label)
        while len(text) > 1 and draw.textlength(text, font=font) > w - 4:
            text = text[:-1]
        draw.text((padding + j * (w + padding) + 3, 2), text, fill=(0, 0, 0), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path

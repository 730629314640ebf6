"""Writing an evaluation report: per-image CSV, summary (Markdown / CSV / JSON), box plots, image grid.

``scores.csv`` is a public format that users' scripts build on: its columns and their order are
:data:`SCORE_COLUMNS` and must not change (add new measures only at the end, if ever).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from egain.metrics.stats import SUMMARY_COLUMNS, format_p
from egain.metrics.table import METRIC_NAMES, find_metric, format_number, higher_is_better
from egain.runtime.files import atomic_open, atomic_path, atomic_write_json, atomic_write_text

#: columns of scores.csv, exactly in this order
SCORE_COLUMNS: tuple[str, ...] = ("image", "method", *METRIC_NAMES)
METRIC_COLUMNS: tuple[str, ...] = METRIC_NAMES


def _title(name: str) -> str:
    spec = find_metric(name)
    return name if spec is None else spec.title


def _digits(name: str) -> int:
    spec = find_metric(name)
    return 4 if spec is None else spec.digits


def _fmt(v: float | None) -> str:
    """CSV cell: empty for not computed, shortest round-trip repr otherwise (inf stays 'inf')."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v))


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Mapping]) -> Path:
    """A CSV with ``header`` as columns, written atomically; floats as round-trip reprs, missing
    values (None, NaN, absent keys) as empty cells, ``inf`` kept."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(
                [_fmt(v) if v is None or isinstance(v, float) else v for v in (r.get(k) for k in header)]
            )
    return Path(path)


def write_scores_csv(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """One row per (image, method); empty cells where a metric was not computed."""
    return write_csv(path, SCORE_COLUMNS, rows)


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
    for name in dict.fromkeys(r["metric"] for r in records):
        rows = [r for r in records if r["metric"] == name]
        higher = higher_is_better(name)
        arrow = "higher is better" if higher else "lower is better"
        finite = [r["mean"] for r in rows if r["n"] and math.isfinite(r["mean"])]
        best = (max(finite) if higher else min(finite)) if finite else None
        d = _digits(name)
        lines += [f"## {_title(name)} (`{name}`, {arrow})", ""]
        lines += [
            "| method | n | mean ± std | median | 95 % CI of mean | vs (best other) | p (Wilcoxon) | p (Holm) |"
        ]
        lines += ["| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in rows:
            ms = f"{format_number(r['mean'], d)} ± {format_number(r['std'], d)}"
            if best is not None and r["n"] and r["mean"] == best:
                ms = f"**{ms}**"
            ci = f"[{format_number(r['ci_low'], d)}, {format_number(r['ci_high'], d)}]"
            lines.append(
                f"| {r['method']} | {r['n']} | {ms} | {format_number(r['median'], d)} | {ci} | "
                f"{r['compared_with'] or '–'} | {format_p(r['p_value'])} | {format_p(r['p_holm'])} |"
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
        "summary_md": atomic_write_text(out / "summary.md", markdown),
        "summary_csv": write_csv(out / "summary.csv", SUMMARY_COLUMNS, records),
    }
    doc = {**(meta or {}), "summary": [dict(r) for r in records]}
    paths["summary_json"] = atomic_write_json(out / "summary.json", doc)
    return paths


#: one box plot panel: (values per method, metric name, subtitle or None)
BoxPanel = tuple[Mapping[str, np.ndarray], str, str | None]


def _draw_boxes(ax, panel: BoxPanel, small: bool) -> None:
    """A box per method (finite values only; an empty method keeps its place), the mean as a
    white diamond, the title naming the metric, its direction and the subtitle."""
    data, name, subtitle = panel
    methods = list(data)
    boxes = []
    for m in methods:
        v = np.asarray(data[m], dtype=np.float64)
        v = v[np.isfinite(v)]
        boxes.append(v if v.size else np.array([np.nan]))
    marker = {
        "marker": "D",
        "markerfacecolor": "white",
        "markeredgecolor": "black",
        "markersize": 4 if small else 5,
    }
    ax.boxplot(boxes, showmeans=True, meanprops=marker)
    if small:
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=20 if len(methods) > 4 else 0)
    title = f"{_title(name)} {'↑' if higher_is_better(name) else '↓'}"
    ax.set_title(title + (f" -- {subtitle}" if subtitle else ""), fontsize=8 if small else None)
    ax.grid(axis="y", alpha=0.3)


def write_boxplot_figure(panels: Sequence[Sequence[BoxPanel]], path: str | os.PathLike) -> Path:
    """One PNG of box-plot panels laid out as rows x columns (``panels[row][column]``), written
    atomically: the one box-plot writer of ``egain evaluate`` and ``egain compare``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    if n_rows * n_cols == 1:
        n_methods = len(panels[0][0][0])
        fig, axes = plt.subplots(figsize=(max(3.5, 1.2 * n_methods + 1.5), 4.0), dpi=110, squeeze=False)
    else:
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.0 * n_cols, 3.5 * n_rows), dpi=100, squeeze=False)
    for i, row in enumerate(panels):
        for j in range(n_cols):
            if j < len(row):
                _draw_boxes(axes[i][j], row[j], small=n_rows * n_cols > 1)
            else:
                axes[i][j].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def write_boxplots(
    scores: Mapping[str, Mapping[str, np.ndarray]], metrics: Sequence[str], out_dir: str | os.PathLike
) -> list[Path]:
    """One PNG per metric (``box_<metric>.png``): a box per method, the mean as a marker."""
    out = Path(out_dir)
    paths = []
    for name in metrics:
        data = {m: np.asarray(scores[m][name], dtype=np.float64) for m in scores}
        if not any(np.isfinite(v).any() for v in data.values()):
            continue
        paths.append(write_boxplot_figure([[(data, name, None)]], out / f"box_{name}.png"))
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
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)

"""``egain demo``: invert the bundled examples with the bundled models, side by side, with metrics.

Writes into OUT:

* ``<method>/<example file name>.png`` -- the reconstructions (and ``timing.json``);
* ``comparison.png`` -- one row per example: source | method 1 | method 2 ..., labelled columns;
* ``report/`` -- the ``egain evaluate`` report (scores.csv, summary.md, box plots, grid);
* ``table.md`` -- the short table printed at the end.

Every bundled weight a requested method needs is checked before anything is written, so a missing
one gives a single line naming it (exit code 2) and leaves OUT untouched. Reconstructions are
written into a staging folder and moved into place once all methods are done.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.errors import InputError
from egain.metrics.functional import VIF_MIN_SIZE
from egain.metrics.table import metric
from egain.runtime.files import atomic_write_text
from egain.utils.paths import check_not_inside_inputs, claim_output_dir
from egain.workflows.bundled import (
    DEMO_METHODS,
    EMBEDDERS,
    embedder_available,
    label_name,
    load_bundled,
    parse_labels,
    require_weights,
)
from egain.workflows.inversion import InversionRun, invert_files

GRID_FILE = "comparison.png"
REPORT_DIR = "report"
TABLE_FILE = "table.md"
#: what a demo run writes into its folder besides one folder per method
DEMO_OUTPUTS = (GRID_FILE, REPORT_DIR, TABLE_FILE)
#: metrics of the demo report (LPIPS needs torchvision weights a fresh machine does not have)
PIXEL = ("ssim", "scc", "vif", "psnr", "mae", "mse")
#: metrics of the short table, in column order (headers and digits from the metric table)
TABLE_METRICS = ("id", "ssim", "scc", "vif", "psnr", "mae")


@dataclass
class DemoResult:
    out: Path
    runs: dict[str, InversionRun]
    grid: Path
    report_dir: Path
    table: str
    notes: list[str] = field(default_factory=list)


def _uint8(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB, as stored."""
    from egain.utils.images import open_image

    return torch.from_numpy(np.array(open_image(path), dtype=np.uint8)).permute(2, 0, 1)


def write_comparison_grid(
    sources: Sequence[Path], columns: dict[str, Path], path: str | os.PathLike, tile: int = 128, pad: int = 2
) -> Path:
    """source | method 1 | ... with one row per source image, and the column labels drawn on top.

    Reconstructions are looked up by the source's stem in each method folder (a missing one is a
    grey tile); tiles are shown at ``tile`` px, 64 px faces enlarged by nearest neighbour so that
    the pixel-level detail each method keeps or loses stays visible.
    """
    from egain.metrics.report import fit_tile, write_image_grid

    hw = (tile, tile)
    rows = []
    for src in sources:
        cells = [src] + [Path(folder) / f"{src.stem}.png" for folder in columns.values()]
        rows.append([fit_tile(_uint8(c), hw) if c.exists() else None for c in cells])
    return write_image_grid(rows, ["source", *columns], path, padding=pad)


def _check_outputs(
    out: Path, files: Sequence[Path], inputs: Any, labels: Sequence[str], overwrite: bool
) -> None:
    """Refuse, before any work, outputs that would replace inputs or another run's results."""
    if inputs is not None:
        check_not_inside_inputs(out, [inputs])
    replaced = [(out / name).resolve() for name in (*labels, REPORT_DIR)]
    for f in files:
        rf = Path(f).resolve()
        for r in replaced:
            if rf.is_relative_to(r):
                raise InputError(
                    f"input '{f}' lies in '{r}', which the demo replaces with its results; "
                    "choose another --out"
                )
    claim_output_dir(
        out, {"command": "demo"}, overwrite=overwrite, ignore=DEMO_OUTPUTS + tuple(labels), write=False
    )


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    os.replace(src, dst)


def format_table(summary: Sequence[dict], runs: dict[str, InversionRun], metrics: Sequence[str]) -> str:
    """A Markdown table: mean per metric, ms per image and parameters (millions) per method."""
    by = {(r["metric"], r["method"]): r for r in summary}
    cols = [metric(k) for k in TABLE_METRICS if k in metrics]
    head = "| method | " + " | ".join(c.header for c in cols) + " | ms / image | parameters (M) |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for label, run in runs.items():
        cells = []
        for c in cols:
            r = by.get((c.name, label))
            cells.append(c.format(r["mean"] if r and r.get("n") else math.nan))
        cells.append(f"{run.seconds_per_image * 1000:.1f}")
        cells.append(f"{run.parameters / 1e6:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(
    out: str | os.PathLike,
    methods: str | Sequence[str] = DEMO_METHODS,
    *,
    device: str | torch.device = "auto",
    inputs: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool = True,
    overwrite: bool = False,
) -> DemoResult:
    """Invert the bundled examples (or the images in ``inputs``) with the bundled ``methods``.

    ``out`` must be a folder this command owns: one that another run (or the user) filled is refused
    unless ``overwrite``, and an input lying in a folder the demo replaces is always refused, so the
    demo never deletes a picture it was asked to invert.
    """
    from egain.metrics.evaluate import evaluate_folders
    from egain.utils.device import resolve_device
    from egain.utils.images import list_images, open_image
    from egain.workflows.examples import example_files

    labels = parse_labels(methods, DEMO_METHODS)
    require_weights(labels, "egain demo")  # before anything is written
    files = list_images(inputs) if inputs is not None else example_files()
    if len({f.stem for f in files}) != len(files):
        raise InputError("input images must have distinct file names (reconstructions keep the source names)")
    out = Path(out)
    _check_outputs(out, files, inputs, [label_name(label) for label in labels], overwrite)
    dev = resolve_device(device)
    models = {label_name(label): load_bundled(label, dev) for label in labels}
    labels = list(models)
    claim_output_dir(out, {"command": "demo"}, overwrite=overwrite, ignore=DEMO_OUTPUTS + tuple(labels))
    stage = out / f".demo-staging-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    try:
        runs = {
            label: invert_files(
                model, files, stage / label, label=label, batch_size=batch_size, progress=progress
            )
            for label, model in models.items()
        }
        for label, run in runs.items():
            _replace(stage / label, out / label)
            run.out_dir = out / label
        # sources and reconstructions are compared at one size: the sources' when they differ
        source_sides = {side for f in files for side in open_image(f).size}
        model_sides = {run.input_size for run in runs.values()}
        size = None if len(source_sides) == 1 and model_sides == source_sides else max(source_sides)
        notes = []
        metrics = list(PIXEL)
        if (size or max(source_sides)) < VIF_MIN_SIZE:
            metrics.remove("vif")
            notes.append(f"vif not computed: VIF-p needs images of at least {VIF_MIN_SIZE} px")
        for metric in ("id", "magface"):
            zoo_name = EMBEDDERS[metric][1]
            if embedder_available(metric):
                metrics.append(metric)
            else:
                notes.append(f"{metric} not computed: bundled face embedder {zoo_name} is not installed")
        source_dir = files[0].parent
        if inputs is not None and not Path(inputs).is_dir():
            # a single file: pair it alone, not with its neighbours in the folder
            source_dir = stage / "sources"
            source_dir.mkdir()
            for f in files:
                shutil.copyfile(f, source_dir / f.name)
        report = evaluate_folders(
            source_dir,
            {label: out / label for label in labels},
            stage / REPORT_DIR,
            metrics=metrics,
            identity_backend=EMBEDDERS["id"][0] if "id" in metrics else None,
            magface_backend=EMBEDDERS["magface"][0] if "magface" in metrics else None,
            grid=0,
            size=size,
            device=dev,
            batch_size=32,
            progress=progress,
        )
        notes += [f"{k} not computed: {v}" for k, v in report.unavailable.items()]
        write_comparison_grid(files, {label: out / label for label in labels}, stage / GRID_FILE)
        table = format_table(report.summary, runs, report.metrics)
        atomic_write_text(
            stage / TABLE_FILE,
            f"{'Images of ' + str(inputs) if inputs is not None else 'Bundled examples'} ({len(files)} images), "
            f"means over images; device {dev}.\n\n{table}\n"
            + "".join(f"\n- {n}" for n in notes)
            + ("\n" if notes else ""),
        )
        for name in (REPORT_DIR, GRID_FILE, TABLE_FILE):
            _replace(stage / name, out / name)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return DemoResult(out, runs, out / GRID_FILE, out / REPORT_DIR, table, notes)

"""Write a synthfaces recipe to a folder: PNGs, ``labels.jsonl`` and ``contact_sheet.png``.

Every written byte is a function of the arguments alone: PNGs are saved with fixed settings and no
metadata, labels are JSON with sorted keys in file order, and worker processes only change who
renders an image, not what it contains.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from egain.errors import InputError
from egain.runtime.files import atomic_open, atomic_path
from egain.runtime.logging import progress
from egain.utils.images import SYNTHFACES_LABELS, SYNTHFACES_SHEET

from .params import split_of
from .recipes import (
    check_count,
    check_rates,
    check_seed,
    check_size,
    eval_identities,
    file_name,
    hard_identities,
    render_item,
)

CONTACT_SHEET = SYNTHFACES_SHEET  # left out of image listings (egain.utils.images.list_images)
LABELS = SYNTHFACES_LABELS


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write uint8 RGB as PNG with fixed settings (no timestamps), atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(img, "RGB").save(tmp, format="PNG", compress_level=6, optimize=False)


def contact_sheet(images: list[np.ndarray], columns: int = 8, pad: int = 2, min_tile: int = 64) -> np.ndarray:
    """Tile images (upscaled by an integer factor to at least ``min_tile`` px) on a dark grid."""
    if not images:
        raise InputError("a contact sheet needs at least one image")
    s = images[0].shape[0]
    k = max(1, -(-min_tile // s))
    t = s * k
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    sheet = np.full((rows * (t + pad) + pad, cols * (t + pad) + pad, 3), 24, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        big = np.repeat(np.repeat(im, k, 0), k, 1) if k > 1 else im
        y, x = pad + r * (t + pad), pad + c * (t + pad)
        sheet[y : y + t, x : x + t] = big
    return sheet


@dataclass(frozen=True)
class _Job:
    seed: int
    size: int
    rates: dict
    force_rare: bool
    out: str
    id_digits: int
    var_digits: int


def _work(args: tuple[_Job, int, int]) -> tuple[dict, np.ndarray | None]:
    job, identity, variation = args
    img, labels = render_item(job.seed, identity, variation, job.size, job.rates, job.force_rare)
    name = file_name(identity, variation, job.id_digits, job.var_digits)
    save_png(img, Path(job.out) / name)
    return {"file": name, **labels}, img


def write_synthfaces(
    out: str | os.PathLike,
    identities: int = 1000,
    per_identity: int = 10,
    size: int = 64,
    seed: int = 0,
    rare_rate: float | dict | None = None,
    *,
    recipe: str | None = None,
    count: int | None = None,
    workers: int = 1,
    overwrite: bool = False,
    sheet_images: int = 64,
    show_progress: bool = True,
    split: str | None = None,
    replicate: int = 0,
) -> list[dict]:
    """Render a recipe into ``out``; returns the label records in file order.

    ``recipe`` None renders identities 0..N-1 with ``per_identity`` images each (all splits,
    labelled); 'eval' / 'hard' render the fixed evaluation recipes (``count`` overrides their
    500 / 200 images, e.g. for tests). ``split`` keeps only identities of that split ("train",
    "val" or "test"), so a GAN or encoder training folder never holds evaluation identities.
    ``replicate`` picks a further, disjoint draw of the evaluation recipes (see ``recipes``).
    """
    size = check_size(size)
    seed = check_seed(seed)
    rates = check_rates(rare_rate)
    workers = check_count(workers, "workers")
    force_rare = False
    if recipe is None:
        n = check_count(identities, "identities")
        k = check_count(per_identity, "per_identity")
        if split is not None:
            if split not in ("train", "val", "test"):
                raise InputError(f"split must be 'train', 'val' or 'test', got {split!r}")
            ids = [i for i in range(n) if split_of(seed, i) == split]
        else:
            ids = list(range(n))
        keys = [(i, v) for i in ids for v in range(k)]
    elif recipe in ("eval", "hard"):
        if count is not None:
            check_count(count, "count")
        pick = eval_identities if recipe == "eval" else hard_identities
        ids = pick(seed, count or (500 if recipe == "eval" else 200), replicate)
        force_rare = recipe == "hard"
        keys = [(i, 0) for i in ids]
    else:
        raise InputError(f"recipe must be 'eval' or 'hard' (or none), got {recipe!r}")
    out = Path(out)
    _prepare(out, overwrite)
    id_digits = max(5, len(str(max(i for i, _ in keys))))
    var_digits = max(2, len(str(max(v for _, v in keys))))
    job = _Job(seed, size, rates, force_rare, str(out), id_digits, var_digits)
    tasks = [(job, i, v) for i, v in keys]
    records: list[dict] = []
    sheet: list[np.ndarray] = []
    bar = progress(total=len(tasks), desc=f"synthfaces -> {out}", unit="img", enabled=show_progress)
    try:
        if workers == 1:
            results = map(_work, tasks)
            pool = None
        else:
            # fork is cheap and safe while torch is not loaded in this process; spawn otherwise
            method = "fork" if sys.platform == "linux" and "torch" not in sys.modules else "spawn"
            pool = mp.get_context(method).Pool(workers)
            results = pool.imap(_work, tasks, chunksize=max(1, min(64, len(tasks) // (8 * workers))))
        for rec, img in results:
            records.append(rec)
            if len(sheet) < sheet_images:
                sheet.append(img)
            bar.update(1)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
    if recipe is not None:
        for rec in records:
            rec["recipe"] = recipe
    with atomic_open(out / LABELS, "w", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    save_png(contact_sheet(sheet), out / CONTACT_SHEET)
    return records


_OURS = re.compile(r"^id\d+_v\d+\.png$")


def _prepare(out: Path, overwrite: bool) -> None:
    """Make ``out``; refuse to mix with an earlier dataset unless ``overwrite`` (which removes only
    files this writer makes), and never touch foreign PNGs (the folder's PNGs must all be ours)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file; expected a folder (new or empty)")
    out.mkdir(parents=True, exist_ok=True)
    pngs = [p for p in out.iterdir() if p.suffix.lower() == ".png"]
    foreign = sorted(p.name for p in pngs if not _OURS.match(p.name) and p.name != CONTACT_SHEET)
    if foreign:
        raise InputError(f"'{out}' holds other PNGs (e.g. '{foreign[0]}'); choose a new or empty folder")
    old = sorted(pngs + [p for p in out.iterdir() if p.name == LABELS])
    if not old:
        return
    if not overwrite:
        raise InputError(
            f"'{out}' already holds {len(old)} synthfaces file(s); choose an empty folder or pass --overwrite"
        )
    for p in old:
        p.unlink()

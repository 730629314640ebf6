"""Write a synthfaces recipe to a folder: PNGs, ``labels.jsonl`` and ``contact_sheet.png``.

With ``parsing=True`` every ``NAME.png`` gets its class map ``NAME_parsing.png`` (a palette PNG:
pixel values are class indices of :data:`~egain.data.synthfaces.parsing.PARSING_CLASSES`, viewers
show the palette colours) and the folder a ``parsing_sheet.png``.

Every written byte is a function of the arguments alone: PNGs are saved with fixed settings and no
metadata, labels are JSON with sorted keys in file order, and worker processes only change who
renders an image, not what it contains.

Speed: the work is split into contiguous chunks of images; a worker renders a chunk, encodes and
writes its PNGs itself and sends back only the label records (and the few pictures the sheets
show), so nothing per image crosses a process boundary but a small dict. This module imports
neither torch nor anything that does, so workers fork cheaply (no re-import per worker). PNGs are
written with zlib level 1 (:data:`PNG_COMPRESS_LEVEL`): about 2-3x faster to encode than the
default 6 for ~10 % larger files, a good trade for training data that is written once.
"""

from __future__ import annotations

import io
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
from egain.utils.sidefiles import (
    PARSING_SUFFIX,
    SYNTHFACES_LABELS,
    SYNTHFACES_PARSING_SHEET,
    SYNTHFACES_SHEET,
)

from .params import split_of
from .parsing import PARSING_PALETTE, colorize
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
PARSING_SHEET = SYNTHFACES_PARSING_SHEET  # likewise
LABELS = SYNTHFACES_LABELS
#: zlib level of the written PNGs: 1 encodes a 64 px face 2-3x faster than 6, files ~10 % larger
PNG_COMPRESS_LEVEL = 1
_PALETTE = np.zeros((256, 3), np.uint8)
_PALETTE[: len(PARSING_PALETTE)] = PARSING_PALETTE
_PALETTE_BYTES = _PALETTE.tobytes()


def _png_bytes(img: np.ndarray, compress_level: int) -> bytes:
    """uint8 RGB (H, W, 3), or a class map (H, W) as a palette PNG, encoded with fixed settings
    (no timestamps or other metadata)."""
    if img.ndim == 2:
        im = Image.fromarray(img, "P")
        im.putpalette(_PALETTE_BYTES)
    else:
        im = Image.fromarray(img, "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level, optimize=False)
    return buf.getvalue()


def save_png(img: np.ndarray, path: str | os.PathLike, compress_level: int = 6) -> None:
    """Write uint8 RGB (H, W, 3), or a class map (H, W) as a palette PNG, atomically."""
    data = _png_bytes(img, compress_level)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _write_sample(data: bytes, path: Path) -> None:
    """One image or map of the dataset: encoded in memory, then one create-and-write.

    Not via a temporary file and a rename: on a busy disk each file creation or rename costs as
    much as encoding the picture, and the folder has its own completeness mark: ``labels.jsonl``
    is written (atomically) last, after every image, so a run cut short leaves none."""
    with open(path, "wb") as fh:
        fh.write(data)


def parsing_name(name: str) -> str:
    """``id00012_v03.png`` -> ``id00012_v03_parsing.png``."""
    return name[: -len(".png")] + PARSING_SUFFIX + ".png"


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
    parsing: bool
    recipe: str | None
    sheet_images: int
    compress_level: int


def _work(job: _Job, chunk: list[tuple[int, int, int]]) -> tuple[list[dict], list[tuple]]:
    """Render and write a chunk of (position, identity, variation); return its label records and
    the pictures (and maps) of the positions the sheets show."""
    out = Path(job.out)
    records, shown = [], []
    for pos, identity, variation in chunk:
        name = file_name(identity, variation, job.id_digits, job.var_digits)
        got = render_item(
            job.seed, identity, variation, job.size, job.rates, job.force_rare, parsing=job.parsing
        )
        img, labels = got[0], got[1]
        _write_sample(_png_bytes(img, job.compress_level), out / name)
        rec = {"file": name, **labels}
        if job.parsing:
            rec["parsing"] = parsing_name(name)
            _write_sample(_png_bytes(got[2], job.compress_level), out / rec["parsing"])
        if job.recipe is not None:
            rec["recipe"] = job.recipe
        records.append(rec)
        if pos < job.sheet_images:
            shown.append((pos, img, got[2] if job.parsing else None))
    return records, shown


def _work_star(args: tuple[_Job, list[tuple[int, int, int]]]) -> tuple[list[dict], list[tuple]]:
    return _work(*args)


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
    parsing: bool = False,
    compress_level: int = PNG_COMPRESS_LEVEL,
) -> list[dict]:
    """Render a recipe into ``out``; returns the label records in file order.

    ``recipe`` None renders identities 0..N-1 with ``per_identity`` images each (all splits,
    labelled); 'eval' / 'hard' render the fixed evaluation recipes (``count`` overrides their
    500 / 200 images, e.g. for tests). ``split`` keeps only identities of that split ("train",
    "val" or "test"), so a GAN or encoder training folder never holds evaluation identities.
    ``replicate`` picks a further, disjoint draw of the evaluation recipes (see ``recipes``).
    ``parsing`` also writes each image's class map (``NAME_parsing.png``, named in the record's
    ``parsing`` field) and ``parsing_sheet.png``. ``workers`` > 1 renders in that many processes.
    """
    size = check_size(size)
    seed = check_seed(seed)
    rates = check_rates(rare_rate)
    workers = check_count(workers, "workers")
    sheet_images = check_count(sheet_images, "sheet_images")
    if (
        isinstance(compress_level, bool)
        or not isinstance(compress_level, int)
        or not 0 <= compress_level <= 9
    ):
        raise InputError(f"compress_level must be an integer 0-9, got {compress_level!r}")
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
    if not keys:
        raise InputError(
            f"no identity of the first {identities} falls in split '{split}'; ask for more identities"
        )
    out = Path(out)
    _prepare(out, overwrite)
    id_digits = max(5, len(str(max(i for i, _ in keys))))
    var_digits = max(2, len(str(max(v for _, v in keys))))
    job = _Job(
        seed,
        size,
        rates,
        force_rare,
        str(out),
        id_digits,
        var_digits,
        bool(parsing),
        recipe,
        sheet_images,
        int(compress_level),
    )
    items = [(pos, i, v) for pos, (i, v) in enumerate(keys)]
    # chunks: big enough that a worker's round trip is amortised over many images, small enough
    # that the progress bar moves and the last chunks balance the workers (~8 per worker)
    size_of_chunk = max(1, min(64, -(-len(items) // (8 * workers))))
    chunks = [items[k : k + size_of_chunk] for k in range(0, len(items), size_of_chunk)]
    records: list[dict] = []
    shown: list[tuple] = []
    bar = progress(total=len(items), desc=f"synthfaces -> {out}", unit="img", enabled=show_progress)
    pool = None
    try:
        if workers == 1 or len(chunks) == 1:
            results = (_work(job, c) for c in chunks)
        else:
            # fork is cheap and safe while torch is not loaded in this process (this module does not
            # load it); spawn otherwise. Warm the caches (noise tiles, scipy) once before forking so
            # that the workers inherit them instead of each building its own.
            fork = sys.platform == "linux" and "torch" not in sys.modules
            if fork:
                render_item(seed, keys[0][0], keys[0][1], size, rates, force_rare)
            pool = mp.get_context("fork" if fork else "spawn").Pool(min(workers, len(chunks)))
            results = pool.imap(_work_star, [(job, c) for c in chunks])
        for recs, pics in results:
            records.extend(recs)
            shown.extend(pics)
            bar.update(len(recs))
        if pool is not None:
            pool.close()
            pool.join()
            pool = None
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    shown.sort(key=lambda t: t[0])
    save_png(contact_sheet([t[1] for t in shown]), out / CONTACT_SHEET)
    if parsing:
        save_png(contact_sheet([colorize(t[2]) for t in shown]), out / PARSING_SHEET)
    # last, and atomically: a folder with labels.jsonl is complete
    with atomic_open(out / LABELS, "w", newline="\n") as fh:
        fh.writelines(json.dumps(rec, sort_keys=True) + "\n" for rec in records)
    return records


_OURS = re.compile(r"^id\d+_v\d+(_parsing)?\.png$")


def _prepare(out: Path, overwrite: bool) -> None:
    """Make ``out``; refuse to mix with an earlier dataset unless ``overwrite`` (which removes only
    files this writer makes), and never touch foreign PNGs (the folder's PNGs must all be ours)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file; expected a folder (new or empty)")
    out.mkdir(parents=True, exist_ok=True)
    pngs = [p for p in out.iterdir() if p.suffix.lower() == ".png"]
    foreign = sorted(
        p.name for p in pngs if not _OURS.match(p.name) and p.name not in (CONTACT_SHEET, PARSING_SHEET)
    )
    if foreign:
        raise InputError(f"'{out}' holds other PNGs (e.g. '{foreign[0]}'); choose a new or empty folder")
    old = sorted(pngs + [p for p in out.iterdir() if p.name == LABELS])
    if not old:
        return
    if not overwrite:
        raise InputError(
            f"'{out}' already holds {len(old)} synthfaces file(s); choose an empty folder or pass --overwrite"
        )
    for p in sorted(old, key=lambda p: p.name != LABELS):  # the completeness mark goes first
        p.unlink()

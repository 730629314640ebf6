"""The evaluation engine behind ``egain evaluate``: pair folders, score in batches, write the report.

Pairing is by file name: ``SOURCE/img001.png`` is compared with ``METHOD_DIR/img001.png``; when a
method saved another format (``img001.jpg`` -> ``img001.png``) and the stem is unique, the stem
pairs them. Problems with individual files -- unpaired names, unreadable files, a grayscale image
paired with an RGB one, different sizes -- are collected as *issues*, reported in the summary and
in ``issues.txt``, and the remaining pairs are still scored. Only an evaluation with nothing left to
score is an error.

Pixel metrics are computed on the 8-bit values as stored (uint8 tensors on the device, float32 with
centred moments), so the numbers match scikit-image / sewar on the same files.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from egain.errors import CheckpointError, InputError
from egain.metrics.functional import PIXEL_METRICS, pixel_metrics
from egain.metrics.identity import (
    Backend,
    embed,
    feature_distance,
    has_features,
    identity_similarity_from_embeddings,
    magface_quality_from_embeddings,
    resolve_embedder,
)
from egain.metrics.report import (
    fit_tile,
    summary_markdown,
    write_boxplots,
    write_image_grid,
    write_scores_csv,
    write_summary,
)
from egain.metrics.stats import summarise
from egain.metrics.table import METRIC_NAMES, METRICS
from egain.runtime.files import atomic_write_text
from egain.utils.images import (
    IMAGE_EXTENSIONS,
    OWN_SIDE_FILES,
    is_data_image,
    is_image_file,
    open_image,
    resize_center_crop,
)

#: what ``--metrics`` accepts: every score column; "ssim" gives both the [0, 1] and the raw column
METRIC_CHOICES: tuple[str, ...] = METRIC_NAMES
#: metrics scored by a network on float images (LPIPS, the face embedders)
_MODEL_METRICS = frozenset(m.name for m in METRICS if m.needs != "pixels")
#: the ID column's scorer: not the network methods train against (synthfaces-arcface), so the
#: column measures identity rather than how well a method optimised its own loss
DEFAULT_IDENTITY_BACKEND = "synthfaces-cosface"
DEFAULT_MAGFACE_BACKEND = "synthfaces-magface"
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}


def parse_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    """Metric columns to compute, in CSV order ("ssim" implies "ssim_raw"; None or "all" = every one)."""
    if metrics is None:
        return list(METRIC_NAMES)
    names = [
        m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()
    ]
    if names == ["all"]:
        return list(METRIC_NAMES)
    aliases = {"ssim01": "ssim", "face_id": "id", "identity": "id", "vifp": "vif", "vif-p": "vif"}
    names = [aliases.get(n, n) for n in names]
    unknown = [n for n in names if n not in METRIC_CHOICES]
    if unknown:
        raise InputError(
            f"unknown metric(s) {', '.join(unknown)}; expected a comma list of {', '.join(METRIC_CHOICES)}"
        )
    if "ssim" in names:
        names.append("ssim_raw")
    return [m for m in METRIC_NAMES if m in names]


# --------------------------------------------------------------------------------------------------
# pairing


@dataclass
class ImageInfo:
    """What a file header says (read without decoding the pixels)."""

    path: Path
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None

    @property
    def gray(self) -> bool:
        return self.mode in _GRAY_MODES


def _probe(path: Path) -> ImageInfo:
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # shown rotated by 90 degrees
                w, h = h, w
            return ImageInfo(path, (w, h), im.mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return ImageInfo(path, error=f"{type(exc).__name__}: {exc}")


def _scan(folder: Path, role: str) -> tuple[dict[str, Path], list[str]]:
    """Image files of ``folder`` by name, and the names of the other (ignored) files."""
    if not folder.exists():
        raise InputError(f"{role} folder '{folder}' does not exist")
    if not folder.is_dir():
        raise InputError(f"{role} '{folder}' is not a folder (expected a folder of images)")
    images, ignored = {}, []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if is_data_image(p):
            images[p.name] = p
        elif not is_image_file(p) and p.name not in OWN_SIDE_FILES:
            ignored.append(p.name)  # (a synthfaces contact sheet is left out without a word)
    return images, ignored


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class Pairing:
    """The evaluation plan: for each source image name, the reconstruction path per method."""

    source: Path
    methods: dict[str, Path]
    images: list[str]  # source file names with a readable header, sorted
    source_info: dict[str, ImageInfo]
    pairs: dict[str, dict[str, ImageInfo]]  # method -> image -> reconstruction info (valid pairs only)
    issues: list[str] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return sum(len(v) for v in self.pairs.values())


def pair_folders(
    source: str | os.PathLike, methods: Mapping[str, str | os.PathLike], size: int | None = None
) -> Pairing:
    """Match every method folder against the source folder by file name and check the pairs.

    With ``size`` both images of a pair are resized (short side) and centre-cropped to size x size,
    so different resolutions are no longer a mismatch.
    """
    src_dir = Path(source)
    if not methods:
        raise InputError("no method to evaluate; pass at least one --method NAME=DIR")
    src_files, src_ignored = _scan(src_dir, "source")
    issues: list[str] = []
    if src_ignored:
        issues.append(f"source: ignored {len(src_ignored)} non-image file(s): {_names(src_ignored)}")
    if not src_files:
        raise InputError(
            f"source folder '{src_dir}' contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
            + (f"; it holds only {_names(src_ignored)}" if src_ignored else "")
        )
    src_info: dict[str, ImageInfo] = {}
    for name, p in src_files.items():
        info = _probe(p)
        if info.error:
            issues.append(
                f"source: '{name}' is not a readable image ({info.error}); skipped for every method"
            )
        else:
            src_info[name] = info
    pairs: dict[str, dict[str, ImageInfo]] = {}
    for method, mdir in methods.items():
        mdir = Path(mdir)
        try:
            files, ignored = _scan(mdir, f"method '{method}'")
        except InputError as exc:  # a missing folder costs one method, not the whole evaluation
            issues.append(f"{method}: {exc}; method left out")
            pairs[method] = {}
            continue
        if ignored:
            issues.append(f"{method}: ignored {len(ignored)} non-image file(s): {_names(ignored)}")
        if not files:
            issues.append(f"{method}: folder '{mdir}' contains no images; method left out")
            pairs[method] = {}
            continue
        by_stem: dict[str, list[str]] = defaultdict(list)
        for n in files:
            by_stem[Path(n).stem].append(n)
        used: set[str] = set()
        missing, problems, valid = [], [], {}
        for name in src_files:
            match = name if name in files else None
            if match is None:
                cands = by_stem.get(Path(name).stem, [])
                match = cands[0] if len(cands) == 1 else None
            if match is None:
                missing.append(name)
                continue
            used.add(match)
            if name not in src_info:
                continue
            info = _probe(files[match])
            s = src_info[name]
            if info.error:
                problems.append(f"{method}: '{match}' is not a readable image ({info.error}); skipped")
            elif s.gray != info.gray:
                problems.append(
                    f"{method}: '{match}' is {'grayscale' if info.gray else 'colour'} ({info.mode}) but the source "
                    f"'{name}' is {'grayscale' if s.gray else 'colour'} ({s.mode}); skipped (expected the same kind)"
                )
            elif size is None and info.size != s.size:
                problems.append(
                    f"{method}: '{match}' is {info.size[0]}x{info.size[1]} but the source '{name}' is "
                    f"{s.size[0]}x{s.size[1]}; skipped (expected equal sizes, or pass --size N to resize both)"
                )
            else:
                valid[name] = info
        extra = sorted(set(files) - used)
        if missing:
            issues.append(
                f"{method}: no reconstruction for {len(missing)} source image(s): {_names(missing)}"
            )
        if extra:
            issues.append(f"{method}: {len(extra)} file(s) without a source image: {_names(extra)}")
        issues.extend(problems)
        pairs[method] = valid
    plan = Pairing(
        src_dir, {m: Path(d) for m, d in methods.items()}, sorted(src_info), src_info, pairs, issues
    )
    if plan.n_pairs == 0:
        raise InputError(
            "nothing to evaluate: no valid (source, reconstruction) pair was found. " + " | ".join(issues[:6])
        )
    return plan


# --------------------------------------------------------------------------------------------------
# scoring


def _load_uint8(path: Path, size: int | None) -> torch.Tensor:
    """(3, H, W) uint8 as a person sees the file (and as ``egain invert`` read it): EXIF orientation
    applied, 16-bit scaled, grayscale expanded, alpha composited on white (utils.images.open_image)."""
    rgb = open_image(path)
    if size is not None and rgb.size != (size, size):
        rgb = resize_center_crop(rgb, size)
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()


@dataclass
class Scorers:
    """The optional, model-based scorers of one evaluation (None = not computed)."""

    lpips: torch.nn.Module | None = None
    identity: Backend | None = None
    magface: Backend | None = None


def score_batch(
    source: torch.Tensor,
    reconstruction: torch.Tensor,
    metrics: Sequence[str],
    scorers: Scorers | None = None,
    source_embeddings: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Scores of one batch of pairs, ``{metric: (N,) tensor}``.

    ``source`` / ``reconstruction``: (N, 3, H, W) uint8 (0..255) or float in [-1, 1], on the device
    to compute on. ``source_embeddings`` can pass the sources' face embeddings (keys "id", "magface")
    when several methods are scored against the same sources.
    """
    scorers = scorers or Scorers()
    out: dict[str, torch.Tensor] = {}
    pix = [m for m in metrics if m in PIXEL_METRICS]
    if pix:
        out.update(pixel_metrics(source, reconstruction, pix))
    need_float = any(m in _MODEL_METRICS for m in metrics)
    if need_float:
        fs = source.float() / 127.5 - 1.0 if source.dtype == torch.uint8 else source.float()
        fr = (
            reconstruction.float() / 127.5 - 1.0
            if reconstruction.dtype == torch.uint8
            else reconstruction.float()
        )
    if "lpips" in metrics and scorers.lpips is not None:
        with torch.no_grad():
            out["lpips"] = scorers.lpips(fs, fr)
    if "id" in metrics and scorers.identity is not None and scorers.identity.available:
        es = (source_embeddings or {}).get("id")
        if es is None:
            es = embed(scorers.identity.embedder, fs)
        out["id"] = identity_similarity_from_embeddings(es, embed(scorers.identity.embedder, fr))
    if "magface" in metrics and scorers.magface is not None and scorers.magface.available:
        out["magface"] = magface_quality_from_embeddings(embed(scorers.magface.embedder, fr))
    if "feat" in metrics and scorers.identity is not None and has_features(scorers.identity.embedder):
        out["feat"] = feature_distance(scorers.identity.embedder, fs, fr)
    return out


@dataclass
class EvaluationReport:
    """What an evaluation produced; ``rows`` follow the scores.csv format."""

    rows: list[dict]
    summary: list[dict]
    metrics: list[str]  # metric columns that were computed
    unavailable: dict[str, str]
    issues: list[str]
    methods: dict[str, Path]
    source: Path
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> dict[str, dict[str, np.ndarray]]:
        """scores[method][metric] aligned over the evaluated image names (NaN where not scored)."""
        return _score_table(self.rows, list(self.methods), self.metrics)[1]


def _score_table(rows: Sequence[Mapping], methods: Sequence[str], metrics: Sequence[str]):
    images = sorted({r["image"] for r in rows})
    index = {n: i for i, n in enumerate(images)}
    table = {m: {k: np.full(len(images), np.nan) for k in metrics} for m in methods}
    for r in rows:
        for k in metrics:
            v = r.get(k)
            if v is not None:
                table[r["method"]][k][index[r["image"]]] = v
    return images, table


def _build_scorers(
    metrics: list[str],
    device: torch.device,
    identity_backend: Any,
    magface_backend: Any,
    lpips_net: str,
    lpips_backbone: Any,
    lpips_linear: Any,
) -> tuple[Scorers, dict[str, str], list[str]]:
    unavailable: dict[str, str] = {}
    notes: list[str] = []
    scorers = Scorers()
    if "lpips" in metrics:
        from egain.metrics.lpips import LPIPS

        try:
            if isinstance(lpips_backbone, torch.nn.Module):
                scorers.lpips = lpips_backbone.to(device)
            else:
                scorers.lpips = LPIPS.from_files(lpips_net, lpips_backbone, lpips_linear, device=device)
                notes.append(
                    f"LPIPS-{lpips_net} weights: {scorers.lpips.sources['backbone']}, {scorers.lpips.sources['linear']}"
                )
        except CheckpointError as exc:
            unavailable["lpips"] = str(exc)
    embedders = (
        ("id", "identity", identity_backend, "Face ID: cosine similarity of '{}' embeddings"),
        ("magface", "magface", magface_backend, "MagFace quality: embedding norm under '{}'"),
    )
    for name, attr, spec, note in embedders:
        # the face-feature distance runs through the ID scorer: built for either metric
        if name not in metrics and not (name == "id" and "feat" in metrics):
            continue
        backend = resolve_embedder(spec, device)
        setattr(scorers, attr, backend)
        if name in metrics and backend.available:
            notes.append(note.format(backend.spec))
        elif name in metrics:
            unavailable[name] = backend.reason or "unavailable"
    if "feat" in metrics:
        backend = scorers.identity
        if backend is None or not backend.available:
            unavailable["feat"] = (backend.reason if backend else None) or "unavailable"
        elif not has_features(backend.embedder):
            unavailable["feat"] = (
                f"face embedder '{backend.spec}' gives no feature maps (features(images)), which the "
                "face-feature distance needs"
            )
        else:
            notes.append(
                f"Feat: face-feature distance through '{backend.spec}' (the ID scorer's stage maps and "
                "embedding, each unit-normalised over channels, squared difference summed over channels, "
                "averaged over positions, summed over levels; LPIPS's recipe without learned weights)"
            )
    return scorers, unavailable, notes


def evaluate_folders(
    source: str | os.PathLike,
    methods: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]],
    out: str | os.PathLike | None = None,
    *,
    metrics: str | Iterable[str] | None = None,
    identity_backend: Any = DEFAULT_IDENTITY_BACKEND,
    magface_backend: Any = DEFAULT_MAGFACE_BACKEND,
    lpips_net: str = "alex",
    lpips_backbone: Any = None,
    lpips_linear: str | os.PathLike | None = None,
    grid: int = 8,
    size: int | None = None,
    device: str | torch.device | None = "auto",
    batch_size: int = 16,
    n_boot: int = 2000,
    seed: int = 0,
    workers: int = 4,
    progress: bool = True,
) -> EvaluationReport:
    """Score reconstructions in ``methods`` (name -> folder) against the images in ``source``.

    Writes, when ``out`` is given: ``scores.csv`` (one row per image and method), ``summary.md``,
    ``summary.csv``, ``summary.json``, ``issues.txt``, ``plots/box_<metric>.png`` and ``grid.png``
    (the first ``grid`` images: source | method1 | ...). Identity / MagFace backends are
    ``egain.faces.load_embedder`` specs or objects with ``embed``; the identity backend also
    scores ``feat`` (face-feature distance) when it has ``features``; ``lpips_backbone`` is the
    torchvision weight file (or a ready LPIPS module). Metrics that cannot be computed are listed
    in ``report.unavailable`` with the reason, their columns stay empty.
    """
    from egain.runtime.logging import progress as progress_bar
    from egain.utils.device import resolve_device

    methods = dict(methods)
    wanted = parse_metrics(metrics)
    dev = resolve_device(device)
    plan = pair_folders(source, methods, size=size)
    scorers, unavailable, notes = _build_scorers(
        wanted, dev, identity_backend, magface_backend, lpips_net, lpips_backbone, lpips_linear
    )
    computed = [m for m in wanted if m not in unavailable]
    issues = list(plan.issues)
    results: dict[tuple[str, str], dict[str, float]] = {}
    source_quality: list[float] = []
    bar = progress_bar(total=plan.n_pairs, desc="evaluate", unit="pair", enabled=progress)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))

    def load_many(paths: list[Path]) -> list[torch.Tensor | InputError]:
        def one(p: Path):
            try:
                return _load_uint8(p, size)
            except InputError as exc:
                return exc

        return list(pool.map(one, paths))

    try:
        for start in range(0, len(plan.images), batch_size):
            names = plan.images[start : start + batch_size]
            wanted_names = [n for n in names if any(n in plan.pairs[m] for m in methods)]
            loaded = dict(
                zip(wanted_names, load_many([plan.source_info[n].path for n in wanted_names]), strict=True)
            )
            src: dict[str, torch.Tensor] = {}
            for n, t in loaded.items():
                if isinstance(t, InputError):
                    issues.append(f"source: {t}; skipped for every method")
                    bar.update(sum(n in plan.pairs[m] for m in methods))
                else:
                    src[n] = t
            src_emb: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
            for method in methods:
                todo = [n for n in names if n in plan.pairs[method] and n in src]
                if not todo:
                    continue
                recs = load_many([plan.pairs[method][n].path for n in todo])
                groups: dict[tuple, list[tuple[str, torch.Tensor]]] = defaultdict(list)
                for n, r in zip(todo, recs, strict=True):
                    if isinstance(r, InputError):
                        issues.append(f"{method}: {r}; skipped")
                        bar.update(1)
                    elif r.shape != src[n].shape:
                        issues.append(
                            f"{method}: '{n}' decoded to {tuple(r.shape)} but the source to {tuple(src[n].shape)}; skipped"
                        )
                        bar.update(1)
                    else:
                        groups[tuple(r.shape)].append((n, r))
                for group in groups.values():
                    gnames = [n for n, _ in group]
                    x = torch.stack([src[n] for n in gnames]).to(dev, non_blocking=True)
                    y = torch.stack([r for _, r in group]).to(dev, non_blocking=True)
                    cached = _source_embeddings(gnames, x, scorers, computed, src_emb, source_quality)
                    scores = score_batch(x, y, computed, scorers, cached)
                    host = {k: v.detach().double().cpu().numpy() for k, v in scores.items()}
                    for i, n in enumerate(gnames):
                        results[(n, method)] = {k: float(v[i]) for k, v in host.items()}
                    bar.update(len(gnames))
    finally:
        bar.close()
        pool.shutdown(wait=True)

    rows = []
    for n in plan.images:
        for method in methods:
            if (n, method) in results:
                r = results[(n, method)]
                rows.append({"image": n, "method": method, **{k: r.get(k) for k in METRIC_NAMES}})
    if not rows:
        raise InputError("nothing could be scored: " + " | ".join(issues[:6]))
    method_names = [m for m in methods if any(r["method"] == m for r in rows)]
    _, table = _score_table(rows, method_names, computed)
    summary = summarise(table, computed, n_boot=n_boot, seed=seed)
    if source_quality:
        q = np.asarray(source_quality)
        notes.append(
            f"MagFace quality of the source images: {q.mean():.2f} ± {q.std(ddof=1) if q.size > 1 else 0.0:.2f} (n={q.size})"
        )
    notes.append(
        "SSIM and PSNR as scikit-image (Gaussian window, data_range 255), SCC and VIF-p as sewar; MAE and MSE on "
        "intensities in [0, 1]; p-values: paired Wilcoxon signed-rank against the best other method by median, "
        "Holm-corrected across methods; CI: 95 % percentile bootstrap of the mean "
        f"({n_boot} resamples, seed {seed}); non-finite scores (PSNR of exact copies) left out of the statistics."
    )
    report = EvaluationReport(
        rows, summary, computed, unavailable, issues, plan.methods, plan.source, notes=notes
    )
    if out is not None:
        report.files = _write_report(report, Path(out), plan, grid, size, dev)
    return report


def _source_embeddings(
    names: list[str],
    x: torch.Tensor,
    scorers: Scorers,
    metrics: Sequence[str],
    cache: dict[str, dict[str, torch.Tensor]],
    source_quality: list[float],
) -> dict[str, torch.Tensor]:
    """Face embeddings of the sources, computed once per image and shared by all methods."""
    out: dict[str, torch.Tensor] = {}
    jobs = []
    if "id" in metrics and scorers.identity is not None and scorers.identity.available:
        jobs.append(("id", scorers.identity))
    if "magface" in metrics and scorers.magface is not None and scorers.magface.available:
        jobs.append(("magface", scorers.magface))
    if not jobs:
        return out
    xf = x.float() / 127.5 - 1.0
    for key, backend in jobs:
        if not all(key in cache[n] for n in names):
            e = embed(backend.embedder, xf)
            for n, v in zip(names, e, strict=True):
                if key not in cache[n]:
                    cache[n][key] = v
                    if key == "magface":
                        source_quality.append(float(v.norm()))
        out[key] = torch.stack([cache[n][key] for n in names])
    return out


def _write_report(
    report: EvaluationReport, out: Path, plan: Pairing, grid: int, size: int | None, device: torch.device
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"scores_csv": write_scores_csv(report.rows, out / "scores.csv")}
    n_images = len({r["image"] for r in report.rows})
    header = [
        f"source: `{plan.source}` ({len(plan.images)} images)",
        "methods: " + ", ".join(f"{m} (`{d}`)" for m, d in plan.methods.items()),
        f"scored pairs: {len(report.rows)} over {n_images} images; device: {device}",
    ]
    md = summary_markdown(
        report.summary,
        header_lines=header,
        unavailable=report.unavailable,
        issues=report.issues,
        notes=report.notes,
    )
    meta = {
        "source": str(plan.source),
        "methods": {m: str(d) for m, d in plan.methods.items()},
        "metrics": report.metrics,
        "n_images": n_images,
        "n_rows": len(report.rows),
        "unavailable": report.unavailable,
        "issues": report.issues,
        "notes": report.notes,
    }
    files.update(write_summary(report.summary, out, markdown=md, meta=meta))
    files["issues"] = atomic_write_text(out / "issues.txt", "".join(f"{i}\n" for i in report.issues))
    for p in write_boxplots(report.table(), report.metrics, out / "plots"):
        files[p.stem] = p
    if grid > 0:
        g = _grid(report, plan, grid, size, out / "grid.png")
        if g is not None:
            files["grid"] = g
    return files


def _grid(report: EvaluationReport, plan: Pairing, n: int, size: int | None, path: Path) -> Path | None:
    """Source | method1 | method2 ... for the first ``n`` scored images, tiles at most 256 px high."""
    scored = {(r["image"], r["method"]) for r in report.rows}
    names = [x for x in plan.images if any((x, m) in scored for m in plan.methods)][:n]
    if not names:
        return None
    first = _load_uint8(plan.source_info[names[0]].path, size)
    h, w = first.shape[-2:]
    # large images are shrunk to 256 px; tiny ones are enlarged by an integer factor (nearest) to
    # about 128 px so that pixel-level differences stay visible
    scale = 256 / max(h, w) if max(h, w) > 256 else float(max(1, 128 // max(h, w)))
    tile_hw = (max(1, round(h * scale)), max(1, round(w * scale)))

    rows = []
    for name in names:
        row = [fit_tile(_load_uint8(plan.source_info[name].path, size), tile_hw)]
        for m in plan.methods:
            scored_pair = (name, m) in scored
            row.append(
                fit_tile(_load_uint8(plan.pairs[m][name].path, size), tile_hw) if scored_pair else None
            )
        rows.append(row)
    return write_image_grid(rows, ["source", *plan.methods], path)


def format_console_summary(report: EvaluationReport) -> str:
    """A compact text table for the terminal: mean (median) per method and metric."""
    methods = list(dict.fromkeys(r["method"] for r in report.summary))
    by = {(r["metric"], r["method"]): r for r in report.summary}
    width = max([len(m) for m in methods] + [6])
    lines = [" " * width + "".join(f"{k:>18}" for k in report.metrics)]
    for m in methods:
        cells = []
        for k in report.metrics:
            r = by.get((k, m))
            if r is None or not r["n"] or not math.isfinite(r["mean"]):
                cells.append(f"{'–':>18}")
            else:
                cells.append(f"{r['mean']:>10.4f} ({r['median']:.3f})"[-18:].rjust(18))
        lines.append(m.ljust(width) + "".join(cells))
    return "\n".join(lines)

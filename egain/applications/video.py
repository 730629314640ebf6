"""Video inversion with temporal-consistency measurement (seeds/001 section 4.4).

HFGI claims that high-fidelity inversion is "robust to viewpoint and illumination fluctuation and
can thus perform temporally consistent editing on videos", while low-rate inversion shows
"inconsistent details and abrupt identity discrepancy" across frames. :func:`temporal_metrics`
measures that on any method's per-frame inversion of a clip (synthfaces sequences give clips with
known, smooth motion):

* ``tc_error``: mean |(r_{t+1} - r_t) - (s_{t+1} - s_t)| over pixels and frame pairs (in [-1, 1]
  units): how far the reconstruction's frame-to-frame change departs from the source's; flicker
  and lost motion both raise it;
* ``tc_ratio``: mean |r_{t+1} - r_t| / mean |s_{t+1} - s_t| (1: as much change as the source; >1
  flicker added, <1 motion lost);
* ``latent_step``: mean ||w_{t+1} - w_t|| / sqrt(numel) (the code's jitter);
* ``delta_flicker``: for methods with a delta branch, mean |D_{t+1} - D_t| of the distortion map,
  against the same of the source-minus-basic difference ... which *is* the map, so it is
  reported beside ``source_step`` (mean |s_{t+1} - s_t|) for scale;
* ``id_drift``: 1 - mean cosine between each reconstructed frame's face embedding and the clip's
  mean reconstructed embedding, minus the same for the source frames (0: the reconstruction's
  identity varies over the clip as much as the source's does; > 0: it drifts more);
* ``psnr``: the per-frame reconstruction quality, for context.

:func:`smooth_inversions` averages codes (and distortion maps) over a Gaussian window of frames;
``egain apply video --smooth SIGMA`` uses it, and the measurement says whether it helps.

:func:`edit_video` edits every frame's (optionally smoothed) inversion with the method's own edit
rule (``method.edit``, ADA included, as ``egain edit``) and measures the edited clip with
:func:`edit_temporal_metrics`: the same ``tc_error`` / ``tc_ratio`` against the *source's*
frame-to-frame change (a constant edit should keep the motion), ``tc_error_vs_recon`` (the
frame-to-frame change of the edit map e_t - r_t: flicker the edit itself adds), ``edit_change``
(mean |e - r|, the edit's size, for scale) and, with an embedder, ``id_drift`` of the edited frames
(their identity spread minus the source's) and ``id_sim`` (edited vs source).
Video files are read and written with imageio (GIF through Pillow; MP4 needs ``imageio-ffmpeg``,
the ``video`` extra, whose wheel bundles an ffmpeg binary); frame folders need nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.applications.common import blend, render, to_uint8_tiles, write_gif
from egain.errors import InputError
from egain.methods import Inversion, InversionMethod

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm")
#: the clip formats egain writes (``--format`` / ``--clip``)
CLIP_FORMATS = ("gif", "mp4")


# ------------------------------------------------------------------------------------------------
# frames in and out


def read_frames(
    path: str | os.PathLike, size: int | None = None, max_frames: int | None = None
) -> torch.Tensor:
    """A clip as (T, 3, S, S) in [-1, 1]: a folder of images (sorted by name) or a video file."""
    from PIL import Image

    from egain.utils.images import list_images, pil_to_tensor, resize_center_crop, to_rgb

    path = Path(path)
    if path.is_dir():
        pics = [to_rgb(Image.open(p)) for p in list_images(path)]
    elif path.suffix.lower() == ".gif":
        im = Image.open(path)
        pics = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            pics.append(to_rgb(im.copy()))
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            import imageio.v3 as iio
        except ImportError:
            raise InputError(f"reading {path.suffix} needs imageio: pip install 'egain[video]'") from None
        try:
            pics = [Image.fromarray(np.asarray(f)[..., :3]) for f in iio.imiter(path)]
        except Exception as exc:  # imageio raises plugin-specific errors
            raise InputError(
                f"cannot read video '{path}' ({str(exc).splitlines()[0][:120]}); MP4 needs imageio-ffmpeg: "
                "pip install 'egain[video]'"
            ) from None
    else:
        raise InputError(f"'{path}' is neither a frame folder nor a video file ({', '.join(VIDEO_SUFFIXES)})")
    if max_frames:
        pics = pics[:max_frames]
    if not pics:
        raise InputError(f"no frames in '{path}'")
    if size:
        pics = [resize_center_crop(p, size) if p.size != (size, size) else p for p in pics]
    return torch.stack([pil_to_tensor(p) for p in pics])


def write_video(
    frames: torch.Tensor | Sequence[np.ndarray], path: str | os.PathLike, fps: float = 10.0, scale: int = 1
) -> Path:
    """Write a clip: ``.gif`` with Pillow, other suffixes (``.mp4``) with imageio + imageio-ffmpeg."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return write_gif(frames, path, fps, scale)
    tiles = to_uint8_tiles(frames) if isinstance(frames, torch.Tensor) else list(frames)
    if scale != 1:
        tiles = [np.repeat(np.repeat(t, scale, 0), scale, 1) for t in tiles]
    try:
        import imageio.v3 as iio
    except ImportError:
        raise InputError(f"writing {path.suffix} needs imageio: pip install 'egain[video]'") from None
    from egain.runtime.files import atomic_path

    with atomic_path(path) as tmp:
        try:
            iio.imwrite(tmp, np.stack(tiles), fps=fps, extension=path.suffix, macro_block_size=1)
        except Exception as exc:
            raise InputError(
                f"cannot write '{path}' ({str(exc).splitlines()[0][:120]}); MP4 needs imageio-ffmpeg: "
                "pip install 'egain[video]' (or write a .gif)"
            ) from None
    return path


# ------------------------------------------------------------------------------------------------
# inversion over time


@torch.no_grad()
def invert_frames(
    method: InversionMethod, frames: torch.Tensor, batch: int = 16, seed: int | None = 0
) -> list[Inversion]:
    """Per-frame inversions (each a one-image :class:`Inversion`, on the CPU).

    ``seed``: the torch random state the inversions start from (the caller's is restored), as in
    ``egain.workflows.inversion.invert_files``, so methods that draw at inference (DSE's noise)
    give the same clip on every run; ``None`` leaves the state alone.
    """
    from egain.runtime.seeding import seeded

    out: list[Inversion] = []
    with seeded(seed, method.device):
        for i in range(0, frames.shape[0], batch):
            inv = method.invert(frames[i : i + batch].to(method.device)).to("cpu")
            out += [inv.select([j]) for j in range(len(inv))]
    return out


def smooth_inversions(invs: Sequence[Inversion], sigma: float) -> list[Inversion]:
    """Each frame's codes and distortion maps averaged over a Gaussian window of ``sigma`` frames
    (normalised at the clip's ends); ``sigma <= 0`` leaves them alone."""
    if sigma <= 0 or len(invs) < 2:
        return list(invs)
    radius = max(1, int(math.ceil(3 * sigma)))
    out = []
    for t in range(len(invs)):
        idx = [s for s in range(t - radius, t + radius + 1) if 0 <= s < len(invs)]
        w = np.array([math.exp(-0.5 * ((s - t) / sigma) ** 2) for s in idx])
        w = w / w.sum()
        # a running blend: avg_k = blend(avg_{k-1}, inv_k, w_k / (w_1 + .. + w_k))
        acc, total = invs[idx[0]], w[0]
        for s, ws in zip(idx[1:], w[1:], strict=True):
            total += ws
            acc = blend(acc, invs[s], float(ws / total))
        out.append(acc)
    return out


@torch.no_grad()
def render_inversions(method: InversionMethod, invs: Sequence[Inversion]) -> torch.Tensor:
    """(T, 3, S, S) images of (possibly smoothed) inversions, rendered by the method."""
    return torch.cat([render(method, inv) for inv in invs])


# ------------------------------------------------------------------------------------------------
# temporal consistency


def _delta(inv: Inversion) -> torch.Tensor | None:
    d = inv.extras.get("delta")
    return d if isinstance(d, torch.Tensor) else None


@torch.no_grad()
def temporal_metrics(
    source: torch.Tensor,
    recon: torch.Tensor,
    invs: Sequence[Inversion] | None = None,
    embedder: Any = None,
) -> dict[str, float]:
    """Temporal consistency of a reconstructed clip against its source (see the module doc)."""
    s, r = source.float().cpu(), recon.float().cpu().clamp(-1, 1)
    if s.shape != r.shape or s.shape[0] < 2:
        raise InputError(
            f"need two clips of the same shape with >= 2 frames, got {tuple(s.shape)} / {tuple(r.shape)}"
        )
    ds, dr = s[1:] - s[:-1], r[1:] - r[:-1]
    out = {
        "tc_error": float((dr - ds).abs().mean()),
        "tc_ratio": float(dr.abs().mean() / ds.abs().mean().clamp_min(1e-8)),
        "source_step": float(ds.abs().mean()),
        "psnr": float(10 * torch.log10(4 / ((r - s) ** 2).flatten(1).mean(1).clamp_min(1e-10)).mean()),
    }
    if invs:
        w = torch.cat([i.latents for i in invs]).float()
        out["latent_step"] = float((w[1:] - w[:-1]).flatten(1).norm(dim=1).mean() / math.sqrt(w[0].numel()))
        deltas = [_delta(i) for i in invs]
        if all(d is not None for d in deltas):
            d = torch.cat(deltas).float()
            out["delta_flicker"] = float((d[1:] - d[:-1]).abs().mean())
    if embedder is not None:

        def spread(x: torch.Tensor) -> float:
            e = torch.nn.functional.normalize(
                embedder.embed(x.to(embedder_device(embedder))).float().cpu(), dim=1
            )
            m = torch.nn.functional.normalize(e.mean(0, keepdim=True), dim=1)
            return float(1 - (e @ m.t()).mean())

        out["id_spread_source"] = spread(s)
        out["id_spread_recon"] = spread(r)
        out["id_drift"] = out["id_spread_recon"] - out["id_spread_source"]
        e_s = torch.nn.functional.normalize(
            embedder.embed(s.to(embedder_device(embedder))).float().cpu(), dim=1
        )
        e_r = torch.nn.functional.normalize(
            embedder.embed(r.to(embedder_device(embedder))).float().cpu(), dim=1
        )
        out["id_sim"] = float((e_s * e_r).sum(1).mean())
    return out


def embedder_device(embedder: Any) -> torch.device:
    for p in getattr(embedder, "parameters", lambda: [])():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def invert_video(
    method: InversionMethod, frames: torch.Tensor, *, smooth: float = 0.0, embedder: Any = None
) -> tuple[torch.Tensor, dict[str, float], list[Inversion]]:
    """Invert every frame, optionally smooth codes/maps over time, render, and measure.

    Returns (reconstructed clip (T, 3, S, S), temporal metrics, the inversions used).
    """
    invs = invert_frames(method, frames)
    if smooth > 0:
        invs = smooth_inversions(invs, smooth)
        recon = render_inversions(method, invs)
    else:
        recon = torch.cat([i.reconstruction for i in invs]).float()
    from egain.methods import prepare_images

    src = prepare_images(frames, method.input_size).float().cpu()
    return recon, temporal_metrics(src, recon, invs, embedder), invs


# ------------------------------------------------------------------------------------------------
# editing over time


@dataclass
class VideoEdit:
    """What :func:`edit_video` returns: the edited clip and its metrics, with the reconstruction
    they are measured against (all (T, 3, S, S) in [-1, 1], on the CPU)."""

    edited: torch.Tensor
    metrics: dict[str, float]
    reconstruction: torch.Tensor
    recon_metrics: dict[str, float]
    inversions: list[Inversion] = field(default_factory=list)


@torch.no_grad()
def edit_temporal_metrics(
    source: torch.Tensor, recon: torch.Tensor, edited: torch.Tensor, embedder: Any = None
) -> dict[str, float]:
    """Temporal consistency of an edited clip (see the module doc).

    ``tc_error``/``tc_ratio``/``source_step`` are :func:`temporal_metrics`' with the edited clip in
    place of the reconstruction (an edit that is the same on every frame keeps the source's motion);
    ``tc_error_vs_recon`` compares against the reconstruction's change instead, which isolates what
    the edit adds; PSNR is left out (an edit is meant to differ from the source).
    """
    base = temporal_metrics(source, edited, None, embedder)
    e, r = edited.float().cpu().clamp(-1, 1), recon.float().cpu().clamp(-1, 1)
    if e.shape != r.shape:
        raise InputError(
            f"edited and reconstructed clips differ in shape: {tuple(e.shape)} / {tuple(r.shape)}"
        )
    out = {k: base[k] for k in ("tc_error", "tc_ratio", "source_step")}
    out["tc_error_vs_recon"] = float(((e[1:] - e[:-1]) - (r[1:] - r[:-1])).abs().mean())
    out["edit_change"] = float((e - r).abs().mean())
    if "id_drift" in base:
        out["id_spread_source"] = base["id_spread_source"]
        out["id_spread_edit"] = base["id_spread_recon"]
        out["id_drift"] = base["id_drift"]
        out["id_sim"] = base["id_sim"]
    return out


def _as_direction(method: InversionMethod, directions: Any) -> Any:
    """Spec strings (``"smile"``, ``["smile", "age*0.5"]``, ``"a+b"``) -> a direction of the method's
    generator, as ``egain edit --direction`` reads them; directions and tensors pass through."""
    if isinstance(directions, str):
        directions = [directions]
    if isinstance(directions, list | tuple) and all(isinstance(d, str) for d in directions):
        from egain.editing.apply import resolve_directions

        return resolve_directions(directions, method.generator)
    return directions


@torch.no_grad()
def edit_video(
    method: InversionMethod,
    frames: torch.Tensor,
    directions: Any,
    strength: float = 1.0,
    *,
    smooth: float = 0.0,
    ada: bool = True,
    embedder: Any = None,
) -> VideoEdit:
    """Invert every frame, optionally smooth the codes/maps over time, edit each frame's inversion
    with the method's own edit rule, and measure both clips.

    ``directions``: a :class:`~egain.editing.Direction`, an :class:`~egain.editing.EditSet`, a
    tensor, or ``egain edit --direction`` specs (a learnt name of the method's generator, a file,
    ``NAME*WEIGHT``, ``'+'``-joined; a string or a list). ``smooth`` (sigma in frames) applies to
    the codes and distortion maps *before* editing, so the edit inherits the smoothing. ``ada``:
    HFGI's re-alignment (ignored by methods without it). At ``strength=0`` the edited clip is the
    reconstruction (up to float error), since every method's edit rule is the identity there.
    """
    from egain.editing.apply import method_edit
    from egain.methods import prepare_images

    direction = _as_direction(method, directions)
    recon, recon_metrics, invs = invert_video(method, frames, smooth=smooth, embedder=embedder)
    edited = torch.cat(
        [
            method_edit(method, inv.to(method.device), direction, strength, ada=ada).float().cpu()
            for inv in invs
        ]
    )
    src = prepare_images(frames, method.input_size).float().cpu()
    return VideoEdit(edited, edit_temporal_metrics(src, recon, edited, embedder), recon, recon_metrics, invs)


# ------------------------------------------------------------------------------------------------
# clips as image folders (``egain invert`` / ``egain edit --input CLIP``)


def is_video_file(path: str | os.PathLike) -> bool:
    """A file with a video suffix (``.gif``, ``.mp4``, ...): read as frames, not as one image."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()


def clip_fps(path: str | os.PathLike, default: float = 10.0) -> float:
    """The frame rate a video file declares (GIF: from its frame duration), else ``default``."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".gif":
            from PIL import Image

            with Image.open(p) as im:
                ms = im.info.get("duration") or 0
            return 1000.0 / ms if ms > 0 else default
        import imageio.v3 as iio

        fps = iio.immeta(p).get("fps")
        return float(fps) if fps and float(fps) > 0 else default
    except Exception:  # metadata is a nicety: a clip without it plays at the default rate
        return default


def clip_format(path: str | os.PathLike, requested: str | None) -> str:
    """The format of the clip written for a video input: ``requested``, else the input's own
    (gif/mp4), else gif."""
    if requested:
        return requested
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in CLIP_FORMATS else "gif"


def frame_names(n: int) -> list[str]:
    """``frame_00000.png``, ... : the names the frames of a clip get as images (sorted = in order)."""
    return [f"frame_{i:05d}.png" for i in range(n)]


def extract_frames(frames: torch.Tensor, folder: str | os.PathLike) -> list[Path]:
    """Write a clip's frames as ``folder/frame_00000.png``, ...; returns the files in order."""
    from egain.utils.images import save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / n for n in frame_names(frames.shape[0])]
    for f, img in zip(files, frames, strict=True):
        save_image(img, f)
    return files


def write_clip_of_images(
    files: Sequence[str | os.PathLike], path: str | os.PathLike, fps: float = 10.0, scale: int = 1
) -> Path:
    """A clip of image files in the order given (all are fitted to the first one's size)."""
    from PIL import Image

    from egain.utils.images import open_image, pil_to_tensor

    if not files:
        raise InputError(f"no images to write as '{path}'")
    pics = [open_image(f) for f in files]
    w, h = pics[0].size
    if any(p.size != (w, h) for p in pics):
        pics = [p if p.size == (w, h) else p.resize((w, h), Image.BICUBIC) for p in pics]
    return write_video(torch.stack([pil_to_tensor(p) for p in pics]), path, fps, scale)


#: HFGI's claim (seeds/001 section 4.4): high-fidelity inversion is more consistent across frames
HIGH_FIDELITY = ("hfgi", "egain")
LOW_FIDELITY = ("e4e", "restyle-psp", "restyle-e4e")
CLAIM_ALPHA = 0.01  # the significance level of egain compare's claims


def consistency_claims(
    per_clip: dict[str, list[dict[str, float]]],
    high: Sequence[str] = HIGH_FIDELITY,
    low: Sequence[str] = LOW_FIDELITY,
    metric: str = "tc_error",
    alpha: float = CLAIM_ALPHA,
    methods: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """HFGI's video claim, tested clip by clip: each ``high`` method has a lower ``metric`` than each
    ``low`` method (paired Wilcoxon signed-rank over clips, two-sided p < ``alpha`` with the mean
    difference in its favour, as ``egain compare`` judges a ``beats`` claim).

    ``per_clip`` maps a method label to its per-clip metric dicts, the clips in the same order for
    every label (``egain apply video --methods``). ``methods`` maps a label to its registry method
    (``e4e-swagan`` -> ``e4e``, ``restyle-1=restyle-psp@iterations=1`` -> ``restyle-psp``); the
    groups ``high`` and ``low`` are matched against it (default: the label itself). With
    fewer than 8 clips no outcome can reach p < 0.01 (the smallest two-sided p of n pairs is
    2 / 2^n), which the verdict says instead of "does not hold".
    """
    from egain.metrics.stats import wilcoxon_test

    kind = {label: (methods or {}).get(label, label) for label in per_clip}
    counts = {label: len(clips) for label, clips in per_clip.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"every method needs the same clips for a paired test; got clip counts {counts}")
    rows = []
    for a in (label for label in per_clip if kind[label] in high):
        for b in (label for label in per_clip if kind[label] in low):
            x = np.array([c[metric] for c in per_clip[a]], dtype=float)
            y = np.array([c[metric] for c in per_clip[b]], dtype=float)
            t = wilcoxon_test(x, y, higher_is_better=False)
            n = t["n"]
            if 2.0 / 2**n >= alpha:
                verdict = f"no verdict: {n} clips cannot reach p < {alpha:g}"
            elif t["mean_diff"] > 0 and t["p_two_sided"] < alpha:
                verdict = "holds"
            else:
                verdict = "does not hold"
            rows.append(
                {
                    "challenger": a,
                    "reference": b,
                    "metric": metric,
                    "n": n,
                    "wins": int(round(t["win_rate"] * n)) if n else 0,
                    "mean_diff": t["mean_diff"],
                    "p_two_sided": t["p_two_sided"],
                    "alpha": alpha,
                    "verdict": verdict,
                }
            )
    return rows


def claims_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The lines of the claim table ``egain apply video --methods`` adds to ``temporal.md``."""
    if not rows:
        return []
    lines = [
        f"HFGI's claim (seeds/001 section 4.4): high-fidelity inversion has a lower {rows[0]['metric']}",
        f"(paired Wilcoxon over clips, two-sided p < {rows[0].get('alpha', CLAIM_ALPHA):g}):",
        "",
        "| claim | clips better | mean difference | p | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['challenger']} < {r['reference']} | {r['wins']}/{r['n']} | {r['mean_diff']:.4f} "
            f"| {r['p_two_sided']:.4f} | {r['verdict']} |"
        )
    return lines

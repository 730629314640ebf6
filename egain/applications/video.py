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
Video files are read and written with imageio (GIF through Pillow; MP4 needs ``imageio-ffmpeg``,
the ``video`` extra, whose wheel bundles an ffmpeg binary); frame folders need nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.applications.common import blend, render, to_uint8_tiles, write_gif
from egain.errors import InputError
from egain.methods import Inversion, InversionMethod

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm")


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
def invert_frames(method: InversionMethod, frames: torch.Tensor, batch: int = 16) -> list[Inversion]:
    """Per-frame inversions (each a one-image :class:`Inversion`, on the CPU)."""
    out: list[Inversion] = []
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

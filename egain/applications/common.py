"""What the applications share: re-rendering an (altered) inversion with its own method, blending
two inversions, and writing image strips and GIFs.

Applications change an :class:`~egain.methods.Inversion` (its code, and for high-fidelity methods
its distortion maps Delta) and let the method render the result through ``method.edit`` with a zero
direction: internal fusion (HFGI, EGAIN) re-synthesises ``G(w_b, fusion(Delta))`` (HFGI re-aligns
Delta to the new low-fidelity image with ADA), external fusion and plain encoders ``G(w)``. So every
application works with every method that implements ``edit``, bundled or trained.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.methods import Inversion, InversionMethod
from egain.runtime.files import atomic_path
from egain.utils.images import tensor_to_uint8


@torch.no_grad()
def render(method: InversionMethod, inversion: Inversion) -> torch.Tensor:
    """The images ``inversion`` stands for, rendered by ``method`` (N, 3, S, S) in [-1, 1]."""
    zero = torch.zeros(inversion.latents.shape[-1], device=method.device)
    return method.edit(inversion.to(method.device), zero, 0.0).float().cpu()


def blend(a: Any, b: Any, lam: float) -> Any:
    """``lam * b + (1 - lam) * a`` for every float tensor in two matching inversions (or extras).

    Tensors whose shapes differ and non-float values are taken from ``a``. For a high-fidelity
    method this interpolates the codes and, linearly, the distortion maps Delta (before the
    consultation/fusion encoders): ``G(lam w_B + (1-lam) w_A, F(lam D_B + (1-lam) D_A))``.
    """
    if isinstance(a, Inversion):
        return Inversion(
            blend(a.latents, b.latents, lam),
            blend(a.reconstruction, b.reconstruction, lam),
            blend(a.extras, b.extras, lam),
        )
    if isinstance(a, torch.Tensor):
        if isinstance(b, torch.Tensor) and a.shape == b.shape and a.is_floating_point():
            return torch.lerp(a, b.to(a.device, a.dtype), float(lam))
        return a
    if isinstance(a, dict):
        return {k: blend(v, b.get(k) if isinstance(b, dict) else None, lam) for k, v in a.items()}
    if isinstance(a, list | tuple):
        bs = b if isinstance(b, list | tuple) and len(b) == len(a) else [None] * len(a)
        return type(a)(blend(x, y, lam) for x, y in zip(a, bs, strict=True))
    return a


def to_uint8_tiles(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) in [-1, 1] -> list of (H, W, 3) uint8 tiles."""
    return list(tensor_to_uint8(images.detach().float().cpu()))


def write_gif(
    frames: Sequence[np.ndarray] | torch.Tensor, path: str | os.PathLike, fps: float = 10.0, scale: int = 1
) -> Path:
    """An animated GIF (looping) of uint8 tiles or a (T, 3, H, W) tensor in [-1, 1] (Pillow only)."""
    from PIL import Image

    if isinstance(frames, torch.Tensor):
        frames = to_uint8_tiles(frames)
    ims = [Image.fromarray(f) for f in frames]
    if scale != 1:
        ims = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in ims]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return path


def write_columns(
    columns: Sequence[torch.Tensor], labels: Sequence[str], path: str | os.PathLike, tile: int = 128
) -> Path:
    """A labelled grid: one column per (N, 3, H, W) tensor in [-1, 1], one row per image.

    Tiles are enlarged by nearest neighbour to ``tile`` px so 64 px detail stays visible; the
    project's one grid writer (:func:`egain.metrics.report.write_image_grid`) draws it.
    """
    from egain.metrics.report import fit_tile, write_image_grid

    n = int(columns[0].shape[0])
    rows = []
    for i in range(n):
        row = []
        for c in columns:
            t = torch.from_numpy(tensor_to_uint8(c[i : i + 1])[0]).permute(2, 0, 1).contiguous()
            row.append(fit_tile(t, (tile, tile)))
        rows.append(row)
    return write_image_grid(rows, list(labels), path)

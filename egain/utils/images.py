"""Image I/O and grids, without torchvision.

Conventions used across egain: image tensors are float (N, 3, H, W) in [-1, 1]; files are 8-bit RGB.
Every loader raises :class:`~egain.errors.InputError` with the offending path instead of a PIL
traceback, so a bad file in a folder of thousands is easy to find.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from egain.errors import InputError
from egain.utils.sidefiles import (  # noqa: F401  (re-exported: the names' one home is sidefiles)
    IMAGE_EXTENSIONS,
    INVERT_TIMING,
    OWN_SIDE_FILES,
    PARSING_SUFFIX,
    SYNTHFACES_LABELS,
    SYNTHFACES_PARSING_SHEET,
    SYNTHFACES_SHEET,
    is_data_image,
    is_image_file,
    is_parsing_map,
)


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted image files of ``folder``; raises if the folder is missing or holds no image.

    In a synthfaces folder (one with ``labels.jsonl``) the contact and parsing sheets and the
    ``*_parsing.png`` label maps are not data images and are left out (see
    :func:`~egain.utils.sidefiles.is_data_image`), so such a folder can be trained on, inverted and
    evaluated as it is.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"folder '{folder}' does not exist")
    if folder.is_file():
        if not is_image_file(folder):
            raise InputError(
                f"'{folder}' is not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"
            )
        return [folder]
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and is_data_image(p))
    if not files:
        raise InputError(f"folder '{folder}' contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def open_image(path: str | os.PathLike, mode: str | None = "RGB") -> Image.Image:
    """Open an image fully (not lazily) and convert it to ``mode`` (None keeps the file's mode)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode is not None else im.copy()
    except FileNotFoundError:
        raise InputError(f"image '{path}' does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"'{path}' is not a readable image ({exc})") from None


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the short side to ``size`` (area/Lanczos filtering) and crop the centre square."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.LANCZOS if scale < 1 else Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor (3, H, W) in [-1, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).div_(127.5).sub_(1.0)


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) or (3, H, W) in [-1, 1] -> uint8 array (N, H, W, 3) or (H, W, 3), rounded."""
    x = images.detach().float().cpu()
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy() if x.ndim == 4 else x.permute(1, 2, 0).numpy()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor_to_uint8(image))


def load_image(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Load one RGB image as (3, H, W) in [-1, 1]; resize+centre-crop to ``size`` when given."""
    im = open_image(path)
    if size is not None and im.size != (size, size):
        im = resize_center_crop(im, size)
    return pil_to_tensor(im)


def save_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Save a (3, H, W) tensor in [-1, 1] as an 8-bit image; the write is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tensor_to_pil(image).save(tmp, format=_format_for(path))
    os.replace(tmp, path)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF"}.get(ext, ext.upper() or "PNG")


def make_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    nrow: int | None = None,
    padding: int = 2,
    pad_value: float = 1.0,
) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') tensor, ``nrow`` images per row."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    grid = images.new_full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_grid(
    images: torch.Tensor | Iterable[torch.Tensor],
    path: str | os.PathLike,
    nrow: int | None = None,
    padding: int = 2,
) -> None:
    """Write images in [-1, 1] as one grid PNG (atomically)."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    save_image(make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding), path)

"""Image I/O and grids, without torchvision.

Conventions used across egain: image tensors are float (N, 3, H, W) in [-1, 1]; files are 8-bit RGB.
Every loader raises :class:`~egain.errors.InputError` with the offending path instead of a PIL
traceback, so a bad file in a folder of thousands is easy to find.

Images are read as a person sees them (:func:`open_image`, :func:`to_rgb`):

* the EXIF orientation is applied, so a phone photo stored sideways with orientation 6 is upright;
* high-bit-depth images are scaled, not clipped: 16-bit (``I;16*``) by 65535, 32-bit integer
  (``I``) by 65535 when any value exceeds 255 (PNG/TIFF 16-bit data) and by 255 otherwise, float
  (``F``) by 1 when its values lie in [0, 1], else by 255 (or 65535 when they exceed 255);
* transparency (``LA``, ``RGBA``, ``PA``, ``P`` with a transparent colour) is composited on
  **white**, the background most viewers and web pages show; other modes (``1``, ``L``, ``P``,
  ``CMYK``, ``YCbCr``, ...) go through PIL's own conversion to RGB.

Tensors handed to the methods are checked by :func:`check_image_range`: values far outside [-1, 1]
(a 0..255 tensor) are refused with the expected range named, NaN/inf too.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

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
        kind = "image" if is_image_file(folder) else "folder"
        raise InputError(f"{kind} '{folder}' does not exist")
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


#: colour that transparent pixels are composited on (see the module doc)
ALPHA_BACKGROUND = (255, 255, 255)


def open_image(path: str | os.PathLike, mode: str | None = "RGB") -> Image.Image:
    """Open an image fully (not lazily), upright (EXIF orientation applied), in ``mode``.

    ``mode="RGB"`` converts as :func:`to_rgb` does (bit depth scaled, alpha on white); ``None``
    keeps the file's mode; any other mode is PIL's conversion of the upright image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            im = _upright(im)
            if mode == "RGB":
                return to_rgb(im)
            return im.convert(mode) if mode is not None else im.copy()
    except FileNotFoundError:
        raise InputError(f"image '{path}' does not exist") from None
    except IsADirectoryError:
        raise InputError(f"'{path}' is a folder, not an image file") from None
    except PermissionError:
        raise InputError(f"image '{path}' is not readable (permission denied)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"'{path}' is too large to read safely ({exc})") from None
    except InputError as exc:
        raise InputError(f"'{path}': {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"'{path}' is not a readable image ({exc})") from None


def _upright(im: Image.Image) -> Image.Image:
    """The image rotated/flipped as its EXIF orientation says (unchanged when it has none)."""
    try:
        return ImageOps.exif_transpose(im) or im
    except (ValueError, TypeError, OSError, SyntaxError):  # malformed EXIF: keep the pixels as stored
        return im


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB as a person sees ``im``: high bit depths scaled, transparency on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InputError(f"the {mode} image holds NaN or infinite values")
        top = float(arr.max(initial=0.0))
        if mode.startswith("I;16"):
            scale = 65535.0
        elif mode == "F" and arr.min(initial=0.0) >= 0.0 and top <= 1.0:
            scale = 1.0
        else:
            scale = 65535.0 if top > 255.0 else 255.0
        grey = np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in im.info):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InputError(f"images of mode {mode} cannot be converted to RGB ({exc})") from None


def check_image_range(x: torch.Tensor, expected: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Refuse an image tensor that is clearly not on ``expected``; warn when it only might not be.

    A 0..255 tensor taken as [-1, 1] inverts to garbage without any error, so values beyond
    1.5x the range (or NaN/inf) raise :class:`InputError` naming the expected range; a tensor
    entirely within [0, 1] gets a warning (it may be a [0, 1] image); slight overshoot (generator
    outputs) is accepted as it is. Returns ``x``.
    """
    lo, hi = expected
    if x.numel() == 0:
        raise InputError("image tensor is empty")
    if not torch.isfinite(x).all():
        raise InputError(f"image tensor holds NaN or infinite values; expected floats in [{lo:g}, {hi:g}]")
    mn, mx = float(x.min()), float(x.max())
    margin = (hi - lo) * 0.25
    if mn < lo - margin or mx > hi + margin:
        hint = " (looks like 0..255: use x / 127.5 - 1)" if mx > 2.0 and mn >= 0.0 else ""
        raise InputError(
            f"image tensor values span [{mn:.4g}, {mx:.4g}]; expected floats in [{lo:g}, {hi:g}]{hint}"
        )
    if (lo, hi) == (-1.0, 1.0) and mn >= 0.0 and mx > 0.0:
        warnings.warn(
            f"image tensor values span [{mn:.3g}, {mx:.3g}], all non-negative; egain expects [-1, 1] "
            "(if these are [0, 1] images, pass x * 2 - 1)",
            stacklevel=3,
        )
    return x


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
    arr = np.asarray(to_rgb(image), dtype=np.float32)
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
    from egain.runtime.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tensor_to_pil(image).save(tmp, format=_format_for(path))


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

"""Period-2 spectral power: a number for the checkerboard texture of generated images.

A checkerboard (or stripes one pixel wide) is image content at the Nyquist frequency, i.e. with a
period of two pixels along x, y or both. Natural images and our rendered synthfaces have little
there, because their edges are anti-aliased; up-sampling artefacts (transposed convolutions, the
Haar synthesis of SWAGAN's last level) put energy exactly there. Comparing the power on the
Nyquist row and column of the 2-D spectrum between generated and real images therefore measures
the artefact without a reference image per sample (issue 13: "period-2 spectral power of samples
within 1.5x of real images").

Units: the spectrum is orthonormal (Parseval), so ``period2_power`` is the part of each image's
per-pixel variance (on the [-1, 1] scale, averaged over channels) that lies at period 2. A pure
checkerboard of amplitude ``a`` scores ``a ** 2``; a constant image scores 0.
"""

from __future__ import annotations

import torch

from egain.errors import InputError


def _check(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be a (N, C, H, W) tensor, got {shape}")
    h, w = images.shape[-2:]
    if h % 2 or w % 2:
        raise InputError(f"period-2 power needs even image sides, got {h}x{w}")
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1.0
    return images.float()


def period2_mask(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (H, W) mask of the unshifted FFT bins with period 2 along y or x (Nyquist row/column)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[height // 2, :] = True
    mask[:, width // 2] = True
    return mask


def period2_power(images: torch.Tensor, relative: bool = False) -> torch.Tensor:
    """Per-image power at period 2 (N,), on images in [-1, 1] (uint8 0..255 is rescaled).

    ``relative=True`` divides by the image's total non-DC power instead (scale-free, but a blurry
    image with the same artefact then scores higher; the absolute form is what the issue compares).
    """
    x = _check(images)
    n, c, h, w = x.shape
    spec = torch.fft.fft2(x, norm="ortho").abs().pow(2)  # sum over bins == sum of x**2
    mask = period2_mask(h, w, spec.device)
    p2 = spec[..., mask].sum(-1) / (h * w)  # (N, C): per-pixel variance at period 2
    if relative:
        total = spec.sum((-2, -1)) - spec[..., 0, 0]
        p2 = p2 * (h * w) / total.clamp_min(1e-12)
    return p2.mean(1)


def period2_ratio(images: torch.Tensor, reference: torch.Tensor, relative: bool = False) -> float:
    """Mean period-2 power of ``images`` over that of ``reference`` (e.g. generated vs real).

    1.0 means as much checkerboard energy as the reference; the issue-13 target is <= 1.5.
    """
    ref = float(period2_power(reference, relative).mean())
    if ref <= 0:
        raise InputError("reference images have no period-2 power; the ratio is undefined")
    return float(period2_power(images, relative).mean()) / ref

"""Restoration and translation encoders (seeds/004 Alg. 5 and 6): corrupt the input, keep the target.

An encoder trained on (corrupted input, clean target) pairs learns to find the code whose image
is the *clean* picture: ``I_r = G(E_r(I_i))``. The corruptions here are what ``egain train
--corrupt MODE`` applies to each training batch; :func:`evaluate_restoration` scores a model on
corrupted held-out images against their clean ground truth (synthfaces renders it).

Modes (all keep 3 channels so every encoder works unchanged; see ``docs/applications.md``):

* ``colorize``: ITU-R BT.601 luma replicated to 3 channels (E2Style converts with cv2 BGR2GRAY and
  replicates the same way);
* ``inpaint``: E2Style's black triangle with random vertices (x in [35, 220], 35), (x' in [35, 70],
  220), (x' + 150, 220), scaled from 256 px to the image size, set to black (pixel value 0);
* ``superres``: downsample by a random factor from ``(1, 2, 4, 8, 16)`` (pSp's augmentation;
  factors larger than size/4 are dropped) with area averaging, then bilinear back to full size;
  ``superres:4`` (or ``superres:2,4``) fixes the factors;
* ``sketch``: an edge sketch (Sobel magnitude of the luma, normalised per image, dark lines on
  white), the synthfaces stand-in for pSp's pencil-sketch CelebA-HQ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from egain.errors import InputError

CORRUPTIONS = ("colorize", "inpaint", "superres", "sketch")
SUPERRES_FACTORS = (1, 2, 4, 8, 16)
_LUMA = (0.299, 0.587, 0.114)


def parse_corruption(spec: str) -> tuple[str, tuple[int, ...]]:
    """``"superres:2,4"`` -> ("superres", (2, 4)); other modes take no argument."""
    mode, _, arg = spec.partition(":")
    if mode not in CORRUPTIONS:
        raise InputError(f"unknown corruption {mode!r}; choose one of {', '.join(CORRUPTIONS)}")
    factors: tuple[int, ...] = ()
    if arg:
        if mode != "superres":
            raise InputError(f"--corrupt {mode} takes no argument (got {spec!r})")
        try:
            factors = tuple(int(f) for f in arg.split(","))
        except ValueError:
            raise InputError(f"superres factors must be integers, e.g. superres:2,4 (got {arg!r})") from None
        if any(f < 1 or f & (f - 1) for f in factors):
            raise InputError(f"superres factors must be powers of two >= 1 (got {arg!r})")
    return mode, factors


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels (the colourisation input)."""
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def inpaint_masks(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) masks, 1 inside E2Style's random triangle (coordinates from 256 px)."""
    u = torch.rand(n, 2, generator=generator)
    a = 35 + u[:, 0] * (220 - 35)  # top vertex x
    b = 35 + u[:, 1] * (70 - 35)  # bottom-left vertex x; bottom-right is b + 150
    s = size / 256.0
    tri = (
        torch.stack(
            [
                torch.stack([a, torch.full_like(a, 35.0)], -1),
                torch.stack([b, torch.full_like(b, 220.0)], -1),
                torch.stack([b + 150, torch.full_like(b, 220.0)], -1),
            ],
            1,
        )
        * s
    )  # (n, 3, 2) as (x, y)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    p = torch.stack([xx, yy], -1).view(1, size, size, 2)

    def side(p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
        p0, p1 = p0.view(n, 1, 1, 2), p1.view(n, 1, 1, 2)
        return (p1[..., 0] - p0[..., 0]) * (p[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (
            p[..., 0] - p0[..., 0]
        )

    d0, d1, d2 = side(tri[:, 0], tri[:, 1]), side(tri[:, 1], tri[:, 2]), side(tri[:, 2], tri[:, 0])
    inside = ((d0 >= 0) & (d1 >= 0) & (d2 >= 0)) | ((d0 <= 0) & (d1 <= 0) & (d2 <= 0))
    return inside.unsqueeze(1).float()


def inpaint(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The image with a random triangle set to black (-1 in [-1, 1])."""
    m = inpaint_masks(x.shape[0], x.shape[-1], generator).to(x.device, x.dtype)
    return x * (1 - m) - m


def downsample(
    x: torch.Tensor, factors: Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per image: area-average by a random factor of ``factors``, then bilinear back to full size."""
    size = x.shape[-1]
    usable = [f for f in factors if size // f >= 4] or [1]
    pick = torch.randint(len(usable), (x.shape[0],), generator=generator)
    out = x.clone()
    for i, f in enumerate(usable):
        idx = (pick == i).nonzero().flatten().to(x.device)
        if f == 1 or idx.numel() == 0:
            continue
        low = F.avg_pool2d(x[idx], f)
        out[idx] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return out


def sketch(x: torch.Tensor) -> torch.Tensor:
    """An edge sketch: dark Sobel edges of the luma on white, normalised per image, 3 channels."""
    g = grayscale(x)[:, :1]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device, dtype=x.dtype)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    grad = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    mag = grad.pow(2).sum(1, keepdim=True).sqrt()
    mag = mag / mag.flatten(1).quantile(0.98, dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (1 - 2 * mag.clamp(0, 1)).expand(-1, 3, -1, -1).contiguous()


def corrupt(x: torch.Tensor, spec: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The corrupted input of a clean batch ``x`` (N, 3, H, W) in [-1, 1]; ``x`` stays the target.

    Randomness (inpainting triangles, super-resolution factors) comes from ``generator``, or from
    torch's global RNG (which the trainer checkpoints, so resumed runs draw the same corruptions).
    """
    mode, factors = parse_corruption(spec)
    with torch.no_grad():
        if mode == "colorize":
            return grayscale(x)
        if mode == "inpaint":
            return inpaint(x, generator)
        if mode == "superres":
            return downsample(x, factors or SUPERRES_FACTORS, generator)
        return sketch(x)


# ------------------------------------------------------------------------------------------------
# evaluation against the clean ground truth


@dataclass
class RestorationReport:
    """Mean scores of restored images (and of the corrupted input itself) against the clean truth."""

    mode: str
    n: int
    restored: dict[str, float]
    corrupted: dict[str, float]
    per_image: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "n": self.n, "restored": self.restored, "corrupted_input": self.corrupted}


@torch.no_grad()
def evaluate_restoration(
    method: Any,
    clean: torch.Tensor,
    spec: str,
    *,
    seed: int = 0,
    batch: int = 16,
    metrics: Sequence[str] = ("psnr", "ssim", "mae"),
) -> tuple[RestorationReport, dict[str, torch.Tensor]]:
    """Corrupt ``clean`` (seeded), restore with ``method.invert`` and score against ``clean``.

    Returns the report and the image rows ``{"clean", "input", "restored"}`` for a grid. The
    corrupted input is scored too: a restoration model is useful where it beats its own input.
    """
    from egain.metrics import pixel_metrics

    g = torch.Generator().manual_seed(seed)
    clean = clean.float().cpu()
    inputs = corrupt(clean, spec, g)
    outs = []
    for i in range(0, clean.shape[0], batch):
        outs.append(method.invert(inputs[i : i + batch].to(method.device)).reconstruction.float().cpu())
    restored = torch.cat(outs)
    rs = pixel_metrics(clean, restored.clamp(-1, 1), metrics=tuple(metrics))
    cs = pixel_metrics(clean, inputs.clamp(-1, 1), metrics=tuple(metrics))
    report = RestorationReport(
        mode=spec,
        n=int(clean.shape[0]),
        restored={k: float(v.float().mean()) for k, v in rs.items()},
        corrupted={k: float(v.float().mean()) for k, v in cs.items()},
        per_image={k: [float(a) for a in v] for k, v in rs.items()},
    )
    return report, {"clean": clean, "input": inputs, "restored": restored}


__all__ = [
    "CORRUPTIONS",
    "SUPERRES_FACTORS",
    "RestorationReport",
    "corrupt",
    "downsample",
    "evaluate_restoration",
    "grayscale",
    "inpaint",
    "inpaint_masks",
    "parse_corruption",
    "sketch",
]

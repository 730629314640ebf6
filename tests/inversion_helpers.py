"""Tiny generators and image folders shared by the inversion tests (methods, training, import)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from egain.generators import build_generator, save_generator
from egain.utils.images import save_image

#: a 4-stage IR-SE basic encoder small enough for 16-32 px tests
TINY_BASIC = {"type": "e4e", "units": (1, 1, 1, 1), "widths": (8, 8, 16, 16)}


def tiny_generator(arch: str = "swagan", size: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    channels = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8}
    g = build_generator(
        arch, size, style_dim=32, n_mlp=2, channels={r: c for r, c in channels.items() if r <= size}
    )
    g.latent_avg = g.mean_latent(512, seed=0)[0]
    return g.eval()


def save_tiny_generator(path: Path, arch: str = "swagan", size: int = 32) -> Path:
    save_generator(tiny_generator(arch, size), path)
    return path


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields in [-1, 1] (easy enough for a few training steps to matter)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, 4, 4, generator=g)
    return F.interpolate(z, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def image_folder(path: Path, n: int = 16, size: int = 32, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(smooth_images(n, size, seed)):
        save_image(img, path / f"face_{i:03d}.png")
    return path


def tiny_training_files(root: Path) -> dict[str, Path]:
    """A 16 px StyleGAN2 checkpoint (``gen``) and 12 images (``data``) for end-to-end train/invert tests."""
    return {
        "gen": save_tiny_generator(root / "g.pt", "stylegan2", 16),
        "data": image_folder(root / "data", 12, 16),
    }

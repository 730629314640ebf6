"""HFGI's Adaptive Distortion Alignment (ADA, seeds/001 sec. 3.3) and its perspective-warp augmentation.

ADA is a small U-Net of IR units: given cat(Delta, target image) it returns Delta aligned to the
target. For plain inversion the target is y0 itself and ADA should be the identity; for editing
the target is the edited low-fidelity image and ADA moves the details with the edit.

Self-supervision (HFGI): the ground-truth aligned map is the unwarped Delta0 = x - y0; the input is
Delta0 warped by a random perspective transform; the loss is L1(ADA(warped, y0) - Delta0).
:func:`random_perspective` implements that warp batched with ``grid_sample`` (no torchvision), one
random homography per sample (the published code drew one warp per batch).

Key layout (reference sec. 4.4): ``conv_layer1..4``, ``dconv_layer1..3`` with ``bottleneck_IR`` units.
``skip=True`` (our default) adds the input Delta to the network output and zero-initialises the
last units, so an untrained ADA is exactly the identity; published weights are loaded with
``skip=False``, the published forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from egain.nn.irse import BottleneckIR


class ResidualAligner(nn.Module):
    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64), out_channels: int = 3, skip: bool = True):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"ADA has 4 encoder widths, got {tuple(widths)}")
        c1, c2, c3, c4 = widths
        self.skip = skip
        self.conv_layer1 = nn.Sequential(
            nn.Conv2d(6, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1), nn.PReLU(c1)
        )
        self.conv_layer2 = _stage([(c1, c2, 2), (c2, c2, 1), (c2, c2, 1)])
        self.conv_layer3 = _stage([(c2, c3, 2), (c3, c3, 1), (c3, c3, 1)])
        self.conv_layer4 = _stage([(c3, c4, 2), (c4, c4, 1), (c4, c4, 1)])
        self.dconv_layer1 = _stage([(c4 + c3, c4, 1), (c4, c2, 1), (c2, c2, 1)])
        self.dconv_layer2 = _stage([(c2 + c2, c2, 1), (c2, c1, 1), (c1, c1, 1)])
        self.dconv_layer3 = _stage([(c1 + c1, c1, 1), (c1, out_channels, 1), (out_channels, out_channels, 1)])
        if skip:
            self._zero_last_units()

    def _zero_last_units(self) -> None:
        """Make the network output exactly zero (identity with the skip) without freezing anything."""
        for unit in list(self.dconv_layer3)[1:]:
            nn.init.zeros_(unit.res_layer[4].weight)
            if isinstance(unit.shortcut_layer, nn.Sequential):
                nn.init.zeros_(unit.shortcut_layer[1].weight)

    def forward(self, delta: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f1 = self.conv_layer1(torch.cat([delta, target], dim=1))
        f2 = self.conv_layer2(f1)
        f3 = self.conv_layer3(f2)
        f4 = self.conv_layer4(f3)
        h = self.dconv_layer1(torch.cat([_up(f4, f3), f3], dim=1))
        h = self.dconv_layer2(torch.cat([_up(h, f2), f2], dim=1))
        h = self.dconv_layer3(torch.cat([_up(h, f1), f1], dim=1))
        return delta + h if self.skip else h


def _stage(spec: list[tuple[int, int, int]]) -> nn.Sequential:
    return nn.Sequential(*[BottleneckIR(i, o, s, se=False) for i, o, s in spec])


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def perspective_homographies(
    n: int, height: int, width: int, distortion_scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 3, 3) homographies mapping *output* pixel coordinates to *input* ones.

    Corner sampling follows torchvision's ``RandomPerspective``: each corner moves inwards by up to
    ``distortion_scale`` times half the image size.
    """
    dx, dy = int(distortion_scale * (width // 2)), int(distortion_scale * (height // 2))

    def r(low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator).float()

    ends = torch.stack(
        [
            torch.stack([r(0, dx + 1), r(0, dy + 1)], -1),
            torch.stack([r(width - dx - 1, width), r(0, dy + 1)], -1),
            torch.stack([r(width - dx - 1, width), r(height - dy - 1, height)], -1),
            torch.stack([r(0, dx + 1), r(height - dy - 1, height)], -1),
        ],
        dim=1,
    )  # (n, 4, 2)
    starts = torch.tensor(
        [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=torch.float32
    )
    starts = starts.expand(n, 4, 2)
    return _solve_homography(ends, starts)


def _solve_homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched 4-point DLT: H with dst ~ H @ src (homogeneous), h33 = 1."""
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], dim=1).double()  # (n, 8, 8)
    b = torch.cat([u, v], dim=1).double()
    h = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
    return torch.cat([h, torch.ones(n, 1, dtype=h.dtype)], dim=1).view(n, 3, 3).float()


def warp_perspective(images: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """Sample ``images`` at ``H @ (x, y, 1)`` for every output pixel (bilinear, zeros outside)."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=images.device),
        torch.arange(w, dtype=torch.float32, device=images.device),
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, -1, 3)
    mapped = pts @ homographies.to(images.device).transpose(1, 2)  # (n, h*w, 3)
    xy = mapped[..., :2] / mapped[..., 2:].clamp_min(1e-8)
    gx = (xy[..., 0] + 0.5) * (2.0 / w) - 1.0
    gy = (xy[..., 1] + 0.5) * (2.0 / h) - 1.0
    grid = torch.stack([gx, gy], -1).view(n, h, w, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_perspective(
    images: torch.Tensor,
    distortion_scale: float = 0.15,
    p: float = 0.9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Warp each image with probability ``p`` by its own random perspective transform."""
    n, _, h, w = images.shape
    homs = perspective_homographies(n, h, w, distortion_scale, generator)
    apply = torch.rand(n, generator=generator) < p
    homs[~apply] = torch.eye(3)
    return warp_perspective(images, homs)

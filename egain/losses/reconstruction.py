"""Image losses of the inversion objective: L2, perceptual (LPIPS or a face-feature distance), ID.

LPIPS needs its published linear-layer weights (and VGG/AlexNet weights), which egain never
downloads. When they are absent, the perceptual term falls back to a multi-layer feature distance
through the face-embedding network: each feature map is unit-normalised over channels (as LPIPS
does), the squared difference is averaged over positions and summed over layers. Same role
(penalise perceptual, not pixel, differences), different network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def l2_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y, x)


class FeatureDistance(nn.Module):
    """LPIPS-style distance over ``embedder.features`` (the face network's stage taps + embedding)."""

    def __init__(self, embedder: nn.Module, eps: float = 1e-10):
        super().__init__()
        self.embedder = embedder
        self.eps = eps

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        fy = self.embedder.features(y)
        with torch.no_grad():
            fx = self.embedder.features(x)
        total = y.new_zeros(())
        for a, b in zip(fy, fx, strict=True):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + self.eps)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + self.eps)
            d = (a - b).pow(2).sum(1)
            total = total + d.reshape(d.shape[0], -1).mean(1).mean()
        return total


class IdentityLoss(nn.Module):
    """1 - cos(f(y), f(x)), f(x) detached (pSp/e4e/HFGI ``IDLoss``), with any face embedder."""

    def __init__(self, embedder: nn.Module):
        super().__init__()
        self.embedder = embedder

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ey = self.embedder.embed(y)
        with torch.no_grad():
            ex = self.embedder.embed(x)
        return (1 - F.cosine_similarity(ey, ex, dim=1)).mean()

"""Margin-based classification losses for training face embeddings: ArcFace, CosFace and MagFace.

Both treat identities as classes with a learnt, L2-normalised class centre per identity; the logit
of class j is ``s * cos(theta_j)`` and the target class gets an angular margin: ``s * cos(theta_y + m)``.

* **ArcFace** (Deng et al., CVPR 2019): fixed m = 0.5, s = 64. When theta_y + m would pass pi,
  cos(theta + m) stops being monotonic in theta; insightface then uses ``cos(theta) - m sin(m)``
  (the "hard" branch, below ``cos(pi - m)``), or with ``easy_margin`` applies the margin only where
  cos(theta) > 0.
* **CosFace** (Wang et al., CVPR 2018, "large margin cosine loss"): the target logit is
  ``s * (cos(theta_y) - m)``, an additive margin on the cosine rather than the angle (paper's
  s = 64, m = 0.35). Used for egain's second, independent synthfaces scorer: a network that
  scores methods should not share the loss (and weights) of the one their ID loss trains against.
* **MagFace** (Meng et al., CVPR 2021): the margin grows linearly with the feature magnitude
  a = ||f|| (clamped to [l_a, u_a]): m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m, and the
  regulariser g(a) = 1/a + a/u_a^2 (weighted by lambda_g) rewards large magnitudes for easy,
  high-quality samples, so that magnitude becomes a quality score. Defaults are the official
  run script's: l_a 10, u_a 110, l_m 0.45, u_m 0.8, lambda_g 35, s 64, easy margin on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _margin_cos(cos: torch.Tensor, margin: torch.Tensor | float, easy_margin: bool) -> torch.Tensor:
    """cos(theta + m) for the target logits, with the insightface handling where theta + m > pi."""
    margin = torch.as_tensor(margin, dtype=cos.dtype, device=cos.device)
    sin = torch.sqrt((1.0 - cos * cos).clamp_min(1e-12))
    phi = cos * torch.cos(margin) - sin * torch.sin(margin)
    if easy_margin:
        return torch.where(cos > 0, phi, cos)
    threshold = torch.cos(math.pi - margin)
    return torch.where(cos > threshold, phi, cos - torch.sin(math.pi - margin) * margin)


class _MarginHead(nn.Module):
    """Class centres W (num_classes, D); cos(theta) = <f/|f|, W_j/|W_j|>."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a margin loss needs at least 2 identities, got {num_classes}")
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.scale = float(scale)
        self.num_classes = int(num_classes)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)


class ArcFaceLoss(_MarginHead):
    """Additive angular margin softmax loss. ``forward`` returns a dict with ``loss``, ``ce`` and ``acc``."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ):
        super().__init__(embedding_dim, num_classes, scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(margin logits used by the loss, plain scaled cosines for accuracy)."""
        cos = self.cosine(embeddings)
        target = F.one_hot(labels, self.num_classes).bool()
        with_margin = torch.where(target, _margin_cos(cos, self.margin, self.easy_margin), cos)
        return self.scale * with_margin, self.scale * cos

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, plain = self.logits(embeddings, labels)
        ce = F.cross_entropy(logits, labels)
        acc = (plain.argmax(1) == labels).float().mean()
        return {"loss": ce, "ce": ce.detach(), "acc": acc.detach()}


class CosFaceLoss(_MarginHead):
    """Additive cosine margin softmax loss. ``forward`` returns ``loss``, ``ce`` and ``acc``."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35):
        super().__init__(embedding_dim, num_classes, scale)
        self.margin = float(margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(margin logits used by the loss, plain scaled cosines for accuracy)."""
        cos = self.cosine(embeddings)
        target = F.one_hot(labels, self.num_classes).to(cos.dtype)
        return self.scale * (cos - self.margin * target), self.scale * cos

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, plain = self.logits(embeddings, labels)
        ce = F.cross_entropy(logits, labels)
        acc = (plain.argmax(1) == labels).float().mean()
        return {"loss": ce, "ce": ce.detach(), "acc": acc.detach()}


class MagFaceLoss(_MarginHead):
    """MagFace: magnitude-aware margin + magnitude regulariser. ``forward`` -> ``loss``, ``ce``, ``g``, ``acc``, ``mag``."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = True,
    ):
        super().__init__(embedding_dim, num_classes, scale)
        if not (0 < l_a < u_a):
            raise ValueError(f"MagFace needs 0 < l_a < u_a, got l_a={l_a}, u_a={u_a}")
        self.l_a, self.u_a, self.l_m, self.u_m = float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)
        self.easy_margin = bool(easy_margin)

    def margin(self, magnitude: torch.Tensor) -> torch.Tensor:
        """m(a), linear from l_m at a = l_a to u_m at a = u_a."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (magnitude - self.l_a) + self.l_m

    def regulariser(self, magnitude: torch.Tensor) -> torch.Tensor:
        """g(a) = 1/a + a/u_a^2: convex, minimal at a = u_a, so easy samples are pushed to large norms."""
        return 1.0 / magnitude + magnitude / (self.u_a**2)

    def logits(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mag = embeddings.norm(dim=1, keepdim=True).clamp(self.l_a, self.u_a)
        cos = self.cosine(embeddings)
        target = F.one_hot(labels, self.num_classes).bool()
        with_margin = torch.where(target, _margin_cos(cos, self.margin(mag), self.easy_margin), cos)
        return self.scale * with_margin, self.scale * cos, mag.squeeze(1)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, plain, mag = self.logits(embeddings, labels)
        ce = F.cross_entropy(logits, labels)
        g = self.regulariser(mag).mean()
        loss = ce + self.lambda_g * g
        acc = (plain.argmax(1) == labels).float().mean()
        return {
            "loss": loss,
            "ce": ce.detach(),
            "g": g.detach(),
            "acc": acc.detach(),
            "mag": mag.mean().detach(),
        }


def make_loss(name: str, embedding_dim: int, num_classes: int, **kwargs) -> _MarginHead:
    """``"arcface"``, ``"cosface"`` or ``"magface"`` with keyword overrides of the defaults."""
    if name == "arcface":
        return ArcFaceLoss(embedding_dim, num_classes, **kwargs)
    if name == "cosface":
        return CosFaceLoss(embedding_dim, num_classes, **kwargs)
    if name == "magface":
        return MagFaceLoss(embedding_dim, num_classes, **kwargs)
    raise ValueError(f"unknown face loss '{name}'; expected 'arcface', 'cosface' or 'magface'")

"""Image losses of the inversion objective: L2, perceptual (LPIPS or a face-feature distance), ID.

LPIPS needs its published linear-layer weights (and VGG/AlexNet weights), which egain never
downloads. When they are absent, the perceptual term falls back to a multi-layer feature distance
through the face-embedding network: each feature map is unit-normalised over channels (as LPIPS
does), the squared difference is averaged over positions and summed over layers. Same role
(penalise perceptual, not pixel, differences), different network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import EgainError
from egain.metrics.identity import feature_distance_from_features


def l2_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y, x)


class FeatureDistance(nn.Module):
    """LPIPS-style distance over ``embedder.features`` (the face network's stage taps + embedding);
    the formula is :func:`egain.metrics.identity.feature_distance_from_features`, shared with the
    ``feat`` metric."""

    def __init__(self, embedder: nn.Module, eps: float = 1e-10):
        super().__init__()
        self.embedder = embedder
        self.eps = eps

    def per_image(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The distance of each pair, (N,): what per-image optimisation needs (one image's value
        must not depend on the others in its batch, which a batch mean would mix in)."""
        fy = self.embedder.features(y)
        with torch.no_grad():
            fx = self.embedder.features(x)
        return feature_distance_from_features(fy, fx, self.eps)

    def spatial(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-location distance map (N, 1, H, W) at the images' size, the spatial analogue of
        LPIPS (``spatial=True``) for SAM's invertibility targets.

        The whole image goes to the network (the embedder's face crop is dropped, so every pixel
        has a location); at each stage-end map the unit-normalised features' squared difference
        is summed over channels, upsampled bilinearly to the image size, and the maps are summed
        over stages. The global embedding has no location and is left out.
        """
        from dataclasses import replace

        from egain.faces.preprocess import FacePreprocess

        emb = self.embedder
        pre = getattr(emb, "preprocess", None)
        net = getattr(emb, "net", None)
        if not isinstance(pre, FacePreprocess) or not hasattr(net, "forward_features"):
            raise EgainError(f"{type(emb).__name__} has no feature maps for a spatial distance")
        full = replace(pre, reference_size=None, crop=None, passthrough_aligned=False)
        dev = next(net.parameters()).device
        n = y.shape[0]
        taps, _ = net.forward_features(full(torch.cat([y, x]).to(dev, torch.float32)))
        out = y.new_zeros((n, 1, *y.shape[-2:]))
        for f in taps:
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + self.eps)
            d = (f[:n] - f[n:]).pow(2).sum(1, keepdim=True)
            out = out + F.interpolate(d, size=y.shape[-2:], mode="bilinear", align_corners=False).to(out)
        return out

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The batch mean of :meth:`per_image` (the training loss)."""
        return self.per_image(y, x).mean()


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


class ReconstructionLosses(nn.Module):
    """The perceptual and identity terms a method trains with (either may be None when unused)."""

    def __init__(self, perceptual: nn.Module | None = None, identity: nn.Module | None = None):
        super().__init__()
        self.perceptual = perceptual
        self.identity = identity


class _MeanLoss(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.inner(y, x).mean()


def build_reconstruction_losses(
    lambdas: Mapping[str, float], options: Mapping[str, Any], device: torch.device
) -> ReconstructionLosses:
    """ID and perceptual losses from the ``id_net`` / ``perceptual_net`` / ``lpips*`` options.

    Without ``lpips`` the perceptual term is the face-feature distance of ``perceptual_net``
    (default: the ID network), since no LPIPS backbone can be downloaded here; with ``lpips``
    ("alex"/"vgg") it is real LPIPS from the given published weights.
    """
    losses = ReconstructionLosses()
    embedder = None

    def get_embedder(spec: Any, term: str) -> nn.Module:
        from egain.faces import load_embedder

        if spec is None:
            raise EgainError(
                f"--lambda-{term} > 0 needs a face embedder (--id-net SPEC) or pass --lambda-{term} 0"
            )
        try:
            return load_embedder(spec, device=device)
        except EgainError as exc:
            raise type(exc)(f"{exc} (or pass --lambda-{term} 0 to train without this term)") from None

    id_net = options.get("id_net")
    if lambdas.get("id", 0) > 0:
        embedder = get_embedder(id_net, "id")
        losses.identity = IdentityLoss(embedder)
    if lambdas.get("lpips", 0) > 0:
        if options.get("lpips"):
            from egain.metrics.lpips import load_lpips

            net = load_lpips(
                options["lpips"], options.get("lpips_backbone"), options.get("lpips_linear"), device=device
            )
            losses.perceptual = _MeanLoss(net)
        else:
            spec = options.get("perceptual_net") or id_net
            same = embedder is not None and spec == id_net
            losses.perceptual = FeatureDistance(embedder if same else get_embedder(spec, "lpips"))
    return losses


def build_perceptual_distance(options: Mapping[str, Any], device: torch.device) -> nn.Module:
    """A per-image perceptual distance ``(y, x) -> (N,)`` for optimisation-based inversion.

    Real LPIPS when its published files are named (``lpips`` = "vgg"/"alex", ``lpips_backbone``,
    ``lpips_linear``; the network defaults to VGG, what the StyleGAN2 projector uses, once either
    file is given); otherwise the face-feature distance through ``perceptual_net`` (default the
    bundled ``synthfaces-arcface`` embedder), since no LPIPS backbone can be downloaded here.
    The distance never averages over the batch, so each image's loss (and gradient) is its own.
    """
    net = options.get("lpips")
    if net or options.get("lpips_backbone") or options.get("lpips_linear"):
        from egain.metrics.lpips import load_lpips

        return load_lpips(
            net or "vgg", options.get("lpips_backbone"), options.get("lpips_linear"), device=device
        )
    from egain.faces import load_embedder

    spec = options.get("perceptual_net") or "synthfaces-arcface"
    embedder = load_embedder(spec, device=device).eval().requires_grad_(False)
    return _PerImage(FeatureDistance(embedder))


class _PerImage(nn.Module):
    def __init__(self, inner: FeatureDistance):
        super().__init__()
        self.inner = inner

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.inner.per_image(y, x)


class SpatialPerceptual(nn.Module):
    """``(y, x) -> (N, 1, H, W)``: a perceptual distance map (LPIPS ``spatial=True`` or the
    face-feature distance's :meth:`FeatureDistance.spatial`). ``kind`` names which, for manifests."""

    def __init__(self, inner: nn.Module, kind: str):
        super().__init__()
        self.inner = inner
        self.kind = kind

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.inner, FeatureDistance):
            return self.inner.spatial(y, x)
        return self.inner(y, x, spatial=True)


def build_spatial_perceptual(options: Mapping[str, Any], device: torch.device) -> SpatialPerceptual:
    """The spatial version of :func:`build_perceptual_distance`: LPIPS (VGG by default) when its
    files are named, else the face-feature distance of ``perceptual_net``."""
    inner = build_perceptual_distance(options, device)
    if isinstance(inner, _PerImage):
        return SpatialPerceptual(
            inner.inner, f"face-features:{options.get('perceptual_net') or 'synthfaces-arcface'}"
        )
    return SpatialPerceptual(inner, f"lpips-{getattr(inner, 'net_name', 'vgg')}")

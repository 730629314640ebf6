"""Fréchet distance between image sets (FID) over a chosen feature extractor.

FID (Heusel et al. 2017) fits a Gaussian to the features of each set and reports
``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. The published number uses Inception-v3
pool features; those weights cannot be downloaded here, so egain computes the same distance over the
features of a face embedder (by default the bundled synthfaces ArcFace network, spec
``synthfaces-arcface``) and always names the extractor next to the number: an "FID" over another
network is comparable only with itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy import linalg

from egain.errors import EgainError


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise EgainError(f"FID needs at least 2 feature vectors, got an array of shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """The Fréchet distance of two Gaussians; a tiny ridge keeps sqrtm finite for singular covariances."""
    diff = mu_a - mu_b
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        ridge = np.eye(cov_a.shape[0]) * 1e-6
        covmean = linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


@torch.no_grad()
def extract_features(
    batches: Iterable[torch.Tensor], featurize: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> np.ndarray:
    """Run ``featurize`` over image batches in [-1, 1]; (N, D) float64 numpy array."""
    out = [featurize(b.to(device)).double().cpu() for b in batches]
    return torch.cat(out).numpy()


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))

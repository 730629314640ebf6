"""Face identity similarity and MagFace quality through pluggable face-embedder backends.

Both metrics only need an object with ``embed(images) -> (N, D)`` (un-normalised embeddings,
images (N, 3, H, W) in [-1, 1]; the embedder crops/resizes itself), which is the contract of
``egain.faces.load_embedder(spec)``. A backend may be given as

* a spec string for :func:`egain.faces.load_embedder` (``"synthfaces-arcface"``,
  ``"arcface-irse50:/path/model_ir_se50.pth"``, ``"magface-iresnet100:/path"``, ``"dlib"``, ...),
* any object with an ``embed`` method (tests inject small deterministic ones), or
* a plain callable ``images -> embeddings``.

When a backend cannot be built (weights missing, optional package absent) the metric is reported as
*unavailable* with the reason, and its column stays empty -- an evaluation of thousands of images
should not die because one optional measure cannot run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from egain.errors import EgainError


@runtime_checkable
class Embedder(Protocol):
    """What the ID and MagFace metrics need from a face-embedding backend."""

    def embed(self, images: torch.Tensor) -> torch.Tensor: ...


class _CallableEmbedder:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str) -> None:
        self.fn, self.name = fn, name

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


@dataclass
class Backend:
    """A resolved backend: ``embedder`` is None when unavailable, and ``reason`` says why."""

    spec: str
    embedder: Embedder | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.embedder is not None


def resolve_embedder(spec: Any, device: str | torch.device = "cpu") -> Backend:
    """Turn a backend spec / object / callable into a :class:`Backend`, never raising for a missing one."""
    if spec is None or (isinstance(spec, str) and spec.lower() in ("", "none", "off")):
        return Backend("none", None, "no face-embedder backend given")
    if hasattr(spec, "embed"):
        name = getattr(spec, "name", None) or type(spec).__name__
        if isinstance(spec, torch.nn.Module):
            spec = spec.to(device).eval()
        return Backend(str(name), spec)
    if callable(spec):
        return Backend(getattr(spec, "__name__", "callable"), _CallableEmbedder(spec, "callable"))
    text = str(spec)
    try:
        from egain.faces import load_embedder
    except ImportError as exc:
        return Backend(text, None, f"egain.faces is not available in this installation ({exc})")
    try:
        emb = load_embedder(text, device=device)
    except EgainError as exc:
        return Backend(text, None, str(exc))
    except (ImportError, OSError) as exc:  # an optional backend package (dlib) or its model files
        return Backend(
            text, None, f"face embedder '{text}' could not be loaded ({type(exc).__name__}: {exc})"
        )
    if hasattr(emb, "eval"):
        emb.eval()
    return Backend(text, emb)


@torch.no_grad()
def embed(embedder: Embedder, images: torch.Tensor) -> torch.Tensor:
    """Embeddings as float32 (N, D); checks the backend kept the batch size."""
    out = embedder.embed(images)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EgainError(f"face embedder returned {shape}, expected ({images.shape[0]}, D) embeddings")
    return out.float()


def identity_similarity_from_embeddings(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of paired embeddings (N,), in [-1, 1]; 1 = same direction."""
    return F.cosine_similarity(a.float(), b.float(), dim=1, eps=1e-12)


def magface_quality_from_embeddings(e: torch.Tensor) -> torch.Tensor:
    """MagFace quality: the L2 norm (magnitude) of the un-normalised embedding (Meng et al. 2021)."""
    return e.float().norm(dim=1)


def feature_distance_from_features(
    fy: Sequence[torch.Tensor], fx: Sequence[torch.Tensor], eps: float = 1e-10
) -> torch.Tensor:
    """The face-feature distance per image pair (N,), from the two images' feature lists.

    LPIPS's recipe on a face network's layers: each level unit-normalised over channels, the
    squared difference summed over channels and averaged over positions, the levels summed
    (no learned weights). One definition for the training loss
    (:class:`egain.losses.reconstruction.FeatureDistance`) and the ``feat`` metric, so a method's
    perceptual term and the score it is judged by measure the same thing, through different nets.
    """
    if len(fy) != len(fx):
        raise ValueError(f"feature lists differ in length: {len(fy)} vs {len(fx)}")
    total = fy[0].new_zeros(fy[0].shape[0])
    for a, b in zip(fy, fx, strict=True):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + eps)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + eps)
        d = (a - b).pow(2).sum(1)
        total = total + d.reshape(d.shape[0], -1).mean(1)
    return total


def has_features(embedder: Any) -> bool:
    """Whether a backend gives multi-layer features (``features(images) -> list``), which the
    ``feat`` metric needs; an embed-only backend (dlib, a plain callable) has none."""
    return callable(getattr(embedder, "features", None))


@torch.no_grad()
def feature_distance(embedder: Any, source: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Face-feature distance per image pair (N,), float32; 0 = identical features, lower is better.

    The perceptual measure that works offline: where no LPIPS backbone can be had, the scorer's
    own layers stand in for VGG's (``embedder.features``, :func:`feature_distance_from_features`).
    """
    fy = [f.float() for f in embedder.features(reconstruction)]
    fx = [f.float() for f in embedder.features(source)]
    return feature_distance_from_features(fy, fx)


def identity_similarity(
    embedder: Embedder, source: torch.Tensor, reconstruction: torch.Tensor
) -> torch.Tensor:
    """Face-ID similarity per image pair: cosine of the two embeddings (seeds/000, "Face ID")."""
    return identity_similarity_from_embeddings(embed(embedder, source), embed(embedder, reconstruction))


def magface_quality(embedder: Embedder, images: torch.Tensor) -> torch.Tensor:
    """MagFace quality per image: the magnitude of its embedding under a MagFace-trained network."""
    return magface_quality_from_embeddings(embed(embedder, images))

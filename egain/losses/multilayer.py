"""E2Style's multi-layer feature losses (seeds/004 Eqs. 4-5): identity and face parsing.

Both are ``sum_i (1 - cos(R_i(x), R_i(y)))`` over the feature levels of a frozen network, each
level flattened per image, averaged over the batch, the target's features detached (the published
``CosineEmbeddingLoss(target=1)``; no per-level weights). Only the network differs:

* identity: a face embedder's :meth:`~egain.faces.FaceEmbedder.features` (stage-end maps, then the
  embedding, not normalised: 5 levels for a 4-stage embedder, as ArcFace IR-SE50 in the paper);
* parsing: any module with ``features(images) -> list[Tensor]`` (the published net is a UNet whose
  4 pooled encoder maps and centre block give the 5 levels, as do egain's own parsers of
  :mod:`egain.faces.parsing`). :func:`load_parsing_net` reads one.

Why several levels: the last embedding alone ignores local detail (glasses, teeth); the early
levels of the same network still carry it (paper, sec. III-B).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import CheckpointError


@runtime_checkable
class FeatureNetwork(Protocol):
    """What the multi-layer losses need: a list of feature tensors per batch, differentiable."""

    def features(self, images: torch.Tensor) -> list[torch.Tensor]: ...


def multilayer_cosine_loss(
    fy: Sequence[torch.Tensor], fx: Sequence[torch.Tensor], levels: int | None = None
) -> torch.Tensor:
    """``sum_i mean_batch (1 - cos(flat(fy_i), flat(fx_i)))``; ``fx`` is taken as the (fixed) target."""
    if len(fy) != len(fx):
        raise ValueError(f"feature lists differ in length: {len(fy)} vs {len(fx)}")
    pairs = list(zip(fy, fx, strict=True))
    if levels is not None:
        pairs = pairs[-levels:] if levels < len(pairs) else pairs
    total = fy[0].new_zeros(())
    for a, b in pairs:
        cos = F.cosine_similarity(a.flatten(1), b.detach().flatten(1), dim=1, eps=1e-8)
        total = total + (1 - cos).mean()
    return total


class MultiLayerFeatureLoss(nn.Module):
    """Sum over the network's feature levels of 1 - cos (E2Style's multi-ID and multi-parsing loss).

    ``levels``: how many levels to use, counted from the deepest (None: all the network gives). The
    network is frozen and kept in eval mode; gradients flow to ``y`` only.
    """

    def __init__(self, network: nn.Module, levels: int | None = None):
        super().__init__()
        if not callable(getattr(network, "features", None)):
            raise TypeError(f"{type(network).__name__} has no features(images) method")
        self.network = network
        self.levels = levels
        network.requires_grad_(False)
        network.eval()

    def train(self, mode: bool = True) -> MultiLayerFeatureLoss:
        super().train(mode)
        self.network.eval()  # frozen BN statistics whatever the caller does
        return self

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        fy = list(self.network.features(y))
        with torch.no_grad():
            fx = list(self.network.features(x))
        return multilayer_cosine_loss(fy, fx, self.levels)


class MultiLayerIDLoss(MultiLayerFeatureLoss):
    """E2Style's multi-layer identity loss over a face embedder's 5 levels (Eq. 4)."""


class MultiLayerParsingLoss(MultiLayerFeatureLoss):
    """E2Style's multi-layer face-parsing loss over a parsing network's 5 levels (Eq. 5)."""


class _ScriptedFeatures(nn.Module):
    """Wraps a TorchScript module whose exported ``features`` method gives the feature levels."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.net = scripted

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net.features(images))


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` / ``code/``), not a
    ``torch.save`` file: the two share the zip container, only TorchScript carries code."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_parsing_net(spec: str | os.PathLike | nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A face-parsing feature network from ``spec``.

    Accepted: a module object with ``features(images) -> list[Tensor]`` (Python API); a face-parser
    spec of :func:`egain.faces.parsing.load_parser` -- ``synthfaces-parsing`` (the bundled UNet),
    ``zoo:NAME``, ``e2style-unet:PATH`` (E2Style's published ``parsing.pth``), ``bisenet:PATH``
    (face-parsing.PyTorch's ``79999_iter.pth``), a ``parser.pt`` from ``egain faces parsing train``
    or its run folder; or a TorchScript file (``torch.jit.save``) whose module exports ``features``
    (``@torch.jit.export``), for networks egain has no code for.
    """
    from egain.faces.parsing import is_parser_spec, load_parser

    if isinstance(spec, nn.Module):
        if not callable(getattr(spec, "features", None)):
            raise CheckpointError(f"parsing network {type(spec).__name__} has no features(images) method")
        return spec.to(device)
    path = os.fspath(spec)
    if is_parser_spec(path):
        return load_parser(path, device=device)
    if not os.path.exists(path):
        raise CheckpointError(
            f"parsing network '{path}' not found (expected synthfaces-parsing, e2style-unet:PATH, bisenet:PATH, "
            "a parser.pt from 'egain faces parsing train', or a TorchScript file whose module exports "
            "features(images) -> list[Tensor]; or train without it: --lambda-parse 0)"
        )
    if os.path.isdir(path) or not _is_torchscript(path):
        return load_parser(path, device=device)
    from egain.runtime.checkpoint import TRUST_ENV, trusted

    if not trusted():
        # a TorchScript archive carries code that runs when the module is called
        raise CheckpointError(
            f"'{path}' is a TorchScript file: it carries code, so egain loads it only when you trust it "
            f"(egain --trust-checkpoints ... or {TRUST_ENV}=1); an egain parser.pt needs no trust"
        )
    try:
        scripted = torch.jit.load(path, map_location=device)
    except Exception as exc:  # a corrupt archive
        raise CheckpointError(
            f"'{path}' is not a TorchScript parsing network ({type(exc).__name__}); save one with "
            "torch.jit.save(torch.jit.script(net), PATH) where net has an exported features() method"
        ) from None
    if not hasattr(scripted, "features"):
        raise CheckpointError(f"TorchScript module '{path}' exports no features() method (@torch.jit.export)")
    return _ScriptedFeatures(scripted).to(device)

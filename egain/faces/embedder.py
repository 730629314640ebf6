"""The face-embedding backend used by metrics (ID similarity, MagFace quality) and losses (ID loss).

``load_embedder(spec)`` accepts:

==================================  ==================================================================
``"synthfaces-arcface"``            bundled synthfaces network trained with the ArcFace loss
``"synthfaces-magface"``            bundled synthfaces network trained with the MagFace loss
``"synthfaces-cosface"``            bundled synthfaces scorer trained with the CosFace loss (issue 13)
``"arcface-irse50:PATH"``           published ArcFace IR-SE50 ``model_ir_se50.pth`` (pSp/e4e ID loss)
``"magface-iresnet100:PATH"``       published MagFace ``magface_epoch_00025.pth``
``"dlib"``                          dlib's face-recognition ResNet (optional extra ``egain[dlib]``)
``PATH``                            an ``embedder.pt`` written by ``egain faces train``
==================================  ==================================================================

Every backend is a :class:`FaceEmbedder`: it takes images in [-1, 1] of any size, does its own
crop/resize/colour convention, runs its network frozen and in eval mode, and stays differentiable
with respect to the images (so it can serve as an ID loss).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import CheckpointError, missing_file_message
from egain.faces.nets import FaceNetConfig, IResNet, IRSEFaceNet, arcface_irse50, iresnet
from egain.faces.preprocess import FacePreprocess, arcface_preprocess, magface_preprocess
from egain.runtime.checkpoint import load_checkpoint, load_state_checked

EMBEDDER_FORMAT = "face-embedder"

ARCFACE_IRSE50_URL = (
    "https://drive.google.com/file/d/1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn (pSp README, 'IR-SE50 Model')"
)
MAGFACE_IR100_URL = "https://drive.google.com/file/d/1Bd87admxOZvbIOAyTkGEntsEz3fyMt7H (IrvingMeng/MagFace README, iResNet100 MS1MV2)"

BUNDLED = {
    "synthfaces-arcface": "faces-arcface-64",
    "synthfaces-magface": "faces-magface-64",
    # issue 13: the independent scorer (another loss, width and seed than the ID-loss network)
    "synthfaces-cosface": "faces-cosface-64",
}
TRAIN_HINT = {
    "synthfaces-arcface": "egain faces train --loss arcface --data synthfaces:... --out runs/faces-arcface",
    "synthfaces-magface": "egain faces train --loss magface --data synthfaces:... --out runs/faces-magface",
    "synthfaces-cosface": "egain faces train --loss cosface --data synthfaces:... --out runs/faces-cosface",
}


class FaceEmbedder(nn.Module):
    """A frozen face-embedding network behind its input convention.

    ``embed`` returns *un-normalised* embeddings: their direction is the identity, their norm is
    the MagFace quality for MagFace-trained networks. Parameters never require grad, but gradients
    flow to the input images.
    """

    def __init__(self, net: nn.Module, preprocess: FacePreprocess, name: str, loss: str | None = None):
        super().__init__()
        self.net = net
        self.preprocess = preprocess
        self.name = name
        self.loss = loss
        self.meta: dict = {}  # training provenance and scores of our own checkpoints
        self.net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FaceEmbedder:
        """Always eval: a parent module's ``.train()`` must not switch BN/dropout of a metric network on."""
        return super().train(False)

    @property
    def embedding_dim(self) -> int:
        return int(self.net.embedding_dim)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return self.preprocess(images.to(self.device, torch.float32))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1], any size -> (N, D) un-normalised embeddings."""
        return self.net(self._input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Stage-end feature maps plus the final embedding (last entry), for multi-layer ID losses."""
        taps, emb = self.net.forward_features(self._input(images))
        return [*taps, emb]

    def quality(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) embedding magnitude: MagFace's quality score (meaningful for MagFace-trained networks)."""
        return self.embed(images).norm(dim=1)

    @staticmethod
    def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-row cosine similarity of two (N, D) embedding batches."""
        return (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,) cosine similarity per pair of images (or of embeddings, when given 2-D tensors)."""
        ea = a if a.dim() == 2 else self.embed(a)
        eb = b if b.dim() == 2 else self.embed(b)
        return self.cosine(ea, eb)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, loss={self.loss!r}, dim={self.embedding_dim}"


# --------------------------------------------------------------------------------------------------
# our own checkpoints


def embedder_checkpoint(
    net: IRSEFaceNet,
    config: FaceNetConfig,
    preprocess: FacePreprocess,
    loss: str,
    scores: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """The ``embedder.pt`` dict written by the trainer (and read by :func:`load_embedder`)."""
    return {
        "egain_format": EMBEDDER_FORMAT,
        "config": config.to_dict(),
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "loss": loss,
        "scores": dict(scores or {}),
        **(extra or {}),
    }


def load_egain_embedder(path: str | os.PathLike, device: torch.device | str = "cpu", name: str | None = None):
    """Load an ``embedder.pt`` written by ``egain faces train``."""
    ckpt = load_checkpoint(path, what="face-embedder checkpoint")
    fmt = ckpt.get("egain_format")
    if fmt != EMBEDDER_FORMAT:
        hint = ""
        if "state_dict" in ckpt and fmt is None:
            hint = " (a published checkpoint? use 'arcface-irse50:PATH' or 'magface-iresnet100:PATH')"
        raise CheckpointError(
            f"'{path}' is not a face-embedder checkpoint (egain_format={fmt!r}, expected '{EMBEDDER_FORMAT}'){hint}"
        )
    for key in ("config", "state_dict", "preprocess"):
        if key not in ckpt:
            raise CheckpointError(f"face-embedder checkpoint '{path}' lacks '{key}'")
    try:
        config = FaceNetConfig.from_dict(ckpt["config"])
        net = IRSEFaceNet.from_config(config)
        load_state_checked(net, ckpt["state_dict"], f"face-embedder checkpoint '{path}'")
        preprocess = FacePreprocess.from_dict(ckpt["preprocess"])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"face-embedder checkpoint '{path}' does not match its config: {exc}") from None
    embedder = FaceEmbedder(net, preprocess, name=name or str(path), loss=ckpt.get("loss"))
    embedder.meta = {"scores": ckpt.get("scores", {}), "train": ckpt.get("train", {})}
    return embedder.to(device)


# --------------------------------------------------------------------------------------------------
# published checkpoints


def _require_file(path: str | os.PathLike, what: str, url: str, flag: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(missing_file_message(str(p), what, url, flag))
    return p


def _strict_load(net: nn.Module, state: dict, path: Path, what: str) -> None:
    own = net.state_dict()
    # Files saved by PyTorch < 0.4.1 (TreB1eN's IR-SE50 among them) have no BN step counters; they
    # carry no information, so take ours rather than rejecting the file.
    state = dict(state)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"'{path}' is not a {what} state dict: {len(missing)} keys missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        k, got, want = bad[0]
        raise CheckpointError(
            f"'{path}': {len(bad)} shape mismatches for a {what}, e.g. '{k}' is {got}, expected {want}"
        )
    net.load_state_dict(state, strict=True)


def load_arcface_irse50(path: str | os.PathLike, device: torch.device | str = "cpu") -> FaceEmbedder:
    """ArcFace IR-SE50 from ``model_ir_se50.pth`` (a raw state dict, loaded strictly)."""
    p = _require_file(
        path, "ArcFace IR-SE50 weights 'model_ir_se50.pth'", ARCFACE_IRSE50_URL, "'arcface-irse50:PATH'"
    )
    state = load_checkpoint(p, what="ArcFace IR-SE50 weights")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = arcface_irse50()
    _strict_load(net, state, p, "ArcFace IR-SE50 (397 entries)")
    return FaceEmbedder(net, arcface_preprocess(), name=f"arcface-irse50:{p}", loss="arcface").to(device)


def magface_backbone_state(checkpoint: dict) -> dict:
    """The iResNet weights of a MagFace release: ``state_dict`` keys ``features.module.*`` (DDP) or
    ``module.features.*`` / ``features.*``; the classifier (``fc.*`` outside ``features``) is dropped."""
    state = checkpoint.get("state_dict", checkpoint)
    if "conv1.weight" in state:  # already a bare backbone state dict
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    out = {}
    for key, value in state.items():
        for prefix in ("features.module.", "module.features.", "features."):
            if key.startswith(prefix):
                out[key[len(prefix) :]] = value
                break
    return out


def load_magface_iresnet(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    depth: int = 100,
    layers: Sequence[int] | None = None,
    widths: Sequence[int] = (64, 128, 256, 512),
) -> FaceEmbedder:
    """MagFace iResNet (default 100 layers) from ``magface_epoch_00025.pth``.

    ``layers``/``widths`` override the depth table for other iResNet releases (and small test nets).
    """
    p = _require_file(
        path,
        "MagFace iResNet100 weights 'magface_epoch_00025.pth'",
        MAGFACE_IR100_URL,
        "'magface-iresnet100:PATH'",
    )
    ckpt = load_checkpoint(p, what="MagFace checkpoint")
    state = magface_backbone_state(ckpt)
    if not state:
        raise CheckpointError(
            f"'{p}' holds no MagFace backbone keys (expected 'state_dict' with 'features.module.*'; "
            f"has {list(ckpt)[:6]})"
        )
    net = IResNet(layers, widths) if layers is not None else iresnet(depth, widths=widths)
    _strict_load(net, state, p, f"MagFace iResNet{depth if layers is None else tuple(layers)}")
    return FaceEmbedder(net, magface_preprocess(), name=f"magface-iresnet{depth}:{p}", loss="magface").to(
        device
    )


# --------------------------------------------------------------------------------------------------
# the spec dispatcher

"""``load_embedder(spec)``: one entry point for every face embedder egain knows.

It dispatches on the spec (bundled names, published ArcFace/MagFace files, dlib, our
``embedder.pt``) to the format loaders of :mod:`egain.faces.embedder` and
:mod:`egain.faces.dlib_backend`; living apart from both keeps the import graph acyclic.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from egain.errors import CheckpointError, EgainError
from egain.faces.embedder import (
    BUNDLED,
    TRAIN_HINT,
    FaceEmbedder,
    load_arcface_irse50,
    load_egain_embedder,
    load_magface_iresnet,
)
from egain.utils.device import resolve_device


def load_embedder(
    spec: str | os.PathLike | FaceEmbedder, device: str | torch.device | None = None
) -> FaceEmbedder:
    """Build the face embedder named by ``spec`` (see the module docstring) on ``device``.

    ``device`` None or "auto" picks CUDA when available, else CPU.
    """

    dev = resolve_device(device)
    if isinstance(spec, FaceEmbedder):
        return spec.to(dev)
    spec = str(spec)
    if spec in BUNDLED:
        from egain import zoo

        try:
            path = zoo.bundled_path(BUNDLED[spec])
        except CheckpointError:
            raise CheckpointError(
                f"the bundled face embedder '{spec}' ({BUNDLED[spec]}.pt) is not in this installation; "
                f"train it with '{TRAIN_HINT[spec]}' and pass RUN_DIR/embedder.pt as the embedder spec"
            ) from None
        return load_egain_embedder(path, dev, name=spec)
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("arcface-irse50", "arcface"):
        return load_arcface_irse50(rest, dev)
    if sep and kind.startswith("magface-iresnet"):
        depth = kind.removeprefix("magface-iresnet") or "100"
        if not depth.isdigit():
            raise EgainError(f"face embedder spec '{spec}': expected 'magface-iresnet100:PATH'")
        return load_magface_iresnet(rest, dev, depth=int(depth))
    if spec == "dlib":
        from egain.faces.dlib_backend import load_dlib_embedder  # optional dependency: imported on use

        return load_dlib_embedder(dev)
    path = Path(spec).expanduser()
    if path.suffix in (".pt", ".pth") or path.exists():
        if path.is_dir() and (path / "embedder.pt").exists():
            path = path / "embedder.pt"
        return load_egain_embedder(path, dev)
    raise EgainError(
        f"unknown face embedder '{spec}'; expected one of {', '.join(BUNDLED)}, 'arcface-irse50:PATH', "
        "'magface-iresnet100:PATH', 'dlib', or the path of an embedder.pt from 'egain faces train'"
    )

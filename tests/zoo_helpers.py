"""A tiny stand-in zoo for the demo / compare tests: untrained 16-64 px models under the bundled names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from inversion_helpers import TINY_BASIC, tiny_generator

import egain.methods as methods
from egain.faces.embedder import embedder_checkpoint
from egain.faces.nets import FaceNetConfig, IRSEFaceNet
from egain.faces.preprocess import FacePreprocess
from egain.workflows.bundled import BUNDLED_METHODS, EMBEDDERS


def make_tiny_zoo(folder: Path, labels: tuple[str, ...], size: int = 32, embedders: bool = True) -> Path:
    """Save untrained tiny models as the zoo weights of ``labels`` (plus the face embedders)."""
    folder.mkdir(parents=True, exist_ok=True)
    gens = {}
    for label in labels:
        spec = BUNDLED_METHODS[label]
        arch = "swagan" if "swagan" in spec.generator else "stylegan2"
        if arch not in gens:
            gens[arch] = tiny_generator(arch, size)
        torch.manual_seed(len(label))
        model = methods.create(spec.method, generator=gens[arch], basic_encoder=TINY_BASIC)
        model.save(folder / f"{spec.weights}.pt")
    if embedders:
        cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=24)
        for metric, (_, zoo_name) in EMBEDDERS.items():
            torch.manual_seed(1 if metric == "id" else 2)
            net = IRSEFaceNet.from_config(cfg).eval()
            ckpt = embedder_checkpoint(
                net, cfg, FacePreprocess(input_size=16), "arcface" if metric == "id" else "magface"
            )
            torch.save(ckpt, folder / f"{zoo_name}.pt")
    return folder


def use_zoo(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    from egain import zoo

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", folder)

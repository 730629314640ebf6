"""Face-embedding networks and the backend interface used by ID metrics, MagFace quality and ID losses.

Entry point: :func:`load_embedder` (``"synthfaces-arcface"``, ``"synthfaces-magface"``,
``"arcface-irse50:PATH"``, ``"magface-iresnet100:PATH"``, ``"dlib"`` or an ``embedder.pt`` path)
returning a :class:`FaceEmbedder` with ``embed``, ``similarity``, ``quality`` and ``features``.
The attribute classifier (scorer for editing) is :mod:`egain.faces.attributes` (``load_classifier``),
face parsing :mod:`egain.faces.parsing` (``load_parser``).
"""

from egain.faces.attributes import ATTRIBUTE_NAMES, AttributeClassifier, load_classifier
from egain.faces.embedder import (
    EMBEDDER_FORMAT,
    FaceEmbedder,
    embedder_checkpoint,
    load_arcface_irse50,
    load_egain_embedder,
    load_magface_iresnet,
)
from egain.faces.loading import load_embedder
from egain.faces.nets import FaceNetConfig, IResNet, IRSEFaceNet, arcface_irse50, iresnet
from egain.faces.parsing import FaceParser, ParsingNet, load_parser
from egain.faces.preprocess import FacePreprocess, arcface_preprocess, magface_preprocess

__all__ = [
    "ATTRIBUTE_NAMES",
    "AttributeClassifier",
    "EMBEDDER_FORMAT",
    "FaceEmbedder",
    "FaceNetConfig",
    "FaceParser",
    "FacePreprocess",
    "IRSEFaceNet",
    "IResNet",
    "ParsingNet",
    "arcface_irse50",
    "arcface_preprocess",
    "embedder_checkpoint",
    "iresnet",
    "load_arcface_irse50",
    "load_classifier",
    "load_egain_embedder",
    "load_embedder",
    "load_magface_iresnet",
    "load_parser",
    "magface_preprocess",
]

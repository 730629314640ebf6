"""Inversion methods behind one interface: ``create(name, generator=..., checkpoint=None, **config)``.

Every method answers ``invert(images) -> Inversion``, ``edit(inversion, direction, strength)`` and
``save(path)``. The four methods of this release (``e4e``, ``hfgi``, ``egain``, ``egain-external``)
are configurations of the EGAIN composition in :mod:`egain.methods.composition`.
"""

from egain.methods.base import Inversion, InversionMethod, prepare_images
from egain.methods.registry import (
    METHODS,
    MethodSpec,
    available,
    create,
    describe,
    load_method,
    method_config,
    register,
)

__all__ = [
    "METHODS",
    "Inversion",
    "InversionMethod",
    "MethodSpec",
    "available",
    "create",
    "describe",
    "load_method",
    "method_config",
    "prepare_images",
    "register",
]

"""Inversion methods behind one interface: ``create(name, generator=..., checkpoint=None, **config)``.

Every method answers ``invert(images) -> Inversion``, ``edit(inversion, direction, strength)`` and
``save(path)``. One module per method, each registered by name with :func:`register_method`:
``e4e``, ``hfgi``, ``egain``, ``egain-external`` (the EGAIN family, sharing the composition in
:mod:`egain.methods.composition`). Methods of other packages come in through the entry-point group
``egain.methods``; see docs/dev/adding_a_method.md.
"""

from egain.methods.base import Inversion, InversionMethod, TrainingContext, TrainOption, prepare_images
from egain.methods.registry import (
    METHODS,
    available,
    create,
    describe,
    load_method,
    method_class,
    register_method,
    unregister_method,
)

# The built-in methods register themselves on import.
from egain.methods import (  # noqa: E402, F401  isort: skip
    dse,
    e2style,
    e4e,
    egain,
    egain_external,
    hfgi,
    hybrid,
    optim,
    projector,
    psp,
    pti,
    restyle,
    sam,
    sam_invertibility,
)

__all__ = [
    "METHODS",
    "Inversion",
    "InversionMethod",
    "TrainOption",
    "TrainingContext",
    "available",
    "create",
    "describe",
    "load_method",
    "method_class",
    "prepare_images",
    "register_method",
    "unregister_method",
]

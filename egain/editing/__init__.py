"""Latent editing: directions (learnt and published), their strength semantics, edit evaluation.

``egain.editing.directions`` and ``egain.editing.published`` sit low in the import graph (methods
use them); ``egain.editing.learn`` needs generators and the attribute classifier, and
``egain.editing.evaluate`` needs methods, metrics and synthfaces: import those explicitly.
"""

from egain.editing.directions import (
    Direction,
    EditSet,
    apply_edit,
    latent_offset,
    parse_direction_specs,
    save_direction,
)
from egain.editing.published import GANSPACE_FFHQ_EDITS, ganspace_edit, load_direction, load_direction_file

__all__ = [
    "GANSPACE_FFHQ_EDITS",
    "Direction",
    "EditSet",
    "apply_edit",
    "ganspace_edit",
    "latent_offset",
    "load_direction",
    "load_direction_file",
    "parse_direction_specs",
    "save_direction",
]

"""synthfaces: the project's procedural face world (see docs/synthfaces.md).

* :func:`sample_identity` / :func:`sample_variation` -- deterministic parameters from
  (seed, identity) and (seed, identity, variation);
* :func:`render` -- paint them at any power-of-two size (uint8 RGB) with rare-detail boxes;
* :class:`SynthFacesDataset` -- on-the-fly map-style torch Dataset (same pixels as the files);
* :func:`write_synthfaces` -- the folder format written by ``egain data synthfaces``.

The torch-based names are imported lazily, so rendering and writing processes never load torch.
"""

from __future__ import annotations

from .params import (
    DEFAULT_RARE_RATES,
    RARE_KINDS,
    Identity,
    Variation,
    sample_identity,
    sample_variation,
    split_of,
)
from .recipes import EVAL_COUNT, HARD_COUNT, eval_identities, file_name, hard_identities, render_item
from .render import RenderResult, render
from .writer import contact_sheet, write_synthfaces

_LAZY = {"SynthFacesDataset", "collate_with_labels", "dataset_from_spec"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_RARE_RATES",
    "EVAL_COUNT",
    "HARD_COUNT",
    "RARE_KINDS",
    "Identity",
    "RenderResult",
    "SynthFacesDataset",
    "Variation",
    "collate_with_labels",
    "contact_sheet",
    "dataset_from_spec",
    "eval_identities",
    "file_name",
    "hard_identities",
    "render",
    "render_item",
    "sample_identity",
    "sample_variation",
    "split_of",
    "write_synthfaces",
]

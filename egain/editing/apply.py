"""Running edits with any method: one call per (inversion, direction, strength), and the grid.

``method.edit(inversion, direction, strength)`` is the one call every method answers; methods
with a re-alignment step take ``ada=`` as well (the EGAIN family). :func:`method_edit` passes
``ada`` only to methods that accept it, so callers need not know which do.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from egain.editing.directions import Direction, DirectionLike, EditSet, parse_direction_specs
from egain.editing.published import load_direction
from egain.errors import InputError


def accepts_ada(method: Any) -> bool:
    """Whether ``method.edit`` takes an ``ada`` keyword (a re-alignment step it can switch off)."""
    try:
        return "ada" in inspect.signature(method.edit).parameters
    except (TypeError, ValueError):
        return False


def has_ada(method: Any) -> bool:
    """Whether switching ``ada`` off changes anything: the method has an ADA module (HFGI)."""
    return accepts_ada(method) and getattr(method, "aligner", None) is not None


def method_edit(
    method: Any, inversion: Any, direction: DirectionLike, strength: float, ada: bool = True
) -> torch.Tensor:
    """``method.edit(...)``, with ``ada`` passed where the method takes it."""
    if accepts_ada(method):
        return method.edit(inversion, direction, strength, ada=ada)
    return method.edit(inversion, direction, strength)


def resolve_directions(specs: Sequence[str], generator: torch.nn.Module) -> DirectionLike:
    """``["smile", "age*0.5"]`` (names of the generator's set or files) -> one direction or an EditSet."""
    items: list[tuple[Direction, float]] = [
        (load_direction(n, generator), w) for n, w in parse_direction_specs(specs)
    ]
    for d, _ in items:
        if d.style_dim != generator.style_dim:
            raise InputError(
                f"direction '{d.name}' is {d.style_dim}-dimensional; this generator's W is {generator.style_dim}-dimensional"
            )
    if len(items) == 1 and items[0][1] == 1.0:
        return items[0][0]
    return EditSet(items)


def parse_strengths(text: str | Sequence[float]) -> list[float]:
    """``"-3,0,3"`` -> [-3.0, 0.0, 3.0]."""
    if not isinstance(text, str):
        return [float(v) for v in text]
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--strength must be comma-separated numbers, got '{text}'") from None
    if not vals:
        raise InputError("--strength needs at least one value")
    return vals


@torch.no_grad()
def edit_batch(
    method: Any, images: Any, direction: DirectionLike, strengths: Sequence[float], ada: bool = True
) -> tuple[Any, list[torch.Tensor]]:
    """Invert ``images`` once and edit at each strength: (inversion, [edited (N, 3, S, S) per strength])."""
    inv = method.invert(images)
    return inv, [method_edit(method, inv, direction, s, ada=ada).cpu() for s in strengths]

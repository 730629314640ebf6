"""Recipes and labels of synthfaces, free of torch so that writer processes start fast.

A *recipe* is the list of (identity, variation) pairs to render plus the shared parameters (size,
seed, rare rates). The CLI writes a recipe to disk; :class:`~egain.data.synthfaces.dataset.SynthFacesDataset`
renders the same recipe in memory, item by item, with identical pixels (both call :func:`render_item`).

Fixed evaluation recipes: ``eval`` is 500 held-out identities (split ``test``; one image each) and
``hard`` is the next 200 held-out identities, each image carrying at least one rare detail. Because
the split is a property of (seed, identity) alone, these identities are never training identities
of any recipe with the same seed. ``replicate`` k draws the k-th further pair of sets from the same
world: the held-out identities after the 700 x k of replicates 0 .. k-1, so replicates are disjoint
and replicate 0 is the original pair (``egain compare --seeds`` repeats a comparison on them; the
world ``seed`` stays that of the training data, so every replicate is held out from it).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from egain.errors import InputError

from .params import RARE_KINDS, resolve_rates, sample_identity, sample_variation, split_of
from .render import render

SPLITS = ("train", "val", "test")
EVAL_COUNT = 500
HARD_COUNT = 200


def check_size(size: int) -> int:
    """Sizes are powers of two >= 16 (the GANs double resolution per block)."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise InputError(f"image size must be an integer power of two >= 16, got {size!r}")
    size = int(size)
    if size < 16 or size & (size - 1):
        raise InputError(f"image size must be a power of two >= 16 (16, 32, 64, ...), got {size}")
    return size


def check_count(value: int, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_rates(rare_rate) -> dict[str, float]:
    try:
        rates = resolve_rates(rare_rate)
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"rare_rate must be a number in [0, 1] or a dict over {', '.join(RARE_KINDS)}, got {rare_rate!r}"
        ) from None
    for k, v in rates.items():
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise InputError(f"rare rate of '{k}' must lie in [0, 1], got {v}")
    return rates


@lru_cache(maxsize=64)
def held_out_identities(seed: int, count: int, skip: int = 0) -> tuple[int, ...]:
    """Identities ``skip .. skip+count-1`` of the ``test`` split, in id order."""
    out: list[int] = []
    ident = 0
    while len(out) < skip + count:
        if split_of(seed, ident) == "test":
            out.append(ident)
        ident += 1
    return tuple(out[skip:])


def eval_identities(seed: int = 0, count: int = EVAL_COUNT, replicate: int = 0) -> tuple[int, ...]:
    """The identities of the ``eval`` recipe (held-out, one image each) of ``replicate``."""
    return held_out_identities(seed, count, check_seed(replicate) * (EVAL_COUNT + HARD_COUNT))


def hard_identities(seed: int = 0, count: int = HARD_COUNT, replicate: int = 0) -> tuple[int, ...]:
    """The identities of the ``hard`` recipe: the held-out identities after the eval set's 500
    (of the same ``replicate``)."""
    return held_out_identities(seed, count, check_seed(replicate) * (EVAL_COUNT + HARD_COUNT) + EVAL_COUNT)


def file_name(identity: int, variation: int, id_digits: int = 5, var_digits: int = 2) -> str:
    """``id00012_v03.png``: fixed-width numbers so that sorting names sorts images."""
    return f"id{identity:0{id_digits}d}_v{variation:0{var_digits}d}.png"


def render_item(
    seed: int,
    identity: int,
    variation: int,
    size: int,
    rates: dict[str, float],
    force_rare: bool = False,
    supersample: int = 2,
    *,
    parsing: bool = False,
):
    """Render one image and its labels (everything but ``file``, which the writer adds).

    Returns ``(image, labels)``, or ``(image, labels, parsing_map)`` with ``parsing=True`` (the
    (H, W) uint8 class map of :mod:`~egain.data.synthfaces.parsing`; the image is the same)."""
    ident = sample_identity(seed, identity)
    var = sample_variation(seed, ident, variation, rates, force_rare=force_rare)
    res = render(ident, var, size, supersample, parsing)
    attrs = ident.attributes()
    attrs.update(var.attributes())
    labels = {
        "identity": int(identity),
        "variation": int(variation),
        "split": split_of(seed, identity),
        "seed": int(seed),
        "size": int(size),
        "attributes": attrs,
        "rare": res.rare,
        "rare_kinds": [k for k in RARE_KINDS if res.rare.get(k)],
        "landmarks": res.landmarks,
        "face_box": res.face_box,
    }
    if parsing:
        return res.image, labels, res.parsing
    return res.image, labels

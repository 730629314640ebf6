"""Latent edit directions and the one rule that turns (code, direction, strength) into a code offset.

A :class:`Direction` carries not only a vector but the *semantics* its source gives the strength,
because the published files disagree (wave2 facts section 8):

* ``"relative"`` -- the offset is ``strength * vector`` (e4e/HFGI ``age.pt``, SAM ``csc_*.npy``,
  SeFa, our learnt directions). ``vector`` is (D,) for all rows or (L, D) per row.
* ``"interfacegan"`` -- a unit boundary normal n. On a single W code (N, D) the strength is an
  **absolute** signed distance: the current projection w.n is removed first, so the result lies at
  distance ``strength``. On W+ codes (N, L, D) InterFaceGAN adds the *same relative* ``strength*n``
  to every row, and so do we.
* ``"ganspace"`` -- a PCA component with its ``mean`` and ``std``. The strength is an **absolute
  target coordinate** in std units: c = <w_row0 - mean, comp> / std, offset = (strength - c) * std *
  comp. Strength 0 therefore moves the code *to the mean* along the component, not nowhere.

``layers`` = (start, end) restricts the offset to W+ rows [start, end) (end exclusive, GANSpace's
convention). Several directions add (e4e issue #15): :class:`EditSet` is a weighted sum and every
method accepts it where it accepts one direction. Methods call :func:`latent_offset` (or
:func:`apply_edit`) so that each of them follows the same semantics; what a method does *after*
the offset (ADA, re-fusion, frozen feature regions, rows it edits) is its own rule.

This module is deliberately low in the import graph (torch and the runtime only): methods import it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from egain.errors import CheckpointError, InputError

DIRECTION_FORMAT = "egain-direction"
KINDS = ("relative", "interfacegan", "ganspace")


@dataclass
class Direction:
    """One edit direction in W / W+ with its published strength semantics (see the module doc)."""

    vector: torch.Tensor
    name: str = ""
    kind: str = "relative"
    layers: tuple[int, int] | None = None
    mean: torch.Tensor | None = None
    std: float | None = None
    attribute: str | None = None
    #: strength the source uses by default (GANSpace named edits: the tuple's target, e.g. -20)
    default_strength: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"direction kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        v = torch.as_tensor(self.vector).detach().float()
        if v.ndim == 3 and v.shape[0] == 1:  # published [1, L, D] / [1, D] layouts
            v = v[0]
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim not in (1, 2):
            raise InputError(f"a direction is (D,) or (L, D); got shape {tuple(self.vector.shape)}")
        if self.kind != "relative" and v.ndim != 1:
            raise InputError(f"a {self.kind} direction is one (D,) vector; got shape {tuple(v.shape)}")
        self.vector = v
        if self.mean is not None:
            self.mean = torch.as_tensor(self.mean).detach().float().reshape(-1)
        if self.kind == "ganspace" and (self.mean is None or self.std is None):
            raise InputError("a ganspace direction needs its PCA mean and std")
        if self.layers is not None:
            self.layers = (int(self.layers[0]), int(self.layers[1]))

    @property
    def style_dim(self) -> int:
        return int(self.vector.shape[-1])

    def relative(self) -> Direction:
        """The same vector with plain additive semantics (GANSpace offsets in std units)."""
        v = self.vector * (self.std if self.kind == "ganspace" else 1.0)
        return replace(self, vector=v, kind="relative", mean=None, std=None, default_strength=None)

    def offset(self, latents: torch.Tensor, strength: float) -> torch.Tensor:
        """The offset to add to ``latents`` (N, D) or (N, L, D); same shape as ``latents``."""
        return latent_offset(latents, self, strength)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint dict of our ``.pt`` direction files (tensors on the CPU)."""
        return {
            "egain_format": DIRECTION_FORMAT,
            "version": 1,
            "name": self.name,
            "kind": self.kind,
            "vector": self.vector.cpu(),
            "layers": list(self.layers) if self.layers is not None else None,
            "mean": self.mean.cpu() if self.mean is not None else None,
            "std": self.std,
            "attribute": self.attribute,
            "default_strength": self.default_strength,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "direction") -> Direction:
        if d.get("egain_format") != DIRECTION_FORMAT:
            raise CheckpointError(
                f"{where} is not an egain direction file (egain_format {DIRECTION_FORMAT!r})"
            )
        layers = d.get("layers")
        return cls(
            vector=d["vector"],
            name=str(d.get("name") or ""),
            kind=str(d.get("kind") or "relative"),
            layers=tuple(layers) if layers is not None else None,  # type: ignore[arg-type]
            mean=d.get("mean"),
            std=d.get("std"),
            attribute=d.get("attribute"),
            default_strength=d.get("default_strength"),
            meta=dict(d.get("meta") or {}),
        )


@dataclass
class EditSet:
    """Several directions applied together: their offsets add, each scaled by its weight."""

    items: list[tuple[Direction, float]]

    @property
    def name(self) -> str:
        return "+".join(d.name if w == 1 else f"{w:g}*{d.name}" for d, w in self.items)

    def offset(self, latents: torch.Tensor, strength: float) -> torch.Tensor:
        return latent_offset(latents, self, strength)


DirectionLike = torch.Tensor | Direction | EditSet


def latent_offset(latents: torch.Tensor, direction: DirectionLike, strength: float) -> torch.Tensor:
    """``direction`` at ``strength`` as an offset for ``latents`` ((N, D) or (N, L, D)).

    A plain tensor is a relative direction: (D,) for every row, (L, D) per row, or a batch
    (N, L, D). The result has the shape, dtype and device of ``latents``; ``latents + offset`` is
    the edited code. Strength 0 gives zero for every kind but ``ganspace`` (an absolute target).
    """
    if latents.ndim not in (2, 3):
        raise InputError(f"latents must be (N, D) or (N, L, D); got shape {tuple(latents.shape)}")
    if isinstance(direction, EditSet):
        out = torch.zeros_like(latents)
        for d, weight in direction.items:
            out = out + latent_offset(latents, d, strength * weight)
        return out
    if isinstance(direction, torch.Tensor):
        if direction.ndim == 3 and direction.shape[0] != 1:  # a per-image (N, L, D) offset
            return strength * direction.to(latents).expand_as(latents)
        direction = Direction(direction)
    d = direction
    if d.style_dim != latents.shape[-1]:
        raise InputError(
            f"direction '{d.name or '?'}' is {d.style_dim}-dimensional but the codes are {latents.shape[-1]}-dimensional "
            "(a direction belongs to one generator)"
        )
    v = d.vector.to(latents)
    if d.kind == "relative":
        if v.ndim == 2:
            if latents.ndim != 3 or v.shape[0] != latents.shape[1]:
                raise InputError(
                    f"direction '{d.name or '?'}' has {v.shape[0]} rows but the codes have "
                    f"{latents.shape[1] if latents.ndim == 3 else 1}"
                )
            off = strength * v.unsqueeze(0).expand_as(latents)
        else:
            off = (strength * v).expand_as(latents)
        return _restrict(off, latents, d.layers)
    if d.kind == "interfacegan":
        if latents.ndim == 2:  # absolute distance on a single W code
            proj = latents @ v
            return (strength - proj).unsqueeze(1) * v
        return _restrict((strength * v).expand_as(latents), latents, d.layers)
    # ganspace: absolute target coordinate along the component, read from row 0
    assert d.mean is not None and d.std is not None
    row0 = latents if latents.ndim == 2 else latents[:, 0]
    c = ((row0 - d.mean.to(latents)) @ v) / d.std
    off = ((strength - c) * d.std).view(-1, *([1] * (latents.ndim - 1))) * v
    return _restrict(off.expand_as(latents), latents, d.layers)


def _restrict(off: torch.Tensor, latents: torch.Tensor, layers: tuple[int, int] | None) -> torch.Tensor:
    if layers is None or latents.ndim == 2:
        return off.expand_as(latents).clone() if off.shape != latents.shape else off
    start, end = layers
    n = latents.shape[1]
    if not 0 <= start < end <= n:
        raise InputError(f"layer range [{start}, {end}) does not fit codes with {n} rows")
    mask = torch.zeros(n, 1, dtype=latents.dtype, device=latents.device)
    mask[start:end] = 1
    return off.expand_as(latents) * mask


def apply_edit(latents: torch.Tensor, direction: DirectionLike, strength: float) -> torch.Tensor:
    """``latents + latent_offset(latents, direction, strength)``."""
    return latents + latent_offset(latents, direction, strength)


def restrict_rows(offset: torch.Tensor, rows: Iterable[int]) -> torch.Tensor:
    """Zero every W+ row of an (N, L, D) offset except ``rows`` (E2Style edits rows 0-7 only)."""
    keep = torch.zeros(offset.shape[1], 1, dtype=offset.dtype, device=offset.device)
    keep[list(rows)] = 1
    return offset * keep


# -- files and the directions folder ---------------------------------------------------------------


def save_direction(
    direction: Direction, path: str | os.PathLike, manifest: Mapping[str, Any] | None = None
) -> Path:
    """Write ``direction`` as our ``.pt`` file (atomic) and, with ``manifest``, ``<stem>.json`` beside it."""
    from egain.runtime.checkpoint import atomic_torch_save
    from egain.runtime.files import atomic_write_json

    path = Path(path)
    out = atomic_torch_save(direction.to_dict(), path)
    if manifest is not None:
        atomic_write_json(path.with_suffix(".json"), dict(manifest))
    return out


def generator_fingerprint(generator: torch.nn.Module) -> str:
    """A short hash of a generator's weights: directions are learnt for one generator and are
    meaningless for another (a replaced generator must get its directions re-learnt)."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        if "noise" in k:
            continue
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def direction_dirs() -> list[Path]:
    """Where named directions are looked up: ``$EGAIN_DIRECTIONS`` (os.pathsep-separated) first,
    then the bundled ``egain/zoo/directions``. Each holds one folder per generator (a *set*) with a
    ``manifest.json`` naming the generator's fingerprint, and ``<name>.pt`` files."""
    dirs = [Path(p) for p in os.environ.get("EGAIN_DIRECTIONS", "").split(os.pathsep) if p]
    from egain import zoo

    dirs.append(Path(zoo.__file__).resolve().parent / "directions")
    return dirs


def direction_sets(fingerprint: str | None = None) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every direction set found, optionally only those for one generator."""
    import json

    out = []
    for root in direction_dirs():
        if not root.is_dir():
            continue
        candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
        for folder in candidates:
            m = folder / "manifest.json"
            if not m.is_file():
                continue
            try:
                info = json.loads(m.read_text())
            except (OSError, ValueError):
                continue
            if fingerprint is None or info.get("generator_fingerprint") == fingerprint:
                out.append((folder, info))
    return out


def parse_direction_specs(specs: Sequence[str]) -> list[tuple[str, float]]:
    """``["smile", "age*0.5"]`` -> [("smile", 1.0), ("age", 0.5)]: several directions at once."""
    out = []
    for spec in specs:
        for part in str(spec).split("+"):
            name, star, weight = part.strip().rpartition("*")
            if not star:
                name, weight = weight, "1"
            try:
                out.append((name.strip(), float(weight)))
            except ValueError:
                raise InputError(f"direction weight in '{part}' is not a number (use NAME*WEIGHT)") from None
    if not out or any(not n for n, _ in out):
        raise InputError("no direction given")
    return out

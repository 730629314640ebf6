"""Direction files as their authors publish them, loaded with their published semantics.

wave2 facts section 8 (and 3.5, 4.5):

* InterFaceGAN ``*_boundary.npy``: [1, D] float64, unit norm, a linear-SVM normal ->
  ``kind="interfacegan"`` (absolute distance on a W code, relative on W+). ``_w`` in the name means
  W space; without it the boundary lives in Z, which no inversion produces: refused.
* e4e / HFGI / ReStyle / PTI ``age.pt``, ``smile.pt`` ([1, D]) and ``pose.pt`` ([1, 18, D], rows
  unit norm): bare tensors, relative (w + f*d).
* GANSpace ``ffhq_pca.pt``: {``mean`` [1, D], ``comp`` [80, 1, D], ``std`` [80]}; an edit is a tuple
  (component, start, end, strength) with an absolute target strength on rows [start, end).
  :data:`GANSPACE_FFHQ_EDITS` are the named tuples of the GANSpace teaser notebook; ``FILE:NAME``
  or ``FILE:COMP,START,END[,STRENGTH]`` picks one.
* SAM ``csc_*.npy``: [1, num_ws, D], rows not meant to change are 0 -> relative, with the layer
  range of the nonzero rows.
* E2Style ``editing_directions/*.npy``: [18, D] with identical rows -> relative per row (E2Style's
  ``edit`` adds it to rows 0-7 only: that is the method's rule, not the file's).
* our own ``.pt`` (``egain_format: "egain-direction"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from egain.editing.directions import (
    DIRECTION_FORMAT,
    Direction,
    direction_dirs,
    direction_sets,
    generator_fingerprint,
)
from egain.errors import CheckpointError, InputError

#: GANSpace's named FFHQ edits (component, start, end exclusive, target strength); HFGI's
#: ``inference.py`` uses beard -20 where the notebook has +20.
GANSPACE_FFHQ_EDITS: dict[str, tuple[int, int, int, float]] = {
    "eye_openness": (54, 7, 8, 20),
    "smile": (46, 4, 5, -20),
    "trimmed_beard": (58, 7, 9, 20),
    "white_hair": (57, 7, 10, -24),
    "lipstick": (34, 10, 11, 20),
    "wrinkles": (20, 6, 7, -18),
    "bald": (21, 2, 5, 20),
    "overexposed": (27, 8, 18, 15),
    "head_angle_up": (11, 1, 4, 20),
    "face_roundness": (37, 0, 5, 20),
}


def load_direction_file(path: str | os.PathLike) -> Direction:
    """A :class:`Direction` from any supported file; ``PCA.pt:NAME`` picks a GANSpace edit."""
    text = str(path)
    if ":" in Path(text).name and not Path(text).is_file():
        file, _, edit = text.rpartition(":")
        return ganspace_edit(file, edit)
    path = Path(text)
    if not path.is_file():
        raise InputError(f"direction file '{path}' does not exist")
    if path.suffix == ".npy":
        return _from_npy(path)
    from egain.runtime.checkpoint import load_checkpoint

    obj = load_checkpoint(path, what="direction file", allow_tensor=True)
    if obj.get("egain_format") == DIRECTION_FORMAT:
        return Direction.from_dict(obj, str(path))
    if "tensor" in obj and len(obj) == 1:
        return _from_tensor(obj["tensor"], path)
    if {"mean", "comp", "std"} <= set(obj):
        raise InputError(
            f"'{path}' is a GANSpace PCA file; pick an edit with '{path}:NAME' "
            f"({', '.join(GANSPACE_FFHQ_EDITS)}) or '{path}:COMP,START,END[,STRENGTH]'"
        )
    raise CheckpointError(
        f"'{path}' is no direction file egain knows (keys: {', '.join(map(str, list(obj)[:8]))})"
    )


def _from_tensor(t: torch.Tensor, path: Path) -> Direction:
    """e4e/HFGI ``age.pt``/``smile.pt`` [1, D] and ``pose.pt`` [1, 18, D]: relative, all rows."""
    t = t.detach().float()
    if t.ndim not in (2, 3) or t.shape[0] != 1:
        raise CheckpointError(
            f"'{path}' holds a tensor of shape {tuple(t.shape)}; expected [1, D] or [1, L, D]"
        )
    return Direction(
        t, name=path.stem, kind="relative", meta={"source": "e4e/HFGI direction", "file": str(path)}
    )


def _from_npy(path: Path) -> Direction:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"'{path}' is not a readable .npy array ({exc})") from None
    t = torch.from_numpy(np.asarray(a, dtype=np.float64)).float()
    name = path.stem
    if t.ndim == 2 and t.shape[0] == 1:  # InterFaceGAN boundary
        if name.endswith("_boundary") and not name.endswith("_w_boundary"):
            raise InputError(
                f"'{path.name}' is an InterFaceGAN boundary in Z space (no '_w' in its name); "
                "inversions give W codes: use the '_w_boundary.npy' file"
            )
        label = name.removesuffix("_boundary").removesuffix("_w")
        return Direction(
            t[0], name=label, kind="interfacegan", meta={"source": "InterFaceGAN", "file": str(path)}
        )
    if t.ndim == 3 and t.shape[0] == 1:  # SAM csc_*.npy [1, num_ws, D]
        rows = torch.nonzero(t[0].abs().sum(-1) > 0).flatten().tolist()
        layers = (rows[0], rows[-1] + 1) if rows else None
        return Direction(
            t[0], name=name, kind="relative", layers=layers, meta={"source": "SAM", "file": str(path)}
        )
    if t.ndim == 2:  # E2Style [18, D]
        return Direction(t, name=name, kind="relative", meta={"source": "E2Style", "file": str(path)})
    raise CheckpointError(f"'{path}' holds an array of shape {tuple(t.shape)}; no direction layout matches")


def load_ganspace(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The GANSpace PCA file: ``mean`` (D,), ``comp`` (K, D), ``std`` (K,)."""
    from egain.runtime.checkpoint import load_checkpoint

    obj = load_checkpoint(path, what="GANSpace PCA file", required_keys=("mean", "comp", "std"))
    comp = torch.as_tensor(obj["comp"]).float()
    comp = comp.reshape(comp.shape[0], -1)
    return {
        "mean": torch.as_tensor(obj["mean"]).float().reshape(-1),
        "comp": comp,
        "std": torch.as_tensor(obj["std"]).float().reshape(-1),
    }


def ganspace_edit(path: str | os.PathLike, edit: str | tuple[int, int, int, float]) -> Direction:
    """One GANSpace edit of a PCA file: a name of :data:`GANSPACE_FFHQ_EDITS` or a tuple /
    ``"COMP,START,END[,STRENGTH]"``. The result is ``kind="ganspace"`` on rows [START, END)."""
    pca = load_ganspace(path)
    if isinstance(edit, str) and edit in GANSPACE_FFHQ_EDITS:
        name, spec = edit, GANSPACE_FFHQ_EDITS[edit]
    else:
        parts = edit.split(",") if isinstance(edit, str) else list(edit)
        try:
            spec = (int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3]) if len(parts) > 3 else 0.0)
        except (ValueError, IndexError):
            raise InputError(
                f"GANSpace edit '{edit}' is neither a known name ({', '.join(GANSPACE_FFHQ_EDITS)}) "
                "nor COMP,START,END[,STRENGTH]"
            ) from None
        name = f"ganspace_{spec[0]}"
    comp, start, end, strength = spec
    if not 0 <= comp < pca["comp"].shape[0]:
        raise InputError(f"GANSpace component {comp} is not in the file's {pca['comp'].shape[0]} components")
    return Direction(
        pca["comp"][comp],
        name=name,
        kind="ganspace",
        layers=(start, end),
        mean=pca["mean"],
        std=float(pca["std"][comp]),
        default_strength=float(strength),
        meta={"source": "GANSpace", "file": str(path), "component": comp},
    )


def load_direction(
    spec: str | os.PathLike | Direction, generator: torch.nn.Module | None = None
) -> Direction:
    """A direction from a file (ours, or a published layout: see :mod:`egain.editing.published`)
    or by name from the direction set learnt for ``generator`` (``smile``, ``ganspace_3``, ...).

    ``NAME`` also accepts ``SET/NAME`` to pick a set folder by name.
    """
    if isinstance(spec, Direction):
        return spec
    text = str(spec)
    path = Path(text)
    if path.suffix in (".pt", ".pth", ".npy", ".safetensors") or path.is_file():
        return load_direction_file(path)
    set_name, _, name = text.rpartition("/")
    fp = generator_fingerprint(generator) if generator is not None else None
    sets = direction_sets(fp)
    if set_name:
        sets = [(f, m) for f, m in direction_sets() if f.name == set_name]
    for folder, _ in sets:
        f = folder / f"{name}.pt"
        if f.is_file():
            return load_direction_file(f)
    known = sorted({p.stem for folder, _ in sets for p in folder.glob("*.pt")})
    if not sets:
        raise InputError(
            f"no learnt directions for this generator (looked in {', '.join(str(d) for d in direction_dirs())}); "
            "learn them with 'egain directions learn' or pass a direction file"
        )
    raise InputError(f"no direction named '{name}' for this generator; known: {', '.join(known) or 'none'}")

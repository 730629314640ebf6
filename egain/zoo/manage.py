"""Adding weights to the zoo and checking them.

``add_to_zoo`` copies a trained export into ``egain/zoo/weights/<name>.pt`` and writes the manifest
from the run's own ``run.json`` (written by the trainer), so the manifest's command, commit, steps and
wall time are measured, not typed. ``verify`` recomputes every sha256.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from egain.errors import CheckpointError
from egain.runtime.checkpoint import atomic_torch_save, load_checkpoint, sha256_file
from egain.runtime.files import atomic_copy, atomic_write_json
from egain.zoo import WEIGHT_SUFFIXES, WEIGHTS_DIR, available, manifest

MANIFEST_FIELDS = (
    "name",
    "kind",
    "file",
    "sha256",
    "size_bytes",
    "command",
    "commit",
    "steps",
    "wall_time_s",
    "hardware",
    "stored_dtype",
    "scores",
    "notes",
    "added",
)


def add_to_zoo(
    name: str,
    weights: str | os.PathLike,
    run_info: str | os.PathLike,
    *,
    kind: str,
    scores: dict[str, Any] | None = None,
    notes: str = "",
    weights_dir: Path = WEIGHTS_DIR,
    generator_zoo: str | None = None,
    fmt: str | None = None,
    half: bool = False,
) -> dict:
    """Copy ``weights`` into the zoo as ``name`` and write its manifest from ``run_info``.

    ``generator_zoo``: for an inversion model, the zoo generator it was trained with; the generator
    embedded in the method checkpoint is replaced by a reference to it (checked to be identical), so
    the bundle holds each generator once. ``fmt="safetensors"`` stores it as ``<name>.safetensors``
    (also chosen when ``weights`` is one); the file is loaded safely first, so a file egain would
    refuse never enters the zoo.

    ``half=True`` (methods only) stores the model's floating-point tensors as float16, half the
    bytes; egain up-casts them to float32 when it loads the file (``registry._load_ours``), so the
    model runs in float32 with weights rounded to float16. The manifest records
    ``stored_dtype: float16``. Its training scores (``val_l2``) are the float32 run's; figures
    reported elsewhere are measured on the stored file. A tensor beyond float16's range is refused.
    """
    weights, run_info = Path(weights), Path(run_info)
    if not weights.is_file():
        raise CheckpointError(f"weights '{weights}' do not exist")
    if not run_info.is_file():
        raise CheckpointError(
            f"run record '{run_info}' does not exist (trainers write run.json in their run folder)"
        )
    info = json.loads(run_info.read_text())
    weights_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".safetensors" if (fmt or weights.suffix.lstrip(".")) == "safetensors" else ".pt"
    target = weights_dir / f"{name}{suffix}"
    if half and kind != "method":
        raise CheckpointError("half-precision storage is for method models only (--kind method)")
    if generator_zoo is not None or half:
        ckpt = (
            link_generator(weights, generator_zoo, weights_dir)
            if generator_zoo is not None
            else load_checkpoint(weights, what=f"{kind} weights")
        )
        if half:
            ckpt = _to_half(ckpt, weights)
        atomic_torch_save(ckpt, target)
    else:
        # read it the safe way first: the zoo never holds a file egain would refuse to load
        ckpt = load_checkpoint(weights, what=f"{kind} weights")
        if suffix != weights.suffix:
            atomic_torch_save(ckpt, target)
        else:
            atomic_copy(weights, target)
    for other in weights_dir.glob(f"{name}.*"):  # one file per name: drop the other format's copy
        if other != target and other.suffix in (".pt", ".safetensors"):
            other.unlink()
    record = {
        "name": name,
        "kind": kind,
        "file": target.name,
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "command": info.get("command"),
        "commit": info.get("commit"),
        "steps": info.get("steps"),
        "wall_time_s": info.get("wall_time_s"),
        "hardware": info.get("hardware"),
        "sessions": info.get("sessions", []),
        "scores": {**info.get("scores", {}), **(scores or {})},
        "method": info.get("method"),  # inversion models: the registry name to create them with
        "stored_dtype": "float16" if half else "float32",
        "notes": notes,
        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(weights_dir / f"{name}.json", record)
    return record


def _to_half(ckpt: dict, weights: Path) -> dict:
    """A method checkpoint whose float32 model tensors are float16 (shallow copy, ``stored_dtype`` set)."""
    import torch

    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"'{weights}' holds no model state_dict to store in half precision")
    ckpt = dict(ckpt)
    half = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.dtype == torch.float32:
            h = v.half()
            if not torch.isfinite(h).all() and torch.isfinite(v).all():
                raise CheckpointError(
                    f"'{weights}': tensor '{k}' exceeds the float16 range; store it in float32"
                )
            v = h
        half[k] = v
    ckpt["state_dict"] = half
    ckpt["stored_dtype"] = "float16"
    return ckpt


def verify(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[bool, str]:
    """(ok, message): recompute the sha256 of bundled weight ``name`` and compare with its manifest."""
    meta = json.loads((weights_dir / f"{name}.json").read_text())
    path = weights_dir / meta.get("file", f"{name}.pt")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        return False, f"{name}: sha256 {digest[:12]} does not match manifest {str(meta.get('sha256'))[:12]}"
    return True, f"{name}: ok"


def listing() -> list[dict[str, Any]]:
    rows = []
    for name in available():
        try:
            meta = manifest(name)
        except CheckpointError:
            meta = {"name": name, "notes": "no manifest"}
        rows.append(meta)
    return rows


def link_generator(weights: str | os.PathLike, generator_zoo: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """A method checkpoint whose embedded generator is replaced by ``{"zoo": generator_zoo}``.

    Refuses when the embedded generator differs from the zoo one: the reference must reproduce
    exactly the network the method was trained with.
    """
    import torch

    from egain.generators import load_generator

    ckpt = load_checkpoint(weights, what="method checkpoint")
    record = ckpt.get("generator")
    if not isinstance(record, dict) or "state_dict" not in record:
        raise CheckpointError(
            f"'{weights}' embeds no generator to link to the zoo generator '{generator_zoo}'"
        )
    zoo_file = next(
        (
            weights_dir / f"{generator_zoo}{s}"
            for s in WEIGHT_SUFFIXES
            if (weights_dir / f"{generator_zoo}{s}").exists()
        ),
        weights_dir / f"{generator_zoo}.pt",
    )
    if not zoo_file.exists():
        raise CheckpointError(f"zoo generator '{generator_zoo}' is not in {weights_dir}; add it first")
    reference = load_generator(zoo_file, device="cpu").state_dict()
    embedded = record["state_dict"]
    same = set(reference) == set(embedded) and all(torch.equal(reference[k], embedded[k]) for k in reference)
    if not same:
        raise CheckpointError(
            f"the generator embedded in '{weights}' is not the zoo generator '{generator_zoo}' (weights differ)"
        )
    ckpt["generator"] = {k: v for k, v in record.items() if k not in ("state_dict", "config", "path")}
    ckpt["generator"]["zoo"] = generator_zoo
    return ckpt

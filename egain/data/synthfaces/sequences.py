"""synthfaces sequences: one identity over frames, pose, expression and lighting moving smoothly.

A sequence is the identity's photograph ``variation`` 0 (background, clothing, accessories and
its rare details -- earrings, a watch, text marks -- all fixed: they stay attached to the face),
whose continuous parameters (yaw, roll, position, scale, smile, eyes, gaze, light direction,
strength, intensity and colour) follow a smooth path through keyframes: the same parameters of
further photographs ``variation`` 1, 2, ... of the identity, one every ``keyframe_every`` frames,
joined by smoothstep easing (light azimuth along the shorter arc) and damped by ``amplitude``
(1: keyframes move as far as independent photographs; 0.5 the default, a calm clip). It uses the
parameter sampling and renderer of the package unchanged, so the frames are ordinary synthfaces
pictures and the labels say what each frame shows. The video-inversion studies of
``egain apply video`` use these clips (seeds/001 section 4.4).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from egain.runtime.files import atomic_write_text

from .params import RARE_KINDS, Variation, resolve_rates, sample_identity, sample_variation, split_of
from .recipes import check_count, check_seed, check_size
from .render import render
from .writer import save_png

#: the Variation fields that move over a sequence (all others stay those of frame 0)
MOVING = (
    "yaw",
    "roll",
    "shift_x",
    "shift_y",
    "scale",
    "smile",
    "eyes_open",
    "gaze_x",
    "gaze_y",
    "light_azimuth",
    "light_strength",
    "light_intensity",
    "light_color",
)


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def _lerp(a, b, t: float):
    if isinstance(a, tuple):
        return tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return float(a + (b - a) * t)


def sequence_variations(
    seed: int,
    identity: int,
    frames: int,
    *,
    keyframe_every: int = 8,
    amplitude: float = 0.5,
    rare_rate=None,
    force_rare: bool = True,
) -> list[Variation]:
    """The ``frames`` photographs of a sequence (frame 0 is ``sample_variation(.., 0)``)."""
    frames = check_count(frames, "frames", 2)
    keyframe_every = check_count(keyframe_every, "keyframe_every")
    rates = resolve_rates(rare_rate)
    ident = sample_identity(seed, identity)
    base = sample_variation(seed, ident, 0, rates, force_rare=force_rare)
    n_keys = math.ceil((frames - 1) / keyframe_every) + 1
    keys = [base]
    for k in range(1, n_keys):
        other = sample_variation(seed, ident, k, rates)
        moved = {}
        for f in MOVING:
            a, b = getattr(base, f), getattr(other, f)
            if f == "light_azimuth":  # the shorter arc
                b = a + math.remainder(b - a, 2 * math.pi)
            moved[f] = _lerp(a, b, amplitude)
        keys.append(dataclasses.replace(base, **moved))
    out = []
    for i in range(frames):
        k, r = divmod(i, keyframe_every)
        if k + 1 >= len(keys):
            out.append(dataclasses.replace(keys[-1], variation=i))
            continue
        t = _ease(r / keyframe_every)
        vals = {f: _lerp(getattr(keys[k], f), getattr(keys[k + 1], f), t) for f in MOVING}
        out.append(dataclasses.replace(base, variation=i, **vals))
    return out


def render_sequence(
    seed: int,
    identity: int,
    frames: int,
    size: int = 64,
    *,
    keyframe_every: int = 8,
    amplitude: float = 0.5,
    rare_rate=None,
    force_rare: bool = True,
) -> tuple[list[np.ndarray], list[dict]]:
    """(uint8 (S, S, 3) frames, one label dict per frame) of one identity's sequence."""
    size, seed = check_size(size), check_seed(seed)
    ident = sample_identity(seed, identity)
    images, labels = [], []
    for var in sequence_variations(
        seed,
        identity,
        frames,
        keyframe_every=keyframe_every,
        amplitude=amplitude,
        rare_rate=rare_rate,
        force_rare=force_rare,
    ):
        res = render(ident, var, size)
        attrs = ident.attributes()
        attrs.update(var.attributes())
        images.append(res.image)
        labels.append(
            {
                "identity": int(identity),
                "frame": int(var.variation),
                "split": split_of(seed, identity),
                "seed": int(seed),
                "size": int(size),
                "attributes": attrs,
                "rare": res.rare,
                "rare_kinds": [k for k in RARE_KINDS if res.rare.get(k)],
                "face_box": res.face_box,
            }
        )
    return images, labels


def write_sequences(
    out: str | Path,
    identities: list[int],
    frames: int,
    size: int = 64,
    seed: int = 0,
    *,
    keyframe_every: int = 8,
    amplitude: float = 0.5,
) -> list[Path]:
    """``OUT/idNNNNN/frame_TTTT.png`` + ``labels.jsonl`` per identity; returns the clip folders."""

    out = Path(out)
    folders = []
    for ident in identities:
        folder = out / f"id{int(ident):05d}"
        folder.mkdir(parents=True, exist_ok=True)
        images, labels = render_sequence(
            seed, ident, frames, size, keyframe_every=keyframe_every, amplitude=amplitude
        )
        lines = []
        for img, lab in zip(images, labels, strict=True):
            name = f"frame_{lab['frame']:04d}.png"
            save_png(img, folder / name)
            lines.append(json.dumps({"file": name, **lab}))
        atomic_write_text(folder / "labels.jsonl", "\n".join(lines) + "\n")  # last: marks a complete clip
        folders.append(folder)
    return folders


__all__ = ["MOVING", "render_sequence", "sequence_variations", "write_sequences"]

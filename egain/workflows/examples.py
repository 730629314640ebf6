"""The bundled example pictures (``egain/assets/examples``) and the code that makes them.

Two kinds, all rendered deterministically by the project (``python scripts/make_examples.py``):

* ``eval_*.png`` -- images of the synthfaces *evaluation* recipe (``egain data synthfaces
  --eval-set``; held-out identities, variation 0), byte for byte the same pixels. Most are plain,
  a few carry rare details (earrings, hands, phones, patterned clothes, text marks): the
  high-frequency content that EGAIN/HFGI claim to keep and e4e loses.
* ``ood_*.png`` -- out-of-domain pictures made from held-out identities outside both evaluation
  recipes: a pose beyond the training range, an unseen harsh coloured light, a face hidden behind
  every occluder at once, and a posterised "cartoon" stylisation of a render.

``egain/assets/examples.json`` describes every picture (identity, rare details, what is out of domain).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from egain.data.synthfaces.params import (
    DEFAULT_RARE_RATES,
    Identity,
    Variation,
    sample_identity,
    sample_variation,
)
from egain.data.synthfaces.recipes import EVAL_COUNT, HARD_COUNT, held_out_identities, render_item
from egain.data.synthfaces.render import render
from egain.errors import InputError
from egain.runtime.files import atomic_path, atomic_write_json

#: where the examples live inside the package
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
#: the description of every example, next to (not inside) the image folder, so the folder holds images only
MANIFEST_PATH = EXAMPLES_DIR.parent / "examples.json"
SEED = 0
#: how many evaluation-set pictures, and how many of them must carry a rare detail
N_EVAL = 12
N_EVAL_RARE = 5


def examples_dir() -> Path:
    """The folder of the bundled examples; a clear error when the installation lacks them."""
    if not any(EXAMPLES_DIR.glob("*.png")):
        raise InputError(
            f"the bundled example images are missing from {EXAMPLES_DIR}; "
            "make them with 'python scripts/make_examples.py'"
        )
    return EXAMPLES_DIR


def example_files() -> list[Path]:
    """The bundled example PNGs, sorted by name (``eval_*`` first, then ``ood_*``)."""
    return sorted(examples_dir().glob("*.png"))


def pick_eval_items(
    seed: int = SEED, n: int = N_EVAL, n_rare: int = N_EVAL_RARE
) -> list[tuple[int, list[str]]]:
    """(identity, rare kinds) of the chosen evaluation-set images, in recipe order.

    The first ``n - n_rare`` plain images and the first ``n_rare`` with a rare detail, preferring a
    rare kind not shown yet, so the few examples cover as many kinds of detail as possible. Only
    the variation parameters are sampled here (cheap); nothing is rendered.
    """
    rates = dict(DEFAULT_RARE_RATES)
    plain: list[tuple[int, list[str]]] = []
    rare: list[tuple[int, list[str]]] = []
    seen: set[str] = set()
    spare: list[tuple[int, list[str]]] = []
    for identity in held_out_identities(seed, EVAL_COUNT, 0):
        var = sample_variation(seed, sample_identity(seed, identity), 0, rates)
        kinds = [k for k in rates if getattr(var, k)]
        if not kinds:
            if len(plain) < n - n_rare:
                plain.append((identity, kinds))
        elif len(rare) < n_rare:
            if set(kinds) - seen:
                rare.append((identity, kinds))
                seen.update(kinds)
            else:
                spare.append((identity, kinds))
        if len(plain) >= n - n_rare and len(rare) >= n_rare:
            break
    rare += spare[: n_rare - len(rare)]
    chosen = sorted(plain + rare)
    if len(chosen) < n:
        raise InputError(f"the evaluation recipe has fewer than {n} usable images")
    return chosen


def _cartoon(img: np.ndarray) -> np.ndarray:
    """A posterised, ink-outlined version of a render: flat colour areas and dark edges."""
    pil = Image.fromarray(img, "RGB")
    big = pil.resize((pil.width * 4, pil.height * 4), Image.Resampling.BICUBIC)
    flat = ImageOps.posterize(big.filter(ImageFilter.ModeFilter(7)), 2)
    edges = ImageOps.invert(big.convert("L").filter(ImageFilter.FIND_EDGES))
    ink = edges.point(lambda v: 0 if v < 200 else 255)
    out = Image.composite(flat, Image.new("RGB", big.size, (20, 20, 20)), ink)
    out = ImageOps.autocontrast(out, cutoff=1)
    return np.asarray(out.resize(pil.size, Image.Resampling.LANCZOS), dtype=np.uint8)


def _profile(var: Variation) -> Variation:
    # yaw is drawn within +-0.5 rad and roll within +-0.22 rad for every training image
    return dataclasses.replace(var, yaw=0.85, roll=-0.38)


def _harsh_light(var: Variation) -> Variation:
    # training light: strength 0.15-0.5, intensity 0.85-1.15, near-white colour
    return dataclasses.replace(
        var,
        light_azimuth=1.2,
        light_strength=0.95,
        light_intensity=1.3,
        light_color=(1.0, 0.6, 0.35),
        background="flat",
        bg_color1=(0.08, 0.1, 0.2),
        text_marks=False,
    )


def _occluded(var: Variation) -> Variation:
    # every occluder at once; each alone has a 4-8 % rate, together they never occur in training
    return dataclasses.replace(
        var,
        hand=True,
        hand_side=-1,
        hand_height=0.5,
        phone=True,
        phone_side=1,
        watch=True,
        watch_side=-1,
        glasses=True,
        sunglasses=True,
        hat=True,
    )


#: name -> (what is out of domain, change of the photograph, change of the rendered pixels)
OOD_RECIPES: dict[
    str, tuple[str, Callable[[Variation], Variation], Callable[[np.ndarray], np.ndarray] | None]
] = {
    "ood_profile": ("pose beyond the training range (yaw 0.85 rad, roll -0.38 rad)", _profile, None),
    "ood_lighting": ("harsh warm side light on a dark background", _harsh_light, None),
    "ood_occluded": ("hand, phone, watch, sunglasses and hat together", _occluded, None),
    "ood_cartoon": ("posterised, ink-outlined stylisation of a render", lambda v: v, _cartoon),
}


def render_examples(size: int = 64, seed: int = SEED) -> list[tuple[str, np.ndarray, dict]]:
    """(file name, uint8 image, description) of every example, in file-name order."""
    out: list[tuple[str, np.ndarray, dict]] = []
    rates = dict(DEFAULT_RARE_RATES)
    for identity, _ in pick_eval_items(seed):
        img, labels = render_item(seed, identity, 0, size, rates)
        name = f"eval_id{identity:05d}_v00.png"
        out.append(
            (
                name,
                img,
                {
                    "file": name,
                    "kind": "eval",
                    "identity": identity,
                    "variation": 0,
                    "rare_kinds": labels["rare_kinds"],
                    "about": "synthfaces evaluation recipe (held-out identity)",
                },
            )
        )
    # identities after both evaluation recipes: held out, and in neither eval nor hard set
    ood_ids = held_out_identities(seed, len(OOD_RECIPES), EVAL_COUNT + HARD_COUNT)
    for identity, (name, (about, change, post)) in zip(ood_ids, OOD_RECIPES.items(), strict=True):
        ident: Identity = sample_identity(seed, identity)
        var = change(sample_variation(seed, ident, 0, rates))
        img = render(ident, var, size).image
        if post is not None:
            img = post(img)
        file = f"{name}.png"
        out.append(
            (
                file,
                img,
                {"file": file, "kind": "out-of-domain", "identity": identity, "variation": 0, "about": about},
            )
        )
    return sorted(out, key=lambda t: t[0])


def write_examples(
    out: str | os.PathLike = EXAMPLES_DIR,
    size: int = 64,
    seed: int = SEED,
    manifest: str | os.PathLike | None = None,
) -> list[dict]:
    """Render the examples into ``out`` (replacing earlier ones) and describe them in ``manifest``
    (default: ``examples.json`` beside ``out``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = render_examples(size, seed)
    keep = {name for name, _, _ in items}
    for old in out.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    records = []
    for name, img, record in items:
        with atomic_path(out / name) as tmp:
            Image.fromarray(img, "RGB").save(tmp, format="PNG", compress_level=9, optimize=False)
        records.append(record)
    doc = {"seed": seed, "size": size, "made_by": "python scripts/make_examples.py", "images": records}
    manifest = Path(manifest) if manifest is not None else out.parent / "examples.json"
    atomic_write_json(manifest, doc, sort_keys=True)
    return records

"""Edit fidelity against ground truth, on synthfaces.

A synthfaces image is rendered from known parameters, so an edit can be checked against the image
the *world* would show: for each source the ground truth is the same identity and photograph with
only the attribute changed, by the amount the attribute classifier says the edit achieved
(``classifier(edited) - classifier(method's unedited reconstruction)``; for binary attributes the
attribute is toggled when the edit crosses p = 0.5). Each method's edit is scored

* against the ground truth: SSIM, PSNR, a feature distance (the face embedder's normalised
  stage features; LPIPS weights are not available offline) and ID similarity;
* against the source: ID similarity (identity preservation), and the change *outside the
  attribute's region* -- mean |edited - reconstruction| outside it, i.e. what the edit changed that
  it should not have. The region comes from the renderer's exact parsing maps
  (:mod:`egain.data.synthfaces.parsing`): the union, over the source's map and the ground truth's,
  of the classes the attribute may change (:data:`REGION_RULES`), grown by one pixel (at 64 px)
  for the anti-aliased boundary:

  =========  ==========================================================================
  smile      lips, mouth, eyes, brows (a smile narrows the eyes and lifts the brows), and
             the lips/mouth grown by 0.25 x face-box width into skin, beard and nose
             (the smile lines and corner shading)
  eyes_open  eyes and brows, grown by 0.08 x face-box width into skin and nose (the lids)
  glasses    glasses and the holes they enclose (clear lenses tint what lies behind them)
  hat        hat and hair, the hat grown by 0.1 x face-box width into skin, ears and nose
             (the visor's shadow)
  beard      beard, and skin, nose, lips, mouth and neck below half-way from the eye line
             to the nose tip (the lower face a beard may cover)
  age        skin, hair, beard and brows (wrinkles and greying)
  yaw        everything but background and text marks (the head turns)
  =========  ==========================================================================

  On 60 evaluation images these regions hold over 99.8 % of the re-rendering's change for every
  attribute (tests/test_edit_eval.py checks 98 %). The older landmark/face-box *proxy*
  (:func:`region_mask`) is used only where no map exists (``regions="proxy"`` forces it); each
  row's ``region`` says which was used;
* by the classifier: the attribute's change and the mean |change| of the other attributes
  (regressions divided by their label scale, e.g. age by 13 years; binary as probabilities).

Also FID (over the face embedder's features, named as such) between the edited images and the
sources. Methods with an ADA module are scored twice: with ADA and without (``NAME (no ADA)``).
This module scores one draw of images; :mod:`egain.workflows.edit_eval` repeats it over seeds and
judges the claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from egain.data.synthfaces.parsing import CLASS_INDEX, PARSING_CLASSES
from egain.editing.apply import has_ada, method_edit
from egain.editing.directions import DirectionLike
from egain.editing.published import load_direction
from egain.errors import InputError

#: attributes with a ground-truth re-rendering rule: (label field, lower, upper) for regressions
REGRESSION_FIELDS = {"smile": (0.0, 1.0), "eyes_open": (0.0, 1.0), "yaw": (-0.5, 0.5), "age": (16.0, 85.0)}
BINARY_FIELDS = ("glasses", "beard", "hat")
EDITABLE = (*REGRESSION_FIELDS, *BINARY_FIELDS)
#: attributes whose unwanted change is reported (regressions in units of their label scale)
OTHERS = (*EDITABLE, "grey", "masc", "roll")


def rerender(
    dataset: Any, index: int, attribute: str, change: float, *, parsing: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Item ``index`` of a :class:`~egain.data.synthfaces.SynthFacesDataset` with ``attribute``
    changed by ``change`` (label units; for binary attributes, a new probability: > 0.5 = on).

    Everything else (identity, pose, light, background, noise seeds) is the source's. Age also
    moves its derived wrinkles and grey hair as the sampler derives them. ``parsing=True``:
    ``(image, parsing map)``, the map of the re-rendered face (the same pixels either way).
    """
    from egain.data.synthfaces.params import sample_identity, sample_variation
    from egain.data.synthfaces.render import render

    identity, variation = dataset.key(index)
    ident = sample_identity(dataset.seed, identity)
    var = sample_variation(dataset.seed, ident, variation, dataset.rates, force_rare=dataset.force_rare)
    if attribute in REGRESSION_FIELDS:
        lo, hi = REGRESSION_FIELDS[attribute]
        value = float(min(max(getattr(var, attribute) + change, lo), hi))
        kw: dict[str, Any] = {attribute: value}
        if attribute == "age":
            kw["wrinkles"] = float(min(max((value - 32) / 40, 0), 1))
            kw["grey"] = float(min(max(var.grey + (value - var.age) / 35 * ident.grey_propensity, 0), 1))
        var = replace(var, **kw)
    elif attribute in BINARY_FIELDS:
        on = bool(change > 0.5)
        kw = {attribute: on}
        if attribute == "beard":
            kw["beard_style"] = ident.beard_type if on else "none"
        if attribute == "glasses" and not on:
            kw["sunglasses"] = False
        var = replace(var, **kw)
    else:
        raise InputError(f"no ground-truth rule for attribute '{attribute}'; known: {', '.join(EDITABLE)}")
    res = render(ident, var, dataset.size, dataset.supersample, parsing)
    return (res.image, res.parsing) if parsing else res.image


def region_mask(labels: Mapping[str, Any], attribute: str, size: int) -> torch.Tensor:
    """(1, size, size) float mask, 1 inside the attribute's region: the landmark / face-box
    *proxy*, used only where no parsing maps exist (see :func:`parsing_region` and the module doc)."""
    lm = labels["landmarks"]
    x0, y0, x1, y1 = labels["face_box"]
    fw, fh = x1 - x0, y1 - y0
    m = torch.zeros(1, size, size)

    def box(cx: float, cy: float, hw: float, hh: float) -> None:
        a, b = max(0, int(math.floor(cx - hw))), min(size, int(math.ceil(cx + hw)))
        c, d = max(0, int(math.floor(cy - hh))), min(size, int(math.ceil(cy + hh)))
        m[:, c:d, a:b] = 1

    (lx, ly), (rx, ry) = lm["left_eye"], lm["right_eye"]
    if attribute == "smile":  # the renderer's smile also narrows the eyes
        mx, my = lm["mouth"]
        box(mx, my, 0.35 * fw, 0.18 * fh)
        box((lx + rx) / 2, (ly + ry) / 2, abs(rx - lx) / 2 + 0.3 * fw, 0.14 * fh)
    elif attribute in ("eyes_open", "glasses"):
        box((lx + rx) / 2, (ly + ry) / 2, abs(rx - lx) / 2 + 0.3 * fw, 0.14 * fh)
    elif attribute in ("age", "beard"):
        box((x0 + x1) / 2, (y0 + y1) / 2, 0.6 * fw, 0.6 * fh)
    else:  # yaw, hat: the whole head and hair
        box((x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * fh, 0.9 * fw, 0.8 * fh)
    return m


@dataclass(frozen=True)
class RegionRule:
    """Which parsing classes an attribute may change (see :data:`REGION_RULES`).

    ``classes``: changed outright; ``grow``/``into``/``reach``: the ``grow`` classes dilated by
    ``reach`` x face-box width, kept only where the map holds an ``into`` class (skin around the
    mouth that a smile folds); ``fill_holes``: the enclosed holes of the class mask too (the clear
    lenses inside glasses frames, tinted but labelled as what lies behind them); ``lower_face``:
    these classes too, from ``lower_face_from`` x (nose tip - eye line) below the eye line down.
    """

    classes: tuple[str, ...]
    grow: tuple[str, ...] = ()
    into: tuple[str, ...] = ()
    reach: float = 0.0
    fill_holes: bool = False
    lower_face: tuple[str, ...] = ()
    lower_face_from: float = 0.5


_LIPS = ("upper_lip", "lower_lip", "mouth")
_EYES = ("left_eye", "right_eye", "left_brow", "right_brow")
_FACE = ("skin", "beard", "nose", *_LIPS)
#: the parsing classes each attribute may change (the table of the module doc and docs/editing.md)
REGION_RULES: dict[str, RegionRule] = {
    "smile": RegionRule((*_LIPS, *_EYES), grow=_LIPS, into=_FACE, reach=0.25),
    "eyes_open": RegionRule(_EYES, grow=_EYES, into=("skin", "nose"), reach=0.08),
    "glasses": RegionRule(("glasses",), fill_holes=True),
    "hat": RegionRule(
        ("hat", "hair"), grow=("hat",), into=("skin", "left_ear", "right_ear", "nose"), reach=0.1
    ),
    "beard": RegionRule(("beard",), lower_face=(*_FACE, "neck"), lower_face_from=0.5),
    "age": RegionRule(("skin", "hair", "beard", "left_brow", "right_brow")),
    "yaw": RegionRule(tuple(c for c in PARSING_CLASSES if c not in ("background", "text"))),
}
#: every region is also dilated by this many pixels (at 64 px; scaled with the size): the
#: anti-aliased boundary pixels are mixtures whose map class is the majority one
EDGE_PX = 1


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation of a (H, W) bool mask by ``radius`` pixels."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0


def _class_mask(parsing: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    idx = torch.tensor([CLASS_INDEX[n] for n in names], dtype=parsing.dtype)
    return torch.isin(parsing, idx)


def parsing_region(
    attribute: str, maps: Sequence[np.ndarray | torch.Tensor], labels: Mapping[str, Any]
) -> torch.Tensor:
    """(1, H, W) float mask, 1 inside ``attribute``'s region: the union over ``maps`` (the
    source's and the ground truth's exact parsing maps) of what :data:`REGION_RULES` says the
    attribute may change, dilated by :data:`EDGE_PX`. ``labels`` (the source's: landmarks and face
    box) scale the dilations and place the lower face."""
    if attribute not in REGION_RULES:
        raise InputError(f"no region rule for attribute '{attribute}'; known: {', '.join(REGION_RULES)}")
    rule = REGION_RULES[attribute]
    first = torch.as_tensor(np.asarray(maps[0])).long()
    h, w = first.shape
    scale = w / 64
    x0, _, x1, _ = labels["face_box"]
    reach = int(round(rule.reach * (x1 - x0)))
    region = torch.zeros(h, w, dtype=torch.bool)
    for pm in maps:
        pm = torch.as_tensor(np.asarray(pm)).long()
        m = _class_mask(pm, rule.classes)
        if rule.fill_holes and m.any():
            from scipy.ndimage import binary_fill_holes

            m = m | torch.from_numpy(binary_fill_holes(m.numpy()))
        if rule.grow:
            m = m | (_dilate(_class_mask(pm, rule.grow), reach) & _class_mask(pm, rule.into))
        if rule.lower_face:
            lm = labels["landmarks"]
            eye_y = (lm["left_eye"][1] + lm["right_eye"][1]) / 2
            top = eye_y + rule.lower_face_from * (lm["nose_tip"][1] - eye_y)
            rows = torch.arange(h, dtype=torch.float32)[:, None] + 0.5 >= top
            m = m | (_class_mask(pm, rule.lower_face) & rows)
        region |= m
    return _dilate(region, max(1, int(round(EDGE_PX * scale))))[None].float()


def _to_uint8_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1.0)


class _FeatureDistance:
    """Mean squared distance of channel-normalised embedder stage features (a perceptual proxy)."""

    def __init__(self, embedder: Any):
        self.embedder = embedder

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.embedder.features(a), self.embedder.features(b)
        out = torch.zeros(a.shape[0])
        for x, y in zip(fa[:-1], fb[:-1], strict=True):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-8)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-8)
            out += ((x - y) ** 2).sum(1).mean((1, 2)).cpu()
        return out / max(1, len(fa) - 1)


@torch.no_grad()
def evaluate_edits(
    methods: Mapping[str, Any],
    attributes: Sequence[str] = ("smile", "yaw", "age"),
    strengths: Sequence[float] = (-3.0, 3.0),
    *,
    classifier: Any,
    embedder: Any,
    n: int = 64,
    seed: int = 0,
    replicate: int = 0,
    directions: Mapping[str, Mapping[str, DirectionLike]] | None = None,
    batch: int = 32,
    with_no_ada: bool = True,
    grid_rows: int = 4,
    regions: str = "parsing",
) -> dict[str, Any]:
    """Score every method's edits on ``n`` held-out synthfaces images (the eval recipe, draw
    ``replicate``).

    ``directions[label][attribute]`` overrides the direction looked up by name for that method's
    generator. ``regions``: "parsing" (the renderer's exact maps, :func:`parsing_region`; the proxy
    for any image whose render has no map) or "proxy" (:func:`region_mask` throughout). Returns
    ``{"rows": per-(method, attribute, strength) means, "per_image": [...], "grids": {attribute:
    rows of tiles}, "sources": ..., "region": "parsing maps" | "landmark proxy"}``.
    """
    if regions not in ("parsing", "proxy"):
        raise InputError(f"regions must be 'parsing' or 'proxy', got {regions!r}")
    from egain.data.synthfaces import SynthFacesDataset
    from egain.metrics.fid import fid_from_features
    from egain.metrics.functional import pixel_metrics

    ds = SynthFacesDataset.eval_set(
        seed=seed, count=n, replicate=replicate, return_labels=True, return_parsing=regions == "parsing"
    )
    items = [ds[i] for i in range(len(ds))]
    x_all = torch.stack([it[0] for it in items])
    labels = [it[2] for it in items]
    src_maps = [it[3] if len(it) > 3 else None for it in items]
    used: set[str] = set()
    size = ds.size
    feat = _FeatureDistance(embedder)
    # other attributes' change in comparable units: regressions divided by their label scale
    scale = {a.name: (a.scale if a.kind == "regression" else 1.0) for a in classifier.attributes}

    def emb(t: torch.Tensor) -> torch.Tensor:
        e = embedder.embed(t)
        return F.normalize(e.float(), dim=1).cpu()

    def cls(t: torch.Tensor) -> dict[str, torch.Tensor]:
        if t.shape[-1] != classifier.size:
            t = F.interpolate(
                t, size=(classifier.size,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return {k: v.cpu() for k, v in classifier.predict(t).items()}

    src_emb = torch.cat([emb(x_all[i : i + batch]) for i in range(0, n, batch)])
    variants: list[tuple[str, str, Any, bool]] = []
    for label, m in methods.items():
        variants.append((label, label, m, True))
        if with_no_ada and has_ada(m):
            variants.append((f"{label} (no ADA)", label, m, False))
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    grids: dict[str, list[list[torch.Tensor]]] = {a: [] for a in attributes}
    invs = {}
    for _label, base, m, _ in variants:
        if base not in invs:
            invs[base] = [m.invert(x_all[i : i + batch].to(m.device)) for i in range(0, n, batch)]
    for attr in attributes:
        if attr not in EDITABLE:
            raise InputError(
                f"no ground-truth rule for '{attr}'; evaluable attributes: {', '.join(EDITABLE)}"
            )
        proxy = torch.stack([region_mask(lab, attr, size) for lab in labels])
        for label, base, m, ada in variants:
            d = (directions or {}).get(base, {}).get(attr) or load_direction(attr, m.generator)
            for s in strengths:
                acc: dict[str, list[torch.Tensor]] = {}
                row_used: set[str] = set()
                edited_all, gt_all = [], []
                for bi, i in enumerate(range(0, n, batch)):
                    inv = invs[base][bi]
                    rec = inv.reconstruction.cpu()
                    ed = method_edit(m, inv, d, s, ada=ada).cpu()
                    if ed.shape[-1] != size:
                        ed = F.interpolate(
                            ed, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                        )
                        rec = F.interpolate(
                            rec, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                        )
                    p_ed, p_rec = cls(ed), cls(rec)
                    change = p_ed[attr] - p_rec[attr]
                    gts, mks = [], []
                    for j in range(ed.shape[0]):
                        amount = float(change[j])
                        if attr in BINARY_FIELDS:
                            # toggle relative to the source label: on when the edit ends above 0.5
                            amount = float(p_ed[attr][j] > 0.5)
                        gt_img, gt_map = rerender(ds, i + j, attr, amount, parsing=True)
                        gts.append(_to_uint8_tensor(gt_img))
                        if src_maps[i + j] is not None and gt_map is not None:
                            mks.append(parsing_region(attr, [src_maps[i + j], gt_map], labels[i + j]))
                            row_used.add("parsing maps")
                        else:
                            mks.append(proxy[i + j])
                            row_used.add("landmark proxy")
                    gt = torch.stack(gts)
                    pm = pixel_metrics(gt, ed, ("ssim", "psnr"))
                    e_ed = emb(ed)
                    mk = torch.stack(mks)
                    outside = 1 - mk
                    out_change = ((ed - rec).abs().mean(1, keepdim=True) * outside).sum(
                        (1, 2, 3)
                    ) / outside.sum((1, 2, 3)).clamp_min(1)
                    others = torch.stack(
                        [
                            (p_ed[k] - p_rec[k]).abs() / scale.get(k, 1.0)
                            for k in p_ed
                            if k != attr and k in OTHERS
                        ]
                    ).mean(0)
                    vals = {
                        "gt_ssim": pm["ssim"],
                        "gt_psnr": pm["psnr"],
                        "gt_feat": feat(gt, ed),
                        "gt_id": (emb(gt) * e_ed).sum(1),
                        "src_id": (src_emb[i : i + ed.shape[0]] * e_ed).sum(1),
                        "outside_change": out_change,
                        "attr_change": change,
                        "other_change": others,
                    }
                    for k, v in vals.items():
                        acc.setdefault(k, []).append(v.float().cpu())
                    edited_all.append(ed)
                    gt_all.append(gt)
                used |= row_used
                means = {k: float(torch.cat(v).mean()) for k, v in acc.items()}
                ed_cat = torch.cat(edited_all)
                fid = fid_from_features(
                    np.concatenate([emb(ed_cat[i : i + batch]).double().numpy() for i in range(0, n, batch)]),
                    src_emb.double().numpy(),
                )
                rows.append(
                    {
                        "method": label,
                        "attribute": attr,
                        "strength": float(s),
                        **means,
                        "fid_embedder": fid,
                        "n": n,
                        "region": " + ".join(sorted(row_used)),
                    }
                )
                for j in range(n):
                    per_image.append(
                        {
                            "method": label,
                            "attribute": attr,
                            "strength": float(s),
                            "image": j,
                            **{k: float(torch.cat(v)[j]) for k, v in acc.items()},
                        }
                    )
                if s == max(strengths):
                    gt_cat = torch.cat(gt_all)
                    grids[attr].append((label, ed_cat[:grid_rows], gt_cat[:grid_rows]))  # type: ignore[arg-type]
    region = " + ".join(sorted(used)) or ("parsing maps" if regions == "parsing" else "landmark proxy")
    return {
        "rows": rows,
        "per_image": per_image,
        "grids": grids,
        "sources": x_all[:grid_rows],
        "region": region,
    }


EDIT_COLUMNS = (
    "method",
    "attribute",
    "strength",
    "gt_ssim",
    "gt_psnr",
    "gt_feat",
    "gt_id",
    "src_id",
    "outside_change",
    "attr_change",
    "other_change",
    "fid_embedder",
    "n",
    "region",
)


def edit_table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown table of :func:`evaluate_edits` rows (one per method, attribute and strength)."""
    lines = [
        "| method | attribute | strength | SSIM vs GT ↑ | PSNR vs GT ↑ | feat. dist. vs GT ↓ | ID vs GT ↑ | ID vs source ↑ | change outside region ↓ | attribute change | other attributes |Δ| ↓ | FID (embedder) ↓ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['attribute']} | {r['strength']:+g} | {r['gt_ssim']:.3f} | {r['gt_psnr']:.2f} | "
            f"{r['gt_feat']:.4f} | {r['gt_id']:.3f} | {r['src_id']:.3f} | {r['outside_change']:.4f} | "
            f"{r['attr_change']:+.3f} | {r['other_change']:.3f} | {r['fid_embedder']:.3f} |"
        )
    return "\n".join(lines)


def write_edit_report(
    result: Mapping[str, Any], out: str | Path, per_image_columns: Sequence[str] = ()
) -> dict[str, Path]:
    """``edit_scores.csv`` (means), ``edit_scores_per_image.csv`` (``per_image_columns`` first,
    e.g. "seed"), ``edit_summary.md`` and one ``grid_<attribute>.png`` per attribute (rows images;
    columns source, ground truth, methods)."""
    from egain.metrics.report import fit_tile, write_csv, write_image_grid
    from egain.runtime.files import atomic_write_text
    from egain.utils.images import tensor_to_uint8

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    cols = list(EDIT_COLUMNS)
    files["scores"] = write_csv(out / "edit_scores.csv", cols, result["rows"])
    files["per_image"] = write_csv(
        out / "edit_scores_per_image.csv",
        [*per_image_columns, *(c for c in cols if c not in ("fid_embedder", "n", "region")), "image"],
        result["per_image"],
    )
    region = result.get("region", "")
    lines = [
        "# Edit fidelity (synthfaces ground truth)",
        "",
        *([f"Region of 'change outside region': {region}.", ""] if region else []),
        edit_table_markdown(result["rows"]),
    ]
    files["summary"] = out / "edit_summary.md"
    atomic_write_text(files["summary"], "\n".join(lines) + "\n")

    def tile(t: torch.Tensor) -> torch.Tensor:
        return fit_tile(torch.from_numpy(tensor_to_uint8(t)).permute(2, 0, 1), (128, 128))

    for attr, entries in result["grids"].items():
        if not entries:
            continue
        src = result["sources"]
        labels = ["source", "ground truth", *(e[0] for e in entries)]
        grid_rows = []
        for j in range(src.shape[0]):
            grid_rows.append([tile(src[j]), tile(entries[0][2][j]), *(tile(e[1][j]) for e in entries)])
        files[f"grid_{attr}"] = write_image_grid(grid_rows, labels, out / f"grid_{attr}.png")
    return files

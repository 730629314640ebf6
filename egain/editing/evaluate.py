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
  it should not have. The region is a proxy built from the label landmarks and face box (mouth box
  and eye band for smile, whose rendering narrows the eyes too, eye band for eyes/glasses, face box for age/beard, enlarged head box for yaw/hat);
  synthfaces parsing maps are not in this tree;
* by the classifier: the attribute's change and the mean |change| of the other attributes
  (regressions divided by their label scale, e.g. age by 13 years; binary as probabilities).

Also FID (over the face embedder's features, named as such) between the edited images and the
sources. Methods with an ADA module are scored twice: with ADA and without (``NAME (no ADA)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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


def rerender(dataset: Any, index: int, attribute: str, change: float) -> np.ndarray:
    """Item ``index`` of a :class:`~egain.data.synthfaces.SynthFacesDataset` with ``attribute``
    changed by ``change`` (label units; for binary attributes, a new probability: > 0.5 = on).

    Everything else (identity, pose, light, background, noise seeds) is the source's. Age also
    moves its derived wrinkles and grey hair as the sampler derives them.
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
    return render(ident, var, dataset.size, dataset.supersample).image


def region_mask(labels: Mapping[str, Any], attribute: str, size: int) -> torch.Tensor:
    """(1, size, size) float mask, 1 inside the attribute's region (a proxy from landmarks and the
    face box; see the module doc)."""
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
) -> dict[str, Any]:
    """Score every method's edits on ``n`` held-out synthfaces images (the eval recipe).

    ``directions[label][attribute]`` overrides the direction looked up by name for that method's
    generator. Returns ``{"rows": per-(method, attribute, strength) means, "per_image": [...],
    "grids": {attribute: rows of tiles}}``.
    """
    from egain.data.synthfaces import SynthFacesDataset
    from egain.metrics.fid import fid_from_features
    from egain.metrics.functional import pixel_metrics

    ds = SynthFacesDataset.eval_set(seed=seed, count=n, replicate=replicate, return_labels=True)
    items = [ds[i] for i in range(len(ds))]
    x_all = torch.stack([it[0] for it in items])
    labels = [it[2] for it in items]
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
        masks = torch.stack([region_mask(lab, attr, size) for lab in labels])
        for label, base, m, ada in variants:
            d = (directions or {}).get(base, {}).get(attr) or load_direction(attr, m.generator)
            for s in strengths:
                acc: dict[str, list[torch.Tensor]] = {}
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
                    gts = []
                    for j in range(ed.shape[0]):
                        amount = float(p_ed[attr][j]) if attr in BINARY_FIELDS else float(change[j])
                        if attr in BINARY_FIELDS:
                            # toggle relative to the source label: on when the edit ends above 0.5
                            amount = float(p_ed[attr][j] > 0.5)
                        gts.append(_to_uint8_tensor(rerender(ds, i + j, attr, amount)))
                    gt = torch.stack(gts)
                    pm = pixel_metrics(gt, ed, ("ssim", "psnr"))
                    e_ed = emb(ed)
                    mk = masks[i : i + ed.shape[0]]
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
    return {"rows": rows, "per_image": per_image, "grids": grids, "sources": x_all[:grid_rows]}


def write_edit_report(result: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """``edit_scores.csv`` (means), ``edit_scores_per_image.csv``, ``edit_summary.md`` and one
    ``grid_<attribute>.png`` per attribute (rows images; columns source, ground truth, methods)."""
    from egain.metrics.report import fit_tile, write_csv, write_image_grid
    from egain.runtime.files import atomic_write_text
    from egain.utils.images import tensor_to_uint8

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    cols = [
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
    ]
    files["scores"] = write_csv(out / "edit_scores.csv", cols, result["rows"])
    files["per_image"] = write_csv(
        out / "edit_scores_per_image.csv",
        [c for c in cols if c not in ("fid_embedder", "n")] + ["image"],
        result["per_image"],
    )
    lines = [
        "# Edit fidelity (synthfaces ground truth)",
        "",
        "| method | attribute | strength | SSIM vs GT ↑ | PSNR vs GT ↑ | feat. dist. vs GT ↓ | ID vs GT ↑ | ID vs source ↑ | change outside region ↓ | attribute change | other attributes |Δ| ↓ | FID (embedder) ↓ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['method']} | {r['attribute']} | {r['strength']:+g} | {r['gt_ssim']:.3f} | {r['gt_psnr']:.2f} | "
            f"{r['gt_feat']:.4f} | {r['gt_id']:.3f} | {r['src_id']:.3f} | {r['outside_change']:.4f} | "
            f"{r['attr_change']:+.3f} | {r['other_change']:.3f} | {r['fid_embedder']:.3f} |"
        )
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

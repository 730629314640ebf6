"""Learning directions in our generators' W space (wave2 facts section 8).

* :func:`interfacegan_boundary` -- InterFaceGAN: sample w, score the images with the attribute
  classifier, keep the top and bottom ``ratio`` (default 0.02, as ``train_boundary``), fit a linear
  boundary and return its unit normal. The fit is an L2-regularised logistic regression solved by
  Newton's method (our closed-form-per-step stand-in for the paper's linear SVM: both give the
  normal of a max-margin-like separating hyperplane; scikit-learn is not a dependency).
* :func:`project_boundary` -- conditional boundaries: remove the components along other attributes'
  normals (one -> n - (n.c)c, any number -> least squares), renormalised.
* :func:`ganspace` -- PCA of sampled w (unit components, coordinate std, mean).
* :func:`sefa` -- closed form from the style-affine (modulation) weights of the W+ rows chosen.
* :func:`supervised_direction` -- from labelled images' inverted latents (regression or binary).
* :func:`learn_direction_set` -- all of the above for one generator into a folder (a direction
  set: ``<name>.pt`` + ``<name>.json`` each, and ``manifest.json``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.editing.directions import Direction, generator_fingerprint, save_direction
from egain.errors import InputError

#: the attributes bundled as InterFaceGAN directions, with the attributes each is conditioned on
#: (age drags grey hair along in synthfaces, beard drags masculinity: the conditioning keeps the
#: edit on the named attribute)
DEFAULT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "smile": (),
    "yaw": (),
    "eyes_open": (),
    "age": (),
    "glasses": (),
    "beard": ("masc",),
    "hat": (),
}


@torch.no_grad()
def sample_and_score(
    generator: torch.nn.Module,
    classifier: Any,
    n: int = 10000,
    seed: int = 0,
    batch: int = 250,
    truncation: float = 1.0,
    noise_mode: str = "const",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` w codes of ``generator`` and the classifier's scores of their images (CPU float32).

    Scores are ``classifier.scores``: logits for binary attributes (linear in the features, what a
    boundary is fitted to), label units for regressions.
    """
    from egain.runtime.logging import progress

    dev = next(generator.parameters()).device
    g = torch.Generator().manual_seed(int(seed))
    ws, scores = [], {}
    for start in progress(range(0, n, batch), desc="sampling", total=(n + batch - 1) // batch):
        k = min(batch, n - start)
        z = torch.randn(k, generator.style_dim, generator=g).to(dev)
        w = generator.mapping(z, truncation=truncation) if truncation != 1.0 else generator.mapping(z)
        img = generator.synthesize(w, noise_mode=noise_mode)
        if img.shape[-1] != classifier.size:
            img = torch.nn.functional.interpolate(
                img,
                size=(classifier.size, classifier.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        s = classifier.scores(img)
        ws.append(w.float().cpu())
        for k_, v in s.items():
            scores.setdefault(k_, []).append(v.float().cpu())
    return torch.cat(ws), {k: torch.cat(v) for k, v in scores.items()}


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float = 1.0, iters: int = 50
) -> tuple[torch.Tensor, float]:
    """L2-regularised logistic regression by Newton's method: minimise
    ``sum softplus(-s_i (x_i.a + b)) + l2/2 |a|^2`` with s = 2y - 1. Returns (a, b) in float64.

    Newton on a D+1 problem converges in a handful of exact steps; the bias is not penalised.
    """
    x = x.double()
    y = y.double().reshape(-1)
    n, d = x.shape
    xb = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1)
    theta = torch.zeros(d + 1, dtype=x.dtype)
    reg = torch.full((d + 1,), float(l2), dtype=x.dtype)
    reg[-1] = 0.0
    for _ in range(iters):
        p = torch.sigmoid(xb @ theta)
        grad = xb.T @ (p - y) + reg * theta
        h = (
            (xb * (p * (1 - p)).unsqueeze(1)).T @ xb
            + torch.diag(reg)
            + 1e-9 * torch.eye(d + 1, dtype=x.dtype)
        )
        step = torch.linalg.solve(h, grad)
        theta = theta - step
        if float(step.abs().max()) < 1e-10:
            break
    return theta[:-1], float(theta[-1])


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float = 1.0) -> tuple[torch.Tensor, float]:
    """Least squares with an L2 penalty (the bias unpenalised): the regression direction."""
    x = x.double()
    y = y.double().reshape(-1)
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    a = torch.linalg.solve(xc.T @ xc + l2 * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - my))
    return a, float(my - mx @ a)


@dataclass
class BoundaryFit:
    """A fitted boundary and how well it separates (InterFaceGAN reports both accuracies)."""

    normal: torch.Tensor
    train_accuracy: float
    val_accuracy: float
    remaining_accuracy: float
    n_train: int


def interfacegan_boundary(
    latents: torch.Tensor,
    scores: torch.Tensor,
    ratio: float = 0.02,
    split: float = 0.7,
    l2: float = 1.0,
    seed: int = 0,
) -> BoundaryFit:
    """InterFaceGAN's ``train_boundary``: top/bottom ``ratio`` (a count if > 1) of the samples by
    score, split ``split``/rest into train/val each side, fit, unit normal.

    The normal points towards higher scores. ``remaining_accuracy``: the middle samples labelled
    by the midpoint score, as InterFaceGAN reports.
    """
    x = latents.reshape(latents.shape[0], -1).double()
    s = scores.reshape(-1).double()
    n = x.shape[0]
    k = int(ratio) if ratio > 1 else int(round(n * ratio))
    if k < 2 or 2 * k > n:
        raise InputError(f"ratio {ratio} of {n} samples leaves {k} per side; need at least 2 and at most n/2")
    order = torch.argsort(s, descending=True)
    pos, neg = order[:k], order[-k:]
    g = torch.Generator().manual_seed(int(seed))
    pos = pos[torch.randperm(k, generator=g)]
    neg = neg[torch.randperm(k, generator=g)]
    t = int(k * split)
    tr = torch.cat([pos[:t], neg[:t]])
    va = torch.cat([pos[t:], neg[t:]])
    y_tr = torch.cat([torch.ones(t), torch.zeros(t)])
    y_va = torch.cat([torch.ones(k - t), torch.zeros(k - t)])
    # centre by the mean of all samples: the boundary's normal does not change, the fit is better conditioned
    mu = x.mean(0)
    a, b = fit_logistic(x[tr] - mu, y_tr, l2=l2)

    def acc(idx: torch.Tensor, y: torch.Tensor) -> float:
        if len(idx) == 0:
            return float("nan")
        return float((((x[idx] - mu) @ a + b > 0).double() == y.double()).double().mean())

    mid = order[k:-k]
    mid_y = (s[mid] > (s[pos].min() + s[neg].max()) / 2).double()
    normal = (a / a.norm()).float()
    return BoundaryFit(normal, acc(tr, y_tr), acc(va, y_va), acc(mid, mid_y), int(len(tr)))


def project_boundary(normal: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
    """Conditional boundary: ``normal`` minus its least-squares projection on the span of the
    condition normals, renormalised (InterFaceGAN's ``project_boundary`` for one condition is
    n - (n.c)c; two and more agree with this least-squares form)."""
    n = normal.double().reshape(-1)
    if not conditions:
        return (n / n.norm()).float()
    c = torch.stack([ci.double().reshape(-1) for ci in conditions], 1)
    coef = torch.linalg.lstsq(c, n.unsqueeze(1)).solution
    r = n - (c @ coef).squeeze(1)
    if float(r.norm()) < 1e-8:
        raise InputError("the boundary lies in the span of its conditions; nothing is left to edit")
    return (r / r.norm()).float()


@dataclass
class PCA:
    mean: torch.Tensor  # (D,)
    components: torch.Tensor  # (K, D) unit rows, by decreasing variance
    std: torch.Tensor  # (K,) std of the sample coordinates along each component


def ganspace(latents: torch.Tensor, k: int = 80) -> PCA:
    """GANSpace: PCA of W samples. Component signs are fixed so that the largest-magnitude entry
    is positive (PCA signs are arbitrary; this makes repeated runs agree)."""
    x = latents.reshape(latents.shape[0], -1).double()
    mean = x.mean(0)
    xc = x - mean
    _, sv, vt = torch.linalg.svd(xc, full_matrices=False)
    k = min(k, vt.shape[0])
    comp = vt[:k]
    idx = comp.abs().argmax(1)
    sign = torch.sign(comp[torch.arange(k), idx])
    comp = comp * sign.unsqueeze(1)
    std = (xc @ comp.T).std(0)
    return PCA(mean.float(), comp.float(), std.float())


def style_affine_weights(generator: torch.nn.Module, rows: Sequence[int]) -> torch.Tensor:
    """The style-affine weights of every modulated layer fed by the W+ ``rows``: (D, sum C_in)."""
    rows = set(int(r) for r in rows)
    mats = []
    for kind, idx, row, _ in generator._plan:
        if row not in rows:
            continue
        layer = generator.convs[idx] if kind == "conv" else generator.to_rgbs[idx]
        mats.append(layer.modconv.affine.weight.detach().float().cpu().T)  # (D, C_in)
    if not mats:
        raise InputError(f"no modulated layer reads W+ rows {sorted(rows)}")
    return torch.cat(mats, 1)


def sefa(
    generator: torch.nn.Module, rows: Sequence[int] | None = None, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa (closed form): unit-normalise each column of the rows' affine weights W (D, C), and
    take the eigenvectors of W W^T by decreasing eigenvalue. Returns (directions (k, D), eigenvalues).

    genforce's ``np.linalg.eig`` returns them unsorted; sorting is what its callers assume.
    """
    rows = list(range(generator.n_latent)) if rows is None else list(rows)
    w = style_affine_weights(generator, rows).double()
    w = w / w.norm(dim=0, keepdim=True)
    vals, vecs = torch.linalg.eigh(w @ w.T)
    order = torch.argsort(vals, descending=True)[:k]
    d = vecs[:, order].T
    idx = d.abs().argmax(1)
    d = d * torch.sign(d[torch.arange(d.shape[0]), idx]).unsqueeze(1)
    return d.float(), vals[order].float()


def supervised_direction(
    latents: torch.Tensor, values: torch.Tensor, binary: bool | None = None, l2: float = 1.0
) -> torch.Tensor:
    """A unit direction from labelled images' inverted latents (N, D) or (N, L, D) (rows averaged):
    logistic for binary labels, ridge regression otherwise; points towards larger values."""
    x = latents.mean(1) if latents.ndim == 3 else latents
    y = values.reshape(-1).double()
    if binary is None:
        binary = bool(torch.all((y == 0) | (y == 1)))
    if binary:
        if y.min() == y.max():
            raise InputError("binary labels are all the same; a direction needs both classes")
        a, _ = fit_logistic(x - x.mean(0), y, l2=l2)
    else:
        a, _ = fit_ridge(x, y, l2=l2)
    return (a / a.norm()).float()


# -- one set of directions for one generator -----------------------------------------------------


def effect_per_unit(
    generator: torch.nn.Module,
    classifier: Any,
    direction: Direction,
    latents: torch.Tensor,
    strengths: Sequence[float] = (-2.0, 2.0),
) -> dict[str, float]:
    """Classifier-score change per unit strength of ``direction`` on W+ codes of ``latents``
    (probabilities for binary attributes, label units for regressions): the slope between the
    extreme strengths, averaged over samples. GANSpace directions are measured as relative."""
    d = direction.relative() if direction.kind == "ganspace" else direction
    dev = next(generator.parameters()).device
    wp = latents.to(dev)
    if wp.ndim == 2:
        wp = wp.unsqueeze(1).repeat(1, generator.n_latent, 1)
    preds = []
    with torch.no_grad():
        for s in (strengths[0], strengths[-1]):
            img = generator.synthesize(wp + d.offset(wp, s), noise_mode="const")
            if img.shape[-1] != classifier.size:
                img = torch.nn.functional.interpolate(
                    img, size=(classifier.size,) * 2, mode="bilinear", antialias=True, align_corners=False
                )
            preds.append(classifier.predict(img))
    span = float(strengths[-1] - strengths[0])
    return {k: float((preds[1][k] - preds[0][k]).mean()) / span for k in preds[0]}


def learn_direction_set(
    generator: torch.nn.Module,
    classifier: Any,
    out: str | os.PathLike,
    *,
    attributes: Mapping[str, Sequence[str]] | None = None,
    n: int = 10000,
    ratio: float = 0.02,
    seed: int = 0,
    ganspace_k: int = 5,
    sefa_k: int = 5,
    generator_name: str | None = None,
    classifier_name: str | None = None,
    command: str | None = None,
    n_effect: int = 200,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Learn the bundled set for ``generator`` into ``out``: one InterFaceGAN boundary per attribute
    (conditioned as :data:`DEFAULT_ATTRIBUTES` says), ``ganspace_k`` GANSpace components (all rows,
    absolute std-unit targets as published) and ``sefa_k`` SeFa directions (all rows, relative).

    Every direction gets a manifest (``<name>.json``: how it was made, its accuracies, the classifier
    change per unit strength on fresh samples) and the folder a ``manifest.json``.
    """
    attributes = dict(DEFAULT_ATTRIBUTES if attributes is None else attributes)
    unknown = [
        a for a in [*attributes, *(c for cs in attributes.values() for c in cs)] if a not in classifier.names
    ]
    if unknown:
        raise InputError(
            f"the classifier has no attribute {', '.join(sorted(set(unknown)))}; it has {', '.join(classifier.names)}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    w, scores = sample_and_score(generator, classifier, n=n, seed=seed)
    log(f"sampled and scored {n} codes in {time.time() - t0:.0f} s")
    fp = generator_fingerprint(generator)
    common = {
        "generator": generator_name,
        "generator_fingerprint": fp,
        "style_dim": int(generator.style_dim),
        "n_latent": int(generator.n_latent),
        "classifier": classifier_name,
        "samples": int(n),
        "seed": int(seed),
        "command": command,
    }
    eval_w = sample_and_score(generator, classifier, n=n_effect, seed=seed + 1)[0]
    w_std = w.std(0)
    entries: dict[str, Any] = {}

    def write(d: Direction, info: dict[str, Any]) -> None:
        effect = effect_per_unit(generator, classifier, d, eval_w)
        proj_std = float(((w - w.mean(0)) @ (d.vector if d.vector.ndim == 1 else d.vector.mean(0))).std())
        manifest = {
            **common,
            **info,
            "name": d.name,
            "kind": d.kind,
            "layers": d.layers,
            "attribute": d.attribute,
            "w_std_along": proj_std,
            "effect_per_unit": effect,
        }
        save_direction(d, out / f"{d.name}.pt", manifest)
        entries[d.name] = {k: manifest[k] for k in ("kind", "layers", "w_std_along")} | {
            "attribute": d.attribute,
            "effect_per_unit": {k: round(v, 4) for k, v in effect.items()},
        }
        if d.attribute:
            log(f"{d.name}: {d.attribute} {effect[d.attribute]:+.4f}/unit")

    normals: dict[str, torch.Tensor] = {}
    for name in {*attributes, *(c for cs in attributes.values() for c in cs)}:
        normals[name] = interfacegan_boundary(w, scores[name], ratio=ratio, seed=seed).normal
    for name, conds in attributes.items():
        fit = interfacegan_boundary(w, scores[name], ratio=ratio, seed=seed)
        normal = project_boundary(fit.normal, *(normals[c] for c in conds))
        d = Direction(
            normal,
            name=name,
            kind="interfacegan",
            attribute=name,
            meta={"source": "interfacegan", "conditions": list(conds)},
        )
        write(
            d,
            {
                "method": "InterFaceGAN (logistic boundary, top/bottom ratio)",
                "ratio": ratio,
                "conditions": list(conds),
                "train_accuracy": fit.train_accuracy,
                "val_accuracy": fit.val_accuracy,
                "remaining_accuracy": fit.remaining_accuracy,
            },
        )
    if ganspace_k:
        pca = ganspace(w, k=max(ganspace_k, 1))
        for i in range(ganspace_k):
            d = Direction(
                pca.components[i],
                name=f"ganspace_{i}",
                kind="ganspace",
                layers=(0, int(generator.n_latent)),
                mean=pca.mean,
                std=float(pca.std[i]),
                meta={"source": "ganspace", "component": i},
            )
            write(
                d,
                {
                    "method": "GANSpace (PCA of w; strength = absolute target in std units)",
                    "component": i,
                    "std": float(pca.std[i]),
                },
            )
    if sefa_k:
        dirs, vals = sefa(generator, k=sefa_k)
        for i in range(dirs.shape[0]):
            d = Direction(dirs[i], name=f"sefa_{i}", kind="relative", meta={"source": "sefa", "index": i})
            write(d, {"method": "SeFa (all rows)", "eigenvalue": float(vals[i])})
    summary = {
        **common,
        "directions": entries,
        "seconds": round(time.time() - t0, 1),
        "w_std_mean": float(w_std.mean()),
    }
    from egain.runtime.files import atomic_write_json

    atomic_write_json(out / "manifest.json", summary)
    return summary


def _labels_values(records: Sequence[Mapping], attribute: str) -> np.ndarray:
    from egain.faces.attributes import ATTRIBUTES, label_values

    spec = [a for a in ATTRIBUTES if a.name == attribute]
    if not spec:
        raise InputError(f"unknown attribute '{attribute}'")
    return np.asarray(label_values(records, spec))[:, 0]

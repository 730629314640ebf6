"""``egain directions evaluate``: does each bundled direction move its attribute, on several seeds?

A direction learnt from classifier scores can move background colour instead of the smile; the
learning step reports one effect per unit on one sample. Here the effect is re-measured on several
independent seeds of generated samples (seed k draws ``n`` fresh z with seed ``SEED_BASE + k``,
disjoint from the 10,000 codes the directions were learnt on), per sample, so that it can be
tested and replicated like the claims of ``egain compare``:

* per direction, attribute and seed: the change of the attribute classifier's score per unit
  strength, ``(score(G(w + s d)) - score(G(w - s d))) / 2s`` for each sample (probabilities for
  binary attributes, label units for regressions), its mean and the paired Wilcoxon test of the
  per-sample changes against zero;
* the claim, for every direction that names an attribute (the InterFaceGAN boundaries): "D moves
  its attribute in its direction" -- mean change > 0 and two-sided p < ALPHA on every seed and on
  the pooled samples (:func:`egain.workflows.compare.replicated_verdict`);
* beside it, the other attributes' change per unit, each in standard deviations of that attribute
  over the unedited samples (attributes have their own units: probabilities, yaw in radians, age in
  years), and the largest of them: how entangled the direction is. The target's change is given in
  both its own units and standard deviations.

GANSpace and SeFa directions name no attribute: their effects are reported without a claim.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egain.errors import InputError
from egain.metrics.stats import format_p, wilcoxon_test
from egain.metrics.table import format_number
from egain.runtime.files import atomic_write_json, atomic_write_text
from egain.workflows.compare import (
    ALPHA,
    FAILS,
    HOLDS,
    MIN_N,
    POOLED,
    TOO_FEW,
    claims_markdown,
    parse_seeds,
    replicated_verdict,
    verdict_lines,
    write_records,
)

__all__ = ["SEED_BASE", "direction_effects", "evaluate_directions", "per_sample_changes"]

#: seed k of the evaluation draws z with this seed + k (the set was learnt on seed 0 and measured on 1)
SEED_BASE = 1000


def per_sample_changes(
    generator: torch.nn.Module,
    classifier: Any,
    direction: Any,
    w: torch.Tensor,
    strength: float = 2.0,
) -> dict[str, np.ndarray]:
    """Per-sample classifier change per unit strength of ``direction`` on the codes ``w`` (N, D) or
    (N, L, D): ``(pred(G(w + s d)) - pred(G(w - s d))) / (2 s)`` for every attribute."""
    d = direction.relative() if getattr(direction, "kind", None) == "ganspace" else direction
    wp = w if w.ndim == 3 else w.unsqueeze(1).repeat(1, generator.n_latent, 1)
    preds = []
    with torch.no_grad():
        for s in (-strength, strength):
            img = generator.synthesize(wp + d.offset(wp, s), noise_mode="const")
            if img.shape[-1] != classifier.size:
                img = torch.nn.functional.interpolate(
                    img, size=(classifier.size,) * 2, mode="bilinear", antialias=True, align_corners=False
                )
            preds.append(classifier.predict(img))
    return {k: ((preds[1][k] - preds[0][k]) / (2 * strength)).double().cpu().numpy() for k in preds[0]}


def direction_effects(
    generator: torch.nn.Module,
    classifier: Any,
    directions: dict[str, Any],
    seed: int,
    n: int,
    strength: float = 2.0,
    batch: int = 100,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """direction name -> attribute -> per-sample change per unit, on ``n`` codes of seed ``seed``;
    and attribute -> the unedited samples' scores (to put the changes in standard deviations)."""
    dev = next(generator.parameters()).device
    g = torch.Generator().manual_seed(SEED_BASE + int(seed))
    z = torch.randn(n, generator.style_dim, generator=g)
    out: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in directions}
    base: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, n, batch):
            w = generator.mapping(z[i : i + batch].to(dev))
            img = generator.synthesize(w, noise_mode="const")
            if img.shape[-1] != classifier.size:
                img = torch.nn.functional.interpolate(
                    img, size=(classifier.size,) * 2, mode="bilinear", antialias=True, align_corners=False
                )
            for k, v in classifier.predict(img).items():
                base.setdefault(k, []).append(v.double().cpu().numpy())
            for name, d in directions.items():
                for k, v in per_sample_changes(generator, classifier, d, w, strength).items():
                    out[name].setdefault(k, []).append(v)
    changes = {name: {k: np.concatenate(v) for k, v in per.items()} for name, per in out.items()}
    return changes, {k: np.concatenate(v) for k, v in base.items()}


def _rows(
    name: str, target: str | None, changes: dict[str, np.ndarray], sd: dict[str, float], seed: int | str
) -> dict[str, Any]:
    """One table row: the target's test, and every attribute's mean change per unit (own units and
    standard deviations); the largest other change is by absolute mean change in SDs."""
    std = {k: abs(float(np.mean(v))) / sd[k] if sd.get(k, 0) > 0 else 0.0 for k, v in changes.items()}
    others = {k: v for k, v in std.items() if k != target}
    worst = max(others, key=others.get) if others else ""
    row: dict[str, Any] = {"seed": seed, "direction": name, "attribute": target or "", "n": 0}
    if target:
        t = wilcoxon_test(changes[target], np.zeros_like(changes[target]))
        row.update(
            n=t["n"],
            effect_per_unit=t["mean_diff"],
            effect_median=t["median_diff"],
            moved_the_right_way=t["win_rate"],
            p_two_sided=t["p_two_sided"],
            effect_per_unit_sd=std[target],
        )
    else:
        row["n"] = len(next(iter(changes.values())))
    row["largest_other"] = worst
    row["largest_other_sd_per_unit"] = others.get(worst, float("nan"))
    row.update({f"per_unit_{k}": float(np.mean(v)) for k, v in changes.items()})
    return row


def _judge(row: dict, min_n: int) -> dict[str, Any]:
    if row["n"] < min_n:
        return {"verdict": TOO_FEW, "n": row["n"], "detail": f"too few samples (n={row['n']}) for a verdict"}
    ok = row["effect_per_unit"] > 0 and row["p_two_sided"] < ALPHA
    detail = f"{format_number(row['effect_per_unit'], 4)}/unit, p {format_p(row['p_two_sided'])}"
    return {"verdict": HOLDS if ok else FAILS, "n": row["n"], "detail": detail}


def evaluate_directions(
    generator: torch.nn.Module,
    classifier: Any,
    out: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    seeds: str | Sequence[int] | None = None,
    n: int = 200,
    strength: float = 2.0,
    min_n: int = MIN_N,
    command: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Measure the generator's direction set (or ``names`` of it) on several seeds; write
    OUT/effects.csv (one row per seed, pooled included, and direction), OUT/claims.csv,
    OUT/directions.md and OUT/directions.json. Returns the JSON record."""
    from egain.editing import load_direction
    from egain.editing.directions import direction_sets, generator_fingerprint

    seed_list = parse_seeds(seeds)
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    fp = generator_fingerprint(generator)
    sets = direction_sets(fp)
    if not sets:
        raise InputError(
            f"no direction set for this generator (fingerprint {fp}); learn one with 'egain directions learn'"
        )
    folder = sets[0][0]
    available = sorted(p.stem for p in folder.glob("*.pt"))
    chosen = list(names) if names else available
    bad = [x for x in chosen if x not in available]
    if bad:
        raise InputError(f"unknown direction(s) {', '.join(bad)} in {folder}; it has {', '.join(available)}")
    dirs = {x: load_direction(x, generator) for x in chosen}
    targets = {x: getattr(d, "attribute", None) or None for x, d in dirs.items()}
    per_seed: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    base: dict[str, list[np.ndarray]] = {}
    for seed in seed_list:
        log(f"seed {seed}: {n} samples x {len(dirs)} directions")
        per_seed[seed], scores = direction_effects(generator, classifier, dirs, seed, n, strength)
        for k, v in scores.items():
            base.setdefault(k, []).append(v)
    sd = {k: float(np.std(np.concatenate(v))) for k, v in base.items()}
    pooled = {
        x: {k: np.concatenate([per_seed[s][x][k] for s in seed_list]) for k in per_seed[seed_list[0]][x]}
        for x in dirs
    }
    rows = [_rows(x, targets[x], per_seed[s][x], sd, s) for s in seed_list for x in dirs]
    rows += [_rows(x, targets[x], pooled[x], sd, POOLED) for x in dirs]
    claims = []
    for x in dirs:
        if not targets[x]:
            continue
        per = {str(r["seed"]): _judge(r, min_n) for r in rows if r["direction"] == x}
        claims.append(
            {
                "claim": f"{x}->{targets[x]}",
                "statement": f"direction {x} moves {targets[x]} in its direction "
                f"(classifier change per unit > 0, Wilcoxon p < {ALPHA})",
                "per_seed": per,
                **replicated_verdict(per, seed_list, min_n),
            }
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "effects.csv", rows)
    write_records(
        out / "claims.csv",
        [
            {
                "claim": c["claim"],
                "statement": c["statement"],
                **{f"seed_{s}": c["per_seed"][str(s)]["verdict"] for s in seed_list},
                "pooled": c["pooled"],
                "holds_on": c["holds_on"],
                "verdict": c["verdict"],
            }
            for c in claims
        ],
    )
    md = _markdown(rows, claims, seed_list, n, strength, folder, command)
    atomic_write_text(out / "directions.md", md)
    record = {
        "command": command,
        "direction_set": str(folder),
        "seeds": seed_list,
        "n": n,
        "strength": strength,
        "attribute_sd": sd,
        "rows": rows,
        "claims": claims,
    }
    atomic_write_json(out / "directions.json", record)
    return record


def _markdown(
    rows: Sequence[dict],
    claims: Sequence[dict],
    seeds: Sequence[int],
    n: int,
    strength: float,
    folder: Path,
    command: str | None,
) -> str:
    pooled = [r for r in rows if r["seed"] == POOLED]
    lines = [
        f"Produced by `{command or 'egain directions evaluate'}`: the direction set in `{folder}`, "
        f"seeds {', '.join(map(str, seeds))} ({n} generated samples each, z seed {SEED_BASE}+k), "
        f"strengths ±{strength:g}.",
        "",
        "Pooled over the seeds: change of the attribute classifier's score per unit strength "
        "(probability for binary attributes, label units for regressions: yaw/roll in radians, age in years); "
        "SD: the same in standard deviations of the attribute over the unedited samples; 'right way': fraction "
        "of samples moved in the direction's sense; largest other: the other attribute whose mean change per "
        "unit is largest in SDs.",
        "",
        "| direction | attribute | n | change per unit | SD per unit | right way | p | largest other (SD per unit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in pooled:
        if r["attribute"]:
            lines.append(
                f"| {r['direction']} | {r['attribute']} | {r['n']} | {format_number(r['effect_per_unit'], 4)} | "
                f"{format_number(r['effect_per_unit_sd'], 3)} | {100 * r['moved_the_right_way']:.0f} % | "
                f"{format_p(r['p_two_sided'])} | {r['largest_other']} {format_number(r['largest_other_sd_per_unit'], 3)} |"
            )
        else:
            lines.append(
                f"| {r['direction']} | – | {r['n']} | – | – | – | – | "
                f"{r['largest_other']} {format_number(r['largest_other_sd_per_unit'], 3)} |"
            )
    if claims:
        lines += ["", claims_markdown(claims, seeds), "", *verdict_lines(claims)]
    return "\n".join(lines) + "\n"

"""CPU cost per image of the optimisation plan's methods (egain/presets/compare/optimisation.toml).

Each method is built from its plan label exactly as ``egain compare`` builds it (the bundled
StyleGAN2, e4e starts, the face-feature perceptual distance) and inverts one batch of synthfaces
evaluation images, as compare does (batch 32 by default), at two step counts per knob. The time per
step per image is the difference divided by the step difference and the batch, so the one-off
setup (perceptual network, e4e, MVG statistics) and the final render cancel; the fixed part per
image (e4e start, segmentation, the render) is what is left at the small step count. One untimed
call first loads everything a method caches.

Then the whole plan is costed at the chosen steps: images x (fixed + steps x per-step), plus the
warm-up inversion of one image ``invert_files`` runs before each timed set (the batch-1 cost per
step of each knob, measured the same way), for the plan's ``n`` images per set, 2 sets and 3 seeds.

    OMP_NUM_THREADS=1 python benchmarks/bench_compare_plan.py
    python benchmarks/bench_compare_plan.py --batch 8 --small 1 --large 3   # quicker, noisier

Timings on a shared machine are noisy: read the ratios, and treat the plan total as an estimate.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (first: prepares OpenMP and sys.path before torch loads)
import torch

#: the knobs whose per-step cost is measured, per method: {knob: (name in invert options)}
KNOBS = {
    "optim-w": ("steps",),
    "optim-wplus": ("steps",),
    "projector": ("steps",),
    "hybrid": ("steps",),
    "pti": ("pivot_steps", "steps"),
    "sam": ("steps",),  # maps from the bundled predictor: no measured inversions
}


def images(n: int, size: int) -> torch.Tensor:
    """``n`` synthfaces evaluation images (seed 0) as a (n, 3, size, size) batch in [-1, 1]."""
    import tempfile
    from pathlib import Path

    from egain.data.synthfaces import write_synthfaces
    from egain.utils.images import list_images, load_image

    folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    write_synthfaces(folder, size=size, recipe="eval", count=n, workers=1, show_progress=False)
    return torch.stack([load_image(p, size) for p in list_images(folder)])


def timed_invert(model, x: torch.Tensor, **options) -> float:
    """Best of ``--reps`` calls: on a shared machine load only ever adds time."""
    best = float("inf")
    for _ in range(args.reps):
        t = time.perf_counter()
        model.invert(x, **options)
        best = min(best, time.perf_counter() - t)
    return best


def measure(label: str, x: torch.Tensor, small: int, large: int) -> dict[str, float]:
    """Seconds per image: "fixed" (at ``small`` steps, less the steps' share) and per step of each
    knob at the batch of ``x``; "<knob>@1": per step at batch 1 (the warm-up image)."""
    from egain.workflows.bundled import load_bundled, parse_spec

    method = parse_spec(label).method or parse_spec(label).bundled
    model = load_bundled(label, "cpu")
    knobs = KNOBS.get(method, ())
    base = {k: small for k in knobs}
    model.invert(x[:1], **base)  # loads what the method caches (perceptual net, e4e, MVG stats)
    b = x.shape[0]
    out: dict[str, float] = {}
    for batch in (x, x[:1]):
        t0 = timed_invert(model, batch, **base)
        key = "" if batch.shape[0] == b else "@1"
        for k in knobs:
            step = timed_invert(model, batch, **{**base, k: large}) - t0
            out[k + key] = max(step, 0.0) / ((large - small) * batch.shape[0])
        if not key:
            out["fixed"] = max(t0 / b - sum(out[k] * small for k in knobs), 0.0)
        if not knobs:
            break
    return out


def main() -> None:
    from egain.workflows.compare import load_plan

    torch.set_num_threads(args.threads)
    plan = load_plan(args.plan)
    x = images(args.batch, 64)
    n = plan.n or 32
    sets, seeds = len(plan.sets), 3
    print(
        f"plan {plan.name}: n={n} per set, {sets} sets, {seeds} seeds; batch {args.batch}, threads {args.threads}"
    )
    total = 0.0
    from egain.workflows.bundled import parse_spec

    for label in plan.methods:
        spec = parse_spec(label)
        if args.methods and spec.name not in args.methods.split(","):
            continue
        cost = measure(label, x, args.small, args.large)
        steps = {k: spec.options.get(k) for k in KNOBS.get(spec.method or "", ())}
        if any(v is None for v in steps.values()):
            from egain.methods import method_class

            defaults = {o.name: o.default for o in method_class(spec.method).invert_options}
            steps = {k: (v if v is not None else defaults[k]) for k, v in steps.items()}
        per_image = cost["fixed"] + sum(cost[k] * v for k, v in steps.items())
        warm = sum(cost.get(f"{k}@1", 0.0) * v for k, v in steps.items())
        method_total = seeds * sets * (n * per_image + warm)
        total += method_total
        parts = ", ".join(
            f"{k} {1000 * cost[k]:.1f} ms/step ({1000 * cost[k + '@1']:.0f} at batch 1)" for k in steps
        )
        print(
            f"{spec.name:14s} fixed {1000 * cost['fixed']:.1f} ms/img; {parts or 'no steps'}; at "
            f"{steps or '-'}: {per_image:.2f} s/img; warm-up {warm:.1f} s; plan {method_total / 60:.1f} min",
            flush=True,
        )
    print(f"plan total (inversion only): {total / 60:.1f} CPU minutes")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plan", default="optimisation")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--small", type=int, default=2, help="the smaller step count of each knob")
    p.add_argument("--large", type=int, default=12, help="the larger step count of each knob")
    p.add_argument(
        "--methods", default="", help="comma list of the plan's method names to measure (default all)"
    )
    p.add_argument("--reps", type=int, default=2, help="timed calls per measurement (the best counts)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    main()

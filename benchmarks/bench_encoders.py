"""Encoder family speed and size: time per image and encoder parameters, relative to e4e and pSp.

Two settings, batch 1:

* ``64``: the synthfaces world (64 px generator, the methods' ``small`` preset);
* ``published``: the published sizes -- IR-SE50 encoders on 256 px input, 1024 px StyleGAN2
  (rosinality channel table).

Printed per method: seconds per image (best of ``--reps`` after one warm-up call), encoder
parameters (the generator left out), and the time relative to e4e and to pSp at the same setting.
The issue's target: ReStyle at 5 iterations costs at most 5.5x pSp (5 encoder + 5 generator passes
plus one concatenation per step, against one of each). Weights are random: speed does not depend
on them.

    python benchmarks/bench_encoders.py --settings 64
    python benchmarks/bench_encoders.py --settings published --reps 1
    python benchmarks/bench_encoders.py --methods psp restyle-psp --settings 64 --reps 5

Adding a method: put a builder in :data:`BUILDERS` (name -> ``builder(generator, device,
memory_format)`` returning a method whose ``invert(images)`` is timed).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch
from torch import nn

from egain.generators import build_generator
from egain.methods import InversionMethod, create
from egain.nn.layout import MEMORY_FORMATS

Builder = Callable[[nn.Module, torch.device, str], InversionMethod]


def _plain(name: str, **config) -> Builder:
    """A builder that creates registered method ``name`` with ``config`` on the given generator."""

    def build(g: nn.Module, device: torch.device, memory_format: str) -> InversionMethod:
        return create(name, generator=g, device=device, memory_format=memory_format, **config)

    return build


#: method name -> builder; other encoder methods (E2Style, DSE, ...) add their entries here
BUILDERS: dict[str, Builder] = {
    "e4e": _plain("e4e"),
    "psp": _plain("psp"),
    "restyle-psp": _plain("restyle-psp", iterations=5),
    "restyle-e4e": _plain("restyle-e4e", iterations=5),
}
SETTINGS = {"64": 64, "published": 1024}


def make_generator(size: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if size >= 256:
        g = build_generator("stylegan2", size, style_dim=512, n_mlp=8, channel_preset="rosinality")
    else:  # the synthfaces-world shape: 64 px, 256-d styles, 128 channels
        g = build_generator("stylegan2", size, style_dim=256, n_mlp=4, channel_max=128, channel_multiplier=1)
    # w-bar given explicitly: estimating it would cost mapping-network passes, irrelevant to speed
    g.latent_avg = torch.zeros(g.style_dim)
    return g.to(device).eval()


def bench(
    size: int, methods: list[str], device: torch.device, reps: int, memory_format: str, batch: int = 1
) -> list[dict]:
    rows = []
    for name in methods:
        m = BUILDERS[name](make_generator(size, device), device, memory_format).eval()
        x = torch.rand(batch, 3, m.input_size, m.input_size, device=device) * 2 - 1
        with torch.no_grad():
            t = _common.timed(lambda m=m, x=x: m.invert(x), device, reps, warmup=1)
        rows.append(
            {
                "method": name,
                "size": size,
                "input": m.input_size,
                "s_img": t / batch,
                "params_enc": m.parameter_count(include_generator=False),
                "params": m.parameter_count(include_generator=True),
            }
        )
        print(
            f"  {name:14s} {t / batch:9.3f} s/img  {rows[-1]['params_enc']:>13,d} encoder params", flush=True
        )
        del m, x
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=["64", "published"], choices=list(SETTINGS))
    ap.add_argument("--methods", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--reps", type=int, default=3, help="timed calls per method (the best is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-format", default="auto", choices=list(MEMORY_FORMATS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, memory format {args.memory_format}, batch 1")
    rows: list[dict] = []
    for setting in args.settings:
        size = SETTINGS[setting]
        print(f"{setting}: {size} px generator")
        rows += bench(size, args.methods, device, args.reps, args.memory_format)
    print()
    header = f"{'method':14s} {'G px':>5s} {'input':>5s} {'s/img':>9s} {'x e4e':>6s} {'x psp':>6s} {'encoder params':>15s} {'with G':>13s}"
    print(header)
    print("-" * len(header))
    for r in rows:

        def ratio(base: str, r: dict = r) -> float:
            b = next((b for b in rows if b["size"] == r["size"] and b["method"] == base), None)
            return r["s_img"] / b["s_img"] if b else float("nan")

        print(
            f"{r['method']:14s} {r['size']:5d} {r['input']:5d} {r['s_img']:9.3f} {ratio('e4e'):6.2f} "
            f"{ratio('psp'):6.2f} {r['params_enc']:15,d} {r['params']:13,d}"
        )
    for r in rows:
        if r["method"].startswith("restyle") and any(
            b["method"] == "psp" and b["size"] == r["size"] for b in rows
        ):
            psp = next(b for b in rows if b["method"] == "psp" and b["size"] == r["size"])
            x = r["s_img"] / psp["s_img"]
            verdict = "meets" if x <= 5.5 else "misses"
            print(
                f"target {r['method']} (5 iterations) <= 5.5x psp at {r['size']} px: {x:.2f}x, {verdict} it"
            )


if __name__ == "__main__":
    main()

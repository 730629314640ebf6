"""E2Style (1/2/3 stages) and DSE against e4e: encoder time, inversion time and parameters, one run.

Two settings, batch 1 (the paper's Table I times are per image):

* ``64``: the synthfaces-world generator (64 px StyleGAN2, 256-d styles), 64 px input;
* ``published``: 1024 px StyleGAN2 (rosinality channel table, 512-d styles), 256 px input for
  e4e and E2Style, 1024 px for DSE (its encoder reads the generator's resolution).

Every model uses ``preset="published"`` (IR-SE50 e4e; E2Style's IR-SE50 stages 1-3 and 7x7 heads,
plus the paper's 7/5/3 heads as ``e2style-paperpool``; DSE's startf 16 * 1024 / size, cap 512),
so the ratios compare architectures. Printed per model: encoder seconds per image (the encoders
only; E2Style's refinement stages are fed the generator's image, which is not timed), inversion
seconds per image (``invert``, generator passes included), encoder parameters, and both ratios to
e4e. The issue's target: E2Style 1-stage encoder time <= 0.5 x e4e's and parameters <= 0.4 x
(paper: 0.04 s vs 0.09 s, 85 M vs 262 M). Weights are random: speed does not depend on them.

    python benchmarks/bench_e2style_dse.py --settings 64 --reps 3
    python benchmarks/bench_e2style_dse.py --settings published --reps 1
"""

from __future__ import annotations

import argparse

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch

from egain.generators import build_generator
from egain.methods import create

MODELS = ("e4e", "e2style-1", "e2style-2", "e2style-3", "e2style-paperpool-1", "dse")


def make_generator(size: int):
    torch.manual_seed(0)
    if size >= 256:
        g = build_generator("stylegan2", size, style_dim=512, n_mlp=8, channel_preset="rosinality")
    else:
        g = build_generator("stylegan2", size, style_dim=256, n_mlp=4, channel_max=128, channel_multiplier=1)
    g.latent_avg = torch.zeros(g.style_dim)  # w-bar given: estimating it is irrelevant to speed
    return g.eval()


def build(name: str, g):
    if name == "e4e":
        m = create("e4e", generator=g, preset="published")
        return m, m.basic_encoder
    if name == "dse":
        m = create("dse", generator=g, preset="published")
        return m, m.encoder
    stages = int(name.rsplit("-", 1)[1])
    pools = "paper" if "paperpool" in name else "code"
    m = create("e2style", generator=g, stages=stages, preset="published", pool_sizes=pools)
    return m, m.encoders


def encoder_call(name: str, m, x: torch.Tensor):
    """The encoders alone on one image (E2Style's refinement stages get a fixed previous image)."""
    if name == "e4e":
        return lambda: m.basic_encoder(x)
    if name == "dse":
        return lambda: m.encoder(x, m.noise_mode)
    prev = torch.zeros_like(x)

    def run():
        m.encoders[0](x)
        for enc in m.encoders[1:]:
            enc(torch.cat([x, prev], 1))

    return run


def bench(setting: str, reps: int, models: list[str]) -> None:
    size = 64 if setting == "64" else 1024
    g = make_generator(size)
    print(
        f"\n== setting {setting}: {size} px StyleGAN2 generator, batch 1, {torch.get_num_threads()} thread(s) =="
    )
    print(
        f"{'model':22s} {'input':>5s} {'enc s/img':>10s} {'inv s/img':>10s} {'enc params':>12s} "
        f"{'enc time/e4e':>12s} {'params/e4e':>10s} {'inv time/e4e':>12s}"
    )
    base = None
    for name in models:
        m, enc = build(name, g)
        params = sum(p.numel() for p in (enc.parameters()))
        x = torch.rand(1, 3, m.input_size, m.input_size) * 2 - 1
        with torch.inference_mode():
            t_enc = _common.timed(encoder_call(name, m, x), reps=reps)
            t_inv = _common.timed(lambda m=m, x=x: m.invert(x), reps=reps)
        if name == "e4e":
            base = (t_enc, params, t_inv)
        r = (t_enc / base[0], params / base[1], t_inv / base[2]) if base else (float("nan"),) * 3
        print(
            f"{name:22s} {m.input_size:5d} {t_enc:10.4f} {t_inv:10.4f} {params / 1e6:11.2f}M "
            f"{r[0]:12.2f} {r[1]:10.2f} {r[2]:12.2f}",
            flush=True,
        )
        del m, enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["64", "published"], choices=["64", "published"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models if "e4e" in args.models else ["e4e", *args.models]
    for setting in args.settings:
        bench(setting, args.reps, models)


if __name__ == "__main__":
    main()

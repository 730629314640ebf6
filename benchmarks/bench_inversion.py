"""Inversion speed and size of e4e, hfgi, egain and egain-external, measured in one run.

Two settings:

* ``64``: the synthfaces world (64 px generator, small encoders; ``preset="small"``), batch 8;
* ``published``: the published sizes -- IR-SE50 e4e encoder on 256 px input, 1024 px generator
  (StyleGAN2 for e4e/HFGI, SWAGAN for egain/egain-external; rosinality channel table), batch 1.

Printed per method: images/s, parameters (with and without G), FLOPs per image
(``torch.utils.flop_counter``, counted on the meta device so counting costs no compute), the ratio

    measured time / compute bound,   compute bound = FLOPs / dense-conv FLOP/s

with the dense 3x3-conv FLOP/s timed in the same process right before and after each method (the
better of the two; the yardstick of ``benchmarks/_common.py``, shared by every benchmark), and the
cost of each method relative to e4e on the same generator size (the issue's target: egain <= 2.5x
e4e; HFGI at 1024 within 1.3x of its compute bound). Weights are random: speed does not depend on
them.

    python benchmarks/bench_inversion.py                     # both settings (several minutes on CPU)
    python benchmarks/bench_inversion.py --settings 64 --reps 5
    python benchmarks/bench_inversion.py --settings published --methods hfgi --memory-format contiguous

The models run in the library's default memory format (``--memory-format auto``: channels_last on
CPU, see ``EGAINMethod.set_memory_format``); ``contiguous`` gives the NCHW path to compare.
"""

from __future__ import annotations

import argparse
import os

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch
from torch.utils.flop_counter import FlopCounterMode

from egain.generators import build_generator
from egain.methods import create
from egain.nn.layout import MEMORY_FORMATS
from egain.ops.modconv import MODES

METHODS = ("e4e", "hfgi", "egain", "egain-external")
GENERATOR_ARCH = {"e4e": "stylegan2", "hfgi": "stylegan2", "egain": "swagan", "egain-external": "swagan"}


def make_generator(arch: str, size: int, device: torch.device | str):
    torch.manual_seed(0)
    if size >= 256:
        g = build_generator(arch, size, style_dim=512, n_mlp=8, channel_preset="rosinality")
    else:  # the synthfaces-world shape: 64 px, 256-d styles, 128 channels
        g = build_generator(arch, size, style_dim=256, n_mlp=4, channel_max=128, channel_multiplier=1)
    return g.to(device).eval()


def method_for(
    name: str, size: int, device: torch.device | str, memory_format: str = "auto", modconv: str = "auto"
):
    g = make_generator(GENERATOR_ARCH[name], size, device)
    g.set_modconv_mode(modconv)
    # w-bar given explicitly: estimating it would cost mapping-network passes, irrelevant to speed
    g.latent_avg = torch.zeros(g.style_dim, device=device)
    return create(name, generator=g, device=device, memory_format=memory_format).eval()


def count_flops(name: str, size: int, batch: int) -> int:
    """FLOPs of one ``run`` (the inversion forward) on the meta device (the same in any layout)."""
    with torch.device("meta"):
        m = method_for(name, size, "meta", "contiguous")
        x = torch.zeros(batch, 3, m.input_size, m.input_size)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            m.run(x)
    return int(counter.get_total_flops())


def bench_setting(
    size: int,
    batch: int,
    reps: int,
    warmup: int,
    device: torch.device,
    conv_rate: float,
    methods: tuple[str, ...] = METHODS,
    memory_format: str = "auto",
    modconv: str = "auto",
) -> list[dict]:
    rows = []
    for name in methods:
        m = method_for(name, size, device, memory_format, modconv)
        x = torch.rand(batch, 3, m.input_size, m.input_size, device=device) * 2 - 1
        with torch.no_grad():
            # The dense-conv yardstick is re-measured next to each timing: on a shared machine the
            # load changes within minutes, and a ratio is only meaningful under the same load.
            rate_before = _common.dense_conv_flops_per_s(device)
            t = _common.timed(lambda m=m, x=x: m.run(x), device, reps, warmup)
            conv_rate = max(rate_before, _common.dense_conv_flops_per_s(device))
        try:
            flops = count_flops(name, size, batch)
        except Exception as exc:  # meta tracing is best effort; the timing stands on its own
            print(f"  (flop count for {name} failed: {type(exc).__name__}: {exc})")
            flops = 0
        bound = flops / conv_rate if flops else float("nan")
        rows.append(
            {
                "method": name,
                "size": size,
                "input": m.input_size,
                "G": GENERATOR_ARCH[name],
                "img_s": batch / t,
                "s_img": t / batch,
                "params": m.parameter_count(True),
                "params_noG": m.parameter_count(False),
                "gflop_img": flops / batch / 1e9,
                "ratio_bound": t / bound if flops else float("nan"),
                "conv_gflops": conv_rate / 1e9,
            }
        )
        print(
            f"  {name:15s} {rows[-1]['img_s']:8.2f} img/s  {rows[-1]['s_img']:8.3f} s/img  "
            f"{rows[-1]['gflop_img']:8.2f} GFLOP/img  ratio {rows[-1]['ratio_bound']:5.2f} "
            f"(dense conv {conv_rate / 1e9:.1f} GFLOP/s)",
            flush=True,
        )
        del m, x
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=["64", "published"], choices=["64", "published"])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions at 64 px")
    ap.add_argument(
        "--published-reps",
        type=int,
        default=2,
        help="timed repetitions at the published sizes, after one untimed warm-up call (the first "
        "call builds the convolution primitives and weight caches, a one-time cost of a session)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument(
        "--memory-format",
        default="auto",
        choices=list(MEMORY_FORMATS),
        help="layout of the encoders and the generator (auto: channels_last on CPU, the library default)",
    )
    ap.add_argument(
        "--modconv-mode",
        default="auto",
        choices=list(MODES),
        help="the generator's modulated-convolution form (auto: the library's choice per call)",
    )
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = tuple(args.methods)
    conv_rate = _common.dense_conv_flops_per_s(device, reps=3)
    print(
        f"device {device}, {torch.get_num_threads()} threads; dense 3x3 conv: {conv_rate / 1e9:.1f} GFLOP/s; "
        f"memory format {args.memory_format}; modconv {args.modconv_mode}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    all_rows: list[dict] = []
    for setting in args.settings:
        if setting == "64":
            print("64 px (synthfaces world, small encoders), batch 8:")
            all_rows += bench_setting(
                64, 8, args.reps, 1, device, conv_rate, methods, args.memory_format, args.modconv_mode
            )
        else:
            print("published sizes (IR-SE50 e4e on 256 px input, 1024 px generator), batch 1:")
            all_rows += bench_setting(
                1024,
                1,
                args.published_reps,
                1,
                device,
                conv_rate,
                methods,
                args.memory_format,
                args.modconv_mode,
            )
    print()
    header = f"{'method':15s} {'G':9s} {'size':>5s} {'img/s':>8s} {'s/img':>8s} {'x e4e':>6s} {'params':>12s} {'params-G':>12s} {'GFLOP/img':>10s} {'t/bound':>8s}"
    print(header)
    print("-" * len(header))
    for r in all_rows:
        base = next((b for b in all_rows if b["size"] == r["size"] and b["method"] == "e4e"), None)
        x_e4e = r["s_img"] / base["s_img"] if base else float("nan")  # without e4e in --methods: nan
        print(
            f"{r['method']:15s} {r['G']:9s} {r['size']:5d} {r['img_s']:8.2f} {r['s_img']:8.3f} "
            f"{x_e4e:6.2f} {r['params']:12,d} {r['params_noG']:12,d} "
            f"{r['gflop_img']:10.2f} {r['ratio_bound']:8.2f}"
        )


if __name__ == "__main__":
    main()

"""How long ``egain demo`` takes with stand-ins of the bundled models' size (untrained weights).

Builds, in a temporary zoo, the three demo methods with the default 64 px generator configuration
and the methods' default ("small" preset) encoders, plus default-size synthfaces embedders, then runs
the whole demo once in-process and prints each phase and the ratio to the one-minute budget of
issue 6. The real bundle is what the lead trains; its sizes may be smaller than these defaults.

    python benchmarks/bench_demo.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EGAIN_NO_PROGRESS", "1")

import torch  # noqa: E402

BUDGET_S = 60.0


def build_zoo(folder: Path) -> dict[str, int]:
    import egain.methods as methods
    from egain.faces.embedder import embedder_checkpoint
    from egain.faces.nets import FaceNetConfig, IRSEFaceNet
    from egain.faces.preprocess import FacePreprocess
    from egain.generators import build_generator, save_generator
    from egain.workflows.bundled import BUNDLED_METHODS, DEMO_METHODS, EMBEDDERS

    gens = {arch: build_generator(arch, 64).eval() for arch in ("stylegan2", "swagan")}
    for arch, g in gens.items():
        g.latent_avg = g.mean_latent(4096, seed=0)[0]  # trained generators carry theirs
        save_generator(g, folder / f"gan-{arch}-64.pt")
    params = {}
    for label in DEMO_METHODS:
        spec = BUNDLED_METHODS[label]
        arch = "swagan" if "swagan" in spec.generator else "stylegan2"
        model = methods.create(spec.method, generator=gens[arch])
        params[label] = model.parameter_count()
        model.save(folder / f"{spec.weights}.pt")
    cfg = FaceNetConfig()
    for metric, (_, name) in EMBEDDERS.items():
        net = IRSEFaceNet.from_config(cfg).eval()
        pre = FacePreprocess(input_size=cfg.input_size, reference_size=64, crop=(8, 56, 8, 56))
        torch.save(
            embedder_checkpoint(net, cfg, pre, "arcface" if metric == "id" else "magface"),
            folder / f"{name}.pt",
        )
    return params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from egain import zoo
    from egain.workflows.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zoo.WEIGHTS_DIR = tmp / "zoo"
        zoo.WEIGHTS_DIR.mkdir()
        params = build_zoo(zoo.WEIGHTS_DIR)
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_demo(tmp / "out", device="cpu", progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"stand-in models (parameters incl. generator): {', '.join(f'{k} {v / 1e6:.2f} M' for k, v in params.items())}"
    )
    for label, run in result.runs.items():
        print(f"  {label:<8} {run.seconds_per_image * 1000:7.1f} ms/image over {run.images} images")
    print(result.table)
    print(
        f"demo wall time {wall:.1f} s, CPU time {cpu:.1f} s on {args.threads} thread(s) "
        f"(CPU time / threads = {cpu / args.threads:.1f} s: the wall time on an idle machine at best); "
        f"ratio to the {BUDGET_S:.0f} s budget: wall {wall / BUDGET_S:.2f}, "
        f"CPU/threads {cpu / args.threads / BUDGET_S:.2f}"
    )


if __name__ == "__main__":
    main()

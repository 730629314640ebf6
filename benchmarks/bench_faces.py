"""Face-embedding throughput against the dense-convolution compute bound, measured in one run.

For the synthfaces IR-SE network (default config, and any given with --widths/--units/--size), the
published ArcFace IR-SE50 (256 px in, crop + pool to 112) and MagFace iResNet100 (112 px) this prints

* inference images/s of ``FaceEmbedder.embed`` (no grad) and the ratio measured / compute bound;
* for the synthfaces network, training steps/s of one ArcFace step (forward, backward, SGD) at the
  given batch, and its ratio to the bound;

where FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` and the bound divides them by the
dense 3x3-convolution FLOP/s of the shared yardstick (``benchmarks/_common.py``) timed in the same
process, so machine load affects both sides. Times are the best of ``--reps`` after one warm-up.

    python benchmarks/bench_faces.py                      # ~1-2 min on 2 CPU cores
    python benchmarks/bench_faces.py --skip-published --widths 16,32,64,128 --stem 16
"""

from __future__ import annotations

import argparse

import _common  # first: prepares OpenMP and sys.path before torch loads
import torch
from torch.utils.flop_counter import FlopCounterMode

from egain.faces.embedder import FaceEmbedder
from egain.faces.losses import ArcFaceLoss
from egain.faces.nets import FaceNetConfig, IRSEFaceNet, arcface_irse50, iresnet
from egain.faces.preprocess import FacePreprocess, arcface_preprocess, magface_preprocess


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_embed(name: str, emb: FaceEmbedder, size: int, batch: int, reps: int, dense: float) -> None:
    x = torch.rand(batch, 3, size, size) * 2 - 1

    def run():
        with torch.no_grad():
            emb.embed(x)

    flops = count_flops(run)
    dt = _common.timed(run, reps=reps)
    bound = flops / dense
    print(
        f"{name:<28} embed  {batch / dt:8.1f} img/s  {flops / batch / 1e9:6.2f} GFLOP/img  "
        f"measured/bound {dt / bound:5.2f}"
    )


def bench_train(cfg: FaceNetConfig, batch: int, reps: int, dense: float) -> None:
    net = IRSEFaceNet.from_config(cfg).train()
    head = ArcFaceLoss(cfg.embedding_dim, 1000)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, cfg.input_size, cfg.input_size) * 2 - 1
    y = torch.randint(0, 1000, (batch,))

    def step():
        out = head(net(x), y)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    flops = count_flops(step)
    dt = _common.timed(step, reps=reps)
    print(
        f"{'synthfaces train step':<28} batch {batch}: {1 / dt:6.2f} steps/s = {batch / dt:7.1f} img/s  "
        f"measured/bound {dt / (flops / dense):5.2f}  -> 1 h = {3600 / dt:,.0f} steps"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FaceNetConfig()
    p.add_argument("--size", type=int, default=d.input_size)
    p.add_argument("--widths", default=",".join(map(str, d.widths)))
    p.add_argument("--units", default=",".join(map(str, d.units)))
    p.add_argument("--stem", type=int, default=d.stem_channels)
    p.add_argument("--embedding-dim", type=int, default=d.embedding_dim)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-published", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = FaceNetConfig(
        input_size=args.size,
        widths=tuple(int(v) for v in args.widths.split(",")),
        units=tuple(int(v) for v in args.units.split(",")),
        stem_channels=args.stem,
        embedding_dim=args.embedding_dim,
    )
    dense = _common.dense_conv_flops_per_s("cpu", reps=3)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, dense 3x3 conv {dense / 1e9:.1f} GFLOP/s"
    )
    print(f"synthfaces net: {cfg}")
    ours = FaceEmbedder(IRSEFaceNet.from_config(cfg), FacePreprocess(input_size=cfg.input_size), "synthfaces")
    bench_embed("synthfaces IR-SE", ours, cfg.input_size, args.batch, args.reps, dense)
    bench_train(cfg, args.batch, args.reps, dense)
    if not args.skip_published:
        bench_embed(
            "ArcFace IR-SE50 (256 in)",
            FaceEmbedder(arcface_irse50(), arcface_preprocess(), "a"),
            256,
            8,
            2,
            dense,
        )
        bench_embed(
            "MagFace iResNet100 (112)",
            FaceEmbedder(iresnet(100), magface_preprocess(), "m"),
            112,
            8,
            2,
            dense,
        )


if __name__ == "__main__":
    main()

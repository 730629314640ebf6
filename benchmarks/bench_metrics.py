"""Pixel-metric throughput: egain.metrics vs scikit-image + sewar, per image, measured in one run.

Usage::

    python benchmarks/bench_metrics.py [--size 256] [--images 16] [--repeats 3] [--threads 2]

The full pixel metric set of ``egain evaluate`` without LPIPS and face ID -- SSIM (raw and [0, 1]),
SCC, VIF-p, PSNR, MAE, MSE -- on natural 256 px images (scikit-image's samples with noise, blur,
JPEG and shift distortions), against the reference implementations the numbers must agree with:
``skimage.metrics.structural_similarity`` (Gaussian, sigma 1.5, population covariance) and
``peak_signal_noise_ratio``, ``sewar.scc``, ``sewar.vifp``, ``sewar.mse`` and a numpy MAE.

Reference and egain runs are interleaved round by round (best of ``--repeats`` each), so that load
from other processes on a shared machine hits both alike. Two ratios (reference time per image /
egain time per image) are printed: wall clock with egain on ``--threads`` threads (the references
are single-threaded), and CPU time with egain on one thread, which stays meaningful when other
processes oversubscribe the cores. The largest per-image disagreement is printed as well.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import _common  # noqa: F401  first: prepares OpenMP and sys.path before torch loads
import numpy as np
import sewar
import skimage.data
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from egain.metrics import pixel_metrics


def make_pairs(size: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    bases = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    pairs = []
    for i in range(n):
        base = bases[i % len(bases)]
        h, w = base.shape[:2]
        s = min(h, w)
        crop = base[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        a = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
        kind = i % 4
        if kind == 0:
            b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).round()
        elif kind == 1:
            b = ndimage.gaussian_filter(a.astype(np.float64), (1.5, 1.5, 0)).round()
        elif kind == 2:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="JPEG", quality=30)
            b = np.asarray(Image.open(buf).convert("RGB"))
        else:
            b = np.roll(a, (1, 2), axis=(0, 1))
        pairs.append((a, np.asarray(b, dtype=np.uint8)))
    return pairs


def reference_scores(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    s = structural_similarity(
        a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    return {
        "ssim_raw": s,
        "ssim": (s + 1) / 2,
        "scc": sewar.scc(a, b),
        "vif": sewar.vifp(a, b),
        "psnr": peak_signal_noise_ratio(a, b, data_range=255),
        "mae": float(np.abs(a.astype(np.float64) - b).mean() / 255.0),
        "mse": sewar.mse(a, b) / 255.0**2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 2)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = make_pairs(args.size, args.images)
    x = torch.from_numpy(np.stack([a for a, _ in pairs])).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack([b for _, b in pairs])).permute(0, 3, 1, 2).contiguous()

    ours = pixel_metrics(x, y)  # warm-up (oneDNN builds its kernels on first use of a shape)
    ref_rows = [reference_scores(a, b) for a, b in pairs[:4]]  # warm-up + agreement check
    worst = max(abs(float(ours[k][i]) - r[k]) for i, r in enumerate(ref_rows) for k in r)

    n_ref = min(len(pairs), 4)  # the references are slow; 4 images per round is plenty

    def run_reference() -> None:
        for a, b in pairs[:n_ref]:
            reference_scores(a, b)

    def timed(fn, clock) -> float:
        t = clock()
        fn()
        return clock() - t

    # wall clock, egain on --threads threads (the references are single-threaded numpy / scipy)
    wall_ref, wall_ours = [], []
    for _ in range(args.repeats):
        wall_ref.append(timed(run_reference, time.perf_counter) / n_ref)
        wall_ours.append(timed(lambda: pixel_metrics(x, y), time.perf_counter) / len(pairs))
    # egain on one thread: wall clock, and CPU time of this process (insensitive to other processes'
    # load, which on an oversubscribed machine stalls multi-threaded runs at every op's barrier)
    torch.set_num_threads(1)
    pixel_metrics(x, y)
    wall1, cpu_ref, cpu_ours = [], [], []
    for _ in range(args.repeats):
        cpu_ref.append(timed(run_reference, time.process_time) / n_ref)
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        pixel_metrics(x, y)
        wall1.append((time.perf_counter() - t_wall) / len(pairs))
        cpu_ours.append((time.process_time() - t_cpu) / len(pairs))
    torch.set_num_threads(args.threads)

    wr, wo, w1, cr, co = min(wall_ref), min(wall_ours), min(wall1), min(cpu_ref), min(cpu_ours)
    print(
        f"images: {len(pairs)} x {args.size}x{args.size} RGB (reference: {n_ref} per round), best of {args.repeats}"
    )
    print("metrics: ssim, ssim_raw, scc, vif (VIF-p), psnr, mae, mse")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, CPU cores visible: {os.cpu_count()}")
    print(f"wall clock  scikit-image + sewar      : {wr * 1000:8.1f} ms / image")
    print(
        f"wall clock  egain.metrics, {args.threads} thread(s): {wo * 1000:8.1f} ms / image   speed-up {wr / wo:6.1f}x"
    )
    print(f"wall clock  egain.metrics, 1 thread   : {w1 * 1000:8.1f} ms / image   speed-up {wr / w1:6.1f}x")
    print(f"CPU time    scikit-image + sewar      : {cr * 1000:8.1f} ms / image")
    print(f"CPU time    egain.metrics, 1 thread   : {co * 1000:8.1f} ms / image   speed-up {cr / co:6.1f}x")
    print(f"largest |egain - reference| on {len(ref_rows)} images: {worst:.2e}")


if __name__ == "__main__":
    main()

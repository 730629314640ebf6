"""Throughput of the synthfaces renderer: images/s at 64 and 256 px, one process and N workers.

Run: ``python benchmarks/bench_synthfaces.py [--n64 600] [--n256 60] [--workers 2]``.
Rendering only (what the on-the-fly Dataset does) and, at 64 px, also writing PNGs + labels (what
``egain data synthfaces`` does). All figures come from this one run, so the ratios printed at the
end compare like with like on the same machine state. CPU time per image is printed as well: on a
shared machine it is the steadier number (wall time includes waiting for other processes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

from egain.data.synthfaces.params import DEFAULT_RARE_RATES
from egain.data.synthfaces.recipes import render_item
from egain.data.synthfaces.writer import write_synthfaces


def _render_range(args: tuple[int, int, int]) -> float:
    start, stop, size = args
    c0 = time.process_time()
    for i in range(start, stop):
        render_item(0, i // 10, i % 10, size, DEFAULT_RARE_RATES)
    return time.process_time() - c0


def measure(n: int, size: int, workers: int) -> tuple[float, float]:
    """(images/s wall, CPU ms per image) for rendering ``n`` images."""
    _render_range((0, 2, size))  # warm caches (noise tiles, coordinate grids)
    if workers == 1:
        t0 = time.perf_counter()
        cpu = _render_range((0, n, size))
        wall = time.perf_counter() - t0
    else:
        chunks = [(k * n // workers, (k + 1) * n // workers, size) for k in range(workers)]
        ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            pool.map(_render_range, [(0, 2, size)] * workers)  # warm every worker
            t0 = time.perf_counter()
            cpu = sum(pool.map(_render_range, chunks))
            wall = time.perf_counter() - t0
    return n / wall, 1000.0 * cpu / n


def numpy_call_latency_us() -> float:
    """Best-of time of one numpy call on a tiny array: the machine's per-call overhead.

    Rendering a 64 px face is mostly ~1500 such calls, so this number (about 0.3-0.6 us on an idle
    modern core) tells how busy or slow the machine was when the figures below were taken."""
    import numpy as np

    a = np.ones((8, 8), np.float32)
    out = np.empty_like(a)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(5000):
            np.add(a, a, out=out)
        best = min(best, (time.perf_counter() - t0) / 5000)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n64", type=int, default=600)
    ap.add_argument("--n256", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("EGAIN_NO_PROGRESS", "1")
    print(f"cpus: {os.cpu_count()}  load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"numpy call latency: {numpy_call_latency_us():.2f} us (tiny np.add, best of 10 x 5000)")
    res, cpu = {}, {}
    for size, n in ((64, args.n64), (256, args.n256)):
        for w in (1, args.workers):
            ips, cpu_ms = measure(n, size, w)
            res[(size, w)], cpu[(size, w)] = ips, cpu_ms
            print(f"render {size:3d}px  workers={w}:  {ips:7.1f} img/s  ({cpu_ms:.2f} CPU ms/img, n={n})")
    with tempfile.TemporaryDirectory() as tmp:
        n_id = max(1, args.n64 // 10)
        for w in (1, args.workers):
            t0 = time.perf_counter()
            write_synthfaces(
                os.path.join(tmp, f"w{w}"), n_id, 10, 64, workers=w, show_progress=False, overwrite=True
            )
            ips = n_id * 10 / (time.perf_counter() - t0)
            res[("write", w)] = ips
            print(f"write  64px  workers={w}:  {ips:7.1f} img/s  (PNG + labels + contact sheet)")
    w = args.workers
    # Rendering is CPU-bound and embarrassingly parallel, so on w otherwise idle cores the rate is
    # w / (CPU time per image); on a busy machine the wall-clock figures above fall short of it.
    for size in (64, 256):
        print(f"CPU-bound rate on {w} idle cores at {size}px: {1000.0 * w / cpu[(size, w)]:7.1f} img/s")
    print(f"ratio {w} workers / 1 at 64px:   {res[(64, w)] / res[(64, 1)]:.2f}x")
    print(f"ratio {w} workers / 1 at 256px:  {res[(256, w)] / res[(256, 1)]:.2f}x")
    print(f"ratio 64px / 256px (1 worker):  {res[(64, 1)] / res[(256, 1)]:.1f}x")
    print(f"ratio write / render at 64px ({w} workers): {res[('write', w)] / res[(64, w)]:.2f}x")


if __name__ == "__main__":
    main()

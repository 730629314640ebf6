"""Throughput of the synthfaces renderer and writer: images/s, one process and N workers.

Run: ``python benchmarks/bench_synthfaces.py [--n64 600] [--n256 60] [--n-write 3000] [--workers 2]
[--repeats 3] [--baseline REF]``.

* Rendering only (what the on-the-fly Dataset does) at 64 and 256 px, parsing maps off and on.
* Writing (what ``egain data synthfaces`` does: PNGs, labels.jsonl, sheets) of ``--n-write`` 64 px
  images through the real command in a fresh process, 1 and N workers, ``--parsing`` off and on.
  With ``--baseline REF`` the same command of git revision REF (its ``egain/`` extracted to a
  temporary folder) runs in the same loop, interleaved with the current code, so "after / before"
  ratios compare like with like on the same machine state. Each write configuration runs
  ``--repeats`` times, interleaved; the best run counts (other processes only ever slow a run
  down, so the best is the least disturbed) and the median is printed beside it.

All figures come from this one run. CPU time per image is printed as well: on a shared machine it
is the steadier number (wall time includes waiting for other processes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# not ``import _common``: that loads torch, and the render workers below should fork without it,
# as ``egain data synthfaces`` does
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from egain.data.synthfaces.params import DEFAULT_RARE_RATES  # noqa: E402
from egain.data.synthfaces.recipes import render_item  # noqa: E402


def _render_range(args: tuple[int, int, int, bool]) -> float:
    start, stop, size, parsing = args
    c0 = time.process_time()
    for i in range(start, stop):
        render_item(0, i // 10, i % 10, size, DEFAULT_RARE_RATES, parsing=parsing)
    return time.process_time() - c0


def measure(n: int, size: int, workers: int, parsing: bool = False) -> tuple[float, float]:
    """(images/s wall, CPU ms per image) for rendering ``n`` images."""
    _render_range((0, 2, size, parsing))  # warm caches (noise tiles, coordinate grids)
    if workers == 1:
        t0 = time.perf_counter()
        cpu = _render_range((0, n, size, parsing))
        wall = time.perf_counter() - t0
    else:
        chunks = [(k * n // workers, (k + 1) * n // workers, size, parsing) for k in range(workers)]
        ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            pool.map(_render_range, [(0, 2, size, parsing)] * workers)  # warm every worker
            t0 = time.perf_counter()
            cpu = sum(pool.map(_render_range, chunks))
            wall = time.perf_counter() - t0
    return n / wall, 1000.0 * cpu / n


def write_run(tree: Path, out: Path, n: int, workers: int, parsing: bool) -> tuple[float, float]:
    """(images/s wall, CPU ms per image over all processes) of ``egain data synthfaces`` from
    ``tree`` writing ``n`` 64 px images (start-up of the command included, as a user sees it)."""
    cmd = [sys.executable, "-m", "egain.cli.main", "data", "synthfaces", "--out", str(out)]
    cmd += ["--identities", str(max(1, n // 10)), "--per-identity", "10", "--size", "64", "--overwrite"]
    cmd += ["--workers", str(workers)] + (["--parsing"] if parsing else [])
    env = {**os.environ, "PYTHONPATH": str(tree), "EGAIN_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    n = max(1, n // 10) * 10
    return n / wall, 1000.0 * cpu / n


_WRITER_CPU = """
import os, shutil, sys, tempfile, time
from egain.data.synthfaces.writer import write_synthfaces
kw = {"parsing": True} if sys.argv[1] == "1" else {}
batches, per = int(sys.argv[2]), 50
out = tempfile.mkdtemp()
write_synthfaces(out, 2, 10, 64, overwrite=True, show_progress=False, sheet_images=1, **kw)  # warm up
best = float("inf")
for b in range(batches):
    shutil.rmtree(out)
    c = time.thread_time()
    write_synthfaces(out, per // 10, 10, 64, seed=b, show_progress=False, sheet_images=1, **kw)
    best = min(best, (time.thread_time() - c) / per)
shutil.rmtree(out)
print(1000.0 * best)
"""


def writer_cpu_ms(tree: Path, parsing: bool, batches: int) -> float:
    """CPU ms per image of the writer in one process (render, labels, PNG encoding and file
    writes), the best of ``batches`` batches of 50 images: the least disturbed batch, so the
    figure holds on a busy machine as well; 1000 / it is the rate of one idle core. (Sheets of
    one image: the sheets' fixed cost, nothing in a 3000-image run, would weigh on 50 images.)"""
    env = {**os.environ, "PYTHONPATH": str(tree), "EGAIN_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _WRITER_CPU, "1" if parsing else "0", str(batches)]
    return float(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)


def extract(ref: str, dest: Path) -> Path:
    """``egain/`` of git revision ``ref`` under ``dest`` (a tree to run the baseline from)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "egain"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


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
    ap.add_argument("--n64", type=int, default=600, help="images rendered at 64 px (render only)")
    ap.add_argument("--n256", type=int, default=60, help="images rendered at 256 px (render only)")
    ap.add_argument("--n-write", type=int, default=3000, help="64 px images written per command run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each write configuration (best counts)")
    ap.add_argument("--cpu-batches", type=int, default=12, help="batches of 50 for the writer CPU figure")
    ap.add_argument("--baseline", default=None, help="git revision to compare the writer against")
    args = ap.parse_args()
    os.environ.setdefault("EGAIN_NO_PROGRESS", "1")
    w = args.workers

    def load() -> str:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())

    print(f"cpus: {os.cpu_count()}  load average: {load()}")
    print(f"numpy call latency: {numpy_call_latency_us():.2f} us (tiny np.add, best of 10 x 5000)")
    res, cpu = {}, {}
    for size, n, maps in ((64, args.n64, (False, True)), (256, args.n256, (False,))):
        for parsing in maps:
            for k in (1, w):
                ips, cpu_ms = measure(n, size, k, parsing)
                res[(size, k, parsing)], cpu[(size, k, parsing)] = ips, cpu_ms
                tag = "+parsing" if parsing else "        "
                print(
                    f"render {size:3d}px {tag} workers={k}: {ips:7.1f} img/s  ({cpu_ms:.2f} CPU ms/img, n={n})"
                )

    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        if args.baseline:
            trees["base"] = extract(args.baseline, Path(tmp) / "base")
        # the load-robust figure first: CPU per image of the writer in one process, best batch
        wcpu = {}
        for parsing in (False, True):
            for which, tree in trees.items():
                if which == "base" and parsing:
                    continue
                wcpu[(which, parsing)] = ms = writer_cpu_ms(tree, parsing, args.cpu_batches)
                tag = "+parsing" if parsing else "        "
                print(
                    f"writer CPU {which:4s} 64px {tag}: {ms:.2f} ms/img (best of {args.cpu_batches} x 50) "
                    f"= {1000.0 / ms:6.1f} img/s on one idle core  (load {load()})"
                )
        # interleaved: every configuration of the current code next to the baseline's, repeated
        configs = [
            (which, k, parsing)
            for parsing in (False, True)
            for k in (1, w)
            for which in trees
            if not (which == "base" and parsing)  # the baseline cannot write parsing maps
        ]
        runs: dict[tuple, list[tuple[float, float]]] = {c: [] for c in configs}
        for rep in range(args.repeats):
            for which, k, parsing in configs:
                got = write_run(trees[which], Path(tmp) / "out", args.n_write, k, parsing)
                runs[(which, k, parsing)].append(got)
                tag = "+parsing" if parsing else "        "
                print(
                    f"  run {rep + 1}: write {which:4s} 64px {tag} workers={k}: {got[0]:7.1f} img/s  "
                    f"({got[1]:.2f} CPU ms/img; load {load()})"
                )
        for (which, k, parsing), got in runs.items():
            ips = sorted(g[0] for g in got)
            best = max(got)
            res[("write", which, k, parsing)], cpu[("write", which, k, parsing)] = best
            tag = "+parsing" if parsing else "        "
            print(
                f"write {which:4s} 64px {tag} workers={k}: best {best[0]:7.1f} img/s, median "
                f"{ips[len(ips) // 2]:7.1f}  ({best[1]:.2f} CPU ms/img over all processes, n={args.n_write})"
            )

    # Rendering is CPU-bound and embarrassingly parallel, so on w otherwise idle cores the rate is
    # w / (CPU time per image); on a busy machine the wall-clock figures above fall short of it.
    for size in (64, 256):
        print(
            f"CPU-bound rate on {w} idle cores at {size}px: {1000.0 * w / cpu[(size, w, False)]:7.1f} img/s"
        )
    print(
        f"CPU-bound write rate, 1 idle core, parsing on: {1000.0 / cpu[('write', 'now', 1, True)]:7.1f} img/s"
    )
    print(f"ratio render {w} workers / 1 at 64px:   {res[(64, w, False)] / res[(64, 1, False)]:.2f}x")
    print(f"ratio render {w} workers / 1 at 256px:  {res[(256, w, False)] / res[(256, 1, False)]:.2f}x")
    print(f"ratio render 64px / 256px (1 worker):  {res[(64, 1, False)] / res[(256, 1, False)]:.1f}x")
    print(f"ratio render parsing on / off (CPU ms): {cpu[(64, 1, True)] / cpu[(64, 1, False)]:.2f}x")
    for parsing in (False, True):
        tag = "parsing on " if parsing else "parsing off"
        r = res[("write", "now", w, parsing)] / res[("write", "now", 1, parsing)]
        print(f"ratio write {w} workers / 1 ({tag}):  {r:.2f}x")
    for k in (1, w):
        r = res[("write", "now", k, True)] / res[("write", "now", k, False)]
        print(f"ratio write parsing on / off, {k} worker(s): {r:.2f}x img/s")
    if args.baseline:
        b = wcpu[("base", False)]
        print(
            f"ratio writer CPU/img {args.baseline} / now: parsing off {b / wcpu[('now', False)]:.2f}x, "
            f"parsing on {b / wcpu[('now', True)]:.2f}x (> 1: now is faster)"
        )
        for k in (1, w):
            r = res[("write", "now", k, False)] / res[("write", "base", k, False)]
            c = cpu[("write", "base", k, False)] / cpu[("write", "now", k, False)]
            rp = res[("write", "now", k, True)] / res[("write", "base", k, False)]
            print(
                f"ratio write now / {args.baseline}, {k} worker(s): {r:.2f}x img/s, {c:.2f}x less CPU/img; "
                f"with parsing maps {rp:.2f}x img/s"
            )


if __name__ == "__main__":
    main()

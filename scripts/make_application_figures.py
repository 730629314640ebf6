"""Figures and numbers of docs/applications.md (CPU, a few minutes; ``--restoration-iters 0`` skips training).

python scripts/make_application_figures.py --out docs/applications --work /tmp/egain_apps
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from egain import methods
from egain.applications.common import write_columns
from egain.applications.hiding import hide_image
from egain.applications.interpolation import interpolate
from egain.applications.mixing import style_mix
from egain.applications.swap import face_swap
from egain.applications.video import invert_video, write_video
from egain.data.synthfaces import render, sample_identity, sample_variation
from egain.data.synthfaces.sequences import render_sequence
from egain.faces import load_embedder
from egain.methods import prepare_images
from egain.utils.images import pil_to_tensor
from egain.workflows.examples import example_files

BUNDLED = ("e4e", "hfgi", "egain", "egain-external")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/applications")
    ap.add_argument("--work", default="/tmp/egain_apps")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--restoration-iters", type=int, default=300)
    ap.add_argument(
        "--video-methods",
        default=",".join(BUNDLED),
        help="video table: comma list of bundled labels or NAME=CHECKPOINT (as egain compare --methods)",
    )
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    numbers: dict = {}
    models = {n: methods.create(n) for n in BUNDLED}
    f = example_files()
    src, tgt = f[:3], f[3:6]

    # swap / mix / interpolate: one grid per application, a column per method
    cols, labels = [prepare_images(src, 64), prepare_images(tgt, 64)], ["source", "target"]
    for n, m in models.items():
        r = face_swap(m, src, tgt)
        if n == "e4e":
            cols.append(r.pasted)
            labels.append("pasted")
        cols.append(r.swapped)
        labels.append(n)
    write_columns(cols, labels, out / "swap.png", tile=96)
    cols, labels = [prepare_images(src, 64), prepare_images(tgt, 64)], ["content", "style"]
    for n, m in models.items():
        cols.append(style_mix(m, src, tgt))
        labels.append(n)
    write_columns(cols, labels, out / "mix.png", tile=96)
    rows, labels = [], [f"{k / 4:.2f}" for k in range(5)]
    for _n, m in models.items():
        rows.append(interpolate(m, f[:1], f[1:2], steps=5)[:, 0])
    write_columns(
        [torch.stack([r[k] for r in rows]) for k in range(5)], labels, out / "interpolation.png", tile=96
    )
    write_video(torch.cat([rows[2], rows[2].flip(0)]), out / "interpolation_egain.gif", 4.0, 2)

    # deep hiding
    ident = sample_identity(7, 3)
    carrier = render(ident, sample_variation(7, ident, 0), 256).image
    hid = []
    cols = [prepare_images(f[:1], 64)]
    labels = ["secret"]
    for n, m in models.items():
        for step in (1.0, 0.1, 0.01):
            for scheme in ("matching", "replacement") if step == 1.0 else ("matching",):
                stego, rep, imgs = hide_image(m, f[0], carrier, step=step, scheme=scheme)
                hid.append({"method": n, **rep.as_dict()})
                if step == 1.0 and scheme == "matching":
                    cols.append(imgs["revealed"])
                    labels.append(f"{n} revealed")
                    if n == "egain":
                        Image.fromarray(stego).save(out / "hiding_stego.png")
    Image.fromarray(carrier).save(out / "hiding_carrier.png")
    write_columns(cols, labels, out / "hiding.png", tile=96)
    numbers["hiding"] = hid

    # video
    emb = load_embedder("synthfaces-arcface", device="cpu")
    clips = []
    for ident_id in range(100, 100 + args.clips):
        ims, _ = render_sequence(0, ident_id, args.frames, 64)
        clips.append(torch.stack([pil_to_tensor(Image.fromarray(i)) for i in ims]))
    vid: dict = {}
    strip = [clips[0][::4]]
    strip_labels = ["source"]
    from egain.workflows.bundled import label_name, load_bundled, parse_labels

    video_models = {label_name(lb): load_bundled(lb) for lb in parse_labels(args.video_methods, BUNDLED)}
    for n, m in video_models.items():
        for smooth in (0.0, 1.0):
            per = []
            for i, c in enumerate(clips):
                recon, met, _ = invert_video(m, c, smooth=smooth, embedder=emb)
                per.append(met)
                if i == 0 and smooth == 0:
                    strip.append(recon[::4])
                    strip_labels.append(n)
                    write_video(torch.cat([c, recon], -1), out / f"video_{n}.gif", 8.0, 2)
            vid[f"{n}|smooth={smooth:g}"] = {
                "per_clip": per,
                "mean": {k: sum(p[k] for p in per) / len(per) for k in per[0]},
            }
    write_columns(
        [torch.stack([s[k] for s in strip]) for k in range(strip[0].shape[0])],
        [f"t={4 * k}" for k in range(strip[0].shape[0])],
        out / "video.png",
        tile=96,
    )
    numbers["video"] = vid

    # restoration: tiny pSp models trained here (CPU, short), scored against clean eval images
    if args.restoration_iters > 0:
        from egain.applications.restoration import evaluate_restoration
        from egain.cli.main import main as egain_main
        from egain.data.synthfaces import SynthFacesDataset

        ds = SynthFacesDataset.eval_set(size=64)
        clean = torch.stack([ds[i][0] for i in range(32)])
        rest = {}
        cols, labels = [clean[:4]], ["clean"]
        for mode in ("colorize", "inpaint", "superres:4", "sketch"):
            run = work / f"psp_{mode.replace(':', '_')}"
            t0 = time.time()
            argv = [
                "train",
                "--method",
                "psp",
                "--generator",
                "zoo:gan-stylegan2-64",
                "--data",
                "synthfaces:2000x1,seed=0,split=train",
                "--out",
                str(run),
                "--iters",
                str(args.restoration_iters),
                "--batch",
                "4",
                "--lr",
                "1e-3",
                "--lambda-lpips",
                "0",
                "--lambda-id",
                "0",
                "--device",
                "cpu",
                "--corrupt",
                mode,
                "--val-every",
                str(args.restoration_iters),
                "--ckpt-every",
                str(args.restoration_iters),
                "--config",
                json.dumps(
                    {"encoder": {"units": [1, 1, 1, 1], "widths": [16, 32, 48, 64], "head_channels": 64}}
                ),
            ]
            assert egain_main(argv) == 0
            m = methods.create("psp", checkpoint=run / "model.pt")
            report, r = evaluate_restoration(m, clean, mode, seed=0)
            plain, _ = evaluate_restoration(models["e4e"], clean, mode, seed=0)
            rest[mode] = {
                "trained_psp": report.as_dict(),
                "bundled_e4e_on_corrupted": plain.restored,
                "train_seconds": round(time.time() - t0, 1),
            }
            cols += [r["input"][:4], r["restored"][:4]]
            labels += [mode, f"psp-{mode.split(':')[0]}"]
        write_columns(cols, labels, out / "restoration.png", tile=96)
        numbers["restoration"] = rest
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()

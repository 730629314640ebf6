"""``egain invert``: reconstruct images with an inversion method.

Outputs in ``--output``: one PNG per input with the *source's file name* (so ``egain evaluate``
pairs reconstructions with sources), ``latents/NAME.pt`` with ``--save-latents``, Delta and gate
maps as ``deltas/NAME_*.png`` with ``--save-deltas``, and ``timing.json`` (seconds per image,
parameter counts) for the comparison table.

Images whose size differs from the model's input size are resized (short side + centre crop) with
a warning. Every file is written to a temporary name and renamed, so an interrupted run never leaves
a half-written image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from egain.errors import EgainError, InputError


def register(sub: argparse._SubParsersAction) -> None:
    from egain.methods import available

    p = sub.add_parser(
        "invert",
        help="invert images with a method and save reconstructions / latents",
        description="Invert a file or a folder of images; reconstructions keep the source file names.",
    )
    p.add_argument("--method", required=True, choices=available())
    p.add_argument(
        "--checkpoint",
        required=True,
        help="method checkpoint (ours from 'egain train', or published e4e/HFGI)",
    )
    p.add_argument(
        "--generator", help="generator checkpoint (needed when the method checkpoint does not carry it)"
    )
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--save-latents", action="store_true", help="also write latents/NAME.pt")
    p.add_argument("--save-deltas", action="store_true", help="also write Delta0 and gate maps as images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--passes", type=int, help="override the number of delta passes (iterative scheme)")
    p.add_argument("--iterations", type=int, help="override the number of ReStyle refinement steps")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.methods import create
    from egain.runtime.logging import progress
    from egain.utils.device import resolve_device
    from egain.utils.images import INVERT_TIMING, list_images, open_image

    if args.batch_size < 1:
        raise EgainError(f"--batch-size must be >= 1, got {args.batch_size}")
    files = list_images(args.input)  # raises a clear error for a missing or empty input
    device = resolve_device(args.device)
    extra = {k: v for k in ("passes", "iterations") if (v := getattr(args, k)) is not None}
    method = create(args.method, generator=args.generator, checkpoint=args.checkpoint, device=device, **extra)
    size = method.input_size
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise InputError("input images must have distinct file names (outputs keep the source names)")

    resized = 0
    seconds = 0.0
    bar = progress(total=len(files), desc=f"invert {args.method}", unit="img")
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        images = []
        for f in chunk:
            im = open_image(f)
            if im.size != (size, size):
                resized += 1
            images.append(im)
        t0 = time.perf_counter()
        inv = method.invert(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        _write(out, chunk, inv, args.save_latents, args.save_deltas)
        bar.update(len(chunk))
    bar.close()
    if resized:
        print(
            f"egain invert: warning: {resized} image(s) were not {size}x{size} and were resized (short side + centre crop)",
            file=sys.stderr,
        )
    timing = {
        "method": args.method,
        "images": len(files),
        "seconds_per_image": seconds / len(files),
        "parameters": method.parameter_count(include_generator=True),
        "parameters_without_generator": method.parameter_count(include_generator=False),
        "input_size": size,
        "device": str(device),
    }
    _atomic_text(out / INVERT_TIMING, json.dumps(timing, indent=2) + "\n")
    print(
        f"inverted {len(files)} image(s) with {args.method} into {out} ({timing['seconds_per_image']:.3f} s/image)"
    )
    return 0


def _write(out: Path, files: list[Path], inv, save_latents: bool, save_deltas: bool) -> None:
    from egain.runtime.checkpoint import atomic_torch_save
    from egain.utils.images import save_image

    for i, f in enumerate(files):
        save_image(inv.reconstruction[i].cpu(), out / f"{f.stem}.png")
        if save_latents:
            atomic_torch_save(
                {
                    "latents": inv.latents[i].cpu(),
                    "basic_latents": inv.extras.get("basic_latents", inv.latents)[i].cpu(),
                    "source": str(f),
                },
                out / "latents" / f"{f.stem}.pt",
            )
        if save_deltas and "delta" in inv.extras:
            d = inv.extras["delta"][i].cpu()
            # Delta lies in [-2, 2]; shown with zero at mid-grey.
            save_image((d / 2).clamp(-1, 1), out / "deltas" / f"{f.stem}_delta.png")
            for layer, g in inv.extras.get("gate_maps", {}).items():
                g = g[i].cpu()
                g = (g - g.min()) / (g.max() - g.min()).clamp_min(1e-8) * 2 - 1
                save_image(g.expand(3, -1, -1), out / "deltas" / f"{f.stem}_gate_{layer}.png")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

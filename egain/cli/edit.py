"""``egain edit``: invert images with a method and edit them along one or more directions.

``egain edit --method hfgi --input DIR --direction smile --strength -3,0,3 --out OUT`` writes
``OUT/<direction>_<strength>/NAME.png`` for every input and strength (source file names, so
``egain evaluate`` pairs them), ``OUT/grid.png`` (rows images, columns: source, then strengths)
and ``OUT/edit.json``. Without ``--checkpoint`` the method's bundled weights are used, and a named
direction comes from the set learnt for its generator. Several ``--direction`` (or ``a+b``,
``NAME*WEIGHT``) are applied together: their offsets add. ``--no-ada`` skips HFGI's re-alignment
of the distortion to the edited image, to show what ADA is for.

A video file (``--input clip.gif|clip.mp4``) is edited frame by frame: its frames are written as
``OUT/frames/frame_00000.png``, ..., the edits as ``OUT/<direction>_<strength>/frame_00000.png``, and
each strength's clip as ``OUT/edit_<direction>_<strength>.gif|mp4`` (the input's format, or
``--clip``); ``--clip gif|mp4`` on a folder writes each strength's sorted edits as such a clip too.
For temporal metrics of an edited clip use ``egain apply video --direction``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from egain.cli.argtypes import positive_int
from egain.cli.invert import add_clip_flags


def register(sub: argparse._SubParsersAction) -> None:
    from egain.methods import available

    p = sub.add_parser(
        "edit",
        help="edit images with a method and directions; grid of strengths",
        description="Invert images and edit them along learnt or published directions at several strengths.",
    )
    p.add_argument("--method", required=True, choices=available())
    p.add_argument("--checkpoint", default=None, help="method weights (default: the bundled ones)")
    p.add_argument(
        "--generator", default=None, help="generator for methods whose checkpoint does not embed it"
    )
    p.add_argument(
        "--input",
        required=True,
        help="an image, a folder of images, or a video file (.gif, .mp4: edited frame by frame)",
    )
    p.add_argument(
        "--direction",
        required=True,
        action="append",
        help="a learnt direction name (see 'egain directions list'), a direction file (.pt/.npy; "
        "PCA.pt:NAME for GANSpace), NAME*WEIGHT; repeat or join with '+' to apply several at once",
    )
    p.add_argument("--strength", default="-3,0,3", help="comma-separated strengths (columns of the grid)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-ada", action="store_true", help="HFGI: fuse the distortion without ADA re-alignment")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--grid-rows", type=positive_int, default=8, help="images shown in grid.png")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    add_clip_flags(p, "edited")
    # "-3,0,3" is a value, not an option: let argparse read comma lists of negative numbers as values
    p._negative_number_matcher = re.compile(r"^-\d*\.?\d+([,:]-?\d*\.?\d+)*$")
    p.set_defaults(func=run)


def _label(name: str, s: float) -> str:
    return f"{name}_{s:+g}".replace("*", "x").replace("/", "_")


def run(args: argparse.Namespace) -> int:
    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "--out")  # a file where a folder is expected: one line, before any work
    import torch

    from egain.applications.video import extract_frames, frame_names
    from egain.cli.invert import video_input, write_result_clip
    from egain.editing.apply import has_ada, method_edit, parse_strengths, resolve_directions
    from egain.methods import create
    from egain.metrics.report import fit_tile, write_image_grid
    from egain.runtime.files import atomic_write_json
    from egain.utils.device import resolve_device
    from egain.utils.images import OWN_SIDE_FILES, list_images, save_image, tensor_to_uint8
    from egain.utils.paths import check_not_inside_inputs, claim_output_dir, output_names

    out = Path(args.out)
    frames = video_input(args)
    # a video's frames become images in OUT/frames/ once the output folder is claimed
    files = (
        list_images(args.input) if frames is None else [out / "frames" / n for n in frame_names(len(frames))]
    )
    strengths = parse_strengths(args.strength)
    check_not_inside_inputs(out, [args.input])
    names = output_names(files, ".png")
    record = {
        "command": "edit",
        "method": args.method,
        "checkpoint": str(Path(args.checkpoint).resolve()) if args.checkpoint else None,
        "input": str(Path(args.input).resolve()),
    }
    claim_output_dir(out, record, overwrite=args.overwrite, ignore=OWN_SIDE_FILES, write=False)
    device = resolve_device(args.device)
    method = create(args.method, generator=args.generator, checkpoint=args.checkpoint, device=device)
    direction = resolve_directions(args.direction, method.generator)
    dname = getattr(direction, "name", "direction") or "direction"
    ada = not args.no_ada
    claim_output_dir(out, record, overwrite=args.overwrite, ignore=OWN_SIDE_FILES)
    if frames is not None:
        files = extract_frames(frames, out / "frames")
    rows: list[list[torch.Tensor]] = []
    size = None
    with torch.no_grad():
        for i in range(0, len(files), args.batch_size):
            chunk = files[i : i + args.batch_size]
            inv = method.invert(chunk)
            edited = [method_edit(method, inv, direction, s, ada=ada).cpu() for s in strengths]
            sources = method_prepare(method, chunk)
            for j, name in enumerate(names[i : i + len(chunk)]):
                for s, e in zip(strengths, edited, strict=True):
                    folder = out / _label(dname, s)
                    folder.mkdir(parents=True, exist_ok=True)
                    save_image(e[j], folder / name)
                if len(rows) < args.grid_rows:
                    tiles = [sources[j], *(e[j] for e in edited)]
                    size = size or max(128, tiles[0].shape[-1])
                    rows.append(
                        [
                            fit_tile(torch.from_numpy(tensor_to_uint8(t)).permute(2, 0, 1), (size, size))
                            for t in tiles
                        ]
                    )
    labels = ["source", *(f"{s:+g}" for s in strengths)]
    write_image_grid(rows, labels, out / "grid.png")
    clips = [
        write_result_clip(
            args,
            frames is not None,
            [out / _label(dname, s) / n for n in sorted(names)],
            out / f"edit_{_label(dname, s)}",
        )
        for s in strengths
    ]
    atomic_write_json(
        out / "edit.json",
        {
            "method": args.method,
            "direction": dname,
            "directions": args.direction,
            "strengths": strengths,
            "ada": ada if has_ada(method) else None,
            "images": len(files),
            "folders": [_label(dname, s) for s in strengths],
            **({"clips": [c.name for c in clips if c]} if any(clips) else {}),
        },
    )
    note = (
        "" if has_ada(method) or not args.no_ada else f" (--no-ada has no effect: {args.method} has no ADA)"
    )
    print(
        f"edited {len(files)} image(s) with {args.method} along {dname} at {len(strengths)} strength(s) into {out}{note}"
    )
    return 0


def method_prepare(method, files):
    """The sources at the method's input size, for the grid's first column."""
    from egain.methods.base import prepare_images

    return prepare_images(files, method.input_size)

"""``egain align``: detect the face in each photo and align it the way the published FFHQ encoders expect.

The FFHQ procedure (dlib's 68 landmarks, an eye-and-mouth quad; :mod:`egain.faces.align`). With
several faces the largest is used and a note says so; a picture without a face is one error line
(``--skip-missing`` reports it and goes on). Needs the optional extra: ``pip install 'egain[align]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from egain.cli.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="detect and FFHQ-align the face of each photo (needs egain[align])",
        description="Align faces as the FFHQ / e4e / pSp scripts do (dlib 68 landmarks). Outputs keep the "
        "input file names (as PNG), ready for 'egain invert' with published FFHQ checkpoints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--size", type=positive_int, default=256, help="output size (the encoders' scripts: 256)")
    p.add_argument("--skip-missing", action="store_true", help="report pictures without a face and go on")
    p.add_argument("--overwrite", action="store_true", help="write into a folder holding other files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain.errors import InputError
    from egain.faces.align import FaceAligner, align_file
    from egain.runtime.files import atomic_path
    from egain.utils.images import list_images
    from egain.utils.paths import check_not_inside_inputs, claim_output_dir, output_names

    files = list_images(args.input)
    out = Path(args.output)
    check_not_inside_inputs(out, [args.input])
    names = output_names(files, ".png")
    record = {"command": "align", "input": str(Path(args.input).resolve()), "size": args.size}
    claim_output_dir(out, record, overwrite=args.overwrite, write=False)
    aligner = FaceAligner(args.size)
    claim_output_dir(out, record, overwrite=args.overwrite)
    done, missing = 0, 0
    for f, name in zip(files, names, strict=True):
        try:
            face = align_file(f, aligner)
        except InputError as exc:
            if not args.skip_missing:
                raise
            print(f"egain align: skipped: {exc}", file=sys.stderr)
            missing += 1
            continue
        if face.note:
            print(f"egain align: note: {face.note}", file=sys.stderr)
        with atomic_path(out / name) as tmp:
            face.image.save(tmp, format="PNG")
        done += 1
    print(
        f"aligned {done} face(s) into {out}" + (f"; {missing} picture(s) without a face" if missing else "")
    )
    return 0 if done else 2

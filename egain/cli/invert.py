"""``egain invert``: reconstruct images with an inversion method.

Outputs in ``--output``: one PNG per input with the *source's file name* (so ``egain evaluate``
pairs reconstructions with sources), ``latents/NAME.pt`` with ``--save-latents``, Delta and gate
maps as ``deltas/NAME_*.png`` with ``--save-deltas``, and ``timing.json`` (seconds per image,
parameter counts) for the comparison table.

A video file (``--input clip.gif|clip.mp4``, read by :func:`egain.applications.video.read_frames`)
is inverted frame by frame: its frames are written as ``frames/frame_00000.png``, ... (the sources
``egain evaluate`` pairs with), the reconstructions as ``frame_00000.png``, ..., and the clip as
``reconstruction.gif|mp4`` (the input's format, or ``--clip``). ``--clip gif|mp4`` on a folder writes
the sorted reconstructions as ``reconstruction.<clip>`` too.

Images whose size differs from the model's input size are resized (short side + centre crop) with
a warning. Every file is written to a temporary name and renamed, so an interrupted run never leaves
a half-written image.

Outputs never destroy inputs (egain.utils.paths): an output folder that is or lies inside the input
folder is refused; a folder holding another run's results (recorded in its ``.egain-run.json``) or
files egain did not write is refused unless ``--overwrite``; inputs that would share an output name
(``face.png`` and ``face.jpg``) are refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from egain.cli.argtypes import checkpoint_path, non_negative_int, positive_int
from egain.errors import EgainError


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
        type=checkpoint_path,
        help="method checkpoint: ours from 'egain train', a published one (e4e, HFGI, ...) or zoo:NAME "
        "(default: the method's bundled synthfaces model, where it has one; optimisation methods need only "
        "--generator)",
    )
    p.add_argument(
        "--generator",
        type=checkpoint_path,
        help="generator checkpoint or zoo:NAME (needed when the method checkpoint does not carry it)",
    )
    p.add_argument(
        "--input",
        required=True,
        help="an image file, a folder of images, or a video file (.gif, .mp4: inverted frame by frame)",
    )
    add_clip_flags(p, "reconstruction")
    p.add_argument(
        "--align",
        action="store_true",
        help="detect and align each face first (the FFHQ procedure; needs pip install 'egain[align]')",
    )
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--save-latents", action="store_true", help="also write latents/NAME.pt")
    p.add_argument("--save-deltas", action="store_true", help="also write Delta0 and gate maps as images")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument(
        "--passes", type=non_negative_int, help="override the number of delta passes (iterative scheme)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that holds another run's results (replacing same-named files)",
    )
    p.add_argument(
        "--iterations", type=positive_int, help="override the number of ReStyle refinement steps (default 5)"
    )
    p.add_argument(
        "--save-generators",
        action="store_true",
        help="PTI: also write each image's tuned generator as generators/NAME.pt (an ordinary generator file)",
    )
    p.add_argument("--device", default="auto")
    add_declared_flags(p, "invert__", "invert_options", "method invert options (declared by the methods)")
    p.set_defaults(func=run)


def add_clip_flags(p: argparse.ArgumentParser, what: str) -> None:
    """``--clip``, ``--fps`` and ``--max-frames``: the video side of ``egain invert`` / ``egain edit``."""
    p.add_argument(
        "--clip",
        choices=("gif", "mp4"),
        default=None,
        help=f"also write the (sorted) {what} images as a clip (a video --input writes one anyway, "
        "in its own format unless this is given; mp4: pip install 'egain[video]')",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of that clip (default: the input video's, else 10)",
    )
    p.add_argument(
        "--max-frames", type=positive_int, default=None, help="video --input: use only the first N frames"
    )


def video_input(args: argparse.Namespace):
    """The frames of a video ``--input`` ((T, 3, H, W), native size), or None for images/folders."""
    from egain.applications.video import VIDEO_SUFFIXES, is_video_file, read_frames

    if Path(args.input).suffix.lower() in VIDEO_SUFFIXES and not Path(args.input).exists():
        raise EgainError(f"video '{args.input}' does not exist")
    if not is_video_file(args.input):
        return None
    return read_frames(args.input, max_frames=getattr(args, "max_frames", None))


def write_result_clip(
    args: argparse.Namespace, video: bool, images: list[Path], path_stem: Path
) -> Path | None:
    """Write ``path_stem.<gif|mp4>`` from ``images`` when the input is a video or ``--clip`` is given."""
    from egain.applications.video import clip_format, clip_fps, write_clip_of_images

    if not video and not getattr(args, "clip", None):
        return None
    fmt = clip_format(args.input, getattr(args, "clip", None)) if video else args.clip
    fps = getattr(args, "fps", None) or (clip_fps(args.input) if video else 10.0)
    return write_clip_of_images(images, path_stem.with_name(f"{path_stem.name}.{fmt}"), fps)


def add_declared_flags(p: argparse.ArgumentParser, prefix: str, attribute: str, title: str) -> None:
    """One flag per option the registered methods declare in ``attribute`` (union over methods)."""
    from egain.methods import METHODS, available

    seen: dict[str, dict[str, object]] = {}
    decls = {}
    for name in available():
        for opt in getattr(METHODS[name], attribute, ()):
            seen.setdefault(opt.name, {})[name] = opt.default
            decls.setdefault(opt.name, opt)
    if not decls:
        return
    group = p.add_argument_group(title)
    for name, opt in decls.items():
        kwargs: dict = {"dest": prefix + name, "default": None}
        if opt.type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=opt.type, metavar=name.upper())
            if opt.choices:
                kwargs["choices"] = opt.choices
        group.add_argument(
            opt.flag, help=f"{opt.help} (methods: {', '.join(seen[name])}; default {opt.default})", **kwargs
        )


def _check_invert_flags(args: argparse.Namespace) -> None:
    """A method option given to a method that does not declare it is one line, not silently ignored;
    a trainable method built fresh (no checkpoint) is said to be untrained."""
    from egain.methods import method_class

    cls = method_class(args.method)
    declared = {o.name for o in getattr(cls, "invert_options", ())}
    given = [
        k.removeprefix("invert__")
        for k, v in vars(args).items()
        if k.startswith("invert__") and v not in (None, False)
    ]
    bad = [g for g in given if g not in declared]
    if bad:
        names = ", ".join("--" + d.replace("_", "-") for d in sorted(declared)) or "none"
        raise EgainError(
            f"--{bad[0].replace('_', '-')} is not an option of {args.method} (its options: {names})"
        )
    if cls.trains() and args.checkpoint is None and args.generator is not None:
        print(
            f"egain invert: warning: {args.method} is built untrained (random encoder weights) around --generator; "
            f"pass --checkpoint RUN/model.pt from 'egain train --method {args.method}' for a trained model",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    from egain.methods import create
    from egain.runtime.checkpoint import clean_stale_tmp
    from egain.utils.device import resolve_device
    from egain.utils.images import OWN_SIDE_FILES, list_images
    from egain.utils.paths import claim_output_dir
    from egain.workflows.inversion import invert_files

    if args.batch_size < 1:
        raise EgainError(f"--batch-size must be >= 1, got {args.batch_size}")
    from egain.applications.video import extract_frames, frame_names

    out = Path(args.output)
    frames = video_input(args)
    if frames is None:
        files = list_images(args.input)  # raises a clear error for a missing or empty input
    else:  # the frames become images in OUT/frames/ once the output folder is claimed
        files = [out / "frames" / n for n in frame_names(frames.shape[0])]
    run_record = invert_run_record(args)
    names = check_invert_outputs(out, args.input, files, run_record, overwrite=args.overwrite)
    check_checkpoint_args(args)
    _check_invert_flags(args)
    device = resolve_device(args.device)
    extra = {k: v for k in ("passes", "iterations") if (v := getattr(args, k)) is not None}
    method = create(args.method, generator=args.generator, checkpoint=args.checkpoint, device=device, **extra)

    invert_kwargs = {
        o.name: getattr(args, f"invert__{o.name}")
        for o in getattr(type(method), "invert_options", ())
        if getattr(args, f"invert__{o.name}", None) is not None
    }
    claim_output_dir(out, run_record, overwrite=args.overwrite, ignore=OWN_SIDE_FILES)
    clean_stale_tmp(out)  # half-written images of a killed earlier run
    if frames is not None:
        files = extract_frames(frames, out / "frames")
    if args.align:  # aligned faces go to OUT/aligned/ (the sources to score against) and are inverted
        files = align_files(files, names, out / "aligned")
    if uses_bundled(args):
        warn_unlike_synthfaces(files, device)

    run = invert_files(
        method,
        files,
        out,
        label=args.method,
        batch_size=args.batch_size,
        names=names,
        save_latents=args.save_latents,
        save_deltas=args.save_deltas,
        warmup=False,  # a single user run: time the images as they come
        invert_kwargs=invert_kwargs,
        on_batch=_generator_saver(method, out) if args.save_generators else None,
    )
    if run.resized:
        print(
            f"egain invert: warning: {run.resized} image(s) were not {run.input_size}x{run.input_size} and were "
            "resized (short side + centre crop)",
            file=sys.stderr,
        )
    clip = write_result_clip(
        args, frames is not None, [out / n for n in sorted(names)], out / "reconstruction"
    )
    print(
        f"inverted {run.images} image(s) with {args.method} into {out} ({run.seconds_per_image:.3f} s/image)"
        + (f"; clip {clip}" if clip else "")
    )
    return 0


def check_checkpoint_args(args: argparse.Namespace) -> None:
    """Missing files and missing bundles as one line that names the way out (before any loading)."""
    from egain.methods import method_class
    from egain.methods.registry import untrained_default

    cls = method_class(args.method)
    bundled = cls.bundled_weights
    if args.checkpoint is None and args.generator is None and bundled is None and not untrained_default(cls):
        raise EgainError(
            f"{args.method} has no bundled weights: pass --checkpoint PATH (trained by 'egain train "
            f"--method {args.method}' or published) or --generator PATH to run it untrained"
        )
    for flag, value in (("--checkpoint", args.checkpoint), ("--generator", args.generator)):
        if value is not None and not Path(value).exists():
            hint = (
                f"; leave {flag} out to use the bundled synthfaces model (zoo:{bundled}), "
                "or see 'egain demo --input'"
                if flag == "--checkpoint" and bundled
                else "; bundled weights are named zoo:NAME (see 'egain zoo list')"
            )
            raise EgainError(f"{flag} '{value}' does not exist{hint}")


def uses_bundled(args: argparse.Namespace) -> bool:
    """True when the models come from egain/zoo (the synthfaces world), not a user's checkpoint."""
    from egain.zoo import WEIGHTS_DIR

    given = [p for p in (args.checkpoint, args.generator) if p is not None]
    return all(Path(p).resolve().is_relative_to(WEIGHTS_DIR) for p in given)


def warn_unlike_synthfaces(files: list[Path], device, command: str = "invert") -> int:
    """Warn (stderr, one line per picture plus the advice) about inputs unlike synthfaces."""
    import torch

    from egain.utils.images import load_image
    from egain.workflows.domain import ADVICE, THRESHOLD, SynthfacesCheck

    check = SynthfacesCheck(device)
    flagged = []
    for start in range(0, len(files), 64):
        chunk = files[start : start + 64]
        scores = check.score(torch.stack([load_image(f, 64) for f in chunk]))
        flagged += [(f, s) for f, s in zip(chunk, scores, strict=True) if s.unlike_synthfaces]
    for f, s in flagged[:5]:
        print(
            f"egain {command}: warning: '{f.name}' does not look like a synthfaces image "
            f"(domain score {s.score:.1f} > {THRESHOLD})",
            file=sys.stderr,
        )
    if len(flagged) > 5:
        print(f"egain {command}: warning: ... and {len(flagged) - 5} more such image(s)", file=sys.stderr)
    if flagged:
        print(f"egain {command}: warning: {ADVICE}", file=sys.stderr)
    return len(flagged)


def align_files(files: list[Path], names: list[str], folder: Path) -> list[Path]:
    """FFHQ-align every input into ``folder`` (same output names); returns the aligned files."""
    from egain.faces.align import FaceAligner, align_file
    from egain.runtime.files import atomic_path

    aligner = FaceAligner()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f, name in zip(files, names, strict=True):
        face = align_file(f, aligner)
        if face.note:
            print(f"egain: note: {face.note}", file=sys.stderr)
        target = folder / name
        with atomic_path(target) as tmp:
            face.image.save(tmp, format="PNG")
        out.append(target)
    return out


def invert_run_record(args: argparse.Namespace) -> dict:
    """What identifies an invert run in its output folder's marker (re-running it is allowed)."""

    def absolute(p: str | None) -> str | None:
        return None if p is None else str(Path(p).resolve())

    return {
        "command": "invert",
        "method": args.method,
        "checkpoint": absolute(args.checkpoint),
        "generator": absolute(args.generator),
        "input": absolute(args.input),
        "passes": args.passes,
        "align": bool(getattr(args, "align", False)),
    }


def check_invert_outputs(
    out: Path, input_path: str | os.PathLike, files: list[Path], run: dict, *, overwrite: bool
) -> list[str]:
    """Every refusal that protects data, before any work: returns the output name of each file."""
    from egain.utils.images import OWN_SIDE_FILES
    from egain.utils.paths import check_not_inside_inputs, claim_output_dir, output_names

    check_not_inside_inputs(out, [input_path])
    names = output_names(files, ".png")
    claim_output_dir(out, run, overwrite=overwrite, ignore=OWN_SIDE_FILES, write=False)
    return names


def _generator_saver(method, out: Path):
    """``on_batch`` hook writing PTI's tuned generators, one ordinary generator file per image."""
    saver = getattr(method, "save_tuned_generator", None)
    if saver is None:
        raise EgainError(f"--save-generators: {method.name} tunes no generator (only pti does)")

    def save(files: list[Path], inv) -> None:
        for i, f in enumerate(files):
            saver(inv, i, out / "generators" / f"{f.stem}.pt")

    return save

"""``egain apply``: the applications of an inversion (seeds/004 section V, seeds/001 section 4.4).

    egain apply swap --source A.png --target B.png --out DIR          face swapping (Alg. 2)
    egain apply mix --content A.png --style B.png --out DIR           style mixing (Alg. 3)
    egain apply interpolate --a A.png --b B.png --out DIR             interpolation strip + GIF (Alg. 4)
    egain apply hide --secret A.png --carrier C.png --out DIR         secure deep hiding (Alg. 1)
    egain apply reveal --stego DIR/stego.png --out DIR2               the receiver's side
    egain apply video --input CLIP --out DIR                          video inversion + temporal metrics
    egain apply video --input CLIP --direction smile --strength 3 --out DIR     video editing
    egain apply restore --corrupt colorize --checkpoint RUN/model.pt  restoration scored on synthfaces
    egain apply restore --corrupt parsing --input MAPS --checkpoint RUN/model.pt  parsing map -> face
    egain data synthfaces-sequence --out DIR --frames 24              synthfaces clips

Every sub-command takes ``--method`` (default egain, with its bundled weights) and ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from egain.cli.argtypes import positive_int


def _method_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="egain", help="registered method (default egain, bundled weights)")
    p.add_argument("--checkpoint", default=None, help="trained weights (default: the method's bundled ones)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that holds another run's results",
    )


def _load(args: argparse.Namespace):
    from egain import methods
    from egain.utils.device import resolve_device

    return methods.create(args.method, checkpoint=args.checkpoint, device=resolve_device(args.device))


#: the arguments of ``egain apply`` that name input files or folders (checked before any work)
_INPUT_ARGS = ("input", "source", "target", "content", "style", "a", "b", "secret", "carrier", "stego")


def _check_inputs(args: argparse.Namespace) -> None:
    """A missing input is one line naming it, before anything is created or loaded."""
    from egain.errors import InputError

    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not Path(item).exists():
                raise InputError(f"--{name} '{item}' does not exist")


def _out(args: argparse.Namespace) -> Path:
    """The output folder of this run: never an input's folder, and never another run's results
    (``claim_output_dir``: a re-run of the same command reuses its own folder; ``--overwrite``)."""
    from egain.utils.paths import check_not_inside_inputs, check_output_dir, claim_output_dir

    _check_inputs(args)
    check_output_dir(args.out, "output folder")
    inputs: list[str] = []
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        inputs += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    check_not_inside_inputs(args.out, inputs)
    run = {
        k: v
        for k, v in sorted(vars(args).items())
        if k not in ("func", "overwrite", "device")
        and isinstance(v, (str, int, float, bool, list, type(None)))
    }
    return claim_output_dir(
        args.out, {"command": f"egain apply {args.apply_command}", **run}, overwrite=args.overwrite
    )


def _write_json(path: Path, obj: Any) -> None:
    from egain.runtime.files import atomic_write_json

    atomic_write_json(path, obj)
    print(json.dumps(obj, indent=1) if len(json.dumps(obj)) < 2000 else f"wrote {path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "apply",
        help="applications: swap, mix, interpolate, hide, reveal, video, restore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_subparsers(dest="apply_command", metavar="APPLICATION")

    q = s.add_parser("swap", help="semantic face swapping (E2Style Alg. 2)")
    _method_args(q)
    q.add_argument("--source", nargs="+", required=True, help="images whose central face is pasted")
    q.add_argument("--target", nargs="+", required=True, help="images receiving it (as many)")
    q.add_argument("--fraction", type=float, default=0.5, help="side of the pasted centre box (default 0.5)")
    q.add_argument("--feather", type=float, default=0.0, help="soft edge width, fraction of the side")
    q.set_defaults(func=_swap)

    q = s.add_parser("mix", help="style mixing (E2Style Alg. 3)")
    _method_args(q)
    q.add_argument("--content", nargs="+", required=True)
    q.add_argument("--style", nargs="+", required=True)
    q.add_argument(
        "--start",
        default="paper",
        help="first W+ row from the style image (default: the paper's "
        "last 11 of 18, scaled to the generator)",
    )
    q.add_argument(
        "--deltas",
        choices=("content", "style", "none"),
        default="content",
        help="high-fidelity methods: whose distortion maps to keep",
    )
    q.set_defaults(func=_mix)

    q = s.add_parser("interpolate", help="interpolation between two images (E2Style Alg. 4)")
    _method_args(q)
    q.add_argument("--a", nargs="+", required=True)
    q.add_argument("--b", nargs="+", required=True)
    q.add_argument(
        "--steps", type=positive_int, default=5, help="frames from A to B (default 5, the paper's)"
    )
    q.add_argument(
        "--deltas",
        choices=("blend", "none"),
        default="blend",
        help="high-fidelity methods: interpolate distortion maps too, or drop them",
    )
    q.add_argument("--fps", type=float, default=5.0)
    q.set_defaults(func=_interpolate)

    q = s.add_parser("hide", help="secure deep hiding: a secret image's W+ code inside a carrier (Alg. 1)")
    _method_args(q)
    q.add_argument("--secret", required=True, help="the image to hide")
    q.add_argument("--carrier", default=None, help="carrier image (default: a 256 px synthfaces picture)")
    q.add_argument("--step", type=float, default=1.0, help="quantisation step (1: the paper's integers)")
    q.add_argument("--key", type=int, default=0, help="shared key (order, keystream, +-1 signs)")
    q.add_argument(
        "--scheme",
        choices=("matching", "replacement"),
        default="matching",
        help="Hamming matrix embedding with LSB matching, or plain LSB replacement (detectable)",
    )
    q.set_defaults(func=_hide)

    q = s.add_parser("reveal", help="extract a hidden code from a stego image and regenerate the secret")
    _method_args(q)
    q.add_argument("--stego", required=True)
    q.add_argument("--key", type=int, default=0)
    q.add_argument("--scheme", choices=("matching", "replacement"), default="matching")
    q.set_defaults(func=_reveal)

    q = s.add_parser(
        "video", help="invert a clip (frame folder or video file), write it, measure consistency"
    )
    _method_args(q)
    q.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="frame folder, .gif or .mp4 (mp4: pip install 'egain[video]'); several clips are averaged",
    )
    q.add_argument(
        "--methods",
        default=None,
        help="compare methods instead of --method: comma list of bundled labels (e4e,hfgi,egain,...) or "
        "NAME=CHECKPOINT (any registered method, zoo:NAME or a path), as 'egain compare --methods'",
    )
    q.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        help="Gaussian smoothing of codes and maps over frames, sigma in frames (default 0: off)",
    )
    q.add_argument("--format", choices=("gif", "mp4"), default="gif")
    q.add_argument("--fps", type=float, default=10.0)
    q.add_argument("--max-frames", type=positive_int, default=None)
    q.add_argument(
        "--id-net", default="synthfaces-arcface", help="embedder for identity drift ('none': skip)"
    )
    q.add_argument(
        "--direction",
        action="append",
        default=None,
        help="also edit every frame (as 'egain edit --direction': a learnt name, a file, NAME*WEIGHT, "
        "'+'-joined or repeated); writes the edited clip, source|reconstruction|edit and its metrics",
    )
    q.add_argument("--strength", type=float, default=3.0, help="edit strength (default 3)")
    q.add_argument("--no-ada", action="store_true", help="HFGI: edit without ADA re-alignment")
    q.set_defaults(func=_video)

    q = s.add_parser("restore", help="score a restoration/translation model against clean synthfaces")
    _method_args(q)
    q.add_argument(
        "--corrupt",
        required=True,
        help="colorize, inpaint, superres[:F,..], sketch, parsing (alias segmentation): the model's training mode",
    )
    q.add_argument(
        "--input",
        default=None,
        help="folder of clean images to corrupt and score (default: --n synthfaces eval images); for parsing, "
        "a folder with label maps X_parsing.png as 'egain data synthfaces --parsing' writes them, scored "
        "against X.png beside each (maps alone: translated, not scored)",
    )
    q.add_argument("--n", type=positive_int, default=64, help="held-out synthfaces eval images (default 64)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--id-net", default="synthfaces-arcface", help="face embedder of the ID score ('none': skip)"
    )
    q.add_argument(
        "--parser",
        default="synthfaces-parsing",
        help="parsing only: face parser whose segmentation of the translated faces is scored against the "
        "input maps (mIoU; 'none': skip)",
    )
    q.set_defaults(func=_restore)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def register_sequences(sub: argparse._SubParsersAction) -> None:
    """``egain data synthfaces-sequence`` (registered by ``egain data``)."""
    q = sub.add_parser(
        "synthfaces-sequence",
        help="render synthfaces clips: one identity, smooth motion",
        description="Render clips: pose, expression and lighting move smoothly; "
        "identity, clothes and rare details stay.",
    )
    q.add_argument("--out", required=True)
    q.add_argument("--identities", type=int, nargs="+", default=[0], help="identity numbers (default 0)")
    q.add_argument("--frames", type=positive_int, default=24)
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--keyframe-every", type=positive_int, default=8)
    q.add_argument("--amplitude", type=float, default=0.5, help="motion between keyframes (0..1)")
    q.add_argument("--gif", action="store_true", help="also write each clip as a GIF")
    q.set_defaults(func=_sequences)


# ------------------------------------------------------------------------------------------------


def _swap(args: argparse.Namespace) -> int:
    from egain.applications.common import write_columns
    from egain.applications.swap import face_swap
    from egain.methods import prepare_images

    out, m = _out(args), _load(args)
    r = face_swap(m, args.source, args.target, fraction=args.fraction, feather=args.feather)
    cols = [
        prepare_images(args.source, m.input_size),
        prepare_images(args.target, m.input_size),
        r.pasted,
        r.swapped,
    ]
    labels = ["source", "target", "pasted", f"swap ({args.method})"]
    if r.basic is not None:
        cols.append(r.basic)
        labels.append("basic code")
    write_columns(cols, labels, out / "swap.png")
    print(f"wrote {out / 'swap.png'}")
    return 0


def _mix(args: argparse.Namespace) -> int:
    from egain.applications.common import write_columns
    from egain.applications.mixing import style_mix
    from egain.methods import prepare_images

    out, m = _out(args), _load(args)
    start = args.start if args.start == "paper" else int(args.start)
    y = style_mix(m, args.content, args.style, start=start, deltas=args.deltas)
    cols = [prepare_images(args.content, m.input_size), prepare_images(args.style, m.input_size), y]
    write_columns(cols, ["content", "style", f"mix ({args.method})"], out / "mix.png")
    print(f"wrote {out / 'mix.png'}")
    return 0


def _interpolate(args: argparse.Namespace) -> int:
    from egain.applications.common import write_columns
    from egain.applications.interpolation import interpolate
    from egain.applications.video import write_video

    out, m = _out(args), _load(args)
    frames = interpolate(m, args.a, args.b, steps=args.steps, deltas=args.deltas)  # (T, N, 3, S, S)
    labels = [f"{k / (args.steps - 1):.2f}" for k in range(args.steps)]
    write_columns(list(frames), labels, out / "interpolation.png")
    for i in range(frames.shape[1]):
        clip = frames[:, i]
        write_video(
            __import__("torch").cat([clip, clip.flip(0)]), out / f"interpolation_{i}.gif", args.fps, 2
        )
    print(f"wrote {out / 'interpolation.png'} and {frames.shape[1]} GIF(s)")
    return 0


def _carrier(path: str | None):
    import numpy as np
    from PIL import Image

    if path:
        from egain.utils.images import to_rgb

        return np.asarray(to_rgb(Image.open(path)), dtype=np.uint8).copy()
    from egain.data.synthfaces import render, sample_identity, sample_variation

    ident = sample_identity(7, 3)
    return render(ident, sample_variation(7, ident, 0), 256).image


def _hide(args: argparse.Namespace) -> int:
    from PIL import Image

    from egain.applications.common import write_columns
    from egain.applications.hiding import hide_image
    from egain.runtime.files import atomic_path

    out, m = _out(args), _load(args)
    carrier = _carrier(args.carrier)
    stego, report, imgs = hide_image(
        m, args.secret, carrier, step=args.step, key=args.key, scheme=args.scheme
    )
    with atomic_path(out / "stego.png") as tmp:
        Image.fromarray(stego).save(tmp, format="PNG")
    with atomic_path(out / "carrier.png") as tmp:
        Image.fromarray(carrier).save(tmp, format="PNG")
    write_columns(
        [imgs["secret"], imgs["unquantised"], imgs["revealed"]],
        ["secret", "G(W)", f"revealed (step {args.step:g})"],
        out / "hiding.png",
    )
    _write_json(out / "hiding.json", {"method": args.method, **report.as_dict()})
    return 0


def _reveal(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from egain.applications.hiding import reveal_image
    from egain.utils.images import save_image

    out, m = _out(args), _load(args)
    y = reveal_image(
        m, np.asarray(Image.open(args.stego).convert("RGB"), dtype=np.uint8), args.key, args.scheme
    )
    save_image(y[0], out / "revealed.png")
    print(f"wrote {out / 'revealed.png'}")
    return 0


def _video(args: argparse.Namespace) -> int:
    import torch

    from egain.applications.video import invert_video, read_frames, write_video

    if args.methods is not None:
        return _video_compare(args)
    out, m = _out(args), _load(args)
    emb = _video_embedder(args, m.device)
    if len(args.input) > 1:
        from egain.errors import InputError

        raise InputError(
            "several --input clips are for comparisons: add --methods (e.g. --methods e4e,egain)"
        )
    frames = read_frames(args.input[0], m.input_size, args.max_frames)
    if args.direction:
        return _video_edit(args, out, m, frames, emb)
    recon, metrics, _ = invert_video(m, frames, smooth=args.smooth, embedder=emb)
    write_video(recon, out / f"reconstruction.{args.format}", args.fps, 2)
    write_video(torch.cat([frames, recon], -1), out / f"side_by_side.{args.format}", args.fps, 2)
    _write_stills(out, [frames, recon], ["source", args.method])
    _write_json(
        out / "temporal.json",
        {"method": args.method, "frames": int(frames.shape[0]), "smooth": args.smooth, **metrics},
    )
    return 0


def _write_stills(out: Path, clips, labels, rows: int = 6) -> None:
    """``frames.png``: the clip as a picture, ``rows`` evenly spaced frames (time runs down), one
    column per clip (source, reconstruction, edit)."""
    from egain.applications.common import write_columns

    n = int(clips[0].shape[0])
    k = min(rows, n)  # k evenly spaced frames, the first and the last included
    idx = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
    write_columns([c[idx] for c in clips], labels, out / "frames.png")


def _video_direction(args: argparse.Namespace, method):
    """(direction, its name, the json fields describing the edit) of ``apply video --direction``."""
    from egain.editing.apply import has_ada, resolve_directions

    direction = resolve_directions(args.direction, method.generator)
    name = getattr(direction, "name", "direction") or "direction"
    fields = {
        "direction": name,
        "directions": args.direction,
        "strength": args.strength,
        "ada": (not args.no_ada) if has_ada(method) else None,
    }
    return direction, name, fields


def _video_edit(args: argparse.Namespace, out: Path, m, frames, emb) -> int:
    """``egain apply video --direction``: reconstruction and edited clips, source|recon|edit, metrics."""
    import torch

    from egain.applications.video import edit_video, write_video

    direction, _, fields = _video_direction(args, m)
    r = edit_video(m, frames, direction, args.strength, smooth=args.smooth, ada=not args.no_ada, embedder=emb)
    write_video(r.reconstruction, out / f"reconstruction.{args.format}", args.fps, 2)
    write_video(r.edited, out / f"edit.{args.format}", args.fps, 2)
    side = torch.cat([frames, r.reconstruction, r.edited], -1)
    write_video(side, out / f"side_by_side.{args.format}", args.fps, 2)
    edit_label = f"{'+'.join(args.direction)} x{args.strength:g}"
    _write_stills(out, [frames, r.reconstruction, r.edited], ["source", args.method, edit_label])
    _write_json(
        out / "temporal.json",
        {
            "method": args.method,
            "frames": int(frames.shape[0]),
            "smooth": args.smooth,
            **r.recon_metrics,
            **fields,
            "edit": r.metrics,
        },
    )
    return 0


def _video_embedder(args: argparse.Namespace, device):
    if not args.id_net or args.id_net == "none":
        return None
    from egain.faces import load_embedder

    return load_embedder(args.id_net, device=device)


def _video_compare(args: argparse.Namespace) -> int:
    """``egain apply video --methods A,B,..``: every method on every clip; per-clip and mean metrics."""
    import torch

    from egain.applications.video import (
        claims_markdown,
        consistency_claims,
        edit_video,
        invert_video,
        read_frames,
        write_video,
    )
    from egain.errors import InputError
    from egain.utils.device import resolve_device
    from egain.workflows.bundled import BUNDLED_METHODS, label_name, load_bundled, parse_labels, parse_spec

    if args.checkpoint:
        raise InputError("--checkpoint names one model; with --methods give NAME=CHECKPOINT labels")
    labels = parse_labels(args.methods, ())
    if not labels:
        raise InputError("--methods is empty; give a comma list such as e4e,hfgi,egain")
    out = _out(args)
    device = resolve_device(args.device)
    models = {label_name(lb): load_bundled(lb, device) for lb in labels}
    kinds = {}  # label -> registry method, for the claim's groups (e4e-swagan is an e4e)
    for lb in labels:
        spec = parse_spec(lb)
        kinds[spec.name] = (
            BUNDLED_METHODS[spec.bundled].method if spec.bundled else (spec.method or spec.name)
        )
    stems = [Path(clip).stem or Path(clip).name for clip in args.input]
    if len(set(stems)) != len(stems):
        raise InputError(
            "two clips share a name ("
            + ", ".join(sorted({s for s in stems if stems.count(s) > 1}))
            + "); their outputs would overwrite each other: rename one"
        )
    edits = {n: _video_direction(args, m) for n, m in models.items()} if args.direction else {}
    emb = _video_embedder(args, device)
    results: dict[str, list[dict[str, float]]] = {n: [] for n in models}
    edit_results: dict[str, list[dict[str, float]]] = {n: [] for n in edits}
    for clip in args.input:
        stem = Path(clip).stem or Path(clip).name
        columns, size = [], None
        for name, m in models.items():
            frames = read_frames(clip, m.input_size, args.max_frames)
            if name in edits:
                r = edit_video(
                    m,
                    frames,
                    edits[name][0],
                    args.strength,
                    smooth=args.smooth,
                    ada=not args.no_ada,
                    embedder=emb,
                )
                recon, metrics = r.reconstruction, r.recon_metrics
                edit_results[name].append(r.metrics)
                write_video(r.edited, out / f"edit_{name}_{stem}.{args.format}", args.fps, 2)
            else:
                recon, metrics, _ = invert_video(m, frames, smooth=args.smooth, embedder=emb)
            results[name].append(metrics)
            if size is None:
                size = m.input_size
                columns.append(frames)
            columns.append(_resize_clip(recon, size))
            if name in edits:
                columns.append(_resize_clip(r.edited, size))
        write_video(torch.cat(columns, -1), out / f"side_by_side_{stem}.{args.format}", args.fps, 2)
    means = _means(results)
    report = {
        "methods": labels,
        "clips": list(args.input),
        "smooth": args.smooth,
        "id_net": args.id_net,
        "mean": means,
        "per_clip": results,
    }
    keys = ("tc_error", "tc_ratio", "psnr", "latent_step", "delta_flicker", "id_drift", "id_sim")
    lines = _table(means, keys)
    claims = consistency_claims(results, methods=kinds)
    if claims:
        report["claims"] = claims
        lines += ["", *claims_markdown(claims)]
    if edits:
        edit_means = _means(edit_results)
        report.update(
            {
                "directions": args.direction,
                "direction": {n: e[1] for n, e in edits.items()},
                "strength": args.strength,
                "edit_mean": edit_means,
                "edit_per_clip": edit_results,
            }
        )
        edit_keys = ("tc_error", "tc_ratio", "tc_error_vs_recon", "edit_change", "id_drift", "id_sim")
        lines += ["", f"edit ({'+'.join(args.direction)}, strength {args.strength:g}):", ""]
        lines += _table(edit_means, edit_keys)
    _write_json(out / "temporal.json", report)
    (out / "temporal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _means(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {n: {k: sum(p[k] for p in per) / len(per) for k in per[0]} for n, per in results.items()}


def _table(means: dict[str, dict[str, float]], keys) -> list[str]:
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for n, mean in means.items():
        lines.append(f"| {n} | " + " | ".join(f"{mean[k]:.4f}" if k in mean else "-" for k in keys) + " |")
    return lines


def _resize_clip(clip, size: int):
    import torch.nn.functional as F

    if clip.shape[-1] == size:
        return clip
    return F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _restore(args: argparse.Namespace) -> int:
    import torch

    from egain.applications.common import write_columns
    from egain.applications.restoration import (
        Corruption,
        evaluate_restoration,
        parsing_input,
        parsing_picture,
    )
    from egain.utils.images import save_image

    mode = Corruption(args.corrupt)  # an unknown mode: one line, before any loading
    out, m = _out(args), _load(args)
    if m.input_nc != mode.input_channels:
        from egain.errors import InputError

        raise InputError(
            f"--corrupt {args.corrupt} feeds {mode.input_channels}-channel inputs; this {args.method} model takes "
            f"{m.input_nc} (was it trained with --corrupt {args.corrupt}?)"
        )
    clean, maps, names = _restore_inputs(args, mode, m.input_size)
    label = f"restored ({args.method})"
    if clean is None:  # parsing maps without their images: translate, nothing to score
        x = parsing_input(maps)
        restored = torch.cat(
            [m.invert(x[i : i + 16].to(m.device)).reconstruction.float().cpu() for i in range(0, len(x), 16)]
        )
        k = min(8, len(x))
        write_columns([parsing_picture(x[:k]), restored[:k]], ["parsing map", label], out / "restoration.png")
        _save_each(out, names, restored, save_image)
        print(f"translated {len(x)} maps (no images beside them: not scored); wrote {out}")
        return 0
    embedder = None if args.id_net in (None, "", "none") else args.id_net
    parser = None if args.parser in (None, "", "none") else args.parser
    report, rows = evaluate_restoration(
        m, clean, args.corrupt, maps=maps, seed=args.seed, embedder=embedder, parser=parser
    )
    k = min(8, clean.shape[0])
    write_columns(
        [rows["clean"][:k], rows["input"][:k], rows["restored"][:k]],
        ["clean", args.corrupt, label],
        out / "restoration.png",
    )
    if names:
        _save_each(out, names, rows["restored"], save_image)
    _write_json(
        out / "restoration.json",
        {
            "method": args.method,
            "checkpoint": args.checkpoint,
            "input": args.input or "synthfaces eval",
            "id_net": embedder,
            "parser": parser if mode.needs_maps else None,
            **report.as_dict(),
        },
    )
    return 0


def _restore_inputs(args: argparse.Namespace, mode, size: int):
    """(clean images or None, parsing maps or None, file stems or None) of ``egain apply restore``."""
    import torch

    from egain.errors import InputError

    if args.input is None:
        from egain.data.synthfaces import SynthFacesDataset

        ds = SynthFacesDataset.eval_set(size=size, return_parsing=mode.needs_maps)
        items = [ds[i] for i in range(min(args.n, len(ds)))]
        clean = torch.stack([it[0] for it in items])
        return clean, (torch.stack([it[-1] for it in items]) if mode.needs_maps else None), None
    from egain.methods import prepare_images
    from egain.utils.images import list_images

    folder = Path(args.input)
    if not mode.needs_maps:
        files = list_images(folder)
        return prepare_images(files, size), None, [f.stem for f in files]
    from egain.data.parsing_pairs import read_parsing_map
    from egain.utils.sidefiles import PARSING_SUFFIX

    map_files = sorted(folder.glob(f"*{PARSING_SUFFIX}.png")) if folder.is_dir() else [folder]
    if not map_files:
        raise InputError(
            f"--input '{folder}' holds no parsing maps (*{PARSING_SUFFIX}.png); write them with "
            "'egain data synthfaces --parsing'"
        )
    maps = torch.stack([read_parsing_map(f, size) for f in map_files])
    stems = [f.stem[: -len(PARSING_SUFFIX)] if f.stem.endswith(PARSING_SUFFIX) else f.stem for f in map_files]
    images = [f.with_name(s + ".png") for f, s in zip(map_files, stems, strict=True)]
    if not all(p.is_file() for p in images):
        return None, maps, stems
    return prepare_images(images, size), maps, stems


def _save_each(out: Path, names, images, save_image) -> None:
    folder = out / "restored"
    folder.mkdir(exist_ok=True)
    for name, img in zip(names, images, strict=True):
        save_image(img, folder / f"{name}.png")


def _sequences(args: argparse.Namespace) -> int:
    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "--out")  # a file where a folder is expected: one line, before any work
    from egain.applications.video import read_frames, write_video
    from egain.data.synthfaces.sequences import write_sequences

    folders = write_sequences(
        args.out,
        args.identities,
        args.frames,
        args.size,
        args.seed,
        keyframe_every=args.keyframe_every,
        amplitude=args.amplitude,
    )
    if args.gif:
        for f in folders:
            write_video(read_frames(f), f / "clip.gif", 10.0)
    print(f"wrote {len(folders)} clip(s) of {args.frames} frames to {args.out}")
    return 0

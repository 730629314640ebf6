"""``egain faces train`` and ``egain faces evaluate``: face-embedding networks for the ID metric and loss.

``egain faces attributes train|evaluate`` (the attribute classifier) is added from
:mod:`egain.cli.attributes`, ``egain faces parsing train|evaluate`` (the face parser) from
:mod:`egain.cli.parsing`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from egain.cli.argtypes import int_list, positive_int
from egain.errors import InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "faces",
        help="train and evaluate face-embedding networks (ArcFace / MagFace losses) and the attribute classifier",
    )
    sub = parser.add_subparsers(dest="faces_command", metavar="ACTION", required=True)

    from egain.faces.nets import FaceNetConfig

    net = FaceNetConfig()
    t = sub.add_parser("train", help="train an IR-SE embedding network on identity-labelled faces")
    t.add_argument("--loss", choices=("arcface", "cosface", "magface"), required=True)
    t.add_argument("--data", required=True, help="folder with labels.jsonl, or synthfaces:SPEC")
    t.add_argument("--out", required=True, help="run folder (checkpoint, log, embedder.pt, plots)")
    t.add_argument(
        "--size", type=positive_int, default=64, help="image size the data is loaded at (default 64)"
    )
    t.add_argument(
        "--crop",
        default="auto",
        help="face crop in px of --size: 'auto' (central 3/4; 8:56 at 64 -> 48 px net input), 'none', or t,b,l,r",
    )
    t.add_argument("--iters", type=positive_int, default=2500)
    t.add_argument("--batch", type=positive_int, default=64, help="batch per process")
    t.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 SGD, 1e-3 AdamW)")
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--warmup", type=int, default=100, help="linear warm-up steps before the cosine decay")
    t.add_argument(
        "--holdout",
        default="auto",
        help="held-out identities: 'split' (non-train labels.jsonl splits), a fraction (<1) or a count; "
        "'auto' (default): 'split' when the data has per-identity splits, else 0.1",
    )
    t.add_argument("--max-shift", type=int, default=4, help="random shift in px (augmentation)")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--ckpt-every", type=int, default=250)
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument(
        "--widths", type=int_list, default=list(net.widths), help="stage widths, e.g. 32,64,128,256"
    )
    t.add_argument("--units", type=int_list, default=list(net.units), help="units per stage, e.g. 1,2,3,1")
    t.add_argument("--stem", type=int, default=net.stem_channels, help="stem channels")
    t.add_argument("--embedding-dim", type=int, default=net.embedding_dim)
    t.add_argument("--dropout", type=float, default=net.dropout)
    t.add_argument("--scale", type=float, default=64.0, help="logit scale s")
    t.add_argument(
        "--margin",
        type=float,
        default=None,
        help="ArcFace angular margin (default 0.5) or CosFace cosine margin (default 0.35)",
    )
    t.add_argument("--lambda-g", type=float, default=35.0, help="MagFace regulariser weight")
    t.add_argument("--l-a", type=float, default=10.0, help="MagFace magnitude lower bound l_a")
    t.add_argument("--u-a", type=float, default=110.0, help="MagFace magnitude upper bound u_a")
    t.add_argument("--l-m", type=float, default=0.45, help="MagFace margin at l_a")
    t.add_argument("--u-m", type=float, default=0.8, help="MagFace margin at u_a")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--stop-after", type=int, default=None, help="end this session after N steps (resumable)")
    t.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-time budget: the learning rate anneals by time as well as steps, and the run "
        "ends (evaluation, embedder.pt) once this many minutes have passed",
    )
    t.add_argument(
        "--resume", default="auto", help="'auto' (continue RUN_DIR/checkpoint.pt), 'none', or a path"
    )
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="verification on held-out identities: EER, TAR@FAR, ROC plot")
    e.add_argument(
        "--embedder", required=True, help="synthfaces-arcface, arcface-irse50:PATH, RUN/embedder.pt, ..."
    )
    e.add_argument("--data", required=True, help="folder with labels.jsonl, or synthfaces:SPEC")
    e.add_argument("--out", default=None, help="report folder (report.json, roc.png); default: print only")
    e.add_argument(
        "--size", type=positive_int, default=None, help="load images at this size (default: embedder input)"
    )
    e.add_argument(
        "--identities",
        choices=("auto", "heldout", "all"),
        default="auto",
        help="auto: the held-out identities recorded in the embedder when present in the data, "
        "else the --holdout rule; all: every identity",
    )
    e.add_argument("--holdout", default="auto", help="as for 'egain faces train'")
    e.add_argument(
        "--split", default=None, help="only images whose labels.jsonl 'split' is one of these (a,b)"
    )
    e.add_argument("--far", type=float, default=1e-3)
    e.add_argument("--per-identity", type=positive_int, default=None, help="at most N images per identity")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=_evaluate)

    from egain.cli.attributes import add_parsers
    from egain.cli.parsing import add_parsers as add_parsing_parsers

    add_parsers(sub)
    add_parsing_parsers(sub)


def _train(args: argparse.Namespace) -> int:
    from egain.faces.nets import FaceNetConfig
    from egain.training.faces import FaceTrainConfig, train_faces
    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "run folder")
    if len(args.widths) != len(args.units):
        raise InputError(f"--widths {args.widths} and --units {args.units} need the same length")
    net = FaceNetConfig(
        input_size=args.size,
        widths=tuple(args.widths),
        units=tuple(args.units),
        stem_channels=args.stem,
        embedding_dim=args.embedding_dim,
        dropout=args.dropout,
    )
    if args.size % (2 ** len(args.widths)):
        raise InputError(
            f"--size {args.size} must be divisible by 2^{len(args.widths)} (one stride-2 per stage)"
        )
    loss_options: dict = {"scale": args.scale}
    if args.loss == "arcface":
        loss_options["margin"] = 0.5 if args.margin is None else args.margin
    elif args.loss == "cosface":
        loss_options["margin"] = 0.35 if args.margin is None else args.margin
    else:
        loss_options.update(lambda_g=args.lambda_g, l_a=args.l_a, u_a=args.u_a, l_m=args.l_m, u_m=args.u_m)
    cfg = FaceTrainConfig(
        loss=args.loss,
        data=args.data,
        out=args.out,
        size=args.size,
        crop=args.crop,
        iters=args.iters,
        batch=args.batch,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        holdout=args.holdout,
        max_shift=args.max_shift,
        eval_every=args.eval_every,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        seed=args.seed,
        device=args.device,
        stop_after=args.stop_after,
        max_minutes=args.max_minutes,
        net=net.to_dict(),
        loss_options=loss_options,
    )
    scores = train_faces(cfg, resume=args.resume)
    if scores:
        print(_summary(scores))
    if os.environ.get("RANK", "0") == "0" and (Path(args.out) / "embedder.pt").exists():
        print(f"wrote {Path(args.out) / 'embedder.pt'}")
    return 0


def _summary(r: dict) -> str:
    text = (
        f"verification on {r['n_identities']} identities ({r['n_images']} images): EER {r['eer']:.2%}, "
        f"TAR@FAR={r['far']:g} {r['tar_at_far']:.2%}, genuine {r['genuine_mean']:.3f} / impostor "
        f"{r['impostor_mean']:.3f}, |f| {r['magnitude_mean']:.2f}"
    )
    if "distortion_blur2" in r:
        text += (
            f"; distorted copies: sigma-2 blur {r['distortion_blur2']:.3f}, "
            f"16 px round trip {r['distortion_round16']:.3f} (vs genuine {r['genuine_mean']:.3f})"
        )
    return text


def _evaluate(args: argparse.Namespace) -> int:
    from egain.faces.data import FaceSet, holdout_identities, load_faces
    from egain.faces.loading import load_embedder
    from egain.faces.verification import plot_verification
    from egain.runtime.files import atomic_write_json
    from egain.training.faces import evaluate_faces
    from egain.utils.paths import check_output_dir

    if args.out:
        check_output_dir(args.out, "report folder")
    embedder = load_embedder(args.embedder, device=args.device)
    size = args.size or embedder.preprocess.reference_size or embedder.preprocess.input_size
    splits = [s for s in args.split.split(",") if s] if args.split else None
    faces: FaceSet = load_faces(args.data, size, splits=splits, progress_bar=True)
    recorded = list(embedder.meta.get("train", {}).get("heldout_identities", []))
    if args.identities == "all":
        chosen = faces.identities
    elif args.identities == "auto" and recorded and set(recorded) <= set(faces.identities):
        chosen = recorded
    else:
        chosen = holdout_identities(faces, args.holdout)[1]
    faces = faces.subset(chosen)
    if faces.num_identities < 2:
        raise InputError("verification needs at least two identities with images")
    report, genuine, impostor, _ = evaluate_faces(
        embedder, faces, far=args.far, per_identity=args.per_identity
    )
    report["embedder"] = embedder.name
    report["data"] = args.data
    print(_summary(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "report.json", report)
        plot_verification(genuine, impostor, out / "roc.png", title=embedder.name, far=args.far)
        print(f"wrote {out / 'report.json'} and {out / 'roc.png'}")
    return 0

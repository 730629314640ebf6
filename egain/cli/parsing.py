"""``egain faces parsing train|evaluate``: the face-parsing network (E2Style's parsing loss, SAM's segments).

Registered under ``egain faces`` (see :mod:`egain.cli.faces`).
"""

from __future__ import annotations

import argparse

from egain.cli.argtypes import int_list
from egain.cli.synthfaces_train import (
    add_action,
    add_command,
    add_evaluate_arguments,
    add_session_arguments,
    add_train_arguments,
    check_report_dir,
    held_out_data,
    prepare_session,
    print_export,
    train_config_kwargs,
    write_report,
)
from egain.errors import InputError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``parsing`` (with ``train`` and ``evaluate``) to the ``egain faces`` sub-commands."""
    from egain.faces.parsing import ParsingNetConfig
    from egain.training.parsing import ParsingTrainConfig

    cfg, net = ParsingTrainConfig(), ParsingNetConfig()
    psub = add_command(
        sub,
        "parsing",
        help="train / evaluate the face-parsing network (per-pixel classes of synthfaces)",
        description="A UNet parsing synthfaces into their 22 classes (E2Style's multi-layer parsing loss, "
        "SAM's segments). See docs/faces.md, 'Face parsing'.",
    )

    t = add_action(
        psub, "train", "train on on-the-fly synthfaces maps (train split), report mIoU on held-out identities"
    )
    add_train_arguments(
        t,
        cfg,
        "parser.pt",
        "synthfaces:NxK[,seed=S,rare_rate=R] recipe (train-split identities only)",
    )
    t.add_argument(
        "--class-weights",
        choices=("none", "balanced"),
        default=cfg.class_weights,
        help="cross-entropy class weights: balanced = sqrt(median freq / freq), clipped to [0.2, 10]",
    )
    t.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    t.add_argument(
        "--widths", type=int_list, default=list(net.widths), help="five widths: 4 encoder blocks + centre"
    )
    t.add_argument(
        "--max-minutes", type=float, default=None, help="wall-time budget of the run (all sessions)"
    )
    add_session_arguments(t, cfg)
    t.set_defaults(func=_train)

    e = add_action(psub, "evaluate", "per-class IoU and mIoU on held-out synthfaces identities")
    e.add_argument(
        "--parser",
        required=True,
        help="RUN/parser.pt, RUN, zoo:NAME, synthfaces-parsing, bisenet:PATH or e2style-unet:PATH "
        "(19-class parsers are scored on the CelebAMask-HQ fusion of the maps)",
    )
    e.add_argument(
        "--data",
        default=None,
        help="synthfaces:SPEC; default: the parser's held-out identities (test split of its training world)",
    )
    e.add_argument("--size", type=int, default=None, help="image size (default: the parser's, 64 for others)")
    add_evaluate_arguments(e, batch=64)
    e.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from egain.faces.parsing import ParsingNetConfig
    from egain.training.parsing import ParsingTrainConfig, train_parsing

    prepare_session(args)
    net = ParsingNetConfig(size=args.size, widths=args.widths)
    cfg = ParsingTrainConfig(
        class_weights=args.class_weights,
        flip=not args.no_flip,
        max_minutes=args.max_minutes,
        net=net.to_dict(),
        **train_config_kwargs(args),
    )
    result = train_parsing(cfg, resume=args.resume)
    if result:
        h = result["held_out"]
        print(
            f"held-out ({h['images']} images of {h['identities']} test-split identities, {result['steps']} steps): "
            f"mIoU {result['miou']:.3f}, pixel accuracy {result['pixel_accuracy']:.3f}"
        )
    print_export(args, result, "parser.pt")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from egain.data.synthfaces import dataset_from_spec
    from egain.faces.parsing import ParsingNet, evaluate_parser, format_iou, load_parser
    from egain.training.parsing import eval_dataset

    check_report_dir(args)
    parser = load_parser(args.parser, device=args.device)
    size = args.size or (
        parser.input_size if isinstance(parser, ParsingNet) and parser.input_size <= 256 else 64
    )
    if args.data is None:
        data = held_out_data(eval_dataset, parser.meta, size, args, identities=200)
        what = f"{len(data)} images of held-out (test-split) identities at {size} px"
    elif args.data.startswith("synthfaces:"):
        data = dataset_from_spec(args.data[len("synthfaces:") :], size=size, return_parsing=True)
        what = f"{args.data} at {size} px"
    else:
        raise InputError(f"--data must be synthfaces:SPEC (the maps come from synthfaces), got '{args.data}'")
    report = evaluate_parser(parser, data, batch=args.batch, workers=args.workers, progress_bar=True)
    print(f"{parser.name} on {what}")
    print(format_iou(report))
    write_report(args, {"parser": parser.name, "data": what, **report})
    return 0

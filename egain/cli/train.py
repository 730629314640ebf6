"""``egain train``: train an inversion method on a frozen generator.

The loss weights (``--lambda-NAME``) and training options of every registered method are declared
by the method (``InversionMethod.loss_weights`` / ``training_options``) and become flags here
generically; a flag the chosen method does not declare is refused with one line.

Examples::

    egain train --method e4e --generator G.pt --data synthfaces:... --out runs/e4e
    egain train --method egain --generator G.pt --data DIR --basic-encoder runs/e4e/model.pt --out runs/egain
    torchrun --nproc_per_node 4 -m egain train ...        (DDP; --batch is per process)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from egain.cli.argtypes import checkpoint_path
from egain.errors import EgainError


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows each flag's default, except the method-declared ones (their help lists them per method)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _fmt(value: Any) -> str:
    return "off" if value is None else ("on" if value is True else str(value))


def _declared(methods: dict[str, type]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Union of the methods' loss terms and options: name -> {method: default}, plus the declaration."""
    lambdas: dict[str, dict[str, Any]] = {}
    options: dict[str, dict[str, Any]] = {}
    for name, cls in methods.items():
        for term, weight in cls.loss_weights.items():
            lambdas.setdefault(term, {"defaults": {}, "help": cls.loss_help.get(term, term)})
            lambdas[term]["defaults"][name] = weight
        for opt in cls.training_options:
            entry = options.setdefault(opt.name, {"decl": opt, "defaults": {}})
            if entry["decl"].type is not opt.type:
                raise EgainError(
                    f"training option {opt.name!r} is declared as {opt.type.__name__} by {name} "
                    f"and as {entry['decl'].type.__name__} by another method"
                )
            entry["defaults"][name] = opt.default
    return lambdas, options


def _default_text(defaults: dict[str, Any]) -> str:
    values = {_fmt(v) for v in defaults.values()}
    if len(values) == 1:
        return f"default {values.pop()}; methods: {', '.join(defaults)}"
    return "default " + ", ".join(f"{m} {_fmt(v)}" for m, v in defaults.items())


def register(sub: argparse._SubParsersAction) -> None:
    from egain.methods import METHODS, available

    names = available()
    trainable = {n: METHODS[n] for n in names if METHODS[n].trains()}
    p = sub.add_parser(
        "train",
        help="train an inversion method",
        formatter_class=_DefaultsFormatter,
        description="Train an inversion method on a frozen generator. Writes RUN_DIR/model.pt (for "
        "'egain invert'), checkpoint.pt (resumable exactly), log.jsonl, samples/*.png, run.json. "
        "Loss weights and options are declared by each method; their defaults are the method's published values.",
    )
    p.add_argument("--method", required=True, choices=names)
    p.add_argument(
        "--generator",
        required=True,
        type=checkpoint_path,
        help="generator checkpoint (ours, rosinality .pt, or zoo:NAME)",
    )
    p.add_argument("--data", required=True, help="image folder, or synthfaces:SPEC")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--iters", type=int, default=10000, help="training steps")
    p.add_argument("--batch", type=int, default=8, help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of the trained modules")
    p.add_argument(
        "--resume",
        default="auto",
        help="'auto' (continue RUN_DIR/checkpoint.pt if present), a path, or 'none'",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation")
    p.add_argument("--log-every", type=int, default=25, help="steps between log.jsonl records")
    p.add_argument("--val-every", type=int, default=500, help="steps between validations (samples/*.png)")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument(
        "--no-hflip", action="store_true", help="no random horizontal flips of the training images"
    )
    p.add_argument(
        "--config", help='JSON of method configuration, e.g. \'{"delta_encoder": {"type": "consultation"}}\''
    )
    lambdas, options = _declared(trainable)
    p.add_argument(
        "--corrupt",
        default=None,
        metavar="MODE",
        help="restoration/translation encoder: train on corrupted inputs with the clean image as target "
        "(colorize, inpaint, superres[:F,F..], sketch; methods with accepts_target: e4e family, psp, restyle, e2style; parsing (alias segmentation): one-hot parsing maps in, e4e, psp, e2style; the data needs maps)",
    )
    group = p.add_argument_group("loss weights (declared by the methods)")
    for term, entry in lambdas.items():
        group.add_argument(
            "--lambda-" + term.replace("_", "-"),
            dest=f"lambda__{term}",
            metavar="W",
            type=float,
            default=None,
            help=f"weight of the {entry['help']} ({_default_text(entry['defaults'])})",
        )
    group = p.add_argument_group("method training options (declared by the methods)")
    for name, entry in options.items():
        opt = entry["decl"]
        kwargs: dict[str, Any] = {"dest": f"option__{name}", "default": None}
        if opt.type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = opt.type
            kwargs["metavar"] = name.upper()
            if opt.choices:
                kwargs["choices"] = opt.choices
        group.add_argument(opt.flag, help=f"{opt.help} ({_default_text(entry['defaults'])})", **kwargs)
    from egain import presets

    presets.add_argument(p, "train")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egain import presets
    from egain.methods import method_class
    from egain.training.inversion import InversionTrainConfig, TrainingInterrupted, train_inversion
    from egain.utils.paths import check_output_dir  # a file at --out is one line, not a traceback

    if applied := presets.apply(args, method=args.method):
        print(f"preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in applied.items()))
    check_output_dir(args.out, "run folder")

    cls = method_class(args.method)
    if not cls.trains():
        raise EgainError(
            f"{args.method} needs no training: it inverts each image by optimisation "
            f"(use 'egain invert --method {args.method}')"
        )
    overrides = {}
    if args.config:
        try:
            overrides = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise EgainError(f"--config must be a JSON object ({exc})") from None
        if not isinstance(overrides, dict):
            raise EgainError("--config must be a JSON object of method settings")
    if args.iters < 1 or args.batch < 1:
        raise EgainError(f"--iters and --batch must be >= 1 (got {args.iters}, {args.batch})")
    lambdas: dict[str, float] = {}
    options: dict[str, Any] = {}
    declared_terms = set(cls.loss_weights)
    declared_opts = {o.name: o for o in cls.training_options}
    for key, value in vars(args).items():
        if value is None or value is False:
            continue
        if key.startswith("lambda__"):
            term = key.removeprefix("lambda__")
            if term not in declared_terms:
                raise EgainError(
                    f"--lambda-{term.replace('_', '-')} is not a loss term of {args.method} "
                    f"(its terms: {', '.join(sorted(declared_terms)) or 'none'})"
                )
            lambdas[term] = value
        elif key.startswith("option__"):
            name = key.removeprefix("option__")
            if name not in declared_opts:
                raise EgainError(f"{declared_flag(name)} is not an option of {args.method}")
            options[name] = value
    cfg = InversionTrainConfig(
        method=args.method,
        generator=args.generator,
        data=args.data,
        out=args.out,
        iters=args.iters,
        batch=args.batch,
        lr=args.lr,
        lambdas=lambdas,
        options=options,
        resume=None if args.resume in ("none", "") else args.resume,
        device=args.device,
        seed=args.seed,
        log_every=args.log_every,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        workers=args.workers,
        hflip=not args.no_hflip,
        method_config=overrides,
        corrupt=args.corrupt,
    )
    try:
        record = train_inversion(cfg)
    except TrainingInterrupted as exc:
        print(f"egain train: {exc}", file=sys.stderr)
        return 130
    if record and os.environ.get("RANK", "0") == "0":
        shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}
        print(json.dumps(shown))
    return 0


def declared_flag(name: str) -> str:
    return "--" + name.replace("_", "-")

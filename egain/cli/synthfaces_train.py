"""Arguments and set-up shared by the synthfaces trainers' commands (``egain faces attributes
train|evaluate``, ``egain faces parsing train|evaluate``).

Both trainers take the same data, schedule, evaluation and session options and map them one to one
onto their config dataclasses, and both evaluators score a network on its held-out identities;
keeping them here means a new option or a changed default reaches both commands, and their
``--help`` texts stay alike.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from egain.errors import InputError

#: config fields every synthfaces trainer's config has, named as the command-line options
_COMMON_FIELDS = (
    "out",
    "data",
    "size",
    "steps",
    "batch",
    "lr",
    "weight_decay",
    "warmup",
    "preload",
    "workers",
    "eval_identities",
    "eval_per_identity",
    "eval_every",
    "ckpt_every",
    "log_every",
    "seed",
    "device",
    "stop_after",
)


def add_command(
    sub: argparse._SubParsersAction, name: str, help: str, description: str
) -> argparse._SubParsersAction:
    """``egain faces NAME`` and its ``ACTION`` sub-commands (``NAME_command``)."""
    parser = sub.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_action(actions: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """One action (``train``, ``evaluate``), its ``--help`` showing the defaults."""
    return actions.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_train_arguments(t: argparse.ArgumentParser, cfg: Any, artefact: str, data_help: str) -> None:
    """The run folder, data, schedule and evaluation options (defaults from the trainer's ``cfg``);
    ``artefact`` is the export's file name, shown in the ``--out`` help."""
    t.add_argument("--out", required=True, help=f"run folder (checkpoint.pt, log.jsonl, {artefact})")
    t.add_argument("--data", default=cfg.data, help=data_help)
    t.add_argument("--size", type=int, default=cfg.size, help="image size rendered and fed to the net")
    t.add_argument("--steps", type=int, default=cfg.steps)
    t.add_argument("--batch", type=int, default=cfg.batch, help="batch per process")
    t.add_argument("--lr", type=float, default=cfg.lr, help="peak AdamW learning rate (cosine decay)")
    t.add_argument("--weight-decay", type=float, default=cfg.weight_decay)
    t.add_argument("--warmup", type=int, default=cfg.warmup)
    t.add_argument(
        "--preload",
        choices=("auto", "yes", "no"),
        default=cfg.preload,
        help="render the training set into memory once (auto: when steps*batch covers it)",
    )
    t.add_argument("--workers", type=int, default=cfg.workers, help="DataLoader workers rendering images")
    t.add_argument("--eval-identities", type=int, default=cfg.eval_identities, help="held-out identities")
    t.add_argument("--eval-per-identity", type=int, default=cfg.eval_per_identity)
    t.add_argument("--eval-every", type=int, default=cfg.eval_every)
    t.add_argument("--ckpt-every", type=int, default=cfg.ckpt_every)
    t.add_argument("--log-every", type=int, default=cfg.log_every)


def add_session_arguments(t: argparse.ArgumentParser, cfg: Any) -> None:
    """Seed, device, threads and the session options (``--stop-after``, ``--resume``)."""
    t.add_argument("--seed", type=int, default=cfg.seed)
    t.add_argument("--device", default=cfg.device, help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    t.add_argument("--stop-after", type=int, default=None, help="end this session after N steps (resumable)")
    t.add_argument("--resume", default="auto", help="'auto' (continue RUN/checkpoint.pt), 'none', or a path")


def prepare_session(args: argparse.Namespace) -> None:
    """Check the run folder, set the CPU threads and refuse CUDA where there is none: before any
    data is rendered, so that a wrong argument is one line at once."""
    import torch

    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "run folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {args.device} asks for CUDA but none is available; use --device cpu")


def train_config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields common to the synthfaces trainers, from the parsed options."""
    return {name: getattr(args, name) for name in _COMMON_FIELDS}


def print_export(args: argparse.Namespace, result: dict, artefact: str) -> None:
    """Name the export a complete run wrote (rank 0 only; a stopped session writes none)."""
    if os.environ.get("RANK", "0") == "0" and result and (Path(args.out) / artefact).exists():
        print(f"wrote {Path(args.out) / artefact}")


def add_evaluate_arguments(e: argparse.ArgumentParser, batch: int) -> None:
    """The held-out set's size, batch, workers, report folder and device of an ``evaluate`` action."""
    e.add_argument("--identities", type=int, default=None, help="held-out identities (default: as trained)")
    e.add_argument("--per-identity", type=int, default=None)
    e.add_argument("--batch", type=int, default=batch)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--out", default=None, help="write report.json here")
    e.add_argument("--device", default="auto")


def check_report_dir(args: argparse.Namespace) -> None:
    """Refuse a bad ``--out`` before the network is loaded and scored."""
    from egain.utils.paths import check_output_dir

    if args.out:
        check_output_dir(args.out)


def held_out_data(
    eval_dataset: Callable[[int, int, int, int], Any],
    meta: dict,
    size: int,
    args: argparse.Namespace,
    identities: int,
) -> Any:
    """The trainer's held-out set for a network whose export ``meta`` says how it was held out
    (seed, identities, per identity); ``--identities``/``--per-identity`` override, ``identities``
    is the default for networks that do not say."""
    trained = meta.get("scores", {}).get("held_out", {})
    return eval_dataset(
        int(trained.get("seed", 0)),
        size,
        args.identities or int(trained.get("identities", identities)),
        args.per_identity or int(trained.get("per_identity", 2)),
    )


def write_report(args: argparse.Namespace, record: dict) -> None:
    """``--out``/report.json, when ``--out`` is given."""
    from egain.runtime.files import atomic_write_json

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "report.json", record)
        print(f"wrote {out / 'report.json'}")

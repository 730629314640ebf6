"""The exports of the small synthfaces networks (``classifier.pt``, ``parser.pt``): one layout, one
loader, so that both refuse a training checkpoint or a mismatched config with the same words.

An export is ``{"egain_format", "config", "state_dict", "scores", ...extra}``; ``scores`` (held-out
figures) and ``train`` (how it was trained) come back as the network's ``meta``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError, InputError
from egain.runtime.checkpoint import load_checkpoint


def cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights, detached and on the CPU (what an export stores)."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def file_in_run(path: Path, artefact: str, kind: str) -> Path:
    """``path`` itself, or ``path/artefact`` when ``path`` is a run folder (``kind``: "an attribute"
    names it in the message)."""
    if path.is_dir():
        if not (path / artefact).exists():
            raise CheckpointError(f"'{path}' is a folder without {artefact} ({kind} run folder?)")
        path = path / artefact
    return path


def load_export(
    path: str | os.PathLike,
    *,
    fmt: str,
    what: str,
    artefact: str,
    build: Callable[[Any], nn.Module],
) -> tuple[nn.Module, dict]:
    """The network ``build(config)`` with the export's weights (strict), and the export dict.

    ``what`` names the network in messages ("face parser"); ``artefact`` is the export's file name,
    suggested when ``path`` is some other egain file (a training checkpoint).
    """
    ckpt = load_checkpoint(path, what=what, required_keys=("config", "state_dict"))
    if ckpt.get("egain_format") != fmt:
        article = "an" if what[:1] in "aeiou" else "a"
        raise CheckpointError(
            f"'{path}' is not {article} {what} (egain_format={ckpt.get('egain_format')!r}, "
            f"expected '{fmt}'; a training checkpoint? pass RUN/{artefact})"
        )
    try:
        net = build(ckpt["config"])
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError, InputError) as exc:
        raise CheckpointError(f"{what} '{path}' does not match its config: {exc}") from None
    return net, ckpt


def export_meta(ckpt: Mapping) -> dict:
    """The ``meta`` a loaded network carries: its held-out ``scores`` and ``train`` record."""
    return {"scores": ckpt.get("scores", {}), "train": ckpt.get("train", {})}

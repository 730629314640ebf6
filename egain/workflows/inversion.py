"""Invert a list of image files with a loaded method: reconstructions, timing and parameter counts.

The same bookkeeping as ``egain invert`` (reconstructions keep the source file names, so
``egain evaluate`` pairs them; ``timing.json`` has seconds per image and parameter counts), as a
function the demo and the comparison call in-process, so each model is loaded once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from egain.errors import InputError
from egain.runtime.files import atomic_write_json
from egain.utils.images import INVERT_TIMING

TIMING_FILE = INVERT_TIMING


@dataclass
class InversionRun:
    label: str
    out_dir: Path
    images: int
    seconds_per_image: float
    parameters: int
    parameters_without_generator: int
    input_size: int
    device: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(with generator, without generator): the paper tables count the generator too."""
    counter = getattr(model, "parameter_count", None)
    if callable(counter):
        return int(counter(include_generator=True)), int(counter(include_generator=False))
    total = sum(p.numel() for p in model.parameters())
    gen = getattr(model, "generator", None)
    own = total - (sum(p.numel() for p in gen.parameters()) if isinstance(gen, nn.Module) else 0)
    return int(total), int(own)


@torch.no_grad()
def invert_files(
    model: nn.Module,
    files: Sequence[Path],
    out_dir: str | os.PathLike,
    *,
    label: str,
    batch_size: int = 16,
    progress: bool = True,
) -> InversionRun:
    """Invert ``files`` with ``model`` and write ``out_dir/<file stem>.png`` plus ``timing.json``.

    Time per image counts ``model.invert`` only (not file reading or writing), after one untimed
    warm-up batch, so that one-off start-up costs (allocator, lazy kernels) do not blur the
    comparison between methods.
    """
    from egain.runtime.logging import progress as progress_bar
    from egain.utils.images import open_image, save_image

    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no images to invert")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputError("images must have distinct file names (reconstructions keep the source names)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = getattr(model, "device", torch.device("cpu"))
    device = torch.device(device)
    model.invert([open_image(files[0])])  # warm-up, untimed
    _sync(device)
    seconds = 0.0
    bar = progress_bar(total=len(files), desc=f"invert {label}", unit="img", enabled=progress)
    try:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images = [open_image(f) for f in chunk]
            t0 = time.perf_counter()
            inv = model.invert(images)
            _sync(device)
            seconds += time.perf_counter() - t0
            rec = inv.reconstruction.detach().float().cpu()
            for f, r in zip(chunk, rec, strict=True):
                save_image(r, out / f"{f.stem}.png")
            bar.update(len(chunk))
    finally:
        bar.close()
    with_g, without_g = parameter_counts(model)
    run = InversionRun(
        label=label,
        out_dir=out,
        images=len(files),
        seconds_per_image=seconds / len(files),
        parameters=with_g,
        parameters_without_generator=without_g,
        input_size=int(getattr(model, "input_size", 0) or 0),
        device=str(device),
    )
    atomic_write_json(out / TIMING_FILE, {"method": label, **run.to_dict()})
    return run

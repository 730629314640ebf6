"""Invert a list of image files with a loaded method: reconstructions, timing and parameter counts.

The same bookkeeping as ``egain invert`` (reconstructions keep the source file names, so
``egain evaluate`` pairs them; ``timing.json`` has seconds per image and parameter counts), as a
function the demo and the comparison call in-process, so each model is loaded once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    resized: int = 0  # inputs not at the model's size (resized: short side + centre crop)

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


def _parsing_maps_for(model: nn.Module, files: Sequence[Path], kwargs: dict) -> list[Path] | None:
    """The ``X_parsing.png`` of every file when ``model.invert`` takes ``parsing`` and all exist."""
    import inspect

    from egain.data.parsing_pairs import parsing_path

    if "parsing" in kwargs:
        if kwargs["parsing"] is False or kwargs["parsing"] is None:
            kwargs.pop("parsing")
        return None
    try:
        takes = "parsing" in inspect.signature(model.invert).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return None
    maps = [parsing_path(f) for f in files]
    return maps if all(m.is_file() for m in maps) else None


def _read_maps(paths: Sequence[Path], images: Sequence[Any], size: int) -> torch.Tensor:
    """Label maps (N, H, W) in the geometry the method gives its images (centre square, ``size``)."""
    from egain.data.parsing_pairs import read_parsing_map

    out = []
    for path, im in zip(paths, images, strict=True):
        side = size or min(im.size)
        out.append(read_parsing_map(path, side).long())
    return torch.stack(out)


def invert_files(
    model: nn.Module,
    files: Sequence[Path],
    out_dir: str | os.PathLike,
    *,
    label: str,
    batch_size: int = 16,
    progress: bool = True,
    names: Sequence[str] | None = None,
    save_latents: bool = False,
    save_deltas: bool = False,
    warmup: bool = True,
    invert_kwargs: dict | None = None,
    on_batch: Callable[[list[Path], Any], None] | None = None,
    seed: int | None = 0,
) -> InversionRun:
    """Invert ``files`` with ``model`` and write ``out_dir/<name>`` plus ``timing.json``.

    The one inversion loop of egain: ``egain invert``, the demo and ``egain compare`` all call it.
    ``names``: the output file name of each input (default ``<stem>.png``; ``egain invert`` passes
    names it has checked for collisions). ``save_latents`` writes ``latents/<stem>.pt``,
    ``save_deltas`` the Delta0 and gate maps as ``deltas/<stem>_*.png``. ``invert_kwargs`` go to
    ``model.invert`` (a method's declared invert options, e.g. optimisation steps). ``on_batch(files,
    inversion)`` sees each batch's result after it is written (e.g. to save PTI's tuned generators).

    Time per image counts ``model.invert`` only (not file reading or writing), after one untimed
    warm-up batch (``warmup``), so that one-off start-up costs (allocator, lazy kernels) do not blur
    the comparison between methods.

    **Parsing maps.** A method whose ``invert`` takes ``parsing`` (SAM and its encoder, which
    segment the image before choosing latent spaces) is handed the class maps ``X_parsing.png``
    found beside the images (as ``egain data synthfaces --parsing`` writes them) when every image
    has one, resized with the images' geometry; otherwise it segments by itself. ``parsing`` in
    ``invert_kwargs`` turns that off (``False``).

    ``seed``: the torch random state the inversions start from (after the warm-up; the caller's
    state is restored afterwards). Methods that draw at inference (DSE's encoder noise, published
    as random) then give the same output for the same files whatever ran before them, so a
    comparison does not depend on the order of its methods. ``None`` leaves the state alone.
    """
    from egain.runtime.logging import progress as progress_bar
    from egain.runtime.seeding import seeded
    from egain.utils.images import open_image

    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no images to invert")
    if names is None:
        names = [f"{f.stem}.png" for f in files]
    if len(set(names)) != len(names):
        raise InputError("images must have distinct file names (reconstructions keep the source names)")
    kwargs = dict(invert_kwargs or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(getattr(model, "device", torch.device("cpu")))
    seconds = 0.0
    resized = 0
    size = int(getattr(model, "input_size", 0) or 0)
    maps = _parsing_maps_for(model, files, kwargs)
    with seeded(seed, device):
        if warmup:
            first = open_image(files[0])
            warm = {"parsing": _read_maps(maps[:1], [first], size)} if maps is not None else {}
            with torch.no_grad():
                model.invert([first], **kwargs, **warm)
            _sync(device)
        bar = progress_bar(total=len(files), desc=f"invert {label}", unit="img", enabled=progress)
        try:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                images = [open_image(f) for f in chunk]
                resized += sum(1 for im in images if size and im.size != (size, size))
                extra = {}
                if maps is not None:
                    extra["parsing"] = _read_maps(maps[start : start + batch_size], images, size)
                t0 = time.perf_counter()
                inv = model.invert(images, **kwargs, **extra)
                _sync(device)
                seconds += time.perf_counter() - t0
                write_inversion(out, chunk, names[start : start + batch_size], inv, save_latents, save_deltas)
                if on_batch is not None:
                    on_batch(chunk, inv)
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
        input_size=size,
        device=str(device),
        resized=resized,
    )
    # out_dir is left out: timing.json lives in it, and a staging folder's name would go stale.
    record = {k: v for k, v in run.to_dict().items() if k != "out_dir"}
    atomic_write_json(out / TIMING_FILE, {"method": label, **record})
    return run


def write_inversion(
    out: Path, files: Sequence[Path], names: Sequence[str], inv, save_latents: bool, save_deltas: bool
) -> None:
    """Reconstructions (and optionally latents and Delta/gate maps) of one batch, each written atomically."""
    from egain.runtime.checkpoint import atomic_torch_save
    from egain.utils.images import save_image

    rec = inv.reconstruction.detach().float().cpu()
    for i, f in enumerate(files):
        save_image(rec[i], out / names[i])
        if save_latents:
            atomic_torch_save(
                {
                    "latents": inv.latents[i].detach().cpu(),
                    "basic_latents": inv.extras.get("basic_latents", inv.latents)[i].detach().cpu(),
                    "source": str(f),
                },
                out / "latents" / f"{f.stem}.pt",
            )
        for key, value in inv.extras.items():
            if key.endswith("_map") and isinstance(value, torch.Tensor):
                write_map(value[i], out / "maps" / f"{f.stem}_{key}.png")
        if save_deltas and "delta" in inv.extras:
            d = inv.extras["delta"][i].cpu()
            # Delta lies in [-2, 2]; shown with zero at mid-grey.
            save_image((d / 2).clamp(-1, 1), out / "deltas" / f"{f.stem}_delta.png")
            for layer, g in inv.extras.get("gate_maps", {}).items():
                g = g[i].cpu()
                g = (g - g.min()) / (g.max() - g.min()).clamp_min(1e-8) * 2 - 1
                save_image(g.expand(3, -1, -1), out / "deltas" / f"{f.stem}_gate_{layer}.png")


#: colours of integer maps (a chosen-layer map, segment labels), cycled
MAP_PALETTE = torch.tensor(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
     [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
     [0, 0, 128], [128, 128, 128], [255, 255, 255]],
    dtype=torch.float32,
)  # fmt: skip


def write_map(value: torch.Tensor, path: Path) -> None:
    """One ``*_map`` extra of one image, (1, H, W) or (H, W), as a picture: float maps in grey with
    values clamped to [0, 1] (0 black), integer maps (labels) in :data:`MAP_PALETTE` colours."""
    from egain.utils.images import save_image

    m = value.detach().cpu()
    if m.ndim == 3:
        m = m[0]
    if m.ndim != 2:
        return
    if m.is_floating_point():
        img = (m.float().clamp(0, 1) * 2 - 1).expand(3, -1, -1)
    else:
        rgb = MAP_PALETTE[m.long() % len(MAP_PALETTE)]  # (H, W, 3)
        img = rgb.permute(2, 0, 1) / 127.5 - 1
    save_image(img, path)

"""What the inversion methods need from a generator, in one place.

The methods talk to generators only through the contract of ``egain.generators``
(``synthesize``, ``layer_names``, ``layer_info``, ``default_fusion_layers``, ``mean_latent``,
``n_latent``, ``style_dim``, ``size``). This module adds the bookkeeping around it: the average
latent w-bar, a record of the generator stored in method checkpoints (so a checkpoint knows which
generator it belongs to), and the compatibility check done when a checkpoint is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError, EgainError

#: generators up to this many parameters are embedded in method checkpoints (the 64 px world);
#: larger ones (published 1024 px, 30M) are referenced by path.
EMBED_MAX_PARAMS = 8_000_000
MEAN_LATENT_SAMPLES = 4096


def arch_of(generator: nn.Module) -> str:
    return str(getattr(generator, "arch", type(generator).__name__)).lower()


def layer_shape(generator: nn.Module, name: str) -> tuple[int, int]:
    """(channels, resolution) of the features after generator layer ``name``."""
    names = list(getattr(generator, "layer_names", []))
    if names and name not in names:
        raise EgainError(f"generator has no layer {name!r}; its layers are: {', '.join(names)}")
    info = generator.layer_info(name)
    get = info.get if isinstance(info, Mapping) else (lambda k, d=None: getattr(info, k, d))
    channels = get("channels")
    res = get("resolution", None) or get("size", None)
    if channels is None or res is None:
        raise EgainError(f"generator.layer_info({name!r}) gives no channels/resolution: {info!r}")
    if isinstance(res, tuple | list):
        res = res[-1]
    return int(channels), int(res)


def default_fusion_layers(generator: nn.Module) -> list[str]:
    layers = getattr(generator, "default_fusion_layers", None)
    if callable(layers):
        layers = layers()
    if not layers:
        raise EgainError(
            "the generator names no default fusion layer; pass fusion={'layers': [...]} explicitly"
        )
    return [layers] if isinstance(layers, str) else list(layers)


def as_wplus(latent: torch.Tensor, generator: nn.Module) -> torch.Tensor:
    """[D], [1, D] or [n, D] -> [n_latent, D] (the published ``latent_avg`` layout)."""
    latent = latent.detach().float()
    n, d = generator.n_latent, generator.style_dim
    if latent.ndim == 1:
        latent = latent.unsqueeze(0)
    if latent.ndim == 3:
        latent = latent[0]
    if latent.shape[-1] != d:
        raise CheckpointError(
            f"average latent has width {latent.shape[-1]}; the generator's style_dim is {d}"
        )
    if latent.shape[0] == 1:
        return latent.expand(n, d).contiguous()
    if latent.shape[0] < n:
        raise CheckpointError(f"average latent has {latent.shape[0]} rows; the generator needs {n}")
    return latent[:n].contiguous()


@torch.no_grad()
def mean_latent(generator: nn.Module, samples: int = MEAN_LATENT_SAMPLES) -> torch.Tensor:
    """w-bar: the generator's stored average latent when it has one, else a seeded estimate.

    The estimate draws its z from its own seeded CPU generator: the same w-bar on every device,
    and no global random state (CPU or CUDA) is touched.
    """
    stored = getattr(generator, "latent_avg", None)
    if isinstance(stored, torch.Tensor):
        return as_wplus(stored, generator)
    return as_wplus(generator.mean_latent(samples, seed=0), generator)


def generator_record(generator: nn.Module) -> dict[str, Any]:
    """What a method checkpoint stores about its generator (and the generator itself when small)."""
    record: dict[str, Any] = {
        "arch": arch_of(generator),
        "size": int(generator.size),
        "style_dim": int(generator.style_dim),
        "n_latent": int(generator.n_latent),
    }
    path = getattr(generator, "source_path", None)
    if path:
        record["path"] = str(Path(path).resolve())
    n_params = sum(p.numel() for p in generator.parameters())
    config = _generator_config(generator)
    if n_params <= EMBED_MAX_PARAMS and config is not None:
        record["config"] = config
        record["state_dict"] = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    return record


def _generator_config(generator: nn.Module) -> dict | None:
    for attr in ("config_dict", "config"):
        cfg = getattr(generator, attr, None)
        if callable(cfg):
            cfg = cfg()
        if isinstance(cfg, Mapping):
            return dict(cfg)
        if cfg is not None and hasattr(cfg, "__dataclass_fields__"):
            import dataclasses

            return dataclasses.asdict(cfg)
    return None


def resolve_path(spec: str | os.PathLike, what: str = "checkpoint") -> str | os.PathLike:
    """``zoo:NAME`` -> the bundled file's path; anything else unchanged."""
    if isinstance(spec, str) and spec.startswith("zoo:"):
        from egain.zoo import bundled_path

        return str(bundled_path(spec[4:]))
    return spec


def generator_from_record(record: Mapping[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild (embedded) or reload (referenced by path) the generator a checkpoint was trained with."""
    from egain import generators

    if "zoo" in record:  # bundled weights reference the bundled generator instead of embedding it
        from egain.zoo import bundled_path

        return load_generator(bundled_path(record["zoo"]), device)
    if "state_dict" in record and "config" in record:
        g = generators.build_generator(record["arch"], record["size"], **_build_kwargs(record["config"]))
        g.load_state_dict(record["state_dict"])
        return g.to(device)
    path = record.get("path")
    if path and Path(path).exists():
        return load_generator(path, device)
    raise CheckpointError(
        f"this checkpoint needs its {record.get('size')} px {record.get('arch')} generator"
        + (f" ('{path}', not found)" if path else "")
        + "; pass it with --generator / generator=..."
    )


def _build_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("arch", "size")}


def load_generator(spec: str | os.PathLike | nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A generator object, or a path to our or a rosinality checkpoint (``egain.generators.load_generator``)."""
    if isinstance(spec, nn.Module):
        return spec.to(device)
    from egain.generators import load_generator as load_generator_file

    spec = resolve_path(spec, "generator")
    g = load_generator_file(spec, device=device)
    if getattr(g, "source_path", None) is None:
        g.source_path = str(Path(spec).resolve())  # recorded in method checkpoints
    return g


def check_compatible(record: Mapping[str, Any], generator: nn.Module, what: str) -> None:
    """A checkpoint trained for one generator must not silently run on another."""
    have = {
        "size": int(generator.size),
        "n_latent": int(generator.n_latent),
        "style_dim": int(generator.style_dim),
    }
    for key, value in have.items():
        if key in record and int(record[key]) != value:
            raise CheckpointError(
                f"{what} was trained for a {record.get('size')} px {record.get('arch')} generator "
                f"(n_latent {record.get('n_latent')}, style_dim {record.get('style_dim')}); the given generator is "
                f"{have['size']} px {arch_of(generator)} (n_latent {have['n_latent']}, style_dim {have['style_dim']})"
            )

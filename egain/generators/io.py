"""Building, saving and loading generators and discriminators.

Accepted checkpoint containers (detected from their keys, never from the file name):

* ours: ``{"egain_format": "generator", "config", "g_ema", ["latent_avg"]}``;
* our GAN trainer: ``{"egain_format": "gan-train", "config", "g_ema", "g", "d", "d_config", ...}``;
* rosinality ``train.py`` / ``convert_weight.py`` files: ``{"g_ema", ["g", "d", "latent_avg", ...]}``;
* pSp-family wrappers (pSp, e4e, ReStyle, HFGI, EGAIN): ``{"state_dict": {"decoder.*", ...}, ["latent_avg"]}``;
* a bare rosinality generator state dict (``style.1.weight``, ``input.input``, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from egain.errors import CheckpointError, EgainError, missing_file_message
from egain.generators.convert import (
    discriminator_from_rosinality,
    generator_from_rosinality,
    is_rosinality_discriminator,
    is_rosinality_generator,
)
from egain.generators.discriminator import Discriminator
from egain.generators.stylegan import Generator
from egain.runtime.checkpoint import FORMAT_KEY, atomic_torch_save, load_checkpoint
from egain.utils.device import resolve_device

logger = logging.getLogger("egain.generators")

GENERATOR_FORMATS = ("generator", "gan-train")
PUBLISHED_AT = (
    "https://github.com/rosinality/stylegan2-pytorch (StyleGAN2 FFHQ 'stylegan2-ffhq-config-f.pt', "
    "SWAGAN via its train.py --arch swagan)"
)


def build_generator(arch: str = "stylegan2", size: int = 256, **config: Any) -> Generator:
    """A freshly initialised generator; ``config`` as for :class:`Generator` (style_dim, n_mlp, ...)."""
    return Generator(arch=arch, size=size, **config)


def build_discriminator(arch: str = "stylegan2", size: int = 256, **config: Any) -> Discriminator:
    """A freshly initialised discriminator matching ``arch`` (residual D or SWAGAN wavelet D)."""
    return Discriminator(arch=arch, size=size, **config)


def load_state_strict(module: torch.nn.Module, state: Mapping[str, Any], what: str) -> None:
    """``load_state_dict(strict=True)`` with one-line errors naming the offending key."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{what} is a {type(state).__name__}; expected a state dict")
    own = module.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected:
        raise CheckpointError(f"{what} has unexpected key '{unexpected[0]}' ({len(unexpected)} in all)")
    if missing:
        raise CheckpointError(f"{what} lacks key '{missing[0]}' ({len(missing)} in all)")
    for k, v in own.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(v.shape):
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"{what} key '{k}' has shape {got}; expected {list(v.shape)}")
    module.load_state_dict(state, strict=True)


def _latent_avg_vector(value: Any, style_dim: int, what: str) -> torch.Tensor | None:
    """Published latent_avg is [D] (rosinality) or [n_styles, D] (pSp family): reduce to [D]."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.shape[-1] != style_dim:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(
            f"{what} 'latent_avg' has shape {shape}; expected [{style_dim}] or [n, {style_dim}]"
        )
    return value.detach().float().reshape(-1, style_dim).mean(0)


def _foreign(path: Any, obj: Mapping[str, Any]) -> CheckpointError:
    keys = ", ".join(map(str, list(obj)[:8]))
    return CheckpointError(
        f"'{path}' is not a generator checkpoint (keys: {keys}); expected an egain generator/gan-train "
        "file, a rosinality .pt with 'g_ema', or a pSp/e4e/HFGI/EGAIN file with 'decoder.*' weights"
    )


def generator_from_checkpoint(obj: Mapping[str, Any], path: Any = "checkpoint") -> Generator:
    """Build a generator from an already loaded checkpoint dict (any accepted container)."""
    what = f"generator checkpoint '{path}'"
    fmt = obj.get(FORMAT_KEY)
    latent_avg = obj.get("latent_avg")
    if fmt is not None:
        if fmt not in GENERATOR_FORMATS:
            raise CheckpointError(
                f"'{path}' is an egain '{fmt}' checkpoint; expected one of {', '.join(GENERATOR_FORMATS)}"
            )
        for key in ("config", "g_ema"):
            if key not in obj:
                raise CheckpointError(f"{what} lacks '{key}'; expected our format with 'config' and 'g_ema'")
        try:
            g = build_generator(**dict(obj["config"]))
        except TypeError as exc:
            raise CheckpointError(f"{what} has an unusable 'config' ({exc})") from None
        load_state_strict(g, obj["g_ema"], what)
    elif isinstance(obj.get("g_ema"), Mapping):
        g = generator_from_rosinality(obj["g_ema"], f"{what} ['g_ema']")
    elif isinstance(obj.get("state_dict"), Mapping) and any(
        k.startswith("decoder.") for k in obj["state_dict"]
    ):
        sd = {k[len("decoder.") :]: v for k, v in obj["state_dict"].items() if k.startswith("decoder.")}
        g = generator_from_rosinality(sd, f"{what} [decoder.*]")
    elif is_rosinality_generator(obj):
        g = generator_from_rosinality(obj, what)
    else:
        raise _foreign(path, obj)
    avg = _latent_avg_vector(latent_avg, g.style_dim, what)
    if avg is not None:
        g.latent_avg = avg
    return g


def load_generator(
    path: str | os.PathLike, device: str | torch.device | None = None, *, compute_latent_avg: bool = True
) -> Generator:
    """Load a generator (our format or a published one; see the module doc) in eval mode.

    A missing ``latent_avg`` is computed from the mapping network (mean of 10000 mapped z, seed 0)
    and a notice is logged, as e4e does. ``zoo:NAME`` loads a bundled generator.
    """
    if isinstance(path, str) and path.startswith("zoo:"):
        from egain.zoo import bundled_path

        path = bundled_path(path[4:])
    if not os.path.exists(path):
        raise CheckpointError(
            missing_file_message(
                str(path),
                "Generator checkpoint",
                PUBLISHED_AT,
                "--generator PATH (Python: load_generator(PATH))",
            )
        )
    obj = load_checkpoint(path, what="generator checkpoint")
    g = generator_from_checkpoint(obj, path)
    g = g.to(resolve_device(device)).eval()
    if g.latent_avg is None and compute_latent_avg:
        logger.warning("'%s' has no latent_avg; computing it from the mapping network (10000 samples)", path)
        g.latent_avg = g.mean_latent(10000, seed=0)[0]
    return g


def save_generator(
    generator: Generator,
    path: str | os.PathLike,
    latent_avg: torch.Tensor | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"egain_format": "generator", "config", "g_ema", "latent_avg", "extra"}`` atomically."""
    if not isinstance(generator, Generator):
        raise EgainError(f"save_generator expects an egain Generator, got {type(generator).__name__}")
    if latent_avg is None:
        latent_avg = generator.latent_avg
    obj: dict[str, Any] = {
        FORMAT_KEY: "generator",
        "config": generator.config,
        "g_ema": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
    }
    if latent_avg is not None:
        obj["latent_avg"] = latent_avg.detach().cpu().reshape(-1)
    if extra:
        obj["extra"] = dict(extra)
    atomic_torch_save(obj, path)


def save_discriminator(discriminator: Discriminator, path: str | os.PathLike) -> None:
    """Write ``{"egain_format": "discriminator", "config", "d"}`` atomically."""
    atomic_torch_save(
        {
            FORMAT_KEY: "discriminator",
            "config": discriminator.config,
            "d": {k: v.detach().cpu() for k, v in discriminator.state_dict().items()},
        },
        path,
    )


def discriminator_from_checkpoint(obj: Mapping[str, Any], path: Any = "checkpoint") -> Discriminator:
    what = f"discriminator checkpoint '{path}'"
    fmt = obj.get(FORMAT_KEY)
    if fmt is not None:
        cfg_key = {"gan-train": "d_config", "discriminator": "config"}.get(fmt)
        if cfg_key is None or cfg_key not in obj or "d" not in obj:
            raise CheckpointError(
                f"'{path}' is an egain '{fmt}' checkpoint without a discriminator; expected a gan-train "
                "checkpoint (with 'd' and 'd_config') or a discriminator file"
            )
        d = build_discriminator(**dict(obj[cfg_key]))
        load_state_strict(d, obj["d"], what)
        return d
    if isinstance(obj.get("d"), Mapping):
        return discriminator_from_rosinality(obj["d"], f"{what} ['d']")
    if is_rosinality_discriminator(obj):
        return discriminator_from_rosinality(obj, what)
    keys = ", ".join(map(str, list(obj)[:8]))
    raise CheckpointError(
        f"'{path}' holds no discriminator (keys: {keys}); expected a rosinality train.py checkpoint with 'd' "
        "or an egain gan-train checkpoint"
    )


def load_discriminator(path: str | os.PathLike, device: str | torch.device | None = None) -> Discriminator:
    """Load a published ``d`` (rosinality StyleGAN2 / SWAGAN, EGAIN's 1x1 FromRGB) or our trainer's ``d``."""
    obj = load_checkpoint(path, what="discriminator checkpoint")
    return discriminator_from_checkpoint(obj, path).to(resolve_device(device)).eval()

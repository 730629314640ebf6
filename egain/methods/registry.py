"""The method registry: ``create(name, generator=..., checkpoint=None, **config)`` and ``available()``.

A method is a name plus a default EGAIN configuration (see :mod:`egain.methods.composition`).
Any component can be swapped by passing its config, e.g.
``create("egain", generator=G, delta_encoder={"type": "consultation"})``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError, EgainError, missing_file_message
from egain.methods import generator_io
from egain.methods.composition import CHECKPOINT_FORMAT, RUNTIME_OPTIONS, EGAINMethod
from egain.nn.layout import check_memory_format
from egain.runtime.checkpoint import load_checkpoint, load_state_checked
from egain.utils.device import resolve_device


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str
    defaults: dict[str, Any]
    factory: Callable[..., nn.Module] = EGAINMethod
    #: the generator family the method was designed for (informational; any generator works)
    generator: str = "any"


_BASIC = {"type": "e4e"}
METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> None:
    METHODS[spec.name] = spec


register(
    MethodSpec(
        "e4e",
        "e4e encoder (Tov et al.): IR-SE + FPN, progressive W+ offsets, delta and latent-discriminator regularisers",
        {"basic_encoder": _BASIC, "delta_encoder": None, "fusion": None, "aligner": None},
    )
)
register(
    MethodSpec(
        "hfgi",
        "HFGI (Wang et al.): frozen e4e + consultation encoder + gated internal fusion + ADA alignment",
        {
            "basic_encoder": _BASIC,
            "delta_calculator": {"mode": "signed", "resize": "bilinear"},
            "delta_encoder": {"type": "consultation"},
            "fusion": {"type": "internal", "bias": True, "zero_init": True},
            "aligner": {"type": "ada"},
        },
        generator="stylegan2",
    )
)
register(
    MethodSpec(
        "egain",
        "egain (Kabbani et al.): e4e basic encoder + custom CNN delta encoder + internal fusion, SWAGAN",
        {
            "basic_encoder": _BASIC,
            "delta_calculator": {"mode": "signed", "resize": "bilinear"},
            "delta_encoder": {"type": "cnn"},
            "fusion": {"type": "internal", "bias": False, "zero_init": True},
            "aligner": None,
        },
        generator="swagan",
    )
)
register(
    MethodSpec(
        "egain-external",
        "EGAIN with external fusion: compact per-layer latent fusion of w_b and a delta-encoder latent w_d",
        {
            "basic_encoder": _BASIC,
            "delta_calculator": {"mode": "signed", "resize": "bilinear"},
            "delta_encoder": {"type": "latent"},
            "fusion": {"type": "external"},
            "aligner": None,
        },
        generator="swagan",
    )
)


def available() -> list[str]:
    """Names accepted by :func:`create`."""
    return sorted(METHODS)


def method_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The default config of ``name`` with ``overrides`` merged in (dicts merge one level deep)."""
    spec = _spec(name)
    cfg = copy.deepcopy(spec.defaults)
    for key, value in overrides.items():
        if (
            isinstance(value, Mapping)
            and isinstance(cfg.get(key), Mapping)
            and "type" not in value
            or (
                isinstance(value, Mapping)
                and isinstance(cfg.get(key), Mapping)
                and value.get("type") == cfg[key].get("type")
            )
        ):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = copy.deepcopy(value)
    return cfg


def _spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise EgainError(f"unknown inversion method {name!r}; available: {', '.join(available())}")
    return METHODS[name]


def create(
    name: str,
    generator: nn.Module | str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | Mapping | None = None,
    *,
    device: str | torch.device | None = "cpu",
    memory_format: str | None = "auto",
    **config: Any,
) -> nn.Module:
    """Build method ``name``: fresh (with ``generator``) or from a checkpoint (ours or published).

    ``generator``: a generator object or a checkpoint path; optional when the checkpoint embeds or
    references its generator (ours) or carries ``decoder.*`` weights (published e4e/HFGI).
    ``config``: component overrides for a fresh model; for a checkpoint only the run-time options
    ``passes`` and ``noise_mode`` may be changed.
    ``memory_format``: the inference layout (``EGAINMethod.set_memory_format``); "auto" is
    channels_last on CPU, where it is faster; None leaves the NCHW layout as built (for training).
    """
    if memory_format is not None:
        check_memory_format(memory_format)
    model = _create(name, generator, checkpoint, resolve_device(device), config)
    set_format = getattr(model, "set_memory_format", None)
    if memory_format is not None and set_format is not None:
        set_format(memory_format)
    return model


def _create(
    name: str,
    generator: nn.Module | str | os.PathLike | None,
    checkpoint: str | os.PathLike | Mapping | None,
    dev: torch.device,
    config: dict[str, Any],
) -> nn.Module:
    spec = _spec(name)
    if checkpoint is None and generator is None:
        checkpoint = _bundled_checkpoint(name)
    if checkpoint is None:
        g = generator_io.load_generator(generator, dev)
        return spec.factory(name, g, method_config(name, **config)).to(dev)
    if not isinstance(checkpoint, Mapping) and not os.path.exists(checkpoint):
        from egain.methods.published import PUBLISHED_AT

        raise CheckpointError(
            missing_file_message(
                str(checkpoint),
                f"{name} checkpoint",
                PUBLISHED_AT.get(name, f"no public URL (it is made by 'egain train --method {name}')"),
                "--checkpoint PATH (Python: create(name, checkpoint=PATH))",
            )
        )
    ckpt = (
        checkpoint
        if isinstance(checkpoint, Mapping)
        else load_checkpoint(checkpoint, what=f"{name} checkpoint")
    )
    where = "checkpoint" if isinstance(checkpoint, Mapping) else f"checkpoint '{checkpoint}'"
    if ckpt.get("egain_format") == CHECKPOINT_FORMAT:
        return _load_ours(spec, ckpt, where, generator, dev, config)
    if "state_dict" in ckpt or any(str(k).startswith("encoder.") for k in ckpt):
        from egain.methods.published import load_published

        return load_published(name, ckpt, generator=generator, device=dev, where=where, **config).to(dev)
    raise CheckpointError(
        f"{where} is neither an egain inversion checkpoint nor a published e4e/HFGI dict "
        f"(keys: {', '.join(map(str, list(ckpt)[:8]))})"
    )


def _bundled_checkpoint(name: str):
    """The zoo weights behind ``create(name)`` with no paths (the synthfaces world's models)."""
    from egain import zoo
    from egain.workflows.bundled import BUNDLED_METHODS

    bundled = BUNDLED_METHODS.get(name)
    if bundled is None:
        raise EgainError(
            f"method {name!r} has no bundled weights; pass generator=... (and checkpoint=... to load trained "
            "weights)"
        )
    return zoo.bundled_path(bundled.weights)


def _load_ours(
    spec: MethodSpec, ckpt: Mapping, where: str, generator: Any, dev: torch.device, config: Mapping[str, Any]
) -> nn.Module:
    stored = ckpt.get("method")
    if stored != spec.name:
        raise CheckpointError(f"{where} holds a '{stored}' model, not '{spec.name}' (use --method {stored})")
    bad = sorted(set(config) - set(RUNTIME_OPTIONS))
    if bad:
        raise EgainError(
            f"cannot change {', '.join(bad)} of a trained model; only {', '.join(RUNTIME_OPTIONS)} may be overridden"
        )
    record = ckpt.get("generator", {})
    if generator is None:
        g = generator_io.generator_from_record(record, dev)
    else:
        g = generator_io.load_generator(generator, dev)
        generator_io.check_compatible(record, g, where)
    cfg = {**ckpt["config"], **config}
    state = ckpt["state_dict"]
    method = spec.factory(spec.name, g, cfg, latent_avg=state.get("latent_avg"))
    missing, unexpected = load_state_checked(method, state, where, strict=False)
    missing = [k for k in missing if not k.startswith("generator.")]
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not match the '{spec.name}' architecture "
            f"(missing {missing[:4]}, unexpected {list(unexpected)[:4]})"
        )
    return method.to(dev)


def load_method(checkpoint: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load one of our checkpoints without naming the method (read from the file)."""
    ckpt = load_checkpoint(checkpoint, what="inversion checkpoint")
    name = ckpt.get("method")
    if ckpt.get("egain_format") != CHECKPOINT_FORMAT or name is None:
        raise CheckpointError(
            f"'{checkpoint}' is not an egain inversion checkpoint; pass the method name as well"
        )
    return create(name, checkpoint=ckpt, **kwargs)


def describe(name: str) -> str:
    return _spec(name).summary


__all__ = [
    "METHODS",
    "MethodSpec",
    "available",
    "create",
    "describe",
    "load_method",
    "method_config",
    "register",
]

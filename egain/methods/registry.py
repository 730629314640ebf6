"""The method registry: ``register_method``, ``create(name, generator=..., checkpoint=None, **config)``.

A method is a subclass of :class:`~egain.methods.base.InversionMethod` registered by name::

    @register_method("my-method", summary="...", generator="any")
    class MyMethod(InversionMethod):
        def __init__(self, generator, *, width=32, latent_avg=None): ...

after which ``create("my-method", generator=G)``, ``egain invert/evaluate/compare --method
my-method`` and (when the class defines ``training_step``) ``egain train --method my-method`` work.
Methods of other installed packages are found through the entry-point group ``egain.methods``: each
entry point names a module (importing it registers its methods) or a method class (registered under
the entry point's name).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError, EgainError, missing_file_message
from egain.methods import generator_io
from egain.methods.base import CHECKPOINT_FORMAT, InversionMethod
from egain.nn.layout import check_memory_format
from egain.runtime.checkpoint import float32_state, load_checkpoint, load_state_checked
from egain.utils.device import resolve_device

ENTRY_POINT_GROUP = "egain.methods"
#: name -> method class
METHODS: dict[str, type[InversionMethod]] = {}
_plugins_loaded = False


def register_method(
    name: str, *, summary: str = "", generator: str = "any", replace: bool = False
) -> Callable[[type[InversionMethod]], type[InversionMethod]]:
    """Class decorator: make ``cls`` available to :func:`create` and the CLI as ``name``.

    ``generator`` names the generator family the method was designed for ("any", "stylegan2",
    "swagan"); it is informational. Registering a taken name is an error unless ``replace``.
    """

    def deco(cls: type[InversionMethod]) -> type[InversionMethod]:
        if not (isinstance(cls, type) and issubclass(cls, InversionMethod)):
            raise EgainError(f"method {name!r} must be a subclass of egain.methods.InversionMethod")
        if name in METHODS and METHODS[name] is not cls and not replace:
            raise EgainError(f"method name {name!r} is already registered by {METHODS[name].__qualname__}")
        cls.name = name
        cls.summary = summary or (cls.__doc__ or "").strip().split("\n")[0]
        cls.generator_family = generator
        METHODS[name] = cls
        return cls

    return deco


def unregister_method(name: str) -> None:
    """Remove ``name`` (tests and interactive sessions that re-define a method)."""
    METHODS.pop(name, None)


def _load_plugins() -> None:
    """Import the methods other installed packages declare in the ``egain.methods`` group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break egain: say so and go on
            import warnings

            warnings.warn(f"egain method plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if isinstance(obj, type) and issubclass(obj, InversionMethod) and obj not in METHODS.values():
            register_method(ep.name, summary=getattr(obj, "summary", ""))(obj)


def available() -> list[str]:
    """Names accepted by :func:`create` (built-in and plug-in methods)."""
    _load_plugins()
    return sorted(METHODS)


def method_class(name: str) -> type[InversionMethod]:
    _load_plugins()
    if name not in METHODS:
        raise EgainError(f"unknown inversion method {name!r}; available: {', '.join(available())}")
    return METHODS[name]


def describe(name: str) -> str:
    return method_class(name).summary


def create(
    name: str,
    generator: nn.Module | str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | Mapping | None = None,
    *,
    device: str | torch.device | None = "cpu",
    memory_format: str | None = "auto",
    **config: Any,
) -> InversionMethod:
    """Build method ``name``: fresh (with ``generator``) or from a checkpoint (ours or published).

    ``generator``: a generator object, a checkpoint path or ``zoo:NAME``; optional when the
    checkpoint embeds or references its generator (ours) or carries ``decoder.*`` weights
    (published). ``checkpoint``: a path, ``zoo:NAME`` or a loaded dict. With neither, the method's
    bundled weights are used (the synthfaces world's models).
    ``config``: the method's configuration keywords for a fresh model; for a checkpoint only the
    method's ``runtime_options`` (e.g. ``passes``, ``noise_mode``) may be changed.
    ``memory_format``: the inference layout ("auto" is channels_last on CPU, where it is faster);
    None leaves the NCHW layout as built (what the trainer uses).
    """
    if memory_format is not None:
        check_memory_format(memory_format)
    model = _create(method_class(name), generator, checkpoint, resolve_device(device), config)
    set_format = getattr(model, "set_memory_format", None)
    if memory_format is not None and set_format is not None:
        set_format(memory_format)
    return model


def untrained_default(cls: type[InversionMethod]) -> bool:
    """Whether ``cls`` needs no trained weights and names a bundled generator to run on (the
    optimisation methods: ``create("sam")`` inverts with the synthfaces StyleGAN2)."""
    return cls.bundled_generator is not None and not cls.trains()


def _create(
    cls: type[InversionMethod],
    generator: nn.Module | str | os.PathLike | None,
    checkpoint: str | os.PathLike | Mapping | None,
    dev: torch.device,
    config: dict[str, Any],
) -> InversionMethod:
    if checkpoint is None and generator is None:
        if cls.bundled_weights is not None:
            checkpoint = f"zoo:{cls.bundled_weights}"
        elif untrained_default(cls):  # a method that trains nothing runs on the bundled generator
            generator = f"zoo:{cls.bundled_generator}"
        else:
            raise EgainError(
                f"method {cls.name!r} has no bundled weights; pass generator=... (and checkpoint=... to load "
                "trained weights)"
            )
    if checkpoint is None:
        g = generator_io.load_generator(generator, dev)
        return cls(generator=g, **config).to(dev)
    if not isinstance(checkpoint, Mapping):
        checkpoint = generator_io.resolve_path(checkpoint, f"{cls.name} checkpoint")
        if not os.path.exists(checkpoint):
            raise CheckpointError(_missing_checkpoint(cls, str(checkpoint)))
    ckpt = (
        checkpoint
        if isinstance(checkpoint, Mapping)
        else load_checkpoint(checkpoint, what=f"{cls.name} checkpoint")
    )
    where = "checkpoint" if isinstance(checkpoint, Mapping) else f"checkpoint '{checkpoint}'"
    if ckpt.get("egain_format") == CHECKPOINT_FORMAT:
        return _load_ours(cls, ckpt, where, generator, dev, config)
    if "state_dict" in ckpt or any(str(k).startswith("encoder.") for k in ckpt):
        return cls.from_published(ckpt, generator=generator, device=dev, where=where, **config).to(dev)
    raise CheckpointError(
        f"{where} is neither an egain inversion checkpoint nor a published checkpoint "
        f"(keys: {', '.join(map(str, list(ckpt)[:8]))})"
    )


def _missing_checkpoint(cls: type[InversionMethod], path: str) -> str:
    """One line: where the file comes from, and the bundled alternative where there is one."""
    if cls.published_at:
        text = missing_file_message(
            path, f"{cls.name} checkpoint", cls.published_at, "checkpoint=PATH (CLI: --checkpoint PATH)"
        )
    else:
        text = (
            f"{cls.name} checkpoint not found at '{path}'; it is made by 'egain train --method {cls.name}' "
            "(pass RUN/model.pt)"
        )
    if cls.bundled_weights:
        text += (
            f" Or leave the checkpoint out to use the bundled synthfaces model (zoo:{cls.bundled_weights})."
        )
    return text


def _load_ours(
    cls: type[InversionMethod],
    ckpt: Mapping,
    where: str,
    generator: Any,
    dev: torch.device,
    config: Mapping[str, Any],
) -> InversionMethod:
    stored = ckpt.get("method")
    if stored != cls.name:
        raise CheckpointError(f"{where} holds a '{stored}' model, not '{cls.name}' (use --method {stored})")
    bad = sorted(set(config) - set(cls.runtime_options))
    if bad:
        allowed = ", ".join(cls.runtime_options) or "nothing"
        raise EgainError(
            f"cannot change {', '.join(bad)} of a trained model; only {allowed} may be overridden"
        )
    record = ckpt.get("generator", {})
    if generator is None:
        g = generator_io.generator_from_record(record, dev)
    else:
        g = generator_io.load_generator(generator, dev)
        generator_io.check_compatible(record, g, where)
    cfg = {**ckpt["config"], **config}
    state = float32_state(ckpt["state_dict"])  # bundled files may be float16 ('egain zoo add --half')
    method = cls.from_config(g, cfg, latent_avg=state.get("latent_avg"))
    missing, unexpected = load_state_checked(method, state, where, strict=False)
    missing = [k for k in missing if not k.startswith("generator.")]
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not match the '{cls.name}' architecture "
            f"(missing {missing[:4]}, unexpected {list(unexpected)[:4]})"
        )
    return method.to(dev)


def load_method(checkpoint: str | os.PathLike, **kwargs: Any) -> InversionMethod:
    """Load one of our checkpoints without naming the method (read from the file)."""
    path = generator_io.resolve_path(checkpoint, "inversion checkpoint")
    ckpt = load_checkpoint(path, what="inversion checkpoint")
    name = ckpt.get("method")
    if ckpt.get("egain_format") != CHECKPOINT_FORMAT or name is None:
        raise CheckpointError(
            f"'{checkpoint}' is not an egain inversion checkpoint; pass the method name as well"
        )
    return create(name, checkpoint=ckpt, **kwargs)


__all__ = [
    "ENTRY_POINT_GROUP",
    "METHODS",
    "available",
    "create",
    "describe",
    "load_method",
    "method_class",
    "register_method",
    "unregister_method",
]

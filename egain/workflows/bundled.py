"""The bundled inversion models behind the method labels used by ``egain demo`` and ``egain compare``.

A *label* is what a person reads in a table ("e4e", "egain", ...); it names a registry method, the
zoo weights trained for it and the bundled generator those weights were trained with. e4e appears
twice in the comparison: on StyleGAN2 (the published baseline's generator) and on SWAGAN (the same
generator as egain, so the pair isolates what the delta branch adds).

Zoo weights are looked up through :mod:`egain.zoo` at call time (``egain.zoo.WEIGHTS_DIR``), so a
test or a user can point the zoo elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError, InputError


@dataclass(frozen=True)
class BundledMethod:
    label: str
    method: str  # name in the egain.methods registry
    weights: str  # zoo name of the trained inversion model
    generator: str  # zoo name of the generator it was trained with


BUNDLED_METHODS: dict[str, BundledMethod] = {
    b.label: b
    for b in (
        BundledMethod("e4e", "e4e", "e4e-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("e4e-swagan", "e4e", "e4e-swagan-64", "gan-swagan-64"),
        BundledMethod("hfgi", "hfgi", "hfgi-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("egain", "egain", "egain-swagan-64", "gan-swagan-64"),
        BundledMethod("egain-external", "egain-external", "egain-external-swagan-64", "gan-swagan-64"),
        BundledMethod("e2style", "e2style", "e2style-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("restyle-psp", "restyle-psp", "restyle-psp-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("psp", "psp", "psp-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("dse", "dse", "dse-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("dse-swagan", "dse", "dse-swagan-64", "gan-swagan-64"),
        BundledMethod("restyle-e4e", "restyle-e4e", "restyle-e4e-stylegan2-64", "gan-stylegan2-64"),
        BundledMethod("sam-encoder", "sam-encoder", "sam-encoder-stylegan2-64", "gan-stylegan2-64"),
    )
}
DEMO_METHODS = ("e4e", "hfgi", "egain")
COMPARE_METHODS = ("e4e", "e4e-swagan", "hfgi", "egain", "egain-external")
#: bundled face embedders (zoo name) behind the ID and MagFace metrics
EMBEDDERS = {
    "id": ("synthfaces-cosface", "faces-cosface-64"),  # the scorer, not the ID loss (synthfaces-arcface)
    "magface": ("synthfaces-magface", "faces-magface-64"),
}
ZOO_HELP = (
    "make them with the training commands in docs/zoo.md and add each with "
    "'egain zoo add --name NAME --weights RUN/model.pt --run-info RUN/run.json --kind method' "
    "('egain zoo list' shows what is installed)"
)


@dataclass(frozen=True)
class LabelSpec:
    """One parsed method label (see :func:`parse_labels` for the grammar)."""

    text: str  # as given
    name: str  # shown in tables
    bundled: str | None  # a key of BUNDLED_METHODS, or None
    method: str | None  # a registry name when loaded from a checkpoint
    checkpoint: str | None
    options: dict[str, Any]  # runtime options for ``egain.methods.create``


def _option_value(text: str) -> Any:
    """``1`` -> 1, ``0.5`` -> 0.5, ``true`` -> True, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> LabelSpec:
    """Parse one label. Grammar (``@key=value`` options may follow any form, repeated):

    * ``e4e`` -- a bundled method;
    * ``NAME=CHECKPOINT`` -- registry method NAME from a path or ``zoo:NAME``, shown as NAME;
    * ``SHOWN=METHOD:CHECKPOINT`` -- the same, shown as SHOWN (to compare two runs of one method);
    * ``SHOWN=BUNDLED`` -- a bundled method shown under another name (with options, e.g.
      ``restyle-1=restyle-psp@iterations=1``, ``e2style-1=e2style@run_stages=1``);
    * ``METHOD`` or ``SHOWN=METHOD`` -- a method that trains nothing (the optimisers), built on
      ``@generator=zoo:gan-stylegan2-64`` (default: the bundled StyleGAN2) with its options
      (``@steps=200``).

    Options are the method's runtime options (``egain.methods.create`` keywords such as
    ``iterations``, ``run_stages``, ``finetune_steps``, ``tau``).
    """
    from egain.methods import available

    text = text.strip()
    head, *opts = text.split("@")
    options: dict[str, Any] = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{text!r}: options after '@' are KEY=VALUE, got {o!r}")
        options[key.strip()] = _option_value(value)
    name, sep, rest = head.partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep:
        if head not in BUNDLED_METHODS and head in available():  # a method that needs no training
            return LabelSpec(text, text, None, head, None, options)
        if head not in BUNDLED_METHODS:
            raise InputError(
                f"unknown bundled method {head!r}; expected a comma list of {', '.join(BUNDLED_METHODS)} "
                "or NAME=CHECKPOINT for any registered method"
            )
        return LabelSpec(text, text, head, None, None, options)
    if not rest:
        raise InputError(f"{text!r}: expected NAME=CHECKPOINT (a path or zoo:NAME)")
    if rest in BUNDLED_METHODS:
        return LabelSpec(text, name, rest, None, None, options)
    if rest in available():  # SHOWN=METHOD: a method without trained weights (optimisation)
        return LabelSpec(text, name, None, rest, None, options)
    method, colon, path = rest.partition(":")
    if colon and method in available():
        if not path:
            raise InputError(f"{text!r}: expected SHOWN=METHOD:CHECKPOINT")
        return LabelSpec(text, name, None, method, path, options)
    if name not in available():
        raise InputError(f"unknown method {name!r} in {text!r}; registered methods: {', '.join(available())}")
    return LabelSpec(text, name, None, name, rest, options)


def parse_labels(text: str | Iterable[str], default: Sequence[str]) -> list[str]:
    """A comma list (or sequence) of method labels, validated; empty means ``default``.

    A label is a bundled method (``e4e``, ``egain``, ...) or ``NAME=CHECKPOINT``: any registered
    method (plug-ins included) loaded from a checkpoint path or ``zoo:NAME``, shown as ``NAME``;
    :func:`parse_spec` gives the whole grammar (other shown names, runtime options).
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    items = [t for t in items if t] or list(default)
    names = [parse_spec(t).name for t in items]
    if len(set(names)) != len(names):
        raise InputError(f"a method is listed twice in {','.join(items)}")
    return items


def label_name(label: str) -> str:
    """The name a label is shown under."""
    return parse_spec(label).name


def missing_weights(labels: Sequence[str]) -> list[str]:
    """Zoo names of the inversion weights the labels need that this installation lacks."""
    from egain import zoo

    have = set(zoo.available())
    bundled = [b for b in (parse_spec(lb).bundled for lb in labels) if b]
    return [BUNDLED_METHODS[lb].weights for lb in bundled if BUNDLED_METHODS[lb].weights not in have]


def require_weights(labels: Sequence[str], command: str) -> None:
    """One-line error naming every missing bundled weight and how to make it (nothing else happens)."""
    from egain import zoo

    missing = missing_weights(labels)
    if missing:
        raise CheckpointError(
            f"{command} needs bundled weights that are not installed: {', '.join(missing)} "
            f"(looked in {zoo.WEIGHTS_DIR}); {ZOO_HELP}"
        )


def embedder_available(metric: str) -> bool:
    from egain import zoo

    return EMBEDDERS[metric][1] in set(zoo.available())


def embedder_spec(metric: str) -> str:
    """The bundled embedder spec for ``metric`` ("id" / "magface"), or "none" when not installed."""
    return EMBEDDERS[metric][0] if embedder_available(metric) else "none"


def load_bundled(label: str, device: torch.device | str = "cpu") -> nn.Module:
    """The trained inversion model behind ``label``: from the zoo, or ``NAME=CHECKPOINT``.

    Our checkpoints embed their (small) generator; when one only references its generator by a
    path of the machine it was trained on, the bundled generator it was trained with is used.
    """
    from egain import methods, zoo
    from egain.runtime.checkpoint import load_checkpoint

    parsed = parse_spec(label)
    if parsed.bundled is None:  # any registered method from a checkpoint, or an optimiser
        options = dict(parsed.options)
        generator = options.pop("generator", None)
        if (
            parsed.checkpoint is None
            and generator is None
            and not methods.method_class(parsed.method).trains()
        ):
            generator = f"zoo:{BUNDLED_METHODS['e4e'].generator}"  # an optimiser: the bundled StyleGAN2
        # (a trainable method without a checkpoint gets its registry's bundled weights, or one line)
        model = methods.create(
            parsed.method, generator=generator, checkpoint=parsed.checkpoint, device=device, **options
        )
        model.eval()
        return model
    spec = BUNDLED_METHODS[parsed.bundled]
    path = zoo.bundled_path(spec.weights)
    ckpt = load_checkpoint(path, what=f"bundled {spec.weights}")
    record = ckpt.get("generator", {}) if isinstance(ckpt, dict) else {}
    generator = None
    if not (isinstance(record, dict) and "state_dict" in record):
        if spec.generator not in set(zoo.available()):
            raise CheckpointError(
                f"bundled {spec.weights} needs its generator {spec.generator}, which is not installed "
                f"(looked in {zoo.WEIGHTS_DIR}); {ZOO_HELP.replace('model.pt', 'generator.pt').replace('--kind method', '--kind generator')}"
            )
        generator = zoo.bundled_path(spec.generator)
    model = methods.create(spec.method, generator=generator, checkpoint=ckpt, device=device, **parsed.options)
    model.eval()
    return model

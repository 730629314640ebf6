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


def parse_labels(text: str | Iterable[str], default: Sequence[str]) -> list[str]:
    """A comma list (or sequence) of method labels, validated; empty means ``default``.

    A label is a bundled method (``e4e``, ``egain``, ...) or ``NAME=CHECKPOINT``: any registered
    method (plug-ins included) loaded from a checkpoint path or ``zoo:NAME``, shown as ``NAME``.
    """
    from egain.methods import available

    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    items = [t for t in items if t] or list(default)
    for item in items:
        name, sep, path = item.partition("=")
        if sep:
            if name not in available():
                raise InputError(
                    f"unknown method {name!r} in {item!r}; registered methods: {', '.join(available())}"
                )
            if not path:
                raise InputError(f"{item!r}: expected NAME=CHECKPOINT (a path or zoo:NAME)")
        elif item not in BUNDLED_METHODS:
            raise InputError(
                f"unknown bundled method {item!r}; expected a comma list of {', '.join(BUNDLED_METHODS)} "
                "or NAME=CHECKPOINT for any registered method"
            )
    names = [label_name(t) for t in items]
    if len(set(names)) != len(names):
        raise InputError(f"a method is listed twice in {','.join(items)}")
    return items


def label_name(label: str) -> str:
    """The name a label is shown under (``NAME`` of ``NAME=CHECKPOINT``)."""
    return label.partition("=")[0]


def missing_weights(labels: Sequence[str]) -> list[str]:
    """Zoo names of the inversion weights the labels need that this installation lacks."""
    from egain import zoo

    have = set(zoo.available())
    bundled = [lb for lb in labels if lb in BUNDLED_METHODS]
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

    name, sep, path = label.partition("=")
    if sep:  # any registered method from a checkpoint
        model = methods.create(name, checkpoint=path, device=device)
        model.eval()
        return model
    spec = BUNDLED_METHODS[label]
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
    model = methods.create(spec.method, generator=generator, checkpoint=ckpt, device=device)
    model.eval()
    return model

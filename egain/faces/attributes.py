"""Facial-attribute classifier/regressor trained on synthfaces labels: the scorer for editing.

InterFaceGAN fits a linear boundary in W to an attribute *score* of generated samples, and an edit
is judged by how much the score moves (and how little the others do). Synthfaces renders every
image from known parameters, so the scorer is trained on exact labels instead of a
human-annotated set: :data:`ATTRIBUTES` names each attribute, its kind and where its label comes
from in a synthfaces label record (``labels.jsonl`` line or ``SynthFacesDataset(...,
return_labels=True)`` dict).

* :class:`AttributeNet` -- a small CNN (conv stages, stride 2 each, then a flattened head so pose
  and light direction keep their spatial cue) with one output per attribute: a logit for a binary
  attribute, a *normalised* value ``(y - center) / scale`` for a regression.
* :class:`AttributeClassifier` -- the frozen, always-eval wrapper: ``predict(images)`` gives
  probabilities (binary) and values in label units (regression); ``scores(images)`` gives logits
  instead of probabilities (a linear score, what boundaries are fitted to). Differentiable with
  respect to the images, so edit losses may use it.
* :func:`load_classifier` -- ``classifier.pt`` path, its run folder, ``zoo:NAME`` or
  ``synthfaces-attributes`` (the bundled ``faces-attributes-64`` once bundled).
* :func:`attribute_metrics` -- held-out figures: accuracy, balanced accuracy and ROC AUC for binary
  attributes, Spearman (and MAE) for regressions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import InputError
from egain.faces.exports import cpu_state, export_meta, file_in_run, load_export

CLASSIFIER_FORMAT = "attribute-classifier"
#: zoo name the integrator bundles the trained classifier under (spec ``synthfaces-attributes``)
BUNDLED_NAME = "faces-attributes-64"
BINARY, REGRESSION = "binary", "regression"


def _attr(key: str) -> Callable[[Mapping], float]:
    return lambda labels: float(labels["attributes"][key])


def _visible(kind: str) -> Callable[[Mapping], float]:
    # ``rare_kinds`` lists the details the renderer actually drew (a box was recorded); the
    # ``attributes`` flag is the draw, which a detail hidden outside the frame does not show.
    return lambda labels: float(kind in labels.get("rare_kinds", ()))


def _light(axis: str) -> Callable[[Mapping], float]:
    # The renderer's light direction is (cos az, sin az) in image (x, y); weighted by the strength
    # it is the shading gradient a viewer sees, a continuous target with no wrap-around at +-pi.
    fn = math.cos if axis == "x" else math.sin

    def value(labels: Mapping) -> float:
        a = labels["attributes"]
        return float(a["light_strength"]) * fn(float(a["light_azimuth"]))

    return value


@dataclass(frozen=True)
class Attribute:
    """One output of the classifier.

    ``center``/``scale`` normalise a regression target (about the mean and standard deviation of
    the synthfaces distribution, measured on 12k draws) so that every head's loss has unit size;
    ``rare`` marks binary attributes under ~10 % positives, reported with balanced accuracy and AUC.
    """

    name: str
    kind: str
    source: str
    value: Callable[[Mapping], float] = field(repr=False, compare=False)
    center: float = 0.0
    scale: float = 1.0
    unit: str = ""
    rare: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("value")
        return d


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("smile", REGRESSION, "attributes.smile (0..1; 0 for 30 %)", _attr("smile"), 0.35, 0.33),
    Attribute("eyes_open", REGRESSION, "attributes.eyes_open (0 closed..1)", _attr("eyes_open"), 0.82, 0.20),
    Attribute("yaw", REGRESSION, "attributes.yaw (-0.5..0.5, + = right)", _attr("yaw"), 0.0, 0.22, "rad"),
    Attribute("roll", REGRESSION, "attributes.roll (-0.22..0.22)", _attr("roll"), 0.0, 0.07, "rad"),
    Attribute("age", REGRESSION, "attributes.age (16..85)", _attr("age"), 39.0, 13.0, "years"),
    Attribute("grey", REGRESSION, "attributes.grey (grey-hair fraction 0..1)", _attr("grey"), 0.14, 0.21),
    Attribute("masc", REGRESSION, "attributes.masc (identity, 0..1)", _attr("masc"), 0.5, 0.30),
    Attribute("light_x", REGRESSION, "light_strength * cos(light_azimuth)", _light("x"), 0.0, 0.24),
    Attribute("light_y", REGRESSION, "light_strength * sin(light_azimuth)", _light("y"), 0.0, 0.24),
    Attribute("beard", BINARY, "attributes.beard (~29 %)", _attr("beard")),
    Attribute("glasses", BINARY, "attributes.glasses, sunglasses included (~18 %)", _attr("glasses")),
    Attribute("sunglasses", BINARY, "attributes.sunglasses (~2 %)", _attr("sunglasses"), rare=True),
    Attribute("hat", BINARY, "attributes.hat (~7 %)", _attr("hat"), rare=True),
    Attribute("earrings", BINARY, "'earrings' in rare_kinds (drawn; ~8 %)", _visible("earrings"), rare=True),
    Attribute("hand", BINARY, "'hand' in rare_kinds (~5 %)", _visible("hand"), rare=True),
    Attribute("phone", BINARY, "'phone' in rare_kinds (~4 %)", _visible("phone"), rare=True),
    Attribute("watch", BINARY, "'watch' in rare_kinds (~4 %)", _visible("watch"), rare=True),
    Attribute(
        "clothing_pattern",
        BINARY,
        "'clothing_pattern' in rare_kinds (~8 %)",
        _visible("clothing_pattern"),
        rare=True,
    ),
    Attribute("text_marks", BINARY, "'text_marks' in rare_kinds (~6 %)", _visible("text_marks"), rare=True),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
_BY_NAME = {a.name: a for a in ATTRIBUTES}


def get_attributes(names: Iterable[str] | None = None) -> tuple[Attribute, ...]:
    """The table entries for ``names`` (all when None), in the given order."""
    if names is None:
        return ATTRIBUTES
    names = list(names)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise InputError(f"unknown attribute(s) {unknown}; known: {', '.join(ATTRIBUTE_NAMES)}")
    if len(set(names)) != len(names):
        raise InputError(f"attribute names repeat: {names}")
    return tuple(_BY_NAME[n] for n in names)


def label_values(labels: Sequence[Mapping], attributes: Sequence[Attribute]) -> np.ndarray:
    """(N, A) float64 targets in label units (0/1 for binary) from synthfaces label records."""
    try:
        return np.array([[a.value(rec) for a in attributes] for rec in labels], dtype=np.float64).reshape(
            len(labels), len(attributes)
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"label records lack a synthfaces attribute field ({exc!r})") from None


def normalise_targets(values: np.ndarray | torch.Tensor, attributes: Sequence[Attribute]) -> torch.Tensor:
    """Label units -> network targets: binary unchanged, regression ``(y - center) / scale``."""
    v = torch.as_tensor(values, dtype=torch.float32)
    center = torch.tensor([a.center for a in attributes], dtype=torch.float32, device=v.device)
    scale = torch.tensor([a.scale for a in attributes], dtype=torch.float32, device=v.device)
    return (v - center) / scale


@dataclass
class AttributeNetConfig:
    """Everything needed to rebuild an :class:`AttributeNet` (stored in ``classifier.pt``).

    ``size`` is the network input; images of another size are resized to it. Every stage halves
    the resolution, so ``size`` must be divisible by ``2 ** len(widths)``. The default (1.46 M
    parameters) trains at about 6.5 ms per 64 px image and step on one CPU thread.
    """

    size: int = 64
    widths: Sequence[int] = (24, 48, 96, 192)
    hidden: int = 256
    dropout: float = 0.1
    attributes: Sequence[str] = ATTRIBUTE_NAMES

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.attributes = tuple(self.attributes)
        get_attributes(self.attributes)
        if not self.widths or any(w < 1 for w in self.widths):
            raise InputError(f"attribute net widths must be positive, got {list(self.widths)}")
        unit = 2 ** len(self.widths)
        if self.size < unit or self.size % unit:
            raise InputError(
                f"attribute net size {self.size} must be a multiple of 2^{len(self.widths)} = {unit}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["attributes"] = list(self.attributes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> AttributeNetConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class AttributeNet(nn.Module):
    """Conv stages (stride-2 conv + conv, BN, ReLU) -> flatten -> MLP -> one output per attribute.

    The head flattens the last map rather than pooling it: yaw, roll and the light direction are
    *where* things are, which a global average would throw away.
    """

    def __init__(self, config: AttributeNetConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = _conv_bn(3, config.widths[0], 1)
        cin = config.widths[0]
        for w in config.widths:
            layers += _conv_bn(cin, w, 2) + _conv_bn(w, w, 1)
            cin = w
        self.body = nn.Sequential(*layers)
        side = config.size // 2 ** len(config.widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * side * side, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.attributes)),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, size, size) in [-1, 1] -> (N, A) raw outputs (logits / normalised values)."""
        return self.head(self.body(images))


def resize_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images to the network size (antialiased when shrinking), differentiably."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = images.shape[-1] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def attribute_loss(
    outputs: torch.Tensor, targets: torch.Tensor, attributes: Sequence[Attribute]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over attributes of BCE-with-logits (binary) and MSE on normalised targets (regression).

    ``targets`` are network targets (:func:`normalise_targets`). Returns the scalar loss and the
    (A,) per-attribute losses (for logging).
    """
    binary = torch.tensor([a.kind == BINARY for a in attributes], device=outputs.device)
    bce = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    mse = (outputs - targets).square()
    per = torch.where(binary, bce, mse).mean(dim=0)
    return per.mean(), per.detach()


class AttributeClassifier(nn.Module):
    """A frozen :class:`AttributeNet` behind its label conventions; always in eval mode.

    Parameters never require grad, but gradients flow to the input images (edit losses).
    """

    def __init__(self, net: AttributeNet, name: str = "attributes"):
        super().__init__()
        self.net = net
        self.name = name
        self.attributes = get_attributes(net.config.attributes)
        self.meta: dict = {}
        center = torch.tensor([a.center for a in self.attributes])
        scale = torch.tensor([a.scale for a in self.attributes])
        self.register_buffer("_center", center, persistent=False)
        self.register_buffer("_scale", scale, persistent=False)
        self.register_buffer(
            "_binary", torch.tensor([a.kind == BINARY for a in self.attributes]), persistent=False
        )
        self.net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> AttributeClassifier:
        """Always eval: a parent module's ``.train()`` must not switch BN/dropout of a scorer on."""
        return super().train(False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def size(self) -> int:
        return int(self.net.config.size)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1], any size -> (N, A) raw outputs."""
        x = resize_input(images.to(self.device, torch.float32), self.size)
        return self.net(x)

    def _split(self, out: torch.Tensor, probabilities: bool) -> dict[str, torch.Tensor]:
        values = out * self._scale + self._center
        binary = torch.sigmoid(out) if probabilities else out
        out = torch.where(self._binary, binary, values)
        return {n: out[:, i] for i, n in enumerate(self.names)}

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{name: (N,)}: probability for binary attributes, value in label units for regressions."""
        return self._split(self(images), probabilities=True)

    def scores(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{name: (N,)}: logit for binary attributes, value in label units for regressions -- the
        unbounded, roughly linear score that latent boundaries and probes are fitted to."""
        return self._split(self(images), probabilities=False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, size={self.size}, attributes={len(self.attributes)}"


def classifier_checkpoint(
    net: AttributeNet, scores: Mapping | None = None, extra: Mapping | None = None
) -> dict:
    """The ``classifier.pt`` dict (read by :func:`load_classifier`)."""
    return {
        "egain_format": CLASSIFIER_FORMAT,
        "config": net.config.to_dict(),
        "attributes": [_BY_NAME[n].to_dict() for n in net.config.attributes],
        "state_dict": cpu_state(net),
        "scores": dict(scores or {}),
        **dict(extra or {}),
    }


def save_classifier(classifier: AttributeClassifier | AttributeNet, path: str | os.PathLike, **kw) -> Path:
    """Write ``classifier.pt`` atomically."""
    from egain.runtime.checkpoint import atomic_torch_save

    net = classifier.net if isinstance(classifier, AttributeClassifier) else classifier
    return atomic_torch_save(classifier_checkpoint(net, **kw), path)


def resolve_classifier_path(spec: str | os.PathLike) -> Path:
    """``zoo:NAME`` / ``synthfaces-attributes`` / a run folder / a ``classifier.pt`` -> the file."""
    spec = str(spec)
    if spec == "synthfaces-attributes":
        spec = f"zoo:{BUNDLED_NAME}"
    if spec.startswith("zoo:"):
        from egain import zoo

        return zoo.bundled_path(spec[4:])
    return file_in_run(Path(spec).expanduser(), "classifier.pt", "an attribute")


def load_classifier(
    spec: str | os.PathLike | AttributeClassifier, device: str | torch.device | None = None
) -> AttributeClassifier:
    """Load an attribute classifier (see :func:`resolve_classifier_path` for ``spec``)."""
    from egain.utils.device import resolve_device

    dev = resolve_device(device)
    if isinstance(spec, AttributeClassifier):
        return spec.to(dev)
    path = resolve_classifier_path(spec)
    net, ckpt = load_export(
        path,
        fmt=CLASSIFIER_FORMAT,
        what="attribute classifier",
        artefact="classifier.pt",
        build=lambda config: AttributeNet(AttributeNetConfig.from_dict(config)),
    )
    clf = AttributeClassifier(net, name=str(spec))
    clf.meta = export_meta(ckpt)
    return clf.to(dev)


# --------------------------------------------------------------------------------------------------
# held-out figures


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count one half); NaN without both classes."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def attribute_metrics(
    predicted: Mapping[str, np.ndarray], truth: np.ndarray, attributes: Sequence[Attribute]
) -> dict[str, dict]:
    """Per-attribute held-out figures.

    ``predicted[name]``: probabilities (binary) or label-unit values (regression), as
    :meth:`AttributeClassifier.predict` gives; ``truth``: (N, A) label values (:func:`label_values`).
    Binary: ``accuracy`` at p = 0.5, ``balanced_accuracy`` (mean of the two class recalls, the
    honest figure for a rare attribute), ``auc``, ``positives``. Regression: ``spearman``, ``mae``
    (label units) and ``pearson``.
    """
    out: dict[str, dict] = {}
    for i, a in enumerate(attributes):
        p = np.asarray(predicted[a.name], dtype=np.float64)
        y = truth[:, i]
        row: dict = {"kind": a.kind, "n": len(y)}
        if a.kind == BINARY:
            pos = y > 0.5
            hit = (p > 0.5) == pos
            recalls = [float(hit[m].mean()) for m in (pos, ~pos) if m.any()]
            row.update(
                accuracy=float(hit.mean()),
                balanced_accuracy=float(np.mean(recalls)) if recalls else float("nan"),
                auc=roc_auc(p, pos),
                positives=int(pos.sum()),
            )
        else:
            pearson = float(np.corrcoef(p, y)[0, 1]) if np.ptp(p) > 0 and np.ptp(y) > 0 else float("nan")
            row.update(spearman=spearman(p, y), mae=float(np.abs(p - y).mean()), pearson=pearson)
        out[a.name] = row
    return out


def summarise_metrics(metrics: Mapping[str, Mapping]) -> dict[str, float]:
    """Means over attributes: accuracy and AUC of the binary ones, Spearman of the regressions."""

    def mean(key: str, kind: str) -> float:
        v = [m[key] for m in metrics.values() if m["kind"] == kind and not math.isnan(m[key])]
        return float(np.mean(v)) if v else float("nan")

    return {
        "mean_accuracy": mean("accuracy", BINARY),
        "mean_balanced_accuracy": mean("balanced_accuracy", BINARY),
        "mean_auc": mean("auc", BINARY),
        "mean_spearman": mean("spearman", REGRESSION),
    }


def format_metrics(metrics: Mapping[str, Mapping]) -> str:
    """A plain-text table of :func:`attribute_metrics` (one line per attribute)."""
    lines = [f"{'attribute':<17} {'kind':<10} {'n':>5}  figures"]
    for name, m in metrics.items():
        if m["kind"] == BINARY:
            figs = (
                f"acc {m['accuracy']:.3f}  bal.acc {m['balanced_accuracy']:.3f}  "
                f"AUC {m['auc']:.3f}  positives {m['positives']}"
            )
        else:
            figs = f"Spearman {m['spearman']:.3f}  MAE {m['mae']:.3g}"
        lines.append(f"{name:<17} {m['kind']:<10} {m['n']:>5}  {figs}")
    return "\n".join(lines)


@torch.no_grad()
def evaluate_classifier(
    classifier: AttributeClassifier,
    dataset: torch.utils.data.Dataset,
    batch: int = 128,
    workers: int = 0,
    progress_bar: bool = False,
) -> tuple[dict[str, dict], dict[str, float]]:
    """Figures of ``classifier`` on a labelled dataset whose items are ``(image, identity, labels)``
    (``SynthFacesDataset(..., return_labels=True)`` or :class:`LabelledFolder`)."""
    from egain.data.synthfaces import collate_with_labels
    from egain.runtime.logging import progress

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate_with_labels
    )
    preds: dict[str, list[np.ndarray]] = {n: [] for n in classifier.names}
    truth = []
    for images, _ids, labels in progress(
        loader, total=len(loader), desc="attributes eval", enabled=progress_bar, unit="batch"
    ):
        for k, v in classifier.predict(images).items():
            preds[k].append(v.float().cpu().numpy())
        truth.append(label_values(labels, classifier.attributes))
    if not truth:
        raise InputError("the evaluation data holds no images")
    metrics = attribute_metrics(
        {k: np.concatenate(v) for k, v in preds.items()}, np.concatenate(truth), classifier.attributes
    )
    return metrics, summarise_metrics(metrics)


class LabelledFolder(torch.utils.data.Dataset):
    """A folder written by ``egain data synthfaces`` (PNGs + ``labels.jsonl``) as ``(image, identity,
    labels)`` items, optionally restricted to some splits."""

    def __init__(self, root: str | os.PathLike, size: int, splits: Sequence[str] | None = None):
        import json

        from egain.utils.images import SYNTHFACES_LABELS

        self.root = Path(root)
        path = self.root / SYNTHFACES_LABELS
        if not path.exists():
            raise InputError(f"'{root}' has no {SYNTHFACES_LABELS} (attribute labels come from synthfaces)")
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.records = [r for r in records if splits is None or r.get("split") in splits]
        self.size = size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        from egain.utils.images import load_image

        rec = self.records[index]
        return load_image(self.root / rec["file"], self.size), int(rec.get("identity", -1)), rec

"""The metric table: one record per measure, read by everything that names, orders or prints one.

``egain evaluate`` (which columns exist and their order in ``scores.csv``), the report (headings,
digits, the best value in bold), the statistics (which direction is better) and ``egain compare``
/ ``egain demo`` (table headers, arrows, digits) all read :data:`METRICS`, so that a metric's title,
direction and precision are stated once. The order of :data:`METRICS` is the order of the
``scores.csv`` columns after ``image, method``: a public format, so new measures go at the end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from egain.metrics.functional import mae, mse, psnr, scc, ssim, vif
from egain.metrics.identity import feature_distance, identity_similarity, magface_quality


@dataclass(frozen=True)
class MetricSpec:
    """One measure of a reconstruction.

    ``function`` computes it per image: ``function(source, reconstruction)`` for pixel measures,
    ``function(embedder, source, reconstruction)`` / ``function(embedder, reconstruction)`` for the
    face measures (``feat`` runs through the ID scorer and needs its ``features``); None for LPIPS,
    which is a module with weights (:class:`egain.metrics.LPIPS`).
    ``needs`` says what scoring it takes: "pixels" (nothing), "lpips" (network weights) or
    "embedder" (a face embedder).
    """

    name: str
    label: str
    title: str
    higher_is_better: bool
    digits: int
    needs: str
    function: Callable[..., torch.Tensor] | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def sign(self) -> float:
        """+1 or -1: multiply a difference by it so that positive always means better."""
        return 1.0 if self.higher_is_better else -1.0

    @property
    def header(self) -> str:
        """Short column header with the direction, e.g. ``SSIM ↑``."""
        return f"{self.label} {self.arrow}"

    def format(self, value: float | None, digits: int | None = None) -> str:
        """The value with this metric's digits (see :func:`format_number`)."""
        return format_number(value, self.digits if digits is None else digits)


#: every measure, in scores.csv order (image, method, then these)
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("ssim", "SSIM", "SSIM, mapped to [0, 1]", True, 4, "pixels", ssim),
    MetricSpec(
        "ssim_raw", "SSIM raw", "SSIM (raw, [-1, 1])", True, 4, "pixels", functools.partial(ssim, raw=True)
    ),
    MetricSpec("scc", "SCC", "SCC", True, 4, "pixels", scc),
    MetricSpec("vif", "VIF", "VIF-p", True, 4, "pixels", vif),
    MetricSpec("psnr", "PSNR", "PSNR [dB]", True, 2, "pixels", psnr),
    MetricSpec("mae", "MAE", "MAE (intensity in [0, 1])", False, 5, "pixels", mae),
    MetricSpec("mse", "MSE", "MSE (intensity in [0, 1])", False, 6, "pixels", mse),
    MetricSpec("lpips", "LPIPS", "LPIPS", False, 4, "lpips", None),
    MetricSpec("id", "ID", "Face ID similarity (cosine)", True, 4, "embedder", identity_similarity),
    MetricSpec(
        "magface", "MagFace", "MagFace quality (embedding norm)", True, 2, "embedder", magface_quality
    ),
    # the perceptual distance that works offline: LPIPS's recipe on the ID scorer's layers
    MetricSpec(
        "feat",
        "Feat",
        "Face-feature distance (LPIPS-style, ID scorer's layers)",
        False,
        4,
        "embedder",
        feature_distance,
    ),
)
#: metric names in scores.csv order
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
_BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> MetricSpec:
    """The spec of metric ``name`` (KeyError naming the known ones when there is none)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}") from None


def find_metric(name: str) -> MetricSpec | None:
    """The spec of metric ``name``, or None for a name outside the table."""
    return _BY_NAME.get(name)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of ``name`` is better (unknown names: larger is better)."""
    spec = find_metric(name)
    return True if spec is None else spec.higher_is_better


def format_number(value: float | None, digits: int) -> str:
    """A table cell: ``–`` for missing (None / NaN), ``inf`` / ``-inf`` kept, else fixed digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"

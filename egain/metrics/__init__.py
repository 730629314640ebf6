"""Image-quality and face metrics for comparing inversion methods, and the evaluation engine.

Per-image, batched PyTorch scores (CPU or GPU) that agree with the reference implementations the
papers' numbers come from:

* :func:`ssim` (scikit-image, Gaussian window; reported mapped to [0, 1] and raw), :func:`scc` and
  :func:`vif` (sewar's ``scc`` and ``vifp``), :func:`psnr` (data range 255), :func:`mae` and
  :func:`mse` (on [0, 1] intensities), or several at once with :func:`pixel_metrics`;
* :class:`LPIPS` (AlexNet / VGG16, published weights from user-given paths; a differentiable module);
* :func:`identity_similarity` and :func:`magface_quality` through face-embedder backends
  (``egain.faces.load_embedder`` specs or any object with ``embed``), and :func:`feature_distance`
  (``feat``: LPIPS's recipe on a face embedder's layers, the perceptual measure that needs no
  downloaded weights);
* :data:`METRICS` -- the metric table (:class:`MetricSpec`: name, label, title, direction, digits,
  function), read by ``evaluate``, the report, the statistics, ``compare`` and ``demo``;
* :mod:`egain.metrics.stats` -- every statistical test egain reports (Wilcoxon signed-rank,
  Mann-Whitney U, bootstrap CIs, Holm) and the one p-value formatter :func:`format_p`;
* :func:`evaluate_folders` -- the engine of ``egain evaluate``: pairing, batched scoring,
  ``scores.csv``, summary statistics with paired Wilcoxon tests, box plots and an image grid.

Images are (N, 3, H, W), either uint8 (0..255, as stored) or float in [-1, 1] (egain's convention).
"""

from egain.metrics.evaluate import (
    METRIC_CHOICES,
    EvaluationReport,
    Scorers,
    evaluate_folders,
    pair_folders,
    parse_metrics,
    score_batch,
)
from egain.metrics.functional import PIXEL_METRICS, mae, mse, pixel_metrics, psnr, scc, ssim, vif
from egain.metrics.identity import (
    Backend,
    Embedder,
    feature_distance,
    identity_similarity,
    magface_quality,
    resolve_embedder,
)
from egain.metrics.lpips import LPIPS, AlexNetFeatures, LPIPSUnavailable, VGG16Features, load_lpips
from egain.metrics.report import SCORE_COLUMNS, read_scores_csv
from egain.metrics.spectral import period2_power, period2_ratio
from egain.metrics.stats import (
    HIGHER_IS_BETTER,
    bootstrap_difference_ci,
    bootstrap_mean_ci,
    describe,
    format_p,
    holm,
    paired_wilcoxon,
    summarise,
    two_sample_test,
    wilcoxon_test,
)
from egain.metrics.table import METRIC_NAMES, METRICS, MetricSpec, format_number, metric

__all__ = [
    "HIGHER_IS_BETTER",
    "LPIPS",
    "METRICS",
    "METRIC_CHOICES",
    "METRIC_NAMES",
    "PIXEL_METRICS",
    "SCORE_COLUMNS",
    "AlexNetFeatures",
    "Backend",
    "Embedder",
    "EvaluationReport",
    "LPIPSUnavailable",
    "MetricSpec",
    "Scorers",
    "VGG16Features",
    "bootstrap_difference_ci",
    "bootstrap_mean_ci",
    "describe",
    "evaluate_folders",
    "format_number",
    "format_p",
    "holm",
    "feature_distance",
    "identity_similarity",
    "load_lpips",
    "mae",
    "metric",
    "magface_quality",
    "mse",
    "pair_folders",
    "paired_wilcoxon",
    "period2_power",
    "period2_ratio",
    "parse_metrics",
    "pixel_metrics",
    "psnr",
    "read_scores_csv",
    "resolve_embedder",
    "scc",
    "score_batch",
    "ssim",
    "summarise",
    "two_sample_test",
    "vif",
    "wilcoxon_test",
]

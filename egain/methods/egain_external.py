"""``egain-external``: EGAIN with external fusion (seeds/000, the latent-fusion scheme).

The delta encoder maps Delta0 to a latent w_d, and a compact per-layer fusion combines w_b and w_d
into the code given to the generator; editing acts on w_b, which is then re-fused with the delta latent.
"""

from __future__ import annotations

from egain.methods.e4e import BASIC_ENCODER
from egain.methods.egain import _EGAINPaperModel
from egain.methods.registry import register_method


@register_method(
    "egain-external",
    summary="EGAIN with external fusion: compact per-layer latent fusion of w_b and a delta-encoder latent w_d",
    generator="swagan",
)
class EGAINExternal(_EGAINPaperModel):
    """egain-external: e4e + latent delta encoder + external (latent) fusion."""

    defaults = {
        "basic_encoder": BASIC_ENCODER,
        "delta_calculator": {"mode": "signed", "resize": "bilinear"},
        "delta_encoder": {"type": "latent"},
        "fusion": {"type": "external"},
        "aligner": None,
    }
    bundled_weights = "egain-external-swagan-64"
    bundled_generator = "gan-swagan-64"

"""``hfgi``: high-fidelity GAN inversion (Wang et al. 2022, seeds/001).

A frozen e4e gives w_b and the low-fidelity y0; the distortion Delta = x - y0 is re-aligned to y0
by ADA (adaptive distortion alignment), encoded by the consultation encoder into gate and detail
maps, and fused into the generator's 64x64 layer (gated internal fusion). Training adds the ADA
alignment L1 (0.1) to e4e's losses; the paper's adversarial term is off by default, as in the
released code. Published weights: HFGI ``ckpt.pt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from egain.methods.composition import EGAIN_LOSS_WEIGHTS, EGAINMethod
from egain.methods.e4e import BASIC_ENCODER
from egain.methods.published import PUBLISHED_AT, load_published
from egain.methods.registry import register_method


@register_method(
    "hfgi",
    summary="HFGI (Wang et al.): frozen e4e + consultation encoder + gated internal fusion + ADA alignment",
    generator="stylegan2",
)
class HFGI(EGAINMethod):
    """HFGI: e4e + consultation delta encoder + internal fusion with bias + ADA."""

    defaults = {
        "basic_encoder": BASIC_ENCODER,
        "delta_calculator": {"mode": "signed", "resize": "bilinear"},
        "delta_encoder": {"type": "consultation"},
        "fusion": {"type": "internal", "bias": True, "zero_init": True},
        "aligner": {"type": "ada"},
    }
    loss_weights = {**EGAIN_LOSS_WEIGHTS, "align": 0.1}
    bundled_weights = "hfgi-stylegan2-64"
    bundled_generator = "gan-stylegan2-64"
    published_at = PUBLISHED_AT["hfgi"]

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> HFGI:
        return load_published(
            cls, ckpt, generator=generator, device=device, where=where, with_residue=True, **config
        )

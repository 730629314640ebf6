"""``e4e``: encoder for editing (Tov et al. 2021), the basic encoder of the EGAIN family.

IR-SE backbone with a feature pyramid and one map2style head per latent row, predicting progressive
W+ offsets from the average latent; trained with L2, LPIPS (or the face-feature distance), ID, the
delta regulariser and the latent-discriminator loss. Published weights: ``e4e_ffhq_encode.pt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from egain.methods.composition import EGAINMethod
from egain.methods.published import PUBLISHED_AT, load_published
from egain.methods.registry import register_method

#: the basic encoder every EGAIN-family method starts from
BASIC_ENCODER = {"type": "e4e"}


@register_method(
    "e4e",
    summary="e4e encoder (Tov et al.): IR-SE + FPN, progressive W+ offsets, delta and latent-discriminator regularisers",
    generator="stylegan2",
)
class E4E(EGAINMethod):
    """e4e: the EGAIN composition with the basic encoder alone (no delta branch)."""

    defaults = {"basic_encoder": BASIC_ENCODER, "delta_encoder": None, "fusion": None, "aligner": None}
    bundled_weights = "e4e-stylegan2-64"
    bundled_generator = "gan-stylegan2-64"
    published_at = PUBLISHED_AT["e4e"]

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> E4E:
        return load_published(cls, ckpt, generator=generator, device=device, where=where, **config)

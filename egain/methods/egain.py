"""``egain``: the EGAIN model (Kabbani et al., seeds/000).

e4e basic encoder + a custom CNN delta encoder + internal fusion (gate and detail maps without
bias) on a SWAGAN generator, trained with Eq. 1 of the paper. The released EGAIN code is a
different model (pSp encoder + a 387M-parameter external MLP fusion): its checkpoint is refused
with an explanation, and ``egain-external`` is the paper's external-fusion variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from egain.errors import CheckpointError
from egain.methods.composition import EGAINMethod
from egain.methods.e4e import BASIC_ENCODER
from egain.methods.registry import register_method

_RELEASED_CODE = (
    "The released EGAIN code (external 387M-parameter MLP fusion, pSp encoder) is a different model from the "
    "paper's '{name}'; train '{name}' with 'egain train --method {name} --basic-encoder E4E.pt'"
)


class _EGAINPaperModel(EGAINMethod):
    """Shared by ``egain`` and ``egain-external``: no published weights of the paper's models."""

    @classmethod
    def from_published(
        cls, ckpt: Mapping[str, Any], *, generator: Any, device: torch.device, where: str, **config: Any
    ) -> EGAINMethod:
        raise CheckpointError(
            f"{where} is a published pSp-family checkpoint; only 'e4e' and 'hfgi' import published weights. "
            + _RELEASED_CODE.format(name=cls.name)
        )


@register_method(
    "egain",
    summary="egain (Kabbani et al.): e4e basic encoder + custom CNN delta encoder + internal fusion, SWAGAN",
    generator="swagan",
)
class EGAIN(_EGAINPaperModel):
    """egain: e4e + CNN delta encoder + internal fusion (no bias)."""

    defaults = {
        "basic_encoder": BASIC_ENCODER,
        "delta_calculator": {"mode": "signed", "resize": "bilinear"},
        "delta_encoder": {"type": "cnn"},
        "fusion": {"type": "internal", "bias": False, "zero_init": True},
        "aligner": None,
    }
    bundled_weights = "egain-swagan-64"
    bundled_generator = "gan-swagan-64"

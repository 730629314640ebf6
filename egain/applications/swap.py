"""Semantic face swapping (seeds/004 Alg. 2): paste the source's central face region onto the
target, then invert the composite so the generator's prior blends the seam: ``I = G(E(I_p))``.

The pasted region is a centred box (``fraction`` of the side; aligned faces have the face there),
optionally with a feathered edge. Nothing is learnt: any method's ``invert`` does the blending,
and the high-fidelity methods (HFGI, EGAIN) keep more of the seam too -- their delta branch
restores what the basic code misses, which here includes the paste artefact; ``basic`` in the
result is the basic code's image alone, the blend the paper describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from egain.methods import InversionMethod, prepare_images
from egain.methods.base import ImageInput


def center_mask(size: int, fraction: float = 0.5, feather: float = 0.0) -> torch.Tensor:
    """(1, 1, size, size) mask: 1 in the centred box of side ``fraction * size``, ramped over
    ``feather * size`` pixels at its edge."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5  # -0.5..0.5
    half = fraction / 2
    ramp = ((half - c.abs()) / feather + 0.5).clamp(0, 1) if feather > 0 else (c.abs() <= half).float()
    return (ramp.view(-1, 1) * ramp.view(1, -1)).view(1, 1, size, size)


def paste(
    source: torch.Tensor, target: torch.Tensor, fraction: float = 0.5, feather: float = 0.0
) -> torch.Tensor:
    """``target`` with the centre of ``source`` pasted in (both (N, 3, S, S) in [-1, 1])."""
    m = center_mask(source.shape[-1], fraction, feather).to(source.device, source.dtype)
    return source * m + target * (1 - m)


@dataclass
class SwapResult:
    """The pasted composite, its inversion (the swap) and, for delta methods, the basic code's image."""

    pasted: torch.Tensor
    swapped: torch.Tensor
    basic: torch.Tensor | None


@torch.no_grad()
def face_swap(
    method: InversionMethod,
    source: ImageInput,
    target: ImageInput,
    *,
    fraction: float = 0.5,
    feather: float = 0.0,
) -> SwapResult:
    """Alg. 2 for every (source, target) pair (equal counts)."""
    s = prepare_images(source, method.input_size, method.device)
    t = prepare_images(target, method.input_size, method.device)
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"{s.shape[0]} source and {t.shape[0]} target images; give as many of each")
    pasted = paste(s, t, fraction, feather)
    inv = method.invert(pasted)
    basic = inv.extras.get("basic_reconstruction")
    return SwapResult(
        pasted.cpu(), inv.reconstruction.float().cpu(), None if basic is None else basic.float().cpu()
    )

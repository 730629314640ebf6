"""Face interpolation (seeds/004 Alg. 4): ``I = G(lam E(I_B) + (1 - lam) E(I_A))`` for lam in [0, 1].

High-fidelity methods interpolate the basic codes and, linearly, their distortion maps Delta
before the fusion networks (``lam D_B + (1 - lam) D_A``; HFGI's ADA then aligns the blended map
to the blended low-fidelity image); ``deltas="none"`` interpolates the codes alone, which morphs
smoothly but loses the details the delta branch restores at both ends.
"""

from __future__ import annotations

from typing import Any

import torch

from egain.applications.common import blend, render
from egain.applications.mixing import _zero_deltas
from egain.methods import Inversion, InversionMethod


@torch.no_grad()
def interpolate(
    method: InversionMethod, a: Any, b: Any, *, steps: int = 5, deltas: str = "blend"
) -> torch.Tensor:
    """(steps, N, 3, S, S): frame k is lam = k / (steps - 1) between each A and B image."""
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    if deltas not in ("blend", "none"):
        raise ValueError(f"deltas must be blend or none, got {deltas!r}")
    ia, ib = method.invert(a), method.invert(b)
    if len(ia) != len(ib):
        raise ValueError(f"{len(ia)} A and {len(ib)} B images; give as many of each")
    if deltas == "none":
        ia = Inversion(ia.latents, ia.reconstruction, _zero_deltas(ia.extras))
        ib = Inversion(ib.latents, ib.reconstruction, _zero_deltas(ib.extras))
    frames = [render(method, blend(ia, ib, k / (steps - 1))) for k in range(steps)]
    return torch.stack(frames)

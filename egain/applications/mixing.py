"""Style mixing (seeds/004 Alg. 3): the content image's code with its last rows replaced by the
style image's, ``I_m = G(Mix(E(I_s), E(I_c)))``.

The paper replaces the last 11 of 18 W+ rows (start row 7); the published test option
``mix_layer_start_idx`` is 10. ``start="paper"`` scales the paper's choice to the generator
(``n_latent - round(11 * n_latent / 18)``: row 4 of 10 at 64 px StyleGAN2, row 3 of 8 for SWAGAN);
an integer picks the row. For high-fidelity methods the code rows are mixed in both the fused
latents and the basic code, and the distortion maps Delta come from the content image
(``deltas="content"``, its details stay), from the style image, or are dropped (``"none"``:
the plain code mix).
"""

from __future__ import annotations

from typing import Any

import torch

from egain.applications.common import render
from egain.methods import Inversion, InversionMethod


def mix_start(n_latent: int, start: int | str = "paper") -> int:
    """The first W+ row taken from the style image."""
    if start == "paper":
        return n_latent - round(11 * n_latent / 18)
    s = int(start)
    if not 0 <= s < n_latent:
        raise ValueError(f"mix start row must be in 0..{n_latent - 1}, got {s}")
    return s


def _zero_deltas(extras: dict[str, Any]) -> dict[str, Any]:
    out = dict(extras)
    for k in ("delta", "aligned_delta"):
        if isinstance(out.get(k), torch.Tensor):
            out[k] = torch.zeros_like(out[k])
    if isinstance(out.get("deltas"), list | tuple):
        out["deltas"] = [torch.zeros_like(d) for d in out["deltas"]]
    return out


def mix_inversions(content: Inversion, style: Inversion, start: int, deltas: str = "content") -> Inversion:
    """``content`` with rows ``start:`` of its codes from ``style``."""
    if deltas not in ("content", "style", "none"):
        raise ValueError(f"deltas must be content, style or none, got {deltas!r}")

    def mix(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = c.clone()
        out[:, start:] = s[:, start:].to(c.device, c.dtype)
        return out

    base = style if deltas == "style" else content
    extras = dict(base.extras)
    if isinstance(content.extras.get("basic_latents"), torch.Tensor):
        extras["basic_latents"] = mix(content.extras["basic_latents"], style.extras["basic_latents"])
    if deltas == "none":
        extras = _zero_deltas(extras)
    return Inversion(mix(content.latents, style.latents), content.reconstruction, extras)


@torch.no_grad()
def style_mix(
    method: InversionMethod,
    content: Any,
    style: Any,
    *,
    start: int | str = "paper",
    deltas: str = "content",
) -> torch.Tensor:
    """Alg. 3 for every (content, style) pair (equal counts); (N, 3, S, S) in [-1, 1]."""
    ci, si = method.invert(content), method.invert(style)
    if len(ci) != len(si):
        raise ValueError(f"{len(ci)} content and {len(si)} style images; give as many of each")
    row = mix_start(ci.latents.shape[1], start)
    return render(method, mix_inversions(ci, si, row, deltas))

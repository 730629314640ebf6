"""``hybrid``: W+ optimisation started from an encoder's code (encoder + optimisation, as In-Domain
GAN inversion and e4e's "encoder then optimise" baselines do).

The encoder is any method of the registry (``encoder="e4e"`` by default, its bundled weights unless
``encoder_checkpoint`` names a file; a built method object works too). Its ``latents`` (the code
it gives the generator) start the ``optim-wplus`` optimisation: Adam, pixel MSE + perceptual
distance. Starting close to the answer, far fewer steps are needed than from w-bar; the 200-step
default is our choice (no published hybrid setting is in the facts), the rest are ``optim-wplus``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from egain.methods.base import InversionMethod
from egain.methods.optim import LATENT_OPTIONS, LatentOptimisation
from egain.methods.optimise import load_encoder, option
from egain.methods.registry import register_method

HYBRID_OPTIONS = tuple(
    option("steps", 200, "optimisation steps per image after the encoder (trade time for quality)", int)
    if o.name == "steps"
    else o
    for o in LATENT_OPTIONS
) + (
    option("encoder", "e4e", "the registry method whose code starts the optimisation", str),
    option("encoder_checkpoint", None, "its weights (default: its bundled weights)", str),
)


@register_method(
    "hybrid",
    summary="encoder + optimisation: W+ optimisation (MSE + perceptual) started from an encoder's code (e4e)",
    generator="any",
)
class Hybrid(LatentOptimisation):
    """W+ optimisation from an encoder's code. ``encoder`` may be a name or an ``InversionMethod``
    (then only its name is recorded in ``config``; pass the same object again to rebuild it)."""

    space = "w+"
    invert_options = HYBRID_OPTIONS

    def __init__(self, generator: nn.Module, *, latent_avg: torch.Tensor | None = None, **config: Any):
        encoder = config.get("encoder")
        if isinstance(encoder, InversionMethod):
            config = {**config, "encoder": encoder.name}
        super().__init__(generator, latent_avg=latent_avg, **config)
        if isinstance(encoder, InversionMethod):
            self._aux["encoder"] = encoder

    def encoder(self) -> InversionMethod:
        """The encoder method, loaded on first use and kept out of this module's state."""
        enc = self._aux.get("encoder")
        if enc is None:
            enc = load_encoder(
                self.generator, self.config["encoder"], self.config["encoder_checkpoint"], self.device
            )
            self._aux["encoder"] = enc
        return enc.to(self.device)

    def initial_codes(self, x: torch.Tensor, cfg: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        with torch.no_grad():
            inv = self.encoder().invert(x)
        w = self.generator.to_wplus(inv.latents.to(self.device))
        return w.clone(), {"encoder_latents": w.clone(), "encoder_reconstruction": inv.reconstruction}

    def parameter_count(self, include_generator: bool = True) -> int:
        """The generator's and the encoder's parameters (both run at inference)."""
        enc = self._aux.get("encoder")
        extra = enc.parameter_count(include_generator=False) if enc is not None else 0
        return super().parameter_count(include_generator) + extra

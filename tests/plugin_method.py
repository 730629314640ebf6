"""A method defined outside ``egain/``: what a researcher writes to compare their own idea.

``tiny-mean``: a small CNN that predicts one W code (repeated over the rows) from the image, trained
with pixel L2. It uses only the public contract: ``InversionMethod``, ``register_method``,
``TrainOption`` and ``Inversion``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from egain.methods import Inversion, InversionMethod, TrainOption, prepare_images, register_method


@register_method("tiny-mean", summary="test plug-in: a small CNN to W", generator="any")
class TinyMean(InversionMethod):
    loss_weights = {"l2": 1.0, "w_norm": 0.0}
    loss_help = {"l2": "pixel MSE", "w_norm": "distance of w to the average latent"}
    training_options = (TrainOption("width", 8, "channels of the encoder", int, target="config"),)

    def __init__(self, generator: nn.Module, *, width: int = 8, latent_avg: torch.Tensor | None = None):
        super().__init__()
        self.generator = generator.requires_grad_(False).eval()
        self.input_size = int(generator.size)
        self.config = {"width": int(width)}
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 2, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, generator.style_dim),
        )
        if latent_avg is None:
            with torch.no_grad():
                latent_avg = generator.mean_latent(256, seed=0)[0].reshape(-1)[: generator.style_dim]
        self.register_buffer("latent_avg", latent_avg.reshape(-1)[: generator.style_dim].clone())

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        w = self.encoder(x) + self.latent_avg
        return w.unsqueeze(1).repeat(1, self.generator.n_latent, 1)

    @torch.no_grad()
    def invert(self, images) -> Inversion:
        self.eval()
        x = prepare_images(images, self.input_size, self.device)
        w = self._codes(x)
        return Inversion(w, self.generator.synthesize(w, noise_mode="const"))

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return self.generator.synthesize(inversion.latents + strength * direction.to(self.device))

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    def training_step(self, batch: torch.Tensor, step: int):
        lam = self.training_ctx.lambdas
        w = self._codes(batch)
        y = self.generator.synthesize(w, noise_mode="const")
        terms = {"l2": F.mse_loss(y, batch)}
        if lam["w_norm"] > 0:
            terms["w_norm"] = (w - self.latent_avg).pow(2).mean()
        return sum(lam[k] * v for k, v in terms.items()), terms

"""Latent-space regularisers of the EGAIN loss (seeds/000 Eq. 1), from pSp and e4e.

* ``avg_reg`` (pSp's ``w_norm``): pulls codes toward the average latent w-bar.
* ``delta_reg`` (e4e): keeps the per-layer offsets w_i - w_0 small, so the W+ code stays close to W.
* latent-discriminator W-regularisation (e4e): a discriminator D_w separates codes of the mapping
  network from encoder codes; the encoder is trained with the non-saturating loss on its rows.
"""

from __future__ import annotations

import torch

from egain.losses.adversarial import d_logistic_loss, g_nonsaturating_loss, r1_penalty


def avg_reg(latents: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||w - w-bar||_2 over all rows (pSp ``WNormLoss``)."""
    diff = latents - latent_avg
    return diff.flatten(1).norm(2, dim=1).mean()


def delta_reg(latents: torch.Tensor, stage: int | None = None, p: int = 2) -> torch.Tensor:
    """Sum over rows 1..stage of mean_batch ||w_i - w_0||_p (e4e ``delta_norm``)."""
    n = latents.shape[1]
    last = n - 1 if stage is None else min(stage, n - 1)
    if last < 1:
        return latents.new_zeros(())
    deltas = latents[:, 1 : last + 1] - latents[:, :1]
    return deltas.norm(p, dim=2).mean(0).sum()


def w_reg_generator_loss(
    discriminator: torch.nn.Module, latents: torch.Tensor, rows: int | None = None
) -> torch.Tensor:
    """Encoder side of e4e's latent adversarial loss over rows 0..rows-1 (all when None)."""
    codes = latents if rows is None else latents[:, :rows]
    return g_nonsaturating_loss(discriminator(codes.reshape(-1, codes.shape[-1])))


def w_reg_discriminator_loss(
    discriminator: torch.nn.Module, real_w: torch.Tensor, fake_latents: torch.Tensor, rows: int | None = None
) -> torch.Tensor:
    """D_w side: real = mapped z, fake = encoder rows (detached)."""
    fake = fake_latents if rows is None else fake_latents[:, :rows]
    fake = fake.detach().reshape(-1, fake.shape[-1])
    return d_logistic_loss(discriminator(real_w), discriminator(fake))


def w_reg_r1(discriminator: torch.nn.Module, real_w: torch.Tensor) -> torch.Tensor:
    real = real_w.detach().requires_grad_(True)
    return r1_penalty(discriminator(real), real)

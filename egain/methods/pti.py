"""``pti``: Pivotal Tuning Inversion (Roich et al. 2022, danielroich/PTI), batched pivots.

1. **Pivot.** The StyleGAN2 projector in W (:func:`egain.methods.projector.project`) with PTI's
   settings: 450 steps, peak learning rate 0.01 (PTI builds its optimiser with ``first_inv_lr``
   5e-3 but overwrites it every step with 0.01 x ramp, so 0.01 is what runs), w-bar and w_std from
   600 samples. Its optimised noise maps are discarded, as in PTI. ``pivot="encoder"`` takes the
   pivot from an encoder instead (PTI's ``first_inv_type="w+"`` uses e4e).
2. **Tuning.** For each image a fresh copy of the generator is tuned at its pivot: Adam (lr 3e-4)
   over all its parameters, loss 1 x MSE + 1 x perceptual (PTI: LPIPS-alex) at full resolution,
   constant noise, up to 350 steps; when the perceptual term is at or below 0.06 the image stops
   *before* stepping. The optional locality regulariser (off by default, as published) compares
   the tuned and the original generator at ``w_r = w_p + 30 (w_z - w_p)/||w_z - w_p||`` (w_z mapped
   with truncation 0.5), with 0.1 x MSE + 0.1 x perceptual at noise "none", every step.

The tuned generators come back with the inversion (``extras["tuned_generators"]`` and, per image,
``extras["generator_index"]``): ``reconstruction`` is rendered with them, :meth:`PTI.edit` uses
them, and :meth:`PTI.save_tuned_generator` writes one as an ordinary generator file
(``egain.generators.save_generator``), loadable by every egain command. Pivots are optimised as a
batch (each image independently); tuning runs image after image, each on its own copy (the
published single-ID coach), so a batch result equals the one-at-a-time result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from egain.errors import InputError
from egain.methods.base import ImageInput, Inversion
from egain.methods.optimise import (
    PERCEPTUAL_OPTIONS,
    OptimisationMethod,
    copy_generator,
    load_encoder,
    option,
)
from egain.methods.projector import project
from egain.methods.registry import register_method
from egain.runtime.logging import progress

PTI_OPTIONS = (
    option(
        "pivot",
        "w",
        "pivot from the W projector ('w') or from an encoder ('encoder', PTI's 'w+')",
        str,
        choices=("w", "encoder"),
    ),
    option("pivot_steps", 450, "projector steps of the pivot (first_inv_steps)", int),
    option("pivot_lr", 0.01, "peak learning rate of the pivot projector (the value PTI's code runs)"),
    option("pivot_w_avg_samples", 600, "mapped z for the pivot projector's w-bar and w_std", int),
    option("encoder", "e4e", "the registry method giving the pivot with --pivot encoder", str),
    option("encoder_checkpoint", None, "its weights (default: its bundled weights)", str),
    option("steps", 350, "generator tuning steps per image (max_pti_steps; trade time for quality)", int),
    option("lr", 3e-4, "Adam learning rate of generator tuning (pti_learning_rate)"),
    option("lambda_l2", 1.0, "weight of the pixel MSE of tuning (pt_l2_lambda)"),
    option("lambda_perceptual", 1.0, "weight of the perceptual term of tuning (pt_lpips_lambda)"),
    option(
        "stop_below",
        0.06,
        "stop tuning an image once its perceptual term is at or below this (LPIPS_value_threshold)",
    ),
    option("locality", False, "add the locality regulariser (use_locality_regularization)", bool),
    option("locality_alpha", 30.0, "distance from the pivot of the regulariser's codes (regulizer_alpha)"),
    option("locality_samples", 1, "codes per regulariser step (latent_ball_num_of_samples)", int),
    option("locality_interval", 1, "steps between regulariser terms (locality_regularization_interval)", int),
    option("locality_truncation", 0.5, "truncation of the regulariser's mapped codes"),
    option("lambda_locality_l2", 0.1, "weight of the regulariser's MSE (regulizer_l2_lambda)"),
    option(
        "lambda_locality_perceptual",
        0.1,
        "weight of the regulariser's perceptual term (regulizer_lpips_lambda)",
    ),
    option("seed", 0, "seed of the pivot projector and the regulariser's codes", int),
) + PERCEPTUAL_OPTIONS


@register_method(
    "pti",
    summary="Pivotal Tuning Inversion: W pivot by the projector, then the generator tuned per image",
    generator="stylegan2",
)
class PTI(OptimisationMethod):
    """PTI (see the module docstring). The inversion carries the tuned generators."""

    invert_options = PTI_OPTIONS

    def invert(self, images: ImageInput, **options: Any) -> Inversion:
        """Pivot every image (as one batch), then tune a generator copy per image; ``options``
        override the method's options for this call (e.g. ``steps=100``)."""
        cfg = self._resolve(options, self.config)
        x = self.prepare(images)
        g = self.generator
        perc = self.perceptual(cfg)
        extras: dict[str, Any] = {}
        if cfg["pivot"] == "w":
            w_mean, w_std = self.w_stats(cfg["pivot_w_avg_samples"])
            proj = project(
                g, x, perc, w_mean=w_mean, w_std=w_std, steps=cfg["pivot_steps"], lr=cfg["pivot_lr"],
                seed=cfg["seed"], desc="pti pivot",
            )  # fmt: skip
            pivots = g.to_wplus(proj.w)
            extras.update(pivot_loss_curve=proj.record.loss_curve, pivot_steps=proj.record.steps)
        else:
            enc = load_encoder(g, cfg["encoder"], cfg["encoder_checkpoint"], self.device)
            with torch.no_grad():
                pivots = g.to_wplus(enc.invert(x).latents.to(self.device))
        n, steps = x.shape[0], int(cfg["steps"])
        curve = torch.full((n, steps), float("nan"))
        taken = torch.zeros(n, dtype=torch.long)
        tuned: list[nn.Module] = []
        rng = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
        bar = progress(total=n * steps, desc="pti tuning", unit="step")
        try:
            for i in range(n):
                gi, losses, updates = self._tune(x[i : i + 1], pivots[i : i + 1], perc, cfg, rng, bar)
                tuned.append(gi)
                if losses:
                    curve[i, : len(losses)] = torch.tensor(losses)
                taken[i] = updates
        finally:
            bar.close()
        with torch.no_grad():
            y = torch.cat(
                [gi.synthesize(pivots[i : i + 1], noise_mode="const") for i, gi in enumerate(tuned)]
            )
        extras.update(
            loss_curve=curve,
            steps=taken,
            tuned_generators=tuple(tuned),
            generator_index=torch.arange(n),
        )
        return Inversion(pivots.detach(), y, extras)

    def _tune(
        self,
        x: torch.Tensor,
        pivot: torch.Tensor,
        perc: nn.Module,
        cfg: dict[str, Any],
        rng: torch.Generator,
        bar: Any,
    ) -> tuple[nn.Module, list[float], int]:
        """Tune a copy of the generator at one pivot (PTI's single-ID coach): (generator, loss per
        step, updates made)."""
        g0 = self.generator
        g = copy_generator(g0).train(False)
        opt = torch.optim.Adam(g.parameters(), lr=float(cfg["lr"]))
        losses: list[float] = []
        updates = 0
        lam_l2, lam_p = float(cfg["lambda_l2"]), float(cfg["lambda_perceptual"])
        stop = cfg["stop_below"]
        steps = int(cfg["steps"])
        with torch.enable_grad():
            for step in range(steps):
                y = g.synthesize(pivot, noise_mode="const")
                l2 = (y - x).square().mean()
                lp = perc(y, x).sum()
                loss = lam_l2 * l2 + lam_p * lp
                if cfg["locality"] and step % max(1, int(cfg["locality_interval"])) == 0:
                    loss = loss + self._locality(g, pivot, perc, cfg, rng)
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                if stop is not None and float(lp.detach()) <= stop:
                    bar.update(steps - step - 1)  # stopped before stepping (PTI's rule)
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                updates += 1
        g.requires_grad_(False).eval()
        return g, losses, updates

    def _locality(
        self, g: nn.Module, pivot: torch.Tensor, perc: nn.Module, cfg: dict[str, Any], rng: torch.Generator
    ) -> torch.Tensor:
        """PTI's locality regulariser: keep the tuned generator equal to the original one at codes
        ``alpha`` away from the pivot (the norm over the whole W+ tensor)."""
        k = max(1, int(cfg["locality_samples"]))
        z = torch.randn(k, g.style_dim, generator=rng).to(pivot.device)
        w_z = g.to_wplus(
            g.mapping(z, truncation=float(cfg["locality_truncation"]), truncation_latent=self.latent_mean())
        )
        d = w_z - pivot
        w_r = pivot + float(cfg["locality_alpha"]) * d / d.flatten(1).norm(dim=1).view(-1, 1, 1)
        new = g.synthesize(w_r, noise_mode="none")
        with torch.no_grad():
            old = self.generator.synthesize(w_r, noise_mode="none")
        l2 = (new - old).square().mean()
        lp = perc(new, old).mean()
        return float(cfg["lambda_locality_l2"]) * l2 + float(cfg["lambda_locality_perceptual"]) * lp

    @staticmethod
    def tuned_generator(inversion: Inversion, index: int = 0) -> nn.Module:
        """The generator tuned for image ``index`` of ``inversion``."""
        gens = inversion.extras.get("tuned_generators")
        if gens is None:
            raise InputError("this inversion carries no tuned generators (it was not made by pti)")
        return gens[int(inversion.extras["generator_index"][index])]

    def save_tuned_generator(self, inversion: Inversion, index: int, path: str | os.PathLike) -> Path:
        """Write image ``index``'s tuned generator as an ordinary generator file (``save_generator``
        format, with the original w-bar): ``egain invert --generator PATH`` and every loader read it."""
        from egain.generators import save_generator

        g = self.tuned_generator(inversion, index)
        save_generator(g, path, latent_avg=self.latent_mean(), extra={"tuned_by": "pti", "index": int(index)})
        return Path(path)

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """Render ``latents + strength * direction`` with each image's tuned generator."""
        if "tuned_generators" not in inversion.extras:
            return super().edit(inversion, direction, strength)
        w = inversion.latents.to(self.device) + strength * direction.to(self.device)
        out = []
        for i in range(w.shape[0]):
            g = self.tuned_generator(inversion, i).to(self.device)
            out.append(g.synthesize(w[i : i + 1], noise_mode="const"))
        return torch.cat(out)

"""``optim-w`` and ``optim-wplus``: Image2StyleGAN-style latent optimisation (Abdal et al. 2019).

Per image, Adam on one code started at w-bar (E2Style's baseline protocol), in W (one 512-d w
repeated to every layer) or W+ (one w per layer), minimising pixel MSE plus a perceptual distance.
No official code exists and the paper's optimiser settings could not be verified from the stored
sources; the defaults are those of the unofficial re-implementations (Adam lr 0.01, betas
(0.9, 0.999), eps 1e-8, MSE and perceptual weights 1) and the 1,000 iterations E2Style ran it for
(see /work/shared/reference/wave2_facts.md section 7.2). The perceptual term is LPIPS when its
files are given, else the face-feature distance (the paper used VGG16 conv1_1, conv1_2, conv3_2
and conv4_2 features, which need ImageNet weights egain cannot download).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egain.methods.base import ImageInput, Inversion
from egain.methods.optimise import (
    PERCEPTUAL_OPTIONS,
    OptimisationMethod,
    optimise,
    option,
    perceptual_input,
)
from egain.methods.registry import register_method

#: the options every latent optimiser of this family has (hybrid reuses them)
LATENT_OPTIONS = (
    option("steps", 1000, "optimisation steps per image (trade time for quality)", int),
    option("lr", 0.01, "Adam learning rate (constant)"),
    option("lambda_l2", 1.0, "weight of the pixel MSE"),
    option(
        "lambda_perceptual", 1.0, "weight of the perceptual distance (LPIPS or the face-feature distance)"
    ),
    option("stop_below", None, "stop an image once its loss is at or below this (default: never)"),
    option(
        "perceptual_size", None, "compare perceptually at this size (area downsampling; default: full)", int
    ),
) + PERCEPTUAL_OPTIONS


class LatentOptimisation(OptimisationMethod):
    """Adam on a W or W+ code per image, pixel MSE + perceptual distance, at constant noise."""

    #: "w" (one vector, repeated to every layer) or "w+" (one vector per layer)
    space: ClassVar[str] = "w+"
    invert_options = LATENT_OPTIONS

    def initial_codes(self, x: torch.Tensor, cfg: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The starting code of each image (W (N, D) or W+ (N, n_latent, D)) and extras to report."""
        w = self.latent_mean().expand(x.shape[0], -1)
        return (w.unsqueeze(1).repeat(1, self.generator.n_latent, 1) if self.space == "w+" else w.clone()), {}

    def invert(self, images: ImageInput, **options: Any) -> Inversion:
        """Optimise a code for every image of the batch at once (each independently); ``options``
        override the method's options for this call (e.g. ``steps=200``)."""
        cfg = self._resolve(options, self.config)
        x = self.prepare(images)
        g = self.generator
        w0, extras = self.initial_codes(x, cfg)
        variables = {"w": w0.detach().clone()}
        lam_l2, lam_p = float(cfg["lambda_l2"]), float(cfg["lambda_perceptual"])
        perc = self.perceptual(cfg) if lam_p > 0 else None
        size = cfg["perceptual_size"]
        x_p = perceptual_input(x, size)

        def loss_fn(v: dict[str, torch.Tensor], rows: torch.Tensor | None, step: int):
            xt = x if rows is None else x[rows]
            y = g.synthesize(v["w"], noise_mode="const")  # W (N, D) is used by every layer
            terms = {"l2": (y - xt).square().mean(dim=(1, 2, 3))}
            total = lam_l2 * terms["l2"]
            if perc is not None:
                terms["perceptual"] = perc(perceptual_input(y, size), x_p if rows is None else x_p[rows])
                total = total + lam_p * terms["perceptual"]
            return total, terms

        with torch.enable_grad():
            record = optimise(
                variables,
                loss_fn,
                steps=int(cfg["steps"]),
                lr=float(cfg["lr"]),
                stop_below=cfg["stop_below"],
                desc=self.name,
            )
        with torch.no_grad():
            w = g.to_wplus(variables["w"])
            y = g.synthesize(w, noise_mode="const")
        extras.update(loss_curve=record.loss_curve, steps=record.steps)
        return Inversion(w.detach(), y, extras)


@register_method(
    "optim-w",
    summary="Image2StyleGAN-style optimisation in W: Adam on one w per image, MSE + perceptual",
    generator="any",
)
class OptimW(LatentOptimisation):
    space = "w"


@register_method(
    "optim-wplus",
    summary="Image2StyleGAN optimisation in W+: Adam on one w per layer per image, MSE + perceptual",
    generator="any",
)
class OptimWPlus(LatentOptimisation):
    space = "w+"

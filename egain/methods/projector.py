"""``projector``: the StyleGAN2 projector (Karras et al. 2020, NVlabs/stylegan2 ``projector.py`` and
its stylegan2-ada-pytorch port), batched.

Per image: one w (W space; ``space="w+"`` gives rosinality's ``--w_plus``) started at w-bar, plus
every noise map of the generator (initialised N(0, 1)), optimised with Adam (0.9, 0.999, 1e-8):

* progress t = step / steps; learning rate ``lr * ramp(t)``, ramp = (1/2 - 1/2 cos(pi min(1,
  (1 - t)/0.25))) * min(1, t/0.05) (so 0 at step 0);
* w noise: the optimised w plus N(0, sigma^2) with sigma = w_std * 0.05 * max(0, 1 - t/0.75)^2,
  w_std = sqrt(sum ||w - w-bar||^2 / N) over 10,000 mapped z;
* loss = LPIPS-VGG at 256 px (area downsampling of larger images) + 1e5 x the multiscale noise
  autocorrelation penalty; after every step each noise map is renormalised to mean 0, RMS 1;
* the result is the final w (no w noise) with the optimised noise maps, which the inversion
  carries (``extras["noise"]``) so that reconstruction and edits use them.

Without LPIPS files the distance is the face-feature distance (see docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from egain.methods.base import ImageInput, Inversion
from egain.methods.optimise import (
    PERCEPTUAL_OPTIONS,
    OptimisationMethod,
    OptimisationRecord,
    noise_regularisation,
    normalise_noise_,
    optimise,
    option,
    perceptual_input,
    projector_lr_ramp,
    projector_noise_strength,
)
from egain.methods.registry import register_method

PROJECTOR_OPTIONS = (
    option("steps", 1000, "optimisation steps per image (num_steps; trade time for quality)", int),
    option("lr", 0.1, "peak learning rate (initial_learning_rate) of the ramped schedule"),
    option("lr_rampdown", 0.25, "fraction of the run over which the learning rate ramps down (cosine)"),
    option("lr_rampup", 0.05, "fraction of the run over which the learning rate ramps up (linear)"),
    option("noise_factor", 0.05, "w noise at step 0, in units of w_std (initial_noise_factor)"),
    option("noise_ramp", 0.75, "fraction of the run over which the w noise decays to 0 (quadratically)"),
    option("lambda_noise", 1e5, "weight of the noise-map autocorrelation regulariser"),
    option(
        "lambda_perceptual", 1.0, "weight of the perceptual distance (LPIPS-VGG or the face-feature distance)"
    ),
    option("lambda_l2", 0.0, "weight of a pixel MSE term (rosinality --mse; 0 in the published projector)"),
    option("w_avg_samples", 10000, "mapped z used for w-bar and w_std", int),
    option(
        "space",
        "w",
        "optimise one w ('w') or one per layer ('w+', rosinality --w_plus)",
        str,
        choices=("w", "w+"),
    ),
    option("fixed_noise", False, "keep the generator's stored noise maps instead of optimising them", bool),
    option(
        "perceptual_size", 256, "compare perceptually at this size (area downsampling of larger images)", int
    ),
    option("stop_below", None, "stop an image once its loss is at or below this (default: never)"),
    option(
        "seed", 0, "seed of the w noise and the initial noise maps (one stream, shared by every image)", int
    ),
) + PERCEPTUAL_OPTIONS


@dataclass
class Projection:
    """The projector's result: final codes (no w noise), optimised noise maps (None if fixed)."""

    w: torch.Tensor  # (N, D) or (N, n_latent, D)
    noise: list[torch.Tensor] | None
    record: OptimisationRecord


def project(
    generator: nn.Module,
    x: torch.Tensor,
    perceptual: nn.Module | None,
    *,
    w_mean: torch.Tensor,
    w_std: float,
    steps: int,
    lr: float,
    lr_rampdown: float = 0.25,
    lr_rampup: float = 0.05,
    noise_factor: float = 0.05,
    noise_ramp: float = 0.75,
    lambda_noise: float = 1e5,
    lambda_perceptual: float = 1.0,
    lambda_l2: float = 0.0,
    space: str = "w",
    fixed_noise: bool = False,
    perceptual_size: int | None = 256,
    stop_below: float | None = None,
    seed: int = 0,
    desc: str = "projector",
) -> Projection:
    """Run the projector on a batch ``x`` in [-1, 1] (each image independently); PTI's pivot too."""
    g = generator
    n = x.shape[0]
    dev = x.device
    rng = torch.Generator().manual_seed(int(seed))
    w0 = w_mean.reshape(1, -1).to(dev).expand(n, -1)
    if space == "w+":
        w0 = w0.unsqueeze(1).expand(-1, g.n_latent, -1)
    variables = {"w": w0.clone()}
    noise_keys: list[str] = []
    if not fixed_noise:
        for i, conv in enumerate(g.convs):
            r = conv.resolution
            variables[f"noise{i}"] = (
                torch.randn(1, 1, r, r, generator=rng).to(dev).expand(n, -1, -1, -1).clone()
            )
            noise_keys.append(f"noise{i}")
    x_p = perceptual_input(x, perceptual_size)
    w_shape = (1, *w0.shape[1:])

    def loss_fn(v: dict[str, torch.Tensor], rows: torch.Tensor | None, step: int):
        t = step / steps
        # One draw for one image, shared by the batch: image i sees what it would see alone.
        w_noise = torch.randn(w_shape, generator=rng).to(dev) * projector_noise_strength(
            t, w_std, noise_factor, noise_ramp
        )
        noises = [v[k] for k in noise_keys] or None
        y = g.synthesize(v["w"] + w_noise, noise_mode="const", noise=noises)
        xt = x if rows is None else x[rows]
        terms: dict[str, torch.Tensor] = {}
        total = y.new_zeros(y.shape[0])
        if perceptual is not None and lambda_perceptual > 0:
            terms["perceptual"] = perceptual(
                perceptual_input(y, perceptual_size), x_p if rows is None else x_p[rows]
            )
            total = total + lambda_perceptual * terms["perceptual"]
        if lambda_l2 > 0:
            terms["l2"] = (y - xt).square().mean(dim=(1, 2, 3))
            total = total + lambda_l2 * terms["l2"]
        if noises is not None and lambda_noise > 0:
            terms["noise_reg"] = noise_regularisation(noises)
            total = total + lambda_noise * terms["noise_reg"]
        return total, terms

    def after_step(v: dict[str, torch.Tensor], rows: torch.Tensor | None) -> None:
        if noise_keys:
            normalise_noise_([v[k] for k in noise_keys], rows)

    with torch.enable_grad():
        record = optimise(
            variables,
            loss_fn,
            steps=int(steps),
            lr=lambda s: lr * projector_lr_ramp(s / steps, lr_rampdown, lr_rampup),
            stop_below=stop_below,
            after_step=after_step,
            desc=desc,
        )
    noise = [variables[k].detach() for k in noise_keys] if noise_keys else None
    return Projection(variables["w"].detach(), noise, record)


@register_method(
    "projector",
    summary="StyleGAN2 projector: W + noise maps, lr and w-noise ramps, noise regularisation, LPIPS-VGG",
    generator="stylegan2",
)
class Projector(OptimisationMethod):
    """The StyleGAN2 projector (see the module docstring); the inversion carries its noise maps."""

    invert_options = PROJECTOR_OPTIONS

    def invert(self, images: ImageInput, **options: Any) -> Inversion:
        """Project every image of the batch at once (each independently); ``options`` override the
        method's options for this call (e.g. ``steps=300``)."""
        cfg = self._resolve(options, self.config)
        x = self.prepare(images)
        w_mean, w_std = self.w_stats(cfg["w_avg_samples"])
        perc = self.perceptual(cfg) if cfg["lambda_perceptual"] > 0 else None
        keys = ("steps", "lr", "lr_rampdown", "lr_rampup", "noise_factor", "noise_ramp", "lambda_noise")
        keys += (
            "lambda_perceptual",
            "lambda_l2",
            "space",
            "fixed_noise",
            "perceptual_size",
            "stop_below",
            "seed",
        )
        proj = project(
            self.generator, x, perc, w_mean=w_mean, w_std=w_std, desc=self.name, **{k: cfg[k] for k in keys}
        )
        with torch.no_grad():
            w = self.generator.to_wplus(proj.w)
            y = self.generator.synthesize(w, noise_mode="const", noise=proj.noise)
        extras: dict[str, Any] = {
            "loss_curve": proj.record.loss_curve,
            "steps": proj.record.steps,
            "w_std": torch.full((x.shape[0],), w_std),
        }
        if proj.noise is not None:
            extras["noise"] = proj.noise
        return Inversion(w, y, extras)

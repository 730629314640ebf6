"""Shared machinery of the optimisation-based methods (``optim-w``, ``optim-wplus``, ``projector``,
``hybrid``, ``pti``): a batched, per-image optimiser and the StyleGAN2 projector's schedules.

Batched optimisation treats every image of a batch as its own problem:

* each image has its own rows in every optimised tensor (latent, noise maps);
* the loss is the **sum** of per-image losses, so image i's gradient is d loss_i / d x_i whatever
  the batch size (a batch mean would scale it by 1/N);
* :class:`BatchedAdam` is Adam element by element, so its moments are per image, and it updates
  only the rows of images still running: an image whose stop criterion is met is frozen (its rows
  leave the forward pass, so stopped images cost nothing);
* the learning-rate and noise schedules are functions of the step, which every image starts at 0;
* random draws (the projector's w noise, its initial noise maps) come from one stream seeded by
  ``seed`` and drawn for a single image, then broadcast, so image i sees the draws it would see if
  optimised alone.

An image therefore ends where it would alone, to float rounding: the generator's convolutions may
block a batch of 8 differently from a batch of 1 (different summation order), which changes the
last bits of the gradient; Adam's normalisation keeps such differences at rounding size over the
short runs the tests use.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import EgainError, InputError
from egain.methods.base import ImageInput, Inversion, InversionMethod, TrainOption, prepare_images
from egain.runtime.logging import progress

# ------------------------------------------------------------------------------------------------
# schedules of the StyleGAN2 projector (NVlabs/stylegan2 projector.py; stylegan2-ada-pytorch port)


def projector_lr_ramp(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Learning-rate factor at progress ``t`` = step / num_steps: a cosine ramp-down over the last
    ``rampdown`` of the run times a linear ramp-up over the first ``rampup`` (0 at step 0)."""
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(down * math.pi)
    return ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def projector_noise_strength(
    t: float, w_std: float, factor: float = 0.05, ramp_length: float = 0.75
) -> float:
    """Std of the noise added to w at progress ``t``: ``w_std * factor * max(0, 1 - t/ramp_length)^2``."""
    return w_std * factor * max(0.0, 1.0 - t / ramp_length) ** 2


@torch.no_grad()
def w_statistics(generator: nn.Module, samples: int, seed: int = 123) -> tuple[torch.Tensor, float]:
    """(w-bar (style_dim,), w_std) from ``samples`` mapped z, as the projector measures them:
    ``w_std = sqrt(sum ||w - w-bar||^2 / N)``, one scalar. z are drawn on the CPU with torch's
    generator (the published code uses numpy's RandomState(123); the draws differ, the statistic
    does not in any way that matters at 10000 samples)."""
    gen = torch.Generator().manual_seed(seed)
    dev = generator.const.device
    z = torch.randn(int(samples), generator.style_dim, generator=gen).to(dev)
    w = torch.cat([generator.mapping(chunk).double() for chunk in z.split(4096)])
    mean = w.mean(0)
    std = float(((w - mean).square().sum() / w.shape[0]).sqrt())
    return mean.float(), std


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """The projector's multiscale noise autocorrelation penalty, per image (N,).

    At every scale down to 8x8 (average-pooling by 2 between scales) the squared mean of each map
    times itself shifted by one pixel, in x and in y, summed over maps and scales. Means are taken
    per image (over its one map), so an image's penalty is what it would be alone.
    """
    total = noises[0].new_zeros(noises[0].shape[0])
    for noise in noises:
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


@torch.no_grad()
def normalise_noise_(noises: list[torch.Tensor], rows: torch.Tensor | None = None) -> None:
    """Renormalise each image's map to zero mean and unit RMS (after every projector step)."""
    for noise in noises:
        x = noise if rows is None else noise[rows]
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        x = x * x.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        if rows is None:
            noise.copy_(x)
        else:
            noise[rows] = x


# ------------------------------------------------------------------------------------------------
# the batched optimiser


class BatchedAdam:
    """Adam over tensors whose first dimension is the image, updating only the running images.

    The update is torch's ``Adam`` (betas, eps, bias corrections; no weight decay) element by
    element. Rows of stopped images are never touched again. Every running image has taken the same
    number of steps (they start together), so one step counter serves all of them.
    """

    def __init__(
        self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.params = params
        self.betas = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float, rows: torch.Tensor | None = None) -> None:
        """One update of the rows ``rows`` (all when None) with their ``.grad``; then grads are cleared."""
        self.t += 1
        b1, b2 = self.betas
        bc1 = 1 - b1**self.t
        bc2_sqrt = math.sqrt(1 - b2**self.t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad
            if g is None:
                continue
            if rows is None:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(self.eps), value=-lr / bc1)
            else:
                g = g[rows]
                mr = m[rows].lerp_(g, 1 - b1)
                vr = v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
                m[rows] = mr
                v[rows] = vr
                p[rows] = p[rows].addcdiv_(mr, (vr.sqrt() / bc2_sqrt).add_(self.eps), value=-lr / bc1)
            p.grad = None


@dataclass
class OptimisationRecord:
    """What one batched optimisation did: the loss of every image at every step it ran (NaN after
    it stopped), and how many updates each image took."""

    loss_curve: torch.Tensor  # (N, steps) float, NaN where the image had stopped
    steps: torch.Tensor  # (N,) long: updates made (== steps unless it stopped early)
    #: with ``keep_best``: the loss of the state each image returns, and the step that state was
    #: evaluated at (0 = the start, ``steps`` = the state after the last update); else None
    best_loss: torch.Tensor | None = None
    best_step: torch.Tensor | None = None


#: loss_fn(variables restricted to the running rows, rows (None = all), step) -> (total (n,), terms {name: (n,)})
LossFn = Callable[
    [dict[str, torch.Tensor], "torch.Tensor | None", int], tuple[torch.Tensor, dict[str, torch.Tensor]]
]


def optimise(
    variables: dict[str, torch.Tensor],
    loss_fn: LossFn,
    *,
    steps: int,
    lr: Callable[[int], float] | float,
    stop_below: float | None = None,
    stop_term: str | None = None,
    after_step: Callable[[dict[str, torch.Tensor], torch.Tensor | None], None] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    keep_best: bool = False,
    desc: str = "optimise",
) -> OptimisationRecord:
    """Optimise ``variables`` (each (N, ...), updated in place) image by image, all at once.

    Every step: the loss of each running image; an image whose ``stop_term`` (default: the total)
    is at or below ``stop_below`` stops *before* stepping (PTI's rule) and is frozen; the others
    take one :class:`BatchedAdam` step with learning rate ``lr(step)``; then ``after_step`` (e.g.
    noise renormalisation) on the running rows. The summed loss makes each image's gradient its own.

    ``keep_best``: every image returns the state of lowest loss among those evaluated -- the start,
    each state before an update, and the state after the last update (one extra forward, no
    gradient, at step index ``steps``) -- so it never ends worse than it started by its own loss.
    Meant for deterministic losses (no per-step noise); a long run with the projector's cosine
    ramp-down ends at or next to its best state anyway, a short one (a few steps at full learning
    rate) may overshoot.
    """
    if steps < 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    leaves = list(variables.values())
    n = leaves[0].shape[0]
    dev = leaves[0].device
    for v in leaves:
        v.requires_grad_(True)
    opt = BatchedAdam(leaves, betas, eps)
    curve = torch.full((n, steps), float("nan"))
    taken = torch.zeros(n, dtype=torch.long)
    running = torch.ones(n, dtype=torch.bool)
    lr_at = lr if callable(lr) else (lambda _s, _v=float(lr): _v)
    best_loss = torch.full((n,), float("inf"))
    best_step = torch.zeros(n, dtype=torch.long)
    best = {k: v.detach().clone() for k, v in variables.items()} if keep_best else {}
    bar = progress(total=steps, desc=desc, unit="step")
    try:
        for step in range(steps):
            rows = None if bool(running.all()) else running.nonzero().squeeze(1).to(dev)
            sub = variables if rows is None else {k: v[rows] for k, v in variables.items()}
            total, terms = loss_fn(sub, rows, step)
            with torch.no_grad():
                values = total.detach().float().cpu()
                crit = terms[stop_term].detach().float().cpu() if stop_term else values
            idx = running.nonzero().squeeze(1)
            curve[idx, step] = values
            if keep_best:
                better = values < best_loss[idx]
                if bool(better.any()):
                    _store_rows(best, variables, idx[better].to(dev))
                    best_loss[idx[better]] = values[better]
                    best_step[idx[better]] = step
            if stop_below is not None:
                done = crit <= stop_below
                if bool(done.any()):
                    running[idx[done]] = False
                    if not bool(running.any()):
                        break
                    keep = (~done).to(total.device)
                    total = total[keep]
                    rows = running.nonzero().squeeze(1).to(dev)
            total.sum().backward()
            opt.step(lr_at(step), rows)
            taken[running] += 1
            if after_step is not None:
                after_step(variables, rows)
            bar.update(1)
            bar.set_postfix(loss=f"{float(values.mean()):.4f}", running=int(running.sum()), refresh=False)
    finally:
        bar.close()
    for v in leaves:
        v.requires_grad_(False)
    if not keep_best:
        return OptimisationRecord(curve, taken)
    with torch.no_grad():  # the state after the last update was never evaluated
        final = loss_fn(variables, None, steps)[0].detach().float().cpu()
        moved = taken > 0
        last_better = moved & (final < best_loss)
        best_loss[last_better] = final[last_better]
        best_step[last_better] = steps
        back = (~last_better & moved).nonzero().squeeze(1)
        if len(back):
            _store_rows(variables, best, back.to(dev))
    return OptimisationRecord(curve, taken, best_loss, best_step)


def _store_rows(dst: dict[str, torch.Tensor], src: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
    """``dst[k][rows] = src[k][rows]`` for every variable (no autograd history)."""
    with torch.no_grad():
        for k, v in dst.items():
            v[rows] = src[k][rows].detach()


# ------------------------------------------------------------------------------------------------
# the base class of the optimisation methods


def _coerce(opt: TrainOption, value: Any) -> Any:
    if value is None or opt.type is str:
        return value
    if opt.type is bool:
        return bool(value)
    return opt.type(value)


class OptimisationMethod(InversionMethod):
    """An inversion method that optimises per image and trains nothing.

    Its configuration is its ``invert_options`` (each a keyword of the constructor, of ``invert``,
    and a flag of ``egain invert`` once wired); ``invert(images, **overrides)`` changes options for
    one call (e.g. ``steps``). The perceptual network is built on first use and kept outside the
    module tree, so ``save()`` writes only the configuration.
    """

    #: with no generator given, the method runs on the bundled synthfaces StyleGAN2 (it trains nothing)
    bundled_generator = "gan-stylegan2-64"
    #: options of ``egain invert`` (the CLI turns each into ``--NAME``); defaults are the published ones
    invert_options: ClassVar[tuple[TrainOption, ...]] = ()
    runtime_options = ()  # nothing is trained, so a saved configuration is the whole method

    def __init__(self, generator: nn.Module, *, latent_avg: torch.Tensor | None = None, **config: Any):
        super().__init__()
        self.generator = generator.requires_grad_(False).eval()
        self.input_size = int(generator.size)
        self.config = self._resolve(config, defaults=None)
        self._latent_avg = latent_avg.detach().reshape(-1).clone() if latent_avg is not None else None
        self._aux: dict[str, Any] = {}  # perceptual networks, w statistics, encoders: not state

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return {o.name: o.default for o in cls.invert_options}

    def _resolve(self, overrides: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> dict[str, Any]:
        decl = {o.name: o for o in self.invert_options}
        unknown = sorted(set(overrides) - set(decl))
        if unknown:
            raise EgainError(
                f"{self.name} has no option {', '.join(map(repr, unknown))}; options: {', '.join(decl) or 'none'}"
            )
        cfg = dict(self.option_defaults() if defaults is None else defaults)
        for k, v in overrides.items():
            opt = decl[k]
            v = _coerce(opt, v)
            if opt.choices and v is not None and v not in opt.choices:
                raise EgainError(
                    f"{self.name}: {k} must be one of {', '.join(map(str, opt.choices))}, got {v!r}"
                )
            cfg[k] = v
        return cfg

    # -- shared pieces -------------------------------------------------------------------------

    def latent_mean(self) -> torch.Tensor:
        """w-bar (style_dim,) on the method's device: the given one, else the generator's."""
        avg = self._latent_avg if self._latent_avg is not None else self.generator.average_latent()
        return avg.reshape(-1).to(self.device)

    def perceptual(self, cfg: Mapping[str, Any]) -> nn.Module:
        """The per-image perceptual distance the options name (cached per option set)."""
        from egain.losses.reconstruction import build_perceptual_distance

        key = (
            "perceptual",
            cfg.get("lpips"),
            cfg.get("lpips_backbone"),
            cfg.get("lpips_linear"),
            cfg.get("perceptual_net"),
            str(self.device),
        )
        if key not in self._aux:
            self._aux[key] = build_perceptual_distance(cfg, self.device)
        return self._aux[key]

    def w_stats(self, samples: int) -> tuple[torch.Tensor, float]:
        key = ("w_stats", int(samples), str(self.device))
        if key not in self._aux:
            self._aux[key] = w_statistics(self.generator, samples)
        return self._aux[key]

    def prepare(self, images: ImageInput) -> torch.Tensor:
        return prepare_images(images, self.input_size, self.device)

    @torch.no_grad()
    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """Render the edited code ``latents + strength * direction`` with the inversion's own noise
        maps when it optimised them (the projector), else the generator's fixed ones."""
        w = inversion.latents.to(self.device) + strength * direction.to(self.device)
        noise = inversion.extras.get("noise")
        noise = [nz.to(self.device) for nz in noise] if noise is not None else None
        return self.generator.synthesize(w, noise_mode="const", noise=noise)


def perceptual_input(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Area-downsample to ``size`` when larger (the projector compares at 256 px); else unchanged."""
    if size and x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return x


# ------------------------------------------------------------------------------------------------
# encoders as starting points (hybrid, PTI's "w+" pivot)


def load_encoder(
    generator: nn.Module, encoder: Any, checkpoint: str | None, device: torch.device
) -> InversionMethod:
    """The method whose codes start an optimisation: an ``InversionMethod`` object, or a registry
    name with ``checkpoint`` (default: that method's bundled weights, checked against ``generator``)."""
    if isinstance(encoder, InversionMethod):
        return encoder.to(device)
    from egain.methods.registry import create, method_class

    cls = method_class(str(encoder))
    ckpt = checkpoint or (f"zoo:{cls.bundled_weights}" if cls.bundled_weights else None)
    if ckpt is None:
        raise EgainError(
            f"encoder '{encoder}' has no bundled weights; pass encoder_checkpoint=PATH (--encoder-checkpoint)"
        )
    return create(str(encoder), generator=generator, checkpoint=ckpt, device=device)


def copy_generator(generator: nn.Module) -> nn.Module:
    """A trainable deep copy (PTI tunes copies; the method's own generator never changes)."""
    g = copy.deepcopy(generator)
    g.requires_grad_(True)
    return g


# ------------------------------------------------------------------------------------------------
# options several methods share

#: the perceptual network: real LPIPS from given files, else the face-feature distance
PERCEPTUAL_OPTIONS: tuple[TrainOption, ...] = (
    TrainOption(
        "lpips",
        None,
        "LPIPS network ('vgg' or 'alex'; default 'vgg' once a file is given) for the perceptual term; "
        "without LPIPS files the face-feature distance of --perceptual-net is used",
        str,
        choices=("vgg", "alex"),
        target="config",
    ),
    TrainOption("lpips_backbone", None, "torchvision backbone weights for LPIPS", str, target="config"),
    TrainOption("lpips_linear", None, "LPIPS v0.1 linear weights (vgg.pth / alex.pth)", str, target="config"),
    TrainOption(
        "perceptual_net",
        "synthfaces-arcface",
        "face embedder whose feature distance replaces LPIPS when no LPIPS files are given",
        str,
        target="config",
    ),
)


def option(name: str, default: Any, help: str, type: type = float, **kw: Any) -> TrainOption:
    """An ``invert`` option (a constructor keyword, so ``target='config'``)."""
    return TrainOption(name, default, help, type, target="config", **kw)

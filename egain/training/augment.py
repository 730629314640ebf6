"""Differentiable augmentation for GAN training on small datasets.

A discriminator trained on a few thousand images memorises them and its feedback to G collapses.
Both remedies here augment *every* image the discriminator sees -- reals and fakes, in the D and the
G step -- with differentiable operations, so the generator's gradient flows through the augmentation
and G is not pushed to produce augmented-looking images:

* :class:`DiffAugment` -- Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
  Training" (2020): colour (brightness, saturation, contrast), translation by up to 1/8 of the image
  with zero fill, and cutout of a half-size square, applied always.
* :class:`AdaptiveAugment` -- the adaptive discriminator augmentation of Karras et al., "Training
  Generative Adversarial Networks with Limited Data" (2020), reduced to its geometric and colour
  groups ("bgc"): each transform is applied per sample with probability ``p``, and ``p`` is driven by
  the overfitting heuristic ``r_t = E[sign(D(x_real))]`` towards a target (0.6). Deviation from the
  paper: geometric transforms are composed into one affine matrix and applied with a single bilinear
  ``grid_sample`` (reflection padding), without the paper's up-sampled anti-aliasing filters.

Random numbers come from torch's global RNG of the images' device, so a seeded run (and a resumed
one, whose RNG state is restored from the checkpoint) augments identically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from egain.errors import EgainError
from egain.runtime.distributed import all_reduce_mean

AUGMENT_KINDS = ("none", "diffaug", "ada")


class NoAugment:
    """Identity; keeps the trainer's code path the same when augmentation is off."""

    p: float = 0.0
    active: bool = False

    def __call__(self, images: Tensor) -> Tensor:
        return images

    def observe(self, real_logits: Tensor) -> None:
        pass

    def step(self, batch_size: int) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# DiffAugment


def rand_brightness(x: Tensor) -> Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def rand_contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by a random integer offset up to ``ratio`` of its size; vacated pixels are 0."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    # Index into a 1-pixel zero-padded copy; indices past the border land on the zero padding.
    gy = (torch.arange(h, device=x.device).view(1, h, 1) + ty + 1).clamp(0, h + 1)
    gx = (torch.arange(w, device=x.device).view(1, 1, w) + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[bi, gy, gx].permute(0, 3, 1, 2)


def rand_cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a random square of side ``ratio * size`` (clipped at the border) in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= oy - ch // 2) & (ys < oy - ch // 2 + ch) & (xs >= ox - cw // 2) & (xs < ox - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


DIFFAUG_OPS = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


class DiffAugment(NoAugment):
    """DiffAugment with a comma-separated policy, e.g. ``"color,translation,cutout"`` (the paper's)."""

    active = True

    def __init__(self, policy: str = "color,translation,cutout"):
        names = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = [n for n in names if n not in DIFFAUG_OPS]
        if unknown:
            raise EgainError(
                f"unknown DiffAugment op(s) {', '.join(unknown)}; expected some of {', '.join(DIFFAUG_OPS)}"
            )
        self.policy = names
        self.p = 1.0

    def __call__(self, images: Tensor) -> Tensor:
        for name in self.policy:
            for op in DIFFAUG_OPS[name]:
                images = op(images)
        return images.contiguous()


# --------------------------------------------------------------------------------------------------
# Adaptive augmentation (ADA, geometric + colour)


def _eye(n: int, b: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(b, n, n).clone()


def _apply_with_p(mat: Tensor, p: float) -> Tensor:
    """Replace each sample's matrix by the identity with probability ``1 - p``."""
    keep = torch.rand(mat.shape[0], 1, 1, dtype=mat.dtype, device=mat.device) < p
    return torch.where(keep, mat, _eye(mat.shape[1], mat.shape[0], mat))


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(3, sx.shape[0], sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(3, tx.shape[0], tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate2d(theta: Tensor) -> Tensor:
    m = _eye(3, theta.shape[0], theta)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def geometric_matrix(b: int, size: int, p: float, like: Tensor) -> Tensor:
    """Random (b, 3, 3) sampling matrices in ``affine_grid``'s normalised coordinates.

    The distributions are those of ADA's defaults (x-flip, 90-degree rotations, integer translation
    of up to 1/8, isotropic scale with log2-std 0.2, arbitrary rotation, anisotropic scale with
    log2-std 0.2, fractional translation with std 1/8). They are symmetric, so composing the sampled
    matrices directly as the *inverse* (output -> input) map has the same distribution as inverting
    the forward transform.
    """
    dt = like
    r = lambda: torch.rand(b, dtype=dt.dtype, device=dt.device)  # noqa: E731
    n = lambda: torch.randn(b, dtype=dt.dtype, device=dt.device)  # noqa: E731
    m = _eye(3, b, dt)
    flip = 1 - 2 * torch.floor(r() * 2)
    m = m @ _apply_with_p(_scale2d(flip, torch.ones_like(flip)), p)
    k = torch.floor(r() * 4)
    m = m @ _apply_with_p(_rotate2d(k * (math.pi / 2)), p)
    # integer translation: whole pixels; one pixel is 2/size in normalised coordinates
    tx = torch.round((r() * 2 - 1) * 0.125 * size) * (2 / size)
    ty = torch.round((r() * 2 - 1) * 0.125 * size) * (2 / size)
    m = m @ _apply_with_p(_translate2d(tx, ty), p)
    s = torch.exp2(n() * 0.2)
    m = m @ _apply_with_p(_scale2d(s, s), p)
    p_rot = 1 - math.sqrt(max(0.0, 1 - p))  # ADA applies rotation twice with this probability
    m = m @ _apply_with_p(_rotate2d((r() * 2 - 1) * math.pi), p_rot)
    s = torch.exp2(n() * 0.2)
    m = m @ _apply_with_p(_scale2d(s, 1 / s), p)
    m = m @ _apply_with_p(_rotate2d((r() * 2 - 1) * math.pi), p_rot)
    m = m @ _apply_with_p(_translate2d(n() * 0.125 * 2, n() * 0.125 * 2), p)
    return m


def color_matrix(b: int, p: float, like: Tensor) -> Tensor:
    """Random (b, 4, 4) affine colour transforms on homogeneous RGB in [-1, 1] (ADA's colour group)."""
    dt = like
    r = lambda: torch.rand(b, dtype=dt.dtype, device=dt.device)  # noqa: E731
    n = lambda: torch.randn(b, dtype=dt.dtype, device=dt.device)  # noqa: E731
    eye = _eye(4, b, dt)
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=dt.dtype, device=dt.device) / math.sqrt(3)
    vv = torch.outer(v, v).expand(b, 4, 4)
    c = eye.clone()
    # brightness (additive, std 0.2)
    t = eye.clone()
    t[:, :3, 3] = n().unsqueeze(1) * 0.2
    c = _apply_with_p(t, p) @ c
    # contrast (log2-std 0.5)
    s = torch.exp2(n() * 0.5)
    t = eye.clone()
    t[:, 0, 0] = t[:, 1, 1] = t[:, 2, 2] = s
    c = _apply_with_p(t, p) @ c
    # luma flip: reflect along the grey axis
    i = torch.floor(r() * 2).view(b, 1, 1)
    c = _apply_with_p(eye - 2 * vv * i, p) @ c
    # hue rotation around the grey axis (Rodrigues)
    theta = ((r() * 2 - 1) * math.pi).view(b, 1, 1)
    kx = torch.zeros(b, 4, 4, dtype=dt.dtype, device=dt.device)
    a = v[:3]
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 0] = -a[2], a[1], a[2]
    kx[:, 1, 2], kx[:, 2, 0], kx[:, 2, 1] = -a[0], -a[1], a[0]
    rot = eye.clone()
    rot[:, :3, :3] = (
        torch.cos(theta) * eye[:, :3, :3]
        + torch.sin(theta) * kx[:, :3, :3]
        + (1 - torch.cos(theta)) * vv[:, :3, :3]
    )
    c = _apply_with_p(rot, p) @ c
    # saturation (log2-std 1): scale the component orthogonal to grey
    s = torch.exp2(n()).view(b, 1, 1)
    c = _apply_with_p(vv + (eye - vv) * s, p) @ c
    return c


class AdaptiveAugment(NoAugment):
    """ADA: augmentation probability ``p`` tuned so that ``E[sign(D(real))]`` stays near ``target``.

    Every ``interval`` steps ``p`` moves by ``sign(r_t - target) * batch * interval / (kimg * 1000)``,
    i.e. it can go from 0 to 1 in ``kimg`` thousand images. With ``target=None`` ``p`` stays fixed.
    ``r_t`` is averaged over ranks so every process keeps the same ``p``.
    """

    active = True

    def __init__(self, p: float = 0.0, target: float | None = 0.6, kimg: float = 500.0, interval: int = 4):
        self.p = float(p)
        self.target = target
        self.kimg = float(kimg)
        self.interval = int(interval)
        self.rt = 0.0
        self._sign_sum: Tensor | None = None
        self._count = 0
        self._steps = 0

    def __call__(self, images: Tensor) -> Tensor:
        if self.p <= 0:
            return images
        b, _, h, w = images.shape
        geo = geometric_matrix(b, h, self.p, images)
        if not torch.equal(geo, _eye(3, b, geo)):
            grid = F.affine_grid(geo[:, :2, :], list(images.shape), align_corners=False)
            images = F.grid_sample(
                images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
        col = color_matrix(b, self.p, images)
        flat = images.reshape(b, 3, h * w)
        flat = col[:, :3, :3] @ flat + col[:, :3, 3:]
        return flat.reshape(b, 3, h, w)

    def observe(self, real_logits: Tensor) -> None:
        if self.target is None:
            return
        s = torch.sign(real_logits.detach()).sum().float()
        self._sign_sum = s if self._sign_sum is None else self._sign_sum + s
        self._count += real_logits.numel()

    def step(self, batch_size: int) -> None:
        """Call once per D step with the global batch size; adjusts ``p`` every ``interval`` steps."""
        if self.target is None:
            return
        self._steps += 1
        if self._steps % self.interval or self._sign_sum is None:
            return
        # on the logits' device: nccl reduces only device tensors
        stats = torch.stack([self._sign_sum, torch.tensor(float(self._count), device=self._sign_sum.device)])
        stats = all_reduce_mean(stats).cpu()
        self.rt = float(stats[0] / stats[1].clamp_min(1))
        adjust = math.copysign(1.0, self.rt - self.target) * batch_size * self.interval / (self.kimg * 1000)
        self.p = min(1.0, max(0.0, self.p + adjust))
        self._sign_sum, self._count = None, 0

    def stats(self) -> dict[str, float]:
        return {"ada_p": self.p, "ada_rt": self.rt}

    def state_dict(self) -> dict:
        pending = None if self._sign_sum is None else float(self._sign_sum)
        return {"p": self.p, "rt": self.rt, "steps": self._steps, "sign_sum": pending, "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.p = float(state.get("p", self.p))
        self.rt = float(state.get("rt", 0.0))
        self._steps = int(state.get("steps", 0))
        pending = state.get("sign_sum")
        self._sign_sum = None if pending is None else torch.tensor(float(pending))
        self._count = int(state.get("count", 0))


def build_augment(
    kind: str,
    *,
    policy: str = "color,translation,cutout",
    p: float = 0.0,
    target: float | None = 0.6,
    kimg: float = 500.0,
    interval: int = 4,
) -> NoAugment:
    """Factory for the trainer's ``--augment none|diffaug|ada``."""
    if kind == "none":
        return NoAugment()
    if kind == "diffaug":
        return DiffAugment(policy)
    if kind == "ada":
        return AdaptiveAugment(p=p, target=target, kimg=kimg, interval=interval)
    raise EgainError(f"unknown augmentation '{kind}'; expected one of {', '.join(AUGMENT_KINDS)}")

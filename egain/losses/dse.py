"""DSE's diverse-similarity losses (Yu & Wang, seeds/003 Eqs. 3-8) and its three-scale areas.

* Latent vectors (Eq. 5): ``L_LV = kl KL + alpha MSE + beta COS`` between w and w'.
* Images (Eq. 7): ``L_IMG = kl KL + alpha MSE + beta COS + gamma LPIPS + delta (1 - SSIM)``.
* Three-scale areas (Eq. 6): ``L_IMG(x, x') + mu1 L_IMG(AT1 x, AT1 x') + mu2 L_IMG(AT2 x, AT2 x')``;
  for centre-aligned faces AT1 keeps all rows and the columns [W/8, W - W/8), AT2 the square
  [H/8 + H/32, H - H/8 - H/32) (the published crops); the paper's mu = 0.375 / 0.625.
* Eq. 8: ``L_DSE = L_IMG + epsilon L_LV`` with alpha 5, beta 3, gamma 2, delta 1, epsilon 0.01.

Definitions, written from the equations:

* KL (Eq. 4) is ``sum S(w') log(S(w') / S(w))`` with S the softmax over each sample's flattened
  vector, averaged over the batch. The published ``space_loss`` computes a KL but leaves it out of the
  sum; ``--lambda-kl 0`` reproduces that.
* COS is ``1 - cos`` of each sample's flattened vector, averaged over the batch (the published code
  takes one cosine over the whole flattened batch: the same at batch 1, the case of DSE (E)).
* SSIM follows the published ``pytorch_ssim``: an 11-tap Gaussian window (sigma 1.5) with zero
  padding, C1 = 0.01^2, C2 = 0.03^2 on the [-1, 1] values as given, the mean of the SSIM map.
  SSIM and LPIPS see the images average-pooled by 2 until they are at most 256 px, as published.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

#: the paper's weights (Eq. 5, 7, 8) and the centre-aligned TSA weights for faces (sec. III-B)
DSE_WEIGHTS = {"kl": 1.0, "mse": 5.0, "cos": 3.0, "lpips": 2.0, "ssim": 1.0, "latent": 0.01}
DSE_MU = (0.375, 0.625)


def kl_softmax(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``mean_batch sum S(pred) log(S(pred) / S(target))`` over each flattened sample."""
    log_p = F.log_softmax(pred.flatten(1), dim=1)
    log_q = F.log_softmax(target.flatten(1), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_batch (1 - cos(flat(a), flat(b)))``."""
    return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-8)).mean()


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(like)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_value(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of the batch as the published ``pytorch_ssim`` computes it (differentiable)."""
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, x)
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=pad, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.mean()


def pool_to_256(x: torch.Tensor) -> torch.Tensor:
    """Average-pool by 2 until the height is at most 256 (what SSIM and LPIPS see, as published)."""
    while x.shape[-2] > 256:
        x = F.avg_pool2d(x, 2, 2)
    return x


def latent_loss(w: torch.Tensor, w_pred: torch.Tensor, weights: Mapping[str, float]) -> torch.Tensor:
    """Eq. 5: ``kl KL + mse MSE + cos COS`` between a target code and a prediction."""
    total = weights.get("mse", 0.0) * F.mse_loss(w_pred, w)
    if weights.get("cos", 0.0):
        total = total + weights["cos"] * cosine_distance(w_pred, w)
    if weights.get("kl", 0.0):
        total = total + weights["kl"] * kl_softmax(w, w_pred)
    return total


def image_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Mapping[str, float],
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The unweighted terms of Eq. 7 for target ``x`` and reconstruction ``y`` (those with weight > 0)."""
    terms = {"mse": F.mse_loss(y, x)}
    if weights.get("cos", 0.0):
        terms["cos"] = cosine_distance(y, x)
    if weights.get("kl", 0.0):
        terms["kl"] = kl_softmax(x, y)
    if weights.get("ssim", 0.0) or (weights.get("lpips", 0.0) and perceptual is not None):
        xs, ys = pool_to_256(x), pool_to_256(y)
        if weights.get("ssim", 0.0):
            terms["ssim"] = 1 - ssim_value(ys, xs)
        if weights.get("lpips", 0.0) and perceptual is not None:
            terms["lpips"] = perceptual(ys, xs).mean()
    return terms


def weighted(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    first = next(iter(terms.values()))
    return sum((weights.get(k, 0.0) * v for k, v in terms.items()), first.new_zeros(()))


def tsa_crops(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-aligned three-scale areas: (AT1, AT2) crops of an image batch (published bounds)."""
    h, w = x.shape[-2:]
    at1 = x[..., :, w // 8 : w - w // 8]
    m_h, m_w = h // 8 + h // 32, w // 8 + w // 32
    at2 = x[..., m_h : h - m_h, m_w : w - m_w]
    return at1, at2


def tsa_image_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Mapping[str, float],
    mu: tuple[float, float] = DSE_MU,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 over Eq. 7: (loss, logged terms). Terms are summed over the areas with their mu."""
    areas = [(1.0, x, y)]
    (x1, x2), (y1, y2) = tsa_crops(x), tsa_crops(y)
    for m, a, b in ((mu[0], x1, y1), (mu[1], x2, y2)):
        if m:
            areas.append((m, a, b))
    total = x.new_zeros(())
    logged: dict[str, torch.Tensor] = {}
    for m, a, b in areas:
        terms = image_terms(a, b, weights, perceptual)
        total = total + m * weighted(terms, weights)
        for k, v in terms.items():
            logged[k] = logged.get(k, 0.0) + m * v.detach()
    return total, logged

"""Adversarial losses and the StyleGAN2 regularisers.

These are the losses of Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (2020)
as used by rosinality's ``train.py``: the non-saturating logistic loss of Goodfellow et al., the R1
gradient penalty on real data (Mescheder et al., 2018) and the path-length regulariser. They are
plain functions of logits/tensors so that other trainers (e.g. HFGI's adversarial term, the latent
discriminator of e4e) reuse them without depending on the GAN trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator side of the non-saturating logistic loss.

    ``softplus(-D(x)) + softplus(D(G(z)))`` is ``-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))``
    written without the overflow of ``log(sigmoid(.))`` for large logits.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """Generator side: ``-log sigmoid(D(G(z)))``, which keeps gradients alive when D wins early."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1: the squared gradient norm of D at real samples, averaged over the batch.

    ``real_inputs`` must have ``requires_grad=True`` and be the tensor ``real_logits`` was computed
    from. The graph is kept (``create_graph``) because the penalty is then differentiated w.r.t. the
    discriminator's weights. The caller scales it by ``gamma / 2`` (and by the lazy interval).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def path_lengths(images: Tensor, latents: Tensor) -> Tensor:
    """Per-sample ``||J_w^T y||_2`` with ``y ~ N(0, I) / sqrt(H*W)`` (StyleGAN2, Eq. 4).

    ``latents`` is the W+ tensor (N, n_latent, style_dim) the images were synthesised from, with
    ``requires_grad``. As in the reference implementation the squared norm is summed over the style
    dimension and averaged over the layers, so the value does not grow with the number of layers.
    The noise is scaled by ``1/sqrt(H*W)`` so the lengths do not depend on the resolution.
    """
    h, w = images.shape[2], images.shape[3]
    noise = torch.randn_like(images) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((images * noise).sum(), latents, create_graph=True)
    if grad.ndim == 2:  # a single W per sample
        return grad.pow(2).sum(1).sqrt()
    return grad.pow(2).sum(2).mean(1).sqrt()


def path_length_penalty(
    images: Tensor,
    latents: Tensor,
    mean_path_length: Tensor | float,
    decay: float = 0.01,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Path-length penalty ``(||J^T y|| - a)^2`` with ``a`` an exponential moving average.

    Returns ``(penalty, new_mean_path_length, lengths)``, ``new_mean`` detached. ``reduce`` (e.g.
    ``egain.runtime.distributed.all_reduce_mean``) averages the batch mean over ranks before it
    enters the moving average, so every process keeps the same ``a``.
    """
    lengths = path_lengths(images, latents)
    mean = torch.as_tensor(mean_path_length, dtype=lengths.dtype, device=lengths.device)
    batch_mean = lengths.detach().mean()
    if reduce is not None:
        batch_mean = reduce(batch_mean)
    new_mean = mean + decay * (batch_mean - mean)
    penalty = (lengths - new_mean).pow(2).mean()
    return penalty, new_mean.detach(), lengths.detach()


def lazy_regularization_adam_params(lr: float, betas: tuple[float, float], reg_every: int) -> dict:
    """Adam ``lr``/``betas`` corrected for a regulariser evaluated every ``reg_every`` steps.

    Lazy regularisation (StyleGAN2, App. B) multiplies the regulariser by ``reg_every``; to keep the
    optimiser's effective dynamics, lr becomes ``lr * c`` and betas ``beta ** c`` with
    ``c = reg_every / (reg_every + 1)``.
    """
    if reg_every <= 0:
        return {"lr": lr, "betas": betas}
    c = reg_every / (reg_every + 1)
    return {"lr": lr * c, "betas": (betas[0] ** c, betas[1] ** c)}

"""Adversarial losses, regularisers, EMA and augmentation against direct reference computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from egain.errors import EgainError
from egain.losses.adversarial import (
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_regularization_adam_params,
    path_length_penalty,
    path_lengths,
    r1_penalty,
)
from egain.training.augment import (
    AdaptiveAugment,
    DiffAugment,
    build_augment,
    color_matrix,
    rand_cutout,
    rand_translation,
)
from egain.training.gan import GanTrainConfig, IndexStream, ema_beta, update_ema


def test_logistic_losses_match_their_definitions():
    real = torch.tensor([-3.0, 0.0, 2.5, 40.0], dtype=torch.float64)
    fake = torch.tensor([1.0, -2.0, -60.0, 0.3], dtype=torch.float64)
    sig = torch.sigmoid
    expected_d = (-torch.log(sig(real))).mean() + (-torch.log(1 - sig(fake[:2]))).sum() / 4
    # log(1 - sigmoid(-60)) underflows to 0 exactly; add the two remaining terms directly
    expected_d = expected_d + (math.log1p(math.exp(-60.0)) + (-math.log(1 - 1 / (1 + math.exp(-0.3))))) / 4
    assert torch.allclose(d_logistic_loss(real, fake), expected_d, rtol=1e-10)
    expected_g = (-torch.log(sig(fake))).mean()
    assert torch.allclose(g_nonsaturating_loss(fake), expected_g, rtol=1e-10)


def test_r1_is_the_squared_input_gradient_norm():
    torch.manual_seed(1)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    lin = nn.Linear(48, 1)
    logits = lin(x.flatten(1))
    # linear D: gradient is the weight vector for every sample
    assert torch.allclose(r1_penalty(logits, x), lin.weight.pow(2).sum(), rtol=1e-5)
    # quadratic D(x) = sum(x^2): gradient 2x, penalty mean_i ||2 x_i||^2; and it is differentiable
    logits = x.pow(2).flatten(1).sum(1, keepdim=True)
    pen = r1_penalty(logits, x)
    assert torch.allclose(pen, (4 * x.detach().pow(2).flatten(1).sum(1)).mean(), rtol=1e-5)
    pen.backward()
    assert torch.allclose(x.grad, 8 * x.detach() / 5, rtol=1e-5)


def test_path_lengths_equal_jacobian_transpose_norms():
    torch.manual_seed(2)
    n, layers, dim, h = 3, 4, 6, 5
    a = torch.randn(layers, dim, 3 * h * h, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, layers, dim, dtype=torch.float64, requires_grad=True)
    images = torch.einsum("nld,ldp->np", w, a).view(n, 3, h, h)  # linear generator
    torch.manual_seed(7)
    lengths = path_lengths(images, w)
    torch.manual_seed(7)
    y = torch.randn(n, 3, h, h, dtype=torch.float64) / math.sqrt(h * h)
    jt_y = torch.einsum("ldp,np->nld", a.detach(), y.flatten(1))  # J^T y per layer
    expected = jt_y.pow(2).sum(2).mean(1).sqrt()
    assert torch.allclose(lengths, expected, rtol=1e-10)

    torch.manual_seed(7)
    pen, new_mean, got = path_length_penalty(images, w, 0.5, decay=0.01)
    mean = 0.5 + 0.01 * (expected.mean() - 0.5)
    assert torch.allclose(new_mean, mean) and torch.allclose(got, expected)
    assert torch.allclose(pen, (expected - mean).pow(2).mean(), rtol=1e-10)
    pen.backward()  # differentiable w.r.t. the generator's weights (create_graph)
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_lazy_regularisation_correction():
    got = lazy_regularization_adam_params(0.002, (0.0, 0.99), 16)
    c = 16 / 17
    assert got["lr"] == pytest.approx(0.002 * c) and got["betas"] == pytest.approx((0.0, 0.99**c))
    assert lazy_regularization_adam_params(0.002, (0.0, 0.99), 0) == {"lr": 0.002, "betas": (0.0, 0.99)}


def test_ema_half_life_and_update():
    cfg = GanTrainConfig(data="x", out="y", batch=32, ema_kimg=10.0, ema_rampup=None)
    beta = ema_beta(cfg, 10**6)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)  # half-life of 10k images
    ramped = GanTrainConfig(data="x", out="y", batch=32, ema_rampup=0.05)
    assert ema_beta(ramped, 3200) == pytest.approx(0.5 ** (32 / (3200 * 0.05)))  # ramp: 5% of images seen
    assert ema_beta(ramped, 10**7) == pytest.approx(beta)  # default ema_kimg = 10 * batch / 32
    ema, model = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, model, 0.9)
    for e, b, m in zip(ema.parameters(), before, model.parameters(), strict=True):
        assert torch.allclose(e, 0.9 * b + 0.1 * m)


def test_index_stream_resumes_and_partitions_ranks():
    full = iter(IndexStream(10, 4, 0, 1, seed=3))
    batches = [next(full) for _ in range(6)]
    resumed = iter(IndexStream(10, 4, 0, 1, seed=3, start_batch=4))
    assert [next(resumed) for _ in range(2)] == batches[4:]
    flat = sum(batches[:5], [])  # 20 indices = two epochs, each a permutation of range(10)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    r0 = next(iter(IndexStream(10, 5, 0, 2, seed=3)))
    r1 = next(iter(IndexStream(10, 5, 1, 2, seed=3)))
    assert sorted(r0 + r1) == list(range(10))  # the ranks split one epoch


def test_translation_and_cutout_reference():
    torch.manual_seed(3)
    x = torch.randn(6, 3, 16, 16)
    out = rand_translation(x, 0.125)
    for i in range(6):  # each output is the input shifted by some (dy, dx) in [-2, 2], zero filled
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros_like(x[i])
                ys, xs = slice(max(0, -dy), min(16, 16 - dy)), slice(max(0, -dx), min(16, 16 - dx))
                ysrc, xsrc = slice(max(0, dy), min(16, 16 + dy)), slice(max(0, dx), min(16, 16 + dx))
                ref[:, ys, xs] = x[i][:, ysrc, xsrc]
                matches.append(torch.equal(out[i], ref))
        assert sum(matches) == 1
    out = rand_cutout(x, 0.5)
    for i in range(6):
        zeroed = (out[i] == 0).all(0) & (x[i] != 0).all(0)
        rows, cols = zeroed.any(1).nonzero().flatten(), zeroed.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert zeroed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()  # one rectangle
        assert torch.equal(out[i][:, ~zeroed], x[i][:, ~zeroed])


@pytest.mark.parametrize("kind", ["diffaug", "ada"])
def test_augmentations_are_differentiable(kind):
    torch.manual_seed(4)
    aug = build_augment(kind, p=0.8)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = aug(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_ada_identity_at_p0_and_colour_fixes_grey_axis():
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)
    torch.manual_seed(5)
    c = color_matrix(64, 1.0, x)
    grey = torch.tensor([0.3, 0.3, 0.3, 1.0])
    out = c @ grey  # brightness/contrast/luma-flip/hue/saturation keep grey pixels grey
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)
    with pytest.raises(EgainError, match="unknown DiffAugment"):
        DiffAugment("color,zoom")


def test_ada_p_follows_the_overfitting_heuristic():
    aug = AdaptiveAugment(p=0.0, target=0.6, kimg=1.0, interval=2)
    for _ in range(4):  # D is confident on reals: r_t = 1 > 0.6, p rises by batch*interval/1000
        aug.observe(torch.ones(8, 1))
        aug.step(8)
    assert aug.rt == 1.0 and aug.p == pytest.approx(2 * 8 * 2 / 1000)
    for _ in range(20):
        aug.observe(-torch.ones(8, 1))
        aug.step(8)
    assert aug.p == 0.0  # clamped
    restored = AdaptiveAugment(target=0.6)
    restored.load_state_dict(aug.state_dict())
    assert restored.p == aug.p and restored.rt == aug.rt

"""ArcFace / MagFace losses and verification figures (EER, TAR@FAR) against straightforward references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from egain.faces.losses import ArcFaceLoss, CosFaceLoss, MagFaceLoss, make_loss
from egain.faces.verification import (
    distortion_scores,
    equal_error_rate,
    gaussian_blur,
    pair_scores,
    plot_verification,
    round_trip,
    tar_at_far,
    verify,
)


def _ce(logits: list[float], target: int) -> float:
    m = max(logits)
    return -(logits[target] - m - math.log(sum(math.exp(v - m) for v in logits)))


def _ref_arcface(emb, weight, labels, s, m, easy):
    total = 0.0
    for f, y in zip(emb.tolist(), labels.tolist(), strict=True):
        fn = np.asarray(f) / np.linalg.norm(f)
        logits = []
        for j, w in enumerate(weight.tolist()):
            c = float(np.clip(fn @ (np.asarray(w) / np.linalg.norm(w)), -1, 1))
            if j == y:
                theta = math.acos(c)
                if easy:
                    c = math.cos(theta + m) if c > 0 else c
                else:
                    c = math.cos(theta + m) if theta + m < math.pi else c - m * math.sin(m)
            logits.append(s * c)
        total += _ce(logits, y)
    return total / len(labels)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_loss_matches_reference(easy):
    torch.manual_seed(1)
    head = ArcFaceLoss(8, 5, scale=16.0, margin=0.5, easy_margin=easy).double()
    emb = torch.randn(12, 8, dtype=torch.float64)
    # make some targets nearly opposite their centre, to exercise the theta + m > pi branch
    emb[:3] = -head.weight[:3].detach() * 3 + 0.01 * torch.randn(3, 8, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 1, 2])
    out = head(emb, labels)
    ref = _ref_arcface(emb, head.weight.detach(), labels, 16.0, 0.5, easy)
    assert out["loss"].item() == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_cosface_loss_matches_reference():
    """CosFace: target logit s * (cos - m), the others s * cos (Wang et al. 2018, Eq. 4)."""
    torch.manual_seed(3)
    head = CosFaceLoss(8, 5, scale=16.0, margin=0.35).double()
    emb = torch.randn(10, 8, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    total = 0.0
    for f, y in zip(emb.tolist(), labels.tolist(), strict=True):
        fn = np.asarray(f) / np.linalg.norm(f)
        logits = []
        for j, w in enumerate(head.weight.detach().tolist()):
            c = float(fn @ (np.asarray(w) / np.linalg.norm(w)))
            logits.append(16.0 * (c - 0.35 if j == y else c))
        total += _ce(logits, y)
    assert head(emb, labels)["loss"].item() == pytest.approx(total / 10, rel=1e-9)
    assert isinstance(make_loss("cosface", 8, 5), CosFaceLoss)
    with pytest.raises(ValueError, match="cosface"):
        make_loss("sphereface", 8, 5)


def test_distortions_and_their_scores():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)  # mean kept, edges too
    assert torch.allclose(round_trip(flat, 16), flat, atol=1e-6)
    b = gaussian_blur(x, 2.0)
    assert b.shape == x.shape and b.std() < 0.5 * x.std()  # white noise loses most of its variance
    assert round_trip(x, 16).shape == x.shape

    def pixels(images):  # an "embedder" that sees every pixel: distortions score below 1
        return images.flatten(1)

    scores = distortion_scores(pixels, x, batch=1)
    assert set(scores) == {"blur2", "round16"}
    assert all(0 < v < 0.9 for v in scores.values())
    assert distortion_scores(lambda im: im.mean((2, 3)) + 5, x)["blur2"] == pytest.approx(1.0, abs=1e-4)


def test_magface_loss_matches_reference():
    torch.manual_seed(2)
    l_a, u_a, l_m, u_m, lam, s = 10.0, 110.0, 0.45, 0.8, 35.0, 64.0
    head = MagFaceLoss(6, 4).double()
    emb = torch.randn(9, 6, dtype=torch.float64)
    emb = (
        emb
        / emb.norm(dim=1, keepdim=True)
        * torch.tensor([3.0, 10, 20, 50, 80, 110, 150, 40, 60]).double()[:, None]
    )
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    out = head(emb, labels)
    ce_sum, g_sum = 0.0, 0.0
    for f, y in zip(emb.tolist(), labels.tolist(), strict=True):
        a = min(max(float(np.linalg.norm(f)), l_a), u_a)
        m = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m
        fn = np.asarray(f) / np.linalg.norm(f)
        logits = []
        for j, w in enumerate(head.weight.detach().tolist()):
            c = float(fn @ (np.asarray(w) / np.linalg.norm(w)))
            if j == y and c > 0:  # easy margin, as MagFace's MagLinear
                c = math.cos(math.acos(c) + m)
            logits.append(s * c)
        ce_sum += _ce(logits, y)
        g_sum += 1 / a + a / u_a**2
    n = len(labels)
    assert out["ce"].item() == pytest.approx(ce_sum / n, rel=1e-9)
    assert out["g"].item() == pytest.approx(g_sum / n, rel=1e-12)
    assert out["loss"].item() == pytest.approx(ce_sum / n + lam * g_sum / n, rel=1e-9)
    # the regulariser is minimal at u_a and its gradient pushes small magnitudes up
    a = torch.tensor([20.0, 110.0, 200.0], requires_grad=True)
    head.regulariser(a).sum().backward()
    assert a.grad[0] < 0 and abs(a.grad[1]) < 1e-9 and a.grad[2] > 0


# ------------------------------------------------------------------------------------------------
# verification


def _brute_force(genuine, impostor, far):
    """Every observed score and +inf as threshold, accept score >= t."""
    best_tar, best_eer, best_gap = 0.0, None, None
    for t in sorted(set(genuine) | set(impostor)) + [math.inf]:
        fa = sum(v >= t for v in impostor) / len(impostor)
        fr = sum(v < t for v in genuine) / len(genuine)
        if fa <= far + 1e-12:
            best_tar = max(best_tar, 1 - fr)
        gap = abs(fa - fr)
        if (
            best_gap is None
            or gap < best_gap - 1e-15
            or (abs(gap - best_gap) <= 1e-15 and (fa + fr) / 2 < best_eer)
        ):
            best_gap, best_eer = gap, (fa + fr) / 2
    return best_eer, best_tar


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_and_tar_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    genuine = np.round(rng.normal(0.6, 0.2, 60), 2)  # rounding creates ties
    impostor = np.round(rng.normal(0.1, 0.2, 400), 2)
    for far in (1e-3, 0.01, 0.1):
        eer_bf, tar_bf = _brute_force(genuine.tolist(), impostor.tolist(), far)
        tar, t = tar_at_far(genuine, impostor, far)
        assert tar == pytest.approx(tar_bf)
        assert np.mean(impostor > t) <= far  # the reported threshold honours the FAR
    eer, _ = equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(eer_bf)


def test_pair_scores_and_report_match_double_loop(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    emb = torch.from_numpy(rng.normal(size=(10, 5)) + labels[:, None] * 0.7)
    genuine, impostor = pair_scores(emb, labels)
    g_ref, i_ref = [], []
    e = emb.numpy()
    for i in range(10):
        for j in range(i + 1, 10):
            c = e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j])
            (g_ref if labels[i] == labels[j] else i_ref).append(c)
    np.testing.assert_allclose(np.sort(genuine), np.sort(g_ref))
    np.testing.assert_allclose(np.sort(impostor), np.sort(i_ref))
    report, _, _ = verify(emb, labels)
    assert (report.n_genuine, report.n_impostor, report.n_identities) == (len(g_ref), len(i_ref), 4)
    png = plot_verification(genuine, impostor, tmp_path / "roc.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="two identities"):
        verify(emb[:3], labels[:3])

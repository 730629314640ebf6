"""SAM's threshold calibration (tau for error maps off the LPIPS scale), the tau sweep report, and
keep-best optimisation (never worse than the start by its own loss)."""

from __future__ import annotations

import statistics

import pytest
import torch
from inversion_helpers import smooth_images, tiny_generator

from egain.errors import InputError
from egain.methods import create
from egain.methods.optimise import optimise
from egain.methods.sam import (
    CALIBRATED_TAU,
    DEFAULT_TAU,
    TAU_RATIO,
    SamObjective,
    calibrate_tau,
    default_tau,
    error_scale,
    parse_taus,
    refine,
    space_fractions,
    sweep_thresholds,
    synthesize_multilayer,
    tau_sweep_report,
)

FAST = dict(init="mean", error_metric="l2", lambda_perceptual=0.0, mvg_samples=300, segmenter="grid")


@pytest.fixture(scope="module")
def g32():
    return tiny_generator("stylegan2", 32)


def test_calibrate_tau_is_ratio_times_median_region_mean():
    torch.manual_seed(0)
    maps = torch.rand(5, 1, 6, 6) * torch.arange(1, 6).view(5, 1, 1, 1)
    region = torch.rand(5, 6, 6) > 0.5
    region[3] = False  # an empty region: that image uses its whole map
    means = []
    for i in range(5):
        vals = [float(maps[i, 0, r, c]) for r in range(6) for c in range(6) if region[i, r, c]]
        means.append(sum(vals) / len(vals) if vals else float(maps[i].double().mean()))
    assert calibrate_tau(maps, region) == pytest.approx(TAU_RATIO * statistics.median(means), rel=1e-6)
    whole = [
        float(maps[i].double().mean()) for i in range(4)
    ]  # even count: the mean of the two middle values
    assert calibrate_tau(maps[:4, 0]) == pytest.approx(TAU_RATIO * statistics.median(whole), rel=1e-6)
    assert calibrate_tau(maps, ratio=2.0) == pytest.approx(
        2 * statistics.median(maps.mean((1, 2, 3)).tolist())
    )
    assert abs(TAU_RATIO - 0.225 / 0.20) < 1e-12


def test_default_tau_by_error_scale():
    assert error_scale({"lpips_linear": "vgg.pth"}) == "lpips-vgg"
    assert error_scale({"error_metric": "l2"}) == "l2"
    assert error_scale({}) == "face-features:synthfaces-arcface"
    assert default_tau("lpips-vgg", 64) == (DEFAULT_TAU, "published (LPIPS scale)")
    for (scale, size), tau in CALIBRATED_TAU.items():
        assert default_tau(scale, size)[0] == tau
    maps = torch.rand(3, 4, 8, 8)
    assert default_tau("l2", 8, maps)[0] == pytest.approx(calibrate_tau(maps[:, 0]))
    assert CALIBRATED_TAU[("face-features:synthfaces-arcface", 64)] > 0  # the bundled world's default


def test_parse_taus():
    assert parse_taus("0.2, 0.3,1") == [0.2, 0.3, 1.0]
    assert parse_taus("published") == sweep_thresholds()
    with pytest.raises(InputError):
        parse_taus("0.2,x")


def test_sam_without_tau_uses_the_calibration_of_its_maps(g32):
    m = create("sam", generator=g32, steps=2, measure_steps=3, device="cpu", **FAST)
    x = smooth_images(2, 32)
    inv = m.invert(x)
    errors = inv.extras["invertibility_maps"]
    assert not bool(inv.extras["face_segments"].any())  # grid segments: the whole image is the region
    tau = calibrate_tau(errors[:, 0])
    assert inv.extras["tau"].tolist() == pytest.approx([tau, tau])
    assert torch.equal(inv.extras["layer_map"], refine(errors, inv.extras["segment_map"], tau, m.spaces))
    assert float(m.invert(x, tau=0.5).extras["tau"][0]) == 0.5


def test_tau_sweep_report_shape(g32):
    m = create("sam", generator=g32, steps=2, measure_steps=3, device="cpu", **FAST)
    taus = [0.0, 0.01, 1e9]
    rep = tau_sweep_report(m, smooth_images(2, 32), taus)
    assert rep["spaces"] == ["W+", "F2", "F4"] and rep["error_scale"] == "l2"
    assert [r["tau"] for r in rep["rows"]] == taus
    for r in rep["rows"]:
        assert set(r["fractions"]) == set(rep["spaces"])
        assert sum(r["fractions"].values()) == pytest.approx(1.0)
        assert r["psnr"] > 0 and r["perceptual"] >= 0 and r["loss"] >= 0
    assert rep["rows"][-1]["fractions"]["W+"] == 1.0  # every mean error is below a huge tau
    assert rep["rows"][0]["fractions"]["F4"] == pytest.approx(1.0)  # tau 0: the least editable space
    assert rep["default_tau"] == pytest.approx(rep["calibrated_tau"])


def test_space_fractions():
    choice = torch.tensor([[[0, 1], [2, 2]]])
    names = type("S", (), {"name": ""})
    spaces = []
    for n in ("W+", "F2", "F4"):
        s = names()
        s.name = n
        spaces.append(s)
    assert space_fractions(choice, spaces) == {"W+": 0.25, "F2": 0.25, "F4": 0.5}


def test_keep_best_returns_the_lowest_loss_state():
    # lr 3 on (v - 1)^2 from v = 0.9: Adam's first steps overshoot far past 1
    def loss_fn(v, rows, step):
        return (v["v"] - 1).square().sum(1), {}

    last = {"v": torch.tensor([[0.9], [0.5]])}
    optimise(last, loss_fn, steps=3, lr=3.0)
    best = {"v": torch.tensor([[0.9], [0.5]])}
    rec = optimise(best, loss_fn, steps=3, lr=3.0, keep_best=True)
    final = loss_fn(best, None, 0)[0]
    assert (final <= rec.loss_curve[:, 0]).all()  # never worse than the start
    assert torch.allclose(final, rec.best_loss)
    assert (final <= loss_fn(last, None, 0)[0]).all()
    evaluated = torch.cat([rec.loss_curve, loss_fn(last, None, 0)[0].unsqueeze(1)], 1)
    assert torch.allclose(rec.best_loss, evaluated.min(1).values)  # the best of every evaluated state
    assert rec.best_step.tolist() == evaluated.argmin(1).tolist()


def test_sam_never_returns_worse_than_its_start(g32):
    # a few steps at a huge learning rate overshoot: SAM returns its start, by its own loss
    m = create("sam", generator=g32, steps=3, lr=20.0, measure_steps=2, tau=0.05, device="cpu", **FAST)
    x = smooth_images(2, 32)
    inv = m.invert(x)
    curve = inv.extras["loss_curve"]
    obj = SamObjective(None, m.objective(m.config).stats, lambda_perceptual=0.0)
    y = synthesize_multilayer(
        g32, inv.latents, m.spaces, inv.extras["feature_residuals"], inv.extras["feature_masks"]
    )
    own = obj(y, x, inv.latents, inv.extras["feature_residuals"])[0]
    assert torch.allclose(own, inv.extras["best_loss"], rtol=1e-4)
    assert (own <= curve[:, 0] + 1e-6).all()
    published = m.invert(x, last_state=True)
    assert "best_loss" not in published.extras

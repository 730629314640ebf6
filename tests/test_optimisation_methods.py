"""Optimisation-based methods: optim-w, optim-wplus, projector, hybrid, pti (tiny generators)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import TINY_BASIC, save_tiny_generator, smooth_images, tiny_generator

from egain.generators import load_generator
from egain.methods import create, method_class
from egain.methods.optimise import (
    BatchedAdam,
    noise_regularisation,
    normalise_noise_,
    projector_lr_ramp,
    projector_noise_strength,
    w_statistics,
)

OPTIM = ("optim-w", "optim-wplus", "projector", "hybrid", "pti")
# pixel-only losses keep most tests fast; one test runs the default face-feature distance
FAST = {"lambda_perceptual": 0.0, "lambda_l2": 1.0}


@pytest.fixture(scope="module")
def gen():
    return tiny_generator("stylegan2", 16)


@pytest.fixture(scope="module")
def images():
    return smooth_images(3, 16, seed=1)


def _encoder(g):
    return create("e4e", generator=g, basic_encoder=TINY_BASIC)


def _make(name, g, **kw):
    if name == "hybrid":
        kw.setdefault("encoder", _encoder(g))
    if name == "pti":
        kw.setdefault("pivot_steps", 5)
        kw.setdefault("stop_below", None)
    if name == "projector":
        kw = {"lambda_noise": 0.0, **kw}
    return create(name, generator=g, **kw)


@pytest.mark.parametrize("name", OPTIM)
def test_method_lowers_its_loss_and_reports_extras(name, gen, images):
    m = _make(name, gen, steps=15, **FAST)
    assert not type(m).trains()
    inv = m.invert(images)
    n = images.shape[0]
    assert inv.latents.shape == (n, gen.n_latent, gen.style_dim)
    assert inv.reconstruction.shape == images.shape
    curve = inv.extras["loss_curve"]
    assert curve.shape == (n, 15)
    assert torch.equal(inv.extras["steps"], torch.full((n,), 15))
    assert bool((curve[:, -1] < curve[:, 0]).all()), curve
    # a sub-batch keeps every per-image extra aligned
    one = inv.select([1])
    assert one.extras["loss_curve"].shape == (1, 15)


def test_perceptual_default_is_the_face_feature_distance(gen, images):
    m = create("optim-wplus", generator=gen, steps=8)
    inv = m.invert(images[:2])
    perc = next(v for k, v in m._aux.items() if k[0] == "perceptual")
    assert type(perc.inner).__name__ == "FeatureDistance"
    c = inv.extras["loss_curve"]
    assert bool((c[:, -1] < c[:, 0]).all())


def test_options_are_keywords_and_call_overrides(gen, images):
    m = create("optim-wplus", generator=gen, steps=200, **FAST)
    assert m.config["steps"] == 200 and m.config["lr"] == 0.01
    inv = m.invert(images[:1], steps=3)
    assert inv.extras["loss_curve"].shape == (1, 3)
    assert m.config["steps"] == 200  # a call's override does not stick
    names = {o.name for o in method_class("pti").invert_options}
    assert {"steps", "lr", "stop_below", "locality", "lpips", "lpips_backbone", "lpips_linear"} <= names
    with pytest.raises(Exception, match="no option"):
        create("optim-w", generator=gen, stepz=3)


def test_published_defaults():
    d = method_class("projector").option_defaults()
    assert (d["steps"], d["lr"], d["noise_factor"], d["lr_rampdown"], d["lr_rampup"]) == (
        1000,
        0.1,
        0.05,
        0.25,
        0.05,
    )
    assert (d["noise_ramp"], d["lambda_noise"], d["w_avg_samples"]) == (0.75, 1e5, 10000)
    p = method_class("pti").option_defaults()
    assert (p["pivot_steps"], p["pivot_lr"], p["pivot_w_avg_samples"], p["steps"], p["lr"]) == (
        450,
        0.01,
        600,
        350,
        3e-4,
    )
    assert (p["lambda_l2"], p["lambda_perceptual"], p["stop_below"], p["locality"]) == (1.0, 1.0, 0.06, False)
    assert (p["locality_alpha"], p["lambda_locality_l2"], p["lambda_locality_perceptual"]) == (30.0, 0.1, 0.1)
    o = method_class("optim-wplus").option_defaults()
    assert (o["steps"], o["lr"], o["lambda_l2"], o["lambda_perceptual"]) == (1000, 0.01, 1.0, 1.0)


# -- batched == one at a time ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["optim-w", "optim-wplus", "projector", "pti"])
def test_batch_equals_one_at_a_time(name, gen, images):
    """Each image's result does not depend on its batch: summed losses, per-image Adam rows and a
    shared random stream. Equal to float rounding (the convolutions may sum a batch of 3 in another
    order than a batch of 1)."""
    kw = dict(steps=10, **FAST)
    if name == "projector":
        kw["lambda_noise"] = 1e5  # noise maps, their regulariser and the w noise, all per image
    m = _make(name, gen, **kw)
    batch = m.invert(images)
    for i in range(images.shape[0]):
        alone = m.invert(images[i : i + 1])
        torch.testing.assert_close(batch.latents[i : i + 1], alone.latents, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(
            batch.reconstruction[i : i + 1], alone.reconstruction, atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            batch.extras["loss_curve"][i : i + 1], alone.extras["loss_curve"], rtol=1e-4, atol=1e-6
        )


def test_per_image_early_stop_freezes_that_image(gen, images):
    m = create("optim-wplus", generator=gen, steps=30, lr=0.05, **FAST)
    free = m.invert(images)
    c = free.extras["loss_curve"]
    # a threshold image 0 passes at step 26 and the others never reach
    thr = float(c[0, 25] + c[0, 26]) / 2
    assert bool((c[1:, -1] > thr).all()), c
    stopped = m.invert(images, stop_below=thr)
    s = stopped.extras["steps"]
    assert int(s[0]) == 26 and bool((s[1:] == 30).all())
    assert bool(torch.isnan(stopped.extras["loss_curve"][0, int(s[0]) + 1 :]).all())
    alone = m.invert(images[:1], stop_below=thr)
    assert int(alone.extras["steps"][0]) == int(s[0])
    torch.testing.assert_close(stopped.latents[:1], alone.latents, atol=1e-5, rtol=1e-4)
    # the others ran as without the threshold
    torch.testing.assert_close(stopped.latents[1:], free.latents[1:], atol=1e-5, rtol=1e-4)


def test_batched_adam_is_torch_adam_per_row():
    torch.manual_seed(0)
    p0 = torch.randn(3, 5)
    ours = p0.clone().requires_grad_(True)
    opt = BatchedAdam([ours])
    refs = [p0[i : i + 1].clone().requires_grad_(True) for i in range(3)]
    ref_opts = [torch.optim.Adam([r], lr=0.1) for r in refs]
    for step in range(6):
        rows = None if step < 3 else torch.tensor([0, 2])  # row 1 frozen after 3 steps
        (ours.square() * torch.arange(1.0, 6.0)).sum().backward()
        opt.step(0.1, rows)
        for i, (r, o) in enumerate(zip(refs, ref_opts, strict=True)):
            if rows is not None and i not in rows.tolist():
                continue
            o.zero_grad()
            (r.square() * torch.arange(1.0, 6.0)).sum().backward()
            o.step()
    torch.testing.assert_close(ours.detach(), torch.cat([r.detach() for r in refs]))


# -- the projector's schedules and regulariser against the published formulas -------------------


def _ref_lr(t, lr=0.1, down=0.25, up=0.05):
    # stylegan2-ada-pytorch projector.py, written out
    lr_ramp = min(1.0, (1.0 - t) / down)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    lr_ramp = lr_ramp * min(1.0, t / up)
    return lr * lr_ramp


def test_projector_schedules_match_the_published_formulas():
    for step in range(0, 1001, 7):
        t = step / 1000
        assert math.isclose(0.1 * projector_lr_ramp(t), _ref_lr(t), rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(projector_noise_strength(t, 2.5), 2.5 * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2)
    assert projector_lr_ramp(0.0) == 0.0 and projector_noise_strength(0.8, 1.0) == 0.0


def test_projector_uses_the_schedules(gen, images, monkeypatch):
    seen = []
    orig = BatchedAdam.step

    def spy(self, lr, rows=None):
        seen.append(lr)
        return orig(self, lr, rows)

    monkeypatch.setattr(BatchedAdam, "step", spy)
    m = create("projector", generator=gen, steps=20, w_avg_samples=500, **FAST)
    inv = m.invert(images[:1])
    assert seen == pytest.approx([_ref_lr(s / 20) for s in range(20)], rel=1e-12, abs=1e-15)
    # noise maps: one per conv layer, renormalised after every step
    assert len(inv.extras["noise"]) == gen.num_noise
    for nz in inv.extras["noise"]:
        assert abs(float(nz.mean())) < 1e-5 and abs(float(nz.square().mean()) - 1) < 1e-4
    _, w_std = w_statistics(gen, 500)
    assert float(inv.extras["w_std"][0]) == pytest.approx(w_std)


def test_noise_regulariser_and_w_statistics_match_straightforward_code(gen):
    torch.manual_seed(0)
    noises = [torch.randn(2, 1, r, r) for r in (4, 8, 16, 32)]
    ours = noise_regularisation(noises)
    for i in range(2):
        ref = 0.0
        for v in noises:  # the published loop, one image
            noise = v[i : i + 1]
            while True:
                ref += (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
                ref += (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
        assert float(ours[i]) == pytest.approx(float(ref), rel=1e-5)
    normalise_noise_(noises)
    for v in noises:
        assert torch.allclose(v.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6)
    mean, std = w_statistics(gen, 300, seed=5)
    z = torch.randn(300, gen.style_dim, generator=torch.Generator().manual_seed(5))
    w = gen.mapping(z).double()
    assert torch.allclose(mean.double(), w.mean(0), atol=1e-5)
    assert std == pytest.approx(float(((w - w.mean(0)) ** 2).sum(1).mean().sqrt()), rel=1e-6)


# -- PTI ----------------------------------------------------------------------------------------


def test_pti_returns_and_uses_its_tuned_generator(gen, images, tmp_path):
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    m = _make("pti", gen, steps=6, locality=True, **FAST)
    inv = m.invert(images[:2])
    gens = inv.extras["tuned_generators"]
    assert len(gens) == 2 and gens[0] is not gens[1] and gens[0] is not gen
    for k, v in gen.state_dict().items():  # the method's generator is untouched
        assert torch.equal(v, before[k])
    with torch.no_grad():
        y1 = gens[1].synthesize(inv.latents[1:2], noise_mode="const")
        y_orig = gen.synthesize(inv.latents[1:2], noise_mode="const")
    torch.testing.assert_close(inv.reconstruction[1:2], y1)
    assert not torch.allclose(y1, y_orig)
    # edit uses the tuned generator (zero edit == reconstruction), also after select
    zero = torch.zeros(gen.style_dim)
    torch.testing.assert_close(m.edit(inv, zero), inv.reconstruction)
    torch.testing.assert_close(m.edit(inv.select([1]), zero), inv.reconstruction[1:2])
    # saved as an ordinary generator file
    path = m.save_tuned_generator(inv, 1, tmp_path / "tuned.pt")
    g2 = load_generator(path)
    with torch.no_grad():
        torch.testing.assert_close(g2.synthesize(inv.latents[1:2], noise_mode="const"), y1)


def test_pti_early_stop_on_perceptual_term(gen, images):
    m = create("pti", generator=gen, steps=5, pivot_steps=3, stop_below=1e9)
    inv = m.invert(images[:1])
    assert int(inv.extras["steps"][0]) == 0  # stopped before the first update
    assert torch.isnan(inv.extras["loss_curve"][0, 1:]).all()


# -- hybrid, saving, CLI ------------------------------------------------------------------------


def test_hybrid_starts_from_the_encoder_code(gen, images):
    enc = _encoder(gen)
    m = create("hybrid", generator=gen, encoder=enc, steps=0, **FAST)
    inv = m.invert(images[:2])
    with torch.no_grad():
        torch.testing.assert_close(inv.latents, enc.invert(images[:2]).latents)
    assert m.config["encoder"] == "e4e"


def test_saved_configuration_round_trips(gen, tmp_path):
    m = create("projector", generator=gen, steps=7, space="w+")
    m.save(tmp_path / "p.pt")
    back = create("projector", generator=gen, checkpoint=tmp_path / "p.pt")
    assert back.config == m.config


def test_egain_train_says_no_training(tmp_path, capsys):
    from egain.cli.main import main

    g = save_tiny_generator(tmp_path / "g.pt", "stylegan2", 16)
    rc = main(
        [
            "train",
            "--method",
            "optim-w",
            "--generator",
            str(g),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc != 0
    assert "optim-w needs no training" in capsys.readouterr().err


def test_optimisation_methods_default_to_the_bundled_generator(tmp_path):
    """They train nothing: with no generator given they run on the bundled synthfaces StyleGAN2,
    in Python and from ``egain invert``."""
    from egain.cli.main import main as cli_main
    from egain.generators import load_generator
    from egain.workflows.examples import example_files

    ref = load_generator("zoo:gan-stylegan2-64", device="cpu").state_dict()
    m = create("optim-wplus", device="cpu")
    assert all(torch.equal(v, ref[k]) for k, v in m.generator.state_dict().items())
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(example_files()[0].read_bytes())
    args = ["invert", "--method", "optim-w", "--input", str(src), "--output", str(tmp_path / "out")]
    assert cli_main([*args, "--steps", "1", "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "a.png").exists()

"""Editing: learnt directions against reference computations, published files with their semantics,
every method's edit rule, ``egain edit`` / ``egain directions`` end to end, edit evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from inversion_helpers import TINY_BASIC, image_folder, smooth_images, tiny_generator
from scipy.optimize import minimize

import egain.methods as methods
from egain.cli.main import main
from egain.editing import (
    Direction,
    EditSet,
    ganspace_edit,
    latent_offset,
    load_direction_file,
    save_direction,
)
from egain.editing.learn import (
    fit_logistic,
    ganspace,
    interfacegan_boundary,
    learn_direction_set,
    project_boundary,
    sefa,
    style_affine_weights,
    supervised_direction,
)
from egain.errors import InputError


@pytest.fixture(scope="module")
def gen():
    return tiny_generator("stylegan2", 32)


# -- learnt directions against straightforward references ---------------------------------------


def test_logistic_fit_matches_a_generic_optimiser_on_the_same_objective():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    y = (
        (
            x @ torch.tensor([1.0, -2, 0.5, 0, 0, 1], dtype=torch.float64)
            + 0.3 * torch.randn(80, generator=g, dtype=torch.float64)
        )
        > 0
    ).double()
    a, b = fit_logistic(x, y, l2=0.5)

    def objective(t):
        z = x.numpy() @ t[:-1] + t[-1]
        s = 2 * y.numpy() - 1
        return np.logaddexp(0, -s * z).sum() + 0.25 * (t[:-1] ** 2).sum()

    ref = minimize(objective, np.zeros(7), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(a.numpy(), ref[:-1], atol=1e-4)
    assert b == pytest.approx(ref[-1], abs=1e-4)


def test_interfacegan_boundary_recovers_a_planted_direction_and_points_up():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4000, 16, generator=g)
    n_true = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    scores = w @ n_true + 0.05 * torch.randn(4000, generator=g)
    fit = interfacegan_boundary(w, scores, ratio=0.1)
    assert float(fit.normal.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(fit.normal @ n_true) > 0.95
    assert fit.val_accuracy > 0.95 and fit.remaining_accuracy > 0.8


def test_conditional_boundary_is_interfacegans_projection():
    g = torch.Generator().manual_seed(2)
    n, c1, c2 = (torch.nn.functional.normalize(torch.randn(10, generator=g), dim=0) for _ in range(3))
    one = project_boundary(n, c1)
    ref = n - (n @ c1) * c1
    torch.testing.assert_close(one, ref / ref.norm())
    two = project_boundary(n, c1, c2)
    assert abs(float(two @ c1)) < 1e-5 and abs(float(two @ c2)) < 1e-5
    assert float(two.norm()) == pytest.approx(1.0, abs=1e-6)


def test_ganspace_matches_the_eigenvectors_of_the_sample_covariance():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(500, 8, generator=g) @ torch.diag(torch.tensor([5.0, 3, 2, 1, 0.5, 0.4, 0.3, 0.2])) + 1.0
    pca = ganspace(w, k=3)
    cov = np.cov(w.numpy().T)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:3]
    for i, j in enumerate(order):
        assert abs(float(pca.components[i].double() @ torch.from_numpy(vecs[:, j]))) == pytest.approx(
            1.0, abs=1e-5
        )
        assert float(pca.std[i]) == pytest.approx(np.sqrt(vals[j]), rel=1e-4)
    torch.testing.assert_close(pca.mean, w.mean(0))


def test_sefa_matches_numpy_eig_of_the_normalised_modulation_weights(gen):
    rows = [2, 3]
    weight = style_affine_weights(gen, rows).numpy().astype(np.float64)
    # reference: genforce factorize_weight -- columns normalised, eig of W W^T, sorted by eigenvalue
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    vals, vecs = np.linalg.eig(weight @ weight.T)
    order = np.argsort(vals.real)[::-1][:3]
    ours, our_vals = sefa(gen, rows, k=3)
    for i, j in enumerate(order):
        assert abs(float(ours[i].double() @ torch.from_numpy(vecs[:, j].real))) == pytest.approx(
            1.0, abs=1e-5
        )
        assert float(our_vals[i]) == pytest.approx(vals[j].real, rel=1e-4)
    # the weights are those of the layers reading rows 2 and 3 (a conv layer each, plus ToRGB at an odd row)
    assert weight.shape[0] == gen.style_dim


def test_supervised_direction_from_labelled_latents():
    g = torch.Generator().manual_seed(4)
    lat = torch.randn(200, 4, 12, generator=g)
    d_true = torch.nn.functional.normalize(torch.randn(12, generator=g), dim=0)
    values = lat.mean(1) @ d_true
    assert float(supervised_direction(lat, values) @ d_true) > 0.99
    assert float(supervised_direction(lat, (values > 0).double()) @ d_true) > 0.9


# -- strength semantics and published files -----------------------------------------------------


def test_interfacegan_npy_is_absolute_on_w_and_relative_on_wplus(tmp_path):
    n = torch.nn.functional.normalize(torch.randn(16), dim=0)
    np.save(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", n.double().numpy()[None])
    d = load_direction_file(tmp_path / "stylegan_ffhq_smile_w_boundary.npy")
    assert d.kind == "interfacegan" and d.name == "stylegan_ffhq_smile"
    w = torch.randn(3, 16)
    edited = w + latent_offset(w, d, 2.5)
    torch.testing.assert_close(edited @ n, torch.full((3,), 2.5), atol=1e-5, rtol=0)  # absolute distance
    wp = torch.randn(3, 5, 16)
    torch.testing.assert_close(latent_offset(wp, d, 2.5), 2.5 * n.expand(3, 5, 16))  # relative on W+
    np.save(tmp_path / "stylegan_ffhq_smile_boundary.npy", n.double().numpy()[None])
    with pytest.raises(InputError, match="Z space"):
        load_direction_file(tmp_path / "stylegan_ffhq_smile_boundary.npy")


def test_e4e_hfgi_direction_tensors_are_relative_on_every_row(tmp_path):
    age = torch.nn.functional.normalize(torch.randn(1, 16), dim=1)
    pose = torch.nn.functional.normalize(torch.randn(1, 5, 16), dim=2)
    torch.save(age, tmp_path / "age.pt")
    torch.save(pose, tmp_path / "pose.pt")
    wp = torch.randn(2, 5, 16)
    torch.testing.assert_close(
        latent_offset(wp, load_direction_file(tmp_path / "age.pt"), 3.0), 3.0 * age.expand(2, 5, 16)
    )
    torch.testing.assert_close(
        latent_offset(wp, load_direction_file(tmp_path / "pose.pt"), -2.0), -2.0 * pose.expand(2, 5, 16)
    )


def test_ganspace_file_edit_changes_only_its_rows_and_reaches_the_target(tmp_path):
    comp = torch.nn.functional.normalize(torch.randn(6, 1, 16), dim=2)
    torch.save(
        {"mean": torch.randn(1, 16), "comp": comp, "std": torch.rand(6) + 0.5}, tmp_path / "ffhq_pca.pt"
    )
    d = ganspace_edit(tmp_path / "ffhq_pca.pt", "4,2,4,7")
    assert d.layers == (2, 4) and d.kind == "ganspace"
    wp = torch.randn(2, 6, 16)
    edited = wp + latent_offset(wp, d, 7.0)
    changed = (edited - wp).abs().sum(-1) > 0
    assert changed[:, 2:4].all() and not changed[:, :2].any() and not changed[:, 4:].any()
    coord = (
        (edited[:, 2] - d.mean) @ d.vector
    ) / d.std  # row 0 was the reference; rows 2-3 got the same shift
    ref0 = ((wp[:, 0] - d.mean) @ d.vector) / d.std
    torch.testing.assert_close(
        coord - ((wp[:, 2] - d.mean) @ d.vector) / d.std, 7.0 - ref0, atol=1e-4, rtol=0
    )
    # named edits and the file given without an edit
    assert ganspace_edit(tmp_path / "ffhq_pca.pt", "4,0,1").default_strength == 0.0
    with pytest.raises(InputError, match="GANSpace PCA file"):
        load_direction_file(tmp_path / "ffhq_pca.pt")
    assert load_direction_file(f"{tmp_path / 'ffhq_pca.pt'}:4,1,3,2").layers == (1, 3)


def test_sam_csc_npy_keeps_its_zero_rows(tmp_path):
    a = np.zeros((1, 8, 16), np.float32)
    a[0, 3:6] = np.random.default_rng(0).normal(size=(3, 16))
    np.save(tmp_path / "csc_old.npy", a)
    d = load_direction_file(tmp_path / "csc_old.npy")
    assert d.layers == (3, 6)
    off = latent_offset(torch.randn(2, 8, 16), d, 2.0)
    assert (off[:, :3] == 0).all() and (off[:, 6:] == 0).all()
    torch.testing.assert_close(off[:, 3:6], 2.0 * torch.from_numpy(a[0, 3:6]).expand(2, 3, 16))


def test_directions_add_and_our_files_round_trip(tmp_path):
    a, b = Direction(torch.randn(16), name="a"), Direction(torch.randn(16), name="b")
    wp = torch.randn(2, 4, 16)
    both = latent_offset(wp, EditSet([(a, 1.0), (b, 0.5)]), 2.0)
    torch.testing.assert_close(both, latent_offset(wp, a, 2.0) + latent_offset(wp, b, 1.0))
    save_direction(
        Direction(torch.randn(16), name="g", kind="ganspace", layers=(1, 3), mean=torch.zeros(16), std=2.0),
        tmp_path / "g.pt",
        {"x": 1},
    )
    back = load_direction_file(tmp_path / "g.pt")
    assert back.kind == "ganspace" and back.layers == (1, 3) and back.std == 2.0
    assert json.loads((tmp_path / "g.json").read_text()) == {"x": 1}


# -- every method's edit rule ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e4e", "hfgi", "egain", "egain-external"])
def test_edit_at_strength_zero_is_the_reconstruction_with_and_without_ada(gen, name):
    m = methods.create(name, generator=gen, basic_encoder=TINY_BASIC, memory_format=None)
    # non-trivial fusion weights, so that the delta branch matters
    torch.manual_seed(0)
    with torch.no_grad():
        for mod in (m.fusion, m.delta_encoder, m.aligner):
            for p in mod.parameters() if mod is not None else ():
                p.add_(0.05 * torch.randn_like(p))
    x = smooth_images(2, 32)
    inv = m.invert(x)
    d = Direction(torch.randn(gen.style_dim))
    torch.testing.assert_close(m.edit(inv, d, 0.0), inv.reconstruction, atol=1e-5, rtol=0)
    edited = m.edit(inv, d, 3.0)
    assert (edited - inv.reconstruction).abs().mean() > 1e-4
    if (
        name == "hfgi"
    ):  # ADA re-aligns the distortion to the edited image: switching it off changes the result
        assert (m.edit(inv, d, 3.0, ada=False) - edited).abs().max() > 1e-6
        torch.testing.assert_close(m.edit(inv, d, 0.0, ada=True), inv.reconstruction, atol=1e-5, rtol=0)


def test_external_fusion_edits_the_basic_code_and_refuses(gen):
    m = methods.create("egain-external", generator=gen, basic_encoder=TINY_BASIC, memory_format=None)
    inv = m.invert(smooth_images(1, 32))
    d = Direction(torch.randn(gen.style_dim))
    w_b = inv.extras["basic_latents"]
    code = m.delta_encoder(inv.extras["delta"])
    expected = m.to_input_size(m.synthesize(m.fusion(w_b + latent_offset(w_b, d, 2.0), code)))
    torch.testing.assert_close(m.edit(inv, d, 2.0), expected, atol=1e-5, rtol=0)


def test_e2style_edits_rows_zero_to_seven_only():
    g = tiny_generator("stylegan2", 64)  # 10 W+ rows: rows 8-9 (64 px) stay
    m = methods.create("e2style", generator=g, stages=1, memory_format=None)
    inv = m.invert(smooth_images(1, m.input_size))
    d = Direction(torch.randn(g.style_dim))
    w = inv.latents.clone()
    w[:, :8] += 2.0 * d.vector
    torch.testing.assert_close(m.edit(inv, d, 2.0), m.pool(m.synthesize(w)).contiguous(), atol=1e-5, rtol=0)


# -- learning a set and the commands ------------------------------------------------------------


class FakeClassifier:
    """Scores = fixed linear read-outs of the image: enough to learn and measure directions."""

    names = ("smile", "yaw", "age", "glasses", "masc")
    size = 32

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(len(self.names), 3 * 32 * 32, generator=g) / 50

    def scores(self, images):
        s = images.flatten(1) @ self.w.T
        return {k: s[:, i] for i, k in enumerate(self.names)}

    predict = scores


def test_learn_a_set_then_edit_and_list_from_the_command_line(gen, tmp_path, monkeypatch, capsys):
    from egain.generators import save_generator

    save_generator(gen, tmp_path / "G.pt")
    summary = learn_direction_set(
        gen,
        FakeClassifier(),
        tmp_path / "dirs",
        attributes={"smile": (), "glasses": ("masc",)},
        n=200,
        ratio=0.1,
        ganspace_k=2,
        sefa_k=1,
        n_effect=8,
        log=lambda s: None,
    )
    assert set(summary["directions"]) == {"smile", "glasses", "ganspace_0", "ganspace_1", "sefa_0"}
    assert summary["directions"]["smile"]["effect_per_unit"]["smile"] > 0  # it moves its attribute
    m = json.loads((tmp_path / "dirs" / "smile.json").read_text())
    assert m["generator_fingerprint"] == summary["generator_fingerprint"] and "val_accuracy" in m

    monkeypatch.setenv("EGAIN_DIRECTIONS", str(tmp_path / "dirs"))
    ckpt = tmp_path / "e4e.pt"
    methods.create("e4e", generator=gen, basic_encoder=TINY_BASIC).save(ckpt)
    image_folder(tmp_path / "in", n=3, size=32)
    code = main(
        [
            "edit",
            "--method",
            "e4e",
            "--checkpoint",
            str(ckpt),
            "--generator",
            str(tmp_path / "G.pt"),
            "--input",
            str(tmp_path / "in"),
            "--direction",
            "smile+ganspace_0*0.5",
            "--strength",
            "-2,0,2",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = tmp_path / "out"
    assert (out / "grid.png").is_file() and len(list((out / "smile+0.5xganspace_0_-2").glob("*.png"))) == 3
    assert main(["directions", "list"]) == 0
    assert "smile" in capsys.readouterr().out


def test_egain_edit_on_the_bundled_defaults(tmp_path):
    from egain import zoo

    if "e4e-stylegan2-64" not in zoo.available():
        pytest.skip("bundled weights not present")
    g = methods.create("e4e", device="cpu").generator
    save_direction(
        Direction(torch.nn.functional.normalize(torch.randn(g.style_dim), dim=0), name="rand"),
        tmp_path / "rand.pt",
    )
    image_folder(tmp_path / "in", n=2, size=64)
    for name in ("e4e", "hfgi"):
        args = [
            "edit",
            "--method",
            name,
            "--input",
            str(tmp_path / "in"),
            "--direction",
            str(tmp_path / "rand.pt"),
            "--strength",
            "-3,0,3",
            "--out",
            str(tmp_path / name),
            "--device",
            "cpu",
        ]
        assert main(args + (["--no-ada"] if name == "hfgi" else [])) == 0
        assert len(list((tmp_path / name).glob("rand_*/*.png"))) == 6
    assert json.loads((tmp_path / "hfgi" / "edit.json").read_text())["ada"] is False


def test_wrong_dimension_and_missing_names_fail_in_one_line(gen, tmp_path, monkeypatch):
    from egain.editing import load_direction

    with pytest.raises(InputError, match="dimensional"):
        latent_offset(torch.randn(1, 4, gen.style_dim), Direction(torch.randn(gen.style_dim + 1)), 1.0)
    monkeypatch.setenv("EGAIN_DIRECTIONS", str(tmp_path))
    with pytest.raises(InputError, match="no learnt directions"):
        load_direction("smile", gen)


def test_ground_truth_rerendering_changes_only_the_attribute():
    from egain.data.synthfaces import SynthFacesDataset
    from egain.editing.evaluate import region_mask, rerender

    ds = SynthFacesDataset.eval_set(count=2, size=64, return_labels=True)
    img, labels = ds.render(0)
    same = rerender(ds, 0, "smile", 0.0)
    np.testing.assert_array_equal(same, img)
    more = rerender(ds, 0, "smile", 0.6)
    diff = np.abs(more.astype(int) - img.astype(int)).sum(-1) > 0
    mask = region_mask(labels, "smile", 64)[0].numpy() > 0
    assert diff.any() and diff[mask].sum() > 0.8 * diff.sum()  # the change is in the mouth region


def test_directions_evaluate_replicates_the_effect_on_several_seeds(gen, tmp_path, monkeypatch):
    """The per-sample change per unit equals a direct computation, and the claim is judged per seed."""
    import numpy as np

    from egain.editing import load_direction
    from egain.workflows.direction_eval import SEED_BASE, direction_effects, evaluate_directions

    clf = FakeClassifier()
    learn_direction_set(
        gen, clf, tmp_path / "dirs", attributes={"smile": ()}, n=200, ratio=0.1, ganspace_k=1, sefa_k=0,
        n_effect=8, log=lambda s: None,
    )  # fmt: skip
    monkeypatch.setenv("EGAIN_DIRECTIONS", str(tmp_path / "dirs"))
    d = load_direction("smile", gen)
    changes, base = direction_effects(gen, clf, {"smile": d}, seed=1, n=6, strength=2.0, batch=4)
    # direct: the same z, edited by -2 and +2 on every W+ row, scored, differenced, per unit
    z = torch.randn(6, gen.style_dim, generator=torch.Generator().manual_seed(SEED_BASE + 1))
    with torch.no_grad():
        wp = gen.mapping(z).unsqueeze(1).repeat(1, gen.n_latent, 1)
        lo = clf.scores(gen.synthesize(wp + d.offset(wp, -2.0), noise_mode="const"))["smile"]
        hi = clf.scores(gen.synthesize(wp + d.offset(wp, 2.0), noise_mode="const"))["smile"]
        plain = clf.scores(gen.synthesize(gen.mapping(z), noise_mode="const"))["smile"]
    np.testing.assert_allclose(changes["smile"]["smile"], ((hi - lo) / 4).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(base["smile"], plain.numpy(), rtol=1e-4, atol=1e-6)
    rec = evaluate_directions(gen, clf, tmp_path / "ev", seeds="0,1", n=40, min_n=10, log=lambda s: None)
    (claim,) = rec["claims"]  # ganspace_0 names no attribute: reported, not claimed
    assert claim["claim"] == "smile->smile" and claim["verdict"] == "holds" and claim["holds_on"] == 2
    rows = {(r["seed"], r["direction"]) for r in rec["rows"]}
    assert rows == {(s, x) for s in (0, 1, "pooled") for x in ("smile", "ganspace_0")}
    assert (tmp_path / "ev" / "claims.csv").is_file() and "| smile | smile | 80 |" in (
        tmp_path / "ev" / "directions.md"
    ).read_text()
    with pytest.raises(InputError, match="unknown direction"):
        evaluate_directions(gen, clf, tmp_path / "ev2", names=["nonesuch"], seeds="0", n=4)

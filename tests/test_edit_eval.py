"""Edit evaluation: regions from the renderer's parsing maps, multi-seed claims, the command line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from egain.cli.main import main
from egain.data.synthfaces import SynthFacesDataset
from egain.data.synthfaces.parsing import CLASS_INDEX
from egain.editing.evaluate import REGION_RULES, parsing_region, rerender
from egain.workflows.compare import FAILS, HOLDS
from egain.workflows.edit_eval import edit_claims, edit_tests, image_scores, pool_images

# -- regions --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ds():
    return SynthFacesDataset.eval_set(count=6, size=64, return_labels=True, return_parsing=True)


def _with(ds, attribute: str) -> int:
    return next(i for i in range(len(ds)) if ds.render(i)[1]["attributes"][attribute])


def test_glasses_region_covers_the_glasses_and_not_the_background(ds):
    i = _with(ds, "glasses")
    img, labels, pm = ds.render(i, parsing=True)
    region = parsing_region("glasses", [pm], labels)[0].numpy() > 0
    glasses = pm == CLASS_INDEX["glasses"]
    assert glasses.any() and region[glasses].all()
    background = pm == CLASS_INDEX["background"]
    assert region[background].mean() < 0.01
    assert region.mean() < 0.1  # the glasses, their lenses and a one-pixel rim: not the face
    # taking them off: the change (frames and the tinted lenses) lies inside the union of both maps
    off, pm_off = rerender(ds, i, "glasses", 0.0, parsing=True)
    assert not (pm_off == CLASS_INDEX["glasses"]).any()
    both = parsing_region("glasses", [pm, pm_off], labels)[0].numpy() > 0
    diff = np.abs(off.astype(float) - img).mean(-1)
    assert diff.sum() > 0 and diff[~both].sum() <= 0.01 * diff.sum()


@pytest.mark.parametrize(
    ("attribute", "change"),
    [("smile", 0.6), ("eyes_open", -0.5), ("age", 25.0), ("yaw", 0.3), ("hat", 1.0), ("beard", 1.0)],
)
def test_each_region_holds_what_the_rerendering_changes(ds, attribute, change):
    outside = total = 0.0
    for i in range(len(ds)):
        img, labels, pm = ds.render(i, parsing=True)
        gt, pm_gt = rerender(ds, i, attribute, change, parsing=True)
        region = parsing_region(attribute, [pm, pm_gt], labels)[0].numpy() > 0
        diff = np.abs(gt.astype(float) - img).mean(-1)
        outside, total = outside + diff[~region].sum(), total + diff.sum()
        if attribute != "yaw":
            assert region.mean() < 0.5  # a region, not the image
        # background in both renders (a hat put on covers some of the source's background)
        still = (pm == CLASS_INDEX["background"]) & (pm_gt == CLASS_INDEX["background"])
        assert region[still].mean() < 0.1 or attribute == "yaw"
    assert total > 0 and outside <= 0.02 * total


def test_every_evaluable_attribute_has_a_region_rule():
    from egain.editing.evaluate import EDITABLE

    assert set(EDITABLE) <= set(REGION_RULES)


# -- claims on synthetic per-image scores ---------------------------------------------------------


def _records(rng, n: int, better: dict[str, float]) -> list[dict]:
    """Per-image records of two cells for methods whose scores are shifted by ``better[method]``."""
    out = []
    base = {k: rng.normal(0.5, 0.1, n) for k in ("gt_ssim", "gt_psnr", "gt_feat", "gt_id", "src_id")}
    for method, shift in better.items():
        for attr in ("smile", "age"):
            noise = {k: rng.normal(0, 0.01, n) for k in base}
            for j in range(n):
                out.append(
                    {
                        "method": method,
                        "attribute": attr,
                        "strength": 3.0,
                        "image": j,
                        "gt_ssim": base["gt_ssim"][j] + shift + noise["gt_ssim"][j],
                        "gt_psnr": base["gt_psnr"][j] + shift + noise["gt_psnr"][j],
                        "gt_feat": base["gt_feat"][j] - shift + noise["gt_feat"][j],  # lower is better
                        "gt_id": base["gt_id"][j],
                        "src_id": base["src_id"][j] + shift + noise["src_id"][j],
                        "outside_change": 0.0,
                        "other_change": 0.0,
                    }
                )
    return out


def _judge_all(per_seed: dict[int, list[dict]], min_n: int = 30) -> dict[str, dict]:
    scores = {s: image_scores(r) for s, r in per_seed.items()}
    tests = [t for s in per_seed for t in edit_tests(scores[s], s)]
    tests += edit_tests(pool_images(scores), "pooled")
    labels = list(scores[next(iter(scores))])
    return {c["claim"]: c for c in edit_claims(tests, list(per_seed), labels, min_n)}


def test_multi_seed_claims_on_synthetic_scores():
    rng = np.random.default_rng(0)
    methods = {"hfgi": 0.05, "hfgi (no ADA)": 0.0, "e2style": 0.05, "e4e": 0.0, "psp": 0.0, "egain": 0.0}
    seed0 = _records(rng, 40, methods)
    seed1 = _records(rng, 40, {**methods, "psp": 0.05})  # psp catches up on seed 1 only
    claims = _judge_all({0: seed0, 1: seed1})
    # a claim for hfgi's ADA (egain has no "(no ADA)" variant here), and e2style vs psp and e4e
    assert set(claims) == {"hfgi:ada>no-ada", "e2style>e4e:id", "e2style>psp:id"}
    ada = claims["hfgi:ada>no-ada"]
    assert ada["verdict"] == HOLDS and ada["holds_on"] == 2 and ada["pooled"] == HOLDS
    assert "with ADA beats hfgi without ADA" in ada["statement"]
    assert claims["e2style>e4e:id"]["verdict"] == HOLDS
    psp = claims["e2style>psp:id"]
    assert psp["holds_on"] == 1 and psp["per_seed"]["1"]["verdict"] == FAILS
    assert psp["verdict"] == "does not replicate"
    # the pooled test pairs the same images: 80 of them
    assert psp["per_seed"]["pooled"]["n"] == 80
    # fewer images than min_n on a seed: no verdict at all
    few = _judge_all({0: seed0, 1: seed1}, min_n=50)
    assert few["hfgi:ada>no-ada"]["verdict"].startswith("no verdict")


def test_image_scores_average_the_cells_of_each_image():
    recs = _records(np.random.default_rng(1), 5, {"a": 0.0})
    s = image_scores(recs)["a"]["gt_ssim"]
    by_cell = [np.array([r["gt_ssim"] for r in recs if r["attribute"] == a]) for a in ("smile", "age")]
    np.testing.assert_allclose(s, (by_cell[0] + by_cell[1]) / 2)
    np.testing.assert_allclose(image_scores(recs, ("age", 3.0))["a"]["gt_ssim"], by_cell[1])


# -- the command line on a tiny configuration -----------------------------------------------------


@pytest.mark.filterwarnings("ignore:images are 64x64")
def test_evaluate_edits_cli_on_two_seeds(tmp_path, monkeypatch, capsys):
    import egain.faces
    import egain.faces.attributes
    from egain import methods
    from egain.editing.directions import Direction, generator_fingerprint, save_direction
    from tests.inversion_helpers import TINY_BASIC, tiny_generator
    from tests.test_attributes import tiny_classifier
    from tests.test_inversion import _tiny_embedder

    gen = tiny_generator("stylegan2", 32)
    dirs = tmp_path / "dirs"
    dirs.mkdir()
    (dirs / "manifest.json").write_text(json.dumps({"generator_fingerprint": generator_fingerprint(gen)}))
    torch.manual_seed(0)
    save_direction(
        Direction(torch.nn.functional.normalize(torch.randn(gen.style_dim), dim=0)), dirs / "smile.pt"
    )
    monkeypatch.setenv("EGAIN_DIRECTIONS", str(dirs))
    for name in ("hfgi", "e4e"):
        methods.create(name, generator=gen, basic_encoder=TINY_BASIC).save(tmp_path / f"{name}.pt")
    clf, emb = tiny_classifier(), _tiny_embedder()
    monkeypatch.setattr(egain.faces.attributes, "load_classifier", lambda spec, device=None: clf)
    monkeypatch.setattr(egain.faces, "load_embedder", lambda spec, device=None: emb)
    out = tmp_path / "report"
    args = ["evaluate-edits", "--method", f"hfgi=hfgi:{tmp_path / 'hfgi.pt'}", "--method"]
    args += [f"e4e=e4e:{tmp_path / 'e4e.pt'}", "--attributes", "smile", "--strength", "2", "--n", "3"]
    assert main([*args, "--seeds", "0,1", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "hfgi with ADA beats hfgi without ADA" in printed and "parsing maps" in printed
    for s in (0, 1):
        assert (out / f"seed{s}" / "edit_scores.csv").is_file() and (
            out / f"seed{s}" / "grid_smile.png"
        ).is_file()
    assert (out / "grid_smile.png").is_file() and (out / "edit_tests.csv").is_file()
    with open(out / "edit_scores_by_seed.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["seed"] for r in rows} == {"0", "1", "pooled"}
    assert {r["method"] for r in rows} == {"hfgi", "hfgi (no ADA)", "e4e"}
    assert all(r["region"] == "parsing maps" for r in rows)
    pooled = [r for r in rows if r["seed"] == "pooled"]
    assert all(r["n"] == "6" for r in pooled)
    with open(out / "claims.csv") as fh:
        claims = list(csv.DictReader(fh))
    assert [c["claim"] for c in claims] == ["hfgi:ada>no-ada"]
    assert claims[0]["verdict"].startswith("no verdict")  # 3 images per seed: too few
    with open(out / "edit_scores_per_image.csv") as fh:
        assert {r["seed"] for r in csv.DictReader(fh)} == {"0", "1"}
    # the deprecated single draw and --seeds together: one line, no work
    assert main([*args, "--seeds", "0", "--replicate", "1", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err

"""egain demo and the bundled examples, with tiny untrained stand-ins for the bundled models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from inversion_helpers import TINY_BASIC, smooth_images, tiny_generator
from PIL import Image
from zoo_helpers import make_tiny_zoo, use_zoo

from egain.cli.main import main
from egain.data.synthfaces import eval_identities, hard_identities, write_synthfaces
from egain.workflows import bundled
from egain.workflows.examples import EXAMPLES_DIR, MANIFEST_PATH, example_files, render_examples


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    return make_tiny_zoo(tmp_path_factory.mktemp("zoo"), bundled.DEMO_METHODS, size=32)


def test_committed_examples_are_what_the_script_renders():
    files = example_files()
    rendered = render_examples()
    assert [f.name for f in files] == [name for name, _, _ in rendered]
    for f, (_, img, _) in zip(files, rendered, strict=True):
        assert np.array_equal(np.asarray(Image.open(f).convert("RGB")), img), f.name
    doc = json.loads(MANIFEST_PATH.read_text())
    kinds = [r["kind"] for r in doc["images"]]
    assert kinds.count("eval") >= 10 and kinds.count("out-of-domain") >= 4
    assert sum(bool(r.get("rare_kinds")) for r in doc["images"]) >= 4
    assert all(Image.open(f).size == (64, 64) for f in files)
    assert sum(f.stat().st_size for f in files) < 200_000


def test_eval_examples_are_the_eval_recipe_pixels_and_ood_ones_are_held_out(tmp_path):
    doc = json.loads(MANIFEST_PATH.read_text())
    evals = [r for r in doc["images"] if r["kind"] == "eval"]
    order = list(eval_identities(0))
    count = max(order.index(r["identity"]) for r in evals) + 1
    write_synthfaces(tmp_path / "eval", size=64, recipe="eval", count=count, show_progress=False)
    for r in evals:
        ref = np.asarray(Image.open(tmp_path / "eval" / f"id{r['identity']:05d}_v00.png"))
        assert np.array_equal(np.asarray(Image.open(EXAMPLES_DIR / r["file"])), ref)
    used = set(eval_identities(0)) | set(hard_identities(0))
    assert all(r["identity"] not in used for r in doc["images"] if r["kind"] != "eval")


def test_demo_end_to_end_writes_reconstructions_grid_and_report(tiny_zoo, monkeypatch, tmp_path, capsys):
    use_zoo(monkeypatch, tiny_zoo)
    out = tmp_path / "outputs"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    names = sorted(f.name for f in example_files())
    for label in bundled.DEMO_METHODS:
        assert sorted(p.name for p in (out / label).glob("*.png")) == names
        assert Image.open(out / label / names[0]).size == (32, 32)  # the stand-ins are 32 px
        timing = json.loads((out / label / "timing.json").read_text())
        assert (
            timing["images"] == len(names)
            and timing["parameters"] > timing["parameters_without_generator"] > 0
        )
        assert f"| {label} |" in printed
    grid = Image.open(out / "comparison.png")
    assert grid.width == 4 * (128 + 2) + 2 and grid.height > len(names) * 128
    # the header strip carries the drawn labels: dark text pixels on white
    header = np.asarray(grid.convert("L"))[:18, 2:130]
    assert (header < 100).any() and (header > 250).mean() > 0.5
    rows = (out / "report" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(names) * 3
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert {"ssim", "scc", "vif", "id", "magface"} <= set(summary["metrics"])
    assert (out / "report" / "plots" / "box_ssim.png").exists() and (out / "table.md").exists()
    assert not list(out.glob(".demo-staging-*"))
    # --input: one file of the user's, paired alone (not with its neighbours in the folder)
    one = example_files()[-1]
    assert main(["demo", "--out", str(tmp_path / "mine"), "--methods", "egain", "--input", str(one)]) == 0
    assert [p.name for p in (tmp_path / "mine" / "egain").glob("*.png")] == [one.name]
    assert len((tmp_path / "mine" / "report" / "scores.csv").read_text().splitlines()) == 2


def test_missing_bundled_weight_is_one_line_and_writes_nothing(tiny_zoo, monkeypatch, tmp_path, capsys):
    partial = tmp_path / "zoo"
    partial.mkdir()
    for f in tiny_zoo.glob("*.pt"):
        if f.stem != "hfgi-stylegan2-64":
            (partial / f.name).symlink_to(f)
    use_zoo(monkeypatch, partial)
    out = tmp_path / "outputs"
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "hfgi-stylegan2-64" in err and "e4e-stylegan2-64" not in err and "docs/zoo.md" in err
    assert "egain zoo add" in err
    assert not out.exists()
    assert main(["demo", "--out", str(out), "--methods", "e4e,nope"]) == 2
    assert "unknown bundled method 'nope'" in capsys.readouterr().err


def test_bundled_model_referencing_its_generator_loads_the_bundled_generator(tmp_path, monkeypatch):
    import egain.methods as methods
    from egain.errors import CheckpointError
    from egain.generators import save_generator
    from egain.methods import generator_io

    monkeypatch.setattr(generator_io, "EMBED_MAX_PARAMS", 0)  # as for generators too large to embed
    g = tiny_generator("stylegan2", 32)
    model = methods.create("e4e", generator=g, basic_encoder=TINY_BASIC)
    model.save(tmp_path / "e4e-stylegan2-64.pt")
    use_zoo(monkeypatch, tmp_path)
    with pytest.raises(CheckpointError, match="needs its generator gan-stylegan2-64"):
        bundled.load_bundled("e4e")
    save_generator(g, tmp_path / "gan-stylegan2-64.pt")
    loaded = bundled.load_bundled("e4e")
    x = smooth_images(2, 32)
    torch.testing.assert_close(loaded.invert(x).reconstruction, model.invert(x).reconstruction)

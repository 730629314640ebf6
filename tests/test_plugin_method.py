"""A method registered from outside ``egain/`` works with create, invert, evaluate, compare and train."""

from __future__ import annotations

import json

import pytest
import torch
from inversion_helpers import image_folder, save_tiny_generator, smooth_images

import egain.methods as methods
from egain.cli.main import main


@pytest.fixture(scope="module")
def plugin():
    import plugin_method  # noqa: F401  (registers "tiny-mean")

    yield "tiny-mean"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    return {
        "gen": save_tiny_generator(root / "g.pt", "stylegan2", 16),
        "data": image_folder(root / "data", 24, 16),
    }


def test_registered_method_is_created_and_inverts(plugin, world):
    assert plugin in methods.available()
    m = methods.create(plugin, generator=world["gen"], width=4)
    inv = m.invert(smooth_images(3, 16))
    assert inv.reconstruction.shape == (3, 3, 16, 16)
    assert inv.latents.shape[1] == m.generator.n_latent


def test_registered_method_trains_inverts_and_evaluates_through_the_cli(plugin, world, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--method", plugin, "--generator", str(world["gen"]), "--data", str(world["data"])]
    args += ["--out", str(run), "--iters", "6", "--batch", "4", "--lr", "1e-2", "--width", "6"]
    args += ["--log-every", "3", "--val-every", "6", "--ckpt-every", "6", "--device", "cpu"]
    assert main(args) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 3 and "l2" in log[0]
    m = methods.create(plugin, checkpoint=run / "model.pt")
    assert m.config == {"width": 6}
    out = tmp_path / "rec"
    argv = [
        "invert",
        "--method",
        plugin,
        "--checkpoint",
        str(run / "model.pt"),
        "--input",
        str(world["data"]),
    ]
    assert main([*argv, "--output", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*.png"))) == 24
    report = tmp_path / "report"
    argv = ["evaluate", "--source", str(world["data"]), "--method", f"{plugin}={out}", "--out", str(report)]
    assert main([*argv, "--metrics", "ssim,psnr", "--identity-backend", "none"]) == 0
    assert (report / "scores.csv").exists()
    # compare: any registered method as NAME=CHECKPOINT beside (or instead of) the bundled ones
    from egain.workflows.compare import run_compare

    result = run_compare(
        tmp_path / "cmp",
        [f"{plugin}={run / 'model.pt'}"],
        sets="eval",
        seeds=[0],
        n=3,
        size=16,
        device="cpu",
        min_n=1,
        progress=False,
    )
    assert any(row["method"] == plugin for row in result.table)


def test_a_flag_of_another_method_is_refused_in_one_line(plugin, world, tmp_path, capsys):
    args = ["train", "--method", plugin, "--generator", str(world["gen"]), "--data", str(world["data"])]
    args += ["--out", str(tmp_path / "x"), "--lambda-d-reg", "1"]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lambda-d-reg is not a loss term of tiny-mean" in err[0]


def test_training_a_method_without_training_step_says_so(world, tmp_path, capsys):
    from egain.methods import InversionMethod, register_method, unregister_method

    @register_method("opt-only", summary="test: optimisation only")
    class OptOnly(InversionMethod):
        def __init__(self, generator, **config):
            super().__init__()
            self.generator = generator

    try:
        assert not OptOnly.trains()
        args = [
            "train",
            "--method",
            "opt-only",
            "--generator",
            str(world["gen"]),
            "--data",
            str(world["data"]),
        ]
        assert main([*args, "--out", str(tmp_path / "y")]) != 0
        assert "opt-only needs no training" in capsys.readouterr().err
    finally:
        unregister_method("opt-only")


def test_entry_point_plugins_are_discovered(monkeypatch):
    from importlib import metadata

    from egain.methods import registry

    class EP:
        name = "ep-method"
        value = "plugin_method:TinyMean"

        def load(self):
            import plugin_method

            return type("EPMethod", (plugin_method.TinyMean,), {})

    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [EP()] if group == "egain.methods" else [])
    try:
        assert "ep-method" in methods.available()
        assert methods.method_class("ep-method").__name__ == "EPMethod"
    finally:
        registry.unregister_method("ep-method")


def test_register_method_rejects_a_non_method_and_a_taken_name():
    from egain.errors import EgainError

    with pytest.raises(EgainError, match="subclass"):
        methods.register_method("x")(int)
    with pytest.raises(EgainError, match="already registered"):

        @methods.register_method("e4e")
        class Other(methods.InversionMethod):
            pass


def test_create_accepts_zoo_names():
    m = methods.create("e4e", checkpoint="zoo:e4e-stylegan2-64")
    assert m.name == "e4e" and m.input_size == 64
    assert torch.isfinite(m.invert(smooth_images(1, 64)).reconstruction).all()

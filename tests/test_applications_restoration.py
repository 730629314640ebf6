"""Restoration/translation encoders: the corruptions, ``egain train --corrupt`` for pSp, E2Style and
e4e on a 16 px generator, and the evaluation against the clean ground truth."""

from __future__ import annotations

import json

import pytest
import torch
from inversion_helpers import TINY_BASIC, image_folder, save_tiny_generator, smooth_images

from egain import methods
from egain.applications.restoration import (
    corrupt,
    evaluate_restoration,
    grayscale,
    inpaint_masks,
    parse_corruption,
)
from egain.cli.main import main
from egain.errors import InputError

SMALL = {"units": (1, 1, 1, 1), "widths": (8, 8, 16, 16), "head_channels": 16}


def test_corruptions_keep_shape_and_do_what_they_say():
    x = smooth_images(4, 32)
    g = grayscale(x)
    assert g.shape == x.shape and torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    m = inpaint_masks(4, 32, torch.Generator().manual_seed(0))
    assert 0.05 < float(m.mean()) < 0.6  # a triangle of a few hundred pixels at 32 px
    y = corrupt(x, "inpaint", torch.Generator().manual_seed(0))
    assert torch.all(y[m.expand_as(y) > 0] == -1) and torch.equal(
        y[m.expand_as(y) == 0], x[m.expand_as(x) == 0]
    )
    s = corrupt(x, "superres:4")
    low = torch.nn.functional.avg_pool2d(x, 4)
    assert torch.allclose(s, torch.nn.functional.interpolate(low, size=32, mode="bilinear"), atol=1e-6)
    sk = corrupt(x, "sketch")
    assert sk.shape == x.shape and float(sk.min()) >= -1 and float(sk.max()) <= 1
    assert parse_corruption("superres:2,8") == ("superres", (2, 8))
    for bad in ("blur", "superres:3", "colorize:2"):
        with pytest.raises(InputError):
            parse_corruption(bad)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("restoration")
    return {
        "gen": save_tiny_generator(root / "g.pt", "stylegan2", 16),
        "data": image_folder(root / "data", 12, 16),
    }


@pytest.mark.parametrize(
    "name, mode, config",
    [
        ("psp", "colorize", {"encoder": SMALL}),
        ("e2style", "inpaint", {"stages": 1, "encoder": {"units": (1, 1, 1), "widths": (8, 16, 16)}}),
        ("e4e", "superres:2,4", {"basic_encoder": TINY_BASIC}),
        ("psp", "sketch", {"encoder": SMALL}),
    ],
)
def test_train_with_corrupt_inputs_and_clean_targets(files, tmp_path, name, mode, config):
    run = tmp_path / "run"
    args = ["train", "--method", name, "--generator", str(files["gen"]), "--data", str(files["data"])]
    args += ["--out", str(run), "--iters", "4", "--batch", "2", "--lambda-lpips", "0", "--lambda-id", "0"]
    args += ["--log-every", "2", "--val-every", "4", "--ckpt-every", "4", "--device", "cpu"]
    args += ["--config", json.dumps(config), "--corrupt", mode]
    assert main(args) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("val_l2" in r for r in log)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["config"]["corrupt"] == mode
    m = methods.create(name, checkpoint=run / "model.pt", memory_format=None)
    clean = smooth_images(6, 16, seed=5)
    report, rows = evaluate_restoration(m, clean, mode, seed=0, metrics=("psnr", "mae"))
    assert report.n == 6 and set(report.restored) == {"psnr", "mae"}
    assert rows["restored"].shape == clean.shape and not torch.equal(rows["input"], clean)


def test_the_loss_compares_with_the_target_not_the_input(files):
    """training_step(batch, step, target=...) scores y against target: equal to a hand computation."""
    from egain.generators import load_generator
    from egain.methods import TrainingContext

    g = load_generator(files["gen"])
    m = methods.create("psp", generator=g, encoder=SMALL, memory_format=None)
    m.setup_training(
        TrainingContext(torch.device("cpu"), {}, {"l2": 1.0, "lpips": 0.0, "id": 0.0, "w_norm": 0.0})
    )
    x = smooth_images(2, 16)
    x_in = grayscale(x)
    loss, terms = m.training_step(x_in, 0, target=x)
    with torch.no_grad():
        y = m.to_input_size(m.synthesize(m.encode(x_in), m.train_noise))
    assert torch.allclose(terms["l2"], torch.nn.functional.mse_loss(y, x), atol=1e-6)
    plain_loss, _ = m.training_step(x_in, 0)  # the old signature still works
    assert not torch.allclose(plain_loss, loss)


def test_methods_without_a_target_hook_are_refused(files, tmp_path, capsys):
    args = ["train", "--method", "dse", "--generator", str(files["gen"]), "--data", str(files["data"])]
    args += ["--out", str(tmp_path / "r"), "--iters", "1", "--device", "cpu", "--corrupt", "colorize"]
    assert main(args) != 0
    assert "accepts_target" in capsys.readouterr().err

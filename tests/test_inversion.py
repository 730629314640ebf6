"""``egain train`` / ``egain invert`` end to end on a 32 px SWAGAN and a folder of small images."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from inversion_helpers import TINY_BASIC, image_folder, save_tiny_generator

import egain.methods as methods
from egain.cli.main import main
from egain.encoders.ada import random_perspective
from egain.methods.composition import progressive_stage
from egain.training.inversion import InversionTrainConfig, train_inversion
from egain.utils.images import load_image

FAST = ["--lambda-lpips", "0", "--lambda-id", "0", "--log-every", "5", "--batch", "4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A generator file, a folder of 16 training images and an e4e trained on them via the CLI."""
    root = tmp_path_factory.mktemp("inv")
    gen = save_tiny_generator(root / "g.pt")
    data = image_folder(root / "data", n=16)
    run = root / "e4e"
    args = ["train", "--method", "e4e", "--generator", str(gen), "--data", str(data), "--out", str(run)]
    args += ["--iters", "30", "--val-every", "30", "--ckpt-every", "30", "--lr", "1e-3", *FAST]
    args += [
        "--progressive-start",
        "10",
        "--progressive-every",
        "5",
        "--config",
        json.dumps({"basic_encoder": TINY_BASIC}),
    ]
    assert main(args) == 0
    return {"root": root, "gen": gen, "data": data, "e4e": run}


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_e4e_training_lowers_the_loss_and_writes_its_run(world):
    run = world["e4e"]
    for name in ("model.pt", "checkpoint.pt", "run.json", "samples/val_000030.png"):
        assert (run / name).exists(), name
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    stages = [r["stage"] for r in _log(run) if "stage" in r]
    assert stages[0] == 0 and stages[-1] == 4  # progressive W+: offsets switched on by the schedule
    assert [progressive_stage(s, 8, 10, 5) for s in (0, 9, 10, 15, 100)] == [0, 0, 1, 2, 7]
    # run.json carries the last validation as the scores that `egain zoo add` copies to a manifest
    last_val = [r for r in _log(run) if "val_l2" in r][-1]
    scores = json.loads((run / "run.json").read_text())["scores"]
    assert scores["val_l2"] == round(last_val["val_l2"], 5) and scores["val_images"] >= 1
    assert scores["val_l2_basic"] == round(last_val["val_l2_basic"], 5)


def test_delta_branch_beats_the_basic_encoder_on_the_training_batch(world, tmp_path):
    """egain (frozen E_b from the e4e run) after a few dozen steps: y closer to x than y0 is."""
    cfg = InversionTrainConfig(
        method="egain",
        generator=str(world["gen"]),
        data=str(world["data"]),
        out=str(tmp_path / "egain"),
        options={"basic_encoder": str(world["e4e"] / "model.pt")},
        iters=30,
        batch=4,
        lr=1e-3,
        lambdas={"lpips": 0, "id": 0},
        log_every=10,
        val_every=30,
        ckpt_every=30,
    )
    rec = train_inversion(cfg)
    assert rec["val_l2"] < rec["val_l2_basic"]
    m = methods.create("egain", checkpoint=tmp_path / "egain" / "model.pt")
    x = torch.stack([load_image(p) for p in sorted(world["data"].glob("*.png"))[:8]])
    inv = m.invert(x)
    basic = F.mse_loss(inv.extras["basic_reconstruction"], x)
    assert F.mse_loss(inv.reconstruction, x) < 0.9 * basic
    # E_b stayed frozen: the basic reconstruction equals the e4e model's
    e4e = methods.create("e4e", checkpoint=world["e4e"] / "model.pt")
    assert torch.allclose(e4e.invert(x).reconstruction, inv.extras["basic_reconstruction"], atol=1e-5)


def test_hfgi_ada_stays_the_identity_on_unwarped_deltas_after_training(world, tmp_path):
    cfg = InversionTrainConfig(
        method="hfgi",
        generator=str(world["gen"]),
        data=str(world["data"]),
        out=str(tmp_path / "hfgi"),
        options={"basic_encoder": str(world["e4e"] / "model.pt")},
        iters=30,
        batch=4,
        lr=1e-3,
        lambdas={"lpips": 0, "id": 0, "align": 1.0},
        log_every=10,
        val_every=30,
        ckpt_every=30,
    )
    train_inversion(cfg)
    assert any("align" in r for r in _log(tmp_path / "hfgi"))
    m = methods.create("hfgi", checkpoint=tmp_path / "hfgi" / "model.pt").eval()
    x = torch.stack([load_image(p) for p in sorted(world["data"].glob("*.png"))[:8]])
    with torch.no_grad():
        r = m.run(x)
        delta, target = r.deltas[0], r.basic_reconstruction
        ident = (m.aligner(delta, target) - delta).abs().mean() / delta.abs().mean()
        warped = random_perspective(delta, 0.15, p=1.0, generator=torch.Generator().manual_seed(0))
        before = (warped - delta).abs().mean()
        after = (m.aligner(warped, target) - delta).abs().mean()
    assert ident < 0.1
    assert after <= before * 1.05  # never makes a warped map worse than leaving it alone


def test_train_resumes_and_invert_cli_writes_named_outputs(world, tmp_path, capsys):
    run = tmp_path / "ext"
    base = [
        "train",
        "--method",
        "egain-external",
        "--generator",
        str(world["gen"]),
        "--data",
        str(world["data"]),
    ]
    base += ["--out", str(run), "--basic-encoder", str(world["e4e"] / "model.pt"), *FAST, "--val-every", "10"]
    assert main([*base, "--iters", "5", "--ckpt-every", "5"]) == 0
    assert main([*base, "--iters", "10", "--ckpt-every", "5"]) == 0
    steps = [r["step"] for r in _log(run) if "loss" in r]
    assert steps == [5, 10]  # the second call resumed at step 5
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 10 and ckpt["model"]["method"] == "egain-external"

    out = tmp_path / "inv"
    args = [
        "invert",
        "--method",
        "egain-external",
        "--checkpoint",
        str(run / "model.pt"),
        "--input",
        str(world["data"]),
    ]
    assert main([*args, "--output", str(out), "--save-latents", "--save-deltas", "--batch-size", "5"]) == 0
    names = sorted(p.name for p in world["data"].glob("*.png"))
    assert sorted(p.name for p in out.glob("*.png")) == names
    lat = torch.load(out / "latents" / "face_000.pt", weights_only=False)
    assert lat["latents"].shape == (6, 32)  # SWAGAN 32 px: n_latent 6
    assert (out / "deltas" / "face_000_delta.png").exists()
    timing = json.loads((out / "timing.json").read_text())
    assert timing["images"] == 16 and timing["seconds_per_image"] > 0 and timing["parameters"] > 0


def test_invert_bad_inputs_fail_clearly_and_write_nothing(world, tmp_path, capsys):
    model = world["e4e"] / "model.pt"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert (
        main(
            [
                "invert",
                "--method",
                "e4e",
                "--checkpoint",
                str(model),
                "--input",
                str(empty),
                "--output",
                str(out),
            ]
        )
        == 2
    )
    assert "contains no images" in capsys.readouterr().err
    assert not out.exists()
    assert (
        main(
            [
                "invert",
                "--method",
                "hfgi",
                "--checkpoint",
                str(model),
                "--input",
                str(world["data"]),
                "--output",
                str(out),
            ]
        )
        == 2
    )
    assert "holds a 'e4e' model, not 'hfgi'" in capsys.readouterr().err
    other = save_tiny_generator(tmp_path / "g16.pt", size=16)
    args = ["invert", "--method", "e4e", "--checkpoint", str(model), "--generator", str(other)]
    assert main([*args, "--input", str(world["data"]), "--output", str(out)]) == 2
    assert "trained for a 32 px swagan generator" in capsys.readouterr().err
    assert not out.exists()
    big = image_folder(tmp_path / "big", n=2, size=48)
    assert (
        main(
            [
                "invert",
                "--method",
                "e4e",
                "--checkpoint",
                str(model),
                "--input",
                str(big),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert "were not 32x32 and were resized" in capsys.readouterr().err
    assert load_image(out / "face_000.png").shape == (3, 32, 32)


def test_train_refuses_a_frozen_random_basic_encoder(world, tmp_path, capsys):
    args = ["train", "--method", "egain", "--generator", str(world["gen"]), "--data", str(world["data"])]
    assert main([*args, "--out", str(tmp_path / "x"), "--iters", "1", *FAST]) == 2
    assert "--basic-encoder" in capsys.readouterr().err


def _tiny_embedder():
    from egain.faces import FaceEmbedder, FacePreprocess, IRSEFaceNet
    from egain.nn.irse import custom_stages

    net = IRSEFaceNet(
        custom_stages((1, 1, 1, 1), (8, 8, 16, 16)), input_size=32, embedding_dim=16, stem_channels=8
    )
    return FaceEmbedder(net, FacePreprocess(input_size=32), "tiny")


def test_identity_and_feature_losses_follow_their_definitions():
    from egain.losses.latent import avg_reg, delta_reg
    from egain.losses.reconstruction import FeatureDistance, IdentityLoss

    emb = _tiny_embedder()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    ref = (1 - F.cosine_similarity(emb.embed(y), emb.embed(x), dim=1)).mean()
    assert torch.allclose(IdentityLoss(emb)(y, x), ref, atol=1e-6)
    assert IdentityLoss(emb)(x, x).abs() < 1e-5
    fd = FeatureDistance(emb)
    assert fd(x, x).abs() < 1e-6 and fd(y, x) > 0
    fd(y, x).backward()
    assert y.grad is not None
    w = torch.randn(2, 4, 5)
    avg = torch.randn(4, 5)
    assert torch.allclose(avg_reg(w, avg), torch.stack([(w[i] - avg).norm() for i in range(2)]).mean())
    ref_d = sum((w[:, i] - w[:, 0]).norm(dim=1).mean() for i in (1, 2))
    assert torch.allclose(delta_reg(w, stage=2), ref_d)


def test_training_with_id_and_feature_distance_terms(world, tmp_path):
    cfg = InversionTrainConfig(
        method="egain",
        generator=str(world["gen"]),
        data=str(world["data"]),
        out=str(tmp_path / "id"),
        options={"basic_encoder": str(world["e4e"] / "model.pt"), "id_net": _tiny_embedder()},
        iters=4,
        batch=4,
        log_every=2,
        val_every=4,
        ckpt_every=4,
    )
    rec = train_inversion(cfg)
    assert rec["id"] >= 0 and rec["lpips"] >= 0 and "l2" in rec


def test_hfgi_adversarial_term_trains_the_image_discriminator(world, tmp_path):
    from egain.generators import build_discriminator, save_discriminator

    torch.manual_seed(0)
    d = build_discriminator("swagan", 32, channels={4: 16, 8: 16, 16: 16, 32: 8})
    save_discriminator(d, tmp_path / "d.pt")
    args = ["train", "--method", "hfgi", "--generator", str(world["gen"]), "--data", str(world["data"])]
    args += ["--out", str(tmp_path / "adv"), "--basic-encoder", str(world["e4e"] / "model.pt"), *FAST]
    args += [
        "--iters",
        "2",
        "--log-every",
        "2",
        "--lambda-adv",
        "0.1",
        "--discriminator",
        str(tmp_path / "d.pt"),
    ]
    assert main(args) == 0
    state = torch.load(tmp_path / "adv" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["aux"]["img_disc"] is not None
    before = d.state_dict()
    assert any(
        not torch.equal(v, before[k]) for k, v in state["aux"]["img_disc"].items() if v.is_floating_point()
    )
    assert any("adv" in r for r in _log(tmp_path / "adv"))

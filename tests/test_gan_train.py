"""End-to-end GAN training on a tiny 16x16 model: CLI, EMA, resume, signals, DDP, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import egain.training.gan as gan_mod
from egain.cli.main import main
from egain.generators import build_generator, load_generator
from egain.training.gan import GanTrainConfig, train_gan

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--device",
    "cpu",
    "--size",
    "16",
    "--style-dim",
    "16",
    "--n-mlp",
    "2",
    "--channel-max",
    "16",
    "--batch",
    "4",
]
TINY_CFG = dict(
    device="cpu", size=16, style_dim=16, n_mlp=2, channel_max=16, batch=4, n_sample=4, log_every=1
)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Ten small images of assorted sizes: coloured blobs on gradients."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(10):
        h, w = 20 + 2 * i, 24
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 25 * i)], -1)
        cy, cx = rng.integers(4, h - 4), rng.integers(4, w - 4)
        arr[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = rng.integers(0, 256, 3)
        Image.fromarray(arr.astype(np.uint8)).save(root / f"{i:02d}.png")
    return root


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_ema_resume_export_and_sample(image_dir, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["gan", "train", "--data", str(image_dir), "--out", str(run), *TINY, "--n-sample", "4"]
    # one step with a fixed EMA decay: g_ema = beta * g_init + (1 - beta) * g_1 exactly
    assert main([*common, "--iters", "1", "--ema-kimg", "0.01", "--ema-rampup", "none", "--seed", "3"]) == 0
    ck = _ckpt(run)
    assert ck["egain_format"] == "gan-train" and ck["step"] == 1
    for key in ("config", "d_config", "g", "d", "g_ema", "g_optim", "d_optim", "rng", "args"):
        assert key in ck
    assert ck["config"]["arch"] == "stylegan2" and ck["config"]["size"] == 16
    torch.manual_seed(3)  # the trainer seeds with --seed before building G
    g_init = build_generator(**ck["config"]).state_dict()
    beta = 0.5 ** (4 / 10)
    for k, v in ck["g_ema"].items():
        if v.is_floating_point():
            assert torch.allclose(v, beta * g_init[k] + (1 - beta) * ck["g"][k], atol=1e-6), k
    assert not _same_state(ck["g_ema"], ck["g"])

    # continue the same run to 6 steps (R1 and path-length steps included via short intervals)
    more = [
        "--iters",
        "6",
        "--d-reg-every",
        "2",
        "--g-reg-every",
        "2",
        "--sample-every",
        "3",
        "--log-every",
        "2",
    ]
    more += ["--ckpt-every", "2", "--keep-snapshots", "2"]
    assert main([*common, *more, "--resume", "auto"]) == 0
    assert "generator written" in capsys.readouterr().out
    ck = _ckpt(run)
    assert ck["step"] == 6
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "d_loss" in r]
    assert [r["step"] for r in steps][-3:] == [2, 4, 6]
    for r in steps:
        assert all(math.isfinite(r[k]) for k in ("d_loss", "g_loss", "real_score", "fake_score"))
    assert any("r1" in r for r in steps) and any("path_loss" in r for r in steps)
    assert {"start", "resume", "end"} <= {r.get("event") for r in records}
    assert (run / "samples" / "000006.png").exists() and (run / "reals.png").exists()
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["000004.pt", "000006.pt"]
    assert Image.open(run / "losses.png").size[0] > 0
    info = json.loads((run / "run.json").read_text())  # provenance for the zoo manifest
    assert info["steps"] == ck["step"] and info["command"].startswith("egain gan train")
    assert len(info["sessions"]) == 2 and info["wall_time_s"] > 0  # the run was resumed once

    # the exported generator is the EMA generator and renders like it
    g = load_generator(run / "generator.pt", device="cpu")
    assert _same_state(g.state_dict(), ck["g_ema"])
    assert g.latent_avg is not None and g.latent_avg.shape == (16,)

    grid, single = tmp_path / "grid.png", tmp_path / "single"
    args = ["gan", "sample", "--checkpoint", str(run / "generator.pt"), "--n", "4", "--out", str(grid)]
    assert main([*args, "--truncation", "0.7", "--out-dir", str(single), "--seed", "1"]) == 0
    assert Image.open(grid).size == (2 * 18 + 2, 2 * 18 + 2)  # 2x2 grid of 16 px, padding 2
    assert sorted(p.name for p in single.iterdir()) == [f"0000{i}.png" for i in range(4)]
    assert main(["gan", "sample", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(grid)]) == 0


def test_killed_run_resumes_to_identical_weights(image_dir, tmp_path):
    opts = dict(
        data=str(image_dir),
        iters=7,
        ckpt_every=3,
        sample_every=100,
        d_reg_every=2,
        g_reg_every=2,
        augment="ada",
        augment_p=0.5,
        ada_interval=2,
        ada_kimg=0.1,
        mirror=True,
        **TINY_CFG,
    )
    full = train_gan(GanTrainConfig(out=str(tmp_path / "full"), preload="yes", **opts))
    assert full["step"] == 7
    # "killed" after 5 steps: the last checkpoint is from step 3, nothing newer was saved
    part = train_gan(GanTrainConfig(out=str(tmp_path / "part"), stop_after=5, **opts))
    assert part["step"] == 5 and _ckpt(tmp_path / "part")["step"] == 3
    # resume (with DataLoader workers this time: same data order, same RNG stream)
    again = train_gan(
        GanTrainConfig(out=str(tmp_path / "part"), resume="auto", preload="no", workers=1, **opts)
    )
    assert again["step"] == 7 and again["hashes"] == full["hashes"]
    a, b = _ckpt(tmp_path / "full"), _ckpt(tmp_path / "part")
    for key in ("g", "d", "g_ema"):
        assert _same_state(a[key], b[key]), key
    assert a["augment"] == b["augment"] and a["mean_path_length"] == b["mean_path_length"]
    assert a["augment"]["p"] != 0.5  # ADA moved p


def test_max_minutes_ends_the_run_with_a_generator(image_dir, tmp_path, monkeypatch, capsys):
    clock = {"t": 0.0}

    def fake_now() -> float:  # each look at the clock is 25 s later: the budget ends at step 5
        clock["t"] += 25.0
        return clock["t"]

    monkeypatch.setattr(gan_mod, "_now", fake_now)
    out = tmp_path / "budget"
    code = main(
        ["gan", "train", "--data", str(image_dir), "--out", str(out), "--iters", "50", "--max-minutes", "2"]
        + TINY
        + ["--n-sample", "4", "--log-every", "1"]
    )
    assert code == 0
    assert "--max-minutes 2 reached" in capsys.readouterr().out
    # deadline 25 + 120 = 145 s; the check after step k reads 25 + 25 k: first >= 145 after step 5
    assert _ckpt(out)["step"] == 5
    assert (out / "generator.pt").exists() and (out / "samples" / "000005.png").exists()
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "time_budget" and e["step"] == 5 for e in events)
    with pytest.raises(Exception, match="max-minutes"):
        train_gan(GanTrainConfig(data=str(image_dir), out=str(tmp_path / "x"), max_minutes=0, **TINY_CFG))


def test_sigterm_saves_and_stops(image_dir, tmp_path, monkeypatch):
    real_update = gan_mod.update_ema
    calls = {"n": 0}

    def update_then_signal(*args, **kwargs):
        real_update(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(gan_mod, "update_ema", update_then_signal)
    out = tmp_path / "sig"
    summary = train_gan(GanTrainConfig(data=str(image_dir), out=str(out), iters=50, **TINY_CFG))
    assert summary["stopped"] and summary["step"] < 50
    assert _ckpt(out)["step"] == summary["step"]
    assert not (out / "generator.pt").exists()
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored
    # a run without --resume refuses to overwrite it
    with pytest.raises(Exception, match="--resume auto"):
        train_gan(GanTrainConfig(data=str(image_dir), out=str(out), iters=50, **TINY_CFG))


def test_torchrun_two_processes_end_with_identical_weights(image_dir, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(EGAIN_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "egain", "gan", "train", "--data", str(image_dir), "--out", str(out), *TINY,
        "--iters", "3", "--d-reg-every", "2", "--g-reg-every", "2", "--n-sample", "4",
        "--augment", "diffaug", "--log-every", "1", "--arch", "swagan",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((out / "ranks" / "rank0.json").read_text())
    r1 = json.loads((out / "ranks" / "rank1.json").read_text())
    assert r0["step"] == r1["step"] == 3
    assert r0 == r1  # g, d and g_ema bit-identical on both ranks
    ck = _ckpt(out)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])  # ranks draw different z
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "24"], "power of two"),
        (["--data", "EMPTY"], "contains no images"),
        (["--augment-p", "0.1", "--batch", "0"], "--batch must be >= 1"),
        (["--device", "gpu"], "--device must be auto, cpu or cuda"),
    ],
)
def test_bad_input_is_a_one_line_error(image_dir, tmp_path, capsys, extra, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    args = ["gan", "train", "--data", str(image_dir), "--out", str(tmp_path / "run"), "--iters", "1"]
    code = main([*args, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_sample_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    code = main(
        ["gan", "sample", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "g.png")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nope.pt" in err and len(err.splitlines()) == 1

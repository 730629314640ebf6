"""``egain train`` stops honestly and resumes exactly: weights equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from inversion_helpers import TINY_BASIC, image_folder, save_tiny_generator

import egain.runtime.checkpoint as ckpt_mod
from egain.runtime.signals import StopFlag
from egain.training import inversion as inv_mod
from egain.training.inversion import InversionTrainConfig, TrainingInterrupted, train_inversion


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return {
        "gen": save_tiny_generator(root / "g.pt", "swagan", 16),
        "data": image_folder(root / "data", 24, 16),
    }


def _cfg(world, out: Path, **kw) -> InversionTrainConfig:
    base = dict(
        method="e4e",
        generator=str(world["gen"]),
        data=str(world["data"]),
        out=str(out),
        iters=6,
        batch=4,
        lr=1e-3,
        lambdas={"lpips": 0, "id": 0},
        options={"progressive_start": 2, "progressive_every": 1},
        log_every=1,
        val_every=3,
        ckpt_every=2,
        device="cpu",
        method_config={"basic_encoder": TINY_BASIC},
    )
    base.update(kw)
    return InversionTrainConfig(**base)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["state_dict"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_signal_saves_and_resume_is_bit_exact(world, tmp_path, monkeypatch):
    # uninterrupted: the reference weights (the latent discriminator trains too: w_reg > 0)
    train_inversion(_cfg(world, tmp_path / "ref"))
    reference = _weights(tmp_path / "ref")

    calls = {"n": 0}
    real_agreed = StopFlag.agreed

    def stop_at_third_step(self, device="cpu"):
        calls["n"] += 1
        return True if calls["n"] == 3 else real_agreed(self, device)

    monkeypatch.setattr(StopFlag, "agreed", stop_at_third_step)
    with pytest.raises(TrainingInterrupted, match="step 3 of 6"):
        train_inversion(_cfg(world, tmp_path / "run"))
    monkeypatch.setattr(StopFlag, "agreed", real_agreed)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 3
    # a write killed mid-way leaves a temporary file of a dead process: cleaned at the next start
    stale = tmp_path / "run" / ".checkpoint.pt.999999999.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (1e9, 1e9))  # written before this process started, as by a killed run
    train_inversion(_cfg(world, tmp_path / "run"))
    assert not stale.exists()
    _assert_same(reference, _weights(tmp_path / "run"))


def test_crash_during_a_checkpoint_write_resumes_from_the_previous_one(world, tmp_path, monkeypatch):
    train_inversion(_cfg(world, tmp_path / "ref"))
    reference = _weights(tmp_path / "ref")

    real_save = ckpt_mod.atomic_torch_save
    writes = {"n": 0}

    def crash_on_the_fourth_write(obj, path):
        writes["n"] += 1
        if writes["n"] == 4:  # step 4: model.pt written, then the process dies writing checkpoint.pt
            tmp = Path(path).with_name(f".{Path(path).name}.999999998.tmp")
            tmp.write_bytes(b"half")
            os.utime(tmp, (1e9, 1e9))
            raise SystemExit("killed")
        return real_save(obj, path)

    monkeypatch.setattr(inv_mod, "atomic_torch_save", crash_on_the_fourth_write)
    with pytest.raises(SystemExit):
        train_inversion(_cfg(world, tmp_path / "run"))
    monkeypatch.setattr(inv_mod, "atomic_torch_save", real_save)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2
    train_inversion(_cfg(world, tmp_path / "run"))
    _assert_same(reference, _weights(tmp_path / "run"))
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.slow
def test_sigterm_to_the_cli_saves_and_exits_non_zero(world, tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "egain.cli.main",
        "train",
        "--method",
        "e4e",
        "--generator",
        str(world["gen"]),
    ]
    cmd += [
        "--data",
        str(world["data"]),
        "--out",
        str(out),
        "--iters",
        "100000",
        "--batch",
        "4",
        "--device",
        "cpu",
    ]
    cmd += ["--lambda-lpips", "0", "--lambda-id", "0", "--log-every", "1", "--ckpt-every", "100000"]
    cmd += ["--config", '{"basic_encoder": {"type": "e4e", "units": [1, 1, 1, 1], "widths": [8, 8, 16, 16]}}']
    env = {**os.environ, "EGAIN_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = out / "log.jsonl"
    import time

    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "training stopped by a signal" in err and "resumes it" in err
    assert len(err.strip().splitlines()) == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] >= 2

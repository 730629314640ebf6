"""Zoo manifests: written from the run record, verified by sha256."""

from __future__ import annotations

import json

import torch

from egain.training.runinfo import RunClock, write_run_info
from egain.zoo.manage import add_to_zoo, verify


def test_add_and_verify_roundtrip(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "export.pt")
    clock = RunClock()
    info = write_run_info(tmp_path / "run.json", clock, steps=7, device="cpu", extra={"scores": {"fid": 1.5}})
    assert info["steps"] == 7 and info["wall_time_s"] >= 0
    zoo = tmp_path / "zoo"
    rec = add_to_zoo("m", tmp_path / "export.pt", tmp_path / "run.json", kind="generator", weights_dir=zoo)
    assert rec["scores"] == {"fid": 1.5} and rec["steps"] == 7
    assert json.loads((zoo / "m.json").read_text())["sha256"] == rec["sha256"]
    assert verify("m", weights_dir=zoo)[0]
    (zoo / "m.pt").write_bytes(b"tampered")
    ok, msg = verify("m", weights_dir=zoo)
    assert not ok and "does not match" in msg


def test_clock_accumulates_across_resume():
    a = RunClock()
    state = a.state_dict()
    state["seconds"] = 100.0
    b = RunClock()
    b.load_state_dict(state)
    assert b.seconds >= 100.0
    assert len(b.state_dict()["sessions"]) == 2

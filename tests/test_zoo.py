"""Zoo manifests: written from the run record, verified by sha256."""

from __future__ import annotations

import json

import torch

from egain.runtime.runinfo import RunClock, write_run_info
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


def test_run_info_names_the_command_that_finished_the_run(tmp_path, monkeypatch):
    """A run resumed with a longer --iters is reproduced by its last command; all stay listed."""
    from egain.runtime import runinfo

    monkeypatch.setattr(runinfo, "_COMMAND", None)  # restored after the test
    runinfo.set_command(["egain", "train", "--iters", "3000"])
    first = RunClock()
    runinfo.set_command(["egain", "train", "--iters", "6000"])
    second = RunClock()
    second.load_state_dict(first.state_dict())
    info = write_run_info(tmp_path / "run.json", second, steps=6000, device="cpu")
    assert info["command"] == "egain train --iters 6000"
    assert [s["command"] for s in info["sessions"]] == [
        "egain train --iters 3000",
        "egain train --iters 6000",
    ]


def test_bundled_method_references_zoo_generator(tmp_path, monkeypatch):
    """`zoo add --generator-zoo` stores a reference, and `create(name)` with no paths uses the zoo."""
    import pytest
    from inversion_helpers import TINY_BASIC, tiny_generator

    import egain.methods as methods
    from egain import zoo
    from egain.errors import CheckpointError
    from egain.generators import save_generator
    from egain.runtime.checkpoint import load_checkpoint

    g = tiny_generator("swagan", 16)
    zdir = tmp_path / "zoo"
    zdir.mkdir()
    save_generator(g, zdir / "gan-swagan-64.pt", latent_avg=g.latent_avg)
    model = methods.create("egain", generator=g, basic_encoder=TINY_BASIC)
    model.save(tmp_path / "model.pt")
    write_run_info(tmp_path / "run.json", RunClock(), steps=1, device="cpu")
    add_to_zoo(
        "egain-swagan-64",
        tmp_path / "model.pt",
        tmp_path / "run.json",
        kind="method",
        weights_dir=zdir,
        generator_zoo="gan-swagan-64",
    )
    stored = load_checkpoint(zdir / "egain-swagan-64.pt")
    assert stored["generator"]["zoo"] == "gan-swagan-64" and "state_dict" not in stored["generator"]
    assert (zdir / "egain-swagan-64.pt").stat().st_size < (tmp_path / "model.pt").stat().st_size

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", zdir)
    bundled = methods.create("egain")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(bundled.invert(x).reconstruction, model.invert(x).reconstruction, atol=1e-6)

    other = tiny_generator("swagan", 16, seed=5)
    methods.create("egain", generator=other, basic_encoder=TINY_BASIC).save(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not the zoo generator"):
        add_to_zoo(
            "x",
            tmp_path / "other.pt",
            tmp_path / "run.json",
            kind="method",
            weights_dir=zdir,
            generator_zoo="gan-swagan-64",
        )


def test_half_storage_loads_as_float32(tmp_path, monkeypatch):
    """'zoo add --half' stores float16 (about half the bytes); the model comes back in float32 with
    its weights rounded to float16, and reconstructs like the float32 model to float16 rounding."""
    import pytest
    from inversion_helpers import tiny_generator

    import egain.methods as methods
    from egain import zoo
    from egain.errors import CheckpointError
    from egain.generators import save_generator
    from egain.runtime.checkpoint import load_checkpoint

    g = tiny_generator("stylegan2", 16)
    zdir = tmp_path / "zoo"
    zdir.mkdir()
    save_generator(g, zdir / "gan-stylegan2-64.pt", latent_avg=g.latent_avg)
    model = methods.create("psp", generator=g)
    model.save(tmp_path / "model.pt")
    write_run_info(tmp_path / "run.json", RunClock(), steps=1, device="cpu")
    rec = add_to_zoo(
        "psp-stylegan2-64",
        tmp_path / "model.pt",
        tmp_path / "run.json",
        kind="method",
        weights_dir=zdir,
        generator_zoo="gan-stylegan2-64",
        half=True,
    )
    assert rec["stored_dtype"] == "float16"
    stored = load_checkpoint(zdir / "psp-stylegan2-64.pt")
    assert {v.dtype for v in stored["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    full = add_to_zoo(
        "full",
        tmp_path / "model.pt",
        tmp_path / "run.json",
        kind="method",
        weights_dir=zdir,
        generator_zoo="gan-stylegan2-64",
    )
    assert rec["size_bytes"] < 0.6 * full["size_bytes"]

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", zdir)
    loaded = methods.create("psp", checkpoint="zoo:psp-stylegan2-64")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert all(b.dtype == torch.float32 for b in loaded.buffers() if b.is_floating_point())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        half_rec = loaded.invert(x).reconstruction
        full_rec = model.invert(x).reconstruction
    assert half_rec.dtype == torch.float32
    assert 0 < (half_rec - full_rec).abs().max() < 0.05
    with pytest.raises(CheckpointError, match="method models only"):
        add_to_zoo(
            "g",
            zdir / "gan-stylegan2-64.pt",
            tmp_path / "run.json",
            kind="generator",
            half=True,
            weights_dir=zdir,
        )

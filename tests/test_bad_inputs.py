"""Bad inputs: every one is a single error line, a non-zero exit, and no file that existed changes.

Covers hostile checkpoints (a pickle whose ``__reduce__`` would create a marker file) through every
loader, API and CLI; zero-byte, truncated, random, foreign, wrong-shape checkpoints and images; odd
image modes, sizes, bit depths and EXIF orientations; outputs that would destroy inputs; outputs of
the wrong kind; impossible numbers and devices. CLI commands run in-process through
``egain.cli.main.main`` (fast); a few run as subprocesses to see the real stderr and exit code.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from inversion_helpers import TINY_BASIC, image_folder, save_tiny_generator, tiny_generator
from PIL import Image

import egain.methods as methods
from egain.cli.main import main
from egain.errors import CheckpointError, EgainError, InputError
from egain.runtime.checkpoint import (
    CheckpointRefused,
    atomic_torch_save,
    clean_stale_tmp,
    convert_checkpoint,
    load_checkpoint,
)
from egain.utils.images import check_image_range, load_image, open_image
from egain.utils.paths import RUN_MARKER

# --------------------------------------------------------------------------------------------------
# hostile files


class Hostile:
    """Unpickling this calls ``open(marker, "w")``: a marker file appears if any loader runs it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class ForeignConfig:
    """A harmless custom class: refused like any non-allow-listed type, convertible when trusted."""

    def __init__(self):
        self.size = 32
        self.name = "foreign"


def hostile_pt(path: Path, marker: Path, body: dict | None = None) -> Path:
    """A torch zip checkpoint that looks like a generator but carries the payload."""
    torch.save({**(body or {}), "args": Hostile(marker)}, path)
    return path


def hostile_raw_pickle(path: Path, marker: Path) -> Path:
    """A bare pickle (not a torch zip file) with the payload."""
    path.write_bytes(pickle.dumps({"g_ema": {}, "args": Hostile(marker)}, protocol=2))
    return path


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (hidden files included)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def unchanged(before: dict[str, str]) -> None:
    """No file of ``before`` vanished or changed."""
    for path, digest in before.items():
        assert Path(path).is_file(), f"{path} vanished"
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest, f"{path} changed"


def one_line(capsys, code: int, *needles: str) -> str:
    """Exit code non-zero, stderr exactly one non-empty line without a traceback, containing needles."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def run_cli(argv: list[str]) -> int:
    """``main(argv)``; argparse's usage errors (SystemExit) count as exit codes."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def usage_error(capsys, code: int, *needles: str) -> None:
    """argparse's refusal: exit 2, one error line naming the argument, no traceback."""
    line = one_line(capsys, code, *needles)
    assert code == 2 and "error: argument" in line and "--help" in line, line


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny generator, an e4e model, an embedder.pt, a data folder and a hostile file of each kind."""
    from egain.faces.embedder import embedder_checkpoint
    from egain.faces.nets import FaceNetConfig, IRSEFaceNet
    from egain.faces.preprocess import FacePreprocess

    root = tmp_path_factory.mktemp("bad")
    gen = save_tiny_generator(root / "gen.pt", size=16)
    torch.manual_seed(0)
    model = methods.create("e4e", generator=tiny_generator("swagan", 16), basic_encoder=TINY_BASIC)
    model.save(root / "e4e.pt")
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=24)
    torch.save(
        embedder_checkpoint(IRSEFaceNet.from_config(cfg), cfg, FacePreprocess(input_size=16), "arcface"),
        root / "embedder.pt",
    )
    data = image_folder(root / "data", n=3, size=16)
    marker = root / "PWNED"
    return {
        "root": root,
        "gen": gen,
        "e4e": root / "e4e.pt",
        "embedder": root / "embedder.pt",
        "data": data,
        "marker": marker,
        "hostile": hostile_pt(root / "hostile.pt", marker, {"g_ema": {}}),
        "hostile_raw": hostile_raw_pickle(root / "hostile_raw.pth", marker),
    }


@pytest.fixture(autouse=True)
def _no_marker(world):
    """Every test ends with the marker absent: no loader ran the payload."""
    world["marker"].unlink(missing_ok=True)
    yield
    assert not world["marker"].exists(), "a loader executed code from a checkpoint"


# --------------------------------------------------------------------------------------------------
# 1. hostile checkpoints: no loader runs them


def test_the_hostile_file_is_real_when_trusted(world):
    """Sanity: full unpickling does run the payload (so the refusals below mean something)."""
    obj = load_checkpoint(world["hostile"], trust=True)
    obj["args"].close()
    assert world["marker"].exists()
    world["marker"].unlink()


@pytest.mark.parametrize("kind", ["hostile", "hostile_raw"])
def test_api_loaders_refuse_hostile_files(world, kind, tmp_path):
    from egain.faces import load_embedder
    from egain.generators import load_generator
    from egain.generators.io import load_discriminator
    from egain.metrics.lpips import load_lpips
    from egain.zoo.manage import add_to_zoo

    bad = world[kind]
    run_info = tmp_path / "run.json"
    run_info.write_text("{}")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "gen-zoo.pt").write_bytes(world["gen"].read_bytes())
    loaders = {
        "load_generator": lambda: load_generator(bad, device="cpu"),
        "load_discriminator": lambda: load_discriminator(bad, device="cpu"),
        "create(checkpoint=)": lambda: methods.create("e4e", checkpoint=bad, device="cpu"),
        "create(generator=)": lambda: methods.create("e4e", generator=bad, device="cpu"),
        "create(checkpoint=, generator=)": lambda: methods.create(
            "e4e", checkpoint=world["e4e"], generator=bad, device="cpu"
        ),
        "load_method": lambda: methods.load_method(bad),
        "load_embedder(path)": lambda: load_embedder(str(bad), device="cpu"),
        "load_embedder(magface)": lambda: load_embedder(f"magface-iresnet100:{bad}", device="cpu"),
        "load_embedder(arcface)": lambda: load_embedder(f"arcface-irse50:{bad}", device="cpu"),
        "load_lpips": lambda: load_lpips("alex", backbone=bad, linear=bad),
        "zoo add": lambda: add_to_zoo("x", bad, run_info, kind="generator", weights_dir=zoo),
        "zoo add --generator-zoo": lambda: add_to_zoo(
            "x", bad, run_info, kind="method", weights_dir=zoo, generator_zoo="gen-zoo"
        ),
        "load_checkpoint": lambda: load_checkpoint(bad),
    }
    for name, load in loaders.items():
        with pytest.raises(CheckpointError) as info:
            load()
        msg = str(info.value)
        assert "\n" not in msg, name
        assert "refused" in msg and "open" in msg and "egain checkpoint convert" in msg, (name, msg)
        assert not world["marker"].exists(), name
    assert sorted(p.name for p in zoo.iterdir()) == ["gen-zoo.pt"]
    assert len(loaders) == 13


def _cli_hostile_cases(world, tmp_path) -> dict[str, list]:
    bad, data, out = world["hostile"], world["data"], tmp_path / "out"
    run_info = tmp_path / "run.json"
    run_info.write_text("{}")
    return {
        "invert --checkpoint": ["invert", "--method", "e4e", "--checkpoint", bad, "--input", data, "--output", out],
        "invert --generator": [
            "invert", "--method", "e4e", "--checkpoint", world["e4e"], "--generator", bad,
            "--input", data, "--output", out,
        ],
        "gan sample --checkpoint": ["gan", "sample", "--checkpoint", bad, "--out", tmp_path / "s.png", "--device", "cpu"],
        "gan train --resume": [
            "gan", "train", "--data", data, "--out", tmp_path / "run", "--size", "16", "--batch", "2",
            "--iters", "1", "--resume", bad, "--device", "cpu",
        ],
        "train --basic-encoder": [
            "train", "--method", "hfgi", "--generator", world["gen"], "--data", data,
            "--basic-encoder", bad, "--out", tmp_path / "inv", "--iters", "1", "--device", "cpu",
        ],
        "faces evaluate --embedder": ["faces", "evaluate", "--embedder", bad, "--data", data, "--device", "cpu"],
        "zoo add --generator-zoo": [
            "zoo", "add", "--name", "x", "--weights", bad, "--run-info", run_info, "--kind", "method",
            "--generator-zoo", "gan-swagan-64",
        ],
        "zoo add": ["zoo", "add", "--name", "x", "--weights", bad, "--run-info", run_info, "--kind", "generator"],
    }  # fmt: skip


def test_cli_loaders_refuse_hostile_files(world, tmp_path, capsys, monkeypatch):
    from egain.zoo import manage

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setattr(manage, "add_to_zoo", functools.partial(manage.add_to_zoo, weights_dir=zoo))
    before = snapshot(world["root"])
    cases = _cli_hostile_cases(world, tmp_path)
    for name, argv in cases.items():
        code = run_cli(argv)
        one_line(capsys, code, "refused", "egain checkpoint convert")
        assert not world["marker"].exists(), name
    unchanged(before)
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.png").exists()
    assert list(zoo.iterdir()) == []
    assert len(cases) == 8


def test_evaluate_refuses_a_hostile_identity_backend(world, tmp_path, capsys):
    """evaluate reports a metric it cannot compute instead of failing; the refusal is that reason."""
    rec = tmp_path / "rec"
    rec.mkdir()
    for p in world["data"].iterdir():
        (rec / p.name).write_bytes(p.read_bytes())
    argv = ["evaluate", "--source", world["data"], "--method", f"m={rec}", "--out", tmp_path / "rep"]
    argv += ["--identity-backend", world["hostile"], "--magface-backend", "none", "--metrics", "ssim,id"]
    code = run_cli([*argv, "--bootstrap", "10", "--device", "cpu", "--grid", "0"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert "not computed: id:" in err and "refused" in err
    assert not world["marker"].exists()


def test_trust_opt_in_and_conversion(world, tmp_path, capsys, monkeypatch):
    """A foreign (harmless) class is refused; trusted once, it converts to a file that loads safely."""
    src = tmp_path / "foreign.pt"
    torch.save({"config": ForeignConfig(), "w": torch.ones(2)}, src)
    with pytest.raises(CheckpointRefused, match="ForeignConfig"):
        load_checkpoint(src)
    dst = tmp_path / "foreign.safetensors"
    assert run_cli(["checkpoint", "convert", src, dst]) == 2
    one_line(capsys, 2, "refused")
    assert run_cli(["checkpoint", "convert", src, dst, "--trust"]) == 0
    capsys.readouterr()
    obj = load_checkpoint(dst)
    assert obj["config"] == {"size": 32, "name": "foreign"} and torch.equal(obj["w"], torch.ones(2))
    monkeypatch.setenv("EGAIN_TRUST_CHECKPOINTS", "1")
    assert isinstance(load_checkpoint(src)["config"], ForeignConfig)


def test_published_pickled_types_still_load(tmp_path):
    """argparse.Namespace (rosinality train.py) and numpy RNG states are data, not code."""
    g = tiny_generator("stylegan2", 16)
    sd = {k: v for k, v in g.state_dict().items()}
    path = tmp_path / "rosinality.pt"
    torch.save(
        {"g_ema": sd, "args": argparse.Namespace(size=16, latent=32), "rng": np.random.get_state()}, path
    )
    obj = load_checkpoint(path)
    assert obj["args"].size == 16 and isinstance(obj["rng"][1], np.ndarray)


def test_safetensors_round_trip_and_generator(tmp_path):
    from egain.generators import load_generator, save_generator

    g = tiny_generator("swagan", 16)
    save_generator(g, tmp_path / "g.safetensors")
    h = load_generator(tmp_path / "g.safetensors", device="cpu")
    z = torch.randn(2, g.style_dim)
    assert torch.equal(g.synthesize(g.mapping(z)), h.synthesize(h.mapping(z)))
    m = methods.create("e4e", generator=g, basic_encoder=TINY_BASIC).eval()
    m.save(tmp_path / "m.safetensors")
    back_m = methods.create("e4e", checkpoint=tmp_path / "m.safetensors", device="cpu")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(back_m.invert(x).reconstruction, m.invert(x).reconstruction)
    nested = {
        "a": {"b": torch.arange(3)},
        "t": (1, "x"),
        "n": None,
        "k": {3: 1.5},
        "ns": argparse.Namespace(q=1),
    }
    atomic_torch_save(nested, tmp_path / "n.safetensors")
    back = load_checkpoint(tmp_path / "n.safetensors")
    assert torch.equal(back["a"]["b"], torch.arange(3)) and back["t"] == (1, "x") and back["k"] == {3: 1.5}
    assert back["ns"].q == 1 and back["n"] is None


# --------------------------------------------------------------------------------------------------
# 2. broken checkpoints: one line each


def _broken_checkpoints(world, root: Path) -> dict[str, Path]:
    good = world["e4e"].read_bytes()
    files = {
        "zero-byte": b"",
        "truncated": good[: len(good) // 3],
        "random-bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text": b"this is not a checkpoint\n",
        "bad-safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......",
    }
    out = {}
    for name, data in files.items():
        suffix = ".safetensors" if "safetensors" in name else ".pt"
        out[name] = root / f"{name}{suffix}"
        out[name].write_bytes(data)
    torch.save({"foo": torch.zeros(3), "bar": 1}, root / "foreign.pt")
    out["foreign"] = root / "foreign.pt"
    torch.save([torch.zeros(3)], root / "list.pt")
    out["not-a-dict"] = root / "list.pt"
    out["folder"] = root / "folder.pt"
    out["folder"].mkdir()
    out["missing"] = root / "missing.pt"
    # a checkpoint of the right method whose tensor has the wrong shape
    ckpt = torch.load(world["e4e"], weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("basic_encoder.") and k.endswith("weight"))
    ckpt["state_dict"][key] = torch.zeros(7, 7)
    torch.save(ckpt, root / "wrong-shape.pt")
    out["wrong-shape"] = root / "wrong-shape.pt"
    return out


def test_broken_checkpoints_are_one_line_everywhere(world, tmp_path, capsys):
    from egain.generators import load_generator

    broken = _broken_checkpoints(world, tmp_path)
    before = snapshot(world["root"], *[p for p in broken.values() if p.is_file()])
    for name, path in broken.items():
        with pytest.raises(EgainError) as info:
            methods.create("e4e", checkpoint=path, device="cpu")
        assert "\n" not in str(info.value) and str(path) in str(info.value), (name, info.value)
        if name == "wrong-shape":
            assert "has shape [7, 7]" in str(info.value)
        with pytest.raises(EgainError):
            load_generator(path, device="cpu")
        out = tmp_path / f"out-{name}"
        argv = ["invert", "--method", "e4e", "--checkpoint", path, "--input", world["data"], "--output", out]
        one_line(capsys, run_cli(argv), str(path))
        assert not out.exists()
        one_line(capsys, run_cli(["gan", "sample", "--checkpoint", path, "--out", tmp_path / "s.png"]))
        one_line(capsys, run_cli(["faces", "evaluate", "--embedder", path, "--data", world["data"]]))
    unchanged(before)
    assert len(broken) == 10


# --------------------------------------------------------------------------------------------------
# 3. images read as a person sees them


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = np.asarray(open_image(tmp_path / "g16.png"))[..., 0].astype(int)
    want = np.round(ramp / 65535 * 255).astype(int)
    assert np.abs(got - want).max() <= 1 and got.min() == 0 and got.max() > 200


def test_evaluate_scores_a_16_bit_png_against_its_8_bit_copy(tmp_path, capsys):
    src, rec = tmp_path / "src", tmp_path / "rec"
    src.mkdir()
    rec.mkdir()
    rng = np.random.default_rng(0)
    img16 = (rng.integers(0, 65536, (32, 32))).astype(np.uint16)
    Image.fromarray(img16).save(src / "a.png")
    Image.fromarray(np.round(img16 / 257).astype(np.uint8)).save(rec / "a.png")
    argv = [
        "evaluate",
        "--source",
        src,
        "--method",
        f"m={rec}",
        "--out",
        tmp_path / "rep",
        "--metrics",
        "psnr",
    ]
    assert run_cli([*argv, "--bootstrap", "0", "--device", "cpu", "--grid", "0"]) == 0
    import csv

    rows = list(csv.DictReader((tmp_path / "rep" / "scores.csv").open()))
    assert float(rows[0]["psnr"]) > 40  # was 2.9 dB when the 16-bit file read as all white


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white: stored landscape, meant portrait
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW to view
    im.save(tmp_path / "o6.jpg", exif=exif, quality=95)
    seen = open_image(tmp_path / "o6.jpg")
    assert seen.size == (20, 40)  # upright: portrait
    top = np.asarray(seen)[:20].mean()
    bottom = np.asarray(seen)[20:].mean()
    assert top > 200 and bottom < 50  # the white half is on top after rotating 90 degrees clockwise


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "P-transparent", "RGBA", "CMYK", "I;16", "I", "F", "F-unit", "YCbCr"]
)
def test_every_mode_becomes_rgb_deliberately(tmp_path, mode):
    base = Image.fromarray(np.full((8, 8, 3), 100, np.uint8))
    if mode == "P-transparent":
        im = base.convert("P")
        im.info["transparency"] = im.getpixel((0, 0))
    elif mode == "I;16":
        im = Image.fromarray(np.full((8, 8), 100 * 257, np.uint16))
    elif mode == "I":
        im = Image.fromarray(np.full((8, 8), 100 * 257, np.int32))
    elif mode == "F":
        im = Image.fromarray(np.full((8, 8), 100.0, np.float32))
    elif mode == "F-unit":
        im = Image.fromarray(np.full((8, 8), 100 / 255, np.float32))
    else:
        im = base.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I", "F", "F-unit", "CMYK", "YCbCr", "I;16") else "x.png")
    if mode == "YCbCr":
        path = tmp_path / "x.jpg"
    im.save(path, **({"transparency": im.info["transparency"]} if "transparency" in im.info else {}))
    rgb = open_image(path)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)
    arr = np.asarray(rgb).astype(int)
    if mode in ("L", "I;16", "I", "F", "F-unit", "YCbCr"):
        assert np.abs(arr - 100).max() <= 2, (mode, arr.mean())
    if mode in ("LA", "RGBA"):
        assert np.abs(arr - 100).max() <= 1  # opaque: unchanged
    if mode == "P-transparent":
        assert arr.min() == 255  # the only colour is transparent: composited on white


def test_transparent_pixels_are_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 3] = 0  # fully transparent black
    arr[0, 0] = (0, 0, 0, 255)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    rgb = np.asarray(open_image(tmp_path / "a.png"))
    assert (rgb[0, 0] == 0).all() and (rgb[1:, 1:] == 255).all()


@pytest.mark.parametrize("size", [(1, 1), (1, 200), (300, 7)])
def test_odd_image_sizes_load(tmp_path, size):
    Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png", 16).shape == (3, 16, 16)


def _broken_images(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(good, format="PNG")
    files = {
        "zero-byte.png": b"",
        "truncated.png": good.getvalue()[:40],
        "random.png": np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "text.jpg": b"hello\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {n: root / n for n in files}


def test_broken_images_are_one_line(world, tmp_path, capsys):
    broken = _broken_images(tmp_path / "imgs")
    for name, path in broken.items():
        with pytest.raises(InputError) as info:
            load_image(path)
        assert "\n" not in str(info.value) and name in str(info.value)
        folder = tmp_path / f"in-{name}"
        folder.mkdir()
        (folder / name).write_bytes(path.read_bytes())
        before = snapshot(folder, world["root"])
        out = tmp_path / f"out-{name}"
        argv = ["invert", "--method", "e4e", "--checkpoint", world["e4e"], "--input", folder, "--output", out]
        one_line(capsys, run_cli(argv), name)
        unchanged(before)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="folder"):
        open_image(tmp_path / "dir.png")
    with pytest.raises(InputError, match="does not exist"):
        open_image(tmp_path / "missing.png")


def test_tensor_range_is_checked(world):
    model = methods.create("e4e", checkpoint=world["e4e"], device="cpu")
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match=r"expected floats in \[-1, 1\].*127.5"):
        model.invert(x * 255)
    with pytest.raises(InputError, match="NaN"):
        model.invert(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.warns(UserWarning, match=r"x \* 2 - 1"):
        model.invert(x)
    model.invert(x * 2 - 1)  # the right range: no complaint
    check_image_range(torch.tensor([-1.05, 1.05]))  # generator overshoot is fine


# --------------------------------------------------------------------------------------------------
# 4. outputs never destroy inputs


def _invert(world, inp, out, *extra) -> list:
    return [
        "invert",
        "--method",
        "e4e",
        "--checkpoint",
        world["e4e"],
        "--input",
        inp,
        "--output",
        out,
        *extra,
    ]


def test_invert_refuses_to_write_into_its_input(world, tmp_path, capsys):
    data = image_folder(tmp_path / "data", n=2, size=16)
    before = snapshot(data)
    one_line(capsys, run_cli(_invert(world, data, data)), "is the input folder")
    one_line(capsys, run_cli(_invert(world, data, data / "sub")), "lies inside the input folder")
    one_line(capsys, run_cli(_invert(world, data / "face_000.png", data)), "is the input folder")
    unchanged(before)
    assert sorted(p.name for p in data.iterdir()) == ["face_000.png", "face_001.png"]
    # a single file may be inverted into a folder beside it (the README's photo command)
    assert run_cli(_invert(world, data / "face_000.png", data / "out" / "photo")) == 0
    unchanged(before)


def test_invert_refuses_another_runs_folder_unless_overwrite(world, tmp_path, capsys):
    data = world["data"]
    out = tmp_path / "out"
    assert run_cli(_invert(world, data, out)) == 0
    capsys.readouterr()
    assert (out / RUN_MARKER).is_file()
    assert run_cli(_invert(world, data, out)) == 0  # the same run again: allowed
    capsys.readouterr()
    before = snapshot(out)
    code = run_cli(_invert(world, data, out, "--passes", "0"))  # another configuration
    one_line(capsys, code, "holds the results of another run", "--overwrite")
    unchanged(before)
    foreign = tmp_path / "holiday"
    foreign.mkdir()
    (foreign / "face_000.png").write_bytes(b"my photo")
    before = snapshot(foreign)
    one_line(capsys, run_cli(_invert(world, data, foreign)), "did not record writing", "--overwrite")
    unchanged(before)
    assert run_cli(_invert(world, data, foreign, "--overwrite")) == 0


def test_invert_refuses_colliding_output_names(world, tmp_path, capsys):
    data = image_folder(tmp_path / "data", n=1, size=16)
    Image.new("RGB", (16, 16)).save(data / "face_000.jpg")
    before = snapshot(data)
    one_line(capsys, run_cli(_invert(world, data, tmp_path / "out")), "face_000.png", "face_000.jpg")
    assert not (tmp_path / "out").exists()
    unchanged(before)


def test_outputs_of_the_wrong_kind_are_one_line(world, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    before = snapshot(a_file)
    data, gen = world["data"], world["gen"]
    cases = {
        "invert": _invert(world, data, a_file),
        "evaluate": ["evaluate", "--source", data, "--method", f"m={data}", "--out", a_file],
        "gan sample --out folder": ["gan", "sample", "--checkpoint", gen, "--out", a_dir],
        "gan sample --out under a file": ["gan", "sample", "--checkpoint", gen, "--out", a_file / "x.png"],
        "gan train": ["gan", "train", "--data", data, "--out", a_file, "--size", "16", "--iters", "1"],
        "train": ["train", "--method", "e4e", "--generator", gen, "--data", data, "--out", a_file],
        "faces train": ["faces", "train", "--loss", "arcface", "--data", data, "--out", a_file],
        "faces evaluate": [
            "faces",
            "evaluate",
            "--embedder",
            world["embedder"],
            "--data",
            data,
            "--out",
            a_file,
        ],
        "checkpoint convert": ["checkpoint", "convert", gen, a_dir],
    }
    for argv in cases.values():
        one_line(capsys, run_cli(argv), str(a_file) if "a_dir" not in str(argv[-1]) else str(a_dir))
    unchanged(before)
    assert list(a_dir.iterdir()) == []
    assert len(cases) == 9


def test_evaluate_refuses_a_report_inside_the_sources(world, tmp_path, capsys):
    data = image_folder(tmp_path / "data", n=2, size=16)
    argv = ["evaluate", "--source", data, "--method", f"m={data}", "--out", data / "report"]
    one_line(capsys, run_cli(argv), "lies inside the input folder")
    assert not (data / "report").exists()


def test_read_only_output_is_one_line(world, tmp_path, capsys, monkeypatch):
    """A folder the user may not write to (simulated: the tests may run as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked else real_access(p, m))
    one_line(capsys, run_cli(_invert(world, world["data"], locked)), "not writable")
    one_line(capsys, run_cli(_invert(world, world["data"], locked / "sub")), "not writable")
    assert list(locked.iterdir()) == []


def test_missing_inputs_are_one_line(world, tmp_path, capsys):
    one_line(capsys, run_cli(_invert(world, tmp_path / "nope", tmp_path / "o")), "does not exist")
    one_line(capsys, run_cli(["gan", "sample", "--checkpoint", tmp_path / "nope.pt"]), "nope.pt")
    argv = [
        "evaluate",
        "--source",
        tmp_path / "nope",
        "--method",
        f"m={world['data']}",
        "--out",
        tmp_path / "r",
    ]
    one_line(capsys, run_cli(argv), "nope")


# --------------------------------------------------------------------------------------------------
# 5. numbers and devices


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["evaluate", "--source", "s", "--method", "m=r", "--out", "o", "--bootstrap", "-5"], "--bootstrap"),
        (["evaluate", "--source", "s", "--method", "m=r", "--out", "o", "--size", "0"], "--size"),
        (["invert", "--method", "e4e", "--checkpoint", "c", "--input", "i", "--output", "o", "--passes", "-1"], "--passes"),
        (["invert", "--method", "e4e", "--checkpoint", "c", "--input", "i", "--output", "o", "--batch-size", "0"], "--batch-size"),
        (["gan", "sample", "--checkpoint", "c", "--n", "0"], "--n"),
        (["faces", "train", "--loss", "arcface", "--data", "d", "--out", "o", "--size", "-3"], "--size"),
        (["evaluate", "--source", "s", "--method", "m=r", "--out", "o", "--size", "x"], "expected an integer"),
    ],
)  # fmt: skip
def test_impossible_numbers_are_usage_errors(argv, needle, capsys):
    usage_error(capsys, run_cli(argv), needle)


def test_cuda_without_a_gpu_is_one_line(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o"
    one_line(capsys, run_cli([*_invert(world, world["data"], out), "--device", "cuda"]), "--device cuda")
    one_line(capsys, run_cli(["gan", "sample", "--checkpoint", world["gen"], "--device", "cuda:1"]), "CUDA")
    one_line(
        capsys, run_cli(["gan", "sample", "--checkpoint", world["gen"], "--device", "gpu"]), "not a device"
    )
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# 6. stale temporary files


def test_stale_tmp_files_are_cleaned(tmp_path):
    target = tmp_path / "checkpoint.pt"
    stale = [tmp_path / ".checkpoint.pt.123.tmp", tmp_path / ".samples.png.tmp.png", tmp_path / ".x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
        os.utime(p, (1, 1))  # long before this process started
    keep = [tmp_path / "checkpoint.pt", tmp_path / "notes.tmp", tmp_path / ".fresh.pt.99.tmp"]
    for p in keep:
        p.write_bytes(b"x")  # fresh: written by a live process
    assert clean_stale_tmp(target) == [stale[0]]
    assert sorted(clean_stale_tmp(tmp_path)) == sorted(stale[1:])
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    atomic_torch_save({"v": torch.ones(1)}, path)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"v": torch.zeros(1)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["v"].item() == 1 and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_convert_keeps_data_only(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"model": torch.nn.Linear(2, 3), "epoch": 4}, src)
    with pytest.raises(CheckpointRefused):
        load_checkpoint(src)
    convert_checkpoint(src, tmp_path / "m2.pt", trust=True)
    obj = load_checkpoint(tmp_path / "m2.pt")
    assert set(obj["model"]) == {"weight", "bias"} and obj["epoch"] == 4


# --------------------------------------------------------------------------------------------------
# 7. a few real processes: the stderr and exit code a user sees


def test_subprocess_hostile_and_bad_output(world, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmds = [
        ["gan", "sample", "--checkpoint", str(world["hostile_raw"]), "--out", str(tmp_path / "s.png")],
        ["invert", "--method", "e4e", "--checkpoint", str(world["e4e"]), "--input", str(world["data"]),
         "--output", str(world["data"])],
    ]  # fmt: skip
    for argv in cmds:
        res = subprocess.run([sys.executable, "-m", "egain", *argv], capture_output=True, text=True, env=env)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert not world["marker"].exists()


def test_gan_train_checks_its_own_numbers(world, tmp_path, capsys):
    """gan train validates --size/--batch/--iters in its config (one line, exit 2), before any work."""
    for extra in (["--size", "0"], ["--iters", "-1"], ["--batch", "0"]):
        argv = ["gan", "train", "--data", world["data"], "--out", tmp_path / "r", *extra]
        one_line(capsys, run_cli(argv), extra[0])
    assert not (tmp_path / "r").exists()


def test_demo_never_replaces_its_inputs_and_refuses_foreign_folders(tmp_path, capsys):
    from egain.cli.main import main

    out = tmp_path / "demo"
    assert main(["demo", "--methods", "e4e", "--out", str(out), "--device", "cpu"]) == 0
    inputs = sorted((out / "e4e").glob("*.png"))
    before = {p: p.read_bytes() for p in inputs}
    capsys.readouterr()
    assert (
        main(["demo", "--methods", "e4e", "--input", str(out / "e4e"), "--out", str(out), "--device", "cpu"])
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "which the demo replaces" in err[0]
    assert {p: p.read_bytes() for p in inputs} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["demo", "--methods", "e4e", "--out", str(mine), "--device", "cpu"]) != 0
    assert "did not record writing" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_invert_refuses_an_option_the_method_does_not_declare(tmp_path, capsys):
    from egain.cli.main import main

    argv = ["invert", "--method", "e4e", "--input", str(example_dir()), "--output", str(tmp_path / "o")]
    assert main([*argv, "--steps", "5"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps is not an option of e4e" in err[0]
    assert not (tmp_path / "o").exists()


def example_dir():
    from egain.workflows.examples import example_files

    return example_files()[0].parent

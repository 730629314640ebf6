"""Restoration/translation encoders: the corruptions, ``egain train --corrupt`` for pSp, E2Style and
e4e on a 16 px generator, and the evaluation against the clean ground truth."""

from __future__ import annotations

import json

import pytest
import torch
from inversion_helpers import (
    TINY_BASIC,
    smooth_images,
    tiny_training_files,
)

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
    return tiny_training_files(root)


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


# ------------------------------------------------------------------------------------------------
# translation from parsing maps (--corrupt parsing)


def test_parsing_input_is_one_hot_and_flips_swap_sides():
    from egain.applications.restoration import (
        Corruption,
        mirror_parsing,
        pack_parsing,
        parsing_input,
        parsing_picture,
    )
    from egain.data.synthfaces.parsing import CLASS_INDEX, PARSING_CLASSES, PARSING_PALETTE

    g = torch.Generator().manual_seed(0)
    maps = torch.randint(0, len(PARSING_CLASSES), (2, 5, 7), generator=g)
    x = parsing_input(maps)
    ref = torch.zeros(2, len(PARSING_CLASSES), 5, 7)
    for n in range(2):
        for h in range(5):
            for w in range(7):
                ref[n, int(maps[n, h, w]), h, w] = 1.0
    assert x.shape == (2, 22, 5, 7) and torch.equal(x, ref)
    assert torch.equal(parsing_input(maps.float().unsqueeze(1)), ref)  # a float plane works too
    with pytest.raises(InputError, match="class"):
        parsing_input(torch.full((1, 2, 2), 22))
    # the picture is the palette colour of each pixel's class
    pic = parsing_picture(x)
    want = torch.from_numpy(PARSING_PALETTE[maps.numpy()].astype("float32")).permute(0, 3, 1, 2) / 127.5 - 1
    assert torch.allclose(pic, want)
    # a flip moves the image's left eye to the right: its class becomes right_eye
    m = torch.zeros(1, 4, 4, dtype=torch.long)
    m[0, 1, 0] = CLASS_INDEX["left_eye"]
    m[0, 2, 3] = CLASS_INDEX["hair"]
    f = mirror_parsing(m)
    assert int(f[0, 1, 3]) == CLASS_INDEX["right_eye"] and int(f[0, 2, 0]) == CLASS_INDEX["hair"]
    assert torch.equal(mirror_parsing(f), m)
    # the trainer's view: (image + map plane) batches split into (one-hot input, clean image)
    imgs = smooth_images(2, 8)
    maps8 = torch.randint(0, 22, (2, 8, 8), generator=g)
    mode = Corruption("segmentation")  # the alias
    assert mode.mode == "parsing" and mode.needs_maps and mode.input_channels == 22
    packed = pack_parsing(imgs, maps8)
    inp, clean = mode.split(packed)
    assert torch.equal(clean, imgs) and torch.equal(inp, parsing_input(maps8))
    inp_f, clean_f = mode.split(mode.mirror(packed))
    assert torch.equal(clean_f, imgs.flip(-1)) and torch.equal(inp_f, parsing_input(mirror_parsing(maps8)))
    with pytest.raises(InputError, match="maps"):
        mode.split(imgs)
    with pytest.raises(InputError, match="label maps"):
        corrupt(imgs, "parsing")


@pytest.fixture(scope="module")
def parsing_files(files, tmp_path_factory):
    from egain.data.synthfaces import write_synthfaces

    root = tmp_path_factory.mktemp("parsing")
    write_synthfaces(root / "data", 6, 2, 16, parsing=True, show_progress=False)
    return {**files, "pdata": root / "data"}


PARSING_CONFIGS = {
    "e4e": {"basic_encoder": TINY_BASIC},
    "psp": {"encoder": SMALL},
    "e2style": {"stages": 1, "encoder": {"units": (1, 1, 1), "widths": (8, 16, 16)}},
}


def _train_args(name: str, gen, data, out, mode: str = "parsing") -> list[str]:
    args = ["train", "--method", name, "--generator", str(gen), "--data", str(data), "--out", str(out)]
    args += ["--iters", "2", "--batch", "2", "--lambda-lpips", "0", "--lambda-id", "0", "--device", "cpu"]
    args += ["--val-every", "2", "--ckpt-every", "2", "--corrupt", mode]
    if name == "e2style":
        args += ["--lambda-parse", "0"]
    return args + ["--config", json.dumps(PARSING_CONFIGS.get(name, {"encoder": SMALL}))]


@pytest.mark.parametrize("name", ["e4e", "psp", "e2style"])
def test_parsing_translation_end_to_end(parsing_files, tmp_path, name):
    """Train on a synthfaces folder with maps through the CLI, then translate and score its maps."""
    run = tmp_path / "run"
    assert main(_train_args(name, parsing_files["gen"], parsing_files["pdata"], run)) == 0
    ckpt = torch.load(run / "model.pt", weights_only=False)
    m = methods.create(name, checkpoint=run / "model.pt", memory_format=None)
    assert m.input_nc == 22
    # the encoder's first convolution takes the 22 one-hot channels
    conv = next(v for k, v in m.named_parameters() if not k.startswith("generator.") and v.ndim == 4)
    assert conv.shape[1] == 22, ckpt["config"]
    out = tmp_path / "apply"
    args = [
        "apply",
        "restore",
        "--method",
        name,
        "--checkpoint",
        str(run / "model.pt"),
        "--corrupt",
        "parsing",
    ]
    args += ["--input", str(parsing_files["pdata"]), "--out", str(out), "--id-net", "none"]
    assert main(args) == 0
    report = json.loads((out / "restoration.json").read_text())
    assert report["n"] == 12 and {"psnr", "ssim"} <= set(report["restored"])
    assert len(list((out / "restored").glob("*.png"))) == 12 and (out / "restoration.png").is_file()
    # the translation of one map equals invert() on its one-hot input
    from egain.applications.restoration import parsing_input
    from egain.data.parsing_pairs import read_parsing_map

    x = parsing_input(read_parsing_map(parsing_files["pdata"] / "id00000_v00_parsing.png", 16)[None])
    assert m.invert(x).reconstruction.shape == (1, 3, 16, 16)


def test_parsing_on_the_fly_synthfaces_and_maps_only_input(parsing_files, tmp_path):
    run = tmp_path / "run"
    args = _train_args("psp", parsing_files["gen"], "synthfaces:4x3,size=16", run, mode="segmentation")
    assert main(args) == 0
    maps = tmp_path / "maps"
    maps.mkdir()
    for p in sorted(parsing_files["pdata"].glob("*_parsing.png"))[:3]:
        (maps / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "apply"
    args = ["apply", "restore", "--method", "psp", "--checkpoint", str(run / "model.pt"), "--corrupt"]
    args += ["parsing", "--input", str(maps), "--out", str(out)]
    assert main(args) == 0  # maps without their images: translated, not scored
    assert len(list((out / "restored").glob("*.png"))) == 3 and not (out / "restoration.json").exists()
    # the default input: synthfaces eval images with their maps, scored with the ID net too
    out = tmp_path / "eval"
    args = ["apply", "restore", "--method", "psp", "--checkpoint", str(run / "model.pt"), "--corrupt"]
    args += ["parsing", "--n", "4", "--out", str(out)]
    assert main(args) == 0
    assert "id" in json.loads((out / "restoration.json").read_text())["restored"]


def test_parsing_errors_are_one_line(parsing_files, tmp_path, capsys):
    # images without maps
    args = _train_args("e4e", parsing_files["gen"], parsing_files["data"], tmp_path / "r")
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "no parsing map for 12 of 12 images" in err and "egain data synthfaces --parsing" in err
    assert "Traceback" not in err
    # a method whose encoder takes images only
    args = _train_args("restyle-psp", parsing_files["gen"], parsing_files["pdata"], tmp_path / "r2")
    assert main(args) != 0
    assert "3-channel images only" in capsys.readouterr().err
    # a folder without maps given to apply restore
    m = methods.create("psp", generator=str(parsing_files["gen"]), encoder={**SMALL, "input_nc": 22})
    m.save(tmp_path / "m.pt")
    args = ["apply", "restore", "--method", "psp", "--checkpoint", str(tmp_path / "m.pt"), "--corrupt"]
    args += ["parsing", "--input", str(parsing_files["data"]), "--out", str(tmp_path / "o")]
    assert main(args) != 0
    assert "holds no parsing maps" in capsys.readouterr().err


def _bundled_restoration_models() -> list[tuple[str, str, str]]:
    """(zoo name, method, mode) of every bundled restoration/translation encoder."""
    from egain.zoo import available

    out = []
    for name in available():
        stem = name.removesuffix("-stylegan2-64")
        method, _, mode = stem.rpartition("-")
        if stem != name and mode in ("colorize", "inpaint", "superres", "sketch", "parsing"):
            out.append((name, method, mode))
    return out


@pytest.mark.parametrize("name,method,mode", _bundled_restoration_models())
def test_bundled_restoration_models_beat_their_baseline(name, method, mode, tmp_path):
    """Each bundled restoration/translation encoder (stored float16) loads, runs end to end through
    ``egain apply restore`` and beats its baseline: parsing -> face keeps the maps' layout (parser
    mIoU) better than the generator's average face; every other mode is closer to the clean truth
    (PSNR, and identity by a margin) than the bundled inversion model of its method fed the same
    corrupted input."""
    from egain.generators import load_generator

    corrupt_as = "superres:8" if mode == "superres" else mode
    out = tmp_path / "restore"
    args = ["apply", "restore", "--method", method, "--checkpoint", f"zoo:{name}", "--corrupt", corrupt_as]
    assert main([*args, "--n", "8", "--out", str(out)]) == 0
    restored = json.loads((out / "restoration.json").read_text())["restored"]
    if mode == "parsing":  # the layout of the maps: the parser's mIoU, against the average face's
        from egain.applications.restoration import parsing_consistency
        from egain.data.synthfaces import SynthFacesDataset  # the eval images apply restore scores

        g = load_generator("zoo:gan-stylegan2-64")
        with torch.no_grad():
            mean_face = g.synthesize(g.latent_avg.view(1, 1, -1).repeat(1, g.n_latent, 1)).clamp(-1, 1)
        ds = SynthFacesDataset.eval_set(size=64, return_parsing=True)
        maps = torch.stack([ds[i][-1] for i in range(8)])
        baseline = parsing_consistency("synthfaces-parsing", mean_face.expand(8, -1, -1, -1), maps)
        assert restored["miou"] > baseline + 0.1, (restored, baseline)
        return
    base = tmp_path / "baseline"
    assert main(["apply", "restore", "--method", method, "--corrupt", corrupt_as, "--n", "8",
                 "--out", str(base)]) == 0  # fmt: skip
    baseline = json.loads((base / "restoration.json").read_text())["restored"]
    # trained for the corruption, it keeps the face better than a model that never saw one
    assert restored["psnr"] > baseline["psnr"] and restored["id"] > baseline["id"] + 0.03, (
        restored,
        baseline,
    )

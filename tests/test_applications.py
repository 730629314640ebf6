"""The applications end to end on the bundled models (face swap, style mixing, interpolation,
secure deep hiding, video inversion) and through ``egain apply``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from egain import methods
from egain.applications.common import blend, render
from egain.applications.hiding import (
    chi_square_attack,
    decode_code,
    embed_bits,
    encode_code,
    extract_bits,
    hide_image,
    quantize,
    reveal_image,
    rs_analysis,
)
from egain.applications.interpolation import interpolate
from egain.applications.mixing import mix_start, style_mix
from egain.applications.swap import center_mask, face_swap
from egain.applications.video import invert_video, read_frames, smooth_inversions, write_video
from egain.cli.main import main
from egain.data.synthfaces import render as render_face
from egain.data.synthfaces import sample_identity, sample_variation
from egain.data.synthfaces.sequences import render_sequence, sequence_variations
from egain.utils.images import pil_to_tensor
from egain.workflows.examples import example_files

BUNDLED = ("e4e", "hfgi", "egain", "egain-external")


@pytest.fixture(scope="module")
def models():
    return {n: methods.create(n) for n in BUNDLED}


@pytest.fixture(scope="module")
def faces():
    return example_files()[:4]


@pytest.fixture(scope="module")
def clip():
    from PIL import Image

    ims, labels = render_sequence(0, 11, 8, 64)
    return torch.stack([pil_to_tensor(Image.fromarray(i)) for i in ims]), labels


@pytest.mark.parametrize("name", BUNDLED)
def test_render_of_an_unchanged_inversion_is_the_reconstruction(models, faces, name):
    m = models[name]
    inv = m.invert(faces[:2])
    assert torch.allclose(render(m, inv), inv.reconstruction.cpu(), atol=1e-5)
    assert torch.allclose(render(m, blend(inv, m.invert(faces[2:4]), 0.0)), inv.reconstruction, atol=1e-5)


@pytest.mark.parametrize("name", BUNDLED)
def test_swap_mix_and_interpolate_on_the_bundled_models(models, faces, name):
    m = models[name]
    r = face_swap(m, faces[:2], faces[2:4], fraction=0.5)
    mask = center_mask(64, 0.5) > 0
    assert r.swapped.shape == (2, 3, 64, 64)
    assert float(mask.float().mean()) == 0.25
    mixed = style_mix(m, faces[:2], faces[2:4])
    n_latent = m.invert(faces[:1]).latents.shape[1]
    assert mix_start(n_latent) == n_latent - round(11 * n_latent / 18)
    assert mixed.shape == (2, 3, 64, 64) and torch.isfinite(mixed).all()
    frames = interpolate(m, faces[:1], faces[1:2], steps=5)
    ia, ib = m.invert(faces[:1]), m.invert(faces[1:2])
    assert frames.shape == (5, 1, 3, 64, 64)
    assert torch.allclose(frames[0], ia.reconstruction, atol=1e-5)  # lam = 0 is A's inversion
    assert torch.allclose(frames[-1], ib.reconstruction, atol=1e-5)  # lam = 1 is B's
    steps = (frames[1:] - frames[:-1]).abs().flatten(1).mean(1)
    assert float(steps.max()) < float((frames[-1] - frames[0]).abs().mean())  # a gradual morph


def test_hidden_bits_come_back_exactly():
    rng = np.random.default_rng(0)
    carrier = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    q = torch.from_numpy(rng.integers(-200, 200, (6, 16)))
    bits = encode_code(q, 1.0, bits=9)
    for scheme in ("matching", "replacement"):
        stego, facts = embed_bits(carrier, bits, key=3, scheme=scheme)
        assert np.array_equal(extract_bits(stego, key=3, scheme=scheme), bits)
        q2, step = decode_code(extract_bits(stego, key=3, scheme=scheme))
        assert torch.equal(q2, q) and step == 1.0
        assert np.abs(stego.astype(int) - carrier).max() <= 1
    assert quantize(torch.tensor([[0.4, -0.6, 1.5]]), 1.0).tolist() == [[0, -1, 2]]


@pytest.mark.parametrize("name", BUNDLED)
def test_deep_hiding_recovers_the_code_bit_exactly(models, faces, name):
    ident = sample_identity(7, 3)
    carrier = render_face(ident, sample_variation(7, ident, 0), 128).image
    stego, rep, imgs = hide_image(models[name], faces[0], carrier, step=1.0)
    assert rep.bit_exact and rep.bits_per_value == 9
    assert rep.capacity_used == rep.payload_bits / carrier.size < 1
    assert rep.carrier_psnr > 50  # +-1 changes on a fraction of the samples
    assert torch.allclose(reveal_image(models[name], stego), imgs["revealed"], atol=1e-6)
    fine = hide_image(models[name], faces[0], carrier, step=0.01)[1]
    assert fine.bit_exact and fine.secret_psnr >= rep.secret_psnr - 0.05


def test_steganalysis_tells_replacement_from_matching():
    # (the chi-square attack gives false alarms on some flat synthetic carriers; this one is clean)
    ident = sample_identity(7, 3)
    carrier = render_face(ident, sample_variation(7, ident, 0), 128).image
    bits = np.random.default_rng(0).integers(0, 2, carrier.size // 8, dtype=np.uint8)
    lsb, _ = embed_bits(carrier, bits, scheme="replacement")
    match, _ = embed_bits(carrier, bits, scheme="matching")
    assert chi_square_attack(lsb) > 0.5 > max(chi_square_attack(carrier), chi_square_attack(match))
    assert rs_analysis(lsb) > 0.05 > max(rs_analysis(carrier), rs_analysis(match))


def test_sequences_move_smoothly_and_keep_the_rare_details(clip):
    frames, labels = clip
    vs = sequence_variations(0, 11, 8)
    assert all(v.background == vs[0].background and v.hand == vs[0].hand for v in vs)
    assert len({round(v.yaw, 6) for v in vs}) > 1
    assert labels[0]["rare_kinds"] == labels[-1]["rare_kinds"] != []
    step = (frames[1:] - frames[:-1]).abs().mean()
    assert float(step) < float((frames[0] - frames[-1]).abs().mean()) + 1e-6


@pytest.mark.parametrize("name", BUNDLED)
def test_video_inversion_and_temporal_metrics(models, clip, name):
    frames, _ = clip
    recon, metrics, invs = invert_video(models[name], frames)
    assert recon.shape == frames.shape
    for k in ("tc_error", "tc_ratio", "latent_step", "psnr"):
        assert np.isfinite(metrics[k])
    assert ("delta_flicker" in metrics) == (name != "e4e")
    smooth = smooth_inversions(invs, 1.0)
    assert len(smooth) == len(invs) and not torch.equal(smooth[3].latents, invs[3].latents)


def test_gif_round_trip(tmp_path, clip):
    frames, _ = clip
    write_video(frames, tmp_path / "c.gif")
    back = read_frames(tmp_path / "c.gif")
    assert back.shape == frames.shape and float((back - frames).abs().mean()) < 0.1


def test_mp4_round_trip(tmp_path, clip):
    pytest.importorskip("imageio_ffmpeg")
    frames, _ = clip
    write_video(frames, tmp_path / "c.mp4")
    assert read_frames(tmp_path / "c.mp4").shape == frames.shape


def test_egain_apply_end_to_end(tmp_path, faces):
    f = [str(p) for p in faces]
    base = ["--method", "hfgi", "--device", "cpu"]
    assert (
        main(["apply", "swap", *base, "--source", f[0], "--target", f[1], "--out", str(tmp_path / "s")]) == 0
    )
    assert (tmp_path / "s" / "swap.png").exists()
    assert (
        main(["apply", "mix", *base, "--content", f[0], "--style", f[1], "--out", str(tmp_path / "m")]) == 0
    )
    args = [
        "apply",
        "interpolate",
        *base,
        "--a",
        f[0],
        "--b",
        f[1],
        "--steps",
        "3",
        "--out",
        str(tmp_path / "i"),
    ]
    assert main(args) == 0 and (tmp_path / "i" / "interpolation_0.gif").exists()
    assert main(["apply", "hide", *base, "--secret", f[0], "--out", str(tmp_path / "h")]) == 0
    rep = json.loads((tmp_path / "h" / "hiding.json").read_text())
    assert rep["bit_exact"] is True
    args = [
        "apply",
        "reveal",
        *base,
        "--stego",
        str(tmp_path / "h" / "stego.png"),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(args) == 0 and (tmp_path / "r" / "revealed.png").exists()
    seq = tmp_path / "seq"
    assert main(["data", "synthfaces-sequence", "--out", str(seq), "--identities", "4", "--frames", "6"]) == 0
    args = ["apply", "video", *base, "--input", str(seq / "id00004"), "--out", str(tmp_path / "v")]
    assert main(args) == 0
    tc = json.loads((tmp_path / "v" / "temporal.json").read_text())
    assert tc["frames"] == 6 and "id_drift" in tc and (tmp_path / "v" / "reconstruction.gif").exists()
    # the comparison: any bundled labels (and NAME=CHECKPOINT) over several clips, means per method
    assert main(["data", "synthfaces-sequence", "--out", str(seq), "--identities", "5", "--frames", "6"]) == 0
    clips = [str(seq / "id00004"), str(seq / "id00005")]
    args = ["apply", "video", "--methods", "e4e,e2style,egain=zoo:egain-swagan-64", "--input", *clips]
    args += ["--out", str(tmp_path / "vc"), "--id-net", "none"]
    assert main(args) == 0
    tc = json.loads((tmp_path / "vc" / "temporal.json").read_text())
    assert list(tc["mean"]) == ["e4e", "e2style", "egain"] and len(tc["per_clip"]["egain"]) == 2
    assert "delta_flicker" in tc["mean"]["egain"] and "delta_flicker" not in tc["mean"]["e4e"]
    assert (tmp_path / "vc" / "side_by_side_id00005.gif").exists()
    assert "| e2style |" in (tmp_path / "vc" / "temporal.md").read_text()
    assert (
        main(["apply", "video", "--methods", "nope", "--input", clips[0], "--out", str(tmp_path / "x")]) != 0
    )

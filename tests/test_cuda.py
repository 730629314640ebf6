"""The accelerator paths agree with the CPU paths: generators, inversion methods, metrics, training.

Several code paths differ by device: the modulated convolution runs as one grouped convolution on
CUDA in inference and as a dense one on CPU, "auto" memory formats mean channels_last on CPU and
NCHW elsewhere, and the metrics score a whole batch at once on an accelerator but in chunks on
CPU. These tests run the same weights and inputs on both and compare the numbers, and run each
training command end to end on the device.

The device is ``EGAIN_TEST_ACCEL`` (default ``cuda``); the module is skipped when that is CUDA and
none is present. ``EGAIN_TEST_ACCEL=cpu`` runs every comparison CPU against CPU, which checks the
tests themselves on a machine without an accelerator.

TF32 is switched off throughout: with it, float32 convolutions and matrix products keep 10 mantissa
bits and would differ from the CPU at ~1e-3, which hides real disagreements.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from inversion_helpers import TINY_BASIC, image_folder, save_tiny_generator, smooth_images, tiny_generator
from PIL import Image

import egain.methods as methods
from egain.cli.main import main
from egain.faces import FaceEmbedder, FaceNetConfig, FacePreprocess, IRSEFaceNet, load_embedder
from egain.generators import build_discriminator, load_generator, save_discriminator
from egain.metrics import (
    LPIPS,
    PIXEL_METRICS,
    Backend,
    Scorers,
    identity_similarity,
    mae,
    magface_quality,
    mse,
    pixel_metrics,
    psnr,
    scc,
    score_batch,
    ssim,
    vif,
)
from egain.ops.modconv import MODES
from egain.runtime.checkpoint import load_checkpoint

ACCEL = torch.device(os.environ.get("EGAIN_TEST_ACCEL", "cuda"))

pytestmark = pytest.mark.skipif(
    ACCEL.type == "cuda" and not torch.cuda.is_available(),
    reason="EGAIN_TEST_ACCEL is cuda (the default) but torch sees no CUDA device; "
    "set EGAIN_TEST_ACCEL=cpu to run these comparisons CPU against CPU",
)

#: largest difference allowed, relative to the largest magnitude of the CPU result
RTOL = 1e-4
#: gradients sum more terms than the forward pass
GRAD_RTOL = 2e-4
#: LPIPS's input gradient crosses 13 VGG convolutions and a unit normalisation per tap; cuDNN's
#: algorithms for those give 4e-4 on an H100 (everything else here stays below 2e-5)
LPIPS_GRAD_RTOL = 2e-3

METHOD_GENERATOR = {"e4e": "swagan", "hfgi": "stylegan2", "egain": "swagan", "egain-external": "swagan"}


@pytest.fixture(autouse=True)
def _true_float32() -> Iterator[None]:
    """Full float32 matrix products and convolutions on CUDA for the duration of a test."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def assert_close(expected: torch.Tensor, actual: torch.Tensor, rtol: float = RTOL, what: str = "") -> None:
    """``actual`` (any device) equals the CPU result ``expected`` up to ``rtol`` of its largest magnitude.

    A scale-relative bound suits every output here alike (images in [-1, 1], latents, dB, scores),
    where a per-element relative bound would fail on values near zero.
    """
    expected, actual = expected.detach().cpu(), actual.detach().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values on {ACCEL}"
    scale = expected.abs().max().clamp_min(1e-12)
    err = ((actual.double() - expected.double()).abs().max() / scale).item()
    assert err <= rtol, f"{what}: relative difference {err:.2e} > {rtol:.0e} on {ACCEL}"


def on_accel(t: torch.Tensor) -> bool:
    return t.device.type == ACCEL.type


# ------------------------------------------------------------------------------------------------
# generators


def busy_generator(arch: str) -> torch.nn.Module:
    """The 32 px test generator with non-zero noise strengths and biases, so every term counts."""
    g = tiny_generator(arch, 32)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.normal_(0, 0.3)
    return g


@pytest.mark.parametrize("arch", ["stylegan2", "swagan"])
def test_generator_images_and_gradients_match_cpu_in_every_modconv_mode(arch):
    """Inference (grouped conv on CUDA), training-mode forward and backward, mapping and noise."""
    g_cpu = busy_generator(arch)
    g_acc = copy.deepcopy(g_cpu).to(ACCEL)
    rng = torch.Generator().manual_seed(1)
    w = torch.randn(2, g_cpu.n_latent, g_cpu.style_dim, generator=rng) + g_cpu.latent_avg
    z = torch.randn(2, g_cpu.style_dim, generator=rng)
    noise = g_cpu.make_noise(2, generator=rng)
    weight = torch.linspace(-1, 1, 2 * 3 * 32 * 32).view(2, 3, 32, 32)  # a loss with no symmetry

    with torch.no_grad():
        ref_const = g_cpu.synthesize(w, "const")
        ref_noise = g_cpu.synthesize(w, noise=noise)
        ref_one = g_cpu.synthesize(w[:1], "const")  # batch 1: CPU folds the style into the weight
        ref_mapped = g_cpu(z, truncation=0.7, noise_mode="const")
    w_cpu = w.clone().requires_grad_(True)
    (g_cpu.synthesize(w_cpu, "const") * weight).sum().backward()
    ref_grads = {"w": w_cpu.grad, **{k: p.grad for k, p in g_cpu.named_parameters()}}

    for mode in MODES:
        g_acc.set_modconv_mode(mode)
        with torch.no_grad():
            image = g_acc.synthesize(w.to(ACCEL), "const")
            assert on_accel(image)
            assert_close(ref_const, image, what=f"{mode} no-grad image")
            assert_close(ref_noise, g_acc.synthesize(w.to(ACCEL), noise=[n.to(ACCEL) for n in noise]))
            assert_close(ref_one, g_acc.synthesize(w[:1].to(ACCEL), "const"), what=f"{mode} batch 1")
            assert_close(ref_mapped, g_acc(z.to(ACCEL), truncation=0.7, noise_mode="const"))
        g_acc.zero_grad(set_to_none=True)
        w_acc = w.to(ACCEL, copy=True).requires_grad_(True)  # (a new leaf on CPU too)
        image = g_acc.synthesize(w_acc, "const")
        assert_close(ref_const, image, what=f"{mode} image with grad")
        (image * weight.to(ACCEL)).sum().backward()
        grads = {"w": w_acc.grad, **{k: p.grad for k, p in g_acc.named_parameters()}}
        for k, ref in ref_grads.items():
            if ref is not None and ref.abs().max() > 0:
                assert_close(ref, grads[k], GRAD_RTOL, what=f"{mode} gradient of {k}")


def test_average_latent_estimate_does_not_depend_on_the_device():
    """w-bar is added to every encoder output: a generator without a stored one must get the
    same estimate on the device as on CPU (seeded z are drawn on the CPU)."""
    g_cpu = tiny_generator("swagan", 32)
    g_cpu.latent_avg = None
    g_acc = copy.deepcopy(g_cpu).to(ACCEL)
    assert_close(g_cpu.mean_latent(1000, seed=3), g_acc.mean_latent(1000, seed=3))
    ref = methods.create("e4e", generator=g_cpu, basic_encoder=TINY_BASIC).latent_avg
    acc = methods.create("e4e", generator=g_acc, basic_encoder=TINY_BASIC, device=ACCEL).latent_avg
    assert on_accel(acc)
    assert_close(ref, acc, what="w-bar of a fresh method")


# ------------------------------------------------------------------------------------------------
# inversion methods


def _perturbed_method(name: str) -> torch.nn.Module:
    """A CPU method whose delta branch, fusion and aligner are not at their (zero) initialisation,
    so the internal fusion and ADA really change the image."""
    torch.manual_seed(0)
    m = methods.create(name, generator=tiny_generator(METHOD_GENERATOR[name], 32), basic_encoder=TINY_BASIC)
    with torch.no_grad():
        for part in (m.delta_encoder, m.fusion, m.aligner):
            for p in part.parameters() if part is not None else ():
                p.add_(0.1 * torch.randn_like(p))
    return m


def _compare_inversions(ref, inv, what: str) -> None:
    assert on_accel(inv.reconstruction) and on_accel(inv.latents)
    assert inv.reconstruction.is_contiguous()
    assert_close(ref.latents, inv.latents, what=f"{what} latents")
    assert_close(ref.reconstruction, inv.reconstruction, what=f"{what} reconstruction")
    assert ref.extras.keys() == inv.extras.keys()
    for key in ("basic_reconstruction", "delta", "aligned_delta"):
        if key in ref.extras:
            assert_close(ref.extras[key], inv.extras[key], what=f"{what} {key}")
    for layer, gate in ref.extras.get("gate_maps", {}).items():
        assert_close(gate, inv.extras["gate_maps"][layer], what=f"{what} gate map {layer}")


@pytest.mark.parametrize("name", ["e4e", "hfgi", "egain", "egain-external"])
def test_method_inversions_and_edits_match_cpu_in_both_layouts(name, tmp_path):
    ref_method = _perturbed_method(name)
    path = ref_method.save(tmp_path / f"{name}.pt")
    x = smooth_images(2, 32, seed=5)
    direction = torch.randn(ref_method.generator.style_dim, generator=torch.Generator().manual_seed(2))
    ref = {passes: ref_method.invert(x, passes=passes) for passes in (1, 2)}
    ref_edit = ref_method.edit(ref[1], direction, 1.5)

    for fmt in ("auto", "channels_last"):
        m = methods.create(name, checkpoint=path, device=ACCEL, memory_format=fmt)
        assert m.device.type == ACCEL.type and m.generator.const.device.type == ACCEL.type
        for passes, expected in ref.items():
            _compare_inversions(expected, m.invert(x, passes=passes), f"{name} {fmt} passes={passes}")
        edited = m.edit(m.invert(x), direction, 1.5)
        assert on_accel(edited)
        assert_close(ref_edit, edited, what=f"{name} {fmt} edit")


# ------------------------------------------------------------------------------------------------
# metrics


def _image_pair(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and distorted reconstructions in [-1, 1]; 64 px leaves room for VIF's 4 scales."""
    x = smooth_images(n, size, seed=7)
    noise = 0.15 * torch.randn(x.shape, generator=torch.Generator().manual_seed(8))
    return x, (0.8 * x + noise).clamp(-1, 1)


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) * 127.5).round().to(torch.uint8)


def tiny_face_embedder() -> FaceEmbedder:
    torch.manual_seed(0)
    cfg = FaceNetConfig(input_size=16, widths=(8, 16), units=(1, 1), stem_channels=8, embedding_dim=16)
    return FaceEmbedder(IRSEFaceNet.from_config(cfg), FacePreprocess(input_size=16), name="tiny")


@pytest.mark.parametrize("kind", ["float", "uint8"])
def test_pixel_metrics_match_cpu(kind):
    x, y = _image_pair()
    if kind == "uint8":  # integral inputs take SCC's exact shortcuts
        x, y = _uint8(x), _uint8(y)
    ref = pixel_metrics(x, y)
    got = pixel_metrics(x.to(ACCEL), y.to(ACCEL))
    assert list(got) == list(PIXEL_METRICS)
    for k in PIXEL_METRICS:
        assert on_accel(got[k])
        assert_close(ref[k], got[k], what=k)
    for fn in (ssim, psnr, mae, mse, scc, vif):
        assert_close(fn(x, y), fn(x.to(ACCEL), y.to(ACCEL)), what=fn.__name__)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_and_its_input_gradient_match_cpu(net):
    """Random trunk weights: the published ones are downloads, and the arithmetic is the same."""
    torch.manual_seed(0)
    ref_model = LPIPS(net)
    model = copy.deepcopy(ref_model).to(ACCEL)
    x, y = _image_pair()
    y_cpu = y.clone().requires_grad_(True)
    ref = ref_model(x, y_cpu)
    ref.sum().backward()
    y_acc = y.to(ACCEL, copy=True).requires_grad_(True)
    got = model(x.to(ACCEL), y_acc)
    got.sum().backward()
    assert on_accel(got)
    assert_close(ref, got, what=f"lpips-{net}")
    assert_close(y_cpu.grad, y_acc.grad, LPIPS_GRAD_RTOL, what=f"lpips-{net} input gradient")


def test_identity_magface_and_the_scoring_engine_match_cpu():
    ref_emb = tiny_face_embedder()
    emb = copy.deepcopy(ref_emb).to(ACCEL)
    x, y = _image_pair()
    got = identity_similarity(emb, x.to(ACCEL), y.to(ACCEL))
    assert on_accel(got)
    assert_close(identity_similarity(ref_emb, x, y), got, what="id similarity")
    assert_close(magface_quality(ref_emb, y), magface_quality(emb, y.to(ACCEL)), what="magface quality")

    # the engine behind 'egain evaluate': uint8 batches as stored, every scorer at once
    torch.manual_seed(0)
    ref_lpips = LPIPS("alex")
    metrics = [*PIXEL_METRICS, "lpips", "id", "magface"]
    ref_scores = score_batch(
        _uint8(x), _uint8(y), metrics, Scorers(ref_lpips, Backend("tiny", ref_emb), Backend("tiny", ref_emb))
    )
    scorers = Scorers(copy.deepcopy(ref_lpips).to(ACCEL), Backend("tiny", emb), Backend("tiny", emb))
    scores = score_batch(_uint8(x).to(ACCEL), _uint8(y).to(ACCEL), metrics, scorers)
    assert scores.keys() == ref_scores.keys() == set(metrics)
    for k in metrics:
        assert_close(ref_scores[k], scores[k], what=f"score_batch {k}")


# ------------------------------------------------------------------------------------------------
# training through the CLI


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _assert_run_info(run: Path, steps: int, sessions: int) -> None:
    """run.json names the device the run trained on and counts the resumed session."""
    info = json.loads((run / "run.json").read_text())
    assert info["hardware"].startswith(f"{ACCEL.type}:"), info["hardware"]
    if ACCEL.type == "cuda":
        assert torch.cuda.get_device_name(ACCEL) in info["hardware"]
    assert info["steps"] == steps
    assert len(info["sessions"]) == sessions


def _assert_cpu_tensors(obj) -> None:
    """Whatever ``load_checkpoint`` returns sits on the CPU, even when written from the device."""
    if isinstance(obj, torch.Tensor):
        assert obj.device.type == "cpu"
    elif isinstance(obj, dict):
        for v in obj.values():
            _assert_cpu_tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _assert_cpu_tensors(v)


def test_gan_train_runs_resumes_and_exports_on_the_device(tmp_path):
    run = tmp_path / "gan"
    data = image_folder(tmp_path / "images", n=8, size=16)
    args = ["gan", "train", "--data", str(data), "--out", str(run), "--device", str(ACCEL), "--size", "16"]
    args += ["--style-dim", "16", "--n-mlp", "2", "--channel-max", "16", "--batch", "4", "--n-sample", "4"]
    # R1, path length and ADA (with p updates) all run within the few steps
    args += ["--d-reg-every", "2", "--g-reg-every", "2", "--augment", "ada", "--augment-p", "0.3"]
    args += ["--ada-interval", "2", "--log-every", "2", "--ckpt-every", "2", "--sample-every", "2"]
    assert main([*args, "--iters", "4"]) == 0
    assert main([*args, "--iters", "6", "--resume", "auto"]) == 0

    records = _log(run)
    events = [r for r in records if "event" in r]
    assert [e["event"] for e in events if e["event"] in ("start", "resume")] == ["start", "resume"]
    assert all(e["device"].startswith(ACCEL.type) for e in events if "device" in e)
    assert [r["step"] for r in records if "d_loss" in r] == [2, 4, 6]
    assert any("r1" in r for r in records) and any("path_loss" in r for r in records)
    for name in ("generator.pt", "checkpoint.pt", "samples/000006.png", "losses.png"):
        assert (run / name).exists(), name
    _assert_run_info(run, steps=6, sessions=2)

    ckpt = load_checkpoint(run / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 6
    _assert_cpu_tensors(ckpt["g_ema"])
    g = load_generator(run / "generator.pt", device="cpu")
    assert g.const.device.type == "cpu" and g.latent_avg is not None
    assert all(torch.equal(v, ckpt["g_ema"][k]) for k, v in g.state_dict().items())
    with torch.no_grad():
        assert torch.isfinite(g(torch.randn(2, g.style_dim), noise_mode="const")).all()


@pytest.fixture(scope="module")
def inversion_world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cuda-inv")
    return {"gen": save_tiny_generator(root / "g.pt"), "data": image_folder(root / "data", n=16)}


def test_inversion_train_runs_resumes_and_its_models_load_on_cpu(inversion_world, tmp_path):
    gen, data = str(inversion_world["gen"]), str(inversion_world["data"])
    fast = ["--lambda-lpips", "0", "--lambda-id", "0", "--batch", "4", "--log-every", "2"]
    fast += ["--val-every", "4", "--ckpt-every", "2", "--device", str(ACCEL)]
    e4e = tmp_path / "e4e"
    args = ["train", "--method", "e4e", "--generator", gen, "--data", data, "--out", str(e4e), *fast]
    args += ["--progressive-start", "2", "--progressive-every", "1"]
    args += ["--config", json.dumps({"basic_encoder": TINY_BASIC})]
    assert main([*args, "--iters", "4"]) == 0
    assert main([*args, "--iters", "6", "--resume", "auto"]) == 0  # continues from step 4
    assert [r["step"] for r in _log(e4e) if "loss" in r] == [2, 4, 6]
    assert (e4e / "samples" / "val_000004.png").exists() and (e4e / "samples" / "val_000006.png").exists()
    _assert_run_info(e4e, steps=6, sessions=2)
    state = load_checkpoint(e4e / "checkpoint.pt", weights_only=False)
    assert state["step"] == 6
    _assert_cpu_tensors(state["model"])

    # HFGI on top: ADA's random warps, the aligner and an image discriminator, all on the device
    torch.manual_seed(0)
    save_discriminator(
        build_discriminator("swagan", 32, channels={4: 16, 8: 16, 16: 16, 32: 8}), tmp_path / "d.pt"
    )
    hfgi = tmp_path / "hfgi"
    args = ["train", "--method", "hfgi", "--generator", gen, "--data", data, "--out", str(hfgi), *fast]
    args += [
        "--basic-encoder",
        str(e4e / "model.pt"),
        "--lambda-adv",
        "0.1",
        "--discriminator",
        str(tmp_path / "d.pt"),
    ]
    assert main([*args, "--iters", "2"]) == 0
    assert any("adv" in r and "align" in r for r in _log(hfgi))
    _assert_run_info(hfgi, steps=2, sessions=1)

    x = smooth_images(2, 32, seed=3)
    for run, name in ((e4e, "e4e"), (hfgi, "hfgi")):
        model = methods.load_method(run / "model.pt")  # device defaults to CPU
        assert model.name == name and model.device.type == "cpu"
        assert torch.isfinite(model.invert(x).reconstruction).all()

    # the trained model inverts through the CLI on the device as on CPU
    latents = {}
    for device in (str(ACCEL), "cpu"):
        out = tmp_path / f"inv-{device}"
        inv = ["invert", "--method", "hfgi", "--checkpoint", str(hfgi / "model.pt"), "--input", data]
        assert main([*inv, "--output", str(out), "--save-latents", "--device", device]) == 0
        assert json.loads((out / "timing.json").read_text())["device"].startswith(device)
        latents[device] = load_checkpoint(out / "latents" / "face_000.pt", weights_only=False)["latents"]
    assert_close(latents["cpu"], latents[str(ACCEL)], what="egain invert latents")


def test_faces_train_runs_resumes_and_its_embedder_loads_on_cpu(tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    records = []
    for ident in range(8):  # 8 identities x 4 images at 16 px: a colour layout each, plus noise
        base = torch.rand(3, 4, 4, generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
        for k in range(4):
            img = (base + 0.1 * torch.randn(3, 16, 16, generator=g)).clamp(0, 1)
            name = f"id{ident}_{k}.png"
            Image.fromarray((img * 255).byte().permute(1, 2, 0).numpy()).save(folder / name)
            records.append({"file": name, "identity": ident})
    (folder / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    run = tmp_path / "run"
    args = ["faces", "train", "--loss", "magface", "--data", str(folder), "--out", str(run)]
    args += ["--size", "16", "--batch", "8", "--widths", "8,16", "--units", "1,1", "--stem", "8"]
    args += ["--embedding-dim", "16", "--warmup", "2", "--holdout", "3", "--log-every", "2"]
    args += ["--eval-every", "0", "--l-a", "1", "--u-a", "20", "--device", str(ACCEL)]
    assert main([*args, "--iters", "4"]) == 0
    assert main([*args, "--iters", "6", "--resume", "auto"]) == 0
    assert "at step 4" in capsys.readouterr().out
    assert [r["step"] for r in _log(run) if r.get("kind") == "train"] == [2, 4, 6]
    for name in ("embedder.pt", "roc.png", "quality.png", "curves.png"):
        assert (run / name).exists(), name
    _assert_run_info(run, steps=6, sessions=2)

    emb = load_embedder(str(run / "embedder.pt"), device="cpu")  # its default picks CUDA when present
    assert emb.device.type == "cpu" and emb.loss == "magface"
    assert emb.embed(smooth_images(2, 16)).shape == (2, 16)

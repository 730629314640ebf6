"""egain.metrics pixel scores against the reference implementations: scikit-image and sewar.

Natural images (scikit-image's astronaut / chelsea / coffee, reduced to 64 px for speed) under blur,
noise, JPEG and shift distortions; the promise is |ours - reference| <= 1e-3 per image (in practice
~1e-6 in float32 and ~1e-12 in float64).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import sewar
import skimage.data
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from egain.errors import InputError
from egain.metrics import PIXEL_METRICS, mae, mse, pixel_metrics, psnr, scc, ssim, vif

SIZE = 64
TOL = 1e-3


def _small(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BICUBIC))


def _jpeg(a: np.ndarray, quality: int = 25) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for name in ("astronaut", "chelsea", "coffee"):
        a = _small(getattr(skimage.data, name)())
        blur = ndimage.gaussian_filter(a.astype(np.float64), (1.0, 1.0, 0))
        noise = a + rng.normal(0, 12, a.shape)
        out += [
            (f"{name}-blur", a, np.clip(blur, 0, 255).round().astype(np.uint8)),
            (f"{name}-noise", a, np.clip(noise, 0, 255).round().astype(np.uint8)),
            (f"{name}-jpeg", a, _jpeg(a)),
            (f"{name}-shift", a, np.roll(a, (1, 2), axis=(0, 1))),
        ]
    # a synthetic image with large flat regions: stresses the zero-variance branches of SCC / VIF
    flat = np.full((SIZE, SIZE, 3), 200, np.uint8)
    flat[10:40, 20:50] = (30, 120, 220)
    flat[30:34, :] = 0
    out.append(
        (
            "flat-blur",
            flat,
            np.clip(ndimage.gaussian_filter(flat.astype(float), (0.8, 0.8, 0)), 0, 255).astype(np.uint8),
        )
    )
    out.append(("flat-same", flat, flat.copy()))
    return out


def _batch(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _reference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    s = structural_similarity(
        a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    diff = a.astype(np.float64) - b.astype(np.float64)
    return {
        "ssim_raw": s,
        "ssim": (s + 1) / 2,
        "scc": sewar.scc(a, b),
        "vif": sewar.vifp(a, b, sigma_nsq=2),
        "psnr": peak_signal_noise_ratio(a, b, data_range=255) if diff.any() else np.inf,
        "mae": np.abs(diff).mean() / 255.0,
        "mse": sewar.mse(a, b) / 255.0**2,
    }


@pytest.fixture(scope="module")
def references(pairs):
    return [_reference(a, b) for _, a, b in pairs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uint8_batch_matches_skimage_and_sewar(pairs, references, dtype):
    x = _batch([a for _, a, _ in pairs])
    y = _batch([b for _, _, b in pairs])
    ours = pixel_metrics(x, y, dtype=dtype)
    assert list(ours) == list(PIXEL_METRICS)
    for i, (name, _, _) in enumerate(pairs):
        for k, ref in references[i].items():
            got = float(ours[k][i])
            if np.isinf(ref):
                assert np.isinf(got) and got > 0, (name, k)
            else:
                assert abs(got - ref) <= TOL, (name, k, got, ref)
    if dtype == torch.float64:  # the float64 path is the same arithmetic as the references
        for i in range(len(pairs)):
            for k in ("ssim_raw", "scc", "vif"):
                assert abs(float(ours[k][i]) - references[i][k]) < 1e-9


def test_float_inputs_in_minus_one_one(pairs, references):
    """The project's float convention [-1, 1] gives the same scores as the stored 8-bit values."""
    x = _batch([a for _, a, _ in pairs]).float() / 127.5 - 1
    y = _batch([b for _, _, b in pairs]).float() / 127.5 - 1
    got = {
        "ssim": ssim(x, y),
        "ssim_raw": ssim(x, y, raw=True),
        "scc": scc(x, y),
        "vif": vif(x, y),
        "mae": mae(x, y),
        "mse": mse(x, y),
    }
    for i in range(len(pairs)):
        for k, v in got.items():
            assert abs(float(v[i]) - references[i][k]) <= TOL, (pairs[i][0], k)
    p = psnr(x[:3], y[:3])
    for i in range(3):
        assert abs(float(p[i]) - references[i]["psnr"]) <= 1e-3


def test_value_range_0_1_and_chunking(pairs, references):
    """[0, 1] inputs via value_range; one image per chunk gives the same numbers as one big batch."""
    import egain.metrics.functional as fm

    x = _batch([a for _, a, _ in pairs]).float() / 255
    y = _batch([b for _, _, b in pairs]).float() / 255
    whole = pixel_metrics(x, y, ["ssim_raw", "vif"], value_range=(0, 1))
    old = fm.CPU_CHUNK_PIXELS
    try:
        fm.CPU_CHUNK_PIXELS = 1
        chunked = pixel_metrics(x, y, ["ssim_raw", "vif"], value_range=(0, 1))
    finally:
        fm.CPU_CHUNK_PIXELS = old
    for k in whole:
        torch.testing.assert_close(whole[k], chunked[k], atol=1e-5, rtol=0)
        for i in range(len(pairs)):
            assert abs(float(whole[k][i]) - references[i][k]) <= TOL


def test_scc_of_identical_images_follows_sewar_zero_window_rule():
    """Definitional quirk kept on purpose: sewar scores windows with zero high-pass variance as 0,
    so an exact copy of an image with flat regions scores below 1 (here, the fraction of pixels whose
    8x8 window has texture)."""
    a = np.zeros((48, 48, 3), np.uint8)
    a[:, 24:] = 255  # one vertical edge, flat elsewhere
    x = _batch([a])
    ours = float(scc(x, x)[0])
    assert ours == pytest.approx(sewar.scc(a, a), abs=1e-9)
    assert ours < 0.5


def test_metric_directions_on_known_distortions(pairs):
    """Sanity beyond agreement: a stronger distortion scores worse on every measure."""
    a = pairs[0][1]
    rng = np.random.default_rng(1)
    mild = np.clip(a + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8)
    strong = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    s = pixel_metrics(_batch([a, a]), _batch([mild, strong]))
    for k in ("ssim", "scc", "vif", "psnr"):
        assert s[k][0] > s[k][1], k
    for k in ("mae", "mse"):
        assert s[k][0] < s[k][1], k


def test_bad_inputs_are_input_errors():
    x = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    with pytest.raises(InputError, match="same shape"):
        pixel_metrics(x, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match="unknown pixel metric"):
        pixel_metrics(x, x, ["ssimm"])
    with pytest.raises(InputError, match="VIF-p needs images of at least 41x41"):
        vif(x[..., :32, :32], x[..., :32, :32])
    with pytest.raises(InputError, match="SSIM needs images of at least 11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def test_float_path_is_differentiable():
    """The float paths are plain torch ops: SSIM can serve as a loss (DSE uses an SSIM loss)."""
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    loss = (1 - ssim(x, y)).sum() + (1 - vif(x, y)).sum() + (1 - scc(x, y)).sum()
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0

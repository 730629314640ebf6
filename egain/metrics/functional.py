"""Per-image full-reference image-quality scores, batched in PyTorch (CPU or GPU).

Every function takes two batches ``x`` (the source / reference) and ``y`` (the reconstruction /
distorted image) of shape (N, C, H, W) and returns one score per image, shape (N,).

Scale conventions (the numbers must be comparable with published tables):

* Inputs are either ``uint8`` tensors (0..255) or float tensors on ``value_range`` (the project's
  convention is [-1, 1]). Internally everything is mapped to the 8-bit pixel scale 0..255, because
  several definitions carry absolute constants on that scale (SSIM's ``C1, C2`` with
  ``data_range=255``; VIF-p's visual-noise variance ``sigma_nsq=2``).
* SSIM, SCC and VIF-p follow scikit-image / sewar exactly (see each function). Their local
  (co)variances are differences of large moments (E[x^2] - E[x]^2 reaches 1e7 for
  Laplacian-filtered 8-bit images), so float32 needs care: inputs are centred by an integer shift
  per channel before the moments are taken, 8-bit inputs stay integral (exact squares), and TF32
  is switched off on CUDA. float32 then agrees with the float64 references to ~1e-6 per image;
  ``dtype=torch.float64`` reproduces them to ~1e-12.
* PSNR is on the 0..255 scale with ``data_range=255`` (identical to [0, 1] with data range 1).
* MAE and MSE are reported on the [0, 1] intensity scale, the way HFGI's Table 1 reports MAE
  (e.g. 0.0617), so they are independent of the storage bit depth.

All operations are differentiable torch ops, so the float paths can also serve as losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from egain.errors import InputError

#: the names :func:`pixel_metrics` understands, in the CSV column order
PIXEL_METRICS: tuple[str, ...] = ("ssim", "ssim_raw", "scc", "vif", "psnr", "mae", "mse")

# SSIM constants of Wang et al. 2004, as scikit-image uses them.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
# scikit-image sets truncate=3.5 so that sigma=1.5 gives an 11-tap window (radius int(3.5*1.5+0.5)=5).
SSIM_TRUNCATE = 3.5
# sewar's SCC: 3x3 Laplacian high-pass, 8x8 uniform window for the local correlation.
SCC_WINDOW = 8
# sewar's VIF-p: visual-noise variance and the small-variance threshold.
VIF_SIGMA_NSQ = 2.0
VIF_EPS = 1e-10
# smallest side for which all four VIF-p scales still fit their windows (17, 9, 5, 3 taps)
VIF_MIN_SIZE = 41


def to_pixels(
    images: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Map a batch to the 8-bit pixel scale 0..255 in ``dtype``.

    ``uint8`` tensors are taken as they are (0..255), so images read from files stay exact
    integers, as in the numpy references. The result is channels-last (see :func:`_nhwc`).
    """
    # one pass: convert and lay out channels-last (what the depthwise convolutions want)
    if images.dtype == torch.uint8:
        return images.to(dtype=dtype, memory_format=torch.channels_last)
    lo, hi = float(value_range[0]), float(value_range[1])
    if hi <= lo:
        raise InputError(f"value_range must be (low, high) with high > low, got {value_range}")
    x = images.to(dtype=dtype, memory_format=torch.channels_last)
    if (lo, hi) == (0.0, 255.0):
        return x
    return (x - lo) * (255.0 / (hi - lo))


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise InputError(
            f"images to compare must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.ndim != 4:
        raise InputError(f"expected image batches of shape (N, C, H, W), got shape {tuple(x.shape)}")


@lru_cache(maxsize=32)
def _gaussian_taps(radius: int, sigma: float) -> tuple[float, ...]:
    """Normalised 1-D Gaussian taps exp(-x^2 / 2 sigma^2), x = -radius..radius (scipy's kernel)."""
    w = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    s = sum(w)
    return tuple(v / s for v in w)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """Channels-last memory layout: oneDNN's depthwise convolutions are 4-7x faster in it on CPU."""
    return x.contiguous(memory_format=torch.channels_last)


def _depthwise(
    planes: torch.Tensor, taps: Sequence[float], padding: int = 0, stride: int = 1
) -> torch.Tensor:
    """Correlate every channel of (N, P, H, W) with the separable kernel taps x taps.

    Two 1-D depthwise convolutions (groups = P): 2K instead of K^2 multiply-adds per pixel, on the
    fast depthwise paths of oneDNN / cuDNN; the data stays channels-last throughout. ``stride`` 2
    equals filtering and then keeping every second row and column, at a quarter of the cost.
    """
    p, k = planes.shape[1], len(taps)
    wt = torch.tensor(taps, dtype=planes.dtype, device=planes.device)
    wh = _nhwc(wt.view(1, 1, 1, k).expand(p, 1, 1, k))
    wv = _nhwc(wt.view(1, 1, k, 1).expand(p, 1, k, 1))
    out = F.conv2d(_nhwc(planes), wh, padding=(0, padding), stride=(1, stride), groups=p)
    return F.conv2d(out, wv, padding=(padding, 0), stride=(stride, 1), groups=p)


def _filter_maps(maps: Sequence[torch.Tensor], fn) -> list[torch.Tensor]:
    """Apply the (per-channel, linear) filter ``fn`` to several same-shape maps in one call.

    The maps are stacked along the batch dimension: in channels-last memory that is a plain block
    copy, while stacking along channels would interleave them (3-10x slower on CPU).
    """
    return list(fn(torch.cat([_nhwc(m) for m in maps], 0)).split(maps[0].shape[0], 0))


def _box_mean_same_even(planes: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size`` x ``size`` window with zero padding, output the size of the input.

    Mirrors scipy's ``convolve2d(mode='same')`` with an even uniform kernel: the window of output i
    covers inputs i - size//2 .. i + size//2 - 1, i.e. symmetric zero padding of size//2 and dropping
    the last output row and column. Windows of exact zeros stay exactly zero, which matters because
    sewar's SCC tests ``den == 0`` on them (and 1/size is exact for the power-of-two window 8).
    """
    h, w = planes.shape[-2:]
    return _depthwise(planes, (1.0 / size,) * size, padding=size // 2)[..., :h, :w]


def _centred(x: torch.Tensor) -> torch.Tensor:
    """Subtract each channel's mean, rounded to an integer.

    (Co)variances are shift invariant, and E[x^2] - E[x]^2 loses far fewer digits on centred data:
    this is what makes float32 agree with the float64 references to ~1e-6. Rounding the shift keeps
    8-bit inputs integral, so their squares stay exact in float32.
    """
    shift = x.mean(dim=(-2, -1), keepdim=True).round()
    return x - shift


def _moments(a: torch.Tensor, b: torch.Tensor, taps: Sequence[float]):
    """Local means, variances and covariance of a, b (N, C, H, W) under a separable window ('valid')."""
    ma, mb, saa, sbb, sab = _filter_maps([a, b, a * a, b * b, a * b], lambda t: _depthwise(t, taps))
    # addcmul: E[ab] - E[a]E[b] in one pass
    return ma, mb, saa.addcmul(ma, ma, value=-1), sbb.addcmul(mb, mb, value=-1), sab.addcmul(ma, mb, value=-1)


def _no_tf32():
    """cuDNN may run float32 convolutions in TF32 (10-bit mantissa), which would wreck the variance
    differences; metrics always ask for true float32."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
    )


def ssim_pixels(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raw SSIM in [-1, 1] of two batches on the 0..255 scale (float32 or float64).

    Identical to scikit-image's ``structural_similarity(a, b, channel_axis=2, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)``: an 11-tap Gaussian window (truncate
    3.5), population (co)variances, and the mean of the SSIM map after cropping the 5-pixel border
    the window reaches past -- so a 'valid' convolution computes exactly the cropped map and the
    border mode never matters. The mean is taken per channel and then over channels, as skimage does.
    """
    _check_pair(x, y)
    n, c, h, w = x.shape
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(h, w) < 2 * radius + 1:
        raise InputError(
            f"SSIM needs images of at least {2 * radius + 1}x{2 * radius + 1} pixels, got {h}x{w}"
        )
    sx = x.mean(dim=(-2, -1), keepdim=True).round()
    sy = y.mean(dim=(-2, -1), keepdim=True).round()
    a, b = x - sx, y - sy
    # SSIM needs only vx + vy, not each: four filtered maps instead of five.
    with _no_tf32():
        taps = _gaussian_taps(radius, SSIM_SIGMA)
        ma, mb, m2, mab = _filter_maps([a, b, a * a + b * b, a * b], lambda t: _depthwise(t, taps))
    c1, c2 = (SSIM_K1 * 255.0) ** 2, (SSIM_K2 * 255.0) ** 2
    ux, uy = ma + sx, mb + sy
    vsum = m2.addcmul(ma, ma, value=-1).addcmul_(mb, mb, value=-1)
    vxy = mab.addcmul(ma, mb, value=-1)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vsum + c2))
    return s.flatten(2).mean(-1).mean(-1)


def _laplacian_highpass(x: torch.Tensor, integral: bool = False) -> torch.Tensor:
    """sewar's SCC high-pass: scipy ``generic_laplace`` with the 3x3 kernel [-1..8..-1] as derivative.

    sewar's derivative callback ignores the axis, so generic_laplace adds the same 2-D correlation
    once per axis: the result is *twice* the Laplacian response. scipy's 'reflect' border mode with a
    one-pixel reach repeats the edge pixel, i.e. replicate padding. For general float inputs it is
    written as the sum of the eight differences centre - neighbour, so that flat regions give
    exactly 0 in any precision (sewar's zero-variance rule depends on it); for integer-valued inputs
    (``integral``, e.g. 8-bit files) one exact 3x3 convolution does the same faster.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    if integral:
        # integer-valued pixels: the 3x3 convolution is exact (small integers), flat regions give 0
        kernel = x.new_full((x.shape[1], 1, 3, 3), -2.0)
        kernel[:, :, 1, 1] = 16.0
        with _no_tf32():
            return F.conv2d(_nhwc(p), _nhwc(kernel), groups=x.shape[1])
    h, w = x.shape[-2:]
    centre = p[..., 1 : h + 1, 1 : w + 1]
    out = None
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                d = centre - p[..., dy : dy + h, dx : dx + w]
                out = d if out is None else out.add_(d)
    return 2.0 * out


def scc_pixels(
    x: torch.Tensor, y: torch.Tensor, window: int = SCC_WINDOW, integral: bool = False
) -> torch.Tensor:
    """Spatial correlation coefficient (Zhou et al. 1998) as sewar's ``scc(GT, P)`` computes it.

    Both images are Laplacian high-passed; the local correlation coefficient over a ``window`` x
    ``window`` uniform window (zero padded, 'same' size) is averaged over all pixels and channels.
    Windows where either high-passed image has zero variance score 0, as in sewar -- so even
    identical images score below 1 when they contain flat regions.
    """
    _check_pair(x, y)
    n, c = x.shape[:2]
    hx, hy = _laplacian_highpass(x, integral), _laplacian_highpass(y, integral)
    with _no_tf32():
        mx, my, mxx, myy, mxy = _filter_maps(
            [hx, hy, hx * hx, hy * hy, hx * hy], lambda t: _box_mean_same_even(t, window)
        )
    vx = mxx.addcmul(mx, mx, value=-1).clamp_min_(0)
    vy = myy.addcmul(my, my, value=-1).clamp_min_(0)
    cov = mxy.addcmul(mx, my, value=-1)
    # sewar: den = sqrt(vx) * sqrt(vy); windows with den == 0 score 0 (the where keeps gradients finite)
    prod = vx * vy
    ok = prod > 0
    coef = torch.where(ok, cov * torch.where(ok, prod, torch.ones_like(prod)).rsqrt(), torch.zeros_like(cov))
    return coef.flatten(1).mean(-1)


@lru_cache(maxsize=8)
def _vif_taps(size: int) -> tuple[float, ...]:
    """1-D factor of sewar's ``fspecial(GAUSSIAN, ws=size, sigma=size/5)`` (it is separable).

    sewar zeroes taps below eps * max; for these sizes and sigmas none is that small, so the product
    of two normalised 1-D kernels equals its normalised 2-D kernel.
    """
    return _gaussian_taps(size // 2, size / 5.0)


def vif_pixels(x: torch.Tensor, y: torch.Tensor, sigma_nsq: float = VIF_SIGMA_NSQ) -> torch.Tensor:
    """Pixel-domain VIF (Sheikh & Bovik 2006) exactly as sewar's ``vifp(GT, P, sigma_nsq=2)``.

    Four scales with Gaussian windows of 17, 9, 5 and 3 taps (sigma = size / 5); from the second
    scale on, both images are first blurred with that scale's window ('valid') and subsampled by 2.
    Information is summed over all scales and pixels of a channel, the ratio is taken per channel,
    and the channel ratios are averaged (sewar's ``np.mean`` over channels). A channel without any
    texture (a constant image) gives 0 / 0 = NaN, as in sewar.
    """
    _check_pair(x, y)
    n, c, h, w = x.shape
    if min(h, w) < VIF_MIN_SIZE:
        raise InputError(f"VIF-p needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels, got {h}x{w}")
    gx, gy = _centred(x), _centred(y)  # VIF only uses (co)variances: shifts do not change it
    num = x.new_zeros(n, c)
    den = x.new_zeros(n, c)
    with _no_tf32():
        for scale in range(1, 5):
            size = 2 ** (4 - scale + 1) + 1
            taps = _vif_taps(size)
            if scale > 1:
                # sewar: filter2(GT, win, 'valid')[::2, ::2]
                gx, gy = _filter_maps([gx, gy], lambda t, k=taps: _depthwise(t, k, stride=2))
            _, _, var_x, var_y, cov = _moments(gx, gy, taps)
            var_x, var_y = var_x.clamp_min(0), var_y.clamp_min(0)
            # sewar's masked assignments, folded: the information term is 0 wherever the source is
            # flat (var_x < EPS), the distorted image is flat (var_y < EPS) or the gain g is negative;
            # elsewhere sv = max(var_y - g * cov, EPS). Flat source windows add nothing to den.
            g = cov / (var_x + VIF_EPS)
            keep = (var_x >= VIF_EPS) & (var_y >= VIF_EPS) & (g > 0)
            g = g * keep
            sv = var_y.addcmul(g, cov, value=-1).clamp_min(VIF_EPS)
            var_x = var_x * (var_x >= VIF_EPS)
            num = num + torch.log10(1.0 + g * g * var_x / (sv + sigma_nsq)).sum((2, 3))
            den = den + torch.log10(1.0 + var_x / sigma_nsq).sum((2, 3))
    return (num / den).mean(1)


def mse_pixels(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the 0..255 scale (per image, over pixels and channels)."""
    _check_pair(x, y)
    return (x - y).square().flatten(1).mean(1)


def psnr_from_mse255(mse255: torch.Tensor) -> torch.Tensor:
    """PSNR in dB with data_range 255 (skimage's ``peak_signal_noise_ratio``); +inf for identical images."""
    return 10.0 * torch.log10(255.0**2 / mse255)


# --- public per-image scores on the project's conventions -------------------------------------------

#: on CPU, images are scored in chunks of about this many pixels per channel (8 images of 256 px):
#: fewer, larger tensor operations amortise per-op overhead, while the chunk's ~20 full-size
#: intermediate maps stay within a few hundred MB. On GPU the whole batch goes at once.
CPU_CHUNK_PIXELS = 8 * 256 * 256


def pixel_metrics(
    x: torch.Tensor,
    y: torch.Tensor,
    metrics: Iterable[str] = PIXEL_METRICS,
    value_range: tuple[float, float] = (-1.0, 1.0),
    *,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Several pixel metrics of one batch pair at once, converting the inputs only once.

    ``x`` is the reference (source), ``y`` the reconstruction; (N, C, H, W) ``uint8`` (0..255) or
    float on ``value_range``. ``metrics`` is any subset of :data:`PIXEL_METRICS`. Returns
    ``{name: (N,) tensor}`` in the order of :data:`PIXEL_METRICS`. float32 agrees with the float64
    numpy references to ~1e-6 (the inputs are centred before the moments are taken); pass
    ``dtype=torch.float64`` for bit-level agreement at 3-5x the cost.
    """
    wanted = set(metrics)
    unknown = wanted - set(PIXEL_METRICS)
    if unknown:
        raise InputError(
            f"unknown pixel metric(s) {sorted(unknown)}; expected some of {', '.join(PIXEL_METRICS)}"
        )
    _check_pair(x, y)
    n, _, h, w = x.shape
    chunk = n if x.device.type != "cpu" else max(1, CPU_CHUNK_PIXELS // (h * w))
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in PIXEL_METRICS if k in wanted}
    # 8-bit inputs stay integer-valued on the pixel scale, which allows exact shortcuts
    integral = not x.dtype.is_floating_point and not y.dtype.is_floating_point
    for start in range(0, n, chunk):
        px = to_pixels(x[start : start + chunk], value_range, dtype)
        py = to_pixels(y[start : start + chunk], value_range, dtype)
        if wanted & {"ssim", "ssim_raw"}:
            s = ssim_pixels(px, py)
            if "ssim" in wanted:
                parts["ssim"].append((s + 1.0) / 2.0)
            if "ssim_raw" in wanted:
                parts["ssim_raw"].append(s)
        if "scc" in wanted:
            parts["scc"].append(scc_pixels(px, py, integral=integral))
        if "vif" in wanted:
            parts["vif"].append(vif_pixels(px, py))
        if wanted & {"psnr", "mse", "mae"}:
            diff = px - py
            if wanted & {"psnr", "mse"}:
                m = diff.square().flatten(1).mean(1)
                if "psnr" in wanted:
                    parts["psnr"].append(psnr_from_mse255(m))
                if "mse" in wanted:
                    parts["mse"].append(m / 255.0**2)
            if "mae" in wanted:
                parts["mae"].append(diff.abs().flatten(1).mean(1) / 255.0)
    return {k: torch.cat(v) for k, v in parts.items()}


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    *,
    raw: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SSIM per image, mapped to [0, 1] as (s + 1) / 2 (seeds/000), or raw in [-1, 1] if ``raw``."""
    name = "ssim_raw" if raw else "ssim"
    return pixel_metrics(x, y, [name], value_range, dtype=dtype)[name]


def scc(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), *, dtype=torch.float32
) -> torch.Tensor:
    """Spatial correlation coefficient per image (sewar's ``scc``); see :func:`scc_pixels`."""
    return pixel_metrics(x, y, ["scc"], value_range, dtype=dtype)["scc"]


def vif(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), *, dtype=torch.float32
) -> torch.Tensor:
    """Pixel-domain VIF per image (sewar's ``vifp``, sigma_nsq=2 on the 0..255 scale)."""
    return pixel_metrics(x, y, ["vif"], value_range, dtype=dtype)["vif"]


def psnr(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), *, dtype=torch.float32
) -> torch.Tensor:
    """PSNR in dB per image, data range 255 on the 0..255 scale; +inf for identical images."""
    return pixel_metrics(x, y, ["psnr"], value_range, dtype=dtype)["psnr"]


def mae(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), *, dtype=torch.float32
) -> torch.Tensor:
    """Mean absolute error per image on the [0, 1] intensity scale (HFGI's Table 1 convention)."""
    return pixel_metrics(x, y, ["mae"], value_range, dtype=dtype)["mae"]


def mse(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), *, dtype=torch.float32
) -> torch.Tensor:
    """Mean squared error per image on the [0, 1] intensity scale."""
    return pixel_metrics(x, y, ["mse"], value_range, dtype=dtype)["mse"]

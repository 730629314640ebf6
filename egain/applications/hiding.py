"""Secure deep hiding (seeds/004 Alg. 1): hide an image as its quantised W+ code in a carrier image.

1. ``W_s = E(I_s)``; 2. ``W_as = round(W_s / step)`` (the paper keeps the integer part, step 1;
   the published script rounds with np.rint to a sign bit + 8-bit magnitude, 9 bits a value);
3. ``I_cs = Emb(I_c, W_as)``; 5. ``W_as = Ext(I_cs)`` bit-exactly; 6. ``I_r = G(step * W_as)``.

Steganography (our own, documented scheme; the paper uses syndrome-trellis codes through MATLAB):

* a keyed pseudo-random order of all carrier samples (H x W x 3 uint8 values);
* a 40-bit preamble (Hamming parameter k, payload length) in the first 40 samples' LSBs;
* the payload by **matrix embedding with Hamming codes** (Crandall 1998; F5, Westfeld 2001): each
  block of n = 2^k - 1 samples carries k bits in the XOR-syndrome of its LSBs and needs at most one
  change; k is the largest that fits, so small payloads change few samples;
* the payload is XOR-ed with a keyed keystream first (it looks random; without the key it is noise);
* changes are **LSB matching** (+-1 at random, keyed), not LSB replacement, so the pairs-of-values
  histogram the chi-square attack and RS analysis look for is not created.
  ``scheme="replacement"`` (sequential LSB replacement) is there as the detectable baseline.

Steganalysis: :func:`chi_square_attack` (Westfeld & Pfitzmann 1999: p-value that the LSB
pairs-of-values are equalised; near 1 means "embedded") and :func:`rs_analysis` (Fridrich et al.
2001: estimated LSB-replacement rate). The code hidden is the W+ code only: a high-fidelity
method's distortion maps are not transmitted, so the secret comes back as the basic code's image.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

from egain.errors import InputError

MAGIC = b"EGH1"
_PREAMBLE = 40  # 8 bits k + 32 bits payload length, plain LSBs


# ------------------------------------------------------------------------------------------------
# the code <-> bits


def quantize(w: torch.Tensor, step: float = 1.0) -> torch.Tensor:
    """Integer code ``round(w / step)`` (int64)."""
    return torch.round(w.detach().double().cpu() / step).to(torch.int64)


def encode_code(q: torch.Tensor, step: float, bits: int | None = None) -> np.ndarray:
    """A (n_latent, style_dim) integer code -> bits: header (magic, step, shape, width), then each
    value as a sign bit and a ``bits - 1``-bit magnitude (the paper's layout is 9 bits)."""
    if q.ndim != 2:
        raise InputError(f"hide one code at a time: expected (n_latent, style_dim), got {tuple(q.shape)}")
    need = 1 + max(1, int(q.abs().max()).bit_length())
    bits = max(need, bits or 0)
    if bits > 32:
        raise InputError(f"the quantised code needs {bits} bits a value; use a coarser step")
    header = MAGIC + struct.pack("<dHHB", float(step), q.shape[0], q.shape[1], bits)
    hbits = np.unpackbits(np.frombuffer(header, dtype=np.uint8))
    v = q.flatten().numpy()
    mag = np.abs(v).astype(np.uint64)
    shifts = np.arange(bits - 2, -1, -1, dtype=np.uint64)
    body = np.concatenate(
        [(v < 0).astype(np.uint8)[:, None], ((mag[:, None] >> shifts) & 1).astype(np.uint8)], 1
    )
    return np.concatenate([hbits, body.reshape(-1)]).astype(np.uint8)


def decode_code(bits: np.ndarray) -> tuple[torch.Tensor, float]:
    """Inverse of :func:`encode_code`: (integer code, step)."""
    hlen = (len(MAGIC) + struct.calcsize("<dHHB")) * 8
    header = np.packbits(bits[:hlen]).tobytes()
    if header[:4] != MAGIC:
        raise InputError("no egain hidden code found (wrong key, or not a stego image)")
    step, rows, cols, width = struct.unpack("<dHHB", header[4:])
    body = bits[hlen : hlen + rows * cols * width].reshape(rows * cols, width).astype(np.int64)
    mag = (body[:, 1:] << np.arange(width - 2, -1, -1)).sum(1)
    v = np.where(body[:, 0] == 1, -mag, mag)
    return torch.from_numpy(v.reshape(rows, cols)), step


# ------------------------------------------------------------------------------------------------
# embedding


def _order(n: int, key: int) -> np.ndarray:
    return np.random.default_rng(key).permutation(n)


def capacity(n_samples: int, k: int) -> int:
    """Payload bits Hamming(2^k - 1) matrix embedding carries in ``n_samples`` (after the preamble)."""
    return ((n_samples - _PREAMBLE) // (2**k - 1)) * k


def _plus_minus_one(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Change each value by +-1 (LSB matching): random sign, forced at 0 and 255."""
    sign = np.where(rng.random(values.shape) < 0.5, -1, 1)
    sign = np.where(values == 0, 1, np.where(values == 255, -1, sign))
    return (values.astype(np.int16) + sign).astype(np.uint8)


def _whiten(bits: np.ndarray, key: int) -> np.ndarray:
    """XOR with a keyed keystream: the payload looks like random bits (a code's bits are mostly
    zeros), and without the key the extracted bits say nothing."""
    stream = np.random.default_rng([key, 0x5EC2E7]).integers(0, 2, size=len(bits), dtype=np.uint8)
    return bits ^ stream


def embed_bits(
    carrier: np.ndarray, bits: np.ndarray, key: int = 0, scheme: str = "matching"
) -> tuple[np.ndarray, dict[str, float]]:
    """Hide ``bits`` in an (H, W, 3) uint8 carrier; returns the stego image and embedding facts."""
    if carrier.dtype != np.uint8:
        raise InputError("the carrier must be an 8-bit image")
    bits = _whiten(np.asarray(bits, np.uint8), key)
    flat = carrier.reshape(-1).copy()
    n = flat.size
    if scheme == "replacement":  # the detectable baseline: sequential LSB replacement
        if len(bits) + 32 > n:
            raise InputError(f"payload of {len(bits)} bits does not fit {n} carrier samples")
        stream = np.concatenate([np.unpackbits(np.array([len(bits)], ">u4").view(np.uint8)), bits])
        flat[: len(stream)] = (flat[: len(stream)] & 0xFE) | stream
        changed = int((flat != carrier.reshape(-1)).sum())
        return flat.reshape(carrier.shape), {"k": 1, "bits": len(bits), "samples": n, "changed": changed}
    if scheme != "matching":
        raise InputError(f"unknown scheme {scheme!r}; use matching or replacement")
    fits = [k for k in range(1, 17) if capacity(n, k) >= len(bits)]
    if not fits:
        raise InputError(
            f"payload of {len(bits)} bits does not fit a carrier of {n} samples ({capacity(n, 1)} bits at most); "
            "use a larger carrier or a coarser step"
        )
    k = max(fits)
    order = _order(n, key)
    rng = np.random.default_rng(key + 1)
    pre = np.concatenate(
        [np.unpackbits(np.array([k], np.uint8)), np.unpackbits(np.array([len(bits)], ">u4").view(np.uint8))]
    )
    idx = order[:_PREAMBLE]
    flip = (flat[idx] & 1) != pre
    flat[idx[flip]] = _plus_minus_one(flat[idx[flip]], rng)
    blk = 2**k - 1
    nblocks = math.ceil(len(bits) / k)
    msg = np.zeros(nblocks * k, np.uint8)
    msg[: len(bits)] = bits
    msg_int = (msg.reshape(nblocks, k).astype(np.int64) << np.arange(k - 1, -1, -1)).sum(1)
    pos = order[_PREAMBLE : _PREAMBLE + nblocks * blk].reshape(nblocks, blk)
    lsb = (flat[pos] & 1).astype(np.int64)
    syn = np.bitwise_xor.reduce(lsb * np.arange(1, blk + 1), axis=1)
    j = syn ^ msg_int  # 1-based position to change, 0: none
    rows = np.nonzero(j)[0]
    targets = pos[rows, j[rows] - 1]
    flat[targets] = _plus_minus_one(flat[targets], rng)
    changed = int((flat != carrier.reshape(-1)).sum())
    return flat.reshape(carrier.shape), {"k": k, "bits": len(bits), "samples": n, "changed": changed}


def extract_bits(stego: np.ndarray, key: int = 0, scheme: str = "matching") -> np.ndarray:
    """The bits :func:`embed_bits` hid (the same key and scheme)."""
    flat = stego.reshape(-1)
    if scheme == "replacement":
        length = int(np.packbits(flat[:32] & 1).view(">u4")[0])
        return _whiten((flat[32 : 32 + length] & 1).astype(np.uint8), key)
    order = _order(flat.size, key)
    pre = flat[order[:_PREAMBLE]] & 1
    k = int(np.packbits(pre[:8])[0])
    length = int(np.packbits(pre[8:]).view(">u4")[0])
    if not 1 <= k <= 16 or length > capacity(flat.size, k):
        raise InputError("no egain hidden code found (wrong key, or not a stego image)")
    blk = 2**k - 1
    nblocks = math.ceil(length / k)
    pos = order[_PREAMBLE : _PREAMBLE + nblocks * blk].reshape(nblocks, blk)
    lsb = (flat[pos] & 1).astype(np.int64)
    syn = np.bitwise_xor.reduce(lsb * np.arange(1, blk + 1), axis=1)
    out = ((syn[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8).reshape(-1)
    return _whiten(out[:length], key)


# ------------------------------------------------------------------------------------------------
# steganalysis


CHI_SQUARE_PREFIXES = (0.1, 0.25, 0.5, 1.0)


def chi_square_attack(image: np.ndarray, prefixes: tuple[float, ...] = CHI_SQUARE_PREFIXES) -> float:
    """Westfeld-Pfitzmann chi-square attack: p-value that pairs of values (2i, 2i+1) have been
    equalised by LSB replacement (near 1: embedding likely; near 0: none). As in the original
    attack it is evaluated on growing prefixes of the samples (raster order); the largest p counts."""
    flat = image.reshape(-1)
    return max(_chi_square_p(flat[: max(4096, int(f * flat.size))]) for f in prefixes)


def _chi_square_p(values: np.ndarray) -> float:
    from scipy.stats import chi2

    h = np.bincount(values, minlength=256).astype(np.float64)
    even, odd = h[0::2], h[1::2]
    expected = (even + odd) / 2
    keep = expected > 4
    if keep.sum() < 2:
        return 0.0
    stat = float((((even - expected) ** 2)[keep] / expected[keep]).sum())
    return float(chi2.sf(stat, int(keep.sum()) - 1))


def _flip(x: np.ndarray, sign: int) -> np.ndarray:
    if sign > 0:
        return x ^ 1
    return ((x + 1) ^ 1) - 1  # F_-1: -1<->0, 1<->2, ...


def _rs_counts(x: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, float]:
    groups = x.reshape(-1, mask.size).astype(np.int64)

    def smooth(g: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(g, axis=1)).sum(1)

    f0 = smooth(groups)
    out = []
    for sign in (1, -1):
        g = groups.copy()
        cols = mask == 1
        g[:, cols] = _flip(g[:, cols], sign)
        f = smooth(g)
        out += [float((f > f0).mean()), float((f < f0).mean())]
    return out[0], out[1], out[2], out[3]


def rs_analysis(image: np.ndarray) -> float:
    """Fridrich-Goljan-Du RS steganalysis: estimated fraction of samples carrying LSB-replacement
    payload (about 0 for clean images; mask [0, 1, 1, 0] on groups of 4 horizontal neighbours)."""
    mask = np.array([0, 1, 1, 0])
    rates = []
    for c in range(image.shape[-1]):
        ch = image[..., c]
        w = ch.shape[1] // 4 * 4
        x = ch[:, :w].reshape(-1)
        rm, sm, rmm, smm = _rs_counts(x, mask)
        rm1, sm1, rmm1, smm1 = _rs_counts(x ^ 1, mask)
        d0, d1, dm0, dm1 = rm - sm, rm1 - sm1, rmm - smm, rmm1 - smm1
        a, b, cc = 2 * (d1 + d0), dm0 - dm1 - d1 - 3 * d0, d0 - dm0
        if abs(a) < 1e-12:
            z = -cc / b if abs(b) > 1e-12 else 0.0
        else:
            disc = max(b * b - 4 * a * cc, 0.0)
            roots = [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
            z = min(roots, key=abs)
        rates.append(z / (z - 0.5) if abs(z - 0.5) > 1e-12 else 1.0)
    return float(np.clip(np.mean(rates), 0.0, 1.0))


# ------------------------------------------------------------------------------------------------
# the application


@dataclass
class HidingReport:
    """What one hiding run cost and achieved."""

    step: float
    bits_per_value: int
    payload_bits: int
    carrier_samples: int
    capacity_used: float  # payload bits / carrier samples (bits per 8-bit sample)
    hamming_k: int
    changed_samples: int
    carrier_psnr: float
    bit_exact: bool
    secret_psnr: float  # reconstruction from the extracted code vs the secret image
    secret_psnr_unquantised: float  # the same code unquantised (what quantisation costs)
    chi_square_p_carrier: float
    chi_square_p_stego: float
    rs_rate_carrier: float
    rs_rate_stego: float
    scheme: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def generate(method, w: torch.Tensor) -> torch.Tensor:
    """``G(w)`` with the method's generator and noise mode, area-pooled to its input size (1, 3, S, S).

    The code alone: a high-fidelity method's distortion maps are not hidden, so HFGI/EGAIN reveal
    their basic code's image; external fusion (egain-external) hides its fused code, so it keeps
    what its delta branch added.
    """
    w = w.to(method.device, torch.float32)
    if w.ndim == 2:
        w = w.unsqueeze(0)
    y = method.generator.synthesize(w, noise_mode=getattr(method, "noise_mode", "const"))
    s = method.input_size
    if y.shape[-1] > s:
        y = torch.nn.functional.adaptive_avg_pool2d(y, (s, s))
    return y.float().cpu()


@torch.no_grad()
def hide_image(
    method, secret, carrier: np.ndarray, *, step: float = 1.0, key: int = 0, scheme: str = "matching"
) -> tuple[np.ndarray, HidingReport, dict[str, torch.Tensor]]:
    """Alg. 1 end to end for one secret image: invert, quantise, embed, extract, regenerate.

    Returns the stego image, the report, and images ``secret``, ``unquantised`` (G of the code
    before quantisation), ``revealed`` (G of the extracted code).
    """
    from egain.methods import prepare_images

    secret_img = prepare_images(secret, method.input_size).float().cpu()
    inv = method.invert(secret_img)
    if len(inv) != 1:
        raise InputError("hide one secret image at a time")
    code = inv.latents[0]  # w_b for internal fusion, the fused code for external fusion
    q = quantize(code, step)
    bits = encode_code(q, step, bits=9 if step == 1.0 else None)
    stego, facts = embed_bits(carrier, bits, key, scheme)
    got = extract_bits(stego, key, scheme)
    q2, step2 = decode_code(got)
    exact = bool(np.array_equal(got, bits) and torch.equal(q2, q))
    revealed = generate(method, q2.double() * step2)
    unquantised = generate(method, code)

    def psnr_t(x: torch.Tensor, y: torch.Tensor) -> float:
        mse = float(((x.clamp(-1, 1) - y.clamp(-1, 1)) ** 2).mean()) / 4
        return float("inf") if mse == 0 else 10 * math.log10(1 / mse)

    width = int(bits.size - (len(MAGIC) + struct.calcsize("<dHHB")) * 8) // q.numel()
    report = HidingReport(
        step=step,
        bits_per_value=width,
        payload_bits=int(bits.size),
        carrier_samples=int(carrier.size),
        capacity_used=float(bits.size / carrier.size),
        hamming_k=int(facts["k"]),
        changed_samples=int(facts["changed"]),
        carrier_psnr=psnr_uint8(carrier, stego),
        bit_exact=exact,
        secret_psnr=psnr_t(revealed, secret_img),
        secret_psnr_unquantised=psnr_t(unquantised, secret_img),
        chi_square_p_carrier=chi_square_attack(carrier),
        chi_square_p_stego=chi_square_attack(stego),
        rs_rate_carrier=rs_analysis(carrier),
        rs_rate_stego=rs_analysis(stego),
        scheme=scheme,
    )
    return stego, report, {"secret": secret_img, "unquantised": unquantised, "revealed": revealed}


@torch.no_grad()
def reveal_image(method, stego: np.ndarray, key: int = 0, scheme: str = "matching") -> torch.Tensor:
    """The receiver's side: extract the code and regenerate ``G(step * W_as)`` (1, 3, S, S)."""
    q, step = decode_code(extract_bits(stego, key, scheme))
    return generate(method, q.double() * step)

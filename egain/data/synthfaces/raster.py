"""A tiny anti-aliased 2-D rasteriser on numpy: signed distances, soft coverage, alpha blending.

Every shape is evaluated only inside its own bounding window (a slice of the canvas), because a
face is made of ~100 small parts and evaluating each on the whole canvas would cost 10-50x more.
Shapes return *signed distances in pixels* (negative inside), so they compose with ``max``
intersection and ``min`` union before being turned into coverage with a one-pixel ramp; the
ramp plus the final area-downsampling of the supersampled canvas gives clean anti-aliased edges.
Everything is float32 and uses only elementwise numpy ops, so results are bit-identical on any
machine running the same numpy build.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

try:  # the clip ufunc itself: np.clip is a Python wrapper around it costing ~2 us a call, and one
    # clip replaces a minimum and a maximum (same values: clipping only selects)
    from numpy._core.umath import clip
except ImportError:  # pragma: no cover - other numpy layouts
    clip = np.clip

F32 = np.float32


@lru_cache(maxsize=8)
def pixel_centres(n: int) -> np.ndarray:
    """Pixel-centre coordinates 0.5 .. n-0.5 (cached: every window is a view into it)."""
    out = np.arange(n, dtype=F32) + 0.5
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def noise_tile(n: int, cell: float, salt: int) -> np.ndarray:
    """Smooth zero-mean, unit-std noise of size (2n, 2n) with features about ``cell`` pixels wide.

    Made once per (size, feature scale) from a fixed seed; an image takes an (n, n) window at a
    random offset, which gives unlimited, deterministic textures for the price of a slice.
    """
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(np.random.SeedSequence(entropy=0x5F4CE5, spawn_key=(n, salt)))
    # Smooth noise is made at a coarser grid (about two samples per feature) and interpolated up:
    # the same look as filtering full-size white noise, for a fraction of the cost at large sizes.
    k = max(1, int(cell // 2))
    m = -(-2 * n // k)
    base = rng.standard_normal((m, m))
    if cell > 0.6:
        base = gaussian_filter(base, sigma=cell / (2.0 * k), mode="wrap")
    if k > 1:
        base = zoom(base, k, order=1, mode="grid-wrap", grid_mode=True)
    base = base[: 2 * n, : 2 * n]
    base = (base - base.mean()) / (base.std() + 1e-12)
    out = base.astype(F32)
    out.flags.writeable = False
    return out


class Window:
    """A rectangular region of the canvas and the pixel-centre coordinates along its two axes.

    A plain slotted class: ~60 windows are made per image, so construction cost matters."""

    __slots__ = ("y0", "y1", "x0", "x1", "X", "Y")

    def __init__(self, y0: int, y1: int, x0: int, x1: int, X: np.ndarray, Y: np.ndarray):
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.X = X  # (1, w)
        self.Y = Y  # (h, 1)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


class Canvas:
    """A (3, n, n) float32 RGB image in [0, 1] with windowed shape filling.

    Channels come first so that blending a window multiplies contiguous rows by a 2-D coverage
    map (4-5x faster in numpy than broadcasting over a trailing channel axis of length 3)."""

    def __init__(self, n: int, pixels: bool = True):
        """``pixels=False`` makes a canvas used only for its windows (no image memory); the
        image starts uninitialised because every picture begins by painting its background."""
        self.n = n
        self.img = np.empty((3, n, n), dtype=F32) if pixels else np.empty((3, 0, 0), dtype=F32)
        self._c = pixel_centres(n)
        self._cx = self._c[None, :]
        self._cy = self._c[:, None]

    # ---- windows -------------------------------------------------------------------------------
    def window(self, x0: float, y0: float, x1: float, y1: float, pad: float = 2.0) -> Window | None:
        """The window covering [x0, x1] x [y0, y1] (pixels, padded, clipped); None when empty."""
        n = self.n
        ix0 = int(x0 - pad + 1e6) - 1000000  # floor, valid for |x| < 1e6
        iy0 = int(y0 - pad + 1e6) - 1000000
        ix1 = -(int(-(x1 + pad) + 1e6) - 1000000)  # ceil
        iy1 = -(int(-(y1 + pad) + 1e6) - 1000000)
        ix0 = 0 if ix0 < 0 else ix0
        iy0 = 0 if iy0 < 0 else iy0
        ix1 = n if ix1 > n else ix1
        iy1 = n if iy1 > n else iy1
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return Window(iy0, iy1, ix0, ix1, self._cx[:, ix0:ix1], self._cy[iy0:iy1])

    def window_around(self, cx: float, cy: float, ex: float, ey: float, pad: float = 2.0) -> Window | None:
        return self.window(cx - ex, cy - ey, cx + ex, cy + ey, pad)

    def full(self) -> Window:
        return self.window(0, 0, self.n, self.n, 0)  # type: ignore[return-value]

    # ---- filling -------------------------------------------------------------------------------
    def fill(
        self,
        win: Window | None,
        d: np.ndarray | None,
        color,
        soft: float = 1.0,
        opacity: float = 1.0,
    ) -> np.ndarray | None:
        """Paint ``color`` (3,) or (3, h, w) where the signed distance ``d`` is negative.

        Coverage ramps linearly over ``soft`` pixels around the edge; returns the coverage used.
        """
        if win is None or d is None:
            return None
        a = coverage(d, soft)
        if opacity != 1.0:
            a *= opacity
        self.blend(win, a, color)
        return a

    def blend(self, win: Window, alpha: np.ndarray, color) -> None:
        region = self.img[:, win.y0 : win.y1, win.x0 : win.x1]
        col = np.asarray(color, dtype=F32)
        if col.ndim == 1:
            col = col[:, None, None]
        tmp = np.subtract(col, region)
        tmp *= alpha
        region += tmp


def coverage(d: np.ndarray, soft: float = 1.0) -> np.ndarray:
    """Signed distance pixels -> coverage in [0, 1] with a linear ramp ``soft`` pixels wide."""
    a = d * (-1.0 / max(soft, 1e-3))
    a += 0.5
    clip(a, 0.0, 1.0, out=a)
    return a


def rotated_extent(rx: float, ry: float, ang: float) -> tuple[float, float]:
    """Half-extents of the bounding box of an ellipse with radii (rx, ry) rotated by ``ang``."""
    c, s = math.cos(ang), math.sin(ang)
    return math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)


def local(win: Window, cx: float, cy: float, ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Window coordinates in a frame centred at (cx, cy) and rotated by ``ang`` radians."""
    c, s = math.cos(ang), math.sin(ang)
    dx = win.X - cx
    dy = win.Y - cy
    return dx * c + dy * s, dy * c - dx * s


def sd_ellipse(win: Window, cx: float, cy: float, rx: float, ry: float, ang: float = 0.0) -> np.ndarray:
    """Radial signed distance to a rotated ellipse: exact along every ray from the centre.

    With s = sqrt(q) the ellipse's "radius" of a point (q the quadratic form, s = 1 on the edge),
    the edge point on the same ray is p / s, so the distance along the ray is |p| (1 - 1/s). The
    quadratic form is written as a dx^2 + 2b dx dy + c dy^2 so that the dx-only and dy-only
    terms stay row / column vectors: only 8 full-window operations per ellipse."""
    co, si = math.cos(ang), math.sin(ang)
    ix, iy = 1.0 / (rx * rx), 1.0 / (ry * ry)
    a = co * co * ix + si * si * iy
    c = si * si * ix + co * co * iy
    b2 = 2.0 * co * si * (ix - iy)
    dx = win.X - cx  # (1, w)
    dy = win.Y - cy  # (h, 1)
    dx2, dy2 = dx * dx, dy * dy
    q = dx2 * a + dy2 * c  # (h, w)
    if b2:
        q += (dx * b2) * dy
    np.sqrt(q, out=q)  # s
    q += 1e-6
    p = dx2 + dy2
    np.sqrt(p, out=p)  # |p|
    p -= p / q
    return p


def sd_circle(win: Window, cx: float, cy: float, r: float) -> np.ndarray:
    dx = win.X - cx
    dy = win.Y - cy
    return np.sqrt(dx * dx + dy * dy) - r


def sd_box(
    win: Window, cx: float, cy: float, hw: float, hh: float, ang: float = 0.0, radius: float = 0.0
) -> np.ndarray:
    """Signed distance to a rotated rectangle with rounded corners (``radius`` pixels)."""
    xr, yr = local(win, cx, cy, ang)
    qx = np.abs(xr) - (hw - radius)
    qy = np.abs(yr) - (hh - radius)
    ox = np.maximum(qx, 0.0)
    oy = np.maximum(qy, 0.0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), 0.0) - radius


def sd_capsule(win: Window, ax: float, ay: float, bx: float, by: float, r: float) -> np.ndarray:
    """Signed distance to the segment (a, b) thickened by ``r``."""
    px = win.X - ax
    py = win.Y - ay
    ex, ey = bx - ax, by - ay
    ll = ex * ex + ey * ey
    if ll < 1e-9:
        return np.sqrt(px * px + py * py) - r
    t = (px * ex + py * ey) * (1.0 / ll)
    clip(t, 0.0, 1.0, out=t)
    qx = px - t * ex
    qy = py - t * ey
    return np.sqrt(qx * qx + qy * qy) - r


def sd_band(
    win: Window,
    cx: float,
    cy: float,
    ang: float,
    half_len: float,
    curve: tuple[float, float, float],
    thick: tuple[float, float, float],
) -> np.ndarray:
    """A curved stroke: along local x in [-L, L] with t = x / L, its centre line is
    y = c2 t^2 + c1 t + c0 and its half-thickness k0 + k1 t + k2 t^2 (pixels, clipped at 0).

    Distances across the stroke are vertical, which is accurate for the gentle curves used here
    (brows, lips, lids, wrinkles) and much cheaper than a true curve distance.
    """
    xr, yr = local(win, cx, cy, ang)
    return band_local(xr, yr, half_len, curve, thick)


def band_local(
    xr: np.ndarray,
    yr: np.ndarray,
    half_len: float,
    curve: tuple[float, float, float],
    thick: tuple[float, float, float],
    dx: float = 0.0,
) -> np.ndarray:
    """:func:`sd_band` on coordinates already in the stroke's frame (strokes sharing a frame,
    like the parts of a mouth, compute the rotation once); ``dx`` shifts the stroke along x."""
    t = (xr - dx) * (1.0 / half_len) if dx else xr * (1.0 / half_len)
    c2, c1, c0 = curve
    k0, k1, k2 = thick
    yc = t * c2
    if c1:
        yc += c1
    yc *= t
    yc += c0
    th = t * k2
    if k1:
        th += k1
    th *= t
    th += k0
    np.maximum(th, 0.0, out=th)
    yc -= yr
    np.abs(yc, out=yc)
    yc -= th
    np.abs(t, out=t)
    t -= 1.0
    t *= half_len
    np.maximum(yc, t, out=yc)
    return yc


def band_extent(half_len: float, curve, thick, ang: float) -> tuple[float, float]:
    """Conservative half-extents of an :func:`sd_band` stroke's bounding box."""
    h = abs(curve[0]) + abs(curve[1]) + abs(curve[2]) + abs(thick[0]) + abs(thick[1]) + abs(thick[2])
    c, s = abs(math.cos(ang)), abs(math.sin(ang))
    return half_len * c + h * s, half_len * s + h * c


def downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Area box downsampling of a (C, n, n) image by an integer factor: each block's mean."""
    if factor == 1:
        return img
    out = img[:, 0::factor, 0::factor].copy()
    for i in range(factor):
        for j in range(factor):
            if i or j:
                out += img[:, i::factor, j::factor]
    out *= 1.0 / (factor * factor)
    return out

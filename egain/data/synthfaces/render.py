"""Paint one synthfaces image from an :class:`Identity` and a :class:`Variation`.

The painter works on a canvas ``supersample`` times larger than the output and area-downsamples
at the end (anti-aliasing). Layers go back to front: background (and text-like marks), clothing,
hair behind the head, neck, ears, face, skin marks, eyes, brows, nose, beard, mouth, wrinkles, hair
in front, hat, glasses, earrings, then hands and objects in front of the face. Light is applied
last, on the downsampled image, as a smooth shading field from a head-shaped ellipsoid.

Pose: every facial feature is placed by projecting its face-unit position (u, v) from a rotating
head ellipsoid (yaw: x = u cos(yaw) + z sin(yaw), where z is the feature's depth; features that
stick out, like the nose, shift more) and horizontally scaled by the local foreshortening; roll
rotates the whole head about the neck. All sizes scale with the face width, so the same identity
and variation give the same picture at every resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .params import Identity, Variation
from .parsing import CLASS_INDEX, downsample_labels
from .raster import (
    F32,
    Canvas,
    Window,
    band_extent,
    band_local,
    clip,
    coverage,
    downsample,
    local,
    noise_tile,
    rotated_extent,
    sd_band,
    sd_box,
    sd_capsule,
    sd_circle,
    sd_ellipse,
)

_UNSET = object()
_HEAD_DEPTH = 0.85  # z-radius of the head ellipsoid relative to its half-width
_EYE_LINE = 0.48  # eye line height as a fraction of the image


@dataclass
class RenderResult:
    """The picture (H, W, 3) uint8 and what was painted where (output-pixel coordinates)."""

    image: np.ndarray
    rare: dict[str, list[list[int]]] = field(default_factory=dict)
    landmarks: dict[str, list[float]] = field(default_factory=dict)
    face_box: list[int] = field(default_factory=list)
    #: (H, W) uint8 class indices into :data:`~egain.data.synthfaces.parsing.PARSING_CLASSES`,
    #: made only when rendering with ``parsing=True``
    parsing: np.ndarray | None = None


def _mix(a, b, t: float) -> np.ndarray:
    a = np.asarray(a, dtype=F32)
    return a + (np.asarray(b, dtype=F32) - a) * t


def _scale(c, k: float) -> np.ndarray:
    return clip(np.asarray(c, dtype=F32) * k, 0.0, 1.0)


class _Painter:
    """Paints one image layer by layer; holds the pose frame, the canvas and what was drawn where."""

    def __init__(self, ident: Identity, var: Variation, size: int, supersample: int, parsing: bool = False):
        self.I, self.V = ident, var
        self.size, self.ss = size, supersample
        self.R = R = size * supersample
        self.cv = Canvas(R)
        self.F = F = ident.face_width * var.scale * R
        self.roll = var.roll
        self.c, self.s = math.cos(var.roll), math.sin(var.roll)
        self.cy_, self.sy_ = math.cos(var.yaw), math.sin(var.yaw)
        # roll pivots about the base of the neck, so the head tilts rather than spins in place
        px = (0.5 + var.shift_x) * R
        py = (_EYE_LINE + var.shift_y) * R + 1.6 * F
        self.pivot = (px, py)
        self.Cx = px + self.s * 1.6 * F
        self.Cy = py - self.c * 1.6 * F
        self.rng = np.random.default_rng(var.detail_seed)
        self.rare: dict[str, list[list[int]]] = {
            "earrings": [],
            "hand": [],
            "phone": [],
            "watch": [],
            "clothing_pattern": [],
            "text_marks": [],
        }
        self.landmarks: dict[str, list[float]] = {}
        # coverage of the person (and whatever they hold): light falls on it, not on the backdrop
        self.mask = np.zeros((R, R), dtype=F32)
        # smooth multiplicative shading (eye sockets, nose, dimples) kept at output resolution:
        # it has no detail finer than a pixel, so painting it 4x smaller costs nothing visible
        self.out_grid = Canvas(size, pixels=False)
        self.shade = np.ones((size, size), dtype=F32)
        self._offs = self.rng.integers(0, R, size=(4, 2))
        self.face_box: list[int] = []
        self._hair_cache = _UNSET
        self.skin = np.asarray(ident.skin, dtype=F32)
        self._ear_pos: dict[int, tuple[float, float, float, float, float]] = {}
        # parsing: per canvas pixel the number of the last labelled layer covering it, and the class
        # of each layer number (0 = background); nothing of this touches the picture
        self.layers = np.zeros((R, R), dtype=np.uint8) if parsing else None
        self.layer_class = [0]

    # ---- geometry -------------------------------------------------------------------------------
    def to_img(self, x: float, y: float) -> tuple[float, float]:
        """Face-plane coordinates (already yaw-projected) -> canvas pixels."""
        F, c, s = self.F, self.c, self.s
        return self.Cx + F * (c * x - s * y), self.Cy + F * (s * x + c * y)

    def project(self, u: float, v: float, z_extra: float = 0.0) -> tuple[float, float]:
        """Yaw projection of a point of the face: (x in the face plane, horizontal scale there).

        The point sits on a head ellipsoid at depth z(u) = D sqrt(1 - u^2 - 0.08 v^2) (plus
        ``z_extra`` for parts that stick out); turning by yaw gives x = u cos(yaw) + z sin(yaw),
        and dx/du is the foreshortening of features there (clamped to stay drawable)."""
        r = 1.0 - u * u - 0.08 * v * v
        if r < 0.02:
            r = 0.02
        root = math.sqrt(r)
        x = u * self.cy_ + (_HEAD_DEPTH * root + z_extra) * self.sy_
        dxdu = self.cy_ - _HEAD_DEPTH * u / root * self.sy_
        return x, min(max(dxdu, 0.25), 1.4)

    def place(self, u: float, v: float, z_extra: float = 0.0) -> tuple[float, float, float]:
        """Canvas position and horizontal scale of the face feature at (u, v)."""
        x, sx = self.project(u, v, z_extra)
        X, Y = self.to_img(x, v)
        return X, Y, sx

    def face_window(self, u0: float, v0: float, u1: float, v1: float) -> Window | None:
        pts = [self.to_img(u, v) for u in (u0, u1) for v in (v0, v1)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return self.cv.window(min(xs), min(ys), max(xs), max(ys))

    def face_uv(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Face-plane coordinates (u, v) of every pixel of ``win`` (inverse of :meth:`to_img`)."""
        invF = 1.0 / self.F
        c, s = self.c, self.s
        dx = (win.X - self.Cx) * invF
        dy = (win.Y - self.Cy) * invF
        return dx * c + dy * s, dy * c - dx * s

    def noise(self, win: Window, which: int, cell: float) -> np.ndarray:
        """A window of smooth unit noise (features ~``cell`` face units wide) at this image's offset.

        The feature size is fixed per canvas size (not per face), so a handful of cached tiles
        serve every image."""
        R = self.R
        tile = noise_tile(R, max(0.5, round(cell * 0.185 * R * 2) / 2), which)
        oy, ox = self._offs[which % 4]
        return tile[oy + win.y0 : oy + win.y1, ox + win.x0 : ox + win.x1]

    def box(self, win: Window | None, alpha: np.ndarray | None, thresh: float = 0.1) -> list[int] | None:
        """Output-pixel bounding box [x0, y0, x1, y1) of the painted coverage, or None."""
        if win is None or alpha is None:
            return None
        rows = np.flatnonzero((alpha > thresh).any(axis=1))
        cols = np.flatnonzero((alpha > thresh).any(axis=0))
        if rows.size == 0:
            return None
        ss = self.ss
        x0, x1 = (win.x0 + cols[0]) // ss, -(-(win.x0 + cols[-1] + 1) // ss)
        y0, y1 = (win.y0 + rows[0]) // ss, -(-(win.y0 + rows[-1] + 1) // ss)
        return [int(x0), int(y0), int(x1), int(y1)]

    def label(self, win: Window | None, d: np.ndarray | None, cls: str) -> None:
        """Parsing map: class ``cls`` wherever the signed distance ``d`` is <= 0, i.e. where the
        shape's coverage is at least one half (the same distances that paint it)."""
        if self.layers is None or win is None or d is None:
            return
        self.label_mask(win, d <= 0.0, cls)

    def label_mask(self, win: Window | None, inside: np.ndarray | None, cls: str) -> None:
        """Parsing map: class ``cls`` on the boolean mask ``inside`` of window ``win``."""
        if self.layers is None or win is None or inside is None:
            return
        c = CLASS_INDEX[cls]
        k = len(self.layer_class)
        if k > 1 and self.layer_class[-1] == c:
            # the next part of the same thing (lid after eye, frame after lens, brim after crown)
            # shares its layer, so the parts count together in the majority of a pixel's samples
            k -= 1
        else:
            if k > 255:  # the painter labels ~50 layers; uint8 layer numbers are a hard limit
                raise RuntimeError("synthfaces: more than 255 labelled layers in one image")
            self.layer_class.append(c)
        np.putmask(self.layers[win.y0 : win.y1, win.x0 : win.x1], inside, k)

    def person(self, win: Window | None, alpha: np.ndarray | None) -> None:
        if win is not None and alpha is not None:
            m = self.mask[win.y0 : win.y1, win.x0 : win.x1]
            np.maximum(m, alpha, out=m)

    # ---- layers ---------------------------------------------------------------------------------
    def background(self) -> None:
        V, R, cv = self.V, self.R, self.cv
        c1, c2 = np.asarray(V.bg_color1, F32), np.asarray(V.bg_color2, F32)
        g = cv._c * (1.0 / R)
        kind = V.background
        if kind == "flat":  # with a gentle vertical falloff, as in a studio
            fall = 1.05 - g * 0.25
            cv.img[:] = c1[:, None, None] * fall[None, :, None]
            return
        ca, sa = math.cos(V.bg_angle), math.sin(V.bg_angle)
        proj = g[None, :] * ca + g[:, None] * sa
        if kind == "gradient":
            t = (proj - proj.min()) / (proj.max() - proj.min() + 1e-6)
        elif kind == "stripes":
            t = np.sin(proj * (2 * math.pi * V.bg_freq)) * 3.0 + 0.5
        elif kind == "checker":
            f = math.pi * V.bg_freq * 0.8
            t = np.sin(g[None, :] * f) * np.sin(g[:, None] * f) * 6.0 + 0.5
        elif kind == "dots":
            f = V.bg_freq * 0.8
            fx = (g[None, :] * f) % 1.0 - 0.5
            fy = (g[:, None] * f) % 1.0 - 0.5
            t = (0.28 - np.sqrt(fx * fx + fy * fy)) * (R / f) + 0.5
        else:  # bokeh: soft discs of light over a gradient
            t = (proj - proj.min()) / (proj.max() - proj.min() + 1e-6)
        clip(t, 0.0, 1.0, out=t)
        cv.img[:] = c1[:, None, None] + t[None] * (c2 - c1)[:, None, None]
        if kind == "bokeh":
            for _ in range(7):
                # plain floats: numpy float64 scalars would promote the float32 canvas maths
                x, y = (float(t) for t in self.rng.uniform(0, R, 2))
                r = float(self.rng.uniform(0.04, 0.12)) * R
                col = _mix(c2, (1.0, 0.97, 0.9), float(self.rng.uniform(0.3, 0.8)))
                win = cv.window_around(x, y, r, r)
                cv.fill(win, sd_circle(win, x, y, r) if win else None, col, soft=r * 0.3, opacity=0.45)

    def text_marks(self) -> None:
        """Rows of glyph-like marks in a top corner: tiny, sharp, and hard for a GAN."""
        V, R, cv, ss = self.V, self.R, self.cv, self.ss
        g = np.random.default_rng(V.text_seed)
        cell = max(1, int(round(0.016 * self.size)) * ss)
        bg = np.asarray(V.bg_color1, F32)
        ink = np.array((0.05, 0.05, 0.08), F32) if bg.mean() > 0.45 else np.array((0.97, 0.96, 0.9), F32)
        if g.random() < 0.3:
            ink = np.array(g.choice([(0.8, 0.1, 0.1), (0.1, 0.2, 0.7), (0.9, 0.8, 0.1)]), F32)
        for b in range(int(g.integers(1, 3))):
            lines, glyphs = int(g.integers(1, 4)), int(g.integers(4, 9))
            bits = g.random((lines * 6, glyphs * 4)) < 0.5
            bits[5::6, :] = False
            bits[:, 3::4] = False
            for gi in range(glyphs):  # word gaps
                if g.random() < 0.18:
                    bits[:, gi * 4 : gi * 4 + 4] = False
            bits = bits[:-1, :-1]
            h, w = bits.shape[0] * cell, bits.shape[1] * cell
            side = (b + int(g.integers(2))) % 2
            x0 = int(g.uniform(0.03, 0.12) * R) if side == 0 else int(R - w - g.uniform(0.03, 0.12) * R)
            y0 = int(g.uniform(0.03, 0.14) * R) + b * int(0.2 * R)
            x0, y0 = max(0, x0), max(0, y0)
            win = cv.window(x0, y0, x0 + w, y0 + h, pad=0)
            if win is None:
                continue
            a = np.repeat(np.repeat(bits.astype(F32), cell, 0), cell, 1)[: win.shape[0], : win.shape[1]]
            cv.blend(win, a, ink)
            self.label_mask(win, a > 0.5, "text")
            bx = self.box(win, a)
            if bx is not None:
                self.rare["text_marks"].append(bx)

    def _shoulders(self) -> tuple[float, float, float, float]:
        """(centre x, shoulder-line y, half-width, height) of the upper body, canvas pixels."""
        px, py = self.pivot
        return px, py + 0.55 * self.F, 2.7 * self.F, 1.5 * self.F

    def _shirt_sd(self, win: Window) -> np.ndarray:
        px, top, rx, ry = self._shoulders()
        return sd_ellipse(win, px, top + ry, rx, ry)

    def clothing(self) -> None:
        V, F, cv = self.V, self.F, self.cv
        px, top, rx, _ = self._shoulders()
        win = cv.window(px - rx, top, px + rx, self.R)
        if win is None:
            return
        d = np.maximum(self._shirt_sd(win), -self._neckline(win))
        col = np.asarray(V.clothing, F32)
        if V.clothing_pattern:
            col = self._pattern(win)
        a = cv.fill(win, d, col)
        self.person(win, a)
        self.label(win, d, "clothes")
        # a soft fold shadow under the neckline and along the arms
        cv.fill(
            win,
            sd_ellipse(win, px, top + 0.35 * F, 0.9 * F, 0.35 * F),
            _scale(V.clothing, 0.6),
            soft=0.4 * F,
            opacity=0.25,
        )
        if V.neckline == "collar":
            for side in (-1, 1):
                cx = px + side * 0.45 * F
                w2 = cv.window_around(cx, top + 0.2 * F, 0.5 * F, 0.5 * F)
                if w2 is not None:
                    dd = sd_ellipse(w2, cx, top + 0.15 * F, 0.42 * F, 0.16 * F, side * 0.5)
                    cv.fill(w2, dd, V.clothing2)
                    self.label(w2, dd, "clothes")
        if V.clothing_pattern:
            bx = self.box(win, a, 0.5)
            if bx is not None:
                self.rare["clothing_pattern"].append(bx)

    def _neckline(self, win: Window) -> np.ndarray:
        V, F = self.V, self.F
        px, top, _, _ = self._shoulders()
        if V.neckline == "vee":
            dx = np.abs(win.X - px)
            dy = win.Y - top
            return np.maximum(dx - (0.55 * F) * (1 - dy / (1.1 * F)), -dy - (0.3 * F)) * 0.8
        return sd_ellipse(win, px, top, 0.62 * F, 0.42 * F)

    def _pattern(self, win: Window) -> np.ndarray:
        V, F = self.V, self.F
        c1, c2 = np.asarray(V.clothing, F32), np.asarray(V.clothing2, F32)
        if np.abs(c1 - c2).sum() < 0.6:
            c2 = np.where(c1.mean() > 0.5, c1 * 0.25, np.minimum(c1 + 0.6, 1.0)).astype(F32)
        k = 2 * math.pi / (0.16 * F)
        X, Y = win.X, win.Y
        if V.pattern_kind == "stripes":
            t = np.sin((X * 0.3 + Y) * k) * 2.5 + 0.5
            t = np.broadcast_to(t, win.shape)
        elif V.pattern_kind == "checks":
            t = np.sin(X * k * 0.6) * np.sin(Y * k * 0.6) * 4.0 + 0.5
        elif V.pattern_kind == "dots":
            p = 0.3 * F
            fx = (X % p) - p / 2
            fy = (Y % p) - p / 2
            t = (0.09 * F - np.sqrt(fx * fx + fy * fy)) + 0.5
        else:  # zigzag
            p = 0.25 * F
            tri = np.abs((X % p) / p - 0.5) * p
            t = np.sin((Y + tri) * k) * 3.0 + 0.5
        t = clip(t, 0.0, 1.0)
        return c1[:, None, None] + t[None] * (c2 - c1)[:, None, None]

    def hair_color(self, win: Window, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hair colour with strands fanning out from the crown and greying strand by strand."""
        I, V = self.I, self.V
        base = np.asarray(I.hair, F32)
        curly = I.hair_style == "curly"
        n = self.noise(win, 1, 0.12)
        if curly:
            streak = np.sin(u * 19.0 + n) * np.sin(v * 17.0 + u * 5.0)
        else:
            # strands fan out from above the crown; the clamp keeps the far top of the window finite
            fan = (u - I.hair_part) / np.maximum(v + 2.6, 0.3)
            streak = np.sin(fan * 110.0 + 2.5 * n) * 0.6 + np.sin(fan * 263.0 + 4.0 * n) * 0.4
        shade = 1.0 + 0.07 * streak + 0.07 * n
        col = base[:, None, None] * shade[None]
        if V.grey > 0.02:
            streak2 = np.sin((u + 0.37) / np.maximum(v + 2.4, 0.3) * 47.0)
            gm = clip(V.grey * (0.75 + 0.35 * streak2), 0.0, 1.0)
            grey = np.array((0.80, 0.80, 0.78), F32)[:, None, None] * shade[None]
            col = col + gm[None] * (grey - col)
        return col

    def _hair_end(self) -> float:
        I = self.I
        if I.hair_style == "long":
            return 1.7 + 2.2 * I.hair_length
        if I.hair_style == "bob":
            return 0.85 + 0.4 * I.hair_length
        if I.hair_style == "curly":
            return 0.5 + 1.2 * I.hair_length
        return -2.0

    def _hair_frame(self):
        """(window, u, v, colour) shared by the hair behind and in front of the face.

        The strand/grey colour field is the costliest part of the hair, so it is computed once
        on one window covering both layers."""
        if self._hair_cache is _UNSET:
            vol = self.I.hair_volume
            win = self.face_window(-1.6 - vol, -1.9 - vol, 1.6 + vol, max(self._hair_end() + 0.1, 1.3))
            if win is None:
                self._hair_cache = None
            else:
                u, v = self.face_uv(win)
                self._hair_cache = (win, u, v, self.hair_color(win, u, v))
        return self._hair_cache

    def back_hair(self) -> None:
        I = self.I
        st = I.hair_style
        if st == "bald":
            return
        vol = I.hair_volume
        end = self._hair_end()
        frame = self._hair_frame()
        if frame is None:
            return
        win, u, v, colour = frame
        F = self.F
        if st == "curly":
            du, dv = u, v + 0.25
            r = np.sqrt(du * du + dv * dv)
            ang = np.arctan2(du, dv)
            R0 = 1.18 + 1.6 * vol
            d = (r - R0 * (1.0 + 0.05 * np.sin(ang * 13.0))) * F
        else:
            d = self._cap(win, u, v, vol) + self._fuzz(win)
            if st == "bun":
                d = np.minimum(
                    d, sd_ellipse(win, *self.to_img(0, -1.35 - vol), 0.5 * self.F, 0.42 * self.F, self.roll)
                )
        if end > -1.0:
            wv = (1.12 + vol) + 0.12 * np.maximum(v, 0.0)
            # wavy ends, rounded at the outer corners (hair curls in rather than ending square)
            r4 = np.abs(u) / wv
            r4 *= r4
            r4 *= r4
            wavy = 0.06 * np.sin(u * 9.0) + 0.3 * r4
            curtain = np.maximum(np.maximum(np.abs(u) - wv, v - end + wavy), -0.3 - v) * F
            if st == "curly":
                curtain = curtain + 0.04 * F * np.sin(v * 14.0)
            d = np.minimum(d, curtain)
        self.person(win, self.cv.fill(win, d, colour * 0.88, soft=1.2))
        self.label(win, d, "hair")

    def _fuzz(self, win: Window) -> np.ndarray:
        """A few-pixel noisy offset for hair outlines: strands stick out, so edges are not lines."""
        return self.noise(win, 2, 0.02) * (0.025 * self.F)

    def _cap(self, win: Window, u: np.ndarray, v: np.ndarray, vol: float, tight: bool = False) -> np.ndarray:
        """The hair cap around the top of the head (distance in canvas pixels)."""
        cx, cy = self.to_img(0.0, -0.38)
        rx = (1.08 + vol) * self.F
        ry = (1.0 + 0.8 * vol) * self.F
        if tight:
            rx, ry = 1.04 * self.F, 0.98 * self.F
        return sd_ellipse(win, cx, cy, rx, ry, self.roll)

    def neck(self) -> None:
        I, F, cv = self.I, self.F, self.cv
        px, py = self.pivot
        hw = (0.52 + 0.12 * I.masc) * F
        top = self.Cy + 0.6 * F
        win = cv.window(px - hw, top, px + hw, py + 1.6 * F)
        if win is None:
            return
        d = sd_box(win, px, (top + py + 1.6 * F) / 2, hw, (py + 1.6 * F - top) / 2, 0.0, 0.1 * F)
        d = np.maximum(d, np.minimum(-self._shirt_sd(win), self._neckline(win)))
        skin = self.skin * 0.92
        self.person(win, cv.fill(win, d, skin))
        self.label(win, d, "neck")
        # the jaw's shadow on the neck, kept on the neck
        sx, sy = self.to_img(0.0, 1.35)
        cv.fill(
            win,
            np.maximum(sd_ellipse(win, sx, sy, 0.75 * F, 0.45 * F), d),
            _scale(I.skin, 0.55),
            soft=0.25 * F,
            opacity=0.45,
        )

    def ears(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        self._ear_pos = {}
        for side in (-1, 1):
            vis = min(max(1.0 - 2.0 * side * math.sin(V.yaw), 0.25), 1.8)
            # the ear on the side the face turns away from shows more of itself (``vis``)
            x_face = side * (0.94 + 0.06 * vis)
            ex, ey = self.to_img(x_face, I.ear_height)
            rx, ry = I.ear_size * 0.5 * vis * F, I.ear_size * F
            ang = self.roll + side * 0.12
            win = cv.window_around(ex, ey, *rotated_extent(rx, ry, ang))
            if win is None:
                continue
            skin = self.skin
            d = sd_ellipse(win, ex, ey, rx, ry, ang)
            self.person(win, cv.fill(win, d, skin * 0.95))
            self.label(win, d, "left_ear" if side < 0 else "right_ear")
            ix, iy = ex - side * 0.15 * rx * math.cos(self.roll), ey
            cv.fill(win, sd_ellipse(win, ix, iy, rx * 0.55, ry * 0.6, ang), skin * 0.72, soft=0.05 * F)
            cv.fill(win, sd_ellipse(win, ix, iy, rx * 0.25, ry * 0.3, ang), skin * 0.55, soft=0.04 * F)
            self._ear_pos[side] = (ex, ey, rx, ry, vis)

    def _face_sd(self, win: Window, u: np.ndarray, v: np.ndarray, grow: float = 0.0) -> np.ndarray:
        I, V = self.I, self.V
        vc = 0.1
        t = v - vc
        lower = t > 0
        ry = np.where(lower, (I.face_length + grow), (1.3 + grow))
        tt = np.abs(t) / ry
        ue = u - (0.3 * math.sin(V.yaw)) * clip(t * (1.0 / I.face_length), 0.0, 1.0)
        t2 = tt * tt
        w = np.where(lower, (1.0 + grow) - I.jaw_taper * t2, (1.0 + grow))
        # lower half: |t|^p with p from 2 (round chin) to 4 square, as a cheap polynomial blend
        tp = np.where(lower, t2 * ((1.0 - I.chin) + I.chin * t2), t2)
        ue /= w
        ue *= ue
        ue += tp
        np.sqrt(ue, out=ue)
        ue -= 1.0
        ue *= 0.95 * self.F
        return ue

    def face(self) -> None:
        I, F, cv = self.I, self.F, self.cv
        win = self.face_window(-1.15, -1.35, 1.15, 0.1 + I.face_length + 0.1)
        if win is None:
            return
        u, v = self.face_uv(win)
        d = self._face_sd(win, u, v)
        n = self.noise(win, 0, 0.15)
        nf = self.noise(win, 3, 0.015)
        skin = self.skin
        tex = 1.0 + (0.7 * I.skin_texture) * n + (0.25 * I.skin_texture) * nf
        col = skin[:, None, None] * tex[None]
        a = cv.fill(win, d, col)
        self.person(win, a)
        self.label(win, d, "skin")
        box = self.box(win, a, 0.5)
        self.face_box = box or []
        self._contour_shading(win, d)
        # cheeks and eye sockets
        for side in (-1, 1):
            x, y, sx = self.place(side * 0.55, 0.5)
            w2 = cv.window_around(x, y, 0.4 * F, 0.35 * F)
            if w2 is not None and I.blush > 0.05:
                blush = _mix(skin, (0.9, 0.4, 0.4), 0.4)
                cv.fill(
                    w2,
                    sd_ellipse(w2, x, y, 0.28 * F * sx, 0.2 * F, self.roll),
                    blush,
                    soft=0.2 * F,
                    opacity=0.35 * I.blush,
                )
            x, y, sx = self.place(side * I.eye_spacing, -0.04)
            self.shade_ellipse(x, y, 0.3 * F * sx, 0.17 * F, self.roll, 0.78, 0.14 * F, 0.4)

    def _contour_shading(self, win: Window, d: np.ndarray) -> None:
        """Darken the skin towards the face outline (cheeks and jaw turn away from the camera).

        Applied to the face layer itself, before hair, hats and hands cover parts of it."""
        ramp = clip(d * (1.0 / (0.35 * self.F)) + 1.0, 0.0, 1.0)
        ramp *= ramp
        ramp *= coverage(d)  # nothing outside the face
        ramp *= -0.2
        ramp += 1.0
        self.cv.img[:, win.y0 : win.y1, win.x0 : win.x1] *= ramp

    def marks(self) -> None:
        I, F, cv, ss = self.I, self.F, self.cv, self.ss
        if I.freckles:
            col = (self.skin * np.array((0.72, 0.58, 0.5), F32))[:, None, None]
            r = max(1, ss)
            for fu, fv in I.freckles:
                x, y, _ = self.place(fu, fv)
                xi, yi = int(x) - r // 2, int(y) - r // 2
                if 0 <= xi < self.R - r and 0 <= yi < self.R - r:
                    reg = cv.img[:, yi : yi + r, xi : xi + r]
                    reg += 0.55 * (col - reg)
        for mu, mv, ms in I.moles:
            x, y, _ = self.place(mu, mv)
            rr = max(ms * F, 0.8 * ss)
            win = cv.window_around(x, y, rr, rr)
            if win is not None:
                cv.fill(win, sd_circle(win, x, y, rr), (0.22, 0.13, 0.09), soft=0.8)

    def eyes(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        opening = V.eyes_open * (1.0 - 0.3 * V.smile)
        skin = self.skin
        lid_col = np.array((0.12, 0.08, 0.07), F32)
        lash = 1.0 + 0.8 * (1 - I.masc)
        for side in (-1, 1):
            x, y, sx = self.place(side * I.eye_spacing, 0.0)
            self.landmarks["left_eye" if side < 0 else "right_eye"] = [x / self.ss, y / self.ss]
            rx = I.eye_width * F * sx
            ry_full = I.eye_height * F
            ry = ry_full * opening
            ang = self.roll - side * I.eye_tilt
            lw = max(0.7 * self.ss, 0.022 * F * lash)
            win = cv.window_around(x, y, *rotated_extent(rx + lw, ry_full * 1.6 + lw, ang), pad=3)
            if win is None:
                continue
            xr, yr = local(win, x, y, ang)
            eye = "left_eye" if side < 0 else "right_eye"
            # crease above the eye
            crease = np.abs(_ell(xr, yr + (0.1 * ry_full), rx * 1.02, ry_full * 1.55)) - (0.5 * lw)
            crease = np.maximum(crease, yr)
            cv.fill(win, crease, skin * 0.7, soft=1.2, opacity=0.45)
            if opening > 0.15:
                d_eye = _ell(xr, yr, rx, ry)
                cv.fill(win, d_eye, np.array((0.93, 0.9, 0.87), F32) * (0.9 + 0.1 * I.skin[0]))
                self.label(win, d_eye, eye)
                ir = I.iris_size * ry_full * 1.15
                gx = x + (V.gaze_x * 0.35 * rx) * math.cos(ang)
                gy = y + V.gaze_y * 0.25 * ry_full + (V.gaze_x * 0.35 * rx) * math.sin(ang)
                d_ir = np.maximum(sd_circle(win, gx, gy, ir), d_eye)
                iris = np.asarray(I.iris, F32)
                dark = np.array((0.04, 0.03, 0.03), F32)
                # level of detail: parts under ~1/3 output pixel are folded into the iris colour
                # (the area-weighted mean the downsampling would have produced anyway)
                out_px = 1.0 / self.ss
                ring, pupil, spark = (
                    0.22 * ir * out_px >= 0.3,
                    0.42 * ir * out_px >= 0.35,
                    0.2 * ir * out_px >= 0.3,
                )
                base = iris if ring else _mix(iris, iris * 0.55, 0.4)
                if not pupil:
                    base = _mix(base, dark, 0.18)
                cv.fill(win, d_ir, _scale(iris, 0.55) if ring else base)
                if ring:
                    cv.fill(win, d_ir + (0.22 * ir), base)
                if pupil:
                    cv.fill(win, d_ir + (0.58 * ir), dark)
                if spark:
                    hx, hy = gx - 0.35 * ir, gy - 0.35 * ir
                    cv.fill(
                        win, np.maximum(sd_circle(win, hx, hy, 0.2 * ir), d_eye), (1.0, 1.0, 1.0), opacity=0.9
                    )
                # upper lid with lashes, and a faint lower lid
                upper = np.maximum(np.abs(d_eye) - lw, yr - (0.2 * ry))
                cv.fill(win, upper, lid_col)
                self.label(win, upper, eye)
                lower = np.maximum(np.abs(d_eye) - (0.45 * lw), 0.3 * ry - yr)
                cv.fill(win, lower, skin * 0.6, opacity=0.6)
            else:
                d = sd_band(win, x, y, ang, rx, (-0.25 * ry_full, 0.0, 0.15 * ry_full), (lw, 0.0, -0.5 * lw))
                cv.fill(win, d, lid_col)
                self.label(win, d, eye)

    def brows(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        col = _mix(np.asarray(I.hair, F32) * 0.75, (0.6, 0.6, 0.6), 0.6 * V.grey)
        if I.hair_color_name in ("platinum", "blonde"):
            col = _mix(col, I.skin, 0.25)
        raise_ = -0.04 * (1 - V.eyes_open) + 0.02 * V.smile
        for side in (-1, 1):
            x, y, sx = self.place(side * (I.eye_spacing + 0.03), I.brow_height + raise_)
            L = I.brow_length * F * sx
            ang = self.roll + side * I.brow_tilt * 0.5
            th = I.brow_thickness * F
            curve = (I.brow_arch * F, 0.0, -I.brow_arch * F * 0.5)
            thick = (th * 0.85, -side * 0.3 * th, -0.2 * th)
            win = cv.window_around(x, y, *band_extent(L, curve, thick, ang))
            if win is None:
                continue
            d = sd_band(win, x, y, ang, L, curve, thick)
            n = self.noise(win, 2, 0.02)
            a = coverage(d, 1.2) * clip(0.85 + 0.25 * n, 0.0, 1.0)
            cv.blend(win, a, col)
            self.label(win, d, "left_brow" if side < 0 else "right_brow")

    def _soft_ellipse(self, x, y, rx, ry, ang, color, soft=1.0, opacity=1.0) -> None:
        """Fill one ellipse in its own tight window (cheap for the many small shading blobs)."""
        ex, ey = rotated_extent(rx, ry, ang)
        win = self.cv.window_around(x, y, ex + soft, ey + soft)
        if win is not None:
            self.cv.fill(win, sd_ellipse(win, x, y, rx, ry, ang), color, soft=soft, opacity=opacity)

    def _shade(
        self, win: Window | None, d: np.ndarray | None, factor: float, soft: float, opacity: float
    ) -> None:
        if win is None or d is None:
            return
        a = coverage(d, soft)
        a *= opacity * (factor - 1.0)
        a += 1.0
        self.shade[win.y0 : win.y1, win.x0 : win.x1] *= a

    def shade_ellipse(self, x, y, rx, ry, ang, factor, soft, opacity) -> None:
        """Multiply the picture by ``factor`` (blended by ``opacity``) inside a soft ellipse
        (canvas-pixel arguments; painted on the output-resolution shading map)."""
        k = 1.0 / self.ss
        x, y, rx, ry, soft = x * k, y * k, rx * k, ry * k, max(soft * k, 0.5)
        ex, ey = rotated_extent(rx, ry, ang)
        win = self.out_grid.window_around(x, y, ex + soft, ey + soft)
        if win is not None:
            self._shade(win, sd_ellipse(win, x, y, rx, ry, ang), factor, soft, opacity)

    def shade_capsule(self, x0, y0, x1, y1, r, factor, soft, opacity) -> None:
        k = 1.0 / self.ss
        x0, y0, x1, y1, r, soft = x0 * k, y0 * k, x1 * k, y1 * k, r * k, max(soft * k, 0.5)
        m = r + soft
        win = self.out_grid.window(min(x0, x1) - m, min(y0, y1) - m, max(x0, x1) + m, max(y0, y1) + m)
        if win is not None:
            self._shade(win, sd_capsule(win, x0, y0, x1, y1, r), factor, soft, opacity)

    def nose(self) -> None:
        I, F = self.I, self.F
        skin = self.skin
        tip_v = I.nose_length
        x, y, sx = self.place(0.0, tip_v, 0.35)
        self.landmarks["nose_tip"] = [x / self.ss, y / self.ss]
        nw = I.nose_width * F * sx
        r = self.roll
        cr, sr = math.cos(r), math.sin(r)
        # bridge: two soft side shadows along the nose
        bx, by, _ = self.place(0.0, tip_v * 0.55, 0.2)
        for side in (-1, 1):
            x0, y0 = bx + side * 0.12 * F * sx, by - 0.25 * F
            x1, y1 = x + side * 0.6 * nw, y - 0.1 * F
            self.shade_capsule(x0, y0, x1, y1, 0.05 * F, 0.75, 0.1 * F, 0.3)
        # tip highlight, alar wings, nostrils, shadow under the nose
        self.shade_ellipse(x, y - 0.05 * F, 0.45 * nw, 0.09 * F, r, 1.1, 0.08 * F, 0.4)
        for side in (-1, 1):
            ax, ay = x + side * 0.85 * nw * cr, y + side * 0.85 * nw * sr
            self.shade_ellipse(ax, ay, 0.28 * nw, 0.1 * F, r + side * 0.4, 0.72, 0.05 * F, 0.6)
            nx, ny = x + side * 0.42 * nw * cr, y + 0.06 * F + side * 0.42 * nw * sr
            self._soft_ellipse(nx, ny, 0.24 * nw, 0.04 * F, r + side * 0.35, skin * 0.35, soft=0.9)
        self.shade_ellipse(x, y + 0.14 * F, 0.8 * nw, 0.06 * F, r, 0.7, 0.07 * F, 0.4)
        if self.layers is not None:
            # the nose is painted as shading; its region is the shape that shading outlines: the
            # bridge from the eye line down to the tip, and the tip with its alar wings
            tx, ty = bx, by - 0.2 * F
            ex, ey = rotated_extent(1.15 * nw, 0.13 * F, r)
            win = self.cv.window(
                min(tx - 0.5 * nw, x - ex),
                min(ty - 0.5 * nw, y - ey),
                max(tx + 0.5 * nw, x + ex),
                y + ey + 0.02 * F,
            )
            if win is not None:
                d = np.minimum(
                    sd_capsule(win, tx, ty, x, y, 0.5 * nw),
                    sd_ellipse(win, x, y + 0.02 * F, 1.15 * nw, 0.13 * F, r),
                )
                self.label(win, d, "nose")

    def beard(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        st = V.beard_style
        if st == "none":
            return
        col_base = _mix(np.asarray(I.hair, F32) * 0.85, (0.82, 0.82, 0.8), min(1.0, V.grey * 1.2))
        mv = I.mouth_height
        win = self.face_window(-1.2, 0.2, 1.2, 0.25 + I.face_length)
        if win is None:
            return
        u, v = self.face_uv(win)
        Fp = F
        if st in ("full", "stubble"):
            d = np.maximum(self._face_sd(win, u, v, grow=0.04), ((mv - 0.25) - 0.5 * u * u - v) * Fp)
        elif st == "goatee":
            d = np.maximum(self._face_sd(win, u, v, grow=0.03), ((mv - 0.12) - v) * Fp)
            d = np.maximum(d, (np.abs(u) - 0.42) * Fp)
        else:
            d = np.full(win.shape, 1e6, F32)
        if st in ("moustache", "goatee", "full"):
            x, y, sx = self.place(0.0, mv - I.upper_lip - 0.06, 0.2)
            L = (I.mouth_width + 0.05) * F * sx
            dm = sd_band(win, x, y, self.roll, L, (0.07 * F, 0.0, -0.02 * F), (0.05 * F, 0.0, -0.02 * F))
            d = np.minimum(d, dm)
        n = self.noise(win, 2, 0.02)
        dens = V.beard_density * (0.4 if st == "stubble" else 1.0)
        a = coverage(d, 0.08 * F) * clip(dens * (0.85 + 0.2 * n), 0.0, 1.0)
        cv.blend(win, a, col_base[:, None, None] * (1.0 + 0.1 * n)[None])
        if st != "stubble":  # stubble (at most 40 % opaque) is a shadow on the skin, labelled skin
            self.label(win, d, "beard")

    def mouth(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        sm = V.smile
        x, y, sx = self.place(0.0, I.mouth_height, 0.15)
        self.landmarks["mouth"] = [x / self.ss, y / self.ss]
        L = I.mouth_width * F * sx * (1.0 + 0.28 * sm)
        lift = (0.16 * sm - 0.015) * F  # corners up when smiling
        gap = max(0.0, sm - 0.5) * 0.22 * F
        ul, ll = I.upper_lip * F, I.lower_lip * F * (1.0 - 0.25 * sm)
        ext = band_extent(L, (lift, 0, ul + ll + gap), (ul, 0, 0), self.roll)
        win = cv.window_around(x, y, ext[0] + 2, ext[1] + 2)
        if win is None:
            return
        lips = np.asarray(I.lips, F32)
        ang = self.roll
        xr, yr = local(win, x, y, ang)
        # upper lip: between the mouth line and a cupid's-bow top edge
        d_up = band_local(xr, yr, L, (-lift + 0.4 * ul, 0.0, -0.5 * ul), (0.5 * ul, 0.0, -0.38 * ul))
        d_lo = band_local(
            xr, yr, L * 0.96, (-lift - 0.4 * ll, 0.0, gap + 0.5 * ll), (0.5 * ll, 0.0, -0.4 * ll)
        )
        cv.fill(win, d_lo, lips * 1.05)
        self.label(win, d_lo, "lower_lip")
        cv.fill(win, d_up, lips * 0.88)
        self.label(win, d_up, "upper_lip")
        if gap > 0.3:
            d_t = band_local(xr, yr, L * 0.92, (-lift, 0.0, 0.5 * gap), (0.5 * gap + 0.3, 0.0, -0.5 * gap))
            cv.fill(win, d_t, (0.94, 0.92, 0.86))
            self.label(win, d_t, "mouth")
            inner = band_local(xr, yr, L * 0.7, (-lift, 0.0, 0.5 * gap), (0.5 * gap, 0.0, -0.5 * gap))
            cv.fill(win, np.maximum(d_t, -inner), (0.3, 0.12, 0.12), opacity=0.7)
        lw = max(0.6 * self.ss, 0.018 * F)
        d_line = band_local(xr, yr, L * 1.02, (-lift, 0.0, 0.5 * gap), (lw, 0.0, -0.25 * lw))
        cv.fill(win, d_line, lips * 0.35, opacity=0.85)
        self.label(win, d_line, "mouth")
        # smile lines at the mouth corners
        if sm > 0.3:
            for side in (-1, 1):
                cx = x + side * L * 1.05 * math.cos(ang)
                cy = y - lift + side * L * math.sin(ang)
                self.shade_ellipse(cx, cy, 0.05 * F, 0.05 * F, 0.0, 0.6, 0.06 * F, sm - 0.3)

    def wrinkles(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        w = V.wrinkles
        col = self.skin * 0.62
        lw = max(0.5 * self.ss, 0.012 * F)
        lines = []
        if w > 0.05:
            for k in range(3):
                lines.append(
                    (0.0, I.brow_height - 0.18 - 0.12 * k, 0.42 - 0.06 * k, 0.03, w * (1 - 0.25 * k))
                )
            for side in (-1, 1):
                for k in (-1, 1) if w > 0.25 else ():
                    u0 = side * (I.eye_spacing + I.eye_width + 0.1)
                    lines.append((u0, 0.03 + 0.05 * k, 0.08, 0.0, w * 0.8, side * 0.35 * k))
                lines.append((side * (I.eye_spacing + 0.02), 0.16, I.eye_width * 0.8, -0.03, w * 0.7))
        s_op = max(w * 0.8, V.smile * 0.7)
        if s_op > 0.08:
            for side in (-1, 1):
                lines.append(
                    (
                        side * (I.nose_width + 0.22),
                        (I.nose_length + I.mouth_height) / 2,
                        0.2,
                        0.0,
                        s_op,
                        side * 1.2,
                    )
                )
        for item in lines:
            u0, v0, half, arch, op = item[:5]
            tilt = item[5] if len(item) > 5 else 0.0
            x, y, sx = self.place(u0, v0)
            L = half * F * sx
            if 2 * L / self.ss < 1.5:
                continue  # level of detail: a stroke this short is a smudge at this size
            ang = self.roll + tilt
            curve = (arch * F, 0.0, 0.0)
            thick = (lw, 0.0, -0.6 * lw)
            win = cv.window_around(x, y, *band_extent(L, curve, thick, ang))
            if win is not None:
                cv.fill(
                    win, sd_band(win, x, y, ang, L, curve, thick), col, soft=1.3, opacity=min(1.0, op) * 0.55
                )

    def front_hair(self) -> None:
        I = self.I
        st = I.hair_style
        if st == "bald":
            return
        vol = I.hair_volume
        frame = self._hair_frame()
        if frame is None:
            return
        win, u, v, colour = frame
        F = self.F
        au = np.abs(u)
        hl0 = I.hairline
        if st == "fringe":
            hl = -0.42 + 0.9 * au**4 + 0.03 * np.sin(u * 25.0)
        elif st in ("side_part", "bob", "long"):
            sgn = 1.0 if I.hair_part >= 0 else -1.0
            hl = hl0 + 0.7 * au**3 + 0.14 * (u * sgn + 1.0) * 0.5
        elif st == "curly":
            hl = hl0 + 0.5 * u * u + 0.04 * np.sin(u * 16.0)
        else:
            hl = hl0 + 0.75 * au**3
        if st == "curly":
            du, dv = u, v + 0.25
            r = np.sqrt(du * du + dv * dv)
            ang = np.arctan2(du, dv)
            cap = (r - (1.18 + 1.6 * vol) * (1.0 + 0.05 * np.sin(ang * 13.0))) * F
        else:
            cap = self._cap(win, u, v, vol if st != "buzz" else 0.0, tight=st == "buzz") + self._fuzz(win)
        if st in ("bob", "long"):
            end = self._hair_end()
            wv = (1.12 + vol) + 0.12 * np.maximum(v, 0.0)
            r4 = au / wv
            r4 *= r4
            r4 *= r4
            ends = v - end + 0.06 * np.sin(u * 9.0) + 0.3 * r4
            curtain = np.maximum(np.maximum(au - wv, ends), -0.3 - v) * F
            cap = np.minimum(cap, curtain)
            hl = hl + 6.0 * np.maximum(au - 0.8, 0.0)
        # crisp outer silhouette, soft hairline (hair thins out towards the forehead)
        a = coverage(cap, 1.2) * coverage((v - hl) * F, 0.06 * self.F)
        if self.layers is not None:
            self.label_mask(win, a >= 0.5, "hair")  # the shape, before the thin buzz cut's opacity
        if st == "buzz":
            a *= 0.55
        self.cv.blend(win, a, colour)
        self.person(win, a)

    def hat(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        if not V.hat:
            return
        col = np.asarray(V.hat_color, F32)
        vol = I.hair_volume if I.hair_style != "bald" else 0.0
        win = self.face_window(-1.9, -2.1, 1.9, -0.1)
        if win is None:
            return
        u, v = self.face_uv(win)
        Fp = F
        if V.hat_style == "beanie":
            crown = sd_ellipse(
                win, *self.to_img(0, -0.62), (1.14 + 0.5 * vol) * F, (0.98 + 0.3 * vol) * F, self.roll
            )
            d = np.maximum(crown, (v + 0.48) * Fp)
            rib = 1.0 + 0.08 * np.sin(u * 40.0)
            self.person(win, cv.fill(win, d, col[:, None, None] * rib[None]))
            self.label(win, d, "hat")
            cv.fill(win, np.maximum(d, (-0.72 - v) * Fp), (col * 0.8)[:, None, None] * rib[None])
        elif V.hat_style == "cap":
            crown = sd_ellipse(win, *self.to_img(0, -0.7), (1.12 + 0.5 * vol) * F, 0.9 * F, self.roll)
            d = np.maximum(crown, (v + 0.55) * Fp)
            self.person(win, cv.fill(win, d, col))
            self.label(win, d, "hat")
            vx, vy, sx = self.place(0.0, -0.52, 0.3)
            cv.fill(
                win,
                sd_ellipse(win, vx, vy + 0.06 * F, 0.75 * F * sx, 0.12 * F, self.roll),
                _scale(col, 0.3),
                soft=0.1 * F,
                opacity=0.5,
            )
            d = sd_ellipse(win, vx, vy, 0.95 * F * sx, 0.17 * F, self.roll)
            cv.fill(win, d, col * 0.85)
            self.label(win, d, "hat")
            bx, by = self.to_img(0, -1.35)
            d = sd_circle(win, bx, by, 0.06 * F)
            cv.fill(win, d, col * 0.7)
            self.label(win, d, "hat")
        else:
            cx, cy = self.to_img(0, -1.08)
            d = sd_box(win, cx, cy, 0.82 * F, 0.5 * F, self.roll, 0.25 * F)
            self.person(win, cv.fill(win, d, col))
            self.label(win, d, "hat")
            bx, by = self.to_img(0, -0.72)
            d = sd_box(win, bx, by, 0.84 * F, 0.08 * F, self.roll, 0.0)
            cv.fill(win, d, V.clothing2)
            self.label(win, d, "hat")
            d = sd_ellipse(win, *self.to_img(0, -0.62), 1.75 * F, 0.2 * F, self.roll)
            cv.fill(win, d, col * 0.9)
            self.label(win, d, "hat")

    def glasses(self) -> None:
        I, V, F, cv = self.I, self.V, self.F, self.cv
        if not V.glasses:
            return
        col = np.asarray(I.glasses_color, F32)
        th = max(0.8 * self.ss, 0.034 * F)
        lenses = []
        for side in (-1, 1):
            x, y, sx = self.place(side * (I.eye_spacing + 0.01), -0.01, 0.12)
            rx = (I.eye_width + 0.1) * F * sx
            ry = 0.2 * F
            lenses.append((side, x, y, rx, ry))
            ang = self.roll + (side * -0.12 if I.glasses_shape == "cat" else 0.0)
            win = cv.window_around(x, y, rx + th + 2, ry + th + 2)
            if win is None:
                continue
            if I.glasses_shape == "rect":
                d = sd_box(win, x, y, rx, ry * 0.85, ang, 0.35 * ry)
            elif I.glasses_shape == "round":
                d = sd_ellipse(win, x, y, rx, min(ry * 1.1, rx), ang)
            else:
                d = sd_ellipse(win, x, y, rx, ry * 0.9, ang)
            if V.sunglasses:
                cv.fill(win, d, (0.06, 0.07, 0.08), opacity=0.9)
                self.label(win, d, "glasses")
            else:
                cv.fill(win, d, (0.85, 0.92, 1.0), opacity=0.1)
            cv.fill(
                win,
                sd_ellipse(win, x - 0.3 * rx, y - 0.3 * ry, 0.3 * rx, 0.15 * ry, -0.6),
                (1.0, 1.0, 1.0),
                soft=0.1 * F,
                opacity=0.25,
            )
            frame = np.abs(d) - (th * 0.5)
            cv.fill(win, frame, col)
            self.label(win, frame, "glasses")
        (_, x0, y0, r0, _), (_, x1, y1, r1, _) = lenses
        # bridge and temple arms
        ax, ay = x0 + r0 * math.cos(self.roll), y0 + r0 * math.sin(self.roll)
        bx, by = x1 - r1 * math.cos(self.roll), y1 - r1 * math.sin(self.roll)
        win = cv.window(min(ax, bx), min(ay, by) - 0.1 * F, max(ax, bx), max(ay, by))
        if win is not None:
            d = sd_capsule(win, ax, ay - 0.05 * F, bx, by - 0.05 * F, th * 0.5)
            cv.fill(win, d, col)
            self.label(win, d, "glasses")
        for side, x, y, rx, _ in lenses:
            if side in self._ear_pos:
                ex, ey, erx, _, vis = self._ear_pos[side]
                sx0 = x + side * rx * math.cos(self.roll)
                sy0 = y + side * rx * math.sin(self.roll)
                win = cv.window(min(sx0, ex), min(sy0, ey) - th, max(sx0, ex), max(sy0, ey) + th)
                if win is not None and vis > 0.4:
                    d = sd_capsule(win, sx0, sy0, ex, ey - 0.3 * F, th * 0.5)
                    cv.fill(win, d, col)
                    self.label(win, d, "glasses")

    def earrings(self) -> None:
        V, F, cv = self.V, self.F, self.cv
        if not V.earrings:
            return
        col = np.asarray(V.earring_color, F32)
        dark, light = col * 0.55, np.minimum(col * 1.3 + 0.15, 1.0)
        for _side, (ex, ey, _rx, ry, vis) in sorted(self._ear_pos.items()):
            if vis < 0.45:
                continue
            lx, ly = ex, ey + 0.82 * ry
            win = cv.window_around(lx, ly + 0.25 * F, 0.22 * F, 0.4 * F)
            if win is None:
                continue
            if V.earring_kind == "stud":
                r = 0.06 * F
                d = sd_circle(win, lx, ly, r)
                a = cv.fill(win, d, col)
                cv.fill(win, sd_circle(win, lx - 0.3 * r, ly - 0.3 * r, 0.35 * r), light)
            elif V.earring_kind == "hoop":
                r = 0.13 * F
                d = np.abs(sd_circle(win, lx, ly + r, r)) - max(0.8 * self.ss, 0.025 * F)
                a = cv.fill(win, d, col)
            else:
                r = 0.07 * F
                d = np.minimum(
                    sd_capsule(win, lx, ly, lx, ly + 0.22 * F, 0.018 * F + 0.4),
                    sd_circle(win, lx, ly + 0.26 * F, r),
                )
                a = cv.fill(win, d, col)
                cv.fill(win, sd_circle(win, lx - 0.3 * r, ly + 0.26 * F - 0.3 * r, 0.3 * r), light)
            cv.fill(win, np.maximum(np.abs(d) - 0.5, -d - 1.5), dark, opacity=0.5)
            self.label(win, d, "earring")
            bx = self.box(win, a, 0.3)
            if bx is not None:
                self.rare["earrings"].append(bx)

    def hand(self) -> None:
        V, F, cv = self.V, self.F, self.cv
        if not V.hand:
            return
        side = V.hand_side
        skin = _mix(self.skin, (0.9, 0.7, 0.6), 0.08)
        edge = skin * 0.62
        h = V.hand_height
        px = self.Cx + side * (0.55 + 0.3 * h) * F
        py = self.Cy + (1.45 + 0.2 * h) * F
        ang = -side * (0.35 + 0.3 * h)  # fingers lean towards the face
        ca, sa = math.cos(ang), math.sin(ang)
        win = cv.window(px - 1.3 * F, py - 1.5 * F, px + 1.3 * F, self.R)
        if win is None:
            return
        parts = []
        # forearm down to the bottom edge, palm, four fingers and a thumb
        parts.append(sd_capsule(win, px, py + 0.3 * F, px + side * 0.5 * F, self.R + F, 0.3 * F))
        parts.append(sd_ellipse(win, px, py, 0.36 * F, 0.42 * F, ang))
        for k in range(4):
            off = (k - 1.5) * 0.17 * F
            length = (0.5 + 0.12 * (1.5 - abs(k - 1.5))) * F
            bx0, by0 = px + off * ca - (-0.3 * F) * sa, py + off * sa + (-0.3 * F) * ca
            tx, ty = bx0 + length * sa, by0 - length * ca
            parts.append(sd_capsule(win, bx0, by0, tx, ty, 0.075 * F))
        tx0, ty0 = px - side * 0.3 * F, py + 0.05 * F
        parts.append(sd_capsule(win, tx0, ty0, tx0 - side * 0.25 * F, ty0 - 0.3 * F, 0.085 * F))
        alpha = None
        inside = None
        for d in parts:
            d_edge = d - (0.6 * self.ss)
            cv.fill(win, d_edge, edge)
            a = cv.fill(win, d, skin)
            alpha = a if alpha is None else np.maximum(alpha, a)
            if self.layers is not None:  # the hand with its dark outline
                inside = d_edge <= 0.0 if inside is None else inside | (d_edge <= 0.0)
        # nails and knuckle creases
        for k in range(4):
            off = (k - 1.5) * 0.17 * F
            length = (0.5 + 0.12 * (1.5 - abs(k - 1.5))) * F
            bx0, by0 = px + off * ca + 0.3 * F * sa, py + off * sa - 0.3 * F * ca
            tx, ty = bx0 + (length - 0.04 * F) * sa, by0 - (length - 0.04 * F) * ca
            cv.fill(win, sd_circle(win, tx, ty, 0.045 * F), _mix(skin, (1, 0.85, 0.85), 0.4))
            mx, my = bx0 + 0.5 * length * sa, by0 - 0.5 * length * ca
            cv.fill(
                win,
                sd_capsule(
                    win,
                    mx - 0.05 * F * ca,
                    my - 0.05 * F * sa,
                    mx + 0.05 * F * ca,
                    my + 0.05 * F * sa,
                    0.3 * self.ss,
                ),
                edge,
                opacity=0.6,
            )
        self.person(win, alpha)
        self.label_mask(win, inside, "hand")
        bx = self.box(win, alpha, 0.3)
        if bx is not None:
            self.rare["hand"].append(bx)

    def phone(self) -> None:
        V, F, cv = self.V, self.F, self.cv
        if not V.phone:
            return
        side = V.phone_side
        cx, cy = self.Cx + side * 1.0 * F, self.Cy + 0.75 * F
        ang = side * 0.22
        hw, hh = 0.34 * F, 0.66 * F
        win = cv.window_around(cx, cy, *rotated_extent(hw + 0.2 * F, hh + 0.2 * F, ang))
        if win is None:
            return
        body = sd_box(win, cx, cy, hw, hh, ang, 0.08 * F)
        alpha = cv.fill(win, body, V.phone_color)
        self.label(win, body, "object")
        cv.fill(win, np.abs(body) - (0.5 * self.ss), _scale(V.phone_color, 0.4))
        ca, sa = math.cos(ang), math.sin(ang)
        # camera block with two lenses and a flash: the high-frequency part
        kx, ky = cx - 0.16 * F * ca + 0.42 * F * sa, cy - 0.16 * F * sa - 0.42 * F * ca
        cv.fill(win, sd_box(win, kx, ky, 0.13 * F, 0.2 * F, ang, 0.05 * F), _scale(V.phone_color, 0.7))
        for k in (-1, 1):
            lx, ly = kx - k * 0.09 * F * sa, ky + k * 0.09 * F * ca
            cv.fill(win, sd_circle(win, lx, ly, 0.065 * F), (0.05, 0.05, 0.06))
            cv.fill(win, sd_circle(win, lx - 0.02 * F, ly - 0.02 * F, 0.02 * F), (0.7, 0.75, 0.9))
        fx, fy = kx + 0.09 * F * ca, ky + 0.09 * F * sa
        cv.fill(win, sd_circle(win, fx, fy, 0.025 * F), (1.0, 0.95, 0.7))
        # fingertips wrapping the outer edge
        skin = self.skin
        for k in range(3):
            t = (k - 0.5) * 0.28 * F
            ex, ey = cx + side * hw * ca - t * sa, cy + side * hw * sa + t * ca
            d = sd_capsule(win, ex + side * 0.05 * F, ey, ex - side * 0.1 * F, ey, 0.07 * F)
            d_edge = d - (0.5 * self.ss)
            cv.fill(win, d_edge, skin * 0.6)
            alpha = np.maximum(alpha, cv.fill(win, d, skin))
            self.label(win, d_edge, "hand")
        self.person(win, alpha)
        bx = self.box(win, alpha, 0.3)
        if bx is not None:
            self.rare["phone"].append(bx)

    def watch(self) -> None:
        V, F, cv = self.V, self.F, self.cv
        if not V.watch:
            return
        side = V.watch_side
        skin = _mix(self.skin, (0.9, 0.7, 0.6), 0.06)
        ax, ay = self.Cx + side * 2.4 * F, self.R + 0.3 * F
        bx, by = self.Cx + side * 0.7 * F, self.Cy + 1.3 * F
        win = cv.window(min(ax, bx) - 0.5 * F, by - 0.6 * F, max(ax, bx) + 0.5 * F, self.R)
        if win is None:
            return
        arm = sd_capsule(win, ax, ay, bx, by, 0.26 * F)
        arm_edge = arm - (0.6 * self.ss)
        cv.fill(win, arm_edge, skin * 0.62)
        alpha = cv.fill(win, arm, skin)
        fist = sd_ellipse(win, bx, by - 0.1 * F, 0.34 * F, 0.3 * F, math.atan2(by - ay, bx - ax))
        fist_edge = fist - (0.6 * self.ss)
        cv.fill(win, fist_edge, skin * 0.62)
        alpha = np.maximum(alpha, cv.fill(win, fist, skin))
        if self.layers is not None:
            self.label_mask(win, (arm_edge <= 0.0) | (fist_edge <= 0.0), "hand")
        dx, dy = bx - ax, by - ay
        ln = math.hypot(dx, dy)
        ux, uy = dx / ln, dy / ln
        for k in range(3):  # knuckle creases
            o = (k - 1) * 0.12 * F
            kx, ky = bx + ux * 0.1 * F - uy * o, by - 0.1 * F + uy * 0.1 * F + ux * o
            cv.fill(win, sd_circle(win, kx, ky, 0.02 * F), skin * 0.55, opacity=0.7)
        # the watch: strap across the wrist, a metal case, a dial with hands and ticks
        wx, wy = bx - ux * 0.62 * F, by - uy * 0.62 * F
        ang = math.atan2(uy, ux)
        strap = sd_box(win, wx, wy, 0.1 * F, 0.29 * F, ang, 0.02 * F)
        cv.fill(win, strap, _scale(V.watch_color, 0.5) if V.watch_color[0] > 0.5 else (0.25, 0.15, 0.08))
        case = sd_circle(win, wx, wy, 0.17 * F)
        cv.fill(win, case, V.watch_color)
        if self.layers is not None:
            self.label_mask(win, (strap <= 0.0) | (case <= 0.0), "object")
        cv.fill(win, case + (0.035 * F), (0.96, 0.96, 0.93))
        for t in range(12):
            th = t * math.pi / 6
            r = 0.105 * F
            cv.fill(
                win,
                sd_circle(win, wx + r * math.cos(th), wy + r * math.sin(th), 0.012 * F + 0.3),
                (0.1, 0.1, 0.1),
            )
        cv.fill(
            win, sd_capsule(win, wx, wy, wx + 0.09 * F, wy - 0.03 * F, 0.012 * F + 0.3), (0.05, 0.05, 0.05)
        )
        cv.fill(
            win, sd_capsule(win, wx, wy, wx - 0.02 * F, wy - 0.12 * F, 0.01 * F + 0.3), (0.05, 0.05, 0.05)
        )
        self.person(win, alpha)
        bxx = self.box(win, alpha, 0.3)
        if bxx is not None:
            self.rare["watch"].append(bxx)

    def lighting(self, img: np.ndarray) -> np.ndarray:
        """Shade the downsampled image with a lit head ellipsoid and a gentle ambient gradient."""
        V = self.V
        n = img.shape[1]
        g = (np.arange(n, dtype=F32) + 0.5) * self.ss
        hx, hy = self.to_img(0.0, -0.1)
        rx, ry = 1.35 * self.F, 1.75 * self.F
        nx = (g[None, :] - hx) * (1.0 / rx)
        ny = (g[:, None] - hy) * (1.0 / ry)
        r2 = nx * nx + ny * ny
        inv = 1.0 / np.maximum(np.sqrt(r2), 1.0)
        nxs, nys = nx * inv, ny * inv
        nz = np.sqrt(np.maximum(1.0 - nxs * nxs - nys * nys, 0.0))
        el = 0.65
        lx, ly, lz = (
            math.cos(V.light_azimuth) * math.cos(el),
            math.sin(V.light_azimuth) * math.cos(el),
            math.sin(el),
        )
        ndl = np.maximum(nxs * lx + nys * ly + nz * lz, 0.0)
        s = V.light_strength
        head = (1.0 - s) + (s * 1.3) * ndl
        wgt = downsample(self.mask[None], self.ss)[0]
        bg = 1.0 + (0.1 * s) * (nx * lx + ny * ly)
        shade = (bg + wgt * (head - bg)) * V.light_intensity
        shade *= self.shade
        light = np.asarray(V.light_color, F32)
        out = img * shade[None] * light[:, None, None]
        return out


def _ell(xr: np.ndarray, yr: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Signed distance to an axis-aligned ellipse in already-local coordinates."""
    ax = xr * (1.0 / (rx * rx))
    ay = yr * (1.0 / (ry * ry))
    q = xr * ax + yr * ay
    g = np.sqrt(ax * ax + ay * ay) * 2.0 + 1e-4
    return (q - 1.0) / g


def render(
    ident: Identity, var: Variation, size: int, supersample: int = 2, parsing: bool = False
) -> RenderResult:
    """Paint ``ident`` in photograph ``var`` at ``size`` x ``size`` pixels (RGB uint8).

    ``parsing=True`` also makes the per-pixel class map (:mod:`~egain.data.synthfaces.parsing`);
    it never changes the picture."""
    p = _Painter(ident, var, size, supersample, parsing)
    p.background()
    if var.text_marks:
        p.text_marks()
    p.clothing()
    p.back_hair()
    p.neck()
    p.ears()
    p.face()
    p.marks()
    p.eyes()
    p.brows()
    p.nose()
    p.beard()
    p.mouth()
    p.wrinkles()
    p.front_hair()
    p.hat()
    p.glasses()
    p.earrings()
    p.watch()
    p.hand()
    p.phone()
    small = downsample(p.cv.img, supersample)
    lit = p.lighting(small)
    lit *= 255.0
    lit += 0.5
    clip(lit, 0.0, 255.0, out=lit)
    img = np.ascontiguousarray(lit.astype(np.uint8).transpose(1, 2, 0))
    lm = {k: [round(float(c), 2) for c in v] for k, v in p.landmarks.items()}
    labels = None
    if p.layers is not None:
        labels = downsample_labels(p.layers, np.array(p.layer_class, dtype=np.uint8), supersample)
    return RenderResult(image=img, rare=p.rare, landmarks=lm, face_box=p.face_box, parsing=labels)

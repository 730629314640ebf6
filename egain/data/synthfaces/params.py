"""What a synthfaces image is made of: identity and variation parameters, sampled deterministically.

An *identity* (seed, identity) fixes everything that makes a person recognisable; a *variation*
(seed, identity, variation) fixes the photograph: pose, expression, light, background, accessories
and the rare details. Each comes from its own ``np.random.SeedSequence`` with a distinct spawn key
(the rare details from a child stream of their own), so

* an image does not depend on which other images were rendered, or in which order;
* changing a rate (e.g. ``rare_rate``) changes only the attributes it governs, never the face.

All geometry is in *face units*: 1.0 is the half-width of the face at the cheekbones, the origin
is the midpoint between the eyes, +u points to the image right and +v down.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import numpy as np

HAIR_STYLES = ("bald", "buzz", "short", "side_part", "fringe", "bob", "long", "curly", "bun")
BEARD_STYLES = ("none", "stubble", "moustache", "goatee", "full")
BACKGROUNDS = ("flat", "gradient", "stripes", "checker", "dots", "bokeh")
GLASSES_SHAPES = ("round", "rect", "cat")
HAT_STYLES = ("beanie", "cap", "brim")
CLOTHING_PATTERNS = ("stripes", "checks", "dots", "zigzag")
OCCLUDERS = ("hand", "phone", "watch")
#: Rare-detail kinds, in the order their on/off draws are taken from the rare stream.
RARE_KINDS = ("earrings", "hand", "phone", "watch", "clothing_pattern", "text_marks")
#: Default probability of each rare detail per image.
DEFAULT_RARE_RATES = {
    "earrings": 0.08,
    "hand": 0.05,
    "phone": 0.04,
    "watch": 0.04,
    "clothing_pattern": 0.08,
    "text_marks": 0.06,
}

_SKIN_STOPS = np.array(
    [
        [0.97, 0.83, 0.73],
        [0.90, 0.72, 0.60],
        [0.80, 0.60, 0.45],
        [0.66, 0.46, 0.31],
        [0.48, 0.31, 0.20],
        [0.32, 0.20, 0.13],
    ]
)
_HAIR_COLOURS = {
    "black": (0.07, 0.06, 0.06),
    "dark_brown": (0.20, 0.13, 0.09),
    "brown": (0.36, 0.23, 0.14),
    "light_brown": (0.55, 0.40, 0.26),
    "auburn": (0.48, 0.20, 0.10),
    "ginger": (0.78, 0.40, 0.16),
    "blonde": (0.86, 0.71, 0.45),
    "platinum": (0.93, 0.89, 0.80),
    "blue": (0.20, 0.35, 0.80),
    "pink": (0.92, 0.42, 0.62),
    "green": (0.20, 0.58, 0.42),
    "purple": (0.45, 0.25, 0.66),
}
_IRIS_COLOURS = (
    (0.22, 0.13, 0.07),
    (0.38, 0.23, 0.11),
    (0.48, 0.40, 0.18),
    (0.28, 0.48, 0.28),
    (0.28, 0.48, 0.78),
    (0.48, 0.54, 0.60),
    (0.62, 0.42, 0.14),
)
_FRAME_COLOURS = (
    (0.05, 0.05, 0.05),
    (0.30, 0.17, 0.08),
    (0.75, 0.75, 0.78),
    (0.80, 0.65, 0.25),
    (0.70, 0.10, 0.12),
    (0.12, 0.25, 0.65),
)
_METAL_COLOURS = (
    (0.95, 0.78, 0.20),  # gold
    (0.85, 0.86, 0.90),  # silver
    (0.92, 0.20, 0.30),  # red stone
    (0.15, 0.75, 0.85),  # turquoise
)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    )


def _streams(seed: int, key: tuple[int, ...], n: int) -> list[np.random.Generator]:
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return [np.random.default_rng(c) for c in ss.spawn(n)]


def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


def _rgb(c) -> tuple[float, float, float]:
    return tuple(_clip(float(v), 0.0, 1.0) for v in c)  # type: ignore[return-value]


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return _rgb([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


@lru_cache(maxsize=8)
def _field_names(cls: type, skip: tuple[str, ...]) -> tuple[str, ...]:
    """The dataclass field names of ``cls`` but ``skip``, in order (labels are made per image, and
    ``dataclasses.fields`` rebuilds its tuple at every call)."""
    return tuple(f.name for f in fields(cls) if f.name not in skip)


# Domain tags in the spawn keys: identities, variations and splits never share a stream.
_TAG_IDENTITY, _TAG_VARIATION, _TAG_SPLIT = 1, 2, 3


@dataclass(frozen=True)
class Identity:
    """Everything that stays fixed for one person."""

    identity: int
    masc: float  # 0..1; correlates jaw, brows, hair length and beard
    face_width: float  # face half-width as a fraction of the image size
    face_length: float  # lower-face vertical radius (face units)
    jaw_taper: float
    chin: float  # chin squareness: 0 pointed .. 1 square
    skin: tuple[float, float, float]
    skin_tone: float  # 0 light .. 1 deep
    skin_texture: float
    blush: float
    eye_spacing: float
    eye_width: float
    eye_height: float
    eye_tilt: float
    iris: tuple[float, float, float]
    iris_size: float
    brow_height: float
    brow_thickness: float
    brow_arch: float
    brow_length: float
    brow_tilt: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float  # v of the mouth line
    upper_lip: float
    lower_lip: float
    lips: tuple[float, float, float]
    ear_size: float
    ear_height: float
    hair_style: str
    hair_color_name: str
    hair: tuple[float, float, float]
    hair_volume: float
    hair_length: float
    hairline: float
    hair_part: float
    base_age: float
    grey_propensity: float
    beard_type: str  # the style this person's beard has when they wear one
    glasses_affinity: float
    glasses_shape: str
    glasses_color: tuple[float, float, float]
    freckles: tuple[tuple[float, float], ...] = field(repr=False)
    moles: tuple[tuple[float, float, float], ...] = field(repr=False)

    def attributes(self) -> dict:
        """JSON-ready identity attributes (fine-mark positions summarised as counts)."""
        out = {}
        for name in _field_names(type(self), ("identity", "freckles", "moles")):
            v = getattr(self, name)
            out[name] = [round(float(x), 4) for x in v] if isinstance(v, tuple) else _round(v)
        out["n_freckles"] = len(self.freckles)
        out["n_moles"] = len(self.moles)
        return out


@dataclass(frozen=True)
class Variation:
    """Everything that changes from photograph to photograph of one person."""

    variation: int
    yaw: float  # radians, + turns the face towards the image right
    roll: float  # radians, + tilts the head clockwise
    shift_x: float  # fraction of the image size
    shift_y: float
    scale: float
    smile: float  # 0..1
    eyes_open: float  # 0 closed .. 1 wide open
    gaze_x: float
    gaze_y: float
    light_azimuth: float
    light_strength: float
    light_intensity: float
    light_color: tuple[float, float, float]
    background: str
    bg_color1: tuple[float, float, float]
    bg_color2: tuple[float, float, float]
    bg_angle: float
    bg_freq: float
    age: float
    wrinkles: float  # 0..1, derived from age
    grey: float  # 0..1 fraction of grey hair
    beard: bool
    beard_style: str
    beard_density: float
    glasses: bool
    sunglasses: bool
    hat: bool
    hat_style: str
    hat_color: tuple[float, float, float]
    clothing: tuple[float, float, float]
    clothing2: tuple[float, float, float]
    neckline: str
    # rare details
    earrings: bool
    earring_kind: str
    earring_color: tuple[float, float, float]
    hand: bool
    hand_side: int
    hand_height: float
    phone: bool
    phone_side: int
    phone_color: tuple[float, float, float]
    watch: bool
    watch_side: int
    watch_color: tuple[float, float, float]
    clothing_pattern: bool
    pattern_kind: str
    text_marks: bool
    text_seed: int
    detail_seed: int  # seeds per-image textures (noise offsets)

    def attributes(self) -> dict:
        out = {}
        for name in _field_names(type(self), ("variation", "text_seed", "detail_seed")):
            v = getattr(self, name)
            out[name] = [round(float(x), 4) for x in v] if isinstance(v, tuple) else _round(v)
        return out


def _round(v):
    if isinstance(v, bool | str | int) or v is None:
        return v
    return round(float(v), 4)


_SPLIT_FRACTIONS = (0.8, 0.9)  # cumulative: train < 0.8 <= val < 0.9 <= test
_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a fixed, platform-independent 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def split_uniform(seed: int, identity: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, identity), the basis of the split."""
    return (_mix64(_mix64(int(seed) ^ (_TAG_SPLIT << 56)) ^ int(identity)) >> 11) * 2.0**-53


def split_of(seed: int, identity: int) -> str:
    """The split of an identity: 'train' (80 %), 'val' (10 %) or 'test' (10 %), by a hash of
    (seed, identity) -- independent of how many identities a recipe renders, so a larger recipe
    keeps the splits of a smaller one and held-out identities stay held out everywhere. (An
    integer hash rather than a SeedSequence: datasets filter 10^5 identities by split at start.)"""
    u = split_uniform(seed, identity)
    return "train" if u < _SPLIT_FRACTIONS[0] else ("val" if u < _SPLIT_FRACTIONS[1] else "test")


@lru_cache(maxsize=4096)
def sample_identity(seed: int, identity: int) -> Identity:
    """The person ``identity`` of world ``seed`` (cached: identities are immutable and every
    image of a person needs them)."""
    # one stream, drawn in a fixed order (one Generator per group would cost more than the draws)
    g = _rng(seed, _TAG_IDENTITY, identity)
    g_shape = g_skin = g_eyes = g_hair = g_marks = g_misc = g
    masc = float(g_misc.beta(0.9, 0.9))

    # face shape
    face_width = float(g_shape.uniform(0.17, 0.205))
    face_length = float(g_shape.uniform(1.30, 1.55) + 0.05 * masc)
    jaw_taper = float(g_shape.uniform(0.18, 0.42) - 0.08 * masc)
    chin = float(np.clip(g_shape.beta(2, 2) * 0.8 + 0.3 * masc, 0, 1))

    # skin
    tone = float(g_skin.beta(1.3, 1.6))
    pos = tone * (len(_SKIN_STOPS) - 1)
    i0 = min(int(pos), len(_SKIN_STOPS) - 2)
    base = _SKIN_STOPS[i0] * (1 - (pos - i0)) + _SKIN_STOPS[i0 + 1] * (pos - i0)
    # undertone: rosy (+r), golden (+r+g, -b) or olive (-r); kept small so skin stays skin
    undertone = np.array([0.025, 0.0, 0.0]) * g_skin.normal(0, 1) + np.array(
        [0.01, 0.01, -0.02]
    ) * g_skin.normal(0, 1)
    skin = base * g_skin.uniform(0.96, 1.04) + undertone
    skin = _rgb(np.minimum(skin, [1.0, skin[0] - 0.04, skin[0] - 0.08]))
    skin_texture = float(g_skin.uniform(0.008, 0.025))
    blush = float(g_skin.uniform(0.0, 0.6) * (1 - 0.5 * masc))
    lip_tint = np.array([0.78, 0.50, 0.50]) if g_skin.random() < 0.85 or masc > 0.5 else None
    lips = np.array(skin) * np.array([0.82, 0.56, 0.56]) + np.array([0.06, 0.0, 0.0])
    if lip_tint is None:  # lipstick
        lips = np.array(
            [(0.72, 0.10, 0.16), (0.80, 0.35, 0.45), (0.45, 0.08, 0.18), (0.70, 0.30, 0.25)][
                int(g_skin.integers(4))
            ]
        )
    # eyes and brows
    eye_spacing = float(g_eyes.uniform(0.36, 0.46))
    eye_width = float(g_eyes.uniform(0.17, 0.23))
    eye_height = float(g_eyes.uniform(0.075, 0.115))
    eye_tilt = float(g_eyes.normal(0.03, 0.06))
    iris_w = np.array([0.30, 0.22, 0.12, 0.08, 0.14, 0.08, 0.06])
    if tone > 0.45:
        iris_w = iris_w * np.array([2.5, 2.0, 1.0, 0.3, 0.15, 0.2, 0.8])
    iris_idx = int(g_eyes.choice(len(_IRIS_COLOURS), p=iris_w / iris_w.sum()))
    iris = _rgb(np.array(_IRIS_COLOURS[iris_idx]) + g_eyes.normal(0, 0.03, 3))
    iris_size = float(g_eyes.uniform(0.48, 0.62))
    brow_height = float(g_eyes.uniform(-0.34, -0.24))
    brow_thickness = float(g_eyes.uniform(0.030, 0.055) + 0.02 * masc)
    brow_arch = float(g_eyes.uniform(0.0, 0.08))
    brow_length = float(g_eyes.uniform(0.22, 0.30))
    brow_tilt = float(g_eyes.normal(0.0, 0.08))

    nose_length = float(g_shape.uniform(0.50, 0.68))
    nose_width = float(g_shape.uniform(0.15, 0.24) + 0.03 * tone)
    mouth_width = float(g_shape.uniform(0.26, 0.36))
    mouth_height = float(max(nose_length + 0.3, g_shape.uniform(0.90, 1.02)))
    upper_lip = float(g_shape.uniform(0.035, 0.07) * (1.2 - 0.3 * masc))
    lower_lip = float(g_shape.uniform(0.05, 0.09) * (1.2 - 0.3 * masc))
    ear_size = float(g_shape.uniform(0.22, 0.30))
    ear_height = float(g_shape.uniform(0.15, 0.30))

    # hair: style weights shift with masc
    w_m = np.array([0.08, 0.14, 0.26, 0.22, 0.04, 0.04, 0.04, 0.14, 0.0])
    w_f = np.array([0.0, 0.01, 0.04, 0.12, 0.14, 0.20, 0.28, 0.12, 0.09])
    w = w_m * masc + w_f * (1 - masc)
    hair_style = HAIR_STYLES[int(g_hair.choice(len(HAIR_STYLES), p=w / w.sum()))]
    names = list(_HAIR_COLOURS)
    hw = np.array([0.22, 0.22, 0.16, 0.09, 0.05, 0.04, 0.10, 0.04, 0.02, 0.02, 0.02, 0.02])
    if tone > 0.45:
        hw = hw * np.array([3.0, 1.5, 0.6, 0.2, 0.2, 0.05, 0.1, 0.05, 0.5, 0.5, 0.5, 0.5])
    hair_color_name = names[int(g_hair.choice(len(names), p=hw / hw.sum()))]
    hair = _rgb(
        np.array(_HAIR_COLOURS[hair_color_name]) * g_hair.uniform(0.9, 1.1) + g_hair.normal(0, 0.02, 3)
    )
    hair_volume = float(g_hair.uniform(0.04, 0.20))
    hair_length = float(g_hair.uniform(0.0, 1.0))
    hairline = float(g_hair.uniform(-0.82, -0.62))
    hair_part = float(g_hair.uniform(-0.45, 0.45))

    # fine marks: positions on the face (u, v) that follow the person through every photo
    n_freckles = int(g_marks.integers(12, 45)) if g_marks.random() < 0.22 else 0
    fu = g_marks.normal(0, 0.35, n_freckles)
    fv = g_marks.normal(0.35, 0.12, n_freckles)
    freckles = tuple((float(a), float(b)) for a, b in zip(fu, fv, strict=True) if abs(a) < 0.85)
    n_moles = int(g_marks.choice([0, 0, 1, 1, 2, 3]))
    moles = tuple(
        (
            float(g_marks.uniform(-0.75, 0.75)),
            float(g_marks.uniform(-0.5, 1.3)),
            float(g_marks.uniform(0.018, 0.035)),
        )
        for _ in range(n_moles)
    )

    base_age = float(18 + 57 * g_misc.beta(1.4, 2.4))
    grey_propensity = float(g_misc.uniform(0.4, 1.2))
    beard_type = "none"
    if g_misc.random() < 0.85 * masc**1.5:
        beard_type = BEARD_STYLES[int(g_misc.choice([1, 2, 3, 4], p=[0.35, 0.15, 0.15, 0.35]))]
    glasses_affinity = 0.75 if g_misc.random() < 0.2 else 0.04
    glasses_shape = GLASSES_SHAPES[int(g_misc.integers(len(GLASSES_SHAPES)))]
    glasses_color = _FRAME_COLOURS[int(g_misc.integers(len(_FRAME_COLOURS)))]

    return Identity(
        identity=int(identity),
        masc=masc,
        face_width=face_width,
        face_length=face_length,
        jaw_taper=jaw_taper,
        chin=chin,
        skin=skin,
        skin_tone=tone,
        skin_texture=skin_texture,
        blush=blush,
        eye_spacing=eye_spacing,
        eye_width=eye_width,
        eye_height=eye_height,
        eye_tilt=eye_tilt,
        iris=iris,
        iris_size=iris_size,
        brow_height=brow_height,
        brow_thickness=brow_thickness,
        brow_arch=brow_arch,
        brow_length=brow_length,
        brow_tilt=brow_tilt,
        nose_length=nose_length,
        nose_width=nose_width,
        mouth_width=mouth_width,
        mouth_height=mouth_height,
        upper_lip=upper_lip,
        lower_lip=lower_lip,
        lips=_rgb(lips),
        ear_size=ear_size,
        ear_height=ear_height,
        hair_style=hair_style,
        hair_color_name=hair_color_name,
        hair=hair,
        hair_volume=hair_volume,
        hair_length=hair_length,
        hairline=hairline,
        hair_part=hair_part,
        base_age=base_age,
        grey_propensity=grey_propensity,
        beard_type=beard_type,
        glasses_affinity=glasses_affinity,
        glasses_shape=glasses_shape,
        glasses_color=glasses_color,
        freckles=freckles,
        moles=moles,
    )


def resolve_rates(rare_rate: float | dict | None) -> dict[str, float]:
    """Per-kind rare-detail rates from None (defaults), one number for every kind, or a dict."""
    if rare_rate is None:
        return dict(DEFAULT_RARE_RATES)
    if isinstance(rare_rate, dict):
        out = dict(DEFAULT_RARE_RATES)
        for k, v in rare_rate.items():
            if k not in out:
                raise KeyError(k)
            out[k] = float(v)
        return out
    return {k: float(rare_rate) for k in RARE_KINDS}


def sample_variation(
    seed: int,
    ident: Identity,
    variation: int,
    rates: dict[str, float] | None = None,
    force_rare: bool = False,
) -> Variation:
    """Photograph ``variation`` of ``ident``; ``force_rare`` guarantees at least one rare detail."""
    rates = DEFAULT_RARE_RATES if rates is None else rates
    # two streams: the photograph, and the rare details (so that rates change nothing else)
    g_photo, g_rare = _streams(seed, (_TAG_VARIATION, ident.identity, variation), 2)
    g_pose = g_expr = g_light = g_bg = g_age = g_acc = g_detail = g_photo
    yaw = _clip(g_pose.normal(0, 0.22), -0.5, 0.5)
    roll = _clip(g_pose.normal(0, 0.07), -0.22, 0.22)
    shift_x = float(g_pose.normal(0, 0.012))
    shift_y = float(g_pose.normal(0, 0.012))
    scale = float(g_pose.uniform(0.95, 1.05))

    smile = 0.0 if g_expr.random() < 0.3 else float(g_expr.uniform(0, 1))
    eyes_open = (
        float(g_expr.uniform(0.0, 0.35)) if g_expr.random() < 0.08 else float(g_expr.uniform(0.75, 1.0))
    )
    gaze_x = float(g_expr.normal(0, 0.25))
    gaze_y = float(g_expr.normal(0, 0.15))

    light_azimuth = float(g_light.uniform(-math.pi, math.pi))
    light_strength = float(g_light.uniform(0.15, 0.5))
    light_intensity = float(g_light.uniform(0.85, 1.15))
    temp = _clip(g_light.normal(0, 1), -2.0, 2.0)
    light_color = _rgb(np.array([1 + 0.04 * temp, 1.0, 1 - 0.055 * temp]) + g_light.normal(0, 0.01, 3))

    bg_kind = BACKGROUNDS[int(g_bg.choice(len(BACKGROUNDS), p=[0.3, 0.35, 0.09, 0.07, 0.07, 0.12]))]
    h1 = g_bg.random()
    bg_color1 = _hsv(h1, g_bg.uniform(0.05, 0.55), g_bg.uniform(0.25, 0.95))
    bg_color2 = _hsv((h1 + g_bg.normal(0, 0.15)) % 1.0, g_bg.uniform(0.05, 0.6), g_bg.uniform(0.2, 0.95))
    bg_angle = float(g_bg.uniform(0, math.pi))
    bg_freq = float(g_bg.uniform(6, 16))

    age = _clip(ident.base_age + g_age.normal(0, 3), 16, 85)
    wrinkles = _clip((age - 32) / 40, 0, 1)
    grey = _clip(((age - 38) / 35) * ident.grey_propensity + g_age.normal(0, 0.05), 0, 1)

    has_beard_style = ident.beard_type != "none"
    beard = bool(has_beard_style and g_acc.random() < 0.85)
    beard_density = float(g_acc.uniform(0.6, 1.0))
    glasses = bool(g_acc.random() < ident.glasses_affinity)
    sunglasses = bool(glasses and g_acc.random() < 0.12)
    hat = bool(g_acc.random() < 0.07)
    hat_style = HAT_STYLES[int(g_acc.integers(len(HAT_STYLES)))]
    hat_color = _hsv(g_acc.random(), g_acc.uniform(0.1, 0.8), g_acc.uniform(0.15, 0.85))
    clothing = _hsv(g_acc.random(), g_acc.uniform(0.0, 0.7), g_acc.uniform(0.12, 0.9))
    clothing2 = _hsv(g_acc.random(), g_acc.uniform(0.0, 0.8), g_acc.uniform(0.1, 0.95))
    neckline = ("round", "vee", "collar")[int(g_acc.integers(3))]

    # rare details: on/off draws first, always all of them, then their parameters
    u = g_rare.random(len(RARE_KINDS))
    on = {k: bool(u[i] < rates.get(k, 0.0)) for i, k in enumerate(RARE_KINDS)}
    forced = int(g_rare.integers(len(RARE_KINDS)))
    if force_rare and not any(on.values()):
        on[RARE_KINDS[forced]] = True
    earring_kind = ("stud", "hoop", "drop")[int(g_rare.integers(3))]
    earring_color = _METAL_COLOURS[int(g_rare.integers(len(_METAL_COLOURS)))]
    hand_side = int(g_rare.choice([-1, 1]))
    hand_height = float(g_rare.uniform(0.0, 1.0))
    phone_side = int(g_rare.choice([-1, 1]))
    phone_color = _hsv(g_rare.random(), g_rare.uniform(0.0, 0.8), g_rare.uniform(0.08, 0.9))
    watch_side = int(g_rare.choice([-1, 1]))
    watch_color = _METAL_COLOURS[int(g_rare.integers(2))] if g_rare.random() < 0.6 else (0.1, 0.1, 0.12)
    pattern_kind = CLOTHING_PATTERNS[int(g_rare.integers(len(CLOTHING_PATTERNS)))]
    text_seed = int(g_rare.integers(2**31))

    return Variation(
        variation=int(variation),
        yaw=yaw,
        roll=roll,
        shift_x=shift_x,
        shift_y=shift_y,
        scale=scale,
        smile=smile,
        eyes_open=eyes_open,
        gaze_x=gaze_x,
        gaze_y=gaze_y,
        light_azimuth=light_azimuth,
        light_strength=light_strength,
        light_intensity=light_intensity,
        light_color=light_color,
        background=bg_kind,
        bg_color1=bg_color1,
        bg_color2=bg_color2,
        bg_angle=bg_angle,
        bg_freq=bg_freq,
        age=age,
        wrinkles=wrinkles,
        grey=grey,
        beard=beard,
        beard_style=ident.beard_type if beard else "none",
        beard_density=beard_density,
        glasses=glasses,
        sunglasses=sunglasses,
        hat=hat,
        hat_style=hat_style,
        hat_color=hat_color,
        clothing=clothing,
        clothing2=clothing2,
        neckline=neckline,
        earrings=on["earrings"],
        earring_kind=earring_kind,
        earring_color=earring_color,
        hand=on["hand"],
        hand_side=hand_side,
        hand_height=hand_height,
        phone=on["phone"],
        phone_side=phone_side,
        phone_color=phone_color,
        watch=on["watch"],
        watch_side=watch_side,
        watch_color=watch_color,
        clothing_pattern=on["clothing_pattern"],
        pattern_kind=pattern_kind,
        text_marks=on["text_marks"],
        text_seed=text_seed,
        detail_seed=int(g_detail.integers(2**31)),
    )


def as_dict(obj) -> dict:
    return asdict(obj)

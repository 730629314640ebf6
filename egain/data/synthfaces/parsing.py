"""Per-pixel semantic labels (face parsing maps) of synthfaces images: the class table and helpers.

The renderer paints layers back to front; with ``parsing=True`` every layer that has a meaning
also writes its class where the centre of a (supersampled) canvas pixel lies inside its shape,
the same signed distances that paint it (so the map is exact by construction: "last writer
wins", like the paint). Each output pixel then takes the class that covers most of its
``supersample x supersample`` sub-pixels, ties going to the shape painted last (front-most), which
keeps one-pixel structures such as glasses frames and hoops in the map; parts of one thing painted
one after the other (an eye and its lash line, a lens and its frame) count as one layer there.
See docs/synthfaces.md.

Left and right are the *image's* left and right (``left_eye`` is the eye on the image's left,
as in the ``landmarks`` of labels.jsonl).

:data:`TO_CELEBAMASK` fuses the classes into the 19-class order of the CelebAMask-HQ face-parsing
networks (BiSeNet of zllrunning/face-parsing.PyTorch, used by SAM and E2Style losses), so code
written against those maps can be trained and tested on synthfaces.
"""

from __future__ import annotations

import numpy as np

from egain.utils.sidefiles import PARSING_SUFFIX  # noqa: F401  (``X.png`` -> ``X_parsing.png``)

#: The synthfaces parsing classes; a map pixel holds the index into this tuple (0 = background).
PARSING_CLASSES: tuple[str, ...] = (
    "background",  # 0: backdrop (flat, gradient, patterns, bokeh)
    "skin",  # 1: face skin, with freckles, moles and wrinkles
    "neck",  # 2
    "hair",  # 3: hair behind and in front of the face
    "left_brow",  # 4
    "right_brow",  # 5
    "left_eye",  # 6: eye opening with iris and lash line (a closed eye: its lid line)
    "right_eye",  # 7
    "nose",  # 8: bridge to alar wings (the nose is painted as shading, the region is its shape)
    "upper_lip",  # 9
    "lower_lip",  # 10
    "mouth",  # 11: between the lips: mouth line, teeth and the dark inside
    "left_ear",  # 12
    "right_ear",  # 13
    "beard",  # 14: moustache, goatee, full beard (stubble, a faint shadow, stays skin)
    "glasses",  # 15: frames, bridge and temple arms; dark lenses of sunglasses
    "hat",  # 16
    "clothes",  # 17: shirt, collar and clothing patterns
    "hand",  # 18: hands, forearms and fingers (in front of the face or holding a phone)
    "object",  # 19: phone, watch (strap and case)
    "earring",  # 20
    "text",  # 21: glyph-like marks in the background
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARSING_CLASSES)}

#: One RGB colour per class, for pictures of maps (``colorize``); index 0 black.
PARSING_PALETTE = np.array(
    [
        (0, 0, 0),
        (230, 180, 140),
        (180, 120, 90),
        (120, 60, 20),
        (60, 160, 60),
        (30, 110, 30),
        (40, 90, 230),
        (20, 40, 160),
        (250, 220, 40),
        (230, 40, 70),
        (160, 20, 50),
        (250, 120, 170),
        (110, 210, 210),
        (40, 150, 150),
        (140, 90, 200),
        (250, 250, 250),
        (250, 140, 20),
        (90, 110, 130),
        (250, 200, 200),
        (0, 210, 120),
        (250, 250, 100),
        (200, 0, 200),
    ],
    dtype=np.uint8,
)

#: The 19 classes of the CelebAMask-HQ face-parsing networks (BiSeNet, zllrunning), in their order.
CELEBAMASK_CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)

_FUSE = {
    "background": "background",
    "skin": "skin",
    "neck": "neck",
    "hair": "hair",
    "left_brow": "l_brow",
    "right_brow": "r_brow",
    "left_eye": "l_eye",
    "right_eye": "r_eye",
    "nose": "nose",
    "upper_lip": "u_lip",
    "lower_lip": "l_lip",
    "mouth": "mouth",
    "left_ear": "l_ear",
    "right_ear": "r_ear",
    "beard": "skin",  # no beard class there; a beard lies on the face region
    "glasses": "eye_g",
    "hat": "hat",
    "clothes": "cloth",
    "hand": "background",  # no occluder classes there: hands and held objects are not the face
    "object": "background",
    "earring": "ear_r",
    "text": "background",
}
#: Lookup table: synthfaces class index -> CelebAMask-HQ / BiSeNet class index (``lut[map]``).
TO_CELEBAMASK = np.array([CELEBAMASK_CLASSES.index(_FUSE[c]) for c in PARSING_CLASSES], dtype=np.uint8)
TO_CELEBAMASK.flags.writeable = False
PARSING_PALETTE.flags.writeable = False


def to_celebamask(parsing: np.ndarray) -> np.ndarray:
    """A synthfaces map (any integer array of class indices) in the 19-class BiSeNet order (uint8)."""
    return TO_CELEBAMASK[np.asarray(parsing)]


def colorize(parsing: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 picture in :data:`PARSING_PALETTE` colours."""
    return PARSING_PALETTE[np.asarray(parsing)]


def downsample_labels(layers: np.ndarray, classes: np.ndarray, factor: int) -> np.ndarray:
    """Output-resolution class map from a supersampled map of layer numbers.

    ``layers`` (n*factor, n*factor) holds for each sub-pixel the number of the last labelled
    layer covering it (painting order, 0 = nothing), ``classes[k]`` the class of layer ``k``.
    Every output pixel takes the layer covering most of its ``factor x factor`` sub-pixels (the
    majority, as the image's area downsampling would weigh them); on a tie the layer painted last
    wins, which keeps one-sub-pixel-wide front structures (frames, hoops, lash lines) visible.
    """
    if factor == 1:
        return classes[layers]
    n = layers.shape[0] // factor
    k = factor * factor
    subs = layers.reshape(n, factor, n, factor).transpose(1, 3, 0, 2).reshape(k, n, n).astype(np.uint16)
    # score = 256 * (how many sub-pixels hold this layer) + layer: the max is the majority, ties to
    # the front-most layer (layer numbers stay below 256, see the painter)
    score = (subs[:, None] == subs[None]).sum(axis=1, dtype=np.uint16)
    score <<= 8
    score |= subs
    return classes[(score.max(axis=0) & 255).astype(np.uint8)]

"""Differentiable face crop / resize / colour conventions in front of an embedding network.

Every network expects its own input: the published ArcFace IR-SE50 ID loss takes a 256 px
FFHQ-aligned image in [-1, 1], crops rows 35:223 and columns 32:220 and adaptive-average-pools the
188 px square to 112 px; MagFace's iResNet takes a 112 px aligned crop in BGR order with values in
[0, 1]; our synthfaces networks take the whole 64 px face. :class:`FacePreprocess` describes such a
convention as data (so it is saved in our checkpoints) and applies it to a batch of any size with
pure tensor ops, so gradients flow back to the images (ID losses need that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from egain.errors import InputError

# The crop the published pSp/e4e/HFGI/EGAIN IDLoss takes from a 256 px FFHQ-aligned face.
ARCFACE_CROP_256: tuple[int, int, int, int] = (35, 223, 32, 220)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize: adaptive average pooling when shrinking (the published convention), bilinear when growing.

    Average pooling is anti-aliased and cheap; bilinear up-sampling only happens for inputs smaller
    than the network expects.
    """
    h, w = images.shape[-2:]
    if h == size and w == size:
        return images
    if h >= size and w >= size:
        return F.adaptive_avg_pool2d(images, (size, size))
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class FacePreprocess:
    """How images in [-1, 1] (N, 3, H, W) become network input.

    1. Unless the input already is ``input_size`` px and ``passthrough_aligned`` is set (a ready
       aligned crop, e.g. a 112 px MagFace crop), resize to ``reference_size`` and take ``crop``
       (top, bottom, left, right) in pixels of that reference size.
    2. Resize to ``input_size``.
    3. Map the values (``"pm1"``: keep [-1, 1]; ``"01"``: (x + 1) / 2) and the channel order.
    """

    input_size: int
    reference_size: int | None = None
    crop: tuple[int, int, int, int] | None = None
    value_range: str = "pm1"
    channel_order: str = "rgb"
    passthrough_aligned: bool = False

    def __post_init__(self) -> None:
        if self.value_range not in ("pm1", "01"):
            raise ValueError(f"value_range must be 'pm1' or '01', got {self.value_range!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.crop is not None:
            t, b, l, r = self.crop
            ref = self.reference_size
            if ref is None or not (0 <= t < b <= ref and 0 <= l < r <= ref):
                raise ValueError(f"crop {self.crop} must lie inside a reference size, got {ref}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["crop"] is not None:
            d["crop"] = list(d["crop"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FacePreprocess:
        d = dict(d)
        if d.get("crop") is not None:
            d["crop"] = tuple(int(v) for v in d["crop"])
        return cls(**d)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"face images must be (N, 3, H, W) in [-1, 1]; got shape {tuple(images.shape)}")
        x = images
        aligned = self.passthrough_aligned and x.shape[-2:] == (self.input_size, self.input_size)
        if not aligned:
            if self.reference_size is not None:
                x = resize(x, self.reference_size)
            if self.crop is not None:
                t, b, l, r = self.crop
                x = x[:, :, t:b, l:r]
        x = resize(x, self.input_size)
        if self.value_range == "01":
            x = (x + 1.0) * 0.5
        if self.channel_order == "bgr":
            x = x.flip(1)
        return x


def arcface_preprocess() -> FacePreprocess:
    """The published IDLoss input: 256 px, crop 35:223 x 32:220, pool to 112, [-1, 1], RGB."""
    return FacePreprocess(input_size=112, reference_size=256, crop=ARCFACE_CROP_256, passthrough_aligned=True)


def magface_preprocess() -> FacePreprocess:
    """MagFace's inference input: 112 px aligned crop, BGR (read by cv2), [0, 1] (ToTensor, mean 0, std 1).

    Larger FFHQ-aligned inputs get the same crop as the ArcFace ID loss, which maps the FFHQ
    alignment onto the tighter 112 px insightface alignment closely enough for a quality score.
    """
    return FacePreprocess(
        input_size=112,
        reference_size=256,
        crop=ARCFACE_CROP_256,
        value_range="01",
        channel_order="bgr",
        passthrough_aligned=True,
    )

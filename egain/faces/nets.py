"""Face-embedding networks: the IR-SE family (ArcFace "Backbone") and MagFace's iResNet.

Both keep the published module layout, so published weights load *strictly* without renaming:

* :class:`IRSEFaceNet` -- ``input_layer.*``, ``body.{i}.*`` (the shared :class:`~egain.nn.irse.IRSEBody`)
  plus ``output_layer.{0,3,4}``: BN2d -> Dropout -> Flatten -> Linear -> BN1d. With
  ``irse_stages(50)``, 112 px input and a 512-d embedding it is the ArcFace IR-SE50 used for the ID
  loss of pSp/e4e/HFGI/EGAIN (397 state-dict entries, 43,797,696 parameters). Small widths and depths
  give the synthfaces embedding networks, trained by ``egain faces train``.
* :class:`IResNet` -- the insightface/MagFace "improved ResNet" (``conv1``, ``bn1``, ``prelu``,
  ``layer1..4``, ``bn2``, ``fc``, ``features``), BN eps 2e-5. ``iresnet100`` is the MagFace release.

Both expose ``forward_features(x) -> (stage_outputs, embedding)`` so that a multi-layer ID loss
(E2Style) or a feature-distance perceptual loss can tap the stage ends without hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from egain.nn.irse import IRSEBody, Stage, custom_stages, irse_stages

IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}


@dataclass
class FaceNetConfig:
    """Everything needed to rebuild an :class:`IRSEFaceNet`; stored in our checkpoints.

    The synthfaces default (48 px input = the central 48 px crop of a 64 px face, widths 24-192,
    units 1-2-2-1, 256-d, ~112 MFLOP per image) is sized so that a useful network trains in about
    an hour on two CPU cores (see docs/faces.md for the measured speed).
    """

    input_size: int = 48
    widths: Sequence[int] = (24, 48, 96, 192)
    units: Sequence[int] = (1, 2, 2, 1)
    stem_channels: int = 24
    embedding_dim: int = 256
    dropout: float = 0.2
    se: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["units"] = list(self.units)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FaceNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown face-net config keys {unknown}; expected some of {sorted(known)}")
        cfg = cls(**d)
        cfg.widths = tuple(int(w) for w in cfg.widths)
        cfg.units = tuple(int(u) for u in cfg.units)
        return cfg


class IRSEFaceNet(IRSEBody):
    """IR(-SE) body + ArcFace output layer; returns the *un-normalised* embedding.

    The published ``Backbone`` L2-normalises its output; we return the raw BN1d output so that a
    MagFace-trained network keeps its magnitude (= quality) and let callers normalise.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        input_size: int,
        embedding_dim: int = 512,
        dropout: float = 0.6,
        stem_channels: int = 64,
        se: bool = True,
    ):
        super().__init__(stages, input_nc=3, stem_channels=stem_channels, se=se)
        if input_size % self.downsampling:
            raise ValueError(
                f"input_size {input_size} must be divisible by {self.downsampling} "
                f"({len(self.stages)} stride-2 stages)"
            )
        self.input_size = int(input_size)
        self.embedding_dim = int(embedding_dim)
        spatial = input_size // self.downsampling
        c = self.out_channels
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(c * spatial * spatial, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )

    @classmethod
    def from_config(cls, cfg: FaceNetConfig) -> IRSEFaceNet:
        return cls(
            custom_stages(cfg.units, cfg.widths),
            input_size=cfg.input_size,
            embedding_dim=cfg.embedding_dim,
            dropout=cfg.dropout,
            stem_channels=cfg.stem_channels,
            se=cfg.se,
        )

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Stage-end feature maps (after units 2, 6, 20, 23 for IR-SE50, as E2Style taps) and embedding."""
        x, taps = IRSEBody.forward(self, x, return_units=self.stage_ends)
        return taps, self.output_layer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.output_layer(self.body(self.input_layer(x)))


def arcface_irse50() -> IRSEFaceNet:
    """The published ArcFace IR-SE50 ``Backbone(112, 50, drop_ratio=0.6, mode='ir_se')`` layout."""
    return IRSEFaceNet(irse_stages(50), input_size=112, embedding_dim=512, dropout=0.6, stem_channels=64)


# --------------------------------------------------------------------------------------------------
# MagFace / insightface iResNet


def _bn(c: int) -> nn.BatchNorm2d:
    # The published iResNets use eps 2e-5 (MXNet heritage); it matters for matching outputs.
    return nn.BatchNorm2d(c, eps=2e-5, momentum=0.1)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus a (projected) identity."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = _bn(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _bn(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = _bn(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), _bn(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """insightface/MagFace iResNet: stem, four stride-2 stages, BN -> dropout -> FC -> BN1d (``features``)."""

    def __init__(
        self,
        layers: Sequence[int] = IRESNET_LAYERS[100],
        widths: Sequence[int] = (64, 128, 256, 512),
        embedding_dim: int = 512,
        input_size: int = 112,
        dropout: float = 0.4,
    ):
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("an iResNet has exactly four stages (layers and widths of length 4)")
        if input_size % 16:
            raise ValueError(f"input_size {input_size} must be divisible by 16")
        self.input_size = int(input_size)
        self.embedding_dim = int(embedding_dim)
        stem = 64
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = _bn(stem)
        self.prelu = nn.PReLU(stem)
        in_c = stem
        for i, (n, c) in enumerate(zip(layers, widths, strict=True)):
            blocks = [IBasicBlock(in_c if j == 0 else c, c, 2 if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_c = c
        spatial = input_size // 16
        self.bn2 = _bn(in_c)
        self.dropout = nn.Dropout2d(dropout)
        self.fc = nn.Linear(in_c * spatial * spatial, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=2e-5, momentum=0.1)

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.prelu(self.bn1(self.conv1(x)))
        taps = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            taps.append(x)
        x = self.dropout(self.bn2(x))
        return taps, self.features(self.fc(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def iresnet(depth: int = 100, **kwargs) -> IResNet:
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(IRESNET_LAYERS)}, got {depth}")
    return IResNet(IRESNET_LAYERS[depth], **kwargs)

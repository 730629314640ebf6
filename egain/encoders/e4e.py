"""The e4e basic encoder: IR-SE backbone + FPN + ``map2style`` heads, progressive W+ (Tov et al.).

Structure (reference sec. 5.1-5.3): the IR-SE body gives three taps c1 (end of stage 2), c2
(end of stage 3), c3 (end of stage 4). Coarse styles read c3, middle styles the FPN level
p2 = up(c3) + lateral(c2), fine styles p1 = up(p2) + lateral(c1). Unlike pSp, e4e predicts a single
code ``w_0`` (head 0) and per-layer *offsets* ``w_i = w_0 + delta_i``; during training the offsets are
switched on one by one (``progressive_stage``), which keeps the codes close to W and so editable.

Depth and width are configuration: ``depth=50`` with widths (64,128,256,512) is the published
IR-SE50 layout (a published e4e checkpoint converts onto it, see :mod:`egain.methods.published`);
small ``units`` / ``widths`` give the tiny encoders of the synthfaces world with the same structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from egain.nn.irse import IRSEBody, custom_stages, irse_stages
from egain.ops.equalized import EqualLinear


class Map2Style(nn.Module):
    """``log2(spatial)`` stride-2 3x3 convs (LeakyReLU 0.01) down to 1x1, then an EqualLinear.

    Keys follow the published ``GradualStyleBlock`` (``convs.{0,2,4,..}``, ``linear``). ``hidden``
    (default: ``out_channels``, the published choice) narrows the convs for small encoders: the
    heads hold most of e4e's parameters and FLOPs, so this is the knob that makes it CPU-trainable.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_channels
        n_convs = int(round(math.log2(spatial)))
        if 2**n_convs != spatial:
            raise ValueError(f"map2style needs a power-of-two spatial size, got {spatial}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(n_convs):
            layers += [nn.Conv2d(c, hidden, 3, 2, 1), nn.LeakyReLU()]
            c = hidden
        self.convs = nn.Sequential(*layers)
        self.out_channels = out_channels
        self.linear = EqualLinear(c, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.linear(x.flatten(1))


class E4EEncoder(nn.Module):
    """e4e ``Encoder4Editing``: image (N,C,S,S) -> W+ offsets (N, n_styles, style_dim).

    The average latent is *not* added here (it is the basic encoder's normalisation step, done by
    the composition) so the same module serves e4e, HFGI and EGAIN.
    """

    def __init__(
        self,
        n_styles: int,
        style_dim: int = 512,
        input_size: int = 256,
        *,
        depth: int | None = 50,
        units: Sequence[int] | None = None,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int | None = None,
        input_nc: int = 3,
        se: bool = True,
        coarse_index: int = 3,
        middle_index: int = 7,
        head_channels: int | None = None,
    ):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"the e4e FPN needs 4 backbone stages, got widths {tuple(widths)}")
        stages = irse_stages(depth, widths) if units is None else custom_stages(units, widths)
        if input_size % 16 or input_size < 16:
            raise ValueError(f"e4e input size must be a multiple of 16 and >= 16, got {input_size}")
        self.n_styles = n_styles
        self.style_dim = style_dim
        self.input_size = input_size
        self.coarse_index = min(coarse_index, n_styles)
        self.middle_index = min(max(middle_index, self.coarse_index), n_styles)
        self.body = IRSEBody(stages, input_nc=input_nc, stem_channels=stem_channels or widths[0], se=se)
        self.taps = (self.body.stage_ends[1], self.body.stage_ends[2], self.body.stage_ends[3])
        c1_ch, c2_ch, c3_ch = widths[1], widths[2], widths[3]
        s3 = input_size // 16
        heads = []
        for i in range(n_styles):
            spatial = s3 if i < self.coarse_index else (2 * s3 if i < self.middle_index else 4 * s3)
            heads.append(Map2Style(c3_ch, style_dim, spatial, head_channels))
        self.heads = nn.ModuleList(heads)
        self.lateral_mid = nn.Conv2d(c2_ch, c3_ch, 1)
        self.lateral_fine = nn.Conv2d(c1_ch, c3_ch, 1)
        # Number of offsets in use: n_styles - 1 (all) at inference; grown by the training schedule.
        self.progressive_stage = n_styles - 1

    def set_progressive_stage(self, stage: int) -> None:
        self.progressive_stage = int(max(0, min(stage, self.n_styles - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (c1, c2, c3) = self.body(x, return_units=self.taps)
        w0 = self.heads[0](c3)
        rows = [w0]
        features, p2 = c3, None
        last = min(self.progressive_stage, self.n_styles - 1)
        for i in range(1, self.n_styles):
            if i > last:
                rows.append(w0)
                continue
            if i == self.coarse_index:
                p2 = _upsample_add(c3, self.lateral_mid(c2))
                features = p2
            elif i == self.middle_index:
                if p2 is None:  # coarse_index == middle_index
                    p2 = _upsample_add(c3, self.lateral_mid(c2))
                features = _upsample_add(p2, self.lateral_fine(c1))
            rows.append(w0 + self.heads[i](features))
        return torch.stack(rows, dim=1)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge as published: bilinear with ``align_corners=True`` to ``y``'s size, then add."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class LatentCodesDiscriminator(nn.Module):
    """e4e's latent discriminator D_w: 3 x (Linear + LeakyReLU 0.2) then Linear -> 1.

    Keys ``mlp.{0,2,4,6}`` as published (reference sec. 5.3).
    """

    def __init__(self, style_dim: int = 512, n_layers: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(style_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.mlp(w)

"""The E2Style stage encoder: a shallow IR-SE body and three efficient heads (Wei et al., seeds/004).

Why it is cheap: the IR-SE50 body stops before the 1/16 stage (the paper keeps "the stages before
the 1/16 downsample stage"), and each of the three heads is BatchNorm -> adaptive average pooling
-> one linear layer, instead of pSp/e4e's 18 stacks of strided convolutions.

Heads and the rows they predict (reference sec. 3.2, 11):

=================  ===================  =========================  ====================
head               tap                  pooling (code / paper)     W+ rows at 1024 px
=================  ===================  =========================  ====================
``output_layer_3``  end of stage 3 (1/8)  7x7 / 7x7                 0-8 (coarse, 9)
``output_layer_4``  end of stage 2 (1/4)  7x7 / 5x5                 9-13 (medium, 5)
``output_layer_5``  end of stage 1 (1/2)  7x7 / 3x3                 14-17 (fine, 4)
=================  ===================  =========================  ====================

The released code pools every head to 7x7 (its checkpoints' linear layers need it); the paper's
7/5/3 is offered as ``pool_sizes=(7, 5, 3)`` and is what gives the paper's 85 M parameters. For
other generator sizes the rows are split in the same 9:5:4 proportion (:func:`row_split`).
Module names follow the published layout (``output_layer_{3,4,5}.{0,3}``; the body's published
``input_layer.*``/``body.{i}.*`` live under ``body.``), see :mod:`egain.methods.e2style`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from egain.nn.irse import IRSEBody, custom_stages, irse_stages

#: the published pooling (every head 7x7) and the paper's (deep 7, medium 5, shallow 3)
POOL_CODE = (7, 7, 7)
POOL_PAPER = (7, 5, 3)


def row_split(n_latent: int) -> tuple[int, int, int]:
    """(coarse, medium, fine) row counts: 9/5/4 at 18 rows, the same proportion elsewhere.

    coarse = round(n/2), fine = max(1, round(4n/18)), medium = the rest (at least 1):
    16 rows -> 8/4/4, 14 -> 7/4/3, 10 -> 5/3/2, 8 -> 4/2/2, 6 -> 3/2/1.
    """
    if n_latent < 3:
        raise ValueError(f"E2Style needs at least 3 latent rows (one per head), got {n_latent}")
    coarse = max(1, int(round(n_latent / 2)))
    fine = max(1, int(round(4 * n_latent / 18)))
    medium = n_latent - coarse - fine
    if medium < 1:
        coarse -= 1 - medium
        medium = 1
    return coarse, medium, fine


class EfficientHead(nn.Sequential):
    """BatchNorm2d -> AdaptiveAvgPool2d(pool) -> Flatten -> Linear (keys ``0`` and ``3`` as published).

    The flatten is channel-first (the published ``.view`` of an NCHW tensor); ``Flatten`` reshapes the
    logical shape, so a channels_last input gives the same order.
    """

    def __init__(self, channels: int, pool: int, rows: int, style_dim: int):
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.AdaptiveAvgPool2d((pool, pool)),
            nn.Flatten(),
            nn.Linear(channels * pool * pool, rows * style_dim),
        )
        self.rows = rows
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(x.shape[0], self.rows, self.style_dim)


class E2StyleEncoder(nn.Module):
    """One E2Style stage: image (N, C, S, S) -> W+ (N, n_styles, style_dim).

    ``depth=50`` with ``widths=(64, 128, 256)`` is the published body (IR-SE50 units 0-20, i.e.
    3/4/14 units); ``units``/``widths`` give the small bodies of the synthfaces world. ``input_nc``
    is 3 for stage 1 and 6 for refinement stages (image and previous reconstruction). No average
    latent is added here: the method does that (stage 1 only).
    """

    def __init__(
        self,
        n_styles: int,
        style_dim: int = 512,
        *,
        depth: int | None = 50,
        units: Sequence[int] | None = None,
        widths: Sequence[int] = (64, 128, 256),
        stem_channels: int | None = None,
        input_nc: int = 3,
        se: bool = True,
        pool_sizes: Sequence[int] = POOL_CODE,
        rows: Sequence[int] | None = None,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(f"the E2Style body has 3 stages (down to 1/8), got widths {widths}")
        if units is None:
            stages = irse_stages(int(depth or 50), (*widths, widths[-1]))[:3]
        else:
            stages = custom_stages(units, widths)
        pools = tuple(int(p) for p in pool_sizes)
        if len(pools) != 3 or min(pools) < 1:
            raise ValueError(f"pool_sizes must be three positive sizes (deep, medium, shallow), got {pools}")
        self.n_styles, self.style_dim = n_styles, style_dim
        self.rows = tuple(int(r) for r in rows) if rows is not None else row_split(n_styles)
        if len(self.rows) != 3 or sum(self.rows) != n_styles or min(self.rows) < 1:
            raise ValueError(f"rows {self.rows} must be three positive counts adding up to {n_styles}")
        self.body = IRSEBody(stages, input_nc=input_nc, stem_channels=stem_channels or widths[0], se=se)
        self.taps = tuple(self.body.stage_ends[:3])
        coarse, medium, fine = self.rows
        self.output_layer_3 = EfficientHead(widths[2], pools[0], coarse, style_dim)
        self.output_layer_4 = EfficientHead(widths[1], pools[1], medium, style_dim)
        self.output_layer_5 = EfficientHead(widths[0], pools[2], fine, style_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (shallow, medium, deep) = self.body(x, return_units=self.taps)
        return torch.cat(
            [self.output_layer_3(deep), self.output_layer_4(medium), self.output_layer_5(shallow)], dim=1
        )

"""The pSp encoders (Richardson et al. 2021): ``GradualStyleEncoder`` and the ``IntoW`` variant.

``GradualStyleEncoder`` shares every module with e4e's encoder (IR-SE body, FPN laterals,
``map2style`` heads; reference sec. 5.2-5.3, identical keys), so it subclasses
:class:`~egain.encoders.e4e.E4EEncoder` and changes only the forward: pSp predicts every style row
on its own from the start (no ``w_0`` broadcast, no progressive stage). Styles ``0..coarse-1``
read c3 (the 1/16 map), ``coarse..middle-1`` the FPN level p2, the rest p1; the published split is
coarse 3, middle 7. With ``input_nc=6`` the same encoder is ReStyle's FPN variant.

``IntoWEncoder`` is pSp's ``BackboneEncoderUsingLastLayerIntoW`` (the ``learn_in_w`` setting):
body -> global average pool -> EqualLinear -> one W code, which the generator broadcasts to all
layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from egain.encoders.e4e import E4EEncoder, _upsample_add
from egain.nn.irse import IRSEBody, custom_stages, irse_stages
from egain.ops.equalized import EqualLinear


class GradualStyleEncoder(E4EEncoder):
    """pSp ``GradualStyleEncoder``: image (N, C, S, S) -> W+ offsets (N, n_styles, style_dim).

    Constructor as :class:`E4EEncoder`. ``progressive_stage`` exists (inherited) but is ignored:
    pSp trains every row at once.
    """

    def set_progressive_stage(self, stage: int) -> None:  # pSp has no progressive schedule
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (c1, c2, c3) = self.body(x, return_units=self.taps)
        rows = [self.heads[j](c3) for j in range(self.coarse_index)]
        if self.coarse_index < self.n_styles:
            p2 = _upsample_add(c3, self.lateral_mid(c2))
            rows += [self.heads[j](p2) for j in range(self.coarse_index, self.middle_index)]
            if self.middle_index < self.n_styles:
                p1 = _upsample_add(p2, self.lateral_fine(c1))
                rows += [self.heads[j](p1) for j in range(self.middle_index, self.n_styles)]
        return torch.stack(rows, dim=1)


class IntoWEncoder(nn.Module):
    """pSp ``BackboneEncoderUsingLastLayerIntoW``: image -> one W code offset (N, style_dim).

    Keys as published: ``body.input_layer.*`` / ``body.body.*`` (ours; published ``input_layer``,
    ``body``) and ``linear`` (EqualLinear, lr_mul 1).
    """

    def __init__(
        self,
        style_dim: int = 512,
        *,
        depth: int | None = 50,
        units: Sequence[int] | None = None,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int | None = None,
        input_nc: int = 3,
        se: bool = True,
    ):
        super().__init__()
        stages = irse_stages(depth, widths) if units is None else custom_stages(units, widths)
        self.body = IRSEBody(stages, input_nc=input_nc, stem_channels=stem_channels or widths[0], se=se)
        self.linear = EqualLinear(self.body.out_channels, style_dim)
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return self.linear(features.mean(dim=(2, 3)))

"""ReStyle's backbone encoders (Alaluf et al. 2021): ``BackboneEncoder`` / ``ProgressiveBackboneEncoder``.

An IR-SE body on a 6-channel input (the image and the current reconstruction, concatenated) and
one ``map2style`` head per style row, all reading the body's last map (1/16 of the input: 16x16 at
256 px; reference sec. 5.5). No feature pyramid: ReStyle spends its compute on iterations instead.

* ``progressive=False`` (``BackboneEncoder``, ReStyle-pSp): row j = head_j(features).
* ``progressive=True`` (``ProgressiveBackboneEncoder``, ReStyle-e4e): w_0 = head_0(features)
  broadcast to all rows, plus the offsets head_i(features) for i = 1..stage (e4e's schedule; all
  of them at inference).

The output is a residual: the ReStyle loop adds it to the previous code (or to the average latent
at step 0). The published FFHQ encode checkpoints use these IR-SE50 encoders; the ResNet34
variants (other domains) are not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from egain.encoders.e4e import Map2Style
from egain.nn.irse import IRSEBody, custom_stages, irse_stages


class BackboneStyleEncoder(nn.Module):
    """(N, input_nc, S, S) -> W+ residual (N, n_styles, style_dim); S a multiple of 16, S/16 a power of 2."""

    def __init__(
        self,
        n_styles: int,
        style_dim: int = 512,
        input_size: int = 256,
        *,
        progressive: bool = False,
        depth: int | None = 50,
        units: Sequence[int] | None = None,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int | None = None,
        input_nc: int = 6,
        se: bool = True,
        head_channels: int | None = None,
    ):
        super().__init__()
        if input_size % 16 or input_size < 16:
            raise ValueError(f"ReStyle input size must be a multiple of 16 and >= 16, got {input_size}")
        stages = irse_stages(depth, widths) if units is None else custom_stages(units, widths)
        self.body = IRSEBody(stages, input_nc=input_nc, stem_channels=stem_channels or widths[0], se=se)
        spatial = input_size // self.body.downsampling
        self.heads = nn.ModuleList(
            [Map2Style(self.body.out_channels, style_dim, spatial, head_channels) for _ in range(n_styles)]
        )
        self.n_styles = n_styles
        self.style_dim = style_dim
        self.progressive = progressive
        self.progressive_stage = n_styles - 1

    def set_progressive_stage(self, stage: int) -> None:
        self.progressive_stage = int(max(0, min(stage, self.n_styles - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        if not self.progressive:
            return torch.stack([head(features) for head in self.heads], dim=1)
        w0 = self.heads[0](features)
        rows = [w0]
        for i in range(1, self.n_styles):
            rows.append(w0 + self.heads[i](features) if i <= self.progressive_stage else w0)
        return torch.stack(rows, dim=1)

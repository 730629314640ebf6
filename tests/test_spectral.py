"""Period-2 spectral power (issue 13's checkerboard measure) on images whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from egain.errors import InputError
from egain.metrics.spectral import period2_mask, period2_power, period2_ratio
from egain.ops.wavelets import haar_iwt


def _checker(n: int, size: int, amp: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (amp * (-1.0) ** (x + y)).expand(n, 3, size, size).clone()


def test_checkerboard_scores_its_squared_amplitude_and_smooth_images_nothing():
    assert torch.allclose(period2_power(_checker(2, 16, 0.3)), torch.full((2,), 0.09), atol=1e-6)
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    smooth = torch.sin(2 * math.pi * x)[None, None].expand(1, 3, 32, 32) * 0.8
    assert period2_power(smooth).item() < 1e-4
    assert period2_power(torch.zeros(1, 3, 8, 8)).item() == 0.0
    # stripes one pixel wide (period 2 along y only) count too
    stripes = ((-1.0) ** torch.arange(16))[:, None].expand(16, 16)[None, None].repeat(1, 3, 1, 1) * 0.5
    assert abs(period2_power(stripes).item() - 0.25) < 1e-6


def test_ratio_and_relative_form():
    base = torch.rand(4, 3, 16, 16) * 0.2
    art = base + _checker(4, 16, 0.2)
    assert period2_ratio(art, base) > 5
    assert period2_ratio(base, base) == pytest.approx(1.0)
    rel = period2_power(_checker(1, 16, 0.5), relative=True)
    assert rel.item() == pytest.approx(1.0, abs=1e-5)  # all non-DC power is at period 2
    u8 = ((_checker(1, 8, 1.0) + 1) * 127.5).round().to(torch.uint8)
    assert period2_power(u8).item() == pytest.approx(1.0, abs=1e-3)


def test_mask_is_the_nyquist_row_and_column():
    m = period2_mask(8, 8)
    assert m.sum().item() == 15 and m[4].all() and m[:, 4].all() and not m[0, 0]


def test_a_smooth_hh_band_through_haar_synthesis_is_a_checkerboard():
    """Why SWAGAN shows the texture: its image is the inverse Haar transform of the last ToRGB's
    sub-bands, so a smooth (here constant) HH coefficient map becomes period-2 content directly."""
    bands = torch.zeros(1, 12, 8, 8)
    bands[:, 9:12] = 0.4  # HH of R, G, B
    img = haar_iwt(bands)
    assert period2_power(img).item() == pytest.approx(0.04, abs=1e-6)  # (0.4 / 2) ** 2


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(InputError):
        period2_power(torch.zeros(3, 8, 8))
    with pytest.raises(InputError):
        period2_power(torch.zeros(1, 3, 7, 8))
    with pytest.raises(InputError):
        period2_ratio(torch.rand(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))

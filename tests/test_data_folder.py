"""ImageFolderDataset: any image size/mode in, (3, S, S) in [-1, 1] out; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from egain.data.folder import ImageFolderDataset, uint8_to_float
from egain.errors import InputError


def _split_image(width: int, height: int) -> Image.Image:
    """Left half pure red, right half pure blue."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2, 0] = 255
    arr[:, width // 2 :, 2] = 255
    return Image.fromarray(arr)


def test_items_are_square_rgb_in_range_whatever_the_source(tmp_path):
    _split_image(64, 32).save(tmp_path / "a_wide.png")  # wide: crop keeps the centre columns
    Image.fromarray(np.full((40, 24), 200, dtype=np.uint8), mode="L").save(tmp_path / "b_gray.png")
    Image.fromarray(np.full((16, 16, 4), 100, dtype=np.uint8), mode="RGBA").save(tmp_path / "c_rgba.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path, 16)
    assert len(ds) == 3
    for i in range(3):
        x = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    wide = ds[0]
    # resized to 32x16 then cropped to columns 8..24: left 8 columns red, right 8 blue
    assert torch.allclose(wide[:, :, 0], torch.tensor([1.0, -1.0, -1.0]).view(3, 1), atol=0.02)
    assert torch.allclose(wide[:, :, -1], torch.tensor([-1.0, -1.0, 1.0]).view(3, 1), atol=0.02)
    gray = ds[1]
    assert torch.allclose(gray, torch.full_like(gray, 200 / 127.5 - 1), atol=0.02)


def test_exact_size_images_are_read_without_resampling(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    x = ImageFolderDataset(tmp_path, 16)[0]
    expected = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert torch.equal(x, expected)
    assert torch.equal(uint8_to_float(torch.from_numpy(arr).permute(2, 0, 1)), expected)


def test_preload_serves_the_same_items(tmp_path):
    for i in range(3):
        _split_image(20 + 4 * i, 30).save(tmp_path / f"{i}.png")
    lazy = ImageFolderDataset(tmp_path, 16)
    eager = ImageFolderDataset(tmp_path, 16, preload=True)
    assert eager.preloaded and not lazy.preloaded
    assert eager.preload().shape == (3, 3, 16, 16) and eager.preload().dtype == torch.uint8
    for i in range(3):
        assert torch.equal(lazy[i], eager[i])


def test_hflip_mirrors_some_items(tmp_path):
    _split_image(16, 16).save(tmp_path / "a.png")
    plain = ImageFolderDataset(tmp_path, 16)[0]
    ds = ImageFolderDataset(tmp_path, 16, hflip=True)
    draws = [ds[0] for _ in range(32)]
    n_flipped = sum(torch.equal(d, plain.flip(-1)) for d in draws)
    assert all(torch.equal(d, plain) or torch.equal(d, plain.flip(-1)) for d in draws)
    assert 0 < n_flipped < 32


def test_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="contains no images"):
        ImageFolderDataset(tmp_path, 16)


def test_unreadable_file_is_named(tmp_path):
    _split_image(16, 16).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"this is not a png")
    ds = ImageFolderDataset(tmp_path, 16)
    with pytest.raises(InputError, match=r"b\.png.*not a readable image") as err:
        ds[1]
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"b\.png"):
        ImageFolderDataset(tmp_path, 16, preload=True)

"""A folder of images as a training set: any sizes in, square RGB tensors in [-1, 1] out.

Images are resized so that their short side equals ``size`` and the centre square is cropped
(`egain.utils.images.resize_center_crop`), so a folder of mixed photos and renders works without a
preprocessing pass. For small datasets :meth:`ImageFolderDataset.preload` decodes everything once
into one uint8 tensor, which removes decoding (and DataLoader workers) from the training loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from egain.errors import InputError
from egain.utils.images import list_images, open_image, resize_center_crop


class ImageFolderDataset(Dataset):
    """Map-style dataset over the images of ``root``.

    Items are float tensors (3, size, size) in [-1, 1]. ``hflip=True`` mirrors each item with
    probability 1/2 (torch's global RNG; the GAN trainer instead mirrors whole batches with its own
    seeded RNG so runs are reproducible with worker processes). Unreadable files raise
    :class:`~egain.errors.InputError` naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int,
        *,
        hflip: bool = False,
        recursive: bool = False,
        preload: bool = False,
    ):
        if int(size) <= 0:
            raise InputError(f"image size must be a positive integer, got {size}")
        self.root = Path(root)
        self.size = int(size)
        self.hflip = hflip
        self.files: list[Path] = list_images(self.root, recursive=recursive)
        self._cache: torch.Tensor | None = None
        if preload:
            self.preload()

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 (3, size, size), resized and centre-cropped."""
        if self._cache is not None:
            return self._cache[index]
        path = self.files[index]
        im = open_image(path)
        if im.size != (self.size, self.size):
            try:
                im = resize_center_crop(im, self.size)
            except (OSError, ValueError) as exc:
                raise InputError(f"'{path}' could not be resized ({exc})") from None
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)

    def preload(self, progress_bar: bool = False) -> torch.Tensor:
        """Decode every image once into memory (N, 3, size, size) uint8 and serve items from it."""
        if self._cache is None:
            items = range(len(self))
            if progress_bar:
                from egain.runtime.logging import progress

                items = progress(items, total=len(self), desc="loading images", unit="img")
            cache = torch.empty(len(self), 3, self.size, self.size, dtype=torch.uint8)
            for i in items:
                cache[i] = self.load_uint8(i)
            self._cache = cache
        return self._cache

    @property
    def preloaded(self) -> bool:
        return self._cache is not None

    def __getitem__(self, index: int) -> torch.Tensor:
        x = uint8_to_float(self.load_uint8(index))
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (same mapping as ``egain.utils.images.pil_to_tensor``)."""
    return x.float().div_(127.5).sub_(1.0)

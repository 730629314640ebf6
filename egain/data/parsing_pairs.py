"""Training items that carry their parsing map: (4, S, S) = the RGB image in [-1, 1] + a class plane.

Translation from parsing maps (``egain train --corrupt parsing``, pSp's seg-to-face on synthfaces)
needs each training image *with* its exact per-pixel class map. The map rides as a fourth plane
(class indices of :data:`~egain.data.synthfaces.parsing.PARSING_CLASSES` as floats, exact up to
2^24) so the inversion trainer's data order, held-out split, flips and resume handle image and map
as one tensor; :class:`egain.applications.restoration.Corruption` splits the batch into the
one-hot encoder input and the clean target.

* :class:`ParsingFolderDataset`: a folder written by ``egain data synthfaces --parsing``
  (``X.png`` with its map ``X_parsing.png``); a missing map is one line naming it.
* :class:`ParsingPlanes`: the on-the-fly :class:`~egain.data.synthfaces.SynthFacesDataset` built
  with ``return_parsing=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from egain.data.folder import ImageFolderDataset, uint8_to_float
from egain.errors import InputError
from egain.utils.sidefiles import PARSING_SUFFIX

#: the command that writes maps beside images (named in errors)
WRITE_MAPS = "egain data synthfaces --parsing"


def parsing_path(image: str | os.PathLike) -> Path:
    """``DIR/X.png`` -> ``DIR/X_parsing.png`` (where ``egain data synthfaces --parsing`` puts the map)."""
    p = Path(image)
    return p.with_name(p.stem + PARSING_SUFFIX + ".png")


def read_parsing_map(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """A label PNG (palette or gray: pixel values are class indices) as uint8 (H, W).

    ``size``: short side scaled to it with nearest-neighbour sampling (labels are not blended) and
    the centre square cropped, the geometry of :func:`~egain.utils.images.resize_center_crop`.
    """
    path = Path(path)
    try:
        im = Image.open(path)
        im.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"parsing map '{path}' could not be read ({exc})") from None
    if im.mode not in ("P", "L"):
        raise InputError(
            f"'{path}' is a {im.mode} picture, not a label map (expected a palette or gray PNG of class "
            f"indices, as '{WRITE_MAPS}' writes)"
        )
    if size is not None and im.size != (size, size):
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.NEAREST)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())


def missing_maps_error(missing: list[Path], total: int, where: str) -> InputError:
    return InputError(
        f"{where} has no parsing map for {len(missing)} of {total} images (first: '{missing[0]}'); "
        f"write images with their maps with '{WRITE_MAPS}'"
    )


class ParsingFolderDataset(ImageFolderDataset):
    """Images of a folder with their maps: items (4, size, size), RGB in [-1, 1] + class plane.

    Every image needs ``X_parsing.png`` beside it (checked up front). ``preload`` decodes images
    and maps once.
    """

    def __init__(self, root: str | os.PathLike, size: int, *, preload: bool = False):
        super().__init__(root, size)
        self.maps = [parsing_path(f) for f in self.files]
        missing = [m for m in self.maps if not m.is_file()]
        if missing:
            raise missing_maps_error(missing, len(self.files), f"training data '{root}'")
        self._map_cache: torch.Tensor | None = None
        if preload:
            self.preload()

    def preload(self, progress_bar: bool = False) -> torch.Tensor:
        cache = super().preload(progress_bar)
        if self._map_cache is None:
            self._map_cache = torch.stack([read_parsing_map(m, self.size) for m in self.maps])
        return cache

    def load_map(self, index: int) -> torch.Tensor:
        if self._map_cache is not None:
            return self._map_cache[index]
        return read_parsing_map(self.maps[index], self.size)

    def __getitem__(self, index: int) -> torch.Tensor:
        x = uint8_to_float(self.load_uint8(index))
        return torch.cat([x, self.load_map(index).float().unsqueeze(0)])


class ParsingPlanes(Dataset):
    """A ``SynthFacesDataset(return_parsing=True)`` as (4, S, S) items (image + class plane)."""

    def __init__(self, dataset: Dataset):
        if not getattr(dataset, "return_parsing", False):
            raise InputError("ParsingPlanes needs a SynthFacesDataset built with return_parsing=True")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        return torch.cat([item[0], item[-1].float().unsqueeze(0)])


__all__ = [
    "ParsingFolderDataset",
    "ParsingPlanes",
    "missing_maps_error",
    "parsing_path",
    "read_parsing_map",
]

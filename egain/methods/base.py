"""What every inversion method answers: ``invert``, ``edit``, ``save``; and the image-input helper.

Images in, images out: (N, 3, H, W) float in [-1, 1], or file paths / PIL images, which
:func:`prepare_images` turns into such a batch at the method's input size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from egain.errors import InputError
from egain.utils.images import check_image_range, load_image, pil_to_tensor, resize_center_crop, to_rgb

ImageInput = torch.Tensor | Image.Image | str | os.PathLike | Sequence["ImageInput"]


@dataclass
class Inversion:
    """The result of ``method.invert``.

    ``latents``: the code the generator receives (N, n_latent, style_dim) -- for internal fusion the
    basic code w_b (edits act on it), for external fusion the fused code.
    ``reconstruction``: final images (N, 3, S, S) in [-1, 1] at the method's input size S.
    ``extras``: method-specific tensors, e.g. ``basic_latents`` (w_b), ``basic_reconstruction``
    (y0), ``delta`` (Delta0), ``deltas`` (one per pass), ``aligned_delta`` (after ADA),
    ``gate_maps`` / ``detail_maps`` ({layer: (N, 1, h, w)} channel means of 1+scale and |shift|).
    """

    latents: torch.Tensor
    reconstruction: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.reconstruction.shape[0])

    def to(self, device: torch.device | str) -> Inversion:
        return Inversion(self.latents.to(device), self.reconstruction.to(device), _move(self.extras, device))

    def select(self, index: slice | Sequence[int]) -> Inversion:
        """Sub-batch (e.g. one image) of an inversion, extras included."""
        return Inversion(self.latents[index], self.reconstruction[index], _select(self.extras, index))


def _move(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_move(v, device) for v in obj)
    return obj


def _select(obj: Any, index: slice | Sequence[int]) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[index]
    if isinstance(obj, dict):
        return {k: _select(v, index) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_select(v, index) for v in obj)
    return obj


def prepare_images(images: ImageInput, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Any image input -> (N, 3, size, size) float in [-1, 1] on ``device``.

    Files and PIL images are resized (short side, centre crop) to ``size``. Tensors of another size
    are resized with antialiased bilinear filtering and a warning, because a silent resize would
    hide a mismatch between the data and the model.
    """
    if isinstance(images, torch.Tensor):
        x = images
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(
                f"images must be (N, 3, H, W) or (3, H, W) in [-1, 1]; got shape {tuple(images.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"image tensors must be float in [-1, 1]; got dtype {x.dtype}")
        x = check_image_range(x.float())
        if tuple(x.shape[-2:]) != (size, size):
            if x.shape[-1] != x.shape[-2]:
                raise InputError(
                    f"images must be square; got {x.shape[-2]}x{x.shape[-1]} (expected {size}x{size})"
                )
            warnings.warn(
                f"images are {x.shape[-1]}x{x.shape[-2]}; resizing to the model's {size}x{size}", stacklevel=2
            )
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    else:
        items = _as_list(images)
        if not items:
            raise InputError("no images given")
        x = torch.stack([_one_image(item, size) for item in items])
    return x.to(device) if device is not None else x


def _as_list(images: Any) -> list:
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    raise InputError(f"cannot use {type(images).__name__} as images; pass tensors, PIL images or paths")


def _one_image(item: Any, size: int) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return prepare_images(item, size)[0]
    if isinstance(item, Image.Image):
        im = to_rgb(item)
        if im.size != (size, size):
            im = resize_center_crop(im, size)
        return pil_to_tensor(im)
    if isinstance(item, str | os.PathLike):
        return load_image(Path(item), size)
    raise InputError(f"cannot use {type(item).__name__} as an image; pass tensors, PIL images or paths")


class InversionMethod(nn.Module):
    """Base class of every method in the registry (encoder or optimisation based)."""

    name: str = "?"
    input_size: int

    def invert(self, images: ImageInput) -> Inversion:  # pragma: no cover - interface
        raise NotImplementedError

    def edit(self, inversion: Inversion, direction: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not implement edit()")  # pragma: no cover

    def save(self, path: str | os.PathLike) -> Path:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def parameter_count(self, include_generator: bool = True) -> int:
        """Number of parameters used at inference (the paper tables count the generator too)."""
        total = 0
        for name, p in self.named_parameters():
            if not include_generator and name.startswith("generator."):
                continue
            total += p.numel()
        return total

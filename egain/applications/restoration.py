"""Restoration and translation encoders (seeds/004 Alg. 5 and 6): corrupt the input, keep the target.

An encoder trained on (corrupted input, clean target) pairs learns to find the code whose image
is the *clean* picture: ``I_r = G(E_r(I_i))``. The corruptions here are what ``egain train
--corrupt MODE`` applies to each training batch; :func:`evaluate_restoration` scores a model on
corrupted held-out images against their clean ground truth (synthfaces renders it).

Modes (all keep 3 channels so every encoder works unchanged; see ``docs/applications.md``):

* ``colorize``: ITU-R BT.601 luma replicated to 3 channels (E2Style converts with cv2 BGR2GRAY and
  replicates the same way);
* ``inpaint``: E2Style's black triangle with random vertices (x in [35, 220], 35), (x' in [35, 70],
  220), (x' + 150, 220), scaled from 256 px to the image size, set to black (pixel value 0);
* ``superres``: downsample by a random factor from ``(1, 2, 4, 8, 16)`` (pSp's augmentation;
  factors larger than size/4 are dropped) with area averaging, then bilinear back to full size;
  ``superres:4`` (or ``superres:2,4``) fixes the factors;
* ``sketch``: an edge sketch (Sobel magnitude of the luma, normalised per image, dark lines on
  white), the synthfaces stand-in for pSp's pencil-sketch CelebA-HQ;
* ``parsing`` (alias ``segmentation``): translation from the synthfaces parsing map, pSp's
  seg-to-face. The input is not computed from the image but read from the exact per-pixel map
  the renderer writes (``egain data synthfaces --parsing``, ``SynthFacesDataset(return_parsing=True)``):
  one-hot, one {0, 1} channel per class of
  :data:`~egain.data.synthfaces.parsing.PARSING_CLASSES` (22), as pSp's ``ToOneHot`` feeds its
  ``input_nc`` = label count encoder. The encoder's first layer takes 22 channels
  (``InversionMethod.input_channels_config``: e4e, pSp, E2Style).

Training batches of the parsing mode carry the map as a fourth plane beside the RGB image
(:func:`pack_parsing`), so the trainer's data order, flips and resume treat image and map as one
tensor; :class:`Corruption` splits such a batch into (encoder input, clean target) and mirrors
it (a flip swaps the left/right classes, which name the image's left and right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from egain.data.synthfaces.parsing import CLASS_INDEX, PARSING_CLASSES, PARSING_PALETTE
from egain.errors import InputError

CORRUPTIONS = ("colorize", "inpaint", "superres", "sketch", "parsing")
#: other names accepted for a mode (``--corrupt segmentation`` is ``parsing``)
ALIASES = {"segmentation": "parsing"}
SUPERRES_FACTORS = (1, 2, 4, 8, 16)
_LUMA = (0.299, 0.587, 0.114)
#: the parsing mode's input channels: one per synthfaces parsing class
N_PARSING_CLASSES = len(PARSING_CLASSES)


def parse_corruption(spec: str) -> tuple[str, tuple[int, ...]]:
    """``"superres:2,4"`` -> ("superres", (2, 4)); other modes take no argument; aliases resolved."""
    mode, _, arg = spec.partition(":")
    mode = ALIASES.get(mode, mode)
    if mode not in CORRUPTIONS:
        raise InputError(
            f"unknown corruption {mode!r}; choose one of {', '.join(CORRUPTIONS)} "
            f"(aliases: {', '.join(f'{a}={m}' for a, m in ALIASES.items())})"
        )
    factors: tuple[int, ...] = ()
    if arg:
        if mode != "superres":
            raise InputError(f"--corrupt {mode} takes no argument (got {spec!r})")
        try:
            factors = tuple(int(f) for f in arg.split(","))
        except ValueError:
            raise InputError(f"superres factors must be integers, e.g. superres:2,4 (got {arg!r})") from None
        if any(f < 1 or f & (f - 1) for f in factors):
            raise InputError(f"superres factors must be powers of two >= 1 (got {arg!r})")
    return mode, factors


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels (the colourisation input)."""
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def inpaint_masks(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) masks, 1 inside E2Style's random triangle (coordinates from 256 px)."""
    u = torch.rand(n, 2, generator=generator)
    a = 35 + u[:, 0] * (220 - 35)  # top vertex x
    b = 35 + u[:, 1] * (70 - 35)  # bottom-left vertex x; bottom-right is b + 150
    s = size / 256.0
    tri = (
        torch.stack(
            [
                torch.stack([a, torch.full_like(a, 35.0)], -1),
                torch.stack([b, torch.full_like(b, 220.0)], -1),
                torch.stack([b + 150, torch.full_like(b, 220.0)], -1),
            ],
            1,
        )
        * s
    )  # (n, 3, 2) as (x, y)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    p = torch.stack([xx, yy], -1).view(1, size, size, 2)

    def side(p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
        p0, p1 = p0.view(n, 1, 1, 2), p1.view(n, 1, 1, 2)
        return (p1[..., 0] - p0[..., 0]) * (p[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (
            p[..., 0] - p0[..., 0]
        )

    d0, d1, d2 = side(tri[:, 0], tri[:, 1]), side(tri[:, 1], tri[:, 2]), side(tri[:, 2], tri[:, 0])
    inside = ((d0 >= 0) & (d1 >= 0) & (d2 >= 0)) | ((d0 <= 0) & (d1 <= 0) & (d2 <= 0))
    return inside.unsqueeze(1).float()


def inpaint(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The image with a random triangle set to black (-1 in [-1, 1])."""
    m = inpaint_masks(x.shape[0], x.shape[-1], generator).to(x.device, x.dtype)
    return x * (1 - m) - m


def downsample(
    x: torch.Tensor, factors: Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per image: area-average by a random factor of ``factors``, then bilinear back to full size."""
    size = x.shape[-1]
    usable = [f for f in factors if size // f >= 4] or [1]
    pick = torch.randint(len(usable), (x.shape[0],), generator=generator)
    out = x.clone()
    for i, f in enumerate(usable):
        idx = (pick == i).nonzero().flatten().to(x.device)
        if f == 1 or idx.numel() == 0:
            continue
        low = F.avg_pool2d(x[idx], f)
        out[idx] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return out


def sketch(x: torch.Tensor) -> torch.Tensor:
    """An edge sketch: dark Sobel edges of the luma on white, normalised per image, 3 channels."""
    g = grayscale(x)[:, :1]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device, dtype=x.dtype)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    grad = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    mag = grad.pow(2).sum(1, keepdim=True).sqrt()
    mag = mag / mag.flatten(1).quantile(0.98, dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (1 - 2 * mag.clamp(0, 1)).expand(-1, 3, -1, -1).contiguous()


def corrupt(x: torch.Tensor, spec: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The corrupted input of a clean batch ``x`` (N, 3, H, W) in [-1, 1]; ``x`` stays the target.

    Randomness (inpainting triangles, super-resolution factors) comes from ``generator``, or from
    torch's global RNG (which the trainer checkpoints, so resumed runs draw the same corruptions).
    """
    mode, factors = parse_corruption(spec)
    if mode == "parsing":
        raise InputError(
            "the parsing input comes from the label maps, not from the image: use parsing_input(maps) "
            "or Corruption('parsing').split(pack_parsing(images, maps))"
        )
    with torch.no_grad():
        if mode == "colorize":
            return grayscale(x)
        if mode == "inpaint":
            return inpaint(x, generator)
        if mode == "superres":
            return downsample(x, factors or SUPERRES_FACTORS, generator)
        return sketch(x)


# ------------------------------------------------------------------------------------------------
# parsing maps as the input (translation, pSp's seg-to-face)


def parsing_input(maps: torch.Tensor, n_classes: int = N_PARSING_CLASSES) -> torch.Tensor:
    """Class maps (N, H, W) (or (N, 1, H, W)), integer or integral float -> one-hot (N, C, H, W) in {0, 1}."""
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise InputError(f"parsing maps must be (N, H, W) class indices; got shape {tuple(maps.shape)}")
    labels = maps.round().long() if maps.is_floating_point() else maps.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise InputError(
            f"parsing maps hold class {int(labels.max())} (or {int(labels.min())}); the synthfaces classes "
            f"are 0..{n_classes - 1}"
        )
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def _side_swap() -> torch.Tensor:
    lut = torch.arange(N_PARSING_CLASSES)
    for name in PARSING_CLASSES:
        if name.startswith("left_"):
            a, b = CLASS_INDEX[name], CLASS_INDEX["right_" + name[len("left_") :]]
            lut[a], lut[b] = b, a
    return lut


#: class index -> its mirror image's class (left_eye <-> right_eye, ...; the rest unchanged)
MIRROR_CLASSES = _side_swap()


def mirror_parsing(maps: torch.Tensor) -> torch.Tensor:
    """The class map of the horizontally flipped image: flipped, left and right classes swapped."""
    lut = MIRROR_CLASSES.to(maps.device)
    return lut[maps.flip(-1).long()].to(maps.dtype)


def pack_parsing(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images and (N, H, W) maps -> (N, 4, H, W): the class index as a fourth plane."""
    if maps.ndim == images.ndim:
        maps = maps[..., 0, :, :]
    if maps.shape[-2:] != images.shape[-2:]:
        raise InputError(f"parsing maps are {tuple(maps.shape[-2:])}, images {tuple(images.shape[-2:])}")
    return torch.cat([images, maps.to(images.dtype).unsqueeze(-3)], dim=-3)


def parsing_picture(inputs: torch.Tensor) -> torch.Tensor:
    """One-hot inputs (N, C, H, W) -> their maps in :data:`PARSING_PALETTE` colours, (N, 3, H, W) in [-1, 1]."""
    palette = torch.from_numpy(PARSING_PALETTE.astype("float32")).to(inputs.device) / 127.5 - 1
    return palette[inputs.argmax(1)].permute(0, 3, 1, 2).contiguous()


class Corruption:
    """One ``--corrupt`` mode as the trainer uses it: maps needed, input channels, split, mirror, picture."""

    def __init__(self, spec: str):
        self.mode, self.factors = parse_corruption(spec)
        self.spec = spec

    @property
    def needs_maps(self) -> bool:
        """Whether the training data must carry parsing maps (:func:`pack_parsing` batches)."""
        return self.mode == "parsing"

    @property
    def input_channels(self) -> int:
        return N_PARSING_CLASSES if self.mode == "parsing" else 3

    def split(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input, clean target) of a batch: images, or images + map plane for ``parsing``."""
        if self.mode == "parsing":
            if x.shape[1] != 4:
                raise InputError(
                    "--corrupt parsing needs batches with their parsing maps (training data with maps)"
                )
            return parsing_input(x[:, 3]), x[:, :3]
        return corrupt(x, self.spec, generator), x

    def mirror(self, x: torch.Tensor) -> torch.Tensor:
        """The horizontally flipped batch (with the map's left/right classes swapped)."""
        if self.mode == "parsing" and x.shape[1] == 4:
            return torch.cat([x[:, :3].flip(-1), mirror_parsing(x[:, 3:])], 1)
        return x.flip(-1)

    def picture(self, inputs: torch.Tensor) -> torch.Tensor:
        """The encoder input as a 3-channel picture (grids): parsing maps in palette colours."""
        return parsing_picture(inputs) if self.mode == "parsing" else inputs


# ------------------------------------------------------------------------------------------------
# evaluation against the clean ground truth


@dataclass
class RestorationReport:
    """Mean scores of restored images (and of the corrupted input itself) against the clean truth."""

    mode: str
    n: int
    restored: dict[str, float]
    corrupted: dict[str, float]
    per_image: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "n": self.n, "restored": self.restored, "corrupted_input": self.corrupted}


@torch.no_grad()
def parsing_consistency(parser: Any, images: torch.Tensor, maps: torch.Tensor, batch: int = 64) -> float:
    """mIoU of ``parser``'s segmentation of ``images`` (N, 3, H, W in [-1, 1]) against the synthfaces
    class maps ``maps`` (N, H, W), in the parser's classes (over the classes present in the maps)."""
    from egain.faces.parsing import confusion_matrix, iou_from_confusion, load_parser, target_table

    net = load_parser(parser, device="cpu")
    table = torch.from_numpy(target_table(net.class_names))
    conf = torch.zeros(net.num_classes, net.num_classes, dtype=torch.int64)
    for i in range(0, images.shape[0], batch):
        x = images[i : i + batch].float()
        pred = net(x).argmax(dim=1).cpu()
        target = table[maps[i : i + batch].long().cpu()]
        if pred.shape[-2:] != target.shape[-2:]:
            pred = torch.nn.functional.interpolate(
                pred[:, None].float(), size=target.shape[-2:], mode="nearest"
            )[:, 0]
        conf += confusion_matrix(pred, target, net.num_classes)
    return float(iou_from_confusion(conf, net.class_names)["miou"])


@torch.no_grad()
def evaluate_restoration(
    method: Any,
    clean: torch.Tensor,
    spec: str,
    *,
    maps: torch.Tensor | None = None,
    seed: int = 0,
    batch: int = 16,
    metrics: Sequence[str] = ("psnr", "ssim", "mae"),
    embedder: Any = None,
    parser: Any = None,
) -> tuple[RestorationReport, dict[str, torch.Tensor]]:
    """Corrupt ``clean`` (seeded), restore with ``method.invert`` and score against ``clean``.

    ``parsing`` takes its input from ``maps`` ((N, H, W) class indices of the clean images).
    ``embedder`` (anything :func:`egain.metrics.identity.resolve_embedder` accepts) adds ``id``,
    the face-embedding cosine of restored and clean image. ``parser`` (a :func:`egain.faces.parsing.load_parser`
    spec, parsing mode only) adds ``miou``: how well the translated faces keep the layout of their
    maps, the mIoU of the parser's segmentation of the restored images against the input maps, and
    ``miou_clean``, the parser's mIoU on the clean images (its ceiling). Returns the report and the image rows
    ``{"clean", "input", "restored"}`` for a grid (``input`` as a picture: parsing maps in palette
    colours). The corrupted input is scored too, where it is an image: a restoration model is
    useful where it beats its own input.
    """
    from egain.metrics import pixel_metrics

    mode = Corruption(spec)
    g = torch.Generator().manual_seed(seed)
    clean = clean.float().cpu()
    if mode.needs_maps:
        if maps is None:
            raise InputError("--corrupt parsing is scored on images with their parsing maps; none given")
        inputs, _ = mode.split(pack_parsing(clean, maps.cpu()), g)
    else:
        inputs, _ = mode.split(clean, g)
    outs = []
    for i in range(0, clean.shape[0], batch):
        outs.append(method.invert(inputs[i : i + batch].to(method.device)).reconstruction.float().cpu())
    restored = torch.cat(outs).clamp(-1, 1)
    rs = pixel_metrics(clean, restored, metrics=tuple(metrics))
    cs = {} if mode.needs_maps else pixel_metrics(clean, inputs.clamp(-1, 1), metrics=tuple(metrics))
    if embedder is not None:
        from egain.metrics.identity import identity_similarity, resolve_embedder

        backend = resolve_embedder(embedder)
        if not backend.available:
            raise InputError(f"the ID score needs a face embedder: {backend.reason}")
        rs["id"] = identity_similarity(backend.embedder, clean, restored)  # on the CPU, like the images
        if not mode.needs_maps:
            cs["id"] = identity_similarity(backend.embedder, clean, inputs.clamp(-1, 1))
    report = RestorationReport(
        mode=spec,
        n=int(clean.shape[0]),
        restored={k: float(v.float().mean()) for k, v in rs.items()},
        corrupted={k: float(v.float().mean()) for k, v in cs.items()},
        per_image={k: [float(a) for a in v] for k, v in rs.items()},
    )
    if parser is not None and mode.needs_maps:  # a set-level score (one confusion matrix), not per image
        report.restored["miou"] = parsing_consistency(parser, restored, maps)
        report.restored["miou_clean"] = parsing_consistency(parser, clean, maps)  # the parser's ceiling
    return report, {"clean": clean, "input": mode.picture(inputs), "restored": restored}


__all__ = [
    "ALIASES",
    "CORRUPTIONS",
    "MIRROR_CLASSES",
    "N_PARSING_CLASSES",
    "Corruption",
    "SUPERRES_FACTORS",
    "RestorationReport",
    "corrupt",
    "downsample",
    "evaluate_restoration",
    "grayscale",
    "inpaint",
    "inpaint_masks",
    "mirror_parsing",
    "pack_parsing",
    "parse_corruption",
    "parsing_input",
    "parsing_picture",
    "sketch",
]

"""Face-parsing networks: per-pixel class logits, class maps and multi-layer features.

Face parsing serves two methods: E2Style's multi-layer parsing loss (seeds/004 Eq. 5: the cosine
distance of five feature levels of a frozen parsing network) and SAM's segment refinement (a
parsing map splits the face into segments, each given its own latent space). Both only need a
frozen network with

* ``features(images) -> list[Tensor]`` -- five feature levels (as :meth:`FaceEmbedder.features`);
* ``forward(images)`` -- class logits (N, C, H, W) at the input's resolution;
* ``parse(images) -> LongTensor (N, H, W)`` -- the class map;
* ``class_names`` -- the class of each logit channel.

Images are float (N, 3, H, W) in [-1, 1] of any size; each network resizes to the resolution it
was trained at and applies its own input normalisation, so callers never care which one they hold.

Networks (all :class:`FaceParser`):

* :class:`ParsingNet` -- our UNet (four conv blocks with max-pooling, a centre block, a transposed-
  conv decoder with skips), trained on synthfaces' exact parsing maps (``egain faces parsing
  train``). Its features are the four pooled encoder maps and the centre block, the levels E2Style
  takes from its UNet. Bundled (once trained) as ``faces-parsing-64``: spec ``synthfaces-parsing``.
* E2Style's published parsing UNet (``pretrained_models/parsing.pth``, reference sec. 3.4) is the
  same UNet family at 256 px with widths 16/32/64/128/256, conv biases and the 19 CelebAMask-HQ
  classes: :func:`load_e2style_unet` maps its keys onto a :class:`ParsingNet`.
* :class:`BiSeNet` -- a re-implementation of the forward of zllrunning's face-parsing.PyTorch
  BiSeNet (ResNet-18 context path, attention refinement, feature fusion; ``79999_iter.pth``, used
  by SAM), loaded by :func:`load_bisenet` with a key map, strictly.

:func:`load_parser` is the one entry point (``synthfaces-parsing``, ``zoo:NAME``, ``bisenet:PATH``,
``e2style-unet:PATH``, a ``parser.pt`` or its run folder).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egain.data.synthfaces.parsing import CELEBAMASK_CLASSES, PARSING_CLASSES, TO_CELEBAMASK
from egain.errors import CheckpointError, InputError
from egain.faces.exports import cpu_state, export_meta, file_in_run, load_export
from egain.runtime.checkpoint import load_checkpoint

PARSER_FORMAT = "face-parser"
#: zoo name the integrator bundles the trained synthfaces parser under (spec ``synthfaces-parsing``)
BUNDLED_NAME = "faces-parsing-64"
BUNDLED_SPEC = "synthfaces-parsing"
TRAIN_HINT = "egain faces parsing train --out RUN"
BISENET_URL = "https://github.com/zllrunning/face-parsing.PyTorch (README: 79999_iter.pth)"
E2STYLE_URL = "https://github.com/wty-ustc/e2style (pretrained_models/parsing.pth)"

#: CelebAMask-HQ classes that SAM fuses into one "face" segment (reference sec. 4.3); ``eye_g``
#: (6), ``ear_r`` (9), neckless (15), cloth, hair and hat stay segments of their own.
SAM_FACE_CLASSES: tuple[str, ...] = tuple(
    CELEBAMASK_CLASSES[i] for i in (1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14)
)
#: The same region in synthfaces classes (a beard is on the face; CelebAMask-HQ calls it skin).
SYNTHFACES_FACE_CLASSES: tuple[str, ...] = (
    "skin",
    "neck",
    "left_brow",
    "right_brow",
    "left_eye",
    "right_eye",
    "nose",
    "upper_lip",
    "lower_lip",
    "mouth",
    "left_ear",
    "right_ear",
    "beard",
)

_MIRROR_PAIRS = {
    PARSING_CLASSES: (("left_brow", "right_brow"), ("left_eye", "right_eye"), ("left_ear", "right_ear")),
    CELEBAMASK_CLASSES: (("l_brow", "r_brow"), ("l_eye", "r_eye"), ("l_ear", "r_ear")),
}


def mirror_table(class_names: Sequence[str]) -> torch.Tensor:
    """Class permutation of a horizontal flip (left <-> right classes swap; others stay)."""
    names = tuple(class_names)
    table = list(range(len(names)))
    for a, b in _MIRROR_PAIRS.get(names, ()):
        ia, ib = names.index(a), names.index(b)
        table[ia], table[ib] = ib, ia
    return torch.tensor(table, dtype=torch.long)


def target_table(parser_classes: Sequence[str]) -> np.ndarray:
    """Lookup synthfaces class -> the parser's class, for scoring a parser on synthfaces maps.

    Identity for a parser trained on synthfaces classes; :data:`TO_CELEBAMASK` for a CelebAMask-HQ
    (19-class) parser such as BiSeNet or E2Style's UNet.
    """
    names = tuple(parser_classes)
    if names == PARSING_CLASSES:
        return np.arange(len(PARSING_CLASSES), dtype=np.int64)
    if names == CELEBAMASK_CLASSES:
        return TO_CELEBAMASK.astype(np.int64)
    raise InputError(
        f"cannot compare a parser with classes {list(names)[:4]}... to synthfaces maps "
        "(known: the synthfaces classes and the 19 CelebAMask-HQ classes)"
    )


def region_mask(labels: torch.Tensor, class_names: Sequence[str], region: Sequence[str]) -> torch.Tensor:
    """Boolean mask of the pixels of ``labels`` (class indices) whose class is in ``region``.

    With :data:`SAM_FACE_CLASSES` (CelebAMask names) or :data:`SYNTHFACES_FACE_CLASSES` this is
    SAM's fused face segment.
    """
    names = list(class_names)
    wanted = [names.index(c) for c in region if c in names]
    if not wanted:
        raise InputError(f"none of {list(region)} is a class of this parser ({names})")
    return torch.isin(labels, torch.tensor(wanted, device=labels.device))


# --------------------------------------------------------------------------------------------------
# the common interface


class FaceParser(nn.Module):
    """Base of every parsing network: input handling, logits at the input size, maps, features.

    Subclasses implement :meth:`run` on an already prepared batch (net size, net normalisation).
    ``mean``/``std`` describe the input normalisation applied to images in [0, 1]; the default
    (0.5, 0.5) keeps images in [-1, 1] as they are.
    """

    class_names: tuple[str, ...] = ()
    input_size: int = 64

    def __init__(self, input_size: int, class_names: Sequence[str], mean=(0.5,) * 3, std=(0.5,) * 3):
        super().__init__()
        self.input_size = int(input_size)
        self.class_names = tuple(class_names)
        self.meta: dict = {}
        self.name = type(self).__name__
        self.register_buffer(
            "_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images of any size -> the network's input (resized, normalised), differentiably."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"face parser expects (N, 3, H, W) images, got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.input_size, self.input_size):
            shrink = x.shape[-1] > self.input_size
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            )
        return ((x + 1) * 0.5 - self._mean) / self._std

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(feature levels, logits at the network size) of a prepared batch."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) class logits at the resolution of ``images``."""
        logits = self.run(self.prepare(images))[1]
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The network's five feature levels (for E2Style's multi-layer parsing loss)."""
        return self.run(self.prepare(images))[0]

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W) LongTensor: the most likely class of each pixel of ``images``."""
        return self(images).argmax(dim=1)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, classes={self.num_classes}"


# --------------------------------------------------------------------------------------------------
# our UNet (also the layout of E2Style's parsing net)


@dataclass
class ParsingNetConfig:
    """Everything needed to rebuild a :class:`ParsingNet` (stored in ``parser.pt``).

    ``widths``: channels of the four encoder blocks and the centre block (five levels); ``size`` must
    be divisible by 16 (four poolings). ``conv_bias``: biases on the 3x3 convolutions (E2Style's net
    has them; before BatchNorm they are redundant, so ours does not). ``normalise``: ``"none"``
    takes [-1, 1] images as they are (ours and E2Style's), ``"imagenet"`` the ImageNet mean/std.
    The default (0.95 M parameters, 3.8 MB) costs about 0.18 GMAC per 64 px image.
    """

    size: int = 64
    widths: Sequence[int] = (16, 32, 64, 96, 128)
    classes: Sequence[str] = PARSING_CLASSES
    conv_bias: bool = False
    normalise: str = "none"

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.classes = tuple(self.classes)
        if len(self.widths) != 5 or any(w < 1 for w in self.widths):
            raise InputError(f"parsing net widths must be five positive numbers, got {list(self.widths)}")
        if self.size < 16 or self.size % 16:
            raise InputError(f"parsing net size {self.size} must be a multiple of 16 (four poolings)")
        if len(self.classes) < 2:
            raise InputError("a parsing net needs at least two classes")
        if self.normalise not in ("none", "imagenet"):
            raise InputError(f"normalise must be 'none' or 'imagenet', got {self.normalise!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["classes"] = list(self.widths), list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ParsingNetConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _conv_bn_relu(cin: int, cout: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _Block(nn.Module):
    """Two 3x3 conv + BN + ReLU at one resolution."""

    def __init__(self, cin: int, cout: int, bias: bool):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, cout, bias)
        self.conv2 = _conv_bn_relu(cout, cout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class _Up(nn.Module):
    """Decoder step: 2x transposed conv of the deeper map, concatenated after the skip, a block."""

    def __init__(self, cin: int, cout: int, bias: bool):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = _Block(2 * cout, cout, bias)

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


class ParsingNet(FaceParser):
    """UNet face parser: ``down`` blocks at 1, 1/2, 1/4, 1/8 (each followed by 2x2 max-pooling),
    a ``center`` block at 1/16, ``up`` steps back to full resolution, a 1x1 ``head``.

    Features (five levels): the four pooled encoder maps and the centre block's output -- the
    levels E2Style's multi-layer parsing loss compares; the decoder is only needed for the map.
    Trainable as it is (``train()``/``eval()`` as usual); :func:`load_parser` returns it frozen.
    """

    def __init__(self, config: ParsingNetConfig | None = None):
        config = config or ParsingNetConfig()
        mean, std = _IMAGENET if config.normalise == "imagenet" else ((0.5,) * 3, (0.5,) * 3)
        super().__init__(config.size, config.classes, mean, std)
        self.config = config
        w, bias = config.widths, config.conv_bias
        self.down = nn.ModuleList(
            _Block(cin, cout, bias) for cin, cout in zip((3, *w[:3]), w[:4], strict=True)
        )
        self.center = _Block(w[3], w[4], bias)
        self.up = nn.ModuleList(_Up(w[i + 1], w[i], bias) for i in range(4))
        self.head = nn.Conv2d(w[0], len(config.classes), 1)

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips, feats = [], []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
            feats.append(x)
        x = self.center(x)
        feats.append(x)
        for i in reversed(range(4)):
            x = self.up[i](skips[i], x)
        return feats, self.head(x)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder-only: the five levels without running the decoder."""
        x = self.prepare(images)
        feats = []
        for block in self.down:
            x = F.max_pool2d(block(x), 2)
            feats.append(x)
        feats.append(self.center(x))
        return feats

    def extra_repr(self) -> str:
        return f"size={self.config.size}, widths={list(self.config.widths)}, classes={self.num_classes}"


def parser_checkpoint(net: ParsingNet, scores: Mapping | None = None, extra: Mapping | None = None) -> dict:
    """The ``parser.pt`` dict (read by :func:`load_parser`)."""
    return {
        "egain_format": PARSER_FORMAT,
        "config": net.config.to_dict(),
        "state_dict": cpu_state(net),
        "scores": dict(scores or {}),
        **dict(extra or {}),
    }


def save_parser(net: ParsingNet, path: str | os.PathLike, **kw) -> Path:
    """Write ``parser.pt`` atomically."""
    from egain.runtime.checkpoint import atomic_torch_save

    return atomic_torch_save(parser_checkpoint(net, **kw), path)


def load_egain_parser(path: str | os.PathLike) -> ParsingNet:
    """A :class:`ParsingNet` from our ``parser.pt`` (safe loading; strict)."""
    net, ckpt = load_export(
        path,
        fmt=PARSER_FORMAT,
        what="face parser",
        artefact="parser.pt",
        build=lambda config: ParsingNet(ParsingNetConfig.from_dict(config)),
    )
    net.meta = export_meta(ckpt)
    return net


# --------------------------------------------------------------------------------------------------
# published layouts


def _state_dict_of(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A plain state dict from a published file (also under 'state_dict'/'model'; 'module.' stripped)."""
    obj = load_checkpoint(path, what=what)
    for key in ("state_dict", "model", "net"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{what} '{path}' holds no tensors")
    return state


def _load_mapped(
    module: nn.Module, published: Mapping[str, torch.Tensor], rename, where: str, url: str
) -> None:
    """Load ``published`` (renamed by ``rename``) into ``module`` strictly.

    BatchNorm's ``num_batches_tracked`` counters are the one tolerance: files saved by old PyTorch
    lack them and they do not enter the forward.
    """
    ours = module.state_dict()
    state: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in published.items():
        new = rename(key)
        if new not in ours:
            unexpected.append(key)
            continue
        if tuple(ours[new].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: '{key}' has shape {list(value.shape)}, the network expects {list(ours[new].shape)} "
                f"(published at {url})"
            )
        state[new] = value
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        raise CheckpointError(
            f"{where} does not have the published layout (published at {url}): "
            f"unexpected {unexpected[:4]}, missing {missing[:4]}"
        )
    for key in ours:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = ours[key]
    module.load_state_dict(state, strict=True)


#: E2Style's UNet (``criteria/parsing_loss/unet.py``: feature_scale 4, 19 classes, deconv) as ours
E2STYLE_UNET = ParsingNetConfig(
    size=256, widths=(16, 32, 64, 128, 256), classes=CELEBAMASK_CLASSES, conv_bias=True, normalise="none"
)


def _e2style_key(key: str) -> str:
    """``conv{i}.`` -> ``down.{i-1}.``, ``up_concat{i}.`` -> ``up.{i-1}.``, ``final.`` -> ``head.``."""
    m = re.match(r"conv([1-4])\.(.*)", key)
    if m:
        return f"down.{int(m.group(1)) - 1}.{m.group(2)}"
    m = re.match(r"up_concat([1-4])\.(.*)", key)
    if m:
        return f"up.{int(m.group(1)) - 1}.{m.group(2)}"
    if key.startswith("final."):
        return "head." + key[len("final.") :]
    return key


def load_e2style_unet(path: str | os.PathLike, size: int = 256) -> ParsingNet:
    """E2Style's face-parsing UNet (``parsing.pth``) as a :class:`ParsingNet`, strictly.

    The published loss feeds 256 px images in [-1, 1] as they are (reference sec. 3.4); images
    of another size are resized to ``size``.
    """
    where = f"E2Style parsing UNet '{path}'"
    net = ParsingNet(ParsingNetConfig(**{**E2STYLE_UNET.to_dict(), "size": size}))
    _load_mapped(net, _state_dict_of(path, "E2Style parsing UNet"), _e2style_key, where, E2STYLE_URL)
    net.name = f"e2style-unet:{path}"
    return net


def _cbr(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _Basic(nn.Module):
    """ResNet basic block (3x3, 3x3, projection shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = None
        if cin != cout or stride != 1:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(r + (x if self.skip is None else self.skip(x)))


class _Attention(nn.Module):
    """BiSeNet's attention refinement: a 3x3 CBR, scaled per channel by a sigmoid of its global mean."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _cbr(cin, cout, 3)
        self.gate = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        return f * torch.sigmoid(self.gate(f.mean(dim=(2, 3), keepdim=True)))


class _Fusion(nn.Module):
    """BiSeNet's feature fusion: 1x1 CBR of the concatenation, plus itself re-weighted by a
    squeeze-excitation gate (``f + f * gate``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = _cbr(cin, cout, 1)
        self.squeeze = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.excite = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f = self.proj(torch.cat([a, b], dim=1))
        g = torch.sigmoid(self.excite(F.relu(self.squeeze(f.mean(dim=(2, 3), keepdim=True)))))
        return f + f * g


class _Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int):
        super().__init__()
        self.block = _cbr(cin, mid, 3)
        self.classifier = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block(x))


class BiSeNet(FaceParser):
    """The forward of face-parsing.PyTorch's BiSeNet (its spatial path replaced by ResNet-18's 1/8
    map, as published), for its CelebAMask-HQ weights (19 classes, 512 px, ImageNet normalisation).

    Context path: ResNet-18 -> global context (1x1 CBR of the 1/32 mean) + attention-refined 1/32
    map, nearest-upsampled to 1/16, 3x3 CBR; + attention-refined 1/16 map, nearest-upsampled to
    1/8, 3x3 CBR. Fusion with the 1/8 ResNet map, a 3x3 CBR + 1x1 classifier, bilinear
    (align_corners) upsampling to the input. The two auxiliary heads exist so the published
    weights load strictly; inference does not use them.

    Features (five levels): ResNet stages 1-4 (1/4 .. 1/32) and the fused 1/8 map.
    """

    def __init__(self, classes: Sequence[str] = CELEBAMASK_CLASSES, input_size: int = 512):
        super().__init__(input_size, classes, *_IMAGENET)
        n = len(self.class_names)
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64))
        widths = (64, 64, 128, 256, 512)
        self.stages = nn.ModuleList(
            nn.Sequential(
                _Basic(widths[i], widths[i + 1], 1 if i == 0 else 2), _Basic(widths[i + 1], widths[i + 1], 1)
            )
            for i in range(4)
        )
        self.arm16 = _Attention(256, 128)
        self.arm32 = _Attention(512, 128)
        self.refine32 = _cbr(128, 128, 3)
        self.refine16 = _cbr(128, 128, 3)
        self.global_context = _cbr(512, 128, 1)
        self.fusion = _Fusion(256, 256)
        self.head = _Head(256, 256, n)
        self.aux16 = _Head(128, 64, n)
        self.aux32 = _Head(128, 64, n)

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h, w = x.shape[-2:]
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        f8, f16, f32 = taps[1:]
        ctx = self.global_context(f32.mean(dim=(2, 3), keepdim=True))
        up32 = self.refine32(F.interpolate(self.arm32(f32) + ctx, size=f16.shape[-2:], mode="nearest"))
        up16 = self.refine16(F.interpolate(self.arm16(f16) + up32, size=f8.shape[-2:], mode="nearest"))
        fused = self.fusion(f8, up16)
        logits = F.interpolate(self.head(fused), size=(h, w), mode="bilinear", align_corners=True)
        return [*taps, fused], logits


_BISENET_RULES: tuple[tuple[str, str], ...] = (
    (r"^cp\.resnet\.conv1\.", "stem.0."),
    (r"^cp\.resnet\.bn1\.", "stem.1."),
    (r"^cp\.resnet\.layer(\d)\.(\d)\.downsample\.", r"stages.{L}.\2.skip."),
    (r"^cp\.resnet\.layer(\d)\.(\d)\.", r"stages.{L}.\2."),
    (r"^cp\.arm(16|32)\.conv\.conv\.", r"arm\1.conv.0."),
    (r"^cp\.arm(16|32)\.conv\.bn\.", r"arm\1.conv.1."),
    (r"^cp\.arm(16|32)\.conv_atten\.", r"arm\1.gate.0."),
    (r"^cp\.arm(16|32)\.bn_atten\.", r"arm\1.gate.1."),
    (r"^cp\.conv_head(16|32)\.conv\.", r"refine\1.0."),
    (r"^cp\.conv_head(16|32)\.bn\.", r"refine\1.1."),
    (r"^cp\.conv_avg\.conv\.", "global_context.0."),
    (r"^cp\.conv_avg\.bn\.", "global_context.1."),
    (r"^ffm\.convblk\.conv\.", "fusion.proj.0."),
    (r"^ffm\.convblk\.bn\.", "fusion.proj.1."),
    (r"^ffm\.conv1\.", "fusion.squeeze."),
    (r"^ffm\.conv2\.", "fusion.excite."),
    (r"^conv_out\.conv\.conv\.", "head.block.0."),
    (r"^conv_out\.conv\.bn\.", "head.block.1."),
    (r"^conv_out\.conv_out\.", "head.classifier."),
    (r"^conv_out(16|32)\.conv\.conv\.", r"aux\1.block.0."),
    (r"^conv_out(16|32)\.conv\.bn\.", r"aux\1.block.1."),
    (r"^conv_out(16|32)\.conv_out\.", r"aux\1.classifier."),
)


def _bisenet_key(key: str) -> str:
    """face-parsing.PyTorch key -> ours (``cp.resnet.layer3.1.bn2.weight`` -> ``stages.2.1.bn2.weight``)."""
    for pattern, repl in _BISENET_RULES:
        m = re.match(pattern, key)
        if m:
            if "{L}" in repl:
                repl = repl.replace("{L}", str(int(m.group(1)) - 1))
            return re.sub(pattern, repl, key, count=1)
    return key


def load_bisenet(path: str | os.PathLike, input_size: int = 512) -> BiSeNet:
    """face-parsing.PyTorch's BiSeNet (``79999_iter.pth``, 19 CelebAMask-HQ classes), strictly."""
    state = _state_dict_of(path, "BiSeNet face parser")
    head = state.get("conv_out.conv_out.weight")
    if head is None:
        raise CheckpointError(
            f"BiSeNet face parser '{path}' has no conv_out.conv_out.weight (not face-parsing.PyTorch's "
            f"BiSeNet; published at {BISENET_URL})"
        )
    n = int(head.shape[0])
    classes = CELEBAMASK_CLASSES if n == len(CELEBAMASK_CLASSES) else tuple(f"class{i}" for i in range(n))
    net = BiSeNet(classes, input_size)
    _load_mapped(net, state, _bisenet_key, f"BiSeNet face parser '{path}'", BISENET_URL)
    net.name = f"bisenet:{path}"
    return net


# --------------------------------------------------------------------------------------------------
# the entry point


def resolve_parser_path(spec: str | os.PathLike) -> Path:
    """``synthfaces-parsing`` / ``zoo:NAME`` / a run folder / a ``parser.pt`` -> the file."""
    spec = str(spec)
    if spec == BUNDLED_SPEC:
        spec = f"zoo:{BUNDLED_NAME}"
    if spec.startswith("zoo:"):
        from egain import zoo

        try:
            return zoo.bundled_path(spec[4:])
        except CheckpointError:
            if spec[4:] != BUNDLED_NAME:
                raise
            raise CheckpointError(
                f"the bundled face parser '{BUNDLED_SPEC}' ({BUNDLED_NAME}.pt) is not in this installation; "
                f"train it with '{TRAIN_HINT}' and pass RUN/parser.pt"
            ) from None
    return file_in_run(Path(spec).expanduser(), "parser.pt", "a parsing")


def is_parser_spec(spec: str) -> bool:
    """Whether ``spec`` names a parser :func:`load_parser` reads without opening a file first."""
    return spec == BUNDLED_SPEC or spec.startswith(("zoo:", "bisenet:", "e2style-unet:"))


def load_parser(spec: str | os.PathLike | FaceParser, device: str | torch.device | None = None) -> FaceParser:
    """The face parser named by ``spec``, frozen (no parameter gradients) and in eval mode.

    ``synthfaces-parsing`` (the bundled ``faces-parsing-64``), ``zoo:NAME``, ``bisenet:PATH``
    (face-parsing.PyTorch's ``79999_iter.pth``), ``e2style-unet:PATH`` (E2Style's ``parsing.pth``),
    a ``parser.pt`` from ``egain faces parsing train`` or its run folder, or a parser object.
    """
    from egain.utils.device import resolve_device

    dev = resolve_device(device)
    if isinstance(spec, FaceParser):
        net = spec
    else:
        spec = str(spec)
        kind, sep, rest = spec.partition(":")
        if sep and kind == "bisenet":
            net = load_bisenet(rest)
        elif sep and kind == "e2style-unet":
            net = load_e2style_unet(rest)
        else:
            net = load_egain_parser(resolve_parser_path(spec))
            net.name = spec
    net.requires_grad_(False)
    return net.eval().to(dev)


# --------------------------------------------------------------------------------------------------
# scores


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    idx = target.reshape(-1).long() * classes + pred.reshape(-1).long()
    return torch.bincount(idx.cpu(), minlength=classes * classes).reshape(classes, classes)


def iou_from_confusion(conf: torch.Tensor | np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class IoU (NaN for a class absent from both truth and prediction), mIoU over the classes
    that occur in the truth, pixel accuracy, and each class's share of the true pixels."""
    c = np.asarray(conf, dtype=np.float64)
    tp = np.diag(c)
    truth, pred = c.sum(1), c.sum(0)
    union = truth + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    present = truth > 0
    per_class = {
        name: {"iou": float(iou[i]), "pixels": float(truth[i] / max(1.0, c.sum()))}
        for i, name in enumerate(class_names)
    }
    return {
        "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / max(1.0, c.sum())),
        "classes_present": int(present.sum()),
        "per_class": per_class,
    }


def format_iou(report: Mapping) -> str:
    """A plain-text table of :func:`iou_from_confusion` (one line per class)."""
    lines = [f"{'class':<12} {'IoU':>6}  {'pixels':>7}"]
    for name, row in report["per_class"].items():
        iou = "   -  " if np.isnan(row["iou"]) else f"{row['iou']:.3f}"
        lines.append(f"{name:<12} {iou:>6}  {100 * row['pixels']:6.2f}%")
    lines.append(
        f"mIoU {report['miou']:.3f} over {report['classes_present']} classes present; "
        f"pixel accuracy {report['pixel_accuracy']:.3f}"
    )
    return "\n".join(lines)


@torch.no_grad()
def evaluate_parser(
    parser: FaceParser,
    dataset: torch.utils.data.Dataset,
    batch: int = 64,
    workers: int = 0,
    progress_bar: bool = False,
) -> dict:
    """mIoU and per-class IoU of ``parser`` on a dataset whose items end with the (H, W) class map
    (``SynthFacesDataset(..., return_parsing=True)``). Truth in synthfaces classes is mapped into
    the parser's classes (:func:`target_table`); predictions are made at the maps' resolution."""
    from egain.runtime.logging import progress

    table = torch.from_numpy(target_table(parser.class_names))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=_collate_parsing
    )
    was_training = parser.training
    parser.eval()
    conf = torch.zeros(parser.num_classes, parser.num_classes, dtype=torch.int64)
    images = 0
    for x, maps in progress(
        loader, total=len(loader), desc="parsing eval", enabled=progress_bar, unit="batch"
    ):
        pred = parser(x).argmax(dim=1).cpu()
        conf += confusion_matrix(pred, table[maps], parser.num_classes)
        images += len(x)
    parser.train(was_training)
    if images == 0:
        raise InputError("the evaluation data holds no images")
    report = iou_from_confusion(conf, parser.class_names)
    report["images"] = images
    return report


def _collate_parsing(batch):
    """(images, maps) from items ``(x, identity, [labels,] map)``."""
    return torch.stack([b[0] for b in batch]), torch.stack([b[-1] for b in batch])

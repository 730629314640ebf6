"""SAM's invertibility predictor (seeds/002 sec. 3.2; adobe-research/sam_inversion ``model_utils.py``).

A base network maps an image in [-1, 1] to an 8-channel map at the input resolution; one small head
per latent space ("W+", "F4", ...) turns it into a non-negative map of the predicted spatial
perceptual error of inverting the image into that space alone (low = easy to invert).

* :class:`LayerHead`: the published head, key for key (``m.0`` ConvTranspose 8->4 3x3, ``m.1``
  BatchNorm, LeakyReLU(0.2), ``m.3`` ConvTranspose 4->1 1x1, ReLU).
* :class:`SmallBase`: our base for the 64 px world, a four-level U-Net (a few hundred thousand
  parameters instead of DeepLab-ResNet101's 59 million).
* :class:`DeepLabBase`: the published base, jfzhang95 ``DeepLab(num_classes=8, backbone='resnet',
  output_stride=16)`` (ResNet-101 with multi-grid layer4, ASPP, decoder) in its key layout, so the
  released ``sd_base`` loads strictly. ``blocks`` / ``width`` shrink it for tests. ``dropout``
  selects the decoder layout with the two Dropout layers of later versions of that repository
  (``last_conv.{0,1,4,5,8}``) or without them (``last_conv.{0,1,3,4,6}``); the loader detects it.
* :class:`InvertibilityNet`: base + heads; ``forward(x) -> (N, S, H, W)`` in the order of ``spaces``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import CheckpointError

#: the published latent names, in the order of the released checkpoint
PUBLISHED_SPACES = ("W+", "F4", "F6", "F8", "F10")


def head_key(space: str) -> str:
    """A space name as a ModuleDict key ("W+" -> "Wplus")."""
    return space.replace("+", "plus")


class LayerHead(nn.Module):
    """One head per latent space, in the published layout (``m.*``)."""

    def __init__(self, in_channels: int = 8):
        super().__init__()
        self.m = nn.Sequential(
            nn.ConvTranspose2d(in_channels, 4, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(4),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(4, 1, kernel_size=1, stride=1, padding=0),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


# ------------------------------------------------------------------------------------------------
# our small base


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    )


class SmallBase(nn.Module):
    """A U-Net to ``out_channels`` at the input size: ``levels`` poolings, widths doubling from
    ``width``. Fully convolutional; inputs must be divisible by 2**levels."""

    def __init__(self, in_channels: int = 3, width: int = 16, levels: int = 3, out_channels: int = 8):
        super().__init__()
        widths = [width * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(levels))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            s = skips.pop()
            x = block(
                torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1)
            )
        return self.out(x)


# ------------------------------------------------------------------------------------------------
# the published DeepLab-ResNet base (jfzhang95/pytorch-deeplab-xception layout)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, dilation=dilation, padding=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(cin, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class _ResNet(nn.Module):
    """ResNet with output stride 16: strides (1, 2, 2, 1), dilations (1, 1, 1, 2), layer4 a multi-grid
    unit of three blocks with dilations (1, 2, 4) x 2."""

    def __init__(self, blocks: Sequence[int], width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        layers = []
        for i, (n, stride) in enumerate(zip(blocks[:3], (1, 2, 2), strict=True)):
            planes = width * 2**i
            mods = [_Bottleneck(cin, planes, stride, 1, stride != 1 or cin != planes * 4)]
            cin = planes * 4
            mods += [_Bottleneck(cin, planes) for _ in range(1, n)]
            layers.append(nn.Sequential(*mods))
        planes = width * 8
        grid = (1, 2, 4)
        mods = [_Bottleneck(cin, planes, 1, 2 * grid[0], cin != planes * 4)]
        cin = planes * 4
        mods += [_Bottleneck(cin, planes, 1, 2 * g) for g in grid[1:]]
        layers.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = cin
        self.low_channels = width * 4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return self.layer4(self.layer3(self.layer2(low))), low


class _ASPPBranch(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int):
        super().__init__()
        pad = 0 if kernel == 1 else dilation
        self.atrous_conv = nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_conv(x)))


class _ASPP(nn.Module):
    def __init__(self, cin: int, width: int = 256, dilations: Sequence[int] = (1, 6, 12, 18)):
        super().__init__()
        self.aspp1 = _ASPPBranch(cin, width, 1, dilations[0])
        self.aspp2 = _ASPPBranch(cin, width, 3, dilations[1])
        self.aspp3 = _ASPPBranch(cin, width, 3, dilations[2])
        self.aspp4 = _ASPPBranch(cin, width, 3, dilations[3])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(5 * width, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        g = F.interpolate(self.global_avg_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        return F.relu(self.bn1(self.conv1(torch.cat([*parts, g], 1))))


class _Decoder(nn.Module):
    def __init__(self, low_channels: int, width: int, out_channels: int, dropout: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(low_channels, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        mods: list[nn.Module] = [
            nn.Conv2d(width + 48, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        if dropout:
            mods.append(nn.Dropout(0.5))
        mods += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if dropout:
            mods.append(nn.Dropout(0.1))
        mods.append(nn.Conv2d(width, out_channels, 1))
        self.last_conv = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = F.relu(self.bn1(self.conv1(low)))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat([x, low], 1))


class DeepLabBase(nn.Module):
    """DeepLab v3+ with a ResNet backbone, output stride 16, upsampled to the input size
    (``align_corners=True``, as published). Defaults are the released ResNet-101 shape."""

    def __init__(
        self,
        out_channels: int = 8,
        blocks: Sequence[int] = (3, 4, 23),
        width: int = 64,
        aspp_width: int = 256,
        dropout: bool = False,
    ):
        super().__init__()
        self.backbone = _ResNet(blocks, width)
        self.aspp = _ASPP(self.backbone.out_channels, aspp_width)
        self.decoder = _Decoder(self.backbone.low_channels, aspp_width, out_channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, low = self.backbone(x)
        y = self.decoder(self.aspp(feat), low)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


# ------------------------------------------------------------------------------------------------


class InvertibilityNet(nn.Module):
    """Base + one :class:`LayerHead` per space: image (N, 3, H, W) in [-1, 1] -> (N, S, H, W)."""

    def __init__(self, spaces: Sequence[str], base: nn.Module, base_channels: int = 8):
        super().__init__()
        self.spaces = list(spaces)
        self.base = base
        self.heads = nn.ModuleDict({head_key(s): LayerHead(base_channels) for s in self.spaces})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.base(x)
        return torch.cat([self.heads[head_key(s)](f) for s in self.spaces], 1)


def build_invertibility_net(
    spaces: Sequence[str], base: str = "small", width: int = 16, levels: int = 3, **deeplab: object
) -> InvertibilityNet:
    """``base="small"`` (ours) or ``"deeplab"`` (the published layout; ``deeplab`` keywords go to
    :class:`DeepLabBase`)."""
    if base == "small":
        return InvertibilityNet(spaces, SmallBase(3, width, levels, 8))
    if base == "deeplab":
        return InvertibilityNet(spaces, DeepLabBase(8, **deeplab))  # type: ignore[arg-type]
    raise CheckpointError(f"invertibility base must be 'small' or 'deeplab', got {base!r}")


def _strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def is_published_invertibility(ckpt: object) -> bool:
    """Whether a loaded dict is SAM's released invertibility checkpoint (``sd_base`` + heads)."""
    return isinstance(ckpt, Mapping) and "sd_base" in ckpt


def deeplab_shape(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """The :class:`DeepLabBase` keywords a published ``sd_base`` was saved from (blocks per stage,
    width, ASPP width, decoder layout), read off its keys and shapes."""
    blocks = []
    for i in range(1, 4):
        idx = {int(k.split(".")[2]) for k in state if k.startswith(f"backbone.layer{i}.")}
        if not idx:
            raise CheckpointError(f"sd_base has no backbone.layer{i}.* weights; not a DeepLab-ResNet state")
        blocks.append(max(idx) + 1)
    return {
        "blocks": tuple(blocks),
        "width": int(state["backbone.conv1.weight"].shape[0]),
        "aspp_width": int(state["aspp.conv1.weight"].shape[0]),
        "dropout": "decoder.last_conv.8.weight" in state,
    }


def from_published_invertibility(
    ckpt: Mapping[str, object], spaces: Sequence[str] | None = None, where: str = "invertibility checkpoint"
) -> InvertibilityNet:
    """Build the predictor from SAM's released checkpoint: ``sd_base`` (DeepLab, maybe with
    DataParallel's ``module.`` prefix) and one head state per latent name. ``spaces`` picks and
    orders the heads (default: every head present, W+ first, then F_k by depth). Loading is strict."""
    from egain.runtime.checkpoint import load_state_checked

    base_state = _strip_module(ckpt["sd_base"])  # type: ignore[arg-type]
    present = sorted(
        (k for k in ckpt if k != "sd_base" and isinstance(ckpt[k], Mapping)),
        key=lambda k: (-1, 0) if k == "W+" else (0, int(k[1:]) if k[1:].isdigit() else 10**6),
    )
    spaces = list(spaces) if spaces is not None else present
    missing = [s for s in spaces if s not in ckpt]
    if missing:
        raise CheckpointError(f"{where} has no head for {', '.join(missing)}; it has {', '.join(present)}")
    net = InvertibilityNet(spaces, DeepLabBase(8, **deeplab_shape(base_state)))  # type: ignore[arg-type]
    load_state_checked(net.base, base_state, f"{where} (sd_base)", strict=True)
    for s in spaces:
        load_state_checked(net.heads[head_key(s)], _strip_module(ckpt[s]), f"{where} (head {s})", strict=True)  # type: ignore[arg-type]
    return net.eval()

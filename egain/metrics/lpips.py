"""LPIPS (Zhang et al. 2018, v0.1) with our own AlexNet / VGG16 feature extractors.

LPIPS needs two sets of published weights, and egain downloads neither:

* the ImageNet backbone in torchvision's file format -- ``alexnet-owt-7be5be79.pth`` or
  ``vgg16-397923af.pth`` (keys ``features.N.weight`` / ``features.N.bias``; ``classifier.*`` is
  ignored) -- from a path the user gives, or from torch's hub cache where torchvision put it;
* the calibrated linear layers of LPIPS v0.1 -- ``alex.pth`` / ``vgg.pth`` (keys
  ``lin{i}.model.1.weight``, shape (1, C, 1, 1)) -- from a path, or read (not imported) from an
  installed ``lpips`` package, which ships them.

Without them the metric is *unavailable* (:class:`LPIPSUnavailable` names the file and where it is
published); it never falls back to random or other weights, since such numbers would not be LPIPS.

The network: inputs in [-1, 1] are shifted/scaled per channel (v0.1 "scaling layer"), five ReLU
feature maps are unit-normalised along channels (eps 1e-10), their squared differences are weighted
by the 1x1 linear layers, averaged over space and summed over layers. :class:`LPIPS` is a
differentiable ``nn.Module`` (frozen weights), usable as a training loss.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from egain.errors import CheckpointError, InputError, missing_file_message

BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
LINEAR_FILES = {"alex": "alex.pth", "vgg": "vgg.pth"}
LINEAR_URL = (
    "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1/{file} "
    "(also inside the 'lpips' PyPI package: 'pip install --no-deps lpips' makes it findable)"
)

# v0.1 scaling layer: (x - shift) / scale on inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORMALIZE_EPS = 1e-10


class LPIPSUnavailable(CheckpointError):
    """LPIPS cannot be computed because a published weight file is missing."""


# --------------------------------------------------------------------------------------------------
# backbones: our own modules, with a converter from torchvision's ``features.N`` layout


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional trunk (torchvision's "one weird trick" variant), returning the five
    ReLU outputs LPIPS compares (relu1 .. relu5; 64, 192, 384, 256, 256 channels)."""

    channels = (64, 192, 384, 256, 256)
    #: our layer name -> index in torchvision's ``features`` Sequential
    torchvision_index = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(64, 192, 5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r1 = F.relu(self.conv1(x))
        r2 = F.relu(self.conv2(F.max_pool2d(r1, 3, 2)))
        r3 = F.relu(self.conv3(F.max_pool2d(r2, 3, 2)))
        r4 = F.relu(self.conv4(r3))
        r5 = F.relu(self.conv5(r4))
        return [r1, r2, r3, r4, r5]


# VGG16 configuration D: (stage, convs, channels); a 2x2 max-pool separates stages.
_VGG16_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def _vgg16_torchvision_index() -> dict[str, int]:
    """torchvision numbers every module of ``features``: conv, relu per conv, a max-pool per stage."""
    index, i = {}, 0
    for stage, n, _ in _VGG16_STAGES:
        for j in range(1, n + 1):
            index[f"conv{stage}_{j}"] = i
            i += 2
        i += 1
    return index


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk, returning relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    (64, 128, 256, 512, 512 channels) -- the layers LPIPS-vgg compares."""

    channels = (64, 128, 256, 512, 512)
    torchvision_index = _vgg16_torchvision_index()

    def __init__(self) -> None:
        super().__init__()
        cin = 3
        for stage, n, cout in _VGG16_STAGES:
            for j in range(1, n + 1):
                self.add_module(f"conv{stage}_{j}", nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage, n, _ in _VGG16_STAGES:
            if stage > 1:
                x = F.max_pool2d(x, 2, 2)
            for j in range(1, n + 1):
                x = F.relu(getattr(self, f"conv{stage}_{j}")(x))
            outs.append(x)
        return outs


BACKBONES: dict[str, type[nn.Module]] = {"alex": AlexNetFeatures, "vgg": VGG16Features}


def convert_torchvision_features(
    state: Mapping[str, torch.Tensor], module: AlexNetFeatures | VGG16Features, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Map torchvision's ``features.N.{weight,bias}`` keys onto our layer names, strictly.

    Every conv of the trunk must be present with the right shape; any other ``features.*`` key means
    the file is another architecture and is refused. ``classifier.*`` (unused by LPIPS) is ignored.
    """
    expected = module.state_dict()
    by_index = {idx: name for name, idx in module.torchvision_index.items()}
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        parts = key.split(".")
        name = by_index.get(int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None
        ours = f"{name}.{parts[2]}" if name else None
        if ours is None or ours not in expected:
            unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise CheckpointError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, expected {tuple(expected[ours].shape)} "
                f"for torchvision's {type(module).__name__.replace('Features', '')}"
            )
        out[ours] = value
    missing = [
        f"features.{module.torchvision_index[k.split('.')[0]]}.{k.split('.')[1]}"
        for k in expected
        if k not in out
    ]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} is not torchvision's {type(module).__name__.replace('Features', '')} layout: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
        )
    return out


def convert_lpips_linear(state: Mapping[str, torch.Tensor], channels: tuple[int, ...], source: str) -> dict:
    """Map LPIPS's ``lin{i}.model.1.weight`` (``model.0`` when saved without dropout) onto ``linear.{i}.weight``."""
    out = {}
    for i, c in enumerate(channels):
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight") if k in state), None)
        if key is None:
            raise CheckpointError(f"{source}: missing 'lin{i}.model.1.weight' (LPIPS v0.1 linear layers)")
        w = state[key]
        if tuple(w.shape) != (1, c, 1, 1):
            raise CheckpointError(f"{source}: '{key}' has shape {tuple(w.shape)}, expected (1, {c}, 1, 1)")
        out[f"linear.{i}.weight"] = w
    return out


# --------------------------------------------------------------------------------------------------
# locating the published files


def _torch_hub_checkpoint(file: str) -> Path | None:
    """Where torchvision caches downloaded weights ($TORCH_HOME/hub/checkpoints), if the file is there."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    p = Path(home) / "hub" / "checkpoints" / file
    return p if p.is_file() else None


def _lpips_package_weights(net: str) -> Path | None:
    """The linear weights shipped inside an installed ``lpips`` package, found without importing it
    (importing it would import torchvision, which egain does not depend on)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / "v0.1" / LINEAR_FILES[net]
        if p.is_file():
            return p
    return None


def _check_net(net: str) -> str:
    net = {"alexnet": "alex", "vgg16": "vgg"}.get(net, net)
    if net not in BACKBONES:
        raise CheckpointError(f"LPIPS network '{net}' is not supported; expected 'alex' or 'vgg'")
    return net


def _locate(
    path: str | os.PathLike | None,
    file: str,
    default: Path | None,
    what: str,
    url: str,
    flag: str,
) -> Path:
    """Resolve a user path (a file, or a folder holding ``file``) or fall back to ``default``.

    One place for the error wording: a missing file names itself, where it is published and the
    flag that passes it, whether the user gave a path or none was found in the usual places.
    """
    if path is None:
        if default is None:
            raise LPIPSUnavailable(
                f"{what} '{file}' was not found; it is published at {url}; "
                f"download it yourself and pass its path with {flag}"
            )
        return default
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / file
    if not p.is_file():
        raise LPIPSUnavailable(missing_file_message(str(p), f"{what} '{file}'", url, flag))
    return p


def find_backbone(net: str, path: str | os.PathLike | None = None) -> Path:
    """The backbone file to use, or :class:`LPIPSUnavailable` naming the file and where it is published."""
    net = _check_net(net)
    file = BACKBONE_FILES[net]
    default = _torch_hub_checkpoint(file) if path is None else None
    what = f"LPIPS-{net} ImageNet backbone (torchvision format)"
    return _locate(path, file, default, what, BACKBONE_URLS[net], "--lpips-backbone")


def find_linear(net: str, path: str | os.PathLike | None = None) -> Path:
    """The LPIPS v0.1 linear-layer file, or :class:`LPIPSUnavailable`."""
    net = _check_net(net)
    file = LINEAR_FILES[net]
    default = _lpips_package_weights(net) if path is None else None
    what = f"LPIPS-{net} v0.1 linear layers"
    return _locate(path, file, default, what, LINEAR_URL.format(file=file), "--lpips-linear")


def _load_state(path: Path, what: str) -> dict:
    from egain.runtime.checkpoint import load_checkpoint

    return dict(load_checkpoint(path, what=what))


# --------------------------------------------------------------------------------------------------
# the metric


class LPIPS(nn.Module):
    """LPIPS distance, lower is more similar. ``forward(x, y)`` on (N, 3, H, W) in [-1, 1] -> (N,).

    Build it with :meth:`from_files` (published weights) or directly with state dicts; the weights are
    frozen (``requires_grad=False``) but gradients flow to the inputs, so it works as a loss.
    """

    def __init__(
        self,
        net: str = "alex",
        backbone_state: Mapping[str, torch.Tensor] | None = None,
        linear_state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.net_name = _check_net(net)
        self.backbone = BACKBONES[self.net_name]()
        chans = self.backbone.channels
        self.linear = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        if backbone_state is not None:
            self.backbone.load_state_dict(
                convert_torchvision_features(backbone_state, self.backbone), strict=True
            )
        if linear_state is not None:
            lin = convert_lpips_linear(linear_state, chans, "LPIPS linear state")
            self.linear.load_state_dict({k.removeprefix("linear."): v for k, v in lin.items()}, strict=True)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(
        cls,
        net: str = "alex",
        backbone: str | os.PathLike | None = None,
        linear: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> LPIPS:
        """Load the published weights; raises :class:`LPIPSUnavailable` when one is missing."""
        net = _check_net(net)
        bpath, lpath = find_backbone(net, backbone), find_linear(net, linear)
        model = cls(net)
        model.backbone.load_state_dict(
            convert_torchvision_features(_load_state(bpath, "LPIPS backbone"), model.backbone, str(bpath)),
            strict=True,
        )
        lin = convert_lpips_linear(
            _load_state(lpath, "LPIPS linear layers"), model.backbone.channels, str(lpath)
        )
        model.linear.load_state_dict({k.removeprefix("linear."): v for k, v in lin.items()}, strict=True)
        model.sources = {"backbone": str(bpath), "linear": str(lpath)}
        return model.to(device)

    def train(self, mode: bool = True) -> LPIPS:
        # Always in inference mode: there is no dropout/batch-norm to switch, and a trainer calling
        # .train() on its modules must not change the metric.
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        """(N,) distances; with ``spatial`` the (N, 1, H, W) map instead: each layer's weighted
        squared difference upsampled (bilinear) to the input size and summed over layers, the
        ``lpips`` package's ``spatial=True`` (its spatial mean is the scalar distance up to the
        interpolation)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(
                f"LPIPS expects two (N, 3, H, W) batches of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        n = x.shape[0]
        feats = self.backbone(torch.cat([x, y], 0).sub(self.shift).div(self.scale))
        total = x.new_zeros((n, 1, *x.shape[-2:]) if spatial else (n,))
        for lin, f in zip(self.linear, feats, strict=True):
            f = f / (f.square().sum(1, keepdim=True).sqrt() + NORMALIZE_EPS)
            d = (f[:n] - f[n:]).square()
            if spatial:
                total = total + F.interpolate(lin(d), size=x.shape[-2:], mode="bilinear", align_corners=False)
            else:
                total = total + lin(d).mean(dim=(1, 2, 3))
        return total


def load_lpips(
    net: str = "alex",
    backbone: str | os.PathLike | None = None,
    linear: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """Shorthand for :meth:`LPIPS.from_files` (the loss factory other parts call)."""
    return LPIPS.from_files(net, backbone, linear, device)

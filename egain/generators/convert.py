"""Converter between the published rosinality key layout and egain's own module names.

Each direction is driven by one table built from a configuration: ``(published key, our key,
to_ours, to_published)`` for every tensor we keep, plus the published *constant* buffers (FIR and
Haar filters) that we recompute instead of storing. Import is strict: every published key must be
consumed, none may be left over or missing, and every shape must match (the error names the key).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from egain.errors import CheckpointError
from egain.generators.config import DEFAULT_BLUR_KERNEL, log2
from egain.ops.upfirdn import make_kernel

Tensor = torch.Tensor
_identity: Callable[[Tensor], Tensor] = lambda t: t  # noqa: E731


@dataclass(frozen=True)
class KeyRule:
    published: str
    ours: str
    to_ours: Callable[[Tensor], Tensor] = _identity
    to_published: Callable[[Tensor], Tensor] = _identity


# ------------------------------------------------------------------ constant buffers


def haar_filters(inverse: bool = False) -> dict[str, Tensor]:
    """The published 2x2 Haar filters (``ll, lh, hl, hh``; IWT negates lh and hl)."""
    lo = torch.full((1, 2), 1.0 / math.sqrt(2.0))
    hi = lo.clone()
    hi[0, 0] = -hi[0, 0]
    f = {"ll": lo.T * lo, "lh": hi.T * lo, "hl": lo.T * hi, "hh": hi.T * hi}
    if inverse:
        f["lh"], f["hl"] = -f["lh"], -f["hl"]
    return f


def _haar_consts(prefix: str, inverse: bool) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in haar_filters(inverse).items()}


# ------------------------------------------------------------------ generator tables


def _squeeze0(t: Tensor) -> Tensor:
    return t.squeeze(0)


def _unsqueeze0(t: Tensor) -> Tensor:
    return t.unsqueeze(0)


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1)


def _as_bias4d(t: Tensor) -> Tensor:
    return t.reshape(1, -1, 1, 1)


def generator_tables(config: Mapping[str, Any]) -> tuple[list[KeyRule], dict[str, Tensor]]:
    """Rules and constants for a generator built from ``config`` (sec. 1.5 / 2.3 of the reference)."""
    arch = config["arch"]
    size = int(config["size"])
    n_mlp = int(config["n_mlp"])
    feature_size = size // 2 if arch == "swagan" else size
    n_blocks = log2(feature_size) - 1  # resolutions 4 .. feature_size
    blur = make_kernel(config.get("blur_kernel", DEFAULT_BLUR_KERNEL)) * 4
    rules: list[KeyRule] = []
    consts: dict[str, Tensor] = {}
    for i in range(n_mlp):
        rules += [
            KeyRule(f"style.{i + 1}.weight", f"mlp.{i}.weight"),
            KeyRule(f"style.{i + 1}.bias", f"mlp.{i}.bias"),
        ]
    rules.append(KeyRule("input.input", "const"))
    n_convs = 2 * n_blocks - 1
    for j in range(n_convs):
        pub = "conv1" if j == 0 else f"convs.{j - 1}"
        ours = f"convs.{j}"
        rules += [
            KeyRule(f"{pub}.conv.weight", f"{ours}.modconv.weight", _squeeze0, _unsqueeze0),
            KeyRule(f"{pub}.conv.modulation.weight", f"{ours}.modconv.affine.weight"),
            KeyRule(f"{pub}.conv.modulation.bias", f"{ours}.modconv.affine.bias"),
            KeyRule(f"{pub}.noise.weight", f"{ours}.noise_strength"),
            KeyRule(f"{pub}.activate.bias", f"{ours}.bias"),
            KeyRule(f"noises.noise_{j}", f"{ours}.noise_const"),
        ]
        if j % 2 == 1:  # up-sampling conv
            consts[f"{pub}.conv.blur.kernel"] = blur
    for b in range(n_blocks):
        pub = "to_rgb1" if b == 0 else f"to_rgbs.{b - 1}"
        ours = f"to_rgbs.{b}"
        rules += [
            KeyRule(f"{pub}.conv.weight", f"{ours}.modconv.weight", _squeeze0, _unsqueeze0),
            KeyRule(f"{pub}.conv.modulation.weight", f"{ours}.modconv.affine.weight"),
            KeyRule(f"{pub}.conv.modulation.bias", f"{ours}.modconv.affine.bias"),
            KeyRule(f"{pub}.bias", f"{ours}.bias", _flat, _as_bias4d),
        ]
        if b > 0:
            consts[f"{pub}.upsample.kernel"] = blur
            if arch == "swagan":
                consts.update(_haar_consts(f"{pub}.iwt", inverse=True))
                consts.update(_haar_consts(f"{pub}.dwt", inverse=False))
    if arch == "swagan":
        consts.update(_haar_consts("iwt", inverse=True))
    return rules, consts


def discriminator_tables(config: Mapping[str, Any]) -> tuple[list[KeyRule], dict[str, Tensor]]:
    """Rules and constants for a discriminator built from ``config`` (sec. 3 of the reference)."""
    arch = config["arch"]
    size = int(config["size"])
    blur = make_kernel(config.get("blur_kernel", DEFAULT_BLUR_KERNEL))
    rules: list[KeyRule] = []
    consts: dict[str, Tensor] = {}

    def conv(pub: str, ours: str, bias: bool = True, down: bool = False) -> None:
        # Published ConvLayer is a Sequential: [Blur], EqualConv2d(no bias), FusedLeakyReLU(bias).
        i = 0
        if down:
            consts[f"{pub}.0.kernel"] = blur
            i = 1
        rules.append(KeyRule(f"{pub}.{i}.weight", f"{ours}.weight"))
        if bias:
            rules.append(KeyRule(f"{pub}.{i + 1}.bias", f"{ours}.bias"))

    if arch == "stylegan2":
        conv("convs.0", "from_rgb")
        for k in range(1, log2(size) - 1):
            conv(f"convs.{k}.conv1", f"blocks.{k - 1}.conv1")
            conv(f"convs.{k}.conv2", f"blocks.{k - 1}.conv2", down=True)
            conv(f"convs.{k}.skip", f"blocks.{k - 1}.skip", bias=False, down=True)
    else:
        consts.update(_haar_consts("dwt", inverse=False))
        n_from = log2(size) - 3 + 1
        for n in range(n_from):
            rules += [
                KeyRule(f"from_rgbs.{n}.conv.0.weight", f"from_rgbs.{n}.conv.weight"),
                KeyRule(f"from_rgbs.{n}.conv.1.bias", f"from_rgbs.{n}.conv.bias"),
            ]
            if n > 0:
                consts.update(_haar_consts(f"from_rgbs.{n}.iwt", inverse=True))
                consts.update(_haar_consts(f"from_rgbs.{n}.dwt", inverse=False))
                consts[f"from_rgbs.{n}.downsample.kernel"] = blur
        for n in range(n_from - 1):
            conv(f"convs.{n}.conv1", f"blocks.{n}.conv1")
            conv(f"convs.{n}.conv2", f"blocks.{n}.conv2", down=True)
    conv("final_conv", "final_conv")
    rules += [
        KeyRule("final_linear.0.weight", "final_fc.weight"),
        KeyRule("final_linear.0.bias", "final_fc.bias"),
        KeyRule("final_linear.1.weight", "out.weight"),
        KeyRule("final_linear.1.bias", "out.bias"),
    ]
    return rules, consts


# ------------------------------------------------------------------ config detection


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.fullmatch(k))})


def _shape(sd: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{what} lacks key '{key}'; expected a rosinality StyleGAN2/SWAGAN state dict")
    return tuple(sd[key].shape)


def _blur_from(sd: Mapping[str, Any], key: str, scale: float) -> list[float]:
    """Recover the 1-D FIR taps from a stored separable 2-D kernel (default taps when absent)."""
    if key not in sd:
        return list(DEFAULT_BLUR_KERNEL)
    k = sd[key].detach().float().cpu() / scale
    row = k.sum(dim=0)
    if not torch.allclose(row[:, None] * row[None, :], k, atol=1e-6):
        raise CheckpointError(f"key '{key}' holds a non-separable FIR kernel; expected an outer product")
    taps = row / row[0]
    if torch.allclose(taps, torch.tensor(DEFAULT_BLUR_KERNEL, dtype=taps.dtype), atol=1e-5):
        return list(DEFAULT_BLUR_KERNEL)
    return [round(float(t), 6) for t in taps]


def is_rosinality_generator(sd: Mapping[str, Any]) -> bool:
    return "input.input" in sd and "to_rgb1.conv.weight" in sd


def is_rosinality_discriminator(sd: Mapping[str, Any]) -> bool:
    return "final_linear.0.weight" in sd and ("convs.0.0.weight" in sd or "from_rgbs.0.conv.0.weight" in sd)


def rosinality_generator_config(sd: Mapping[str, Any], what: str = "state dict") -> dict[str, Any]:
    """Detect arch, size, style_dim, n_mlp, channel widths and blur kernel from published keys."""
    rgb = _shape(sd, "to_rgb1.conv.weight", what)
    if len(rgb) != 5 or rgb[1] not in (3, 12):
        raise CheckpointError(f"key 'to_rgb1.conv.weight' has shape {rgb}; expected [1, 3 or 12, C, 1, 1]")
    arch = "stylegan2" if rgb[1] == 3 else "swagan"
    n_rgbs = _count(sd, r"to_rgbs\.(\d+)\.conv\.weight")
    feature_size = 2 ** (n_rgbs + 2)
    size = feature_size * (2 if arch == "swagan" else 1)
    n_mlp = _count(sd, r"style\.(\d+)\.weight")
    if n_mlp == 0:
        raise CheckpointError(
            f"{what} has no mapping layers 'style.N.weight'; expected a rosinality generator"
        )
    style_dim = _shape(sd, "style.1.weight", what)[0]
    channels = {4: _shape(sd, "input.input", what)[1]}
    for b in range(n_rgbs):
        channels[2 ** (b + 3)] = _shape(sd, f"to_rgbs.{b}.conv.weight", what)[2]
    blur = _blur_from(sd, "convs.0.conv.blur.kernel", 4.0)
    return {
        "arch": arch,
        "size": size,
        "style_dim": int(style_dim),
        "n_mlp": n_mlp,
        "lr_mlp": 0.01,
        "channels": channels,
        "blur_kernel": blur,
    }


def rosinality_discriminator_config(sd: Mapping[str, Any], what: str = "state dict") -> dict[str, Any]:
    """Detect arch, size, channel widths, FromRGB kernel (3 rosinality / 1 EGAIN) from published keys."""
    if "from_rgbs.0.conv.0.weight" in sd:
        n_from = _count(sd, r"from_rgbs\.(\d+)\.conv\.0\.weight")
        size = 2 ** (n_from + 2)
        ch = {size: _shape(sd, "from_rgbs.0.conv.0.weight", what)[0]}
        kernel = _shape(sd, "from_rgbs.0.conv.0.weight", what)[-1]
        for n in range(n_from - 1):
            ch[2 ** (log2(size) - 2 - n)] = _shape(sd, f"convs.{n}.conv2.1.weight", what)[0]
        ch[4] = _shape(sd, "final_conv.1.bias", what)[0]
        # Widths the SWAGAN D never reads (S/2): fill them so the table is complete.
        for r in [2**i for i in range(2, log2(size) + 1)]:
            ch.setdefault(r, ch[min(ch, key=lambda q: abs(q - r))])
        cfg = {
            "arch": "swagan",
            "size": size,
            "channels": dict(sorted(ch.items())),
            "from_rgb_kernel": int(kernel),
        }
        blur_key = "from_rgbs.1.downsample.kernel"
    elif "convs.0.0.weight" in sd:
        n_blocks = _count(sd, r"convs\.(\d+)\.conv1\.0\.weight")
        size = 2 ** (n_blocks + 2)
        ch = {size: _shape(sd, "convs.0.0.weight", what)[0]}
        for k in range(1, n_blocks + 1):
            ch[size >> k] = _shape(sd, f"convs.{k}.conv2.1.weight", what)[0]
        cfg = {"arch": "stylegan2", "size": size, "channels": dict(sorted(ch.items()))}
        blur_key = "convs.1.conv2.0.kernel"
    else:
        raise CheckpointError(
            f"{what} is not a rosinality discriminator; expected 'convs.0.0.weight' (StyleGAN2) or "
            "'from_rgbs.0.conv.0.weight' (SWAGAN)"
        )
    cfg["blur_kernel"] = _blur_from(sd, blur_key, 1.0)
    return cfg


# ------------------------------------------------------------------ conversion


def _expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def published_to_ours(
    sd: Mapping[str, Tensor],
    rules: list[KeyRule],
    consts: Mapping[str, Tensor],
    our_shapes: Mapping[str, tuple[int, ...]],
    what: str,
) -> dict[str, Tensor]:
    """Strict import: every published key consumed, none missing, every shape as expected."""
    by_pub = {r.published: r for r in rules}
    unexpected = [k for k in sd if k not in by_pub and k not in consts]
    if unexpected:
        raise CheckpointError(
            f"{what} has unexpected key '{unexpected[0]}'"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + "; expected only the keys of the configuration detected from it"
        )
    missing = [k for k in list(by_pub) + list(consts) if k not in sd]
    if missing:
        raise CheckpointError(
            f"{what} lacks key '{missing[0]}'"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    out: dict[str, Tensor] = {}
    for r in rules:
        t = sd[r.published]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{what} key '{r.published}' holds a {type(t).__name__}; expected a tensor")
        want = our_shapes[r.ours]
        if r.to_ours(torch.empty(0).new_empty(t.shape, device="meta")).shape != want:
            expected = tuple(r.to_published(torch.empty(want, device="meta")).shape)
            raise CheckpointError(
                f"{what} key '{r.published}' has shape {list(t.shape)}; expected {list(expected)}"
            )
        out[r.ours] = r.to_ours(t)
    for k, v in consts.items():
        t = sd[k]
        if tuple(t.shape) != tuple(v.shape):
            raise CheckpointError(f"{what} key '{k}' has shape {list(t.shape)}; expected {list(v.shape)}")
        if not torch.allclose(t.detach().float().cpu(), v, atol=1e-5):
            raise CheckpointError(
                f"{what} key '{k}' holds a filter that differs from the configured one; expected {v.flatten().tolist()}"
            )
    return out


def ours_to_published(
    sd: Mapping[str, Tensor], rules: list[KeyRule], consts: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Export our state dict in the published layout (constants recomputed), for use by other tools."""
    out: dict[str, Tensor] = {}
    for r in rules:
        out[r.published] = r.to_published(sd[r.ours])
    for k, v in consts.items():
        out[k] = v.clone()
    return out


def generator_from_rosinality(sd: Mapping[str, Tensor], what: str = "state dict"):
    """Build our Generator from a rosinality ``g_ema``/``g`` state dict (config detected, strict)."""
    from egain.generators.stylegan import Generator

    config = rosinality_generator_config(sd, what)
    with torch.device("meta"):
        shapes = _expected_shapes(Generator(**config))
    rules, consts = generator_tables(config)
    ours = published_to_ours(sd, rules, consts, shapes, what)
    g = Generator(**config)
    g.load_state_dict(ours, strict=True)
    return g


def generator_to_rosinality(generator) -> dict[str, Tensor]:
    """Our Generator -> a rosinality-layout state dict (loads with ``strict=True`` in published code)."""
    rules, consts = generator_tables(generator.config)
    return ours_to_published(generator.state_dict(), rules, consts)


def discriminator_from_rosinality(sd: Mapping[str, Tensor], what: str = "state dict"):
    """Build our Discriminator from a rosinality (or EGAIN SWAGAN) ``d`` state dict, strictly."""
    from egain.generators.discriminator import Discriminator

    config = rosinality_discriminator_config(sd, what)
    with torch.device("meta"):
        shapes = _expected_shapes(Discriminator(**config))
    rules, consts = discriminator_tables(config)
    ours = published_to_ours(sd, rules, consts, shapes, what)
    d = Discriminator(**config)
    d.load_state_dict(ours, strict=True)
    return d


def discriminator_to_rosinality(discriminator) -> dict[str, Tensor]:
    rules, consts = discriminator_tables(discriminator.config)
    return ours_to_published(discriminator.state_dict(), rules, consts)

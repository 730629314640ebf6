"""Generator / discriminator configuration: validation and channel tables.

A configuration is a plain dict (stored in checkpoints, rebuilt with ``build_generator(**config)``).
Channel widths are always stored *resolved* (``channels = {resolution: width}``), so a checkpoint
rebuilds exactly the network that wrote it whatever the defaults become later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from egain.errors import EgainError

ARCHS = ("stylegan2", "swagan")
DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)
# rosinality's table at channel_multiplier=1 equals min(512, 16384 // r); the multiplier scales base.
DEFAULT_CHANNEL_BASE = 16384
DEFAULT_CHANNEL_MAX = 512


def check_arch(arch: str) -> str:
    arch = str(arch).lower()
    if arch not in ARCHS:
        raise EgainError(f"unknown generator arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return arch


def check_size(size: Any) -> int:
    """A power of two >= 16 (the smallest size with an up-sampling block in both archs)."""
    try:
        ok = int(size) == size and int(size) >= 16 and (int(size) & (int(size) - 1)) == 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EgainError(f"generator size must be a power of two >= 16 (16, 32, 64, ...), got {size!r}")
    return int(size)


def log2(n: int) -> int:
    return int(round(math.log2(n)))


def rosinality_channels(resolution: int, channel_multiplier: int = 2) -> int:
    """The published table: 512 up to 32x32, then ``16384 * cm / r`` (uncapped, as published)."""
    if resolution <= 32:
        return 512
    return (16384 * channel_multiplier) // resolution


def channel_table(
    max_resolution: int,
    *,
    channel_base: int | None = None,
    channel_max: int | None = None,
    channel_multiplier: int = 2,
    preset: str | None = None,
) -> dict[int, int]:
    """Widths for resolutions 4 .. max_resolution.

    Generic rule: ``min(channel_max, channel_base * channel_multiplier // r)`` (at least 1).
    ``preset="rosinality"`` reproduces the published table exactly (it differs from the generic rule
    only for channel_multiplier > 2, where the published table exceeds 512 at 64x64).
    """
    res = [2**i for i in range(2, log2(max_resolution) + 1)]
    if preset is not None:
        if preset != "rosinality":
            raise EgainError(f"unknown channel preset {preset!r}; expected 'rosinality' or none")
        return {r: rosinality_channels(r, channel_multiplier) for r in res}
    base = DEFAULT_CHANNEL_BASE if channel_base is None else int(channel_base)
    cap = DEFAULT_CHANNEL_MAX if channel_max is None else int(channel_max)
    return {r: max(1, min(cap, (base * channel_multiplier) // r)) for r in res}


def normalize_channels(channels: Mapping[Any, Any], needed: Sequence[int]) -> dict[int, int]:
    """Accept ``{res: width}`` with int or str keys (JSON) and check every needed resolution is there."""
    table = {int(k): int(v) for k, v in channels.items()}
    missing = [r for r in needed if r not in table]
    if missing:
        raise EgainError(f"channel table lacks resolutions {missing}; expected widths for {list(needed)}")
    return {r: table[r] for r in sorted(table) if r in needed or r <= max(needed)}


def resolve_channels(
    max_resolution: int,
    channels: Mapping[Any, Any] | None,
    channel_base: int | None,
    channel_max: int | None,
    channel_multiplier: int,
    channel_preset: str | None,
) -> dict[int, int]:
    needed = [2**i for i in range(2, log2(max_resolution) + 1)]
    if channels is not None:
        return normalize_channels(channels, needed)
    return channel_table(
        max_resolution,
        channel_base=channel_base,
        channel_max=channel_max,
        channel_multiplier=channel_multiplier,
        preset=channel_preset,
    )

"""argparse ``type=`` validators shared by every command, so a bad number is a usage line.

``--size 0`` or ``--bootstrap -5`` would otherwise travel into the run and fail deep inside it
(or, worse, silently do nothing); argparse prints these errors as one ``usage`` line, exit code 2.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, batch sizes, counts of images)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (passes, bootstrap resamples, grid sizes where 0 means none)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def checkpoint_path(text: str) -> str:
    """A checkpoint argument: a path, or ``zoo:NAME`` for a bundled weight file (resolved here).

    Resolving at parse time means every command accepts ``zoo:NAME`` the same way and an unknown
    name is one usage line listing the bundled names; a missing *path* is left to the loader, whose
    message says what the file should be.
    """
    if text.startswith("zoo:"):
        from egain.errors import CheckpointError
        from egain.zoo import bundled_path

        try:
            return str(bundled_path(text[4:]))
        except CheckpointError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def int_list(text: str) -> list[int]:
    """Comma-separated integers (network widths, units per stage): ``32,64,128``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None

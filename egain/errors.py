"""One exception type for every user-facing failure.

The CLI catches :class:`EgainError` and prints its message on one line (no traceback), so every
message must say what was wrong *and* what was expected, e.g. which file, which key, which shape.
"""

from __future__ import annotations


class EgainError(Exception):
    """A user-facing error: bad input, a missing or foreign checkpoint, an impossible configuration."""


class CheckpointError(EgainError):
    """A checkpoint file is missing, corrupt, or belongs to another model."""


class InputError(EgainError):
    """Images or folders given by the user cannot be used as they are."""


def missing_file_message(path: str, what: str, published_at: str, flag: str) -> str:
    """The standard message for a published weight file that is not on disk.

    Nothing in egain downloads weights at run time, so the message tells the user where the file is
    published and which flag (or argument) to pass once they have it.
    """
    return (
        f"{what} not found at '{path}'. It is published at {published_at}; download it yourself "
        f"and pass its path with {flag}."
    )

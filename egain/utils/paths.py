"""Checks that keep a command's outputs from destroying anything: one home for every command.

* :func:`check_output_dir` / :func:`check_output_file`: an output path of the wrong kind (a file
  where a folder is expected, a folder where a file is), under a file, or not writable is one
  :class:`~egain.errors.InputError` line before any work starts, not a traceback after it.
* :func:`check_not_inside_inputs`: an output folder that is, or lies inside, an input folder is
  refused, since writing reconstructions there would replace or mix with the sources.
* :func:`claim_output_dir`: a folder that holds another run's results (or files egain did not
  write) is refused unless the user passes ``--overwrite``; the folder records which run wrote it
  in :data:`RUN_MARKER`, so re-running the same command into it is allowed.
* :func:`output_names`: inputs that would be written under the same output name (``face.png`` and
  ``face.jpg`` both give ``face.png``) are refused, never silently lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from egain.errors import InputError

#: hidden file in an output folder naming the command / method / run that wrote it
RUN_MARKER = ".egain-run.json"


def _writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{what} '{path}' cannot be created: '{parent}' is a file, not a folder")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} '{path}' cannot be created: folder '{parent}' is not writable")


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """A folder the command may create or write into; one line when it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} '{path}' is an existing file; expected a folder (pass another path)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{what} '{path}' is not writable")
    else:
        _writable_parent(path, what)
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """A file the command may create or replace; one line when it cannot be one."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} '{path}' is an existing folder; expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} '{path}' exists and is not writable")
    _writable_parent(path, what)
    return path


def check_not_inside_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output folder that is, or lies inside, an input folder.

    For an input *file* only its own folder is refused (outputs keep the source name, so they would
    replace it there); a sub-folder beside the file is fine (``photo.jpg`` -> ``out/photo/``).
    """
    out = Path(output).resolve()
    for p in inputs:
        p = Path(p)
        if not p.exists():
            continue
        folder = p.resolve() if p.is_dir() else p.resolve().parent
        inside = out == folder or (p.is_dir() and folder in out.parents)
        if inside:
            relation = "is" if out == folder else "lies inside"
            raise InputError(
                f"output folder '{output}' {relation} the input folder '{folder}'; writing there would "
                "replace or mix with the source images -- choose a folder outside it"
            )


def read_run_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The run record of an output folder, or None when it has none (or an unreadable one)."""
    path = Path(folder) / RUN_MARKER
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def claim_output_dir(
    folder: str | os.PathLike,
    run: Mapping[str, Any],
    *,
    overwrite: bool = False,
    ignore: Iterable[str] = (),
    write: bool = True,
) -> Path:
    """Make ``folder`` this run's output folder, refusing one that holds another run's results.

    ``run`` identifies the run (command, method, checkpoint, input, ...); a folder whose marker
    records the same run is reused (a re-run replaces its own outputs). A folder with another
    marker, or with visible files and no marker, is refused unless ``overwrite``. Names in
    ``ignore`` (and hidden files) do not count as results. ``write=False`` only checks (call it
    before slow work, then again with ``write=True`` once there is something to write).
    """
    folder = check_output_dir(folder)
    run = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in run.items()}
    if folder.is_dir() and not overwrite:
        previous = read_run_marker(folder)
        skip = set(ignore) | {RUN_MARKER}
        content = [p.name for p in folder.iterdir() if p.name not in skip and not p.name.startswith(".")]
        if previous is not None and previous != run:
            differs = [k for k in sorted(set(previous) | set(run)) if previous.get(k) != run.get(k)]
            detail = ", ".join(f"{k}={previous.get(k)!r}" for k in differs[:3])
            raise InputError(
                f"output folder '{folder}' holds the results of another run ({detail}); pass --overwrite "
                "to replace them, or choose another folder"
            )
        if previous is None and content:
            raise InputError(
                f"output folder '{folder}' already holds {len(content)} file(s) egain did not record "
                f"writing (e.g. '{sorted(content)[0]}'); pass --overwrite to write into it anyway, or "
                "choose an empty folder"
            )
    if not write:
        return folder
    try:
        from egain.runtime.files import atomic_write_json

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / RUN_MARKER, run, sort_keys=True)
    except OSError as exc:
        raise InputError(f"cannot write into output folder '{folder}' ({exc.strerror or exc})") from None
    return folder


def output_names(files: Sequence[Path], suffix: str = ".png") -> list[str]:
    """The output file name of each input (its stem + ``suffix``); refuses two inputs sharing one."""
    seen: dict[str, Path] = {}
    names = []
    for f in files:
        name = f"{f.stem}{suffix}"
        if name in seen:
            raise InputError(
                f"'{seen[name]}' and '{f}' would both be written as '{name}'; rename one of them "
                "(outputs keep the source's name so that 'egain evaluate' can pair them)"
            )
        seen[name] = f
        names.append(name)
    return names

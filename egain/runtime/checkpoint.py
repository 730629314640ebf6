"""Safe, atomic, resumable checkpoints: the one place egain reads and writes weight files.

Reading never runs code. A ``.pt``/``.pth`` file is a pickle, and unpickling can call any function
the file names (``os.system`` included), so :func:`load_checkpoint` reads it with torch's
``weights_only`` unpickler plus a short allow-list of harmless types the published formats need
(:data:`SAFE_GLOBALS`: ``argparse.Namespace`` from rosinality ``train.py`` files, numpy arrays,
scalars and dtypes from RNG states). A file that asks for anything else is refused with one line
naming the file, the type and how to convert it; running it anyway is an explicit opt-in
(``trust=True``, ``EGAIN_TRUST_CHECKPOINTS=1`` or ``egain --trust-checkpoints``). ``.safetensors``
files are read and written natively (see :func:`save_safetensors`).

Writing is atomic: a checkpoint goes to a temporary sibling, is flushed and fsync'ed, then renamed
over the target, so a run killed mid-write leaves the previous checkpoint intact. A temporary file
left by a killed writer is removed by :func:`clean_stale_tmp`, which trainers call before writing.

Every way a file can be wrong (missing, truncated, not a torch file, another model's file, a tensor
of the wrong shape) becomes one :class:`~egain.errors.CheckpointError` line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import pickle
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egain.errors import CheckpointError

FORMAT_KEY = "egain_format"
#: environment switch that lets :func:`load_checkpoint` unpickle arbitrary (trusted) files
TRUST_ENV = "EGAIN_TRUST_CHECKPOINTS"
SAFETENSORS_SUFFIX = ".safetensors"
#: metadata key under which our safetensors files keep the non-tensor part of a checkpoint
_TREE_KEY = "egain_tree"

_trust_override: bool | None = None


def _numpy_globals() -> list[Any]:
    """numpy's pickle entry points, under the names both numpy 1 (``numpy.core``) and 2 write."""
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out.append(fn)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            out.append((fn, f"{module}.{fn.__name__}"))
    # numpy 2 pickles some dtypes through their class (numpy.dtypes.Float32DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.extend(
            getattr(dtypes, n)
            for n in dir(dtypes)
            if n.endswith("DType") and isinstance(getattr(dtypes, n), type)
        )
    return out


#: Types a checkpoint may name beyond what torch's weights-only unpickler allows already (tensors,
#: dicts, lists, tuples, sets, OrderedDict, torch dtypes/devices/sizes, ...). Each is data: building
#: it calls no user-chosen function.
SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,  # rosinality train.py 'args'
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    *_numpy_globals(),
]


class CheckpointRefused(CheckpointError):
    """A checkpoint that could only be read by running code it names; refused unless trusted."""


def trusted(trust: bool | None = None) -> bool:
    """Whether full (code-running) unpickling is allowed: argument, then CLI switch, then env."""
    if trust is not None:
        return bool(trust)
    if _trust_override is not None:
        return _trust_override
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def trust_checkpoints(value: bool = True) -> Iterator[None]:
    """Within the block, loaders behave as with ``trust=value`` (``egain --trust-checkpoints``)."""
    global _trust_override
    previous, _trust_override = _trust_override, value
    try:
        yield
    finally:
        _trust_override = previous


# --------------------------------------------------------------------------------------------------
# writing


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file at ``path``.

    A ``path`` ending in ``.safetensors`` is written as safetensors instead (see
    :func:`save_safetensors`), so every saver of egain offers that format for free.
    """
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return save_safetensors(obj, path)
    with _atomic_target(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it over ``path`` when the block succeeds."""
    if path.is_dir():
        raise CheckpointError(f"cannot write checkpoint '{path}': it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def clean_stale_tmp(target: str | os.PathLike, older_than: float | None = None) -> list[Path]:
    """Remove temporary files a killed atomic write left behind; returns what was removed.

    ``target`` is a file (its ``.NAME.PID.tmp`` / ``.NAME.tmp[.EXT]`` siblings go) or a run folder
    (every such hidden ``.*.tmp[.EXT]`` file in it, not recursively). Only files last modified before
    ``older_than`` (default: this process's start) are removed, so a write in progress by another
    live process of the same run is left alone.
    """
    target = Path(target)
    if target.is_dir():
        folder, pattern = target, re.compile(r"^\..+\.tmp(\.\w+)?$")
    else:
        folder, pattern = target.parent, re.compile(rf"^\.{re.escape(target.name)}(\.\d+)?\.tmp(\.\w+)?$")
    if not folder.is_dir():
        return []
    cutoff = _process_start() if older_than is None else older_than
    removed = []
    for p in folder.iterdir():
        if pattern.match(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed.append(p)
    return removed


def _process_start() -> float:
    """Wall-clock start of this process (Linux /proc; otherwise the import time of this module)."""
    try:
        ticks = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORT_TIME


_IMPORT_TIME = time.time()


def save_safetensors(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a (possibly nested) checkpoint dict as ``.safetensors``, atomically.

    Tensors are stored under their ``/``-joined key path; everything else (configs, numbers,
    strings, lists) goes into the file's metadata as JSON, with a placeholder for each tensor, so
    :func:`load_checkpoint` rebuilds the same dict. A flat dict of tensors is an ordinary
    safetensors state dict that other tools read too.
    """
    from safetensors.torch import save_file

    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"cannot write '{path}' as safetensors: expected a dict, got {type(obj).__name__}"
        )
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(obj, (), tensors)
    flat = all(isinstance(v, torch.Tensor) for v in obj.values()) and all(isinstance(k, str) for k in obj)
    metadata = None if flat else {_TREE_KEY: json.dumps(tree)}
    path = Path(path)
    with _atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _encode(value: Any, key: tuple[str, ...], tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        name = "/".join(key) or "tensor"
        while name in tensors:
            name += "_"
        t = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        tensors[name] = t.detach().cpu().contiguous().clone()
        return {"__tensor__": name, "numpy": isinstance(value, np.ndarray)}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, (*key, k), tensors) for k, v in value.items()}
        return {
            "__items__": [
                [_encode(k, key, {}), _encode(v, (*key, str(k)), tensors)] for k, v in value.items()
            ]
        }
    if isinstance(value, argparse.Namespace):
        return {"__namespace__": _encode(vars(value), key, tensors)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, (*key, str(i)), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, (*key, str(i)), tensors) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(
        f"cannot write {type(value).__name__} at '{'/'.join(key)}' to safetensors "
        "(only tensors, numbers, strings, lists and dicts)"
    )


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        t = tensors[value["__tensor__"]]
        return t.numpy() if value.get("numpy") else t
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if "__namespace__" in value:
        return argparse.Namespace(**_decode(value["__namespace__"], tensors))
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dtype__" in value:
        return getattr(torch, value["__dtype__"])
    return {k: _decode(v, tensors) for k, v in value.items()}


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte little-endian header length followed by a JSON object."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        metadata = fh.metadata() or {}
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    if _TREE_KEY in metadata:
        return _decode(json.loads(metadata[_TREE_KEY]), tensors)
    return tensors


# --------------------------------------------------------------------------------------------------
# reading


def load_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    what: str = "checkpoint",
    required_keys: Iterable[str] = (),
    trust: bool | None = None,
    allow_tensor: bool = False,
) -> dict:
    """Load a checkpoint dict (``.pt``/``.pth`` or ``.safetensors``) without running code from it.

    ``allow_tensor=True`` also accepts a file holding one bare tensor (the e4e/HFGI edit directions
    ``age.pt``), returned as ``{"tensor": t}``.

    ``trust=True`` (or ``EGAIN_TRUST_CHECKPOINTS=1``) unpickles fully, which runs whatever code the
    file names: only for files you trust. Every failure is one :class:`CheckpointError` line.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a folder; expected a .pt or .safetensors file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{what} '{path}' is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes); was its download or copy interrupted?")
    if _is_safetensors(path):
        try:
            obj: Any = _load_safetensors(path, map_location)
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(
                f"{what} '{path}' is not a readable safetensors file ({_short(exc)})"
            ) from None
    elif trusted(trust):
        try:
            obj = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:
            raise CheckpointError(
                f"{what} '{path}' is corrupt or not a PyTorch file ({_short(exc)})"
            ) from None
    else:
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
                obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            wanted = _unsafe_names(path, exc)
            if wanted is None:
                raise CheckpointError(
                    f"{what} '{path}' is corrupt or not a PyTorch file (its data is no readable weights pickle)"
                ) from None
            raise CheckpointRefused(refusal_message(path, what, wanted)) from None
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(
                f"{what} '{path}' is corrupt or not a PyTorch file ({_short(exc)})"
            ) from None
    if allow_tensor and isinstance(obj, torch.Tensor):
        obj = {"tensor": obj}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} '{path}' holds a {type(obj).__name__}; expected a dict of weights")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise CheckpointError(
            f"{what} '{path}' lacks {', '.join(repr(k) for k in missing)} (has: {', '.join(map(str, list(obj)[:12]))})"
        )
    return obj


def refusal_message(path: Path, what: str, wanted: list[str]) -> str:
    """The one line for a file that names code: which file, which type, how to convert it."""
    names = ", ".join(f"'{n}'" for n in wanted[:3]) + (
        f" (+{len(wanted) - 3} more)" if len(wanted) > 3 else ""
    )
    return (
        f"{what} '{path}' refused: it needs {names}, which egain does not unpickle because loading it "
        f"could run code. If you trust the file, convert it once with 'egain checkpoint convert {path} "
        f"{path.with_suffix(SAFETENSORS_SUFFIX)} --trust' (or allow it for one run: egain "
        f"--trust-checkpoints ..., env {TRUST_ENV}=1, Python trust=True)"
    )


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)|Unsupported global: ([\w.]+)")


def _unsafe_names(path: Path, exc: Exception) -> list[str] | None:
    """The globals a refused file asks for, or None when the failure is not a refusal (corrupt file).

    Names are read without unpickling: torch's scanner for zip checkpoints, ``pickletools`` for a
    bare pickle, the error text as a last resort.
    """
    allowed = {_global_name(g) for g in SAFE_GLOBALS}
    names: list[str] = []
    with contextlib.suppress(Exception):
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    if not names:
        names = _pickle_globals(path)
    if not names:
        names = [next(x for x in m if x) for m in _GLOBAL_RE.findall(str(exc))]
    names = [n for n in dict.fromkeys(names) if n not in allowed and n not in _torch_allowed()]
    return names or None


def _torch_allowed() -> set[str]:
    with contextlib.suppress(Exception):
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    return set()


def _pickle_globals(path: Path, limit: int = 64 << 20) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in a bare pickle file (parsed, never run)."""
    import io
    import pickletools

    with open(path, "rb") as fh:
        data = io.BytesIO(fh.read(limit))
    names: list[str] = []
    strings: list[str] = []
    while data.tell() < len(data.getbuffer()):  # legacy torch files are several pickles in a row
        try:
            for op, arg, _ in pickletools.genops(data):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    names.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:
            break
    return names


def _global_name(g: Any) -> str:
    if isinstance(g, tuple):
        return g[1]
    return f"{g.__module__}.{g.__qualname__}"


def _short(exc: BaseException, limit: int = 200) -> str:
    """One line of an exception, cut to ``limit`` characters (torch's messages run to pages)."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, trust: bool = False) -> Path:
    """Rewrite ``src`` as a file egain loads safely (``.safetensors``, or ``.pt`` of plain data).

    With ``trust=True`` the source is fully unpickled (its code runs: only for files you trust);
    modules become state dicts and other objects their attribute dicts, so nothing executable is
    left in ``dst``.
    """
    obj = load_checkpoint(src, what="checkpoint to convert", trust=trust)
    return atomic_torch_save(_plain(obj), dst)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray | np.generic | argparse.Namespace | str | bytes):
        return value
    if isinstance(value, nn.Module):
        return {k: v.detach().cpu() for k, v in value.state_dict().items()}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if value is None or isinstance(value, bool | int | float | torch.dtype | torch.Size):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "state_dict") and callable(value.state_dict):
        return _plain(value.state_dict())
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


# --------------------------------------------------------------------------------------------------
# state dicts


def float32_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with float16/bfloat16 tensors up-cast to float32.

    Bundled models may be stored in half precision (``egain zoo add --half``, half the bytes); egain's
    models run in float32, and a half tensor assigned as a buffer (``latent_avg``) would otherwise
    turn later arithmetic into float16.
    """
    return {
        k: v.float() if isinstance(v, torch.Tensor) and v.dtype in (torch.float16, torch.bfloat16) else v
        for k, v in state.items()
    }


def load_state_checked(
    module: nn.Module, state: Mapping[str, Any], where: str, *, strict: bool = True
) -> tuple[list[str], list[str]]:
    """``module.load_state_dict`` whose shape mismatches are one CheckpointError line.

    torch reports every mismatching tensor in one multi-page ``RuntimeError``; this names ``where``
    (the file) and the first mismatching key with both shapes. Returns (missing, unexpected) as
    ``load_state_dict`` does when ``strict=False``.
    """
    own = module.state_dict()
    for k, v in state.items():
        mine = own.get(k)
        if mine is None:
            continue
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{where}: key '{k}' holds a {type(v).__name__}; expected a tensor")
        if tuple(v.shape) != tuple(mine.shape):
            raise CheckpointError(
                f"{where}: key '{k}' has shape {list(v.shape)}; the model expects {list(mine.shape)} "
                "(a checkpoint of another size or configuration?)"
            )
    try:
        result = module.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"{where} does not fit the model ({_short(exc)})") from None
    return list(result.missing_keys), list(result.unexpected_keys)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

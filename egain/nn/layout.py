"""Memory format of activations and convolution weights: NCHW ("contiguous") or NHWC ("channels_last").

Why it matters: on CPU, oneDNN's convolutions run natively on channels_last tensors. On NCHW
tensors it reorders activations into its blocked layout and back, and for some ops it picks
slower kernels. Measured with one thread (torch 2.13 CPU build, numbers in docs/generators.md):
the depthwise FIR blurs of the generator are about 2.5x faster in channels_last, its 3x3 convs
at 32-128 channels take 0.7-0.8x the time, and the IR-SE50 e4e encoder at 256 px 0.95x. So CPU
defaults to channels_last. Other devices keep NCHW: it is the float32 default there, and on an
H100 channels_last synthesis was no faster (SWAGAN 1024 px batch 1: 82-85 against 94-98 img/s in
NCHW; 64-256 px within noise; ``benchmarks/bench_generators.py --device cuda``).

A model's memory format is one of :data:`MEMORY_FORMATS`:

* ``"auto"``: channels_last on CPU, contiguous anywhere else (resolved for the model's device);
* ``"channels_last"`` / ``"contiguous"``: forced, e.g. to compare the two.

How a model follows it depends on the model. Convolutions run in channels_last when their input
*or* their weight is channels_last. The generator converts its activations at entry and keeps
channels_last copies of its weights in its inference caches (``Generator.set_memory_format``).
Encoders convert the weights themselves, once (:func:`convert_weights`), so there is no per-call
weight reorder. With NCHW weights and channels_last inputs, that reorder made the e4e encoder
(1 GB of weights) slower than plain NCHW. The outputs callers see stay ordinary contiguous tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from egain.errors import EgainError

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def check_memory_format(memory_format: str) -> str:
    """``memory_format`` itself, or an error naming the valid choices."""
    if memory_format not in MEMORY_FORMATS:
        raise EgainError(f"memory format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    return memory_format


def wants_channels_last(memory_format: str, device: torch.device | str) -> bool:
    """Whether ``memory_format`` means channels_last on ``device`` ("auto": only on CPU)."""
    check_memory_format(memory_format)
    if memory_format == "auto":
        return torch.device(device).type == "cpu"
    return memory_format == "channels_last"


def torch_memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def is_channels_last(x: torch.Tensor) -> bool:
    """Strictly channels_last: NHWC strides, and not also plain contiguous (C == 1 or 1x1 maps are both)."""
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def convert_weights(module: nn.Module, channels_last: bool) -> nn.Module:
    """Lay out every 4-D parameter and buffer of ``module`` in channels_last or NCHW memory, in place.

    The Parameter objects stay the same (``Module.to`` swaps their ``.data``), so optimisers, state
    dicts and checkpoints are unaffected: a state dict saved from one layout loads into the other.
    Convert before building optimisers or wrapping in DDP, whose gradient buckets assume a fixed layout.
    """
    return module.to(memory_format=torch_memory_format(channels_last))


def plain(obj):
    """``obj`` with every tensor in it (nested dicts, lists, tuples) made ordinary contiguous NCHW.

    Used at the exit of channels_last pipelines so that callers never receive NHWC strides, which
    would surprise code that calls ``.view`` on the result. A tensor already contiguous is returned
    as is, with no copy.
    """
    if isinstance(obj, torch.Tensor):
        return obj.contiguous()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(plain(v) for v in obj)
    return obj

"""State-dict builders in the published layouts (IR-SE units, BatchNorm entries) and the functional
BatchNorm of the hand re-computations, shared by the published-weight import tests (e4e/HFGI, pSp/
ReStyle, E2Style/DSE, parsing). Random weights come from torch's global RNG, in a fixed call order."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def bn(prefix, c):
    return {
        f"{prefix}.weight": torch.rand(c) + 0.5,
        f"{prefix}.bias": torch.randn(c) * 0.1,
        f"{prefix}.running_mean": torch.randn(c) * 0.1,
        f"{prefix}.running_var": torch.rand(c) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def conv(shape):
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(shape) / math.sqrt(fan_in)


def ir_unit(prefix, cin, d, se):
    sd = {}
    if cin != d:
        sd[f"{prefix}.shortcut_layer.0.weight"] = conv((d, cin, 1, 1))
        sd |= bn(f"{prefix}.shortcut_layer.1", d)
    sd |= bn(f"{prefix}.res_layer.0", cin)
    sd[f"{prefix}.res_layer.1.weight"] = conv((d, cin, 3, 3))
    sd[f"{prefix}.res_layer.2.weight"] = torch.full((d,), 0.25)
    sd[f"{prefix}.res_layer.3.weight"] = conv((d, d, 3, 3))
    sd |= bn(f"{prefix}.res_layer.4", d)
    if se:
        sd[f"{prefix}.res_layer.5.fc1.weight"] = conv((d // 16, d, 1, 1))
        sd[f"{prefix}.res_layer.5.fc2.weight"] = conv((d, d // 16, 1, 1))
    return sd


def irse_body(input_nc: int, units: Sequence[int], widths: Sequence[int], stem: int = 16) -> dict:
    """The published ``input_layer`` (conv, BN, PReLU) and ``body`` of bottleneck_IR_SE units."""
    sd = {
        "input_layer.0.weight": conv((stem, input_nc, 3, 3)),
        **bn("input_layer.1", stem),
        "input_layer.2.weight": torch.full((stem,), 0.25),
    }
    i, cin = 0, stem
    for n, w in zip(units, widths, strict=True):
        for _ in range(n):
            sd |= ir_unit(f"body.{i}", cin, w, se=True)
            cin, i = w, i + 1
    return sd


def style_head(j: int, spatial: int, in_c: int, dim: int) -> dict:
    """pSp's ``styles.{j}`` (GradualStyleBlock): log2(spatial) stride-2 convs, then an EqualLinear."""
    sd, c = {}, in_c
    for k in range(int(math.log2(spatial))):
        sd[f"styles.{j}.convs.{2 * k}.weight"] = conv((dim, c, 3, 3))
        sd[f"styles.{j}.convs.{2 * k}.bias"] = torch.randn(dim) * 0.1
        c = dim
    sd[f"styles.{j}.linear.weight"] = torch.randn(dim, dim)
    sd[f"styles.{j}.linear.bias"] = torch.randn(dim) * 0.1
    return sd


def prefixed(prefix, sd):
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def ref_bn(x, sd, p):
    """Eval-mode BatchNorm with the published entries ``p.running_mean/var/weight/bias``."""
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        False,
        0.0,
        1e-5,
    )

"""Import of the official e4e and HFGI checkpoints (reference secs. 0, 4, 5).

Published files are ``{'state_dict': {encoder.*, decoder.*, [residue.*, grid_align.*]}, 'opts',
'latent_avg'}``. The architecture is read from the tensors themselves (stage widths and unit counts
of the IR-SE body, number of ``map2style`` convs per style, widths of the consultation encoder and
ADA), so the same converter serves the full-size files and any smaller model in the same layout.

Key map (published -> ours):

=====================================  ====================================================
``encoder.input_layer.*``              ``basic_encoder.body.input_layer.*``
``encoder.body.{i}.*``                 ``basic_encoder.body.body.{i}.*``
``encoder.styles.{j}.convs.*``         ``basic_encoder.heads.{j}.convs.*``
``encoder.styles.{j}.linear.*``        ``basic_encoder.heads.{j}.linear.*``
``encoder.latlayer1.*`` / ``2``        ``basic_encoder.lateral_mid.*`` / ``lateral_fine.*``
``residue.conv_layer{1,2,3}.*``        ``delta_encoder.conv_layer{1,2,3}.*``
``residue.condition_scale3.{0,2}.*``   ``fusion.scale_heads.up64.layers.{0,2}.*``
``residue.condition_shift3.{0,2}.*``   ``fusion.shift_heads.up64.layers.{0,2}.*``
``grid_align.*``                       ``aligner.*`` (published forward: no skip)
``decoder.*``                          the generator (``egain.generators`` converter)
``latent_avg`` [n, 512]                ``latent_avg``
=====================================  ====================================================

HFGI injects its conditions after ``convs.6`` (loop index i == 7), the up-sampling conv making the
64x64 map: ``up64`` in our generator's names. The released EGAIN checkpoint (pSp encoder + a 387M
parameter external MLP, reference sec. 7) is a different architecture from the paper's ``egain``
and is refused with an explanation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from egain.errors import CheckpointError
from egain.methods import generator_io
from egain.methods.components import layer_key

HFGI_FUSION_LAYER = "up64"
PUBLISHED_AT = {
    "e4e": "https://github.com/omertov/encoder4editing (e4e_ffhq_encode.pt)",
    "hfgi": "https://github.com/Tengfei-Wang/HFGI (ckpt.pt)",
}


def split_prefixes(ckpt: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """``{'encoder': {...}, 'decoder': {...}, ...}`` from the flat published state dict."""
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, Mapping):
        raise CheckpointError("published checkpoint 'state_dict' is not a dict of tensors")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        prefix, dot, rest = str(key).partition(".")
        if dot:
            parts.setdefault(prefix, {})[rest] = value
    return parts


# ------------------------------------------------------------------------------------------------
# architecture inference


def e4e_encoder_config(enc: Mapping[str, torch.Tensor], where: str) -> dict[str, Any]:
    """E4EEncoder constructor options that reproduce the published encoder's tensors."""
    if "input_layer.0.weight" not in enc or not any(k.startswith("styles.") for k in enc):
        raise CheckpointError(
            f"{where} has no e4e encoder (expected encoder.input_layer.*, encoder.styles.*)"
        )
    # A stage starts where the unit width changes (true of every published body: 64/128/256/512);
    # strides themselves leave no trace in the keys (a same-width unit has a parameter-free shortcut).
    n_units = 1 + max(int(k.split(".")[1]) for k in enc if k.startswith("body."))
    widths: list[int] = []
    units: list[int] = []
    for i in range(n_units):
        depth = int(enc[f"body.{i}.res_layer.1.weight"].shape[0])
        stride2 = i == 0 or depth != widths[-1]
        if stride2:
            widths.append(depth)
            units.append(1)
        else:
            units[-1] += 1
    if len(widths) != 4:
        raise CheckpointError(f"{where}: encoder body has {len(widths)} stages; the e4e FPN needs 4")
    n_styles = 1 + max(int(k.split(".")[1]) for k in enc if k.startswith("styles."))
    n_convs = [
        sum(1 for k in enc if re.fullmatch(rf"styles\.{j}\.convs\.\d+\.weight", k)) for j in range(n_styles)
    ]
    coarse = sum(1 for c in n_convs if c == n_convs[0])
    middle = coarse + sum(1 for c in n_convs if c == n_convs[0] + 1)
    style_dim = int(enc["styles.0.linear.weight"].shape[0])
    return {
        "n_styles": n_styles,
        "style_dim": style_dim,
        "input_size": 16 * 2 ** n_convs[0],
        "units": tuple(units),
        "widths": tuple(widths),
        "stem_channels": int(enc["input_layer.0.weight"].shape[0]),
        "input_nc": int(enc["input_layer.0.weight"].shape[1]),
        "se": any(".res_layer.5." in k for k in enc),
        "coarse_index": coarse,
        "middle_index": middle,
        "head_channels": int(enc["styles.0.convs.0.weight"].shape[0]) if n_convs[0] else None,
    }


def _first_unit_width(sd: Mapping[str, torch.Tensor], stage: str) -> int:
    return int(sd[f"{stage}.0.res_layer.1.weight"].shape[0])


def consultation_config(res: Mapping[str, torch.Tensor], where: str) -> tuple[dict, dict]:
    if "conv_layer1.0.weight" not in res or "condition_scale3.0.weight" not in res:
        raise CheckpointError(
            f"{where} has no HFGI consultation encoder (expected residue.conv_layer1.*, residue.condition_scale3.*)"
        )
    units = 1 + max(int(k.split(".")[1]) for k in res if k.startswith("conv_layer2."))
    enc = {
        "widths": (
            int(res["conv_layer1.0.weight"].shape[0]),
            _first_unit_width(res, "conv_layer2"),
            _first_unit_width(res, "conv_layer3"),
        ),
        "units_per_stage": units,
        "in_channels": int(res["conv_layer1.0.weight"].shape[1]),
    }
    fusion = {
        "hidden": int(res["condition_scale3.0.weight"].shape[0]),
        "bias": "condition_scale3.0.bias" in res,
    }
    return enc, fusion


def ada_config(ada: Mapping[str, torch.Tensor]) -> dict:
    return {
        "widths": (
            int(ada["conv_layer1.0.weight"].shape[0]),
            _first_unit_width(ada, "conv_layer2"),
            _first_unit_width(ada, "conv_layer3"),
            _first_unit_width(ada, "conv_layer4"),
        ),
        "skip": False,
    }


# ------------------------------------------------------------------------------------------------
# key maps


def encoder_to_ours(
    enc: Mapping[str, torch.Tensor], prefix: str = "basic_encoder."
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in enc.items():
        if key.startswith(("input_layer.", "body.")):
            new = f"body.{key}"
        elif key.startswith("styles."):
            new = "heads." + key[len("styles.") :]
        elif key.startswith("latlayer1."):
            new = "lateral_mid." + key[len("latlayer1.") :]
        elif key.startswith("latlayer2."):
            new = "lateral_fine." + key[len("latlayer2.") :]
        else:
            new = f"<unknown>{key}"
        out[prefix + new] = value
    return out


def encoder_to_published(
    state: Mapping[str, torch.Tensor], prefix: str = "basic_encoder."
) -> dict[str, torch.Tensor]:
    """Our basic encoder's tensors under the published ``encoder.*`` names (export, key-count checks)."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix) :]
        if k.startswith("body."):
            k = k[len("body.") :]
        elif k.startswith("heads."):
            k = "styles." + k[len("heads.") :]
        elif k.startswith("lateral_mid."):
            k = "latlayer1." + k[len("lateral_mid.") :]
        elif k.startswith("lateral_fine."):
            k = "latlayer2." + k[len("lateral_fine.") :]
        out["encoder." + k] = value
    return out


def residue_to_ours(
    res: Mapping[str, torch.Tensor], layer: str = HFGI_FUSION_LAYER
) -> dict[str, torch.Tensor]:
    out = {}
    key_l = layer_key(layer)
    for key, value in res.items():
        m = re.fullmatch(r"condition_(scale|shift)3\.(\d+)\.(weight|bias)", key)
        if m:
            out[f"fusion.{m.group(1)}_heads.{key_l}.layers.{m.group(2)}.{m.group(3)}"] = value
        else:
            out[f"delta_encoder.{key}"] = value
    return out


def residue_to_published(
    state: Mapping[str, torch.Tensor], layer: str = HFGI_FUSION_LAYER
) -> dict[str, torch.Tensor]:
    out = {}
    key_l = layer_key(layer)
    for key, value in state.items():
        if key.startswith("delta_encoder."):
            out["residue." + key[len("delta_encoder.") :]] = value
        m = re.fullmatch(rf"fusion\.(scale|shift)_heads\.{key_l}\.layers\.(\d+)\.(weight|bias)", key)
        if m:
            out[f"residue.condition_{m.group(1)}3.{m.group(2)}.{m.group(3)}"] = value
    return out


# ------------------------------------------------------------------------------------------------
# loading


def _generator_for(
    parts: Mapping, ckpt: Mapping, generator: Any, device: torch.device, where: str
) -> nn.Module:
    if generator is not None:
        return generator_io.load_generator(generator, device)
    if "decoder" not in parts:
        raise CheckpointError(
            f"{where} has no decoder.* weights; pass the generator with --generator / generator=..."
        )
    from egain.generators import generator_from_checkpoint

    return generator_from_checkpoint(
        {"state_dict": {f"decoder.{k}": v for k, v in parts["decoder"].items()}}, where
    ).to(device)


def _normalise(ckpt: Mapping) -> bool:
    opts = ckpt.get("opts")
    if isinstance(opts, Mapping) and "start_from_latent_avg" in opts:
        return bool(opts["start_from_latent_avg"])
    return True


def _basic_config(enc_cfg: dict, generator: nn.Module, where: str) -> dict[str, Any]:
    if enc_cfg["n_styles"] != generator.n_latent or enc_cfg["style_dim"] != generator.style_dim:
        raise CheckpointError(
            f"{where}: the encoder predicts {enc_cfg['n_styles']} x {enc_cfg['style_dim']} codes; the generator "
            f"({generator.size} px {generator_io.arch_of(generator)}) takes {generator.n_latent} x {generator.style_dim}"
        )
    basic = {
        "type": "e4e",
        **{k: v for k, v in enc_cfg.items() if k not in ("n_styles", "style_dim", "input_size")},
    }
    return {"basic_encoder": basic, "input_size": enc_cfg["input_size"]}


def basic_encoder_from_published(
    ckpt: Mapping[str, Any], generator: nn.Module, where: str = "checkpoint"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config overrides, state) for E_b and w-bar from a published e4e/HFGI/pSp-layout file."""
    parts = split_prefixes(ckpt)
    if "encoder" not in parts:
        raise CheckpointError(
            f"{where} has no encoder.* weights; expected a published e4e or HFGI checkpoint"
        )
    enc_cfg = e4e_encoder_config(parts["encoder"], where)
    overrides = _basic_config(enc_cfg, generator, where)
    overrides["normalise"] = _normalise(ckpt)
    state = encoder_to_ours(parts["encoder"])
    state["latent_avg"] = _latent_avg(ckpt, generator)
    return overrides, state


def _latent_avg(ckpt: Mapping, generator: nn.Module) -> torch.Tensor:
    avg = ckpt.get("latent_avg")
    return generator_io.as_wplus(
        avg if isinstance(avg, torch.Tensor) else generator_io.mean_latent(generator), generator
    )


def load_published(
    cls: type,
    ckpt: Mapping[str, Any],
    *,
    generator: Any = None,
    device: torch.device | str = "cpu",
    where: str = "checkpoint",
    with_residue: bool = False,
    **runtime: Any,
) -> nn.Module:
    """Build ``cls`` (the e4e or HFGI method class) from a published checkpoint dict.

    ``with_residue``: the file must carry HFGI's consultation encoder (``residue.*``) and fusion,
    and ADA (``grid_align.*``) when present.
    """
    dev = torch.device(device)
    parts = split_prefixes(ckpt)
    g = _generator_for(parts, ckpt, generator, dev, where)
    overrides, state = basic_encoder_from_published(ckpt, g, where)
    strict_prefixes = ["basic_encoder.", "latent_avg"]
    if with_residue:
        if "residue" not in parts:
            raise CheckpointError(
                f"{where} has no residue.* (consultation encoder) weights: it is not an HFGI checkpoint "
                f"(an e4e file loads with --method e4e). HFGI is published at {PUBLISHED_AT['hfgi']}"
            )
        enc, fusion = consultation_config(parts["residue"], where)
        overrides["delta_encoder"] = {"type": "consultation", **enc}
        overrides["fusion"] = {
            "type": "internal",
            "layers": [HFGI_FUSION_LAYER],
            "zero_init": False,
            **fusion,
        }
        state.update(residue_to_ours(parts["residue"]))
        strict_prefixes += ["delta_encoder.", "fusion."]
        if "grid_align" in parts:
            overrides["aligner"] = {"type": "ada", **ada_config(parts["grid_align"])}
            state.update({f"aligner.{k}": v for k, v in parts["grid_align"].items()})
            strict_prefixes.append("aligner.")
        else:
            overrides["aligner"] = None
    overrides.update(runtime)
    method = cls(generator=g, latent_avg=state["latent_avg"], **overrides)
    _strict_load(method, state, strict_prefixes, where)
    return method.to(dev)


def _strict_load(method: nn.Module, state: dict[str, torch.Tensor], prefixes: list[str], where: str) -> None:
    own = {k: v for k, v in method.state_dict().items() if k.startswith(tuple(prefixes))}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected:
        raise CheckpointError(
            f"{where}: published key for '{unexpected[0]}' has no place in the model ({len(unexpected)} in all)"
        )
    if missing:
        raise CheckpointError(f"{where} lacks the published key for '{missing[0]}' ({len(missing)} in all)")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}: '{k}' has shape {list(state[k].shape)}; expected {list(v.shape)}"
            )
    method.load_state_dict(state, strict=False)

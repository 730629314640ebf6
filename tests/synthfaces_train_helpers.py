"""The tiny run of the synthfaces trainers (attributes, parsing) their tests share: 32 px, 24x2
training identities, four steps of four images, no evaluation before the end, a log record per step."""

from __future__ import annotations

from typing import Any


def tiny_train_config(config_cls: type, out, net: dict, eval_identities: int, **kw) -> Any:
    """``config_cls`` (``AttributeTrainConfig``/``ParsingTrainConfig``) for the tiny run in ``out``;
    ``kw`` overrides any field."""
    base = dict(
        out=str(out),
        data="synthfaces:24x2",
        size=32,
        steps=4,
        batch=4,
        warmup=1,
        eval_identities=eval_identities,
        eval_per_identity=1,
        eval_every=0,
        ckpt_every=100,
        log_every=1,
        device="cpu",
        net=net,
    )
    base.update(kw)
    return config_cls(**base)

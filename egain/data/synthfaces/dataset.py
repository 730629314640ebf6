"""The on-the-fly torch Dataset of synthfaces (no disk; same pixels as ``egain data synthfaces``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from egain.errors import InputError

from .params import split_of
from .recipes import (
    EVAL_COUNT,
    HARD_COUNT,
    SPLITS,
    check_count,
    check_rates,
    check_seed,
    check_size,
    eval_identities,
    hard_identities,
    render_item,
)


class SynthFacesDataset(Dataset):
    """Map-style dataset rendering synthfaces on the fly (no disk).

    Item ``i`` is image ``i % per_identity`` of the ``i // per_identity``-th selected identity;
    ``identities`` is a count N (ids 0..N-1) or an explicit sequence of ids, filtered by ``split``
    ('train' / 'val' / 'test' or None for all). Items are ``(image (3,H,W) float in [-1,1],
    identity)``, or ``(image, identity, labels)`` with ``return_labels=True`` (use
    :func:`collate_with_labels` in a DataLoader then). ``return_parsing=True`` appends the
    per-pixel class map, a LongTensor (H, W) of :data:`~egain.data.synthfaces.parsing.PARSING_CLASSES`
    indices: ``(image, identity, parsing)`` or ``(image, identity, labels, parsing)``. Pixels (and
    maps) equal those written by ``egain data synthfaces [--parsing]`` with the same parameters.
    """

    def __init__(
        self,
        identities: int | Sequence[int] = 1000,
        per_identity: int = 10,
        size: int = 64,
        seed: int = 0,
        split: str | None = None,
        rare_rate: float | dict | None = None,
        *,
        return_labels: bool = False,
        return_parsing: bool = False,
        force_rare: bool = False,
        supersample: int = 2,
    ):
        self.size = check_size(size)
        self.seed = check_seed(seed)
        self.per_identity = check_count(per_identity, "per_identity")
        if isinstance(identities, int | np.integer) and not isinstance(identities, bool):
            ids = range(check_count(identities, "identities"))
        else:
            ids = [check_count(i, "identity id", 0) for i in identities]
        if split not in (None, "all", *SPLITS):
            raise InputError(f"split must be one of train, val, test or all, got {split!r}")
        self.split = None if split == "all" else split
        self.identity_ids = [i for i in ids if self.split is None or split_of(self.seed, i) == self.split]
        self.rates = check_rates(rare_rate)
        self.return_labels = return_labels
        self.return_parsing = return_parsing
        self.force_rare = force_rare
        self.supersample = check_count(supersample, "supersample")

    @classmethod
    def eval_set(
        cls, seed: int = 0, size: int = 64, count: int = EVAL_COUNT, *, replicate: int = 0, **kw
    ) -> SynthFacesDataset:
        """The fixed evaluation recipe: ``count`` held-out identities, one image each
        (``replicate`` k: the k-th disjoint further draw, see ``recipes``)."""
        return cls(eval_identities(seed, count, replicate), 1, size, seed, **kw)

    @classmethod
    def hard_set(
        cls, seed: int = 0, size: int = 64, count: int = HARD_COUNT, *, replicate: int = 0, **kw
    ) -> SynthFacesDataset:
        """The fixed hard recipe: ``count`` further held-out identities, each with a rare detail."""
        return cls(hard_identities(seed, count, replicate), 1, size, seed, force_rare=True, **kw)

    def __len__(self) -> int:
        return len(self.identity_ids) * self.per_identity

    def key(self, index: int) -> tuple[int, int]:
        """(identity, variation) of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        return self.identity_ids[index // self.per_identity], index % self.per_identity

    def render(self, index: int, parsing: bool = False):
        """Item ``index`` as uint8 (H, W, 3) and its labels (and its uint8 class map, with
        ``parsing=True``)."""
        identity, variation = self.key(index)
        return render_item(
            self.seed,
            identity,
            variation,
            self.size,
            self.rates,
            self.force_rare,
            self.supersample,
            parsing=parsing,
        )

    def __getitem__(self, index: int):
        got = self.render(int(index), parsing=self.return_parsing)
        img, labels = got[0], got[1]
        x = torch.from_numpy(img).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        item = (x, labels["identity"], labels) if self.return_labels else (x, labels["identity"])
        if self.return_parsing:
            item += (torch.from_numpy(got[2].astype(np.int64)),)
        return item


def collate_with_labels(batch):
    """DataLoader collate for ``return_labels=True``: stacked images, identity tensor, label list
    (and stacked (N, H, W) parsing maps with ``return_parsing=True``)."""
    xs, ids, labels, *rest = zip(*batch, strict=True)
    out = (torch.stack(xs), torch.tensor(ids, dtype=torch.long), list(labels))
    return out + tuple(torch.stack(r) for r in rest)


def dataset_from_spec(spec: str, size: int | None = None, **kw) -> SynthFacesDataset:
    """Build a dataset from a short text spec, as used by ``--data synthfaces:SPEC`` options.

    ``SPEC`` is comma-separated ``key=value`` pairs (``identities``, ``per_identity``, ``size``,
    ``seed``, ``split``, ``rare_rate``, ``recipe`` = eval | hard, ``count``), optionally led by
    ``NxK`` (N identities, K images each): e.g. ``200x8,seed=1,split=train`` or ``recipe=eval``.
    """
    opts: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        if "=" in part:
            k, v = part.split("=", 1)
            opts[k.strip().replace("-", "_")] = v.strip()
        elif i == 0 and "x" in part:
            n, k = part.split("x", 1)
            opts["identities"], opts["per_identity"] = n, k
        elif i == 0:
            opts["identities"] = part
        else:
            raise InputError(f"synthfaces spec '{spec}': expected key=value, got '{part}'")
    known = {"identities", "per_identity", "size", "seed", "split", "rare_rate", "recipe", "count"}
    unknown = set(opts) - known
    if unknown:
        raise InputError(f"synthfaces spec '{spec}': unknown keys {sorted(unknown)}; known: {sorted(known)}")

    def as_int(key: str, default: int) -> int:
        try:
            return int(opts.get(key, default))
        except ValueError:
            raise InputError(f"synthfaces spec '{spec}': {key} must be an integer") from None

    size = as_int("size", size if size is not None else 64)
    seed = as_int("seed", 0)
    rare = opts.get("rare_rate")
    try:
        rare_rate = float(rare) if rare is not None else None
    except ValueError:
        raise InputError(f"synthfaces spec '{spec}': rare_rate must be a number") from None
    recipe = opts.get("recipe")
    if recipe == "eval":
        return SynthFacesDataset.eval_set(seed, size, as_int("count", EVAL_COUNT), rare_rate=rare_rate, **kw)
    if recipe == "hard":
        return SynthFacesDataset.hard_set(seed, size, as_int("count", HARD_COUNT), rare_rate=rare_rate, **kw)
    if recipe not in (None, "default"):
        raise InputError(f"synthfaces spec '{spec}': recipe must be eval or hard, got '{recipe}'")
    return SynthFacesDataset(
        as_int("identities", 1000),
        as_int("per_identity", 10),
        size,
        seed,
        opts.get("split"),
        rare_rate,
        **kw,
    )

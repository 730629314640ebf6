"""Identity-labelled face images for training and verifying embedding networks.

Two sources, one in-memory form (:class:`FaceSet`: uint8 images + integer identity labels):

* a folder in the synthfaces format -- ``DIR/*.png`` + ``DIR/labels.jsonl`` with one JSON object
  per image carrying at least ``file`` and ``identity`` (``split`` is kept but not required);
* ``synthfaces:SPEC`` -- images rendered on the fly by :mod:`egain.data.synthfaces`.

Verification must use identities the network never saw, whatever a dataset's image-level splits
say, so :func:`split_identities` holds out a deterministic subset of *identities* (the last
fraction of the sorted identity list); training and evaluation call it with the same arguments and
therefore agree on which identities are held out.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egain.errors import InputError
from egain.utils.images import load_image


@dataclass
class FaceSet:
    """Images (N, 3, S, S) uint8 and identity names; ``labels`` are indices into ``identities``."""

    images: torch.Tensor
    labels: torch.Tensor
    identities: list[str]
    files: list[str] | None = None
    identity_split: dict[str, str] | None = None  # when every identity lies in one split (synthfaces)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        x = self.images if index is None else self.images[index]
        return x.float().div_(127.5).sub_(1.0)

    def subset(self, identity_names: list[str]) -> FaceSet:
        """Images of the given identities, relabelled 0..K-1 in the given order."""
        keep = {name: i for i, name in enumerate(identity_names)}
        old_to_new = torch.tensor([keep.get(name, -1) for name in self.identities], dtype=torch.long)
        new_labels = old_to_new[self.labels]
        mask = new_labels >= 0
        idx = torch.nonzero(mask).squeeze(1)
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        split = {k: self.identity_split[k] for k in identity_names} if self.identity_split else None
        return FaceSet(self.images[idx], new_labels[idx], list(identity_names), files, split)


def split_identities(identities: list[str], holdout: float | int) -> tuple[list[str], list[str]]:
    """(train identities, held-out identities): the last ``holdout`` (a fraction < 1, or a count) of the sorted list."""
    names = sorted(identities, key=_natural_key)
    n = len(names)
    k = int(holdout) if holdout >= 1 else math.ceil(holdout * n)
    if holdout > 0:
        k = max(k, 2)
    if n - k < 2:
        raise InputError(
            f"{n} identities cannot be split into a training set (>= 2) and {k} held-out identities; "
            "use more identities or a smaller --holdout"
        )
    return names[: n - k], names[n - k :]


def holdout_identities(faces: FaceSet, holdout: str | float = "auto") -> tuple[list[str], list[str]]:
    """(train, held-out) identities by rule ``holdout``.

    ``"split"``: the identities whose ``split`` is not "train" (synthfaces assigns splits per
    identity, so its val/test identities are never trained on); ``"auto"``: that when the data has
    identity-level splits with at least two identities on each side, else a 10 % fraction; a number:
    a fraction (< 1) or count of the sorted identities, as :func:`split_identities`.
    """
    text = str(holdout)
    if text in ("auto", "split"):
        split = faces.identity_split or {}
        train = [n for n in faces.identities if split.get(n) == "train"]
        held = [n for n in faces.identities if n in split and split[n] != "train"]
        if len(train) >= 2 and len(held) >= 2:
            return train, held
        if text == "split":
            raise InputError(
                "--holdout split needs a 'split' per image that is the same for all images of an identity, "
                f"with >= 2 'train' and >= 2 other identities (found {len(train)} and {len(held)})"
            )
        return split_identities(faces.identities, 0.1)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--holdout must be 'auto', 'split', a fraction or a count; got '{text}'") from None
    return split_identities(faces.identities, value)


def _natural_key(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def read_labels(folder: str | os.PathLike) -> list[dict]:
    """The records of ``folder/labels.jsonl``; each must name its ``file`` and ``identity``."""
    folder = Path(folder)
    path = folder / "labels.jsonl"
    if not folder.is_dir():
        raise InputError(f"face data folder '{folder}' does not exist")
    if not path.is_file():
        raise InputError(
            f"'{folder}' has no labels.jsonl; expected one JSON object per image with 'file' and 'identity' "
            "(as written by 'egain data synthfaces'), or pass --data synthfaces:SPEC"
        )
    records = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict) or "file" not in rec or "identity" not in rec:
                raise InputError(f"{path}:{n} needs 'file' and 'identity' fields")
            records.append(rec)
    if not records:
        raise InputError(f"{path} lists no images")
    return records


def load_face_folder(
    folder: str | os.PathLike, size: int, splits: list[str] | None = None, progress_bar: bool = False
) -> FaceSet:
    """Decode a labelled folder into memory (uint8 at ``size`` px), optionally only some ``split`` values."""
    folder = Path(folder)
    records = read_labels(folder)
    if splits is not None:
        records = [r for r in records if str(r.get("split")) in splits]
        if not records:
            raise InputError(f"no image in '{folder}/labels.jsonl' has split in {splits}")
    identities = sorted({str(r["identity"]) for r in records}, key=_natural_key)
    index = {name: i for i, name in enumerate(identities)}
    images = torch.empty(len(records), 3, size, size, dtype=torch.uint8)
    items = range(len(records))
    if progress_bar:
        from egain.runtime.logging import progress

        items = progress(items, total=len(records), desc="loading faces", unit="img")
    for i in items:
        x = load_image(folder / records[i]["file"], size)
        images[i] = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    labels = torch.tensor([index[str(r["identity"])] for r in records], dtype=torch.long)
    splits_of: dict[str, set] = {}
    for r in records:
        splits_of.setdefault(str(r["identity"]), set()).add(str(r.get("split")))
    identity_split = None
    if all(len(v) == 1 and None not in v for v in splits_of.values()):
        identity_split = {k: next(iter(v)) for k, v in splits_of.items()}
    return FaceSet(images, labels, identities, [str(r["file"]) for r in records], identity_split)


def render_synthfaces(spec: str, size: int, progress_bar: bool = False) -> FaceSet:
    """Render the images of a ``synthfaces:SPEC`` into memory (see ``egain.data.synthfaces.dataset_from_spec``).

    The images are rendered at the training size directly; identity splits come from the renderer
    (synthfaces assigns train/val/test per identity), so ``--holdout auto`` holds out val/test
    identities when the spec renders them.
    """
    try:
        from egain.data.synthfaces import dataset_from_spec
    except ImportError:
        raise InputError(
            "on-the-fly synthfaces data needs egain.data.synthfaces, which is not in this build; "
            "render a folder with 'egain data synthfaces' and pass --data DIR"
        ) from None
    dataset = dataset_from_spec(spec, size=size)
    n = len(dataset)
    if n == 0:
        raise InputError(f"synthfaces spec '{spec}' selects no images")
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    idents: list[int] = []
    split: dict[str, str] = {}
    items = range(n)
    if progress_bar:
        from egain.runtime.logging import progress

        items = progress(items, total=n, desc="rendering synthfaces", unit="img")
    for i in items:
        img, labels = dataset.render(i)
        if img.shape[0] != size:
            raise InputError(
                f"synthfaces spec '{spec}' renders {img.shape[0]} px images; expected {size} (drop size=)"
            )
        images[i] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        idents.append(int(labels["identity"]))
        if "split" in labels:
            split[str(labels["identity"])] = str(labels["split"])
    uniq = sorted(set(idents))
    remap = {v: i for i, v in enumerate(uniq)}
    labels_t = torch.tensor([remap[v] for v in idents], dtype=torch.long)
    names = [str(v) for v in uniq]
    return FaceSet(images, labels_t, names, None, split if len(split) == len(names) else None)


def load_faces(data: str, size: int, splits: list[str] | None = None, progress_bar: bool = False) -> FaceSet:
    """``DIR`` (labelled folder) or ``synthfaces:SPEC``."""
    if data.startswith("synthfaces:"):
        return render_synthfaces(data.split(":", 1)[1], size, progress_bar=progress_bar)
    return load_face_folder(data, size, splits=splits, progress_bar=progress_bar)


def augment(images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Light augmentation for identity training: random horizontal flip and integer shifts (edge padding).

    Faces in synthfaces are centred; small shifts teach tolerance to the misalignment that GAN
    reconstructions and crops show, without changing the identity.
    """
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.where(flip.view(n, 1, 1, 1).to(images.device), images.flip(3), images)
    if max_shift > 0:
        padded = torch.nn.functional.pad(out, (max_shift,) * 4, mode="replicate")
        dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(images.device)
        dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(images.device)
        # One gather for the whole batch (a per-image slice loop costs n kernel launches on a GPU).
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        chans = torch.arange(padded.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, chans, rows, cols]
    return out


def balanced_subset_indices(labels: np.ndarray, per_identity: int, seed: int = 0) -> np.ndarray:
    """At most ``per_identity`` images of each identity (for a bounded verification set)."""
    rng = np.random.default_rng(seed)
    out = []
    for ident in np.unique(labels):
        idx = np.flatnonzero(labels == ident)
        if idx.size > per_identity:
            idx = np.sort(rng.choice(idx, per_identity, replace=False))
        out.append(idx)
    return np.concatenate(out)

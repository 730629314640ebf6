"""synthfaces: determinism, labels that agree with pixels, splits, recipes, CLI and input errors."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from egain.cli.main import main
from egain.data.synthfaces import (
    RARE_KINDS,
    SynthFacesDataset,
    collate_with_labels,
    dataset_from_spec,
    eval_identities,
    hard_identities,
    render,
    sample_identity,
    sample_variation,
    split_of,
    write_synthfaces,
)
from egain.errors import EgainError

NO_RARE = dict.fromkeys(RARE_KINDS, 0.0)


def _plain(seed: int, identity: int, variation: int = 0, **changes):
    """Identity and a variation with no rare details, hat, hand etc., plus the given overrides."""
    ident = sample_identity(seed, identity)
    var = sample_variation(seed, ident, variation, NO_RARE)
    var = dataclasses.replace(var, hat=False, **changes)
    return ident, var


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---- determinism and the CLI ------------------------------------------------------------------
def test_cli_writes_byte_identical_files_and_seeds_differ(tmp_path, capsys):
    args = ["data", "synthfaces", "--identities", "5", "--per-identity", "2", "--size", "32"]
    assert main([*args, "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    assert "wrote 10 images" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--seed", "3"]) == 0
    assert main([*args, "--out", str(tmp_path / "c"), "--seed", "4"]) == 0
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    samples = [n for n in a if n.endswith(".png") and n != "contact_sheet.png"]
    assert samples == sorted(f"id{i:05d}_v{v:02d}.png" for i in range(5) for v in range(2))
    assert set(a) == {*samples, "contact_sheet.png", "labels.jsonl"}
    assert all(a[n] != c[n] for n in samples)

    records = [json.loads(line) for line in a["labels.jsonl"].decode().splitlines()]
    assert [r["file"] for r in records] == samples
    for r in records:
        assert {"file", "identity", "variation", "split", "attributes", "rare"} <= set(r)
        assert r["split"] == split_of(3, r["identity"])
        assert set(r["rare"]) == set(RARE_KINDS)
        img = np.asarray(Image.open(tmp_path / "a" / r["file"]))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    sheet = Image.open(tmp_path / "a" / "contact_sheet.png")
    assert sheet.size[0] >= 5 * 64


def test_worker_processes_write_the_same_bytes(tmp_path):
    kw = dict(identities=3, per_identity=2, size=16, seed=1, show_progress=False)
    write_synthfaces(tmp_path / "one", workers=1, **kw)
    write_synthfaces(tmp_path / "two", workers=2, **kw)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_refuses_to_mix_with_an_earlier_dataset(tmp_path):
    write_synthfaces(tmp_path, identities=1, per_identity=1, size=16, show_progress=False)
    with pytest.raises(EgainError, match="--overwrite"):
        write_synthfaces(tmp_path, identities=1, per_identity=1, size=16, show_progress=False)
    write_synthfaces(tmp_path, identities=2, per_identity=1, size=16, overwrite=True, show_progress=False)
    assert sorted(p.name for p in tmp_path.glob("id*.png")) == ["id00000_v00.png", "id00001_v00.png"]


def test_dataset_gives_the_pixels_and_labels_of_the_files(tmp_path):
    records = write_synthfaces(tmp_path, identities=4, per_identity=2, size=32, seed=5, show_progress=False)
    ds = SynthFacesDataset(identities=4, per_identity=2, size=32, seed=5, return_labels=True)
    assert len(ds) == len(records) == 8
    for i in (0, 3, 7):
        x, ident, labels = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
        rec = records[i]
        assert ident == rec["identity"] and labels["variation"] == rec["variation"]
        pix = np.asarray(Image.open(tmp_path / rec["file"]))
        back = ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(back, pix)
        assert json.loads(json.dumps(labels, sort_keys=True)) == {k: v for k, v in rec.items() if k != "file"}
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_with_labels)
    xb, ib, lb = next(iter(loader))
    assert xb.shape == (4, 3, 32, 32) and ib.tolist() == [r["identity"] for r in records[:4]]
    assert len(lb) == 4


# ---- labels agree with pixels -------------------------------------------------------------------
def test_glasses_frames_lie_in_the_eye_band():
    size = 64
    checked = 0
    for identity in range(6):
        ident, with_g = _plain(0, identity, glasses=True, sunglasses=False)
        without = dataclasses.replace(with_g, glasses=False)
        a, b = render(ident, with_g, size), render(ident, without, size)
        changed = np.abs(a.image.astype(int) - b.image.astype(int)).max(axis=2) > 12
        assert changed.sum() >= 10, "glasses must change pixels"
        eye_y = np.mean([a.landmarks["left_eye"][1], a.landmarks["right_eye"][1]])
        rows = np.nonzero(changed)[0]
        band = np.abs(rows - eye_y) <= 0.12 * size
        assert band.mean() > 0.9, f"identity {identity}: glasses pixels outside the eye band"
        # the change is towards the frame colour: frame pixels, not just any disturbance
        frame = np.asarray(ident.glasses_color) * 255.0
        pa, pb = a.image[changed].astype(float), b.image[changed].astype(float)
        closer = np.linalg.norm(pa - frame, axis=1) < np.linalg.norm(pb - frame, axis=1)
        assert closer.mean() > 0.7
        checked += 1
    assert checked == 6


def test_earring_boxes_contain_the_earring_and_nothing_else_changes():
    ds = SynthFacesDataset(
        identities=10, per_identity=1, size=64, seed=2, rare_rate={**NO_RARE, "earrings": 1.0}
    )
    boxes_seen = 0
    for i in range(len(ds)):
        ident_id, variation = ds.key(i)
        ident = sample_identity(2, ident_id)
        var = sample_variation(2, ident, variation, ds.rates)
        assert var.earrings
        res = render(ident, var, 64)
        boxes = res.rare["earrings"]
        bare = render(ident, dataclasses.replace(var, earrings=False), 64)
        changed = np.abs(res.image.astype(int) - bare.image.astype(int)).max(axis=2) > 10
        inside = np.zeros_like(changed)
        colour = np.asarray(var.earring_color)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
            patch = res.image[y0:y1, x0:x1].reshape(-1, 3).astype(float)
            cos = patch @ colour / (np.linalg.norm(patch, axis=1) * np.linalg.norm(colour) + 1e-6)
            assert cos.max() > 0.985, "an earring box must contain the earring colour"
            boxes_seen += 1
        assert not (changed & ~inside).any(), "earrings changed pixels outside their boxes"
        assert bool(boxes) == bool(changed.any())
    assert boxes_seen >= 8


def _mouth_mask(ident, var, size: int) -> np.ndarray:
    """Pixels the mouth paints: the render against the same render with the mouth layer removed."""
    painter = importlib.import_module("egain.data.synthfaces.render")._Painter
    full = render(ident, var, size).image.astype(int)
    original = painter.mouth
    try:
        painter.mouth = lambda self: None
        bare = render(ident, var, size).image.astype(int)
    finally:
        painter.mouth = original
    return np.abs(full - bare).max(axis=2) > 8


def _mouth_shape(mask: np.ndarray) -> tuple[int, float]:
    """(width, corner height minus centre height) of a mouth mask, in pixels."""
    cols = np.nonzero(mask.any(axis=0))[0]
    rows = np.arange(mask.shape[0])[:, None]
    height = (mask * rows).sum(axis=0)[cols] / mask.sum(axis=0)[cols]
    k = max(1, len(cols) // 6)
    mid = len(cols) // 2
    corners = (height[:k].mean() + height[-k:].mean()) / 2
    return int(cols[-1] - cols[0] + 1), float(corners - height[mid - k // 2 : mid + k // 2 + 1].mean())


def test_larger_smile_gives_a_wider_curvier_mouth():
    size = 128
    for identity in range(4):
        shapes = {}
        for smile in (0.0, 0.45, 1.0):
            ident, var = _plain(1, identity, smile=smile, yaw=0.0, roll=0.0, beard=False, beard_style="none")
            shapes[smile] = _mouth_shape(_mouth_mask(ident, var, size))
        (w0, c0), (w1, c1), (w2, c2) = shapes[0.0], shapes[0.45], shapes[1.0]
        assert w0 < w1 < w2 and w2 >= w0 + 4, f"identity {identity}: widths {w0}, {w1}, {w2}"
        assert c2 < c1 < c0, f"identity {identity}: corners must rise ({c0}, {c1}, {c2})"


def _log_rgb(img: np.ndarray, x: float, y: float, r: int = 1) -> np.ndarray:
    xi, yi = int(round(x)), int(round(y))
    p = img[yi - r : yi + r + 1, xi - r : xi + r + 1].reshape(-1, 3).astype(float).mean(0)
    return np.log(p + 8.0)


def test_same_identity_keeps_skin_tone_and_hair_colour():
    """Skin (both cheeks) and hair (above the forehead) colours, measured in pixels, differ much
    less between two photos of one person than between people, despite light and pose changes."""
    size, seed = 64, 4
    samples: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for identity in range(16):
        ident = sample_identity(seed, identity)
        if ident.hair_style in ("bald", "buzz"):
            continue
        for variation in (0, 1):
            _, var = _plain(seed, identity, variation, glasses=False, beard=False, beard_style="none")
            res = render(ident, var, size)
            (lx, ly), (rx, ry) = res.landmarks["left_eye"], res.landmarks["right_eye"]
            mx, my = res.landmarks["mouth"]
            cheeks = [
                _log_rgb(res.image, (ex + mx) / 2, (ey + 2 * my) / 3) for ex, ey in ((lx, ly), (rx, ry))
            ]
            fw = ident.face_width * var.scale * size
            hair = _log_rgb(res.image, (lx + rx) / 2, (ly + ry) / 2 - 1.15 * fw)
            samples.setdefault(identity, []).append((np.mean(cheeks, axis=0), hair))
    ids = sorted(samples)
    assert len(ids) >= 10

    def dist(a, b):
        return float(np.abs(a - b).sum())

    for part in (0, 1):
        within = [dist(samples[i][0][part], samples[i][1][part]) for i in ids]
        between = [dist(samples[i][0][part], samples[j][0][part]) for i in ids for j in ids if i < j]
        limit = 0.6 if part == 0 else 0.5
        assert np.median(within) < limit * np.median(between), ("skin", "hair")[part]


def test_rare_rate_switches_details_without_changing_the_face():
    ident = sample_identity(0, 7)
    off = sample_variation(0, ident, 0, NO_RARE)
    on = sample_variation(0, ident, 0, dict.fromkeys(RARE_KINDS, 1.0))
    assert not any(getattr(off, k) for k in RARE_KINDS)
    assert all(getattr(on, k) for k in RARE_KINDS)
    same = {f.name for f in dataclasses.fields(off)} - set(RARE_KINDS)
    assert all(getattr(off, k) == getattr(on, k) for k in same)
    res = render(ident, on, 64)
    for kind in RARE_KINDS:
        assert res.rare[kind], f"{kind} switched on but no box"
        for x0, y0, x1, y1 in res.rare[kind]:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


def test_sizes_render_the_same_picture():
    ident, var = _plain(0, 3)
    big = render(ident, var, 128).image.astype(float)
    small = render(ident, var, 64).image.astype(float)
    pooled = big.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(pooled - small).mean() < 6.0


# ---- splits and recipes -----------------------------------------------------------------------
def test_splits_are_disjoint_by_identity_and_stable():
    sets = {
        s: set(SynthFacesDataset(300, 1, 16, seed=0, split=s).identity_ids) for s in ("train", "val", "test")
    }
    assert (
        not (sets["train"] & sets["val"])
        and not (sets["train"] & sets["test"])
        and not (sets["val"] & sets["test"])
    )
    assert sets["train"] | sets["val"] | sets["test"] == set(range(300))
    assert 0.7 < len(sets["train"]) / 300 < 0.9
    small = set(SynthFacesDataset(100, 1, 16, seed=0, split="train").identity_ids)
    assert small == {i for i in sets["train"] if i < 100}
    ds = SynthFacesDataset(300, 2, 16, seed=0, split="val")
    assert all(ds[i][1] in sets["val"] for i in range(0, len(ds), 7))


def test_eval_and_hard_recipes():
    ev, hard = eval_identities(0), hard_identities(0)
    assert len(ev) == 500 and len(hard) == 200 and not set(ev) & set(hard)
    assert all(split_of(0, i) == "test" for i in ev + hard)
    train = set(SynthFacesDataset(max(ev) + 1, 1, 16, seed=0, split="train").identity_ids)
    assert not train & set(ev)
    hs = SynthFacesDataset.hard_set(seed=0, size=16, count=12, return_labels=True)
    assert len(hs) == 12
    assert all(hs[i][2]["rare_kinds"] for i in range(len(hs)))
    es = dataset_from_spec("recipe=eval,count=3,size=16")
    assert [es.key(i)[0] for i in range(3)] == list(ev[:3])


def test_cli_eval_set(tmp_path):
    assert (
        main(["data", "synthfaces", "--out", str(tmp_path), "--hard-set", "--count", "3", "--size", "16"])
        == 0
    )
    recs = [json.loads(s) for s in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [r["identity"] for r in recs] == list(hard_identities(0, 3))
    assert all(r["rare_kinds"] and r["split"] == "test" and r["recipe"] == "hard" for r in recs)


def test_dataset_from_spec():
    ds = dataset_from_spec("20x3,seed=2,split=train", size=32)
    assert ds.per_identity == 3 and ds.seed == 2 and ds.size == 32
    assert all(split_of(2, i) == "train" for i in ds.identity_ids)
    with pytest.raises(EgainError):
        dataset_from_spec("20x3,colour=red")


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--size", "48"], "power of two"),
        (["--size", "8"], "power of two"),
        (["--identities", "-1"], "identities"),
        (["--per-identity", "0"], "per_identity"),
        (["--seed", "-2"], "seed"),
        (["--rare-rate", "1.5"], "rare rate"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, extra, needle):
    assert main(["data", "synthfaces", "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_dataset_bad_input():
    for kw in ({"size": 48}, {"size": 8}, {"identities": -3}, {"per_identity": 0}, {"split": "dev"}):
        with pytest.raises(EgainError):
            SynthFacesDataset(**{"identities": 4, **kw})


def test_rendering_is_numerically_clean():
    """No overflow, division by zero or NaN anywhere in the maths, at small and normal sizes."""
    rates = dict.fromkeys(RARE_KINDS, 0.3)
    with np.errstate(all="raise"):
        for identity in range(30):
            ident = sample_identity(9, identity)
            var = sample_variation(9, ident, identity % 3, rates)
            for size in (16, 32) if identity % 5 else (16, 64):
                render(ident, var, size)


@pytest.mark.parametrize("kind", RARE_KINDS)
def test_rare_boxes_hold_exactly_what_the_detail_changes(kind):
    """Switching one rare detail off changes pixels only inside its boxes, and inside every box."""
    rates = {**NO_RARE, kind: 1.0}
    for identity in range(3):
        ident = sample_identity(6, identity)
        var = sample_variation(6, ident, 0, rates)
        res = render(ident, var, 64)
        bare = render(ident, dataclasses.replace(var, **{kind: False}), 64)
        changed = np.abs(res.image.astype(int) - bare.image.astype(int)).max(axis=2) > 6
        assert res.rare[kind] and not bare.rare[kind]
        inside = np.zeros_like(changed)
        for x0, y0, x1, y1 in res.rare[kind]:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert changed[y0:y1, x0:x1].any(), f"{kind}: a box with nothing in it"
            inside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        assert not (changed & ~inside).any(), f"{kind}: pixels changed outside its boxes"


def test_split_filter_keeps_only_that_split(tmp_path):
    from egain.data.synthfaces.writer import write_synthfaces

    recs = write_synthfaces(tmp_path / "tr", 30, 1, 16, 0, split="train", show_progress=False)
    assert recs and all(r["split"] == "train" for r in recs)
    assert len(recs) < 30


# ---- parsing maps -------------------------------------------------------------------------------
# Pixel hashes of images rendered by the code before parsing maps existed (commit b215be6): the
# bundled models were trained on these pictures, so labelling must never change a pixel.
_PINNED = [
    # (seed, identity, variation, size, rare rates "default" / "all" = 0.5 each, force_rare, sha256[:16])
    (0, 0, 0, 64, "default", False, "a868ee82ead0ff38"),
    (0, 1, 3, 64, "default", False, "df442976386cbb8d"),
    (0, 7, 1, 32, "default", False, "cc17cf368c8cb046"),
    (0, 12, 2, 16, "default", False, "29354871c91cbfe4"),
    (0, 3, 0, 128, "default", False, "fac950fa9e2d253e"),
    (5, 1, 0, 64, "all", False, "c0ec934a8ad64eaa"),
    (5, 3, 0, 64, "all", False, "41102628496c6873"),
    (5, 4, 0, 64, "all", False, "afb4ec77cd3fbd21"),
    (0, 900, 0, 64, "default", True, "0824c2444eec4153"),
]
# 40 images (seed 11, identities 0-39, variation i % 3, every rare detail at 30 %) hashed together
_PINNED_BATCH = {
    16: "e59ff5890d449d29c39499f5135dc1f63387669fce58b380db705ee5601a691a",
    32: "061468411025017d7b71faba2a09fac730077c1f293d5010dc254f9292e63e61",
}


def _pinned_numpy() -> None:
    if np.__version__.split(".")[:2] != ["2", "4"]:
        pytest.skip(f"pixel hashes were taken with numpy 2.4; this is numpy {np.__version__}")


def test_pixels_are_those_before_parsing_maps_with_and_without_them():
    import hashlib

    from egain.data.synthfaces import render_item
    from egain.data.synthfaces.params import DEFAULT_RARE_RATES

    _pinned_numpy()
    for seed, identity, variation, size, rates, force, digest in _PINNED:
        r = DEFAULT_RARE_RATES if rates == "default" else dict.fromkeys(RARE_KINDS, 0.5)
        img, labels = render_item(seed, identity, variation, size, r, force)
        assert hashlib.sha256(img.tobytes()).hexdigest()[:16] == digest, (seed, identity, variation, size)
        img2, labels2, parsing = render_item(seed, identity, variation, size, r, force, parsing=True)
        assert np.array_equal(img, img2) and labels == labels2
        assert parsing.shape == (size, size) and parsing.dtype == np.uint8
    # and the labels of labels.jsonl (50 images, seed 0, default rates) are those of before too
    h = hashlib.sha256()
    for i in range(50):
        h.update(json.dumps(render_item(0, i, i % 3, 16, DEFAULT_RARE_RATES)[1], sort_keys=True).encode())
    assert h.hexdigest() == "88eac6d91455a028132c5f60c609db205dd07ba50d4068e47774f9deed331ea5"
    rates = dict.fromkeys(RARE_KINDS, 0.3)
    for size, digest in _PINNED_BATCH.items():
        h = hashlib.sha256()
        for i in range(40):
            h.update(render_item(11, i, i % 3, size, rates)[0].tobytes())
        assert h.hexdigest() == digest, size


def test_parsing_maps_hold_the_face_parts_where_the_landmarks_are():
    from egain.data.synthfaces.parsing import CLASS_INDEX, PARSING_CLASSES

    for identity in range(6):
        ident, var = _plain(3, identity, glasses=False)
        for size in (32, 64, 128):
            res = render(ident, var, size, parsing=True)
            p = res.parsing
            assert p.shape == (size, size) and p.dtype == np.uint8 and p.max() < len(PARSING_CLASSES)
            corners = p[[0, 0, -1, -1], [0, -1, 0, -1]]
            assert (corners == CLASS_INDEX["background"]).any() or (corners == CLASS_INDEX["clothes"]).any()
            present = {PARSING_CLASSES[c] for c in np.unique(p)}
            assert {"background", "skin", "neck", "clothes", "nose"} <= present
            for part in ("left_eye", "right_eye"):  # the class lies around its landmark
                ys, xs = np.nonzero(p == CLASS_INDEX[part])
                if size >= 64:
                    assert len(xs) > 0, (identity, size, part)
                if len(xs):
                    lx, ly = res.landmarks[part]
                    assert abs(xs.mean() + 0.5 - lx) < 0.06 * size and abs(ys.mean() + 0.5 - ly) < 0.06 * size
            # the face box is the skin's box: skin labels fall inside it
            x0, y0, x1, y1 = res.face_box
            ys, xs = np.nonzero(p == CLASS_INDEX["skin"])
            assert xs.min() >= x0 - 1 and xs.max() < x1 + 1 and ys.min() >= y0 - 1 and ys.max() < y1 + 1


def test_glasses_label_lies_on_the_frame_pixels():
    from egain.data.synthfaces.parsing import CLASS_INDEX

    for identity in range(6):
        ident, with_g = _plain(0, identity, glasses=True, sunglasses=False)
        a = render(ident, with_g, 64, parsing=True)
        b = render(ident, dataclasses.replace(with_g, glasses=False), 64, parsing=True)
        frame = np.asarray(ident.glasses_color) * 255.0
        pa, pb = a.image.astype(float), b.image.astype(float)
        # pixels the glasses pulled towards the frame colour
        towards = (np.abs(pa - pb).max(axis=2) > 12) & (
            np.linalg.norm(pa - frame, axis=2) < np.linalg.norm(pb - frame, axis=2)
        )
        lab = a.parsing == CLASS_INDEX["glasses"]
        assert lab.sum() >= 20 and not (b.parsing == CLASS_INDEX["glasses"]).any()
        assert (lab & towards).sum() >= 0.85 * lab.sum(), f"identity {identity}: glasses label off the frame"
        assert (lab & towards).sum() >= 0.5 * towards.sum(), f"identity {identity}: frame pixels unlabelled"


def test_earring_label_lies_inside_the_earring_boxes():
    from egain.data.synthfaces.parsing import CLASS_INDEX

    seen = 0
    for identity in range(10):
        ident = sample_identity(2, identity)
        var = sample_variation(2, ident, 0, {**NO_RARE, "earrings": 1.0})
        res = render(ident, var, 64, parsing=True)
        lab = res.parsing == CLASS_INDEX["earring"]
        inside = np.zeros_like(lab)
        for x0, y0, x1, y1 in res.rare["earrings"]:
            inside[y0:y1, x0:x1] = True
            assert lab[y0:y1, x0:x1].any(), "an earring box without earring pixels"
            seen += 1
        assert not (lab & ~inside).any(), "earring label outside the earring boxes"
        bare = render(ident, dataclasses.replace(var, earrings=False), 64, parsing=True)
        assert not (bare.parsing == CLASS_INDEX["earring"]).any()
    assert seen >= 10


@pytest.mark.parametrize(
    "kind, cls", [("hand", "hand"), ("phone", "object"), ("watch", "object"), ("text_marks", "text")]
)
def test_occluder_and_mark_labels_lie_in_their_boxes(kind, cls):
    from egain.data.synthfaces.parsing import CLASS_INDEX

    for identity in range(4):
        ident = sample_identity(6, identity)
        var = sample_variation(6, ident, 0, {**NO_RARE, kind: 1.0})
        res = render(ident, var, 64, parsing=True)
        lab = res.parsing == CLASS_INDEX[cls]
        inside = np.zeros_like(lab)
        for x0, y0, x1, y1 in res.rare[kind]:  # boxes hold the skin / body; a hand's outline is 1 px out
            inside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        assert lab.sum() >= 4 and not (lab & ~inside).any(), (kind, identity)
        bare = render(ident, dataclasses.replace(var, **{kind: False}), 64, parsing=True)
        assert not (bare.parsing == CLASS_INDEX[cls]).any()


def test_label_downsampling_takes_the_majority_and_ties_go_to_the_front():
    from egain.data.synthfaces.parsing import downsample_labels

    classes = np.array([0, 5, 7, 9], np.uint8)  # layer k has class classes[k]
    layers = np.array(
        [
            [1, 1, 2, 3],
            [1, 2, 2, 3],
            [1, 2, 2, 3],
            [1, 1, 2, 3],
        ],
        np.uint8,
    )
    out = downsample_labels(layers, classes, 2)
    # block (0,0): layers 1,1,1,2 -> 1; block (0,1): 2,3,2,3 -> tie, front-most layer 3
    assert out.tolist() == [[5, 9], [5, 9]]
    assert downsample_labels(layers, classes, 1).tolist() == classes[layers].tolist()


def test_celebamask_fusion_table():
    from egain.data.synthfaces.parsing import (
        CELEBAMASK_CLASSES,
        PARSING_CLASSES,
        PARSING_PALETTE,
        TO_CELEBAMASK,
        to_celebamask,
    )

    assert len(CELEBAMASK_CLASSES) == 19 and CELEBAMASK_CLASSES[0] == "background"
    assert len(TO_CELEBAMASK) == len(PARSING_CLASSES) == len(PARSING_PALETTE)
    fused = {a: CELEBAMASK_CLASSES[b] for a, b in zip(PARSING_CLASSES, TO_CELEBAMASK, strict=True)}
    assert fused["glasses"] == "eye_g" and fused["earring"] == "ear_r" and fused["hair"] == "hair"
    assert fused["left_eye"] == "l_eye" and fused["upper_lip"] == "u_lip" and fused["clothes"] == "cloth"
    assert CELEBAMASK_CLASSES.index("hair") == 17 and CELEBAMASK_CLASSES.index("eye_g") == 6
    assert to_celebamask(np.array([[0, 15]])).tolist() == [[0, 6]]


def test_cli_parsing_writes_maps_that_list_images_leaves_out(tmp_path, capsys):
    from egain.data.synthfaces.parsing import PARSING_CLASSES
    from egain.utils.images import list_images

    args = ["data", "synthfaces", "--identities", "3", "--per-identity", "2", "--size", "32", "--parsing"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "parsing maps" in capsys.readouterr().out
    names = {p.name for p in (tmp_path / "a").iterdir()}
    samples = sorted(f"id{i:05d}_v{v:02d}.png" for i in range(3) for v in range(2))
    maps = [n.replace(".png", "_parsing.png") for n in samples]
    assert names == {*samples, *maps, "contact_sheet.png", "parsing_sheet.png", "labels.jsonl"}
    assert [p.name for p in list_images(tmp_path / "a")] == samples
    records = [json.loads(s) for s in (tmp_path / "a" / "labels.jsonl").read_text().splitlines()]
    assert [r["parsing"] for r in records] == maps
    ds = SynthFacesDataset(3, 2, 32, return_parsing=True)
    for i, rec in enumerate(records):
        with Image.open(tmp_path / "a" / rec["parsing"]) as im:
            assert im.mode == "P"
            m = np.asarray(im)
        assert m.max() < len(PARSING_CLASSES)
        x, ident, parsing = ds[i]
        assert parsing.dtype == torch.long and parsing.shape == (32, 32)
        np.testing.assert_array_equal(parsing.numpy(), m)
        assert ident == rec["identity"]
    # the images are those written without --parsing; two workers write the same bytes
    assert main([*args[:-1], "--out", str(tmp_path / "b")]) == 0
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in samples)
    write_synthfaces(tmp_path / "c", 3, 2, 32, workers=2, parsing=True, show_progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "c")
    # an --overwrite run without --parsing removes the old maps too
    write_synthfaces(tmp_path / "c", 2, 1, 32, overwrite=True, show_progress=False)
    assert not list((tmp_path / "c").glob("*_parsing.png"))


def test_dataset_return_parsing_keeps_the_other_signatures_and_collates():
    plain = SynthFacesDataset(4, 1, 16)
    assert len(plain[0]) == 2
    ds = SynthFacesDataset(4, 1, 16, return_parsing=True)
    x, ident, parsing = ds[1]
    assert x.shape == (3, 16, 16) and parsing.shape == (16, 16) and parsing.dtype == torch.long
    np.testing.assert_array_equal(x.numpy(), plain[1][0].numpy())
    xb, ib, pb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 3, 16, 16) and pb.shape == (4, 16, 16) and pb.dtype == torch.long
    both = SynthFacesDataset(4, 1, 16, return_labels=True, return_parsing=True)
    x, ident, labels, parsing = both[2]
    assert labels["identity"] == ident and torch.equal(parsing, ds[2][2])
    loader = torch.utils.data.DataLoader(both, batch_size=2, collate_fn=collate_with_labels)
    xb, ib, lb, pb = next(iter(loader))
    assert xb.shape == (2, 3, 16, 16) and len(lb) == 2 and pb.shape == (2, 16, 16)
    assert (
        len(
            next(
                iter(
                    torch.utils.data.DataLoader(
                        SynthFacesDataset(2, 1, 16, return_labels=True),
                        batch_size=2,
                        collate_fn=collate_with_labels,
                    )
                )
            )
        )
        == 3
    )


def test_parsing_maps_are_not_data_images(tmp_path):
    from egain.utils.images import is_data_image, list_images

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("a.png", "a_parsing.png", "lonely_parsing.png", "parsing_sheet.png"):
        Image.new("RGB", (4, 4)).save(plain / name)
    # beside its picture a parsing map is a map; alone it is somebody's image, as is a sheet
    # outside a synthfaces folder
    assert [p.name for p in list_images(plain)] == ["a.png", "lonely_parsing.png", "parsing_sheet.png"]
    (plain / "labels.jsonl").write_text("{}\n")
    assert [p.name for p in list_images(plain)] == ["a.png"]
    assert not is_data_image(plain / "a_parsing.png") and is_data_image(plain / "a.png")


def test_synthfaces_command_never_imports_torch(tmp_path):
    """Worker processes fork cheaply only while torch is not loaded (and spawned workers would
    each spend a second importing it): the command and the writer stay torch-free."""
    import subprocess
    import sys

    code = (
        "import sys; from egain.cli.main import main; "
        f"main(['data', 'synthfaces', '--out', {str(tmp_path)!r}, '--identities', '2', "
        "'--per-identity', '1', '--size', '16', '--parsing', '--workers', '2']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_beard_label_follows_the_beard_style():
    from egain.data.synthfaces.parsing import CLASS_INDEX

    ident, var = _plain(0, 1, beard=True, yaw=0.0)
    counts = {}
    for style in ("none", "stubble", "moustache", "goatee", "full"):
        res = render(ident, dataclasses.replace(var, beard_style=style, beard_density=1.0), 64, parsing=True)
        counts[style] = int((res.parsing == CLASS_INDEX["beard"]).sum())
    assert counts["none"] == counts["stubble"] == 0  # stubble is a faint shadow: skin
    assert 0 < counts["moustache"] < counts["goatee"] < counts["full"]

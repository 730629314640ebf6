"""Image I/O, grids and atomic checkpoints."""

from __future__ import annotations

import pytest
import torch

from egain.errors import CheckpointError, EgainError, InputError
from egain.runtime.checkpoint import atomic_torch_save, load_checkpoint
from egain.utils.images import list_images, load_image, make_grid, save_image


def test_save_load_roundtrip_is_exact_for_uint8_values(tmp_path):
    img = torch.randint(0, 256, (3, 8, 10)).float() / 127.5 - 1
    save_image(img, tmp_path / "a.png")
    back = load_image(tmp_path / "a.png")
    assert torch.allclose(back, img, atol=1e-6)


def test_grid_places_images_in_rows():
    imgs = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(5)])
    grid = make_grid(imgs, nrow=3, padding=1, pad_value=-1)
    assert grid.shape == (3, 2 * 5 + 1, 3 * 5 + 1)
    assert grid[0, 1, 1] == 0 and grid[0, 1, 6] == 1 and grid[0, 6, 1] == 3
    assert grid[0, 0, 0] == -1


def test_bad_images_give_one_clear_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(tmp_path / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="contains no images"):
        list_images(empty)


def test_checkpoint_atomic_and_errors(tmp_path):
    p = atomic_torch_save({"a": torch.ones(2)}, tmp_path / "c.pt")
    assert load_checkpoint(p, required_keys=["a"])["a"].sum() == 2
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="lacks 'b'"):
        load_checkpoint(p, required_keys=["b"])
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_auto_device_under_torchrun_names_the_missing_gpu(monkeypatch):
    """More torchrun processes per node than GPUs: one clear line, not "invalid device ordinal"."""
    from egain.utils.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    for spec in ("auto", "cuda"):
        with pytest.raises(EgainError, match=r"LOCAL_RANK=1 needs cuda:1, but this machine has 1 CUDA"):
            resolve_device(spec)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is taken as given


def test_a_synthfaces_contact_sheet_is_not_a_data_image(tmp_path):
    """Training, inversion and evaluation of a synthfaces folder skip its overview picture."""
    from egain.metrics.evaluate import pair_folders

    (tmp_path / "plain").mkdir()
    for name in ("id00000_v00.png", "id00001_v00.png", "contact_sheet.png"):
        save_image(torch.zeros(3, 8, 8), tmp_path / "plain" / name)
    assert len(list_images(tmp_path / "plain")) == 3  # only a synthfaces folder has a sheet to skip
    (tmp_path / "plain" / "labels.jsonl").write_text("{}\n")
    assert [p.name for p in list_images(tmp_path / "plain")] == ["id00000_v00.png", "id00001_v00.png"]
    (tmp_path / "plain" / "timing.json").write_text("{}")  # what `egain invert` writes beside images
    (tmp_path / "plain" / "notes.txt").write_text("a stray file")
    plan = pair_folders(tmp_path / "plain", {"copy": tmp_path / "plain"})
    assert plan.images == ["id00000_v00.png", "id00001_v00.png"]
    # egain's own side files are no remark; a stray file is, once per folder
    assert plan.issues == [
        "source: ignored 1 non-image file(s): notes.txt",
        "copy: ignored 1 non-image file(s): notes.txt",
    ]

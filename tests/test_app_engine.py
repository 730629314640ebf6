"""The demo's back end without a browser: invert, then edit every method's inversion by its rule."""

from __future__ import annotations

import numpy as np
import pytest

from egain.app import Engine
from egain.workflows.examples import example_files


@pytest.mark.slow
def test_engine_inverts_then_edits_each_method():
    from PIL import Image

    engine = Engine()
    image = Image.open(example_files()[0])
    rows = engine.invert(image, ["e4e", "hfgi"])
    assert [r["label"] for r in rows] == ["e4e", "hfgi"]
    assert all(0.0 < r["ID"] <= 1.0 for r in rows)
    unchanged = engine.edit({"smile": 0.0})
    for (img, _), row in zip(unchanged, rows, strict=True):
        assert np.array_equal(np.asarray(img), np.asarray(row["image"]))
    edited = engine.edit({"smile": 3.0, "age": -2.0})
    assert [caption.split(":")[0] for _, caption in edited] == ["e4e", "hfgi"]
    for (img, caption), row in zip(edited, rows, strict=True):
        assert "smile*3" in caption
        diff = np.abs(np.asarray(img, dtype=np.int16) - np.asarray(row["image"], dtype=np.int16))
        assert diff.mean() > 1.0  # the edit changed the picture

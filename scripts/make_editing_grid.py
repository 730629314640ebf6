"""Write docs/editing_grid.png: smile, yaw and age edits (strength -3 / +3) for every bundled method.

Rows: bundled method x example image; columns: source, reconstruction, then each edit.
Directions come from $EGAIN_DIRECTIONS (or the bundled egain/zoo/directions) for each method's
generator. Usage: EGAIN_DIRECTIONS=/work/runs/directions python scripts/make_editing_grid.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from egain.editing import load_direction
from egain.editing.apply import method_edit
from egain.methods import prepare_images
from egain.metrics.report import fit_tile, write_image_grid
from egain.utils.images import tensor_to_uint8
from egain.workflows.bundled import BUNDLED_METHODS, load_bundled, missing_weights
from egain.workflows.examples import example_files

#: every bundled method whose weights are installed (e4e-swagan is e4e on the other generator)
METHODS = tuple(m for m in BUNDLED_METHODS if m != "e4e-swagan" and not missing_weights([m]))
EDITS = (("smile", -3.0), ("smile", 3.0), ("yaw", -3.0), ("yaw", 3.0), ("age", -3.0), ("age", 3.0))


def tile(t: torch.Tensor) -> torch.Tensor:
    return fit_tile(torch.from_numpy(tensor_to_uint8(t)).permute(2, 0, 1), (72, 72))


def main(out: str = "docs/editing_grid.png", images: int = 2) -> None:
    files = example_files()[:images]
    rows = []
    with torch.no_grad():
        for name in METHODS:
            m = load_bundled(name, "cpu")
            inv = m.invert(files)
            src = prepare_images(files, m.input_size)
            cols = [[src[j], inv.reconstruction[j]] for j in range(len(files))]
            for attr, s in EDITS:
                e = method_edit(m, inv, load_direction(attr, m.generator), s)
                for j in range(len(files)):
                    cols[j].append(e[j])
            rows += [[tile(t) for t in c] for c in cols]
    labels = ["source", "reconstruction", *(f"{a} {s:+g}" for a, s in EDITS)]
    write_image_grid(rows, labels, Path(out))
    print(f"wrote {out}: rows {', '.join(f'{m} x{images}' for m in METHODS)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])

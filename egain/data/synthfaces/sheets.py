"""The committed contact sheets of synthfaces, for a person to judge the renderer.

``python -m egain.data.synthfaces.sheets docs`` writes

* ``synthfaces_contact_64.png``: identities 0-63 of world seed 0, variation 0, default rare rates
  (what a training set looks like);
* ``synthfaces_contact_256.png``: identities 0-15, variation 1, each rare detail at 12 % (so that
  about half the faces show one), at 256 px;
* ``synthfaces_parsing_128.png``: identities 0-11, variation 1, rare details at 12 %, at 128 px,
  each image next to its parsing map (colours of ``parsing.PARSING_PALETTE``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .params import RARE_KINDS
from .parsing import colorize
from .recipes import check_rates, render_item
from .writer import contact_sheet, save_png


def write_docs_sheets(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    default = check_rates(None)
    imgs = [render_item(0, i, 0, 64, default)[0] for i in range(64)]
    path = folder / "synthfaces_contact_64.png"
    save_png(contact_sheet(imgs, columns=8), path)
    out.append(path)
    rates = check_rates(dict.fromkeys(RARE_KINDS, 0.12))
    imgs = [render_item(0, i, 1, 256, rates)[0] for i in range(16)]
    path = folder / "synthfaces_contact_256.png"
    save_png(contact_sheet(imgs, columns=4), path)
    out.append(path)
    tiles = []
    for i in range(12):
        img, _, parsing = render_item(0, i, 1, 128, rates, parsing=True)
        tiles += [img, colorize(parsing)]
    path = folder / "synthfaces_parsing_128.png"
    save_png(contact_sheet(tiles, columns=6), path)
    out.append(path)
    return out


if __name__ == "__main__":
    for p in write_docs_sheets(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print(p)

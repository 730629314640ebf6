"""Names of the files egain's own commands write beside images, and the data-image rule.

Torch-free on purpose: the synthfaces writer (and its worker processes) import it, and importing
torch there would cost every worker a second of start-up and make ``fork`` unsafe.
:mod:`egain.utils.images` re-exports everything here.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

#: what ``egain data synthfaces`` writes beside the images: the labels and overview pictures
SYNTHFACES_LABELS = "labels.jsonl"
SYNTHFACES_SHEET = "contact_sheet.png"
SYNTHFACES_PARSING_SHEET = "parsing_sheet.png"
#: ``id00012_v03.png`` has its parsing map (``--parsing``) in ``id00012_v03_parsing.png``
PARSING_SUFFIX = "_parsing"
#: what ``egain invert`` (and the demo / compare workflows) write beside the reconstructions
INVERT_TIMING = "timing.json"
#: files egain's own commands write into image folders: not data, and no stray input worth a remark
OWN_SIDE_FILES = frozenset({SYNTHFACES_LABELS, INVERT_TIMING})


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def is_parsing_map(path: Path) -> bool:
    """``X_parsing.png`` beside ``X.png`` (or in a synthfaces folder): a label map, not a picture."""
    name = path.name
    stem = name[: -len(".png")] if name.lower().endswith(".png") else ""
    if not stem.endswith(PARSING_SUFFIX):
        return False
    parent = path.parent
    return (parent / SYNTHFACES_LABELS).is_file() or (
        parent / (stem[: -len(PARSING_SUFFIX)] + ".png")
    ).is_file()


def is_data_image(path: Path) -> bool:
    """An image file that is data: not an overview picture or a parsing map of a synthfaces folder.

    The sheets are recognised by name in a folder with ``labels.jsonl`` only (a user's own
    ``contact_sheet.png`` elsewhere is data); parsing maps also by the picture they sit beside.
    """
    if not is_image_file(path):
        return False
    if (
        path.name in (SYNTHFACES_SHEET, SYNTHFACES_PARSING_SHEET)
        and (path.parent / SYNTHFACES_LABELS).is_file()
    ):
        return False
    return not is_parsing_map(path)

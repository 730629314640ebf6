"""Face detection and FFHQ alignment of real photos, the way the published encoders expect them.

The published FFHQ encoders (e4e, pSp, ReStyle, HFGI, ...) were trained on faces cropped and
rotated by one procedure (NVlabs' ffhq-dataset script, copied into pSp ``scripts/align_all_parallel.py``,
e4e ``utils/alignment.py``): dlib's frontal face detector (upsample 1), its 68-point landmark
predictor, then an oriented square (the "quad") placed from the eyes and the mouth. A photo fed to
them without this step inverts badly (ReStyle issue #37), so ``egain align`` and
``egain invert --align`` apply it first.

Steps, in :func:`ffhq_quad` (geometry, pure numpy) and :func:`warp_to_quad` (pixels, PIL/scipy):

* eyes are the means of landmarks 36-41 and 42-47; the mouth is the midpoint of 48 and 54;
* x = eye_to_eye - rot90(eye_to_mouth), normalised and scaled to max(2 |eye_to_eye|, 1.8 |eye_to_mouth|);
  y = rot90(x); centre = eye_avg + 0.1 eye_to_mouth; the quad is c-x-y, c-x+y, c+x+y, c+x-y;
* shrink the photo when the quad is much larger than the output, crop around the quad with a
  border of 10 %, reflect-pad where the quad leaves the photo (blurred and faded to the median
  colour towards the edges), and sample the quad with PIL's QUAD transform (bilinear).

Differences from the published script, on purpose: with several faces it takes the *largest*
(the script silently takes the last detection) and says so; with none it raises one
:class:`~egain.errors.InputError` line (the script dies with an UnboundLocalError, pSp issue #173).

dlib and its landmark model are the optional extra ``egain[align]`` (``dlib-bin`` and
``face-recognition-models``, which ships ``shape_predictor_68_face_landmarks.dat``); nothing is
downloaded at run time. The geometry and warp are usable without dlib (landmarks from elsewhere).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from PIL import Image

from egain.errors import EgainError, InputError

#: output and transform size of the pSp / e4e / ReStyle alignment scripts
DEFAULT_OUTPUT_SIZE = 256


@dataclasses.dataclass
class AlignedFace:
    """One aligned face and how it was found.

    ``image``: the aligned RGB picture (``output_size`` square). ``faces``: how many faces the
    detector found. ``box``: (left, top, right, bottom) of the face used, in the photo's pixels.
    ``landmarks``: its 68 (x, y) points. ``note``: one line for the user when something was chosen
    for them (several faces), else None.
    """

    image: Image.Image
    faces: int
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    note: str | None = None


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop square of a face from its 68 landmarks: (4 corners as (4, 2), side length)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise EgainError(f"FFHQ alignment needs 68 (x, y) landmarks, got an array of shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    def rot90(v: np.ndarray) -> np.ndarray:  # components swapped, the new first one negated
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot90(eye_to_mouth)
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def warp_to_quad(
    image: Image.Image,
    quad: np.ndarray,
    qsize: float,
    output_size: int = DEFAULT_OUTPUT_SIZE,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> Image.Image:
    """Cut the oriented square ``quad`` out of ``image`` as an ``output_size`` picture (FFHQ steps)."""
    from scipy.ndimage import gaussian_filter

    transform_size = transform_size or output_size
    img = image.convert("RGB")
    quad = np.asarray(quad, dtype=np.float64).copy()

    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        img = img.resize(size, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = [
        max(-lo[0] + border, 0),
        max(-lo[1] + border, 0),
        max(hi[0] - img.size[0] + border, 0),
        max(hi[1] - img.size[1] + border, 0),
    ]
    if enable_padding and max(pad) > border - 4:
        pad = [max(p, int(np.rint(qsize * 0.3))) for p in pad]
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            mask = np.maximum(
                1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
            )
        mask = np.nan_to_num(mask, nan=0.0, posinf=1.0, neginf=0.0)
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    img = img.transform(
        (transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR
    )
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.LANCZOS)
    return img


LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


def _import_dlib():
    """dlib and the path of the 68-point model shipped by ``face-recognition-models``.

    The model file is located without importing ``face_recognition_models`` (whose ``__init__``
    needs ``pkg_resources``, gone from recent setuptools).
    """
    import importlib.util

    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        raise EgainError(
            "face alignment needs dlib (missing); install it with: pip install 'egain[align]'"
        ) from None
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "models" / LANDMARK_MODEL
        if path.exists():
            return dlib, path
    raise EgainError(
        f"face alignment needs dlib's {LANDMARK_MODEL} (package face-recognition-models, missing); "
        "install it with: pip install 'egain[align]'"
    )


class FaceAligner:
    """dlib's frontal face detector and 68-point landmark predictor, applied as the FFHQ scripts do.

    Built once and reused (loading the 95 MB predictor takes about a second).
    """

    def __init__(self, output_size: int = DEFAULT_OUTPUT_SIZE, transform_size: int | None = None) -> None:
        dlib, model_path = _import_dlib()
        self.output_size = int(output_size)
        self.transform_size = transform_size
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path))

    def landmarks(self, image: Image.Image) -> tuple[list[tuple[int, int, int, int]], list[np.ndarray]]:
        """Boxes and 68-point landmarks of every face dlib finds (upsample 1, as the scripts)."""
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        rects = list(self._detector(arr, 1))
        boxes, points = [], []
        for r in rects:
            shape = self._predictor(arr, r)
            boxes.append((r.left(), r.top(), r.right(), r.bottom()))
            points.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
        return boxes, points

    def align(self, image: Image.Image, name: str = "the image") -> AlignedFace:
        """Align the largest face of ``image``; one InputError line when there is none."""
        boxes, points = self.landmarks(image)
        if not boxes:
            raise InputError(
                f"no face found in {name} (dlib's frontal detector finds upright faces; profiles, "
                "tiny or heavily occluded faces fail): crop it yourself or pass another picture"
            )
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        i = int(np.argmax(areas))
        note = None
        if len(boxes) > 1:
            note = f"{len(boxes)} faces found in {name}; aligned the largest (box {boxes[i]})"
        quad, qsize = ffhq_quad(points[i])
        out = warp_to_quad(image, quad, qsize, self.output_size, self.transform_size)
        return AlignedFace(out, len(boxes), boxes[i], points[i], note)


def align_file(
    path: str | os.PathLike, aligner: FaceAligner | None = None, output_size: int = DEFAULT_OUTPUT_SIZE
) -> AlignedFace:
    """Read ``path`` as a person sees it (EXIF orientation, alpha on white) and align its face."""
    from egain.utils.images import open_image

    aligner = aligner or FaceAligner(output_size)
    return aligner.align(open_image(path), name=f"'{Path(path).name}'")


__all__ = ["DEFAULT_OUTPUT_SIZE", "AlignedFace", "FaceAligner", "align_file", "ffhq_quad", "warp_to_quad"]

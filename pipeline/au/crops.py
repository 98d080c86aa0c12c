"""Face boxes and crops for AU frames: the paper's 5% margin, no alignment.

Boxes come from the dataset's ``face_boxes.csv`` (``subject,sequence,frame,x,y,w,h`` in frame
pixels, keyed by label frame; any detector can write it) or, when that file is absent, from
OpenCV's bundled frontal-face Haar cascade with a running median over each sequence.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

BOX_FILE = "face_boxes.csv"
BOX_COLUMNS = ("subject", "sequence", "frame", "x", "y", "w", "h")


def expand_box(x: float, y: float, w: float, h: float, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by ``margin`` x its width/height on every side, clipped to the image:
    integer ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive."""
    x0, y0 = x - margin * w, y - margin * h
    x1, y1 = x + w + margin * w, y + h + margin * h
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(width, int(round(x1))), min(height, int(round(y1)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box ({x}, {y}, {w}, {h}) lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def crop_face(bgr: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int) -> np.ndarray:
    """Crop the expanded box and resize it to ``size`` x ``size`` (area when shrinking, cubic when enlarging)."""
    x0, y0, x1, y1 = expand_box(*box, margin, bgr.shape[1], bgr.shape[0])
    face = bgr[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if min(face.shape[:2]) >= size else cv2.INTER_CUBIC
    return cv2.resize(face, (size, size), interpolation=interp)


def read_boxes(root: Path) -> pd.DataFrame | None:
    """``face_boxes.csv`` of a dataset root, or None when the dataset has none."""
    path = root / BOX_FILE
    if not path.is_file():
        return None
    boxes = pd.read_csv(path, dtype={"subject": str, "sequence": str})
    missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {','.join(BOX_COLUMNS)}")
    return boxes[list(BOX_COLUMNS)]


class HaarDetector:
    """OpenCV's frontal-face cascade (shipped in opencv-python 4.x wheels): the largest face per frame."""

    def __init__(self):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"{path}: cannot load OpenCV's face cascade (opencv-python 5.x wheels lack it)")

    def __call__(self, bgr: np.ndarray) -> tuple[float, float, float, float] | None:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        side = min(gray.shape)
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side // 8, side // 8))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        return float(x), float(y), float(w), float(h)


def smooth_boxes(boxes: list[tuple | None], window: int = 5) -> list[tuple | None]:
    """Running median (over ``window`` detected neighbours) of a sequence's boxes; gaps stay None."""
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        return boxes
    arr = np.array([boxes[i] for i in found], dtype=np.float64)
    half = window // 2
    out: list[tuple | None] = [None] * len(boxes)
    for k, i in enumerate(found):
        out[i] = tuple(np.median(arr[max(0, k - half): k + half + 1], axis=0))
    return out

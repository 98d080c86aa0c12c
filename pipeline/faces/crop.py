"""The face crop of the paper: the detector's box grown by a margin per side, no alignment, resized."""

from __future__ import annotations

import cv2
import numpy as np


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

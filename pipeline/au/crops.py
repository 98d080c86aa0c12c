"""Where the face of each AU frame is: the dataset's ``face_boxes.csv``, or the face detector.

``face_boxes.csv`` (``subject,sequence,frame,x,y,w,h`` in frame pixels, keyed by label frame; any
detector can write it) is used when the dataset root has one; otherwise every frame goes through
:class:`pipeline.faces.detect.FaceDetector` and its largest face is taken. Either way ``prepare``
writes the boxes it cropped to ``data/au/<dataset>/face_boxes.csv`` in the same format, so a
detected run can be replayed (or corrected) without the detector.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import InputError

BOX_FILE = "face_boxes.csv"
BOX_COLUMNS = ("subject", "sequence", "frame", "x", "y", "w", "h")


def read_boxes(root: Path) -> pd.DataFrame | None:
    """``face_boxes.csv`` of a dataset root, or None when the dataset has none."""
    path = root / BOX_FILE
    if not path.is_file():
        return None
    boxes = pd.read_csv(path, dtype={"subject": str, "sequence": str})
    missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {','.join(BOX_COLUMNS)}")
    return boxes[list(BOX_COLUMNS)]

"""Facial region maps as data: the LaPa label set, where a source image's map lies, reading one.

A region map is a single-channel PNG of the image's displayed size (EXIF orientation applied) whose
pixels hold LaPa labels (:data:`LAPA`). A source's maps live in a tree of their own
(``sources.<name>.regions``) that mirrors the source root: the map of ``<root>/<rel>`` is
``<regions>/<rel>`` with a ``.png`` extension, and the map of a tar member ``<root>/<tar>:<member>``
is ``<regions>/<tar>/<member>`` likewise. The synthetic world writes exact maps there; for real faces
they come from a face parser the user runs (its weights are never downloaded by the project).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

LAPA = {"background": 0, "skin": 1, "left_brow": 2, "right_brow": 3, "left_eye": 4, "right_eye": 5, "nose": 6,
        "upper_lip": 7, "inner_mouth": 8, "lower_lip": 9, "hair": 10}
MAX_LABEL = max(LAPA.values())


def regions_path(relpath: str) -> str:
    """The map's path under a regions root, for an image at ``relpath`` under its source root
    (``<tar>:<member>`` for a tar member)."""
    return str(Path(relpath.replace(":", "/")).with_suffix(".png"))


def find(regions_root: str | Path, relpath: str) -> tuple[str, str]:
    """(path, content signature) of the image's map, or ("", "") when there is none."""
    path = Path(regions_root) / regions_path(relpath)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return "", ""
    return str(path), hashlib.sha1(data).hexdigest()[:16]


class RegionMapError(ValueError):
    """A region map that cannot be used: unreadable, of another size than its image, or not LaPa labels."""


def read(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """The map at ``path`` as uint8 labels, checked against the image's (height, width) ``shape``."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
        raise RegionMapError(f"{path}: not a single-channel 8-bit PNG of LaPa labels")
    if labels.shape != tuple(shape):
        raise RegionMapError(f"{path}: {labels.shape[1]}x{labels.shape[0]} pixels, its image {shape[1]}x{shape[0]}")
    if labels.max() > MAX_LABEL:
        raise RegionMapError(f"{path}: label {int(labels.max())}, expected LaPa labels 0-{MAX_LABEL}")
    return labels

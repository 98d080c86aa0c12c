"""Face tracks within a clip and the windows of T consecutive face crops cut from them.

A track is a run of consecutive frames in each of which the detector finds a face (the largest, with
its score >= the detector's threshold) that overlaps the previous frame's face by ``min_iou`` or
more: a missed detection or a jump (a cut, another person) ends it. Windows of ``length`` frames lie
wholly inside one track and start every ``stride`` frames; each frame is cropped around its own box
(grown by ``margin`` per side), as the AU datasets' frames are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..faces.crop import crop_face


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def spans(boxes: list[tuple[float, ...] | None], min_iou: float) -> list[tuple[int, int]]:
    """[start, end) of each track: consecutive frames with a face, each overlapping the one before."""
    out, start = [], None
    for i, box in enumerate(boxes):
        if box is None:
            if start is not None:
                out.append((start, i))
            start = None
        elif start is None:
            start = i
        elif iou(boxes[i - 1], box) < min_iou:
            out.append((start, i))
            start = i
    if start is not None:
        out.append((start, len(boxes)))
    return out


def window_starts(tracks: list[tuple[int, int]], length: int, stride: int) -> list[int]:
    """First frames of the windows of ``length`` frames inside the tracks, every ``stride`` frames."""
    return [s for a, b in tracks for s in range(a, b - length + 1, stride)]


@dataclass(frozen=True)
class Window:
    start: int
    crops: list[np.ndarray]  # ``length`` BGR face crops, size x size
    boxes: list[tuple[float, float, float, float]]


def clip_windows(frames: list[np.ndarray], detector, length: int, stride: int, margin: float, size: int,
                 min_iou: float = 0.3) -> tuple[list[Window], list[tuple[int, int]]]:
    """The windows of one clip's frames and its tracks. ``detector`` is a :class:`FaceDetector`."""
    found = detector.batch(frames)
    boxes = [faces[0].box if faces else None for faces in found]  # largest face first
    tracks = spans(boxes, min_iou)
    windows = [Window(s, [crop_face(frames[i], boxes[i], margin, size) for i in range(s, s + length)],
                      [tuple(map(float, boxes[i])) for i in range(s, s + length)])
               for s in window_starts(tracks, length, stride)]
    return windows, tracks

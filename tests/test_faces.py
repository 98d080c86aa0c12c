"""The face detector on a real photograph, and `prepare` cropping with it exactly as with a box file."""

from __future__ import annotations

import json
import shutil
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.au.prepare import prepare
from pipeline.config import ConfigError, load_params
from pipeline.faces import retinaface
from pipeline.faces.detect import DETECTORS, FaceDetector, describe

from .conftest import PARAMS
from .real_faces import FACE, VIDEO_FRAMES, iou, portrait, video_frame


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request):
    if request.param == "yunet":
        pytest.importorskip("yuface", reason="YuNet is optional (pip install '.[yunet]', CPython 3.11)")
    return FaceDetector(min_score=0.5, name=request.param)


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
    """Frames above ``max_side`` are shrunk for detection; the box must still be in the frame's own pixels."""
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


def test_a_batch_finds_what_single_frames_find():
    """Frames of one size go through RetinaFace together; a frame's faces must not depend on its batch."""
    detector = FaceDetector(min_score=0.5)
    frames = [video_frame(k) for k in range(VIDEO_FRAMES)] + [np.full((480, 640, 3), 90, np.uint8)]
    batched = detector.batch(frames)
    assert [len(f) for f in batched] == [1] * (VIDEO_FRAMES - 1) + [0, 0]  # the cut-off face and the blank frame
    for one, together in zip((detector(f) for f in frames), batched):
        assert len(one) == len(together)
        for a, b in zip(one, together):
            assert np.allclose(a.box, b.box, atol=1e-2) and abs(a.score - b.score) < 1e-4
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-2)


def test_frames_of_several_sizes_in_one_batch_keep_their_order():
    detector = FaceDetector(min_score=0.5)
    small = cv2.resize(portrait(), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    found = detector.batch([portrait(), np.full((100, 120, 3), 90, np.uint8), small, portrait()[:, :, 0]])
    assert [len(f) for f in found] == [1, 0, 1, 1]  # a grey frame is read as BGR
    assert iou(found[2][0].box, tuple(v / 2 for v in FACE)) > 0.7 and iou(found[3][0].box, FACE) > 0.7


def test_retinaface_anchors_follow_the_heads_layout():
    """Two anchors per cell at strides 8, 16, 32 (sides 16/32, 64/128, 256/512 px), the stride-2
    convolutions rounding odd sizes up; the network's outputs have one row per anchor."""
    a = retinaface.anchors(480, 640)
    assert a.shape == ((60 * 80 + 30 * 40 + 15 * 20) * 2, 4)
    assert a[0].tolist() == [4.0, 4.0, 16.0, 16.0] and a[1].tolist() == [4.0, 4.0, 32.0, 32.0]
    assert a[2].tolist() == [12.0, 4.0, 16.0, 16.0] and a[-1].tolist() == [624.0, 464.0, 512.0, 512.0]
    model = retinaface.load()
    import torch

    with torch.no_grad():
        loc, conf, marks = model(torch.zeros(1, 3, 101, 75))
    assert loc.shape[1] == conf.shape[1] == marks.shape[1] == len(retinaface.anchors(101, 75))


def test_unknown_or_missing_detector_is_a_one_line_error(tmp_path, monkeypatch):
    """Also where yuface is installed: the import is blocked, as on a Python without its wheel."""
    with pytest.raises(ValueError, match="expected one of retinaface, yunet"):
        FaceDetector(name="mtcnn")
    monkeypatch.setitem(sys.modules, "yuface", None)  # `import yuface` raises ImportError
    with pytest.raises(ValueError, match="needs the yuface package"):
        FaceDetector(name="yunet")
    root = _bp4d_root(tmp_path / "BP4D")  # no face_boxes.csv: prepare would detect
    params = load_params(PARAMS, {"au.bp4d.root": str(root), "au.detector": "yunet"})
    with pytest.raises(ConfigError, match=r"au.detector = 'yunet': expected a detector that runs here .*pip install yuface"):
        prepare(params, "bp4d", tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing written before the error"


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
    assert record["faces"] == describe("retinaface") | {"min_score": 0.5}
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

"""RAF-DB (basic) and AffectNet written in their native layouts: faces showing basic emotions.

Each image is a new person making one emotion's expression (:mod:`.emotions`), at an in-the-wild
pose, light and size, with each dataset's class imbalance in proportion and its known flaws.

- RAF-DB: ``basic/Image/original/train_00001.jpg`` (photos of any size and aspect) with
  ``basic/Annotation/boundingbox/train_00001_boundingbox.txt`` (``x0 y0 x1 y1``), the aligned
  ``basic/Image/aligned/train_00001_aligned.jpg`` (100x100, roll undone) and
  ``basic/EmoLabel/list_patition_label.txt`` (sic) with lines ``train_00001.jpg 5`` (labels 1-7),
  test images named ``test_0001.jpg`` (4 digits). Train/test in the real proportion (12,271 / 3,068)
  and class sizes in the real proportions; a few images are grayscale, as some real ones are.
- AffectNet: ``Manually_Annotated_Images/<n>/<56 hex>.jpg`` and
  ``Manually_Annotated_file_lists/training.csv`` (with its header) and ``validation.csv`` (without
  one, as in some copies): ``subDirectory_filePath, face_x, face_y, face_width, face_height,
  facial_landmarks`` (68 points as 136 ``;``-joined numbers), ``expression`` (0-10), ``valence``,
  ``arousal``. Training classes in the real proportions of codes 0-7 plus rows of codes 8-10 (none,
  uncertain, no-face) that every benchmark leaves out; validation balanced. Flaws: grayscale images,
  a row with ``NULL`` fields and a truncated file.

Class sizes have a floor of 2 per class and split, so the rarest classes exist in a small world.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..config import SynthConfig
from ..fer.classes import (AFFECTNET, AFFECTNET_OTHER, AFFECTNET_TRAIN_COUNTS, RAFDB, RAFDB_TEST_COUNTS,
                           RAFDB_TRAIN_COUNTS)
from .emotions import PROTOTYPES, expression
from .flaws import encode
from .identity import sample_identity
from .look import apply_look, paint_background, sample_look
from .render import Pose, render_face, to_pixels
from .seeding import rng_for

DIRNAMES = {"rafdb": "RAF-DB", "affectnet": "AffectNet"}
MIN_PER_CLASS = 2
GRAYSCALE_RATE = 0.04
VALENCE_AROUSAL = {"neutral": (0.0, 0.0), "happiness": (0.7, 0.4), "sadness": (-0.6, -0.3), "surprise": (0.2, 0.7),
                   "fear": (-0.6, 0.6), "disgust": (-0.7, 0.3), "anger": (-0.6, 0.7), "contempt": (-0.5, 0.2),
                   "none": (0.1, 0.1), "uncertain": (0.0, 0.2)}


def allocate(total: int, weights, minimum: int = MIN_PER_CLASS) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), each part at least ``minimum``."""
    w = np.asarray(weights, float)
    base = np.full(len(w), minimum)
    rest = max(0, total - base.sum())
    share = rest * w / w.sum()
    counts = base + np.floor(share).astype(int)
    for k in np.argsort(-(share - np.floor(share)))[: total - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def face_image(seed: int, dataset: str, index: int, emotion: str, canvas: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, Pose]:
    """One photo (BGR) of a new person showing ``emotion``, and the face's pose."""
    rng = rng_for(seed, "fer", dataset, index)
    person = sample_identity(rng_for(seed, "fer-identity", dataset, index), f"{dataset}:{index}")
    if canvas is None:
        w = int(rng.integers(160, 480))
        canvas = (w, int(w / rng.uniform(0.75, 1.33)))
    w, h = canvas
    size = min(w, h) * rng.uniform(0.4, 0.7)
    pose = Pose(w / 2 + rng.normal(0, 0.06) * w, h * 0.5 + rng.normal(0, 0.05) * h, size,
                rng.normal(0, 6), rng.normal(0, 10))
    img = np.empty((h, w, 3), np.uint8)
    paint_background(img, person.background, person.background_stripes)
    if emotion != "no-face":
        aus, unilateral = expression(rng, emotion if emotion in PROTOTYPES else str(rng.choice(RAFDB)))
        render_face(img, person, aus, pose, unilateral)
    return apply_look(img, sample_look(rng, 1.0), rng), pose


def aligned(img: np.ndarray, pose: Pose, size: int = 100) -> np.ndarray:
    """RAF-DB's aligned face: roll undone about the face centre, the face box + 10% resized to ``size``."""
    rot = cv2.getRotationMatrix2D((pose.cx, pose.cy), pose.roll, 1.0)
    upright = cv2.warpAffine(img, rot, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    half = pose.size * 0.55
    src = np.float32([[pose.cx - half, pose.cy - half], [pose.cx + half, pose.cy - half], [pose.cx - half, pose.cy + half]])
    dst = np.float32([[0, 0], [size, 0], [0, size]])
    return cv2.warpAffine(upright, cv2.getAffineTransform(src, dst), (size, size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REFLECT)


def _jpeg(img: np.ndarray, grayscale: bool, quality: int = 90) -> bytes:
    return encode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if grayscale else img, "jpg", quality)


def _write(root: Path, rel: str, data: bytes | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _shuffled_labels(rng: np.random.Generator, counts: list[int]) -> list[int]:
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    return labels.tolist()


def write_rafdb(cfg: SynthConfig, root: Path) -> list[dict]:
    """RAF-DB basic under ``root`` (the ``basic`` folder); returns the truth rows."""
    n = cfg.fer.rafdb.images
    n_train = round(n * sum(RAFDB_TRAIN_COUNTS) / (sum(RAFDB_TRAIN_COUNTS) + sum(RAFDB_TEST_COUNTS)))
    rng = rng_for(cfg.seed, "rafdb-plan")
    splits = {"train": _shuffled_labels(rng, allocate(n_train, RAFDB_TRAIN_COUNTS)),
              "test": _shuffled_labels(rng, allocate(n - n_train, RAFDB_TEST_COUNTS))}
    lines, truth, index = [], [], 0
    for split, labels in splits.items():
        for k, label in enumerate(labels, start=1):
            name = f"{split}_{k:05d}" if split == "train" else f"{split}_{k:04d}"
            img, pose = face_image(cfg.seed, "rafdb", index, RAFDB[label])
            gray = rng_for(cfg.seed, "rafdb-gray", index).random() < GRAYSCALE_RATE
            _write(root, f"Image/original/{name}.jpg", _jpeg(img, gray))
            _write(root, f"Image/aligned/{name}_aligned.jpg", _jpeg(aligned(img, pose), gray))
            x, y, w, h = pose.box()
            _write(root, f"Annotation/boundingbox/{name}_boundingbox.txt", f"{x:.2f} {y:.2f} {x + w:.2f} {y + h:.2f}\n")
            lines.append(f"{name}.jpg {label + 1}")
            truth.append({"dataset": "rafdb", "split": split, "image": f"{name}.jpg", "emotion": RAFDB[label],
                          "code": label + 1, "flaw": "grayscale" if gray else ""})
            index += 1
    _write(root, "EmoLabel/list_patition_label.txt", "\n".join(sorted(lines)) + "\n")
    return truth


AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                     "expression", "valence", "arousal")
OTHER_RATE = 0.08  # of the training rows: codes 8-10, outside AffectNet-7 and -8


def write_affectnet(cfg: SynthConfig, root: Path) -> list[dict]:
    """AffectNet's manually annotated part under ``root``; returns the truth rows."""
    n = cfg.fer.affectnet.images
    n_val = max(len(AFFECTNET) * MIN_PER_CLASS, round(n * 0.15))
    n_other = 3 * max(1, round((n - n_val) * OTHER_RATE / 3))  # codes 8, 9 and 10 alike
    rng = rng_for(cfg.seed, "affectnet-plan")
    train = _shuffled_labels(rng, allocate(n - n_val - n_other, AFFECTNET_TRAIN_COUNTS)) + [8, 9, 10] * (n_other // 3)
    rng.shuffle(train)
    val = _shuffled_labels(rng, allocate(n_val, [1] * len(AFFECTNET)))
    null_row = int(rng.integers(len(train)))  # a row with NULL fields, as some real rows have
    truncated = int(rng.integers(len(train)))  # a file cut short
    truth, index = [], 0
    for split, codes, listing, header in (("train", train, "training.csv", True), ("test", val, "validation.csv", False)):
        rows = [",".join(AFFECTNET_COLUMNS)] if header else []
        for k, code in enumerate(codes):
            emotion = AFFECTNET[code] if code < len(AFFECTNET) else AFFECTNET_OTHER[code]
            img, pose = face_image(cfg.seed, "affectnet", index, emotion)
            digest = hashlib.sha256(f"{cfg.seed}:affectnet:{index}".encode()).hexdigest()[:56]
            rel = f"{1 + index // 50}/{digest}.jpg"
            gray = rng_for(cfg.seed, "affectnet-gray", index).random() < GRAYSCALE_RATE
            data = _jpeg(img, gray)
            flaw = "grayscale" if gray else ""
            if split == "train" and k == truncated:
                data, flaw = data[: len(data) // 2], "truncated"
            _write(root, f"Manually_Annotated_Images/{rel}", data)
            x, y, w, h = (int(round(v)) for v in pose.box())
            valence, arousal = (-2.0, -2.0) if code == 10 else (
                float(np.clip(v + rng.normal(0, 0.15), -1, 1)) for v in VALENCE_AROUSAL[emotion])
            fields = [rel, str(x), str(y), str(w), str(h), ";".join(f"{v:.2f}" for v in landmarks(pose).ravel()),
                      str(code), f"{valence:.6f}", f"{arousal:.6f}"]
            if split == "train" and k == null_row:
                fields[1:5], flaw = ["NULL"] * 4, (flaw + " null_fields").strip()
            rows.append(",".join(fields))
            truth.append({"dataset": "affectnet", "split": split, "image": rel, "emotion": emotion, "code": code,
                          "flaw": flaw})
            index += 1
        _write(root, f"Manually_Annotated_file_lists/{listing}", "\n".join(rows) + "\n")
    return truth


# The 68 points of the iBUG scheme on a neutral face, in face-box units (jaw, brows, nose, eyes, mouth).
_t = np.linspace(0.05, np.pi - 0.05, 17)
_e = np.linspace(np.pi, 3 * np.pi, 6, endpoint=False)
_TEMPLATE = np.concatenate([
    np.stack([0.5 - 0.42 * np.cos(_t), 0.45 + 0.5 * np.sin(_t)], 1),
    np.stack([np.linspace(0.2, 0.42, 5), [0.31, 0.29, 0.28, 0.29, 0.31]], 1),
    np.stack([np.linspace(0.58, 0.8, 5), [0.31, 0.29, 0.28, 0.29, 0.31]], 1),
    np.stack([[0.5] * 4, np.linspace(0.4, 0.56, 4)], 1),
    np.stack([np.linspace(0.43, 0.57, 5), [0.62, 0.63, 0.64, 0.63, 0.62]], 1),
    *[np.stack([cx + 0.07 * np.cos(_e), 0.41 + 0.025 * np.sin(_e)], 1) for cx in (0.33, 0.67)],
    np.stack([0.5 + 0.13 * np.cos(np.linspace(np.pi, 3 * np.pi, 12, endpoint=False)),
              0.76 + 0.05 * np.sin(np.linspace(np.pi, 3 * np.pi, 12, endpoint=False))], 1),
    np.stack([0.5 + 0.08 * np.cos(np.linspace(np.pi, 3 * np.pi, 8, endpoint=False)),
              0.76 + 0.02 * np.sin(np.linspace(np.pi, 3 * np.pi, 8, endpoint=False))], 1),
])


def landmarks(pose: Pose) -> np.ndarray:
    """Approximate 68 landmarks ``[68, 2]`` in pixels for a face at ``pose`` (neutral geometry)."""
    return to_pixels(pose, _TEMPLATE, 0.1)


WRITERS = {"rafdb": write_rafdb, "affectnet": write_affectnet}


def fer_root(out_dir: str | Path, dataset: str) -> Path:
    """Where the world writes ``dataset``: the folder a reader's ``root`` points at."""
    return Path(out_dir) / "fer" / DIRNAMES[dataset] / ("basic" if dataset == "rafdb" else "")


def write_dataset(cfg: SynthConfig, dataset: str) -> list[dict]:
    return WRITERS[dataset](cfg, fer_root(cfg.out_dir, dataset))

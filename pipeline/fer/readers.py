"""Readers of the FER datasets in their native layouts, and of a ``labels.csv`` of your own.

Every reader returns one row per listed image: ``image`` (path relative to the dataset root),
``label`` (the class index, in the order of :func:`pipeline.fer.classes.classes`), ``split``
(``train`` or ``test``: the official split; AffectNet's validation list is its test set), the face
box ``x, y, w, h`` in pixels (NaN: the image is the face), and ``reason``: empty for a usable row,
else why the row is left out (AffectNet's codes 8-10, ``NULL`` fields). Nothing is dropped
silently: ``prepare_fer`` lists every left-out row in ``skipped.csv``.

Layouts (``dataset-layouts.md`` sections 4-5 of the project's references):

- RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (the real file's typo; ``list_partition_label.txt``
  is accepted too), lines ``train_00001.jpg 5`` with labels 1-7, train/test by the name's prefix;
  images ``Image/aligned/<name>_aligned.jpg`` (``images: aligned``, 100x100, as the paper) or
  ``Image/original/<name>`` cropped with ``Annotation/boundingbox/<name>_boundingbox.txt``
  (``images: original``). Or a folder-per-class copy: ``[DATASET/]train|test/<1-7 or name>/*.jpg``.
- AffectNet: ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` (a header row is
  detected, some copies have none) over ``Manually_Annotated_Images/``; codes 0-7 (AffectNet-8) or 0-6
  (``classes: 7``). Or a folder-per-class copy ``train|val/<0-7 or name>/*.jpg`` (the authors' copy
  uses the codes as folder names; named folders are mapped by name, whatever their order).
- ``labels.csv`` (any dataset root, or ``fer.custom``): columns ``image,label,split``; ``label`` is a
  class name of the configured ``classes`` or its 0-based index; ``split`` is ``train`` or ``test``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import InputError, MissingInput
from .classes import AFFECTNET, AFFECTNET_OTHER, RAFDB, canonical

COLUMNS = ("image", "label", "split", "x", "y", "w", "h", "reason")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
RAFDB_LISTS = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
AFFECTNET_LISTS = {"train": "Manually_Annotated_file_lists/training.csv", "test": "Manually_Annotated_file_lists/validation.csv"}
AFFECTNET_HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                    "expression", "valence", "arousal")
NO_BOX = (np.nan,) * 4


def _frame(rows: list[tuple]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["label"] = table.label.astype(int)
    return table.astype({c: float for c in "xywh"})


# ---------------------------------------------------------------------------------- RAF-DB
def read_rafdb(root: Path, images: str = "aligned") -> pd.DataFrame:
    """RAF-DB basic (official layout or a folder-per-class copy) under ``root``."""
    listing = next((root / p for p in RAFDB_LISTS if (root / p).is_file()), None)
    if listing is None:
        folders = _class_folders(root, "rafdb", ("train", "test"))
        if folders is not None:
            return folders
        raise MissingInput(f"{root}: no {RAFDB_LISTS[0]} (nor {RAFDB_LISTS[1]}, nor train/ and test/ class folders): "
                           "expected RAF-DB's basic/ folder")
    rows = []
    for lineno, line in enumerate(listing.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):  # 3: "name split label", a format some scripts wrote
            raise InputError(f"{listing}:{lineno}: expected '<image> <label>' (e.g. 'train_00001.jpg 5'), got {line!r}")
        name, code = parts[0], parts[-1]
        if not code.isdigit() or not 1 <= int(code) <= len(RAFDB):
            raise InputError(f"{listing}:{lineno}: label {code!r} is not one of 1-{len(RAFDB)}")
        split = name.split("_", 1)[0]
        if split not in ("train", "test"):
            raise InputError(f"{listing}:{lineno}: image {name!r} does not start with train_ or test_")
        stem = Path(name).stem
        if images == "aligned":
            rows.append((f"Image/aligned/{stem}_aligned.jpg", int(code) - 1, split, *NO_BOX, ""))
        else:
            rows.append((f"Image/original/{name}", int(code) - 1, split, *_rafdb_box(root, stem), ""))
    return _frame(rows)


def _rafdb_box(root: Path, stem: str) -> tuple[float, float, float, float]:
    """``x, y, w, h`` from ``Annotation/boundingbox/<stem>_boundingbox.txt`` (``x0 y0 x1 y1``), or no box."""
    path = root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
    if not path.is_file():
        return NO_BOX
    try:
        x0, y0, x1, y1 = (float(v) for v in path.read_text().split()[:4])
    except ValueError:
        raise InputError(f"{path}: expected 'x0 y0 x1 y1', got {path.read_text()[:60]!r}") from None
    return x0, y0, x1 - x0, y1 - y0


# ------------------------------------------------------------------------------- AffectNet
def read_affectnet(root: Path, n_classes: int = 8) -> pd.DataFrame:
    """AffectNet's manually annotated lists (or a folder-per-class copy) under ``root``; codes >= ``n_classes``
    are listed with a reason and left out."""
    if not all((root / p).is_file() for p in AFFECTNET_LISTS.values()):
        folders = _class_folders(root, "affectnet", ("train", "val"), n_classes)
        if folders is not None:
            return folders
        raise MissingInput(f"{root}: no {AFFECTNET_LISTS['train']} and {AFFECTNET_LISTS['test']} (nor train/ and "
                           "val/ class folders): expected AffectNet's root folder")
    rows = []
    for split, rel in AFFECTNET_LISTS.items():
        path = root / rel
        with path.open(newline="") as fh:
            for lineno, fields in enumerate(csv.reader(fh), start=1):
                if not fields or (lineno == 1 and fields[0] == AFFECTNET_HEADER[0]):
                    continue
                rows.append(_affectnet_row(fields, split, n_classes, f"{path}:{lineno}"))
    return _frame(rows)


def _affectnet_row(fields: list[str], split: str, n_classes: int, where: str) -> tuple:
    if len(fields) != len(AFFECTNET_HEADER):
        raise InputError(f"{where}: expected {len(AFFECTNET_HEADER)} fields ({','.join(AFFECTNET_HEADER)}), got {len(fields)}")
    image = f"Manually_Annotated_Images/{fields[0]}"
    code = fields[6].strip()
    if not code.lstrip("-").isdigit():
        raise InputError(f"{where}: expression {code!r} is not an integer code 0-10")
    code = int(code)
    if code >= n_classes:
        what = AFFECTNET_OTHER.get(code) or (AFFECTNET[code] if 0 <= code < len(AFFECTNET) else f"unknown code {code}")
        return image, -1, split, *NO_BOX, f"expression {code} ({what}) is not one of the {n_classes} classes"
    if "NULL" in fields[1:5]:
        return image, code, split, *NO_BOX, "NULL face box in the list"
    try:
        box = tuple(float(v) for v in fields[1:5])
    except ValueError:
        raise InputError(f"{where}: face box {fields[1:5]} is not four numbers") from None
    return image, code, split, *box, ""


# ------------------------------------------------------------------------ folders, labels.csv
def _class_folders(root: Path, dataset: str, splits: tuple[str, str], n_classes: int = 8) -> pd.DataFrame | None:
    """``[DATASET/]<split>/<class>/*.jpg`` with class folders named by label code or by class name; None if absent."""
    base = next((b for b in (root, root / "DATASET") if all((b / s).is_dir() for s in splits)), None)
    if base is None:
        return None
    names = RAFDB if dataset == "rafdb" else AFFECTNET[:n_classes]
    rows = []
    for split in splits:
        for folder in sorted(p for p in (base / split).iterdir() if p.is_dir()):
            label = _folder_label(folder, dataset, names)
            for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                rel = image.relative_to(root).as_posix()
                if label >= len(names):
                    rows.append((rel, -1, "train" if split == "train" else "test", *NO_BOX,
                                 f"class folder {folder.name} is not one of the {len(names)} classes"))
                else:
                    rows.append((rel, label, "train" if split == "train" else "test", *NO_BOX, ""))
    if not rows:
        raise InputError(f"{base}: class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return _frame(rows)


def _folder_label(folder: Path, dataset: str, names: tuple[str, ...]) -> int:
    if folder.name.isdigit():  # RAF-DB copies name folders 1-7 (its labels), AffectNet copies 0-7 (its codes)
        label = int(folder.name) - (1 if dataset == "rafdb" else 0)
        if label < 0 or (dataset == "rafdb" and label >= len(names)):
            raise InputError(f"{folder}: class folder {folder.name!r} is not a {dataset} label")
        return label
    name = canonical(folder.name)
    every = RAFDB if dataset == "rafdb" else AFFECTNET
    if name not in every:
        raise InputError(f"{folder}: class folder {folder.name!r} is not a {dataset} class ({', '.join(every)})")
    return every.index(name) if name in names else len(names)


def read_labels_csv(root: Path, classes: tuple[str, ...]) -> pd.DataFrame:
    """``root/labels.csv``: ``image,label,split`` with labels named by ``classes`` (or their 0-based index)."""
    path = root / "labels.csv"
    if not path.is_file():
        raise MissingInput(f"{path} missing: expected a table with columns image,label,split")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("image", "label", "split") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected image,label,split")
    lookup = {canonical(c): i for i, c in enumerate(classes)} | {str(i): i for i in range(len(classes))}
    bad = sorted(set(table.label) - set(lookup) - {c for c in table.label if canonical(c) in lookup})
    if bad:
        raise InputError(f"{path}: label(s) {bad[:5]} are not among the classes {list(classes)} or their indices")
    splits = sorted(set(table.split) - {"train", "test"})
    if splits:
        raise InputError(f"{path}: split value(s) {splits[:5]}: expected train or test")
    labels = [lookup.get(v, lookup.get(canonical(v))) for v in table.label]
    return _frame([(img, lab, split, *NO_BOX, "") for img, lab, split in zip(table.image, labels, table.split)])

"""AU labels and frame locations of BP4D, BP4D+, DISFA (native layouts) and a generic CSV.

Each reader returns one row per labelled frame: ``subject, sequence, frame`` (the label file's
frame number), ``image`` (where its pixels are: a file path relative to the root,
``archive.zip:member`` or ``video.avi#index``, empty when no image exists for that label row)
and one ``au<N>`` column per benchmark AU holding 1 (present), 0 (absent) or -1 (unknown).

Label rules (the paper's): BP4D/BP4D+ positive iff the occurrence code is 1 (9 = unknown);
DISFA positive iff intensity >= 2. The unknown policy is applied later (:func:`apply_policy`).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .folds import AUS

UNKNOWN = -1
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class LabelError(ValueError):
    """A label file or folder of a dataset is missing or malformed."""


def au_columns(dataset: str) -> list[str]:
    return [f"au{au}" for au in AUS[dataset]]


# ----------------------------------------------------------------------------- BP4D(+)
def read_occurrence_csv(path: Path, aus: tuple[int, ...]) -> pd.DataFrame:
    """An ``AU_OCC`` file -> frame + the wanted AUs (1 / 0 / -1 for code 9).

    The header lists the AU number of every column after the frame column: legacy BP4D files
    read ``0,1,2,...,99`` (column k = AU k), BP4D+ and re-released files list only the coded
    AUs (``1,1,2,4,5,...``, the frame column's cell reading ``1``); both map by header position.
    """
    try:
        table = pd.read_csv(path, header=None, dtype=str, skipinitialspace=True)
    except Exception as err:  # noqa: BLE001
        raise LabelError(f"{path}: cannot parse as CSV ({err})") from err
    header = [c.strip() for c in table.iloc[0].tolist()]
    try:
        column_au = {int(float(h)): i for i, h in enumerate(header) if i > 0}
    except ValueError as err:
        raise LabelError(f"{path}: header {header[:6]}...: expected AU numbers after the frame column") from err
    missing = [au for au in aus if au not in column_au]
    if missing:
        raise LabelError(f"{path}: no column for AU {missing} in the header")
    body = table.iloc[1:].astype(float).astype(int)
    out = pd.DataFrame({"frame": body.iloc[:, 0].to_numpy()})
    for au in aus:
        codes = body.iloc[:, column_au[au]].to_numpy()
        bad = set(np.unique(codes)) - {0, 1, 9}
        if bad:
            raise LabelError(f"{path}: AU {au} has codes {sorted(bad)}; expected 0, 1 or 9 (unknown)")
        out[f"au{au}"] = np.where(codes == 9, UNKNOWN, codes).astype(np.int8)
    return out


def _frame_files(names: list[str]) -> dict[int, str]:
    """frame number -> name, for files named by zero-padded numbers (3 or 4 digits, per folder)."""
    out = {}
    for name in names:
        stem, dot, suffix = Path(name).name.rpartition(".")
        if dot and f".{suffix.lower()}" in FRAME_SUFFIXES and stem.isdigit():
            out[int(stem)] = name
    return out


def read_bp4d(root: Path, dataset: str = "bp4d", offset: int = 0) -> pd.DataFrame:
    """BP4D (``Sequences_2D+3D/<subj>/<task>/``) or BP4D+ (``2D+3D/<subj>.zip`` or unpacked)."""
    occ_dir = root / "AUCoding" / "AU_OCC"
    files = sorted(occ_dir.glob("*.csv"))
    if not files:
        raise LabelError(f"{occ_dir}: no <subject>_<task>.csv occurrence files")
    frames_root = root / ("2D+3D" if dataset == "bp4dplus" else "Sequences_2D+3D")
    zips: dict[str, zipfile.ZipFile] = {}
    parts = []
    for path in files:
        m = re.fullmatch(r"([FM]\d{3})_(T\d+)", path.stem)
        if not m:
            raise LabelError(f"{path}: expected a name like F001_T1.csv")
        subject, task = m.groups()
        labels = read_occurrence_csv(path, AUS[dataset])
        images = _bp4d_images(frames_root, subject, task, zips)
        labels.insert(0, "subject", subject)
        labels.insert(1, "sequence", task)
        labels.insert(3, "image", [images.get(f + offset, "") for f in labels.frame])
        parts.append(labels)
    for zf in zips.values():
        zf.close()
    return pd.concat(parts, ignore_index=True)


def _bp4d_images(frames_root: Path, subject: str, task: str, zips: dict) -> dict[int, str]:
    folder = frames_root / subject / task
    if folder.is_dir():
        base = folder.relative_to(frames_root.parent).as_posix()
        return {f: f"{base}/{n}" for f, n in _frame_files([p.name for p in folder.iterdir()]).items()}
    archive = frames_root / f"{subject}.zip"
    if archive.is_file():
        if subject not in zips:
            zips[subject] = zipfile.ZipFile(archive)
        members = [n for n in zips[subject].namelist() if n.rstrip("/").split("/")[-2:-1] == [task]]
        rel = archive.relative_to(frames_root.parent).as_posix()
        return {f: f"{rel}:{n}" for f, n in _frame_files(members).items()}
    return {}


# ------------------------------------------------------------------------------- DISFA
DISFA_VIDEO_DIRS = ("Video_RightCamera", "Videos_RightCamera")


def disfa_video(root: Path, subject: str) -> Path | None:
    """The right-camera video of ``subject`` (folder and ``_Comp``/``_comp`` case vary)."""
    for folder in DISFA_VIDEO_DIRS:
        d = root / folder
        if d.is_dir():
            for p in d.iterdir():
                if p.name.lower() == f"rightvideo{subject.lower()}_comp.avi":
                    return p
    return None


def read_disfa(root: Path, offset: int = -1) -> pd.DataFrame:
    """``ActionUnit_Labels/SN001/SN001_au<N>.txt`` (``frame,intensity``, 1-based) and the right video."""
    import cv2

    label_root = root / "ActionUnit_Labels"
    subjects = sorted(p.name for p in label_root.iterdir() if p.is_dir()) if label_root.is_dir() else []
    if not subjects:
        raise LabelError(f"{label_root}: no SN<nnn> label folders")
    parts = []
    for subject in subjects:
        table = None
        for au in AUS["disfa"]:
            path = label_root / subject / f"{subject}_au{au}.txt"
            if not path.is_file():
                raise LabelError(f"{path}: missing (DISFA labels one file per AU)")
            col = pd.read_csv(path, header=None, names=["frame", f"au{au}"])
            col[f"au{au}"] = (col[f"au{au}"] >= 2).astype(np.int8)  # the paper: present iff intensity >= 2
            table = col if table is None else table.merge(col, on="frame", how="outer", validate="1:1")
        video = disfa_video(root, subject)
        n_frames = 0
        if video is not None:
            cap = cv2.VideoCapture(str(video))
            n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
        table = table.fillna(UNKNOWN).astype({f"au{a}": np.int8 for a in AUS["disfa"]})
        table.insert(0, "subject", subject)
        table.insert(1, "sequence", "right")
        rel = video.relative_to(root).as_posix() if video else ""
        index = table.frame.to_numpy() + offset  # label frame f is decoded frame f + offset (0-based)
        table.insert(3, "image", [f"{rel}#{i}" if 0 <= i < n_frames else "" for i in index])
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- generic
GENERIC_REQUIRED = ("subject", "sequence", "frame", "image")


def read_generic(path: Path, aus: tuple[int, ...]) -> pd.DataFrame:
    """A frames + labels CSV of your own: ``subject,sequence,frame,image,au1,au2,...`` with
    image paths relative to the CSV's folder and labels 1 / 0 / -1 (or 9) for unknown."""
    table = pd.read_csv(path, dtype={"subject": str, "sequence": str, "image": str})
    need = [*GENERIC_REQUIRED, *(f"au{a}" for a in aus)]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise LabelError(f"{path}: missing column(s) {missing}; expected {need}")
    for a in aus:
        col = table[f"au{a}"].replace(9, UNKNOWN)
        bad = set(col.unique()) - {0, 1, UNKNOWN}
        if bad:
            raise LabelError(f"{path}: column au{a} holds {sorted(bad)}; expected 1, 0 or -1/9 (unknown)")
        table[f"au{a}"] = col.astype(np.int8)
    return table[need].copy()


def read_dataset(dataset: str, root: str | Path, offset: int) -> pd.DataFrame:
    """The labelled frames of ``dataset`` under ``root``; a ``labels.csv`` there takes precedence
    over the native layout (the generic format)."""
    root = Path(root)
    if not root.is_dir():
        raise LabelError(f"{root}: the {dataset} root folder does not exist (au.{dataset}.root)")
    if (root / "labels.csv").is_file():
        return read_generic(root / "labels.csv", AUS[dataset])
    return read_disfa(root, offset) if dataset == "disfa" else read_bp4d(root, dataset, offset)


def apply_policy(labels: pd.DataFrame, dataset: str, policy: str) -> pd.DataFrame:
    """``negative``: unknown -> 0 (the released code); ``mask``: keep -1, left out of loss and metrics."""
    if policy == "negative":
        labels = labels.copy()
        cols = au_columns(dataset)
        labels[cols] = labels[cols].clip(lower=0)
    return labels

"""BP4D, BP4D+ and DISFA written in their native layouts, with their real subject IDs.

Layouts (one subject is written per call, so subjects render in parallel):

- BP4D: ``Sequences_2D+3D/F001/T1/<frame>.jpg`` (name = the CSV frame number, zero-padded to
  4 digits, or 3 for M009-M018); ``AUCoding/AU_OCC/F001_T1.csv`` (legacy header ``0,1,...,99``:
  column k is AU k; values 0/1, 9 = unknown; columns >= 40 all 9); one subject (F013 when
  rendered) has the re-release's named 35-column header instead; ``AUCoding/AU_INT/AU06/
  F001_T1_AU06.csv`` (no header, ``frame,intensity``) for AUs 6, 10, 12, 14, 17.
- BP4D+: ``2D+3D/F001.zip`` (entries ``F001/T1/<frame>.jpg``) for every other subject and
  unpacked ``2D+3D/M001/T1/...`` for the rest; ``AUCoding/AU_OCC/F001_T1.csv`` whose header is
  ``1`` (the frame column) then the 34 coded AUs; coded tasks T1, T6, T7, T8; label frames are
  1-based and JPEG numbers equal them. F041 (or the first subject when F041 is not rendered) has
  a label file 5 rows longer than its frames, like the real F041_T7.
- DISFA: ``Video_RightCamera/RightVideoSN001_Comp.avi`` (``_Comp``/``_comp`` alternate, as
  copies vary), optional ``Videos_LeftCamera/LeftVideoSN001_comp.avi``; ``ActionUnit_Labels/
  SN001/SN001_au1.txt`` for AUs 1,2,4,5,6,9,12,15,17,20,25,26 (no header, ``frame,intensity``,
  frames 1-based, 0-5). SN010 (or the first subject) has a video one frame short. AUs 5 and 20
  are not rendered by the synthetic world and are labelled 0 throughout.

Every dataset root also gets ``face_boxes.csv``, the stand-in for a face detector's output:
``subject,sequence,frame,x,y,w,h`` in pixels of the frame (``sequence`` is the task for BP4D/
BP4D+, the camera ``right``/``left`` for DISFA; ``frame`` is the label frame number).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..au.folds import spread_subjects
from ..config import SynthConfig
from .expression import au_sequence, smooth_noise, subject_offsets
from .flaws import encode
from .identity import sample_identity
from .look import apply_look, paint_background, sample_look
from .render import AUS, Pose, render_face
from .seeding import rng_for

BP4DPLUS_CODED_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28, 29, 30,
                      31, 32, 33, 34, 35, 36, 37, 38, 39)
BP4D_INTENSITY_AUS = (6, 10, 12, 14, 17)
DISFA_LABELLED_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
NATIVE_SIZE = {"bp4d": (1040, 1392), "bp4dplus": (1040, 1392), "disfa": (1024, 768)}  # (width, height)
DIRNAMES = {"bp4d": "BP4D", "bp4dplus": "BP4D+", "disfa": "DISFA"}
TASKS = {"bp4d": ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"), "bp4dplus": ("T1", "T6", "T7", "T8"), "disfa": ("video",)}
QUIRK_SUBJECT = {"bp4d": "F013", "bp4dplus": "F041", "disfa": "SN010"}
LAB_BACKGROUND = {"bp4d": ((120, 118, 112), (95, 92, 88)), "bp4dplus": ((110, 112, 118), (80, 84, 90)),
                  "disfa": ((70, 70, 72), (45, 45, 48))}


def rendered_subjects(cfg: SynthConfig, dataset: str) -> tuple[str, ...]:
    return spread_subjects(dataset, getattr(cfg.au, dataset).subjects)


def quirk_subject(cfg: SynthConfig, dataset: str) -> str:
    """The subject carrying the dataset's known quirk: the real one if rendered, else the first."""
    subjects = rendered_subjects(cfg, dataset)
    return QUIRK_SUBJECT[dataset] if QUIRK_SUBJECT[dataset] in subjects else subjects[0]


@dataclass
class SubjectOutput:
    boxes: list[tuple]  # (subject, sequence, frame, x, y, w, h)
    truth: list[dict]
    quirks: list[dict]


def _frames(cfg: SynthConfig, dataset: str, subject: str, task: str, n: int, camera_yaw: float = 0.0):
    """Yield (frame index, BGR image, intensities, pose) for one sequence."""
    seed = cfg.seed
    person = sample_identity(rng_for(seed, "identity", f"{dataset}:{subject}"), f"{dataset}:{subject}",
                             sex=subject[0] if subject[0] in "FM" else None)
    offsets = subject_offsets(rng_for(seed, "au-rates", dataset, subject), cfg.identity_au_strength)
    intensities = au_sequence(rng_for(seed, "au-seq", dataset, subject, task), n, offsets, task)
    rng = rng_for(seed, "frames", dataset, subject, task, camera_yaw)
    w, h = (round(s * cfg.au.frame_scale) for s in NATIVE_SIZE[dataset])
    size = w * (0.5 if dataset != "disfa" else 0.4)
    motion = smooth_noise(rng, n, 4)
    look = sample_look(rng, 0.5)
    canvas = np.empty((h, w, 3), np.uint8)
    paint_background(canvas, LAB_BACKGROUND[dataset], False)
    for i in range(n):
        pose = Pose(w / 2 + 0.02 * w * motion[i, 0], h * (0.42 if dataset != "disfa" else 0.5) + 0.02 * h * motion[i, 1],
                    size * (1 + 0.03 * motion[i, 2]), 3 * motion[i, 3], camera_yaw + 4 * motion[i, 2])
        img = canvas.copy()
        render_face(img, person, intensities[i], pose)
        yield i, apply_look(img, look, rng), intensities[i], pose


def _occurrence(intensities: np.ndarray) -> np.ndarray:
    """0/1 occurrence codes per rendered AU from intensities [n, len(AUS)]."""
    return (np.rint(intensities) >= 1).astype(int)


def _unknown_runs(rng: np.random.Generator, n: int, aus: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Runs of code 9 (not codable), like the occasional gaps of the real coding."""
    unknown = {}
    if rng.random() < 0.4:
        au = int(rng.choice(aus))
        start, length = int(rng.integers(0, n)), int(rng.integers(2, 7))
        mask = np.zeros(n, bool)
        mask[start:start + length] = True
        unknown[au] = mask
    return unknown


def _truth_row(dataset, subject, sequence, frame, image, intens, pose, unknown_aus=()) -> dict:
    row = {"dataset": dataset, "subject": subject, "sequence": sequence, "frame": frame, "image": image}
    row.update({f"au{au}": round(float(v), 3) for au, v in zip(AUS, intens)})
    row.update(dict(zip(("x", "y", "w", "h"), (round(v, 2) for v in pose.box()))))
    row["unknown_aus"] = " ".join(map(str, unknown_aus))
    return row


def _box_row(subject, sequence, frame, pose) -> tuple:
    return (subject, sequence, frame, *(round(v, 1) for v in pose.box()))


def write_bp4d_like(cfg: SynthConfig, dataset: str, subject: str, root: Path) -> SubjectOutput:
    """One BP4D or BP4D+ subject: frames, occurrence (and BP4D intensity) files."""
    spec = getattr(cfg.au, dataset)
    rng = rng_for(cfg.seed, "labels", dataset, subject)
    out = SubjectOutput([], [], [])
    plus = dataset == "bp4dplus"
    subjects = rendered_subjects(cfg, dataset)
    if plus:
        digits = 4 if subjects.index(subject) % 7 < 2 else 3
        zipped = subjects.index(subject) % 2 == 0
    else:
        digits = 3 if subject.startswith("M") and int(subject[1:]) >= 9 else 4
        zipped = False
    quirky = subject == quirk_subject(cfg, dataset)
    archive = io.BytesIO()
    zf = zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) if zipped else None
    for task in TASKS[dataset][:spec.tasks]:
        start = int(rng.integers(1, 900 if digits == 3 else 2500))
        rows, intens_all, records = [], [], []
        for i, img, intens, pose in _frames(cfg, dataset, subject, task, spec.frames):
            frame = start + i
            rel = f"{subject}/{task}/{frame:0{digits}d}.jpg"
            data = encode(img, "jpg", 90)
            if zf is not None:
                zf.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), data)
                image = f"2D+3D/{subject}.zip:{rel}"
            else:
                image = f"{'2D+3D' if plus else 'Sequences_2D+3D'}/{rel}"
                (root / image).parent.mkdir(parents=True, exist_ok=True)
                (root / image).write_bytes(data)
            out.boxes.append(_box_row(subject, task, frame, pose))
            rows.append(frame)
            intens_all.append(intens)
            records.append((image, pose))
        intens_all = np.array(intens_all)
        unknown = _unknown_runs(rng, len(rows), (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24))
        for i, (frame, (image, pose)) in enumerate(zip(rows, records)):
            out.truth.append(_truth_row(dataset, subject, task, frame, image, intens_all[i], pose,
                                        [au for au, m in unknown.items() if m[i]]))
        extra = 5 if (quirky and plus and task == TASKS[dataset][:spec.tasks][-1]) else 0
        if extra:
            out.quirks.append({"dataset": dataset, "subject": subject, "sequence": task, "quirk": "label_rows_without_frames",
                               "detail": f"{extra} label rows after the last frame"})
        named = quirky and not plus
        if named:
            out.quirks.append({"dataset": dataset, "subject": subject, "sequence": task, "quirk": "named_header",
                               "detail": "BP4D+-style 35-column header (re-release)"})
        _write_occ(root, subject, task, rows, intens_all, unknown, plus or named, extra)
        if not plus:
            _write_intensity(root, subject, task, rows, intens_all, unknown)
    if zf is not None:
        zf.close()
        (root / "2D+3D").mkdir(parents=True, exist_ok=True)
        (root / f"2D+3D/{subject}.zip").write_bytes(archive.getvalue())
    return out


def _write_occ(root, subject, task, frames, intens, unknown, named, extra) -> None:
    occ = _occurrence(intens)
    by_au = {au: occ[:, k] for k, au in enumerate(AUS)}
    columns = BP4DPLUS_CODED_AUS if named else tuple(range(1, 100))
    header = ("1," if named else "0,") + ",".join(map(str, columns))
    lines = [header]
    n = len(frames)
    for i in range(n + extra):
        frame = frames[0] + i
        cells = []
        for au in columns:
            if au >= 40:
                v = 9
            elif au in unknown and i < n and unknown[au][i]:
                v = 9
            else:
                v = int(by_au[au][min(i, n - 1)]) if au in by_au else 0
            cells.append(str(v))
        lines.append(f"{frame}," + ",".join(cells))
    path = root / "AUCoding" / "AU_OCC" / f"{subject}_{task}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write_intensity(root, subject, task, frames, intens, unknown) -> None:
    for au in BP4D_INTENSITY_AUS:
        vals = np.rint(intens[:, AUS.index(au)]).astype(int)
        if au in unknown:
            vals = np.where(unknown[au], 9, vals)
        path = root / "AUCoding" / "AU_INT" / f"AU{au:02d}" / f"{subject}_{task}_AU{au:02d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{f},{v}\n" for f, v in zip(frames, vals)))


def write_disfa(cfg: SynthConfig, subject: str, root: Path) -> SubjectOutput:
    """One DISFA subject: right (and optionally left) camera AVI and the 12 label files."""
    spec = cfg.au.disfa
    out = SubjectOutput([], [], [])
    short = subject == quirk_subject(cfg, "disfa")
    if short:
        out.quirks.append({"dataset": "disfa", "subject": subject, "sequence": "right", "quirk": "video_one_frame_short",
                           "detail": f"{spec.frames - 1} frames for {spec.frames} label rows"})
    cameras = [("right", 0.0)] + ([("left", -18.0)] if cfg.au.left_camera else [])
    labels = None
    for camera, yaw in cameras:
        number = int(subject[2:])
        rel = (f"Video_RightCamera/RightVideo{subject}_{'Comp' if number % 2 else 'comp'}.avi" if camera == "right"
               else f"Videos_LeftCamera/LeftVideo{subject}_comp.avi")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = (round(s * cfg.au.frame_scale) for s in NATIVE_SIZE["disfa"])
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write MJPG AVI files here ({path})")
        intens_all = []
        for i, img, intens, pose in _frames(cfg, "disfa", subject, "video", spec.frames, yaw):
            if not (short and camera == "right" and i == spec.frames - 1):
                writer.write(img)
            out.boxes.append(_box_row(subject, camera, i + 1, pose))
            out.truth.append(_truth_row("disfa", subject, camera, i + 1, f"{rel}:{i}", intens, pose))
            intens_all.append(intens)
        writer.release()
        labels = np.array(intens_all) if labels is None else labels
    for au in DISFA_LABELLED_AUS:
        vals = np.rint(labels[:, AUS.index(au)]).astype(int) if au in AUS else np.zeros(len(labels), int)
        p = root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"{i + 1},{v}\n" for i, v in enumerate(vals)))
    return out


def write_subject(cfg: SynthConfig, dataset: str, subject: str, root: Path) -> SubjectOutput:
    if dataset == "disfa":
        return write_disfa(cfg, subject, root)
    return write_bp4d_like(cfg, dataset, subject, root)


def write_face_boxes(root: Path, rows: list[tuple]) -> None:
    lines = ["subject,sequence,frame,x,y,w,h"] + [",".join(map(str, r)) for r in sorted(rows)]
    (root / "face_boxes.csv").write_text("\n".join(lines) + "\n")

"""Face videos in VoxCeleb's layout: ``<root>/<identity>/<video>/<clip>.mp4`` (VoxCeleb2's ``dev/mp4``
is such a root), or ``<root>/<identity>/<video>/<clip>/`` folders of frame images (frames extracted
beforehand, as VoxCeleb1's are often shared). Identity, video and clip come from the path alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import InputError, MissingInput

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
LAYOUT = "<identity>/<video>/<clip>.mp4 or <identity>/<video>/<clip>/*.jpg"


@dataclass(frozen=True)
class Clip:
    identity: str
    video: str
    clip: str
    path: Path  # the video file, or the folder of frames

    @property
    def key(self) -> str:
        return f"{self.identity}/{self.video}/{self.clip}"


@dataclass(frozen=True)
class Listing:
    clips: list[Clip]
    ignored: list[str]  # paths under the root that are neither a clip nor a folder of the layout


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def list_clips(root: str | Path) -> Listing:
    """Every clip under ``root``, sorted by identity, video and clip; what does not fit the layout is
    listed in ``ignored``, never dropped unseen."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInput(f"{root}: no such folder (a face-video source: {LAYOUT} beneath it)")
    clips, ignored = [], []
    for identity in sorted(root.iterdir()):
        if not identity.is_dir():
            ignored.append(identity.relative_to(root).as_posix())
            continue
        for video in sorted(identity.iterdir()):
            if not video.is_dir():
                ignored.append(video.relative_to(root).as_posix())
                continue
            for entry in sorted(video.iterdir()):
                if entry.is_file() and entry.suffix.lower() in VIDEO_EXTS:
                    clips.append(Clip(identity.name, video.name, entry.stem, entry))
                elif entry.is_dir() and _frame_files(entry):
                    clips.append(Clip(identity.name, video.name, entry.name, entry))
                else:
                    ignored.append(entry.relative_to(root).as_posix())
    if not clips:
        raise InputError(f"{root}: no clips found; expected {LAYOUT} (for VoxCeleb2, point at its dev/mp4 folder)")
    return Listing(clips, ignored)


def read_frames(clip: Clip) -> list[np.ndarray]:
    """The clip's frames in order, BGR; an unreadable clip or frame is an :class:`InputError` naming it."""
    if clip.path.is_dir():
        frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in _frame_files(clip.path)]
        bad = [p.name for p, f in zip(_frame_files(clip.path), frames) if f is None]
        if bad:
            raise InputError(f"{clip.path}: frame(s) {bad[:3]} are not readable images")
        return frames
    capture = cv2.VideoCapture(str(clip.path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise InputError(f"{clip.path}: no frame could be decoded (a video OpenCV can read was expected)")
    return frames

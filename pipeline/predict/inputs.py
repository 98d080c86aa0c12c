"""What ``fmae predict`` reads: image files, folders (recursive) and videos, as a stream of frames.

:func:`frames` turns the command line's inputs into :class:`Frame` s (pixels with their input,
frame number and time) and :class:`Problem` s (an input, or the rest of one, that cannot be read,
with the reason), in input order; a problem never stops the stream. Images are decoded with
Pillow, which refuses truncated files instead of returning half a picture, and turned upright by
their EXIF orientation; videos with OpenCV, frame by frame, every ``every``-th frame decoded (the
others only grabbed), each with the container's timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


@dataclass(frozen=True)
class Frame:
    input: str
    index: int  # 0 for an image; the frame number in a video
    time: float | None  # seconds from the start of a video; None for an image
    bgr: np.ndarray
    is_video: bool


@dataclass(frozen=True)
class Problem:
    input: str
    reason: str
    index: int | None = None  # for a video that broke off: the first frame that could not be read


def expand(raw: str | Path) -> list[Path] | Problem:
    """The files of one input (a folder walked recursively, sorted), or why it gives none."""
    path = Path(raw)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        return found or Problem(str(path), "no images or videos in this folder")
    if path.is_file():
        return [path]
    return Problem(str(path), "no such file or folder")


def frames(paths: list[str | Path], every: int = 1) -> Iterator[Frame | Problem]:
    """Frames of every input in order, and a :class:`Problem` for each input (part) that cannot be read."""
    for raw in paths:
        files = expand(raw)
        if isinstance(files, Problem):
            yield files
            continue
        for path in files:
            if path.stat().st_size == 0:
                yield Problem(str(path), "empty file (0 bytes)")
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                yield from video_frames(path, every)
            else:
                yield read_image(path)


def read_image(path: Path) -> Frame | Problem:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except UnidentifiedImageError:
        return Problem(str(path), "not an image Pillow can read")
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # truncated or damaged data
        return Problem(str(path), f"cannot decode the image ({err})")
    return Frame(str(path), 0, None, cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR), False)


def video_frames(path: Path, every: int) -> Iterator[Frame | Problem]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            yield Problem(str(path), "cannot open as a video (not a video, damaged or truncated, or a codec OpenCV lacks)")
            return
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        index = read = 0
        while True:
            if index % every:
                if not cap.grab():
                    break
            else:
                ok, bgr = cap.read()
                if not ok:
                    break
                read += 1
                yield Frame(str(path), index, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, bgr, True)
            index += 1
        if read == 0:
            yield Problem(str(path), "no frame could be decoded (damaged file, or a codec OpenCV lacks)")
        elif declared > 0 and index < declared - 1:
            yield Problem(str(path), f"decoding stopped at frame {index} of the {declared} the file declares "
                                     "(truncated or damaged)", index)
    finally:
        cap.release()

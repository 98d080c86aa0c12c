"""Real-photograph test material: matplotlib's portrait of Grace Hopper, and a short video made
from it (the face moves, zooms, and in the last frame is cut off by the frame's edge)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib import cbook

PORTRAIT = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # 512 x 600, one face
FACE = (185, 125, 165, 205)  # x, y, w, h of her face (brow to chin, cheek to cheek), read off the photo by eye
FPS = 10.0
VIDEO_FRAMES = 12  # the last one has the face cut off


def portrait() -> np.ndarray:
    return cv2.imread(str(PORTRAIT))


def video_frame(k: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Frame ``k``: the portrait at scale 0.55 + 0.03 k, moved right by 12 px a frame, on grey;
    frame ``VIDEO_FRAMES - 1`` shifts it so far right that only the flag beside her is left."""
    width, height = size
    canvas = np.full((height, width, 3), 90, np.uint8)
    scale = 0.55 + 0.03 * k
    img = cv2.resize(portrait(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x = 20 + 12 * k if k < VIDEO_FRAMES - 1 else width - int(150 * scale)
    y = 10
    h, w = min(img.shape[0], height - y), min(img.shape[1], width - x)
    canvas[y:y + h, x:x + w] = img[:h, :w]
    return canvas


def write_video(path: Path, frames: int = VIDEO_FRAMES, fps: float = FPS, codec: str = "mp4v", loop: bool = False) -> Path:
    """A video (MP4 with mp4v, or e.g. AVI with MJPG) of ``video_frame(0..frames-1)``; ``loop``:
    of the frames with the whole face, over and over (a clip of any length with a face throughout)."""
    first = video_frame(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (first.shape[1], first.shape[0]))
    for k in range(frames):
        writer.write(video_frame(k % (VIDEO_FRAMES - 1) if loop else k))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as OpenCV decodes it (what predict sees)."""
    cap, out = cv2.VideoCapture(str(path)), []
    ok, frame = cap.read()
    while ok:
        out.append(frame)
        ok, frame = cap.read()
    cap.release()
    return out


def iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    h = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)

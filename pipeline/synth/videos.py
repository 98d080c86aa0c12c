"""A face-video source in VoxCeleb2's layout, for video pretraining (CLP).

Layout, as VoxCeleb2 is distributed (``dev/mp4``: 224 x 224 face-centred clips at 25 fps)::

    <root>/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4

One folder per identity (``id`` + 5 digits), one per source video (an 11-character YouTube id), one
MP4 per clip. Within a video the background and the person stay; each clip has its own lighting (a
cut, another moment of the interview), a smooth AU trajectory and a slow pose drift (head turns,
nods, a face that moves in the frame). The true AU intensities and face boxes of every frame go to
``truth/video_frames.parquet`` only: a video reader never sees them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..config import SynthConfig
from .expression import au_sequence, smooth_noise, subject_offsets
from .identity import sample_identity
from .look import apply_look, paint_background, sample_look
from .render import AUS, Pose, render_face
from .seeding import rng_for

DIRNAME = "VoxCeleb2"
SPLIT = Path("dev") / "mp4"
FPS = 25.0
_YOUTUBE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def identities(n: int) -> list[str]:
    """VoxCeleb2-style identity folders: ``id`` + 5 digits, spread like the real ones (not 0, 1, 2, ...)."""
    return [f"id{17 + 29 * k:05d}" for k in range(n)]


def video_ids(seed: int, identity: str, n: int) -> list[str]:
    rng = rng_for(seed, "video-ids", identity)
    return ["".join(rng.choice(list(_YOUTUBE), 11)) for _ in range(n)]


def clip_frames(cfg: SynthConfig, identity: str, video: str, clip: int):
    """Yield (BGR frame, AU intensities, pose) for one clip."""
    spec, seed = cfg.video, cfg.seed
    person = sample_identity(rng_for(seed, "identity", f"voxceleb2:{identity}"), f"voxceleb2:{identity}")
    offsets = subject_offsets(rng_for(seed, "au-rates", "voxceleb2", identity), cfg.identity_au_strength)
    scene = rng_for(seed, "video-scene", identity, video)  # the same room in every clip of a video
    colours = tuple(tuple(int(c) for c in scene.integers(30, 200, 3)) for _ in range(2))
    rng = rng_for(seed, "video-clip", identity, video, clip)
    intensities = au_sequence(rng, spec.frames, offsets, "video")
    motion = smooth_noise(rng, spec.frames, 5)
    look = sample_look(rng, 0.6)
    size = spec.size
    canvas = np.empty((size, size, 3), np.uint8)
    paint_background(canvas, colours, bool(scene.random() < 0.3))
    for i in range(spec.frames):
        pose = Pose(size / 2 + 0.04 * size * motion[i, 0], size * 0.48 + 0.04 * size * motion[i, 1],
                    size * 0.55 * (1 + 0.04 * motion[i, 2]), 4 * motion[i, 3], 10 * motion[i, 4])
        img = canvas.copy()
        render_face(img, person, intensities[i], pose)
        yield apply_look(img, look, rng), intensities[i], pose


def write_identity(cfg: SynthConfig, identity: str, root: Path) -> list[dict]:
    """Every clip of one identity as MP4 under ``root`` -> one truth row per frame."""
    rows = []
    for video in video_ids(cfg.seed, identity, cfg.video.videos):
        folder = root / SPLIT / identity / video
        folder.mkdir(parents=True, exist_ok=True)
        for clip in range(1, cfg.video.clips + 1):
            path = folder / f"{clip:05d}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (cfg.video.size, cfg.video.size))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write MP4 (mp4v) files here ({path})")
            for frame, (img, intens, pose) in enumerate(clip_frames(cfg, identity, video, clip)):
                writer.write(img)
                row = {"identity": identity, "video": video, "clip": f"{clip:05d}", "frame": frame,
                       "file": path.relative_to(root).as_posix()}
                row.update({f"au{au}": round(float(v), 3) for au, v in zip(AUS, intens)})
                row.update(dict(zip(("x", "y", "w", "h"), (round(v, 2) for v in pose.box()))))
                rows.append(row)
            writer.release()
    return rows

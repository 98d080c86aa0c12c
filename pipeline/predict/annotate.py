"""Annotated output of ``fmae predict --annotate DIR``: each face's box, its active AUs and its most
probable expression drawn on the frame; an image per input image, an MP4 per video (at the decoded
frame rate)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .inputs import Frame

GREEN, GREY = (60, 200, 60), (160, 160, 160)


def output_name(input_path: str) -> str:
    """A flat file name for an input: its folder and stem (``clips/day1/a.mp4`` -> ``day1__a``)."""
    path = Path(input_path).resolve()
    return f"{path.parent.name}__{path.stem}" if path.parent.name else path.stem


class Annotator:
    def __init__(self, folder: Path, heads: list, every: int):
        """``heads``: the ensembles whose ``label(probs)`` lines are written beside each face."""
        self.folder, self.heads, self.every = Path(folder), heads, every
        self.folder.mkdir(parents=True, exist_ok=True)
        self.video: tuple[str, cv2.VideoWriter] | None = None
        self.written: list[Path] = []

    def __call__(self, frame: Frame, rows: list[dict]) -> None:
        img = frame.bgr.copy()
        for row in rows:
            self._draw(img, row)
        if not frame.is_video:
            path = self.folder / f"{output_name(frame.input)}.jpg"
            cv2.imwrite(str(path), img)
            self.written.append(path)
            return
        if self.video is None or self.video[0] != frame.input:
            self.close()
            cap = cv2.VideoCapture(frame.input)
            fps = (cap.get(cv2.CAP_PROP_FPS) or 25.0) / self.every
            cap.release()
            path = self.folder / f"{output_name(frame.input)}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
            self.video = (frame.input, writer)
            self.written.append(path)
        self.video[1].write(img)

    def _draw(self, img: np.ndarray, row: dict) -> None:
        x, y, w, h = (int(round(row[k])) for k in "xywh")
        probs = row.get("probs")
        colour = GREEN if probs is not None else GREY
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, max(1, w // 60))
        if probs is None:
            label = [row["status"]]
        else:
            label = [line for head, p in zip(self.heads, probs) for line in head.label(p)]
        scale = max(0.35, w / 400)
        step = int(28 * scale) + 4
        for i, text in enumerate(label):
            org = (x + w + 4, y + step * (i + 1))
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)

    def close(self) -> None:
        if self.video is not None:
            self.video[1].release()
            self.video = None

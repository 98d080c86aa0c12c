"""Apply AU and expression models to frames: detect every face, crop it as training crops are cut, batch, average.

:func:`predict` is the Python function behind ``fmae predict``. It returns one row per detected
face per frame, plus a row for each frame without a face and each input that cannot be read, so
nothing a user passed in is silently dropped. Faces are cropped with :func:`pipeline.faces.crop.crop_face`
and the checkpoint's own margin and crop size, then resized and normalised by the model's
evaluation transform, the path every training crop takes after ``prepare``.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from ..distributed import autocast
from ..faces.crop import crop_face
from ..faces.detect import LANDMARKS, Face, FaceDetector
from ..models.au_checkpoint import AUModel
from ..models.fer_checkpoint import FERModel
from ..training.transforms import eval_transform
from . import device_crops
from .inputs import Frame, Problem, frames

DETECT_FLOOR = 0.3  # faces down to this score are found and listed; below --min-score they get no AU columns
BOX = ["x", "y", "w", "h"]
MARKS = [f"{name}_{axis}" for name in LANDMARKS for axis in "xy"]
BASE = ["input", "frame", "time_s", "face", "status", "reason", *BOX, "score", *MARKS]
OK, NO_FACE, SMALL, LOW, UNREADABLE = "ok", "no face", "small face", "low score", "unreadable"


def au_name(au: int) -> str:
    return f"AU{au:02d}"


@dataclass
class Timings:
    """Wall seconds per part of the work (``model``: cropping, transforms and the forward passes),
    and how much was done."""

    decode: float = 0.0
    detect: float = 0.0
    model: float = 0.0
    frames: int = 0
    faces: int = 0

    def as_dict(self) -> dict:
        total = self.decode + self.detect + self.model
        return {"frames": self.frames, "faces": self.faces, "decode_s": self.decode, "detect_s": self.detect,
                "model_s": self.model, "frames_per_s": self.frames / total if total else None}


class Ensemble:
    """The mean probability of one or more AU models of the same dataset and crop (e.g. the k folds)."""

    def __init__(self, models: list[AUModel], device: torch.device):
        self._join(models, device, "AUs")
        self.aus = models[0].aus
        self.threshold = float(np.mean([m.threshold for m in models]))  # each fold's selected threshold, averaged
        self.names = [au_name(a) for a in self.aus]

    def _join(self, models: list, device: torch.device, outputs: str) -> None:
        """Hold ``models`` on ``device``, each with its evaluation transform; they must share their outputs
        (the attribute ``outputs.lower()``: AUs, classes) and their crop."""
        first, key = models[0], outputs.lower()
        for m in models[1:]:
            if getattr(m, key) != getattr(first, key) or m.crop != first.crop:
                raise ValueError(f"{m.path}: {outputs} {list(getattr(m, key))} / crop {m.crop} differ from {first.path}'s "
                                 f"{list(getattr(first, key))} / {first.crop}: an ensemble needs models of the same "
                                 f"{outputs} and crop")
        self.models, self.device = [m.model.to(device) for m in models], device
        self.transforms = [eval_transform(m.img_size, m.mean, m.std) for m in models]
        self.inputs = [(m.img_size, m.mean, m.std) for m in models]
        self.margin, self.crop_size = first.crop
        self.on_device = device.type == "cuda"  # crops cut on the GPU (device_crops); the exact CPU path elsewhere

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def cut(self, bgr: np.ndarray, pixels: Callable[[], torch.Tensor], box) -> np.ndarray | torch.Tensor:
        """One face's crop: BGR pixels (CPU path) or a tensor on the device (``pixels()``: the frame there)."""
        if self.on_device:
            return device_crops.crop(pixels(), box, self.margin, self.crop_size)
        return crop_face(bgr, box, self.margin, self.crop_size)

    @torch.no_grad()
    def __call__(self, crops: list[np.ndarray] | list[torch.Tensor]) -> np.ndarray:
        total = np.zeros((len(crops), len(self.names)), np.float64)
        if crops and isinstance(crops[0], torch.Tensor):
            batch = torch.stack(crops)
            inputs = [device_crops.model_input(batch, *spec) for spec in self.inputs]
        else:
            images = [Image.fromarray(cv2.cvtColor(c, cv2.COLOR_BGR2RGB)) for c in crops]
            inputs = [torch.stack([transform(img) for img in images]).to(self.device) for transform in self.transforms]
        for model, x in zip(self.models, inputs):
            with autocast(self.device):
                total += self._activate(model(x)[0].float()).cpu().numpy()
        return total / len(self.models)

    def columns(self, probs: np.ndarray) -> pd.DataFrame:
        """``AUxx`` probabilities and ``AUxx_on`` occurrences at the threshold (NaN rows: no scored face)."""
        table = pd.DataFrame(probs, columns=self.names)
        for name in self.names:
            table[f"{name}_on"] = (table[name] >= self.threshold).astype("Int8").where(table[name].notna())
        return table

    def label(self, probs: np.ndarray) -> list[str]:
        """What an annotated frame says of one face."""
        return [f"AU{a:02d} {p:.2f}" for a, p in zip(self.aus, probs) if p >= self.threshold] or ["no AU"]


class ExpressionEnsemble(Ensemble):
    """The mean class probabilities of one or more expression classifiers of the same classes and crop."""

    def __init__(self, models: list[FERModel], device: torch.device):
        self._join(models, device, "classes")
        self.classes = models[0].classes
        self.threshold = None
        self.names = [f"FER_{c}" for c in self.classes]

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def columns(self, probs: np.ndarray) -> pd.DataFrame:
        """``FER_<class>`` probabilities and ``expression``, the most probable class."""
        table = pd.DataFrame(probs, columns=self.names)
        scored = ~np.isnan(probs).any(1)
        best = np.where(scored, np.nan_to_num(probs, nan=-1.0).argmax(1), 0)
        table["expression"] = pd.Series([self.classes[k] if ok else None for k, ok in zip(best, scored)], dtype="object")
        return table

    def label(self, probs: np.ndarray) -> list[str]:
        k = int(np.argmax(probs))
        return [f"{self.classes[k]} {probs[k]:.2f}"]


def predict(inputs: list, ensemble: Ensemble | list[Ensemble], *, every: int = 1, batch_size: int = 32,
            min_face: int = 40, min_score: float = 0.6, on_frame: Callable[[Frame, list[dict]], None] | None = None,
            progress: bool = True, timings: Timings | None = None, detector: FaceDetector | None = None) -> pd.DataFrame:
    """One row per face per frame of ``inputs`` (see :data:`BASE`, then each ensemble's columns: ``AUxx``
    probabilities and ``AUxx_on`` occurrences at its threshold; ``FER_<class>`` probabilities and
    ``expression``). ``on_frame(frame, rows)`` is called for every frame in order once its rows are
    complete (annotated output); a row's ``probs`` holds one array per ensemble. Frames are decoded
    ahead in a thread and detected ``batch_size`` at a time (``detector``: RetinaFace on the CPU
    with a threshold of ``min(DETECT_FLOOR, min_score)`` unless given)."""
    heads = ensemble if isinstance(ensemble, list) else [ensemble]
    detector = detector or FaceDetector(min(DETECT_FLOOR, min_score))
    timings = timings if timings is not None else Timings()
    rows: list[dict] = []
    pending: list[tuple[Frame, list[int]]] = []  # frames whose faces wait for the model
    crops: list[list[np.ndarray]] = [[] for _ in heads]  # per ensemble: its crop of each pending face
    owners: list[int] = []  # row of each pending face

    def flush() -> None:
        start = time.perf_counter()
        for h, head in enumerate(heads):
            for i in range(0, len(owners), batch_size):  # a crowded frame can bring more than a batch
                for r, p in zip(owners[i:i + batch_size], head(crops[h][i:i + batch_size])):
                    rows[r].setdefault("probs", [None] * len(heads))[h] = p
        timings.model += time.perf_counter() - start
        if on_frame is not None:
            for frame, ids in pending:
                on_frame(frame, [rows[i] for i in ids])
        pending.clear(), owners.clear()
        for part in crops:
            part.clear()

    def read(item: Frame, faces: list[Face]) -> None:
        """The rows of one detected frame; its scored faces' crops join the batch."""
        timings.frames += 1
        where = {"input": item.input, "frame": item.index, "time_s": item.time}
        on_device: list[torch.Tensor] = []

        def pixels() -> torch.Tensor:  # the frame on the model's device, uploaded once for all its faces
            if not on_device:
                on_device.append(device_crops.frame_tensor(item.bgr, heads[0].device))
            return on_device[0]

        ids = []
        if not faces:
            rows.append(where | {"status": NO_FACE})
        for k, face in enumerate(faces):
            status = SMALL if face.side < min_face else LOW if face.score < min_score else OK
            ids.append(len(rows))
            rows.append(where | {"face": k, "status": status} | _geometry(face))
            if status == OK:
                start = time.perf_counter()
                cut: dict[tuple, np.ndarray | torch.Tensor] = {}  # ensembles of one crop share it
                for h, head in enumerate(heads):
                    key = (head.margin, head.crop_size, head.on_device)
                    if key not in cut:
                        cut[key] = head.cut(item.bgr, pixels, face.box)
                    crops[h].append(cut[key])
                timings.model += time.perf_counter() - start
                owners.append(ids[-1])
                timings.faces += 1
        pending.append((item if on_frame is not None else None, ids))  # pixels kept only to annotate
        if len(owners) >= batch_size or len(pending) >= batch_size:
            flush()
        bar.update()

    bar = tqdm(desc="predict", unit="frame", disable=not progress)
    for chunk in _chunks(ahead(frames(inputs, every), depth=2 * batch_size), batch_size, timings):
        readable = [item for item in chunk if not isinstance(item, Problem)]
        start = time.perf_counter()
        step = 1 if detector.device.type == "cpu" else len(readable)  # 32 CPU frames a call: 29 ms a frame, 22.5 one by one
        found = iter([faces for i in range(0, len(readable), max(step, 1))
                      for faces in detector.batch([item.bgr for item in readable[i:i + step]])])
        timings.detect += time.perf_counter() - start
        for item in chunk:
            if isinstance(item, Problem):
                rows.append({"input": item.input, "frame": item.index, "status": UNREADABLE, "reason": item.reason})
            else:
                read(item, next(found))
    flush()
    bar.close()
    return _table(rows, heads)


def ahead(items: Iterator, depth: int) -> Iterator:
    """``items`` produced by a thread up to ``depth`` ahead of the consumer (OpenCV decodes without the GIL);
    the thread's exceptions are raised in the consumer."""
    done, q = object(), queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as err:  # noqa: BLE001 (handed to the consumer)
            q.put(err)
        q.put(done)

    threading.Thread(target=produce, daemon=True, name="decode-ahead").start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _chunks(items: Iterator, size: int, timings: Timings) -> Iterator[list]:
    """Lists of up to ``size`` items; the time spent waiting for them counts as decoding."""
    while True:
        start = time.perf_counter()
        chunk = list(itertools.islice(items, size))
        timings.decode += time.perf_counter() - start
        if not chunk:
            return
        yield chunk


def _geometry(face: Face) -> dict:
    marks = dict(zip(MARKS, np.ravel(face.landmarks).tolist()))
    return dict(zip(BOX, face.box)) | {"score": face.score} | marks


def _table(rows: list[dict], heads: list[Ensemble]) -> pd.DataFrame:
    probs = [np.full((len(rows), len(h.names)), np.nan, np.float32) for h in heads]
    for i, r in enumerate(rows):
        for h, p in enumerate(r.pop("probs", None) or ()):
            probs[h][i] = p
    table = pd.DataFrame(rows, columns=BASE)
    for col in ("frame", "face"):
        table[col] = table[col].astype("Int64")
    return pd.concat([table, *(head.columns(p) for head, p in zip(heads, probs))], axis=1)

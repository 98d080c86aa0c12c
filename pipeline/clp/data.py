"""CLP's input: the clips stage's windows of T consecutive face crops, one sample a window.

A window comes out as uint8 ``[T, 3, S, S]`` (every frame resized to the model's input, the whole
window flipped or not together, so time is the only thing that changes within it) with its person's
index (from ``data/clips/index.parquet``), which the cross-identity term needs to pair a window with
another person's.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from ..data.images import decode_rgb, to_chw
from ..data.shards import worker_rng


def identity_indices(index_path: Path) -> dict[str, int]:
    """identity -> its index, as the clips stage numbered them."""
    index = pd.read_parquet(index_path, columns=["identity", "identity_index"]).drop_duplicates()
    return dict(zip(index.identity, index.identity_index.astype(int)))


def jitter(rgb: np.ndarray, rng, shift: float, degrees: float) -> np.ndarray:
    """A random similarity transform of one crop: shift and scale change by up to ``shift`` of the
    side, rotation by up to ``degrees``; the border is replicated."""
    size = rgb.shape[0]
    angle, scale = rng.uniform(-degrees, degrees), 1.0 + rng.uniform(-shift, shift)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += [rng.uniform(-shift, shift) * size, rng.uniform(-shift, shift) * size]
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class WindowSample:
    """A clips-shard sample -> (uint8 ``[T, 3, size, size]``, identity index ``[]`` int64).

    ``shift``/``degrees`` > 0: every frame gets its own small random shift, scale and rotation, so
    that head motion and the tracker's box jitter stop telling frames apart and what is left to
    order a window in time is the face's own change (measured on the synthetic clips: without it
    the temporal term is solved by pose, and AUs are not learnt)."""

    def __init__(self, size: int, length: int, identities: dict[str, int], seed: int, epoch: int,
                 shift: float = 0.0, degrees: float = 0.0):
        self.size, self.length, self.identities = size, length, identities
        self.seed, self.epoch, self.shift, self.degrees = seed, epoch, shift, degrees
        self._rng = None

    def frames(self, sample: dict) -> list[bytes]:
        names = [f"f{k:02d}.jpg" for k in range(self.length)]
        missing = [n for n in names if n not in sample]
        if missing:
            raise KeyError(f"{sample.get('__url__')}: window {sample.get('__key__')} lacks {missing[0]}: the clips were cut "
                           f"with another clips.length than {self.length}; re-run the clips stage")
        return [sample[n] for n in names]

    def __call__(self, sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rng is None:  # in the loader worker: a stream of its own
            self._rng = worker_rng(self.seed, self.epoch, salt=2)
        flip = self._rng.random() < 0.5
        crops = [decode_rgb(data, self.size) for data in self.frames(sample)]
        if self.shift or self.degrees:
            crops = [jitter(c, self._rng, self.shift, self.degrees) for c in crops]
        window = torch.stack([to_chw(c[:, ::-1] if flip else c) for c in crops])
        person = json.loads(sample["json"])["identity"]
        return window, torch.tensor(self.identities[person])

"""Face crops read by random access from a prepare stage's shards.

``index.parquet`` records each crop's byte offset inside its tar, so a map-style dataset can
serve any subset of subjects or images (a fold's train, validation or test part) with ``os.pread``:
the shards stay plain WebDataset tars and no crop is duplicated per fold.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import torch
from PIL import Image


class ShardCrops(torch.utils.data.Dataset):
    """Rows of ``index`` (with ``shard``, ``offset``, ``size``) -> (image tensor, ``labels[i]``, ``subjects[i]``)."""

    def __init__(self, folder: Path, index: pd.DataFrame, labels: torch.Tensor, subjects: torch.Tensor, transform):
        self.folder, self.index, self.transform = Path(folder), index.reset_index(drop=True), transform
        self.labels, self.subjects = labels, subjects
        self._files: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, i: int) -> bytes:
        row = self.index.iloc[i]
        fd = self._files.get(row.shard)
        if fd is None:  # opened lazily, so each loader worker has its own descriptors
            fd = self._files[row.shard] = os.open(self.folder / "shards" / row.shard, os.O_RDONLY)
        return os.pread(fd, int(row["size"]), int(row.offset))

    def __getitem__(self, i: int):
        img = Image.open(io.BytesIO(self._read(i))).convert("RGB")
        return self.transform(img), self.labels[i], self.subjects[i]

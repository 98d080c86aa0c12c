"""Face crops of one dataset, read by random access from the prepare stage's shards.

``index.parquet`` records each crop's byte offset inside its tar, so a map-style dataset can
serve any subset of subjects (a fold's train, validation or test part) with ``os.pread``: the
shards stay plain WebDataset tars and no crop is duplicated per fold.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from ..au.folds import fold_split
from ..au.labels import au_columns
from ..config import Training
from ..data.images import IMAGENET_MEAN, IMAGENET_STD
from ..data.shards import seed_for


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, for new Pillow: RandAugment's ``inc1`` posterize can ask for 0 bits, which
    Pillow < 11 turned into a black image and newer Pillow rejects; keep the old result."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    return Image.new(img.mode, img.size) if bits_to_keep <= 0 else ImageOps.posterize(img, bits_to_keep)


PAPER_AUGMENTATION = (0.08, "rand-m9-mstd0.5-inc1", 0.25)  # the release's min_crop_scale, RandAugment, erasing


def train_transform(size: int, recipe: Training | None = None):
    """The training transform of ``recipe`` (its ``augment``, ``min_crop_scale``, ``rand_augment`` and
    ``erase_prob``; None = the paper's recipe). ``augment: paper``: RandomResizedCrop(min_crop_scale-1,
    bicubic) + flip + RandAugment + RandomErasing (pixel), the released code's MAE finetuning recipe;
    ``rand_augment: ""`` means no photometric augmentation at all (timm would otherwise put its colour
    jitter in its place). ``augment: flip``: the evaluation resize and a horizontal flip, nothing else
    (the other keys are unused): the crops stay aligned, which a small ViT on little data needs."""
    augment, min_crop_scale, rand_augment, erase_prob = ("paper", *PAPER_AUGMENTATION) if recipe is None else \
        (recipe.augment, recipe.min_crop_scale, recipe.rand_augment, recipe.erase_prob)
    if augment == "flip":
        return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize
    return create_transform(size, is_training=True, scale=(min_crop_scale, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
                            auto_augment=rand_augment or None, color_jitter=None, interpolation="bicubic", re_prob=erase_prob,
                            re_mode="pixel", re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def eval_transform(size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
    """Resize to size x size (no centre crop), as the released code tests."""
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(mean, std)])


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


class Crops(ShardCrops):
    """AU crops: labels float ``[A]`` with -1 unknown, and the subject index over the dataset's vocabulary."""

    def __init__(self, folder: Path, index: pd.DataFrame, dataset: str, transform):
        index = index.reset_index(drop=True)
        super().__init__(folder, index, torch.tensor(index[au_columns(dataset)].to_numpy(np.float32)),
                         torch.tensor(index.subject_index.to_numpy(np.int64)), transform)


def fold_parts(index: pd.DataFrame, dataset: str, fold: int, val_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """``train``, ``val`` (a seeded, subject-exclusive share of the training subjects) and ``test``."""
    train_subjects, test_subjects = fold_split(dataset, fold)
    present = sorted(set(train_subjects) & set(index.subject))
    rng = np.random.default_rng(seed_for(seed, fold))
    n_val = max(1, int(round(len(present) * val_fraction))) if len(present) > 1 else 0
    val_subjects = set(rng.choice(present, size=n_val, replace=False).tolist()) if n_val else set()
    return {
        "train": index[index.subject.isin(set(present) - val_subjects)],
        "val": index[index.subject.isin(val_subjects)],
        "test": index[index.subject.isin(test_subjects)],
    }

"""AU crops of one dataset and the parts of a fold (train, validation subjects, test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.shards import seed_for
from ..training.crops import ShardCrops
from .folds import fold_split
from .labels import au_columns


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

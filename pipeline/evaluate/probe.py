"""The linear identity probe of the paper's Section 5: frozen backbone features of some frames per
subject train a bias-free linear classifier over those subjects; its top-1 accuracy on other frames
of the same subjects says how much identity the features carry (chance = 1 / subjects)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..distributed import autocast


@dataclass(frozen=True)
class ProbeSplit:
    train: pd.DataFrame
    test: pd.DataFrame
    skipped: tuple[str, ...]  # subjects with fewer than 2 frames


def probe_split(index: pd.DataFrame, n_train: int, n_test: int, seed: int) -> ProbeSplit:
    """Per subject, a seeded draw of ``n_train`` frames to train on and ``n_test`` others to test on.

    A subject with fewer than ``n_train + n_test`` frames is split in the same proportion (at
    least one frame each side); one with fewer than 2 frames cannot be probed and is listed."""
    rng = np.random.default_rng(seed)
    train, test, skipped = [], [], []
    for subject, rows in index.groupby("subject", sort=True):
        if len(rows) < 2:
            skipped.append(subject)
            continue
        order = rows.iloc[rng.permutation(len(rows))]
        k = n_train
        if len(rows) < n_train + n_test:
            k = min(len(rows) - 1, max(1, round(len(rows) * n_train / (n_train + n_test))))
        train.append(order.iloc[:k])
        test.append(order.iloc[k:k + n_test])
    if not train:
        raise ValueError(f"no subject has 2 frames to probe (subjects: {index.subject.nunique()})")
    return ProbeSplit(pd.concat(train), pd.concat(test), tuple(skipped))


@torch.inference_mode()
def extract(model, loader: DataLoader, device: torch.device) -> torch.Tensor:
    """``model.features`` of every loader batch, float32 on the CPU ``[N, D]``."""
    model.eval()
    out = []
    for x, *_ in loader:
        with autocast(device):
            out.append(model.features(x.to(device, non_blocking=True)).float().cpu())
    return torch.cat(out)


def linear_probe(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
                 epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Train ``Linear(D, S, bias=False)`` with AdamW and cross-entropy; top-1 test accuracy after each epoch.

    Labels are any hashables (subject ids); the classes are those of the training frames."""
    classes = {c: i for i, c in enumerate(sorted(set(train_y.tolist())))}
    unseen = sorted(set(test_y.tolist()) - set(classes))
    if unseen:
        raise ValueError(f"probe test subjects {unseen} have no training frames")
    ytr = torch.tensor([classes[c] for c in train_y.tolist()])
    yte = torch.tensor([classes[c] for c in test_y.tolist()])
    gen = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(train_x.shape[1], len(classes), bias=False)
    with torch.no_grad():
        probe.weight.normal_(0, 0.01, generator=gen)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    accuracy = []
    for _ in range(epochs):
        for batch in torch.randperm(len(ytr), generator=gen).split(batch_size):
            loss = torch.nn.functional.cross_entropy(probe(train_x[batch]), ytr[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy.append(float((probe(test_x).argmax(1) == yte).float().mean()))
    return accuracy

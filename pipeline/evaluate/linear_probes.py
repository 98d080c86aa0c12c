"""Identity probes: how much identity a frozen backbone's features carry (the paper's Section 5).

Three protocols, each reported with its chance level (1 / subjects):

- ``release``: the released code's probe (branch ``BP4D_ID_linear_prob`` of the FMAE-IAT
  repository, its defaults), so the paper's 83% -> 27.9% can be compared: the backbone under
  ``no_grad``, a bias-free ``Linear(D, subjects)``, 70 random frames per subject to train on and 30
  others of the same subjects to test on, inputs augmented as in finetuning (RandomResizedCrop,
  flip, RandAugment, random erasing), BCE against one-hot targets, AdamW at lr = blr x batch / 256
  with warm-up and cosine, weight decay 0.05; the reported figure is the *maximum* top-1 over
  epochs on the probe's own test frames (selection on the test split, as released).
- ``strong``: a probe trained to convergence on the same split without augmentation, its learning
  rate chosen on a held-out share of the probe's *training* frames (never the test frames, Barrett
  et al., EMNLP 2019), features standardised, top-1 after the last epoch. A weak probe can miss
  identity that is there (Elazar & Goldberg, EMNLP 2018); this one is meant not to.
- ``unseen_sequences``: the strong probe trained on some sequences (tasks) of each subject and tested
  on its *other* sequences. Frames of one sequence share lighting, pose drift and expression
  episode, so with random frames a probe can recognise a test frame by its sequence neighbours;
  this protocol asks whether the identity generalises across recordings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..distributed import autocast


@dataclass(frozen=True)
class ProbeSplit:
    train: pd.DataFrame
    test: pd.DataFrame
    skipped: tuple[str, ...]  # subjects that cannot be probed (fewer than 2 frames, or 1 sequence)


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


def sequence_split(index: pd.DataFrame, n_train: int, n_test: int, seed: int) -> ProbeSplit:
    """Per subject, a seeded half of its sequences (rounded down, at least one) to train on and the rest to
    test on, at most ``n_train`` / ``n_test`` frames drawn from each side; subjects with one sequence
    are listed as skipped."""
    rng = np.random.default_rng(seed)
    train, test, skipped = [], [], []
    for subject, rows in index.groupby("subject", sort=True):
        sequences = sorted(rows.sequence.unique())
        if len(sequences) < 2:
            skipped.append(subject)
            continue
        held = set(rng.permutation(sequences)[:max(1, len(sequences) // 2)].tolist())
        on_train = ~rows.sequence.isin(held).to_numpy()
        for part, n, out in ((rows[on_train], n_train, train), (rows[~on_train], n_test, test)):
            out.append(part.iloc[np.sort(rng.permutation(len(part))[:n])])
    if not train:
        raise ValueError(f"no subject has 2 sequences to probe (subjects: {index.subject.nunique()})")
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


def _classes(train_y: np.ndarray, test_y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
    classes = {c: i for i, c in enumerate(sorted(set(train_y.tolist())))}
    unseen = sorted(set(test_y.tolist()) - set(classes))
    if unseen:
        raise ValueError(f"probe test subjects {unseen} have no training frames")
    return (torch.tensor([classes[c] for c in train_y.tolist()]), torch.tensor([classes[c] for c in test_y.tolist()]),
            len(classes))


def _warmup_cosine(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """The lr of MAE's finetuning script at iteration ``step`` (linear warm-up, then half a cosine)."""
    if step < warmup:
        return lr * step / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def release_probe(model, train_loader: DataLoader, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
                  epochs: int, blr: float, warmup_epochs: int, weight_decay: float, seed: int,
                  device: torch.device) -> tuple[list[float], torch.Tensor]:
    """The released code's identity probe: (top-1 on the test frames after each epoch, of which the
    release reports the max; the probe's final weight ``[subjects, D]``).

    ``train_loader`` yields ``(augmented image, _, subject)`` for the probe's training frames, whose
    subjects are ``train_y`` (integer ids); its batch size sets the lr (``blr x batch / 256``).
    ``test_x`` holds the test frames' features (unaugmented), extracted once: the backbone is frozen."""
    _, yte, n = _classes(train_y, test_y)
    lookup = torch.full((int(max(train_y.max(), test_y.max())) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor(sorted(set(train_y.tolist())))] = torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(test_x.shape[1], n, bias=False)
    with torch.no_grad():
        bound = 1 / math.sqrt(test_x.shape[1])  # PyTorch's default Linear init, drawn from the seeded generator
        probe.weight.uniform_(-bound, bound, generator=gen)
    lr = blr * train_loader.batch_size / 256
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps, accuracy = len(train_loader), []
    model.eval()
    for epoch in range(epochs):
        torch.manual_seed(seed * 1000 + epoch)  # the loader's order and its workers' augmentation
        for i, (x, _, subject) in enumerate(train_loader):
            for group in opt.param_groups:
                group["lr"] = _warmup_cosine(epoch * steps + i, epochs * steps, warmup_epochs * steps, lr, 1e-6)
            with torch.no_grad(), autocast(device):
                feats = model.features(x.to(device, non_blocking=True)).float().cpu()
            target = F.one_hot(lookup[subject], n).float()
            loss = F.binary_cross_entropy_with_logits(probe(feats), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy.append(float((probe(test_x).argmax(1) == yte).float().mean()))
    return accuracy, probe.weight.detach()


def linear_probe(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
                 epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Train ``Linear(D, S, bias=False)`` with AdamW and cross-entropy; top-1 test accuracy after each epoch.

    Labels are any hashables (subject ids); the classes are those of the training frames."""
    ytr, yte, n = _classes(train_y, test_y)
    gen = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(train_x.shape[1], n, bias=False)
    with torch.no_grad():
        probe.weight.normal_(0, 0.01, generator=gen)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    accuracy = []
    for _ in range(epochs):
        for batch in torch.randperm(len(ytr), generator=gen).split(batch_size):
            loss = F.cross_entropy(probe(train_x[batch]), ytr[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy.append(float((probe(test_x).argmax(1) == yte).float().mean()))
    return accuracy


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of ~``fraction`` of each class's items (at least one where a class has two or more)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) >= 2:
            held[rng.choice(rows, max(1, round(len(rows) * fraction)), replace=False)] = True
    return held


def strong_probe(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
                 lrs: tuple[float, ...], epochs: int, batch_size: int, val_fraction: float, seed: int) -> dict:
    """A linear probe trained to convergence, its lr chosen on held-out training frames.

    Features are standardised with the training frames' statistics. Each lr of ``lrs`` is trained
    on the rest of the training frames and scored on the held-out share; the best lr is retrained
    on all training frames and scored once on the test frames (last epoch)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    held = _stratified_holdout(train_y, val_fraction, seed)
    fit = ~held
    val_scores = {lr: linear_probe(train_x[fit], train_y[fit], train_x[held], train_y[held], epochs, lr, batch_size,
                                   seed)[-1] for lr in lrs}
    best = max(lrs, key=lambda lr: (val_scores[lr], -lr))  # ties: the smaller lr
    top1 = linear_probe(train_x, train_y, test_x, test_y, epochs, best, batch_size, seed)[-1]
    return {"top1": top1, "lr": best, "val_top1": {str(lr): round(v, 4) for lr, v in val_scores.items()}}

"""F1 per AU, the global threshold sweep, ROC-AUC: NumPy, with unknown labels (-1) left out."""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)  # 0.01 .. 0.99, as the released code sweeps


def f1_per_au(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary F1 of each AU column (``labels`` 1/0/-1 ``[N, A]``, ``probs`` ``[N, A]``); an AU
    with no positive label and no positive prediction scores 0, as scikit-learn's default."""
    known = labels >= 0
    pred = (probs >= threshold) & known
    pos = (labels == 1)
    tp = (pred & pos).sum(0)
    fp = (pred & ~pos).sum(0)
    fn = (~pred & pos & known).sum(0)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def best_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """The single global threshold of 0.01..0.99 maximising the mean F1 over AUs, and that mean."""
    means = [f1_per_au(labels, probs, t).mean() for t in THRESHOLDS]
    k = int(np.argmax(means))
    return float(THRESHOLDS[k]), float(means[k])


def auc_per_au(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """ROC-AUC of each AU (Mann-Whitney rank form, ties averaged); NaN where one class is absent."""
    out = np.full(labels.shape[1], np.nan)
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        y, p = labels[known, a] == 1, probs[known, a]
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos and n_neg:
            order = np.argsort(p, kind="mergesort")
            ranks = np.empty(len(p))
            sorted_p = p[order]
            # average ranks over ties
            _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
            avg = first + (counts + 1) / 2.0
            ranks[order] = np.repeat(avg, counts)
            out[a] = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def mean_auc(auc: np.ndarray) -> float:
    """Mean over the AUs that have an AUC (an AU with one class only in a split has none); NaN if none has."""
    known = auc[~np.isnan(auc)]
    return float(known.mean()) if len(known) else float("nan")

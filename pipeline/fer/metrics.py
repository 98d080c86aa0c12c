"""Expression recognition scores: overall and mean per-class accuracy, per-class F1, the confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``[true class, predicted class]`` counts."""
    out = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(out, (labels, predicted), 1)
    return out


def scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, mean per-class accuracy (the mean recall: what a class-balanced test set would show),
    per-class F1 (0 for a class never predicted nor present), the confusion matrix, and the majority-class
    predictor's accuracy on the same labels (the floor)."""
    n = probs.shape[1]
    predicted = probs.argmax(1)
    cm = confusion(labels, predicted, n)
    support, called, hit = cm.sum(1), cm.sum(0), np.diag(cm)
    recall = np.divide(hit, support, out=np.full(n, np.nan), where=support > 0)
    denom = support + called
    f1 = np.divide(2 * hit, denom, out=np.zeros(n), where=denom > 0)
    return {"accuracy": float(hit.sum() / max(1, len(labels))), "mean_class_accuracy": float(np.nanmean(recall)),
            "f1_per_class": f1.tolist(), "recall_per_class": recall.tolist(), "confusion": cm.tolist(),
            "support": support.tolist(), "majority_accuracy": float(support.max() / max(1, len(labels)))}

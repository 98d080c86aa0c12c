"""Per-fold AU scores and their aggregation over folds, as the paper reports them: F1 per AU per
fold, then the mean over folds per AU, and the mean over AUs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..au.folds import AUS
from ..au.labels import au_columns
from ..au.metrics import auc_per_au, f1_per_au


@dataclass(frozen=True)
class FoldScores:
    """One fold's per-AU arrays ``[A]``: F1 at the selected threshold, at 0.5, ROC-AUC, and the
    F1 of the all-positive predictor (the floor a detector has to beat)."""

    fold: int
    threshold: float
    epoch: int
    f1: np.ndarray
    f1_05: np.ndarray
    auc: np.ndarray
    f1_constant: np.ndarray


def score_fold(predictions: pd.DataFrame, dataset: str, fold: int, threshold: float, epoch: int) -> FoldScores:
    """Scores of one fold's ``predictions.parquet`` (label columns ``au<k>``, ``prob_au<k>``)."""
    cols = au_columns(dataset)
    missing = [c for c in (*cols, *(f"prob_{c}" for c in cols)) if c not in predictions.columns]
    if missing:
        raise ValueError(f"{dataset} fold {fold}: predictions lack columns {missing}")
    labels = predictions[cols].to_numpy()
    probs = predictions[[f"prob_{c}" for c in cols]].to_numpy()
    return FoldScores(fold, threshold, epoch, f1_per_au(labels, probs, threshold), f1_per_au(labels, probs, 0.5),
                      auc_per_au(labels, probs), f1_per_au(labels, np.ones_like(probs)))


def summarise(dataset: str, folds: list[FoldScores]) -> dict:
    """Nested metrics of one variant: means over folds and AUs, per AU, per fold (F1 in [0, 1])."""
    if not folds:
        raise ValueError(f"{dataset}: no folds to summarise")
    stack = {k: np.stack([getattr(f, k) for f in folds]) for k in ("f1", "f1_05", "auc", "f1_constant")}
    with warnings.catch_warnings():  # an AU with one class in every fold has no AUC: NaN, written as null
        warnings.simplefilter("ignore", RuntimeWarning)
        per_au = {k: np.nanmean(v, axis=0) for k, v in stack.items()}
    out = {"f1_mean": _r(per_au["f1"].mean()), "f1_05_mean": _r(per_au["f1_05"].mean()),
           "auc_mean": _r(np.nanmean(per_au["auc"])), "f1_constant_mean": _r(per_au["f1_constant"].mean()),
           "n_folds": len(folds)}
    for k, au in enumerate(AUS[dataset]):
        out[f"au{au}"] = {"f1": _r(per_au["f1"][k]), "f1_05": _r(per_au["f1_05"][k]), "auc": _r(per_au["auc"][k])}
    for f in folds:
        out[f"fold{f.fold}"] = {"f1_mean": _r(f.f1.mean()), "f1_05_mean": _r(f.f1_05.mean()),
                                "auc_mean": _r(np.nanmean(f.auc)), "threshold": f.threshold, "epoch": f.epoch}
    return out


def _r(x: float) -> float | None:
    """Rounded for a readable metrics table; NaN (an AU with one class only) becomes null."""
    return None if np.isnan(x) else round(float(x), 4)

"""A linear AU probe on frozen features: multi-label logistic regression with the lr chosen on validation subjects.

Features are standardised with the training frames' statistics; unknown labels (-1) are masked out
of the loss. Each lr is trained on the training frames and scored by mean AUC on the validation
subjects; the best one's probe picks its F1 threshold there too, and is scored once on the test
subjects (the ``validation`` protocol of finetuning).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..au.metrics import auc_per_au, best_threshold, f1_per_au, mean_auc


def _fit(x: torch.Tensor, y: torch.Tensor, lr: float, epochs: int, batch_size: int, seed: int) -> torch.nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        probe.weight.normal_(0, 0.01, generator=gen)
        probe.bias.zero_()
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    known = (y >= 0).float()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = F.binary_cross_entropy_with_logits(probe(x[batch]), y[batch].clamp(min=0), weight=known[batch],
                                                      reduction="sum") / known[batch].sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return probe


def au_linear_probe(train: tuple[torch.Tensor, np.ndarray], val: tuple[torch.Tensor, np.ndarray],
                    test: tuple[torch.Tensor, np.ndarray], lrs: tuple[float, ...] = (1e-3, 1e-2), epochs: int = 50,
                    batch_size: int = 256, seed: int = 0) -> dict:
    """Each split is (features (N, D), labels (N, A) in {0, 1, -1}) -> test ``auc``, ``f1`` at the
    validation-chosen threshold, the chosen ``lr`` and ``threshold``, and ``val_auc`` per lr."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-6)
    xtr, xva, xte = ((x - mean) / std for x in (xtr, xva, xte))
    target = torch.tensor(ytr, dtype=torch.float32)

    def probs(probe: torch.nn.Linear, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(probe(x)).numpy()

    probes = {lr: _fit(xtr, target, lr, epochs, batch_size, seed) for lr in lrs}
    val_auc = {lr: mean_auc(auc_per_au(yva, probs(p, xva))) for lr, p in probes.items()}
    best = max(lrs, key=lambda lr: (np.nan_to_num(val_auc[lr], nan=-1.0), -lr))  # ties: the smaller lr
    threshold, _ = best_threshold(yva, probs(probes[best], xva))
    test_probs = probs(probes[best], xte)
    return {"auc": mean_auc(auc_per_au(yte, test_probs)), "f1": float(f1_per_au(yte, test_probs, threshold).mean()),
            "lr": best, "threshold": threshold, "val_auc": {str(lr): round(float(v), 4) for lr, v in val_auc.items()}}

"""Finetuning one fold: AU BCE + (optionally) the identity loss behind the gradient reversal.

Model selection (``finetune.selection``):
- ``validation``: each epoch is scored on held-out training subjects (mean F1 at that epoch's
  best global threshold); the best epoch's weights and threshold are then applied to the test
  fold once, at the end.
- ``paper``: each epoch is scored on the test fold, and the best epoch and best global threshold
  are taken from it, as the released code does: optimistic, and labelled so in every output.
Test F1 at threshold 0.5 is reported either way.

Resuming: after every epoch the main process writes a resumable container (weights, optimiser,
the best epoch so far with its weights, the history) to ``resume``; a run of the same settings and
data continues from it. Each epoch seeds its own sampling, augmentation and stochastic depth, so a
resumed run ends with the same weights and history as an uninterrupted one. The epoch loop itself is
:mod:`pipeline.training.loop`'s, which expression finetuning shares.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import Params
from ..models import checkpoint
from ..models.vit_classifier import ViTClassifier, dann_ramp
from ..training import loop
from ..training.backbone import init_path, load_backbone
from ..training.transforms import eval_transform, train_transform
from .data import Crops, fold_parts
from .folds import AUS, subjects
from .metrics import auc_per_au, best_threshold, f1_per_au, mean_auc

log = logging.getLogger(__name__)


VARIANTS = ("fmae", "iat", "random")  # plain FMAE, FMAE-IAT, plain FMAE from random weights


@dataclass(frozen=True)
class Run:
    dataset: str
    fold: int
    variant: str  # "iat" (iat.lambda from params), "fmae" (no identity head) or "random" (fmae from random weights)

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.fold}"


def au_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over known labels (-1 = unknown, masked out)."""
    known = (labels >= 0).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.clamp(min=0), weight=known, reduction="sum")
    return loss / known.sum().clamp(min=1)


def id_loss(logits: torch.Tensor, subject: torch.Tensor, kind: str) -> torch.Tensor:
    """``bce``: BCE against a one-hot over the whole vocabulary (released code); ``ce``: cross-entropy (Eq. 2)."""
    if kind == "ce":
        return F.cross_entropy(logits.float(), subject)
    return F.binary_cross_entropy_with_logits(logits.float(), F.one_hot(subject, logits.shape[1]).float())


def build_model(params: Params, dataset: str, lambda_: float) -> ViTClassifier:
    return ViTClassifier(params.model.name, len(AUS[dataset]), len(subjects(dataset)), lambda_, params.iat.id_head_layers,
                      img_size=params.model.img_size, drop_path=params.model.drop_path)


class AUObjective:
    """Multi-label AU detection: the masked BCE of the AU head plus, behind the gradient reversal, the
    identity loss; an epoch is scored by the mean F1 over AUs at its best global threshold."""

    def __init__(self, lambda_: float, id_loss_kind: str, schedule: str = "constant"):
        self.lambda_, self.id_loss_kind, self.schedule = lambda_, id_loss_kind, schedule
        self.fields = ("au_loss", "id_loss", "id_train_accuracy") if lambda_ else ("au_loss",)
        self.current = lambda_  # the reversal scale of the last step

    def on_step(self, model: ViTClassifier, progress: float) -> None:
        """``ramp``: the gradient reversal's scale follows DANN's schedule up to ``lambda_``."""
        if self.lambda_ and self.schedule == "ramp":
            self.current = model.grl.lambda_ = self.lambda_ * dann_ramp(progress)

    def loss(self, out, y: torch.Tensor, subject: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        au_logits, id_logits = out
        loss_au = au_loss(au_logits, y)
        if id_logits is None:
            return loss_au, (loss_au.detach() * len(y)).reshape(1)
        loss_id = id_loss(id_logits, subject, self.id_loss_kind)
        sums = torch.stack([loss_au.detach() * len(y), loss_id.detach() * len(y),
                            (id_logits.argmax(1) == subject).sum().float()])
        return loss_au + loss_id, sums

    def probs(self, out) -> torch.Tensor:
        return torch.sigmoid(out[0].float())

    def score(self, labels: np.ndarray, probs: np.ndarray, split: str) -> tuple[float, dict, dict]:
        thr, f1_best = best_threshold(labels, probs)
        figures = {f"{split}_f1": float(f1_per_au(labels, probs).mean()), f"{split}_f1_best_threshold": f1_best,
                   f"{split}_threshold": thr, f"{split}_auc": mean_auc(auc_per_au(labels, probs))}
        if self.lambda_:
            figures["grl_lambda"] = self.current  # at the epoch's last step
        return f1_best, {"threshold": thr}, figures


def fingerprint(params: Params, run: Run, data_dir: Path, lambda_: float, world_size: int) -> str:
    """What a resume file must share with this run: model, recipe, identity head, fold, the frame
    index (labels and unknown policy included) and the initial weights (path, size, mtime)."""
    p = params.to_dict()
    recipe = {k: v for k, v in p["finetune"].items() if k not in ("workers", "datasets", "folds", "random_folds")}
    iat = {k: v for k, v in p["iat"].items() if k != "folds"} if lambda_ else None
    init = init_path(params.finetune.init)
    stat = init.stat() if init.is_file() and run.variant != "random" else None
    blob = json.dumps([p["model"], recipe, iat, lambda_, run.dataset, run.fold, run.variant,
                       hashlib.sha256((data_dir / "index.parquet").read_bytes()).hexdigest(),
                       [str(init), stat.st_size, stat.st_mtime_ns] if stat else str(init), world_size], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def finetune(params: Params, run: Run, data_dir: Path, live=None, resume: Path | None = None,
             stop_after: int | None = None, train_subjects: list[str] | None = None) -> dict | None:
    """Train one fold; return the selection record, the test probabilities and the model.

    ``resume``: the resumable container to continue from and to write after every epoch.
    ``stop_after`` ends after that epoch (1-based) as if killed there, returning None (tests).
    ``train_subjects``: label only these of the fold's training subjects (the few-shot budgets)."""
    cfg, ctx = params.finetune, distributed.setup()
    lambda_ = params.iat.lambda_ if run.variant == "iat" else 0.0
    index = pd.read_parquet(data_dir / "index.parquet")
    parts = fold_parts(index, run.dataset, run.fold, cfg.val_fraction, cfg.seed)
    if train_subjects is not None:
        parts["train"] = parts["train"][parts["train"].subject.isin(set(train_subjects))]
    for name, part in parts.items():
        if part.empty and (name != "val" or cfg.selection == "validation"):
            raise ValueError(f"{data_dir}: fold {run.fold} has no {name} frames (subjects present: {index.subject.nunique()})")
    torch.manual_seed(cfg.seed)
    model = build_model(params, run.dataset, lambda_).to(ctx.device)
    report = checkpoint.LoadReport() if run.variant == "random" else load_backbone(model, cfg.init)
    size = params.model.img_size
    train_set = Crops(data_dir, parts["train"], run.dataset,
                      train_transform(size, cfg))
    evals = {k: Crops(data_dir, parts[k], run.dataset, eval_transform(size)) for k in ("val", "test")}
    result = loop.train(model, train_set, evals, AUObjective(lambda_, params.iat.id_loss, params.iat.schedule), cfg, ctx,
                        fingerprint(params, run, data_dir, lambda_, ctx.world_size), f"{run.variant} {run.name}",
                        live, resume, stop_after)
    if result is None:
        return None
    return {**result, "test_index": parts["test"], "init_report": report.as_dict(), "lambda": lambda_,
            "subjects": {k: sorted(v.subject.unique()) for k, v in parts.items()}}

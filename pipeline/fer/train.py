"""Expression finetuning of one FER dataset: the FMAE encoder, a linear head over the classes,
cross-entropy with label smoothing, the shared epoch loop (:mod:`pipeline.training.loop`).

Model selection (``fer.selection``): ``validation`` holds out ``fer.val_fraction`` of each class's
training images (seeded) and picks the epoch with the best validation accuracy, then scores the
test split once; ``paper`` picks the epoch on the test split, as the released code does, and is
marked optimistic. ``fer.balanced`` draws training images with probability inversely proportional
to their class's size (with replacement; an epoch keeps its length).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import Params
from ..data.shards import seed_for
from ..models.vit_classifier import ViTClassifier
from ..training import loop
from ..training.backbone import load_backbone
from ..training.crops import ShardCrops
from ..training.transforms import eval_transform, train_transform
from .metrics import scores


class FERObjective:
    """Single-label classification: cross-entropy; an epoch is scored by its accuracy."""

    fields = ("ce_loss",)

    def __init__(self, label_smoothing: float):
        self.label_smoothing = label_smoothing

    def loss(self, out, y: torch.Tensor, subject: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = F.cross_entropy(out[0].float(), y, label_smoothing=self.label_smoothing)
        return loss, (loss.detach() * len(y)).reshape(1)

    def on_step(self, model, progress: float) -> None:
        pass  # no schedule

    def probs(self, out) -> torch.Tensor:
        return torch.softmax(out[0].float(), dim=-1)

    def score(self, labels: np.ndarray, probs: np.ndarray, split: str) -> tuple[float, dict, dict]:
        s = scores(labels, probs)
        return s["accuracy"], {}, {f"{split}_accuracy": s["accuracy"], f"{split}_mean_class_accuracy": s["mean_class_accuracy"]}


def split_parts(index: pd.DataFrame, val_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """``train``, ``val`` (a seeded ``val_fraction`` of each class's training images, at least one where a
    class has two or more) and ``test`` (the official test split)."""
    train = index[index.split == "train"]
    rng = np.random.default_rng(seed_for(seed, 7))
    val = []
    for _, part in train.groupby("label", sort=True):
        n = int(round(len(part) * val_fraction)) or (1 if len(part) >= 2 else 0)
        val += rng.choice(part.index.to_numpy(), size=n, replace=False).tolist()
    return {"train": train.drop(index=val), "val": index.loc[sorted(val)], "test": index[index.split == "test"]}


def build_model(params: Params, n_classes: int) -> ViTClassifier:
    """The AU detector's ViT (mean-pooled patch tokens + ``fc_norm``) with a head over the classes and no
    identity head: the released FER code's model."""
    return ViTClassifier(params.model.name, n_classes, 0, 0.0, img_size=params.model.img_size, drop_path=params.model.drop_path)


def dataset(folder: Path, part: pd.DataFrame, transform) -> ShardCrops:
    part = part.reset_index(drop=True)
    return ShardCrops(folder, part, torch.tensor(part.label.to_numpy(np.int64)), torch.zeros(len(part), dtype=torch.int64),
                      transform)


def fingerprint(params: Params, name: str, data_dir: Path, world_size: int) -> str:
    """What a resume file must share with this run: model, recipe, dataset, its index, the initial weights."""
    p = params.to_dict()
    recipe = {k: v for k, v in p["fer"].items() if k not in ("workers", "datasets", "rafdb", "affectnet", "custom")}
    init = Path(params.fer.init)
    stat = init.stat() if init.is_file() else None
    blob = json.dumps([p["model"], recipe, p["fer"][name], name, hashlib.sha256((data_dir / "index.parquet").read_bytes()).hexdigest(),
                       [str(init), stat.st_size, stat.st_mtime_ns] if stat else str(init), world_size], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def finetune(params: Params, name: str, data_dir: Path, live=None, resume: Path | None = None,
             stop_after: int | None = None) -> dict | None:
    """Train on ``name``'s prepared crops; the selection record, history, test probabilities and model."""
    cfg, ctx = params.fer, distributed.setup()
    index = pd.read_parquet(data_dir / "index.parquet")
    n_classes = len(json.loads((data_dir / "classes.json").read_text()))
    parts = split_parts(index, cfg.val_fraction, cfg.seed)
    for part, rows in parts.items():
        if rows.empty and (part != "val" or cfg.selection == "validation"):
            raise ValueError(f"{data_dir}: no {part} images ({len(index)} prepared)")
    torch.manual_seed(cfg.seed)
    model = build_model(params, n_classes).to(ctx.device)
    report = load_backbone(model, cfg.init)
    size = params.model.img_size
    train_set = dataset(data_dir, parts["train"], train_transform(size, cfg))
    evals = {k: dataset(data_dir, parts[k], eval_transform(size)) for k in ("val", "test")}
    weights = None
    if cfg.balanced:
        counts = np.bincount(train_set.labels.numpy(), minlength=n_classes)
        weights = torch.tensor(1.0 / counts[train_set.labels.numpy()], dtype=torch.double)
    result = loop.train(model, train_set, evals, FERObjective(cfg.label_smoothing), cfg.recipe(name), ctx,
                        fingerprint(params, name, data_dir, ctx.world_size), f"fer {name}", live, resume, stop_after, weights)
    if result is None:
        return None
    return {**result, "test_index": parts["test"].reset_index(drop=True), "init_report": report.as_dict(),
            "images": {k: len(v) for k, v in parts.items()}}

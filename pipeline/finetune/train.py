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
resumed run ends with the same weights and history as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from .. import distributed
from ..distributed import autocast
from ..au.folds import AUS, subjects
from ..au.metrics import best_threshold, f1_per_au
from ..config import Params
from ..data.shards import seed_for
from ..models import checkpoint
from ..models.au_detector import AUDetector
from ..optim import adamw, scaled_lr, warmup_cosine
from .data import Crops, eval_transform, fold_parts, train_transform

log = logging.getLogger(__name__)
PRETRAINED = Path("models/fmae/fmae.pth")


@dataclass(frozen=True)
class Run:
    dataset: str
    fold: int
    variant: str  # "iat" (iat.lambda from params) or "fmae" (no identity head)

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


def build_model(params: Params, dataset: str, lambda_: float) -> AUDetector:
    return AUDetector(params.model.name, len(AUS[dataset]), len(subjects(dataset)), lambda_, params.iat.id_head_layers,
                      img_size=params.model.img_size, drop_path=params.model.drop_path)


def init_path(init: str) -> Path:
    """The file ``finetune.init`` names (``pretrain``, the older spelling, is the pretrain stage's output)."""
    return PRETRAINED if init == "pretrain" else Path(init)


def load_backbone(model: AUDetector, init: str) -> checkpoint.LoadReport:
    """Pretrained weights into ``model``: the pretrain stage's, a released FMAE (decoder keys unused)
    or a released FMAE-IAT finetuned checkpoint (``fc_norm``, ``head``, ``ID_head`` too)."""
    path = init_path(init)
    report = checkpoint.load_into(model, checkpoint.read(path)["model"])
    log.info("init from %s: %s", path, report.summary())
    if not any(k.startswith("blocks.") for k in report.matched):
        raise checkpoint.CheckpointError(f"{path}: no encoder block fits {model.encoder_name}")
    return report


@torch.no_grad()
def predict(model: AUDetector, loader: DataLoader, device: torch.device) -> np.ndarray:
    """Sigmoid AU probabilities ``[N, A]`` in loader order."""
    model.eval()
    out = []
    for x, _, _ in loader:
        with autocast(device):
            out.append(torch.sigmoid(model(x.to(device, non_blocking=True))[0].float()).cpu())
    model.train()
    return torch.cat(out).numpy()


def fingerprint(params: Params, run: Run, data_dir: Path, lambda_: float, world_size: int) -> str:
    """What a resume file must share with this run: model, recipe, identity head, fold, the frame
    index (labels and unknown policy included) and the initial weights (path, size, mtime)."""
    p = params.to_dict()
    recipe = {k: v for k, v in p["finetune"].items() if k != "workers"}
    init = init_path(params.finetune.init)
    stat = init.stat() if init.is_file() else None
    blob = json.dumps([p["model"], recipe, p["iat"] if lambda_ else None, lambda_, run.dataset, run.fold, run.variant,
                       hashlib.sha256((data_dir / "index.parquet").read_bytes()).hexdigest(),
                       [str(init), stat.st_size, stat.st_mtime_ns] if stat else str(init), world_size], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def finetune(params: Params, run: Run, data_dir: Path, live=None, resume: Path | None = None,
             stop_after: int | None = None) -> dict | None:
    """Train one fold; return the selection record, the test probabilities and the model.

    ``resume``: the resumable container to continue from and to write after every epoch.
    ``stop_after`` ends after that epoch (1-based) as if killed there, returning None (tests)."""
    cfg, ctx = params.finetune, distributed.setup()
    lambda_ = params.iat.lambda_ if run.variant == "iat" else 0.0
    index = pd.read_parquet(data_dir / "index.parquet")
    parts = fold_parts(index, run.dataset, run.fold, cfg.val_fraction, cfg.seed)
    for name, part in parts.items():
        if part.empty and (name != "val" or cfg.selection == "validation"):
            raise ValueError(f"{data_dir}: fold {run.fold} has no {name} frames (subjects present: {index.subject.nunique()})")
    torch.manual_seed(cfg.seed)
    model = build_model(params, run.dataset, lambda_).to(ctx.device)
    report = load_backbone(model, cfg.init)
    size = params.model.img_size
    train_set = Crops(data_dir, parts["train"], run.dataset,
                      train_transform(size, cfg.min_crop_scale, cfg.rand_augment, cfg.erase_prob))
    order = torch.Generator()
    sampler = (DistributedSampler(train_set, seed=cfg.seed, drop_last=True) if ctx.distributed
               else RandomSampler(train_set, generator=order))
    # Workers restart every epoch so that their augmentation seeds follow the epoch's seed.
    loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, num_workers=cfg.workers, drop_last=True,
                        pin_memory=ctx.device.type == "cuda", persistent_workers=False)
    evals = {k: DataLoader(Crops(data_dir, parts[k], run.dataset, eval_transform(size)), cfg.batch_size * 2,
                           num_workers=cfg.workers) for k in ("val", "test") if not parts[k].empty}
    if len(loader) == 0:
        raise ValueError(f"{data_dir}: fold {run.fold} has {len(train_set)} training frames, fewer than one batch "
                         f"(finetune.batch_size={cfg.batch_size} x {ctx.world_size} process(es))")
    steps = len(loader)
    opt = adamw(model, scaled_lr(cfg.blr, cfg.batch_size * ctx.world_size), cfg.weight_decay, (0.9, 0.999),
                layer_decay=cfg.layer_decay, device=ctx.device)
    sched = warmup_cosine(opt, steps * cfg.epochs, steps * cfg.warmup_epochs, min_lr=1e-6)
    fp = fingerprint(params, run, data_dir, lambda_, ctx.world_size)
    first_epoch, best, history = _resume(resume, fp, model, opt, live)
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    pick = "val" if cfg.selection == "validation" else "test"
    for epoch in range(first_epoch, cfg.epochs):
        seed = seed_for(cfg.seed, epoch, ctx.rank)
        torch.manual_seed(seed)  # drop path, and the loader workers' seeds
        random.seed(seed)  # with workers = 0, timm's RandAugment draws from random and NumPy here
        np.random.seed(seed)
        if ctx.distributed:
            sampler.set_epoch(epoch)
        else:
            order.manual_seed(seed_for(cfg.seed, epoch))
        sums = torch.zeros(4, device=ctx.device)  # au loss, id loss, id correct, samples
        tick = time.perf_counter()
        for i, (x, y, subject) in enumerate(tqdm(loader, desc=f"{run.variant} {run.name} epoch {epoch + 1}/{cfg.epochs}",
                                                 disable=not ctx.is_main, mininterval=5)):
            sched.step_update(epoch * steps + i)
            x, y, subject = (t.to(ctx.device, non_blocking=True) for t in (x, y, subject))
            with autocast(ctx.device):
                au_logits, id_logits = net(x)
            loss_au = au_loss(au_logits, y)
            loss = loss_au
            if id_logits is not None:
                loss_id = id_loss(id_logits, subject, params.iat.id_loss)
                loss = loss + loss_id
                sums[1] += loss_id.detach() * len(x)
                sums[2] += (id_logits.argmax(1) == subject).sum()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sums[0] += loss_au.detach() * len(x)
            sums[3] += len(x)
        sums = distributed.all_reduce_sum(sums).cpu()
        row = {"au_loss": float(sums[0] / sums[3]), "images_per_s": float(sums[3]) / (time.perf_counter() - tick)}
        if lambda_:
            row |= {"id_loss": float(sums[1] / sums[3]), "id_train_accuracy": float(sums[2] / sums[3])}
        if ctx.is_main:
            probs = predict(model, evals[pick], ctx.device)
            labels = evals[pick].dataset.labels.numpy()
            thr, f1_best = best_threshold(labels, probs)
            row |= {f"{pick}_f1": float(f1_per_au(labels, probs).mean()), f"{pick}_f1_best_threshold": f1_best,
                    f"{pick}_threshold": thr}
            if f1_best > best["score"]:
                best = {"score": f1_best, "epoch": epoch + 1, "threshold": thr, "state": copy.deepcopy(model.state_dict()),
                        "probs": probs if pick == "test" else None}
            history.append({"epoch": epoch + 1, **row})
            _log(live, epoch + 1, row)
            log.info("%s %s epoch %d: %s", run.variant, run.name, epoch + 1, {k: round(v, 4) for k, v in row.items()})
            if resume is not None:
                _save_resumable(resume, fp, model, opt, epoch, best, history)
        distributed.barrier()
        if epoch + 1 == stop_after:
            distributed.teardown()
            return None
    result = None
    if ctx.is_main:
        model.load_state_dict(best.pop("state"))
        probs = best.pop("probs")
        if probs is None:  # validation protocol: the test fold is touched once, here
            probs = predict(model, evals["test"], ctx.device)
        result = {"selection": {**best, "protocol": cfg.selection, "optimistic": cfg.selection == "paper"},
                  "history": history, "test_probs": probs, "test_index": parts["test"], "model": model,
                  "init_report": report.as_dict(), "lambda": lambda_,
                  "subjects": {k: sorted(v.subject.unique()) for k, v in parts.items()}}
    distributed.teardown()
    return result


def _save_resumable(path: Path, fp: str, model: AUDetector, opt, epoch: int, best: dict, history: list[dict]) -> None:
    """The best epoch's weights are stored only when they are not the current ones (``state`` None)."""
    probs = best.get("probs")
    best = {**best, "state": None if best["epoch"] == epoch + 1 else best["state"],
            "probs": None if probs is None else torch.from_numpy(probs)}
    checkpoint.save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "scaler": None,
                            "fingerprint": fp, "history": history, "best": best}, path)


def _resume(path: Path | None, fp: str, model: AUDetector, opt, live) -> tuple[int, dict, list[dict]]:
    """(first epoch to run, best so far, history) from ``path`` if it fits this run, else a fresh start.
    The history is logged again, so the new dvclive logs hold every epoch."""
    ckpt = checkpoint.read_resumable(path, fp) if path is not None else None
    if ckpt is None:
        return 0, {"score": -1.0}, []
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    best = ckpt["best"]
    if best["state"] is None:  # the last saved epoch was the best one
        best["state"] = copy.deepcopy(ckpt["model"])
    if best.get("probs") is not None:
        best["probs"] = best["probs"].numpy()
    for row in ckpt["history"]:
        _log(live, row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    return ckpt["epoch"] + 1, best, ckpt["history"]


def _log(live, step: int, row: dict) -> None:
    if live is None:
        return
    live.step = step
    for key, value in row.items():
        live.log_metric(key, value)

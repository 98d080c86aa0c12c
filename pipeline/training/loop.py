"""The epoch loop shared by AU finetuning and expression finetuning.

What it does for either task: AdamW with layer decay and a per-iteration warm-up + cosine schedule,
one optimiser step per batch, a score per epoch on the split that selects the epoch (``validation``:
held-out training subjects or images; ``paper``: the test split, optimistic), the best epoch's
weights kept, and a resumable container written after every epoch. Every epoch seeds its own data
order, augmentation and stochastic depth, so a resumed run ends with the same weights and history
as an uninterrupted one. The task supplies an :class:`Objective`: its loss, its probabilities and
how an epoch is scored.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from .. import distributed
from ..config import Recipe
from ..data.shards import seed_for
from ..distributed import Context, autocast
from ..models import checkpoint
from ..optim import adamw, scaled_lr, warmup_cosine

log = logging.getLogger(__name__)


class Objective(Protocol):
    fields: tuple[str, ...]  # the per-sample means ``loss`` accumulates, logged per epoch

    def loss(self, out, y: torch.Tensor, subject: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimise, sums over the batch of each of ``fields``)."""

    def on_step(self, model: torch.nn.Module, progress: float) -> None:
        """Called before every optimiser step with the share of training done (0 to 1): schedules."""

    def probs(self, out) -> torch.Tensor:
        """Class or AU probabilities of a model output."""

    def score(self, labels: np.ndarray, probs: np.ndarray, split: str) -> tuple[float, dict, dict]:
        """(selection score, what the selected epoch keeps besides it, the epoch's logged figures)."""


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, objective: Objective, device: torch.device) -> np.ndarray:
    """Probabilities in loader order."""
    model.eval()
    out = []
    for x, _, _ in loader:
        with autocast(device):
            out.append(objective.probs(model(x.to(device, non_blocking=True))).float().cpu())
    model.train()
    return torch.cat(out).numpy()


def train(model: torch.nn.Module, train_set: Dataset, evals: dict[str, Dataset], objective: Objective, recipe: Recipe,
          ctx: Context, fingerprint: str, name: str, live=None, resume: Path | None = None,
          stop_after: int | None = None, sample_weights: torch.Tensor | None = None) -> dict | None:
    """Train ``model`` (already on ``ctx.device``); on the main process return the selection record,
    the history, the test probabilities and the model holding the selected epoch's weights.

    ``evals`` holds ``val`` (may be empty under the ``paper`` protocol) and ``test``. ``sample_weights``
    (one per training item) draws each epoch's items with replacement in proportion to them (class
    balancing) instead of a permutation. ``stop_after`` ends after that epoch as if killed (tests)."""
    order = torch.Generator()
    if sample_weights is not None:
        sampler = WeightedRandomSampler(sample_weights, len(train_set) // ctx.world_size, generator=order)
    elif ctx.distributed:
        sampler = DistributedSampler(train_set, seed=recipe.seed, drop_last=True)
    else:
        sampler = RandomSampler(train_set, generator=order)
    # Workers restart every epoch so that their augmentation seeds follow the epoch's seed.
    loader = DataLoader(train_set, recipe.batch_size, sampler=sampler, num_workers=recipe.workers, drop_last=True,
                        pin_memory=ctx.device.type == "cuda", persistent_workers=False)
    eval_loaders = {k: DataLoader(v, recipe.batch_size * 2, num_workers=recipe.workers) for k, v in evals.items() if len(v)}
    if len(loader) == 0:
        raise ValueError(f"{name}: {len(train_set)} training items, fewer than one batch "
                         f"(batch_size={recipe.batch_size} x {ctx.world_size} process(es))")
    steps = len(loader)
    opt = adamw(model, scaled_lr(recipe.blr, recipe.batch_size * ctx.world_size), recipe.weight_decay, (0.9, 0.999),
                layer_decay=recipe.layer_decay, device=ctx.device)
    sched = warmup_cosine(opt, steps * recipe.epochs, steps * recipe.warmup_epochs, min_lr=1e-6)
    first_epoch, best, history = _resume(resume, fingerprint, model, opt, live)
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    pick = "val" if recipe.selection == "validation" else "test"
    for epoch in range(first_epoch, recipe.epochs):
        seed = seed_for(recipe.seed, epoch, ctx.rank)
        torch.manual_seed(seed)  # drop path, and the loader workers' seeds
        random.seed(seed)  # with workers = 0, timm's RandAugment draws from random and NumPy here
        np.random.seed(seed)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            order.manual_seed(seed_for(recipe.seed, epoch) if sample_weights is None or not ctx.distributed else seed)
        sums = torch.zeros(len(objective.fields) + 1, device=ctx.device)  # the objective's sums, samples
        tick = time.perf_counter()
        for i, (x, y, subject) in enumerate(tqdm(loader, desc=f"{name} epoch {epoch + 1}/{recipe.epochs}",
                                                 disable=not ctx.is_main, mininterval=5)):
            sched.step_update(epoch * steps + i)
            objective.on_step(model, (epoch * steps + i) / (steps * recipe.epochs))
            x, y, subject = (t.to(ctx.device, non_blocking=True) for t in (x, y, subject))
            with autocast(ctx.device):
                out = net(x)
            loss, batch_sums = objective.loss(out, y, subject)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sums[:-1] += batch_sums
            sums[-1] += len(x)
        sums = distributed.all_reduce_sum(sums).cpu()
        row = {**{f: float(s / sums[-1]) for f, s in zip(objective.fields, sums[:-1])},
               "images_per_s": float(sums[-1]) / (time.perf_counter() - tick)}
        if ctx.is_main:
            probs = predict(model, eval_loaders[pick], objective, ctx.device)
            score, keep, figures = objective.score(eval_loaders[pick].dataset.labels.numpy(), probs, pick)
            row |= figures
            if score > best["score"]:
                best = {"score": score, "epoch": epoch + 1, **keep, "state": copy.deepcopy(model.state_dict()),
                        "probs": probs if pick == "test" else None}
            history.append({"epoch": epoch + 1, **row})
            log_row(live, epoch + 1, row)
            log.info("%s epoch %d: %s", name, epoch + 1, {k: round(v, 4) for k, v in row.items()})
            if resume is not None:
                _save_resumable(resume, fingerprint, model, opt, epoch, best, history)
        distributed.barrier()
        if epoch + 1 == stop_after:
            distributed.teardown()
            return None
    result = None
    if ctx.is_main:
        model.load_state_dict(best.pop("state"))
        probs = best.pop("probs")
        if probs is None:  # validation protocol: the test split is touched once, here
            probs = predict(model, eval_loaders["test"], objective, ctx.device)
        result = {"selection": {**best, "protocol": recipe.selection, "optimistic": recipe.selection == "paper"},
                  "history": history, "test_probs": probs, "model": model}
    distributed.teardown()
    return result


def _save_resumable(path: Path, fp: str, model: torch.nn.Module, opt, epoch: int, best: dict, history: list[dict]) -> None:
    """The best epoch's weights are stored only when they are not the current ones (``state`` None)."""
    probs = best.get("probs")
    best = {**best, "state": None if best["epoch"] == epoch + 1 else best["state"],
            "probs": None if probs is None else torch.from_numpy(probs)}
    checkpoint.save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "scaler": None,
                            "fingerprint": fp, "history": history, "best": best}, path)


def _resume(path: Path | None, fp: str, model: torch.nn.Module, opt, live) -> tuple[int, dict, list[dict]]:
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
        log_row(live, row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    return ckpt["epoch"] + 1, best, ckpt["history"]


def log_row(live, step: int, row: dict) -> None:
    if live is None:
        return
    live.step = step
    for key, value in row.items():
        live.log_metric(key, value)

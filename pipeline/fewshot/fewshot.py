"""Stage ``fewshot@<encoder>-<fold>``: how well one initial encoder transfers to AU detection on one
BP4D fold when only a few training subjects are labelled.

``fmae fewshot --encoder mae --fold 1``. Encoders: ``random`` (the finetuning's random init),
``pretrain.method``'s (``models/fmae/fmae.pth``) and each of ``fewshot.methods``
(``models/compare/<method>/fmae.pth``). For every budget of ``fewshot.budgets`` (the same seeded,
nested subject sets for every encoder, :mod:`.budgets`):

- a linear probe on the frozen encoder's features (:mod:`.au_probe`, lr and threshold chosen on the
  fold's validation subjects), and
- a short finetune through the AU stage's own loop (``finetune``'s recipe with
  ``fewshot.finetune_epochs`` epochs, the ``validation`` protocol), labelling only those subjects;

both scored once on the fold's test subjects (AUC, and F1 at the validation-chosen threshold). Before
any of that, the identity the frozen encoder leaks: evaluate's strong linear probe (its settings,
``evaluate.strong_probe``) naming the subject of frames from sequences it did not train on, over every
subject of the fold (a person-independent pretraining should leak less than the MAE's).
Writes ``models/fewshot/<encoder>/fold<k>/metrics.json``; ``fewshot_report`` gathers them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from .. import paths, provenance, stage_code
from ..au.data import Crops, fold_parts
from ..au.labels import au_columns
from ..au.metrics import auc_per_au, f1_per_au, mean_auc
from ..au.train import Run, build_model, finetune
from ..config import ConfigError, MissingInput, Params
from ..evaluate.linear_probes import extract, sequence_split, strong_probe
from ..training.backbone import load_backbone
from ..training.transforms import eval_transform
from .au_probe import au_linear_probe
from .budgets import budget_subjects

DATA = paths.AU_CROPS
OUT = paths.FEWSHOT
DATASET = "bp4d"
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)

log = logging.getLogger(__name__)


def encoder_path(params: Params, name: str) -> Path | None:
    """The checkpoint an encoder starts from; None for the random init."""
    if name == "random":
        return None
    if name == params.pretrain.method:
        return paths.PRETRAINED
    return paths.COMPARE_DIR / name / paths.PRETRAINED.name


def _check(params: Params, encoder: str | None, fold: int | None, data: Path) -> Path | None:
    if encoder is None or fold is None:
        raise ConfigError("--encoder/--fold", (encoder, fold), "both, e.g. fmae fewshot --encoder mae --fold 1", "command line")
    if params.pretrain.method in params.fewshot.methods:
        raise ConfigError("fewshot.methods", list(params.fewshot.methods), f"methods other than pretrain.method = "
                          f"{params.pretrain.method!r} (the pretrain stage's own encoder is compared under that name)")
    known = ("random", params.pretrain.method, *params.fewshot.methods)
    for i, e in enumerate(params.fewshot.encoders):
        if e not in known:
            raise ConfigError(f"fewshot.encoders.{i}", e, f"one of {', '.join(known)} (random, pretrain.method, fewshot.methods)")
    if encoder not in known:
        raise ConfigError("--encoder", encoder, f"one of {', '.join(known)} (random, pretrain.method, fewshot.methods)",
                          "command line")
    if not (data / "index.parquet").is_file():
        raise MissingInput(f"{data / 'index.parquet'} missing: run `dvc repro prepare@{DATASET}` first")
    init = encoder_path(params, encoder)
    if init is not None and not init.is_file():
        stage = "pretrain" if encoder == params.pretrain.method else f"pretrain_compare@{encoder}"
        raise MissingInput(f"{init} missing: run `dvc repro {stage}` first")
    return init


def identity_leakage(params: Params, frames: pd.DataFrame, feats: torch.Tensor) -> dict:
    """Top-1 of the strong linear probe naming the subject of frames of unseen sequences (``feats``: one row
    per row of ``frames``, in order)."""
    ev, seed = params.evaluate, params.fewshot.seed
    frames = frames.reset_index(drop=True)
    split = sequence_split(frames, ev.probe_train_frames, ev.probe_test_frames, seed)
    s = ev.strong_probe
    tr, te = split.train.index.to_numpy().copy(), split.test.index.to_numpy().copy()  # writable: torch indexes with them
    probe = strong_probe(feats[tr], split.train.subject.to_numpy(), feats[te], split.test.subject.to_numpy(), s.lrs,
                         s.epochs, s.batch_size, s.val_fraction, seed)
    n = split.train.subject.nunique()
    return {"top1": round(probe["top1"], 4), "lr": probe["lr"], "subjects": n, "chance": round(1 / n, 4),
            "train_frames": len(tr), "test_frames": len(te), "skipped_subjects": list(split.skipped)}


def _scores(labels, probs, threshold: float) -> dict:
    auc = mean_auc(auc_per_au(labels, probs))
    return {"auc": None if auc != auc else float(auc), "f1": float(f1_per_au(labels, probs, threshold).mean())}


def run(params: Params, encoder: str | None = None, fold: int | None = None, data_root: Path = DATA,
        out_root: Path = OUT) -> dict:
    data = data_root / DATASET
    init = _check(params, encoder, fold, data)
    cfg, f = params.fewshot, params.finetune
    index = pd.read_parquet(data / "index.parquet")
    parts = fold_parts(index, DATASET, fold, f.val_fraction, f.seed)
    budgets = budget_subjects(sorted(parts["train"].subject.unique()), list(cfg.budgets), cfg.seed, fold)
    cols = au_columns(DATASET)

    # the linear probes: features of every frame of the fold once, from the frozen encoder
    torch.manual_seed(f.seed)  # the random init is the finetuning's
    net = build_model(params, DATASET, 0.0)
    if init is not None:
        load_backbone(net, str(init))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frames = pd.concat([parts["train"], parts["val"], parts["test"]])
    loader = DataLoader(Crops(data, frames, DATASET, eval_transform(params.model.img_size)), batch_size=128,
                        num_workers=f.workers)
    start = time.perf_counter()
    feats = extract(net.to(device), loader, device)
    n_train, n_val = len(parts["train"]), len(parts["val"])
    x = {"train": feats[:n_train], "val": feats[n_train:n_train + n_val], "test": feats[n_train + n_val:]}
    y = {k: parts[k][cols].to_numpy() for k in x}
    feature_seconds = time.perf_counter() - start
    tick = time.perf_counter()
    identity = identity_leakage(params, frames, feats) | {"seconds": round(time.perf_counter() - tick, 1)}
    log.info("fewshot %s fold %d: identity probe top-1 %.3f (chance %.3f)", encoder, fold, identity["top1"], identity["chance"])

    # the short finetunes: finetune's recipe and loop, fewer epochs
    recipe = dataclasses.replace(f, init=str(init or f.init), epochs=cfg.finetune_epochs,
                                 warmup_epochs=min(f.warmup_epochs, cfg.finetune_epochs))
    short = dataclasses.replace(params, finetune=recipe)
    results = {}
    for budget, subjects in budgets.items():
        row: dict = {"subjects": subjects, "frames": int(parts["train"].subject.isin(subjects).sum())}
        keep = parts["train"].subject.isin(subjects).to_numpy()
        tick = time.perf_counter()
        row["probe"] = au_linear_probe((x["train"][keep], y["train"][keep]), (x["val"], y["val"]), (x["test"], y["test"]),
                                       epochs=cfg.probe_epochs, seed=cfg.seed)
        row["probe"]["seconds"] = round(time.perf_counter() - tick + feature_seconds * keep.mean(), 1)
        tick = time.perf_counter()
        batch = min(recipe.batch_size, row["frames"])  # two subjects of a small world may hold less than a batch
        job = dataclasses.replace(short, finetune=dataclasses.replace(recipe, batch_size=batch))
        result = finetune(job, Run(DATASET, fold, "random" if init is None else "fmae"), data, train_subjects=subjects)
        labels = result["test_index"][cols].to_numpy()
        row["finetune"] = {**_scores(labels, result["test_probs"], result["selection"]["threshold"]),
                           "epoch": result["selection"]["epoch"], "threshold": result["selection"]["threshold"],
                           "batch_size": batch, "seconds": round(time.perf_counter() - tick, 1)}
        results[budget] = row
        log.info("fewshot %s fold %d, %s subjects: probe AUC %.3f, finetune AUC %.3f", encoder, fold, budget,
                 row["probe"]["auc"], row["finetune"]["auc"] or float("nan"))
    out = out_root / encoder / f"fold{fold}"
    out.mkdir(parents=True, exist_ok=True)
    record = {"encoder": encoder, "init": str(init) if init else "random", "fold": fold, "budgets": results,
              "identity_probe": identity,
              "validation_subjects": sorted(parts["val"].subject.unique()), "test_subjects": sorted(parts["test"].subject.unique())}
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    provenance.write(out / "provenance.json", f"fewshot@{encoder}-{fold}", params.to_dict(), CODE)
    return record

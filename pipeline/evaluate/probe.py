"""Stage ``probe`` (``probe@<dataset>-<model>``): the identity probes of one encoder.

``fmae probe --dataset bp4d --model fmae`` runs the three probes of :mod:`.linear_probes` (the release's,
a strong one, unseen sequences; the release's only where ``evaluate.release_probe.models`` names the
encoder) on the features of ``model``: ``pretrained`` (``finetune.init``,
before any finetuning) or a finetuned variant (``fmae``, ``iat``, ``random``) on each fold of
``evaluate.probe_folds``. One stage per encoder, so DVC re-probes only what changed: an IAT
experiment re-runs ``probe@bp4d-iat`` and ``evaluate``, not the other encoders' probes (the
release's probe costs 20 augmented passes over 2,870 frames per model, minutes on a CPU).

Writes ``metrics/probes/<dataset>-<model>.json`` (per fold and protocol run the top-1, the
release probe's accuracy per epoch, the strong probe's chosen lr; the split's sizes and chance levels; in
git, read by ``evaluate``) and ``data/probes/<dataset>-<model>.tsne.parquet`` (the t-SNE of the
first probed fold's features of ``evaluate.tsne_subjects`` subjects).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .. import paths, provenance, stage_code
from ..au.data import Crops
from ..au.train import VARIANTS, build_model
from ..config import ConfigError, MissingInput, Params
from ..models import checkpoint
from ..training.backbone import load_backbone
from ..training.transforms import eval_transform, train_transform
from . import figures
from .linear_probes import extract, probe_split, release_probe, sequence_split, strong_probe

log = logging.getLogger(__name__)

MODELS = ("pretrained", *VARIANTS)
PROTOCOLS = ("release", "strong", "unseen_sequences")
DATA = paths.AU_CROPS
FINETUNED = paths.AU_MODELS
OUT = paths.PROBES
TSNE = paths.PROBE_TSNE
CODE = stage_code.closure(__name__)


def out_paths(dataset: str, model: str, out: Path = OUT, tsne: Path = TSNE) -> tuple[Path, Path]:
    return out / f"{dataset}-{model}.json", tsne / f"{dataset}-{model}.tsne.parquet"


def encoder(params: Params, dataset: str, model: str, fold: int | None, root: Path = FINETUNED) -> torch.nn.Module:
    """The pretrained encoder (``fold`` None) or the fold's finetuned model, ready for ``features``."""
    if model == "pretrained":
        net = build_model(params, dataset, 0.0)
        load_backbone(net, params.finetune.init)
        return net
    path = root / model / dataset / f"fold{fold}" / "checkpoint.pth"
    if not path.is_file():
        stage = {"fmae": "finetune_fmae", "iat": "finetune", "random": "finetune_random"}[model]
        raise MissingInput(f"{path} missing: run `dvc repro {stage}@{dataset}-{fold}` first")
    state = checkpoint.read(path)
    id_head = any(k.startswith("ID_head") for k in state["model"])  # the features do not depend on lambda's value
    net = build_model(params, dataset, 1.0 if id_head else 0.0)
    report = checkpoint.load_into(net, state["model"])
    if report.missing or report.mismatched:
        raise checkpoint.CheckpointError(f"{path} does not fit the configured model: {report.summary()}")
    return net


def run(params: Params, dataset: str | None = None, model: str | None = None, data_root: Path = DATA,
        models_root: Path = FINETUNED, out_root: Path = OUT, tsne_root: Path = TSNE) -> dict:
    if dataset is None or model is None:
        raise ConfigError("--dataset/--model", (dataset, model), "both, e.g. fmae probe --dataset bp4d --model fmae",
                          "command line")
    cfg, seed = params.evaluate, params.finetune.seed
    index_path = data_root / dataset / "index.parquet"
    if not index_path.is_file():
        raise MissingInput(f"{index_path} missing: run `dvc repro prepare@{dataset}` first")
    folds = [None] if model == "pretrained" else list(cfg.probe_folds)
    nets = {fold: encoder(params, dataset, model, fold, models_root) for fold in folds}  # every input checked first
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = pd.read_parquet(index_path)
    splits = {"random_frames": probe_split(index, cfg.probe_train_frames, cfg.probe_test_frames, seed),
              "unseen_sequences": sequence_split(index, cfg.probe_train_frames, cfg.probe_test_frames, seed)}
    frames = pd.concat([s for split in splits.values() for s in (split.train, split.test)]).drop_duplicates("key")
    row_of = pd.Series(np.arange(len(frames)), index=frames.key.to_numpy())
    size, workers, f = params.model.img_size, params.finetune.workers, params.finetune
    plain = DataLoader(Crops(data_root / dataset, frames, dataset, eval_transform(size)), batch_size=128, num_workers=workers)
    # the release probe augments its inputs as the paper's finetuning does (its script's defaults)
    augmented = DataLoader(Crops(data_root / dataset, splits["random_frames"].train, dataset,
                                 train_transform(size, dataclasses.replace(f, augment="paper"))),
                           batch_size=cfg.release_probe.batch_size, shuffle=True, num_workers=workers, drop_last=True)
    sides = {k: {side: (getattr(s, side).key, getattr(s, side).subject_index.to_numpy()) for side in ("train", "test")}
             for k, s in splits.items()}
    r, strong = cfg.release_probe, cfg.strong_probe
    results, tsne = {}, None
    for fold, net in nets.items():
        net = net.to(device)
        feats = extract(net, plain, device)
        x = {k: {side: feats[row_of[keys].to_numpy(copy=True)] for side, (keys, _) in v.items()} for k, v in sides.items()}
        y = {k: {side: ids for side, (_, ids) in v.items()} for k, v in sides.items()}
        row = {}
        if model in r.models:
            curve, _ = release_probe(net, augmented, y["random_frames"]["train"], x["random_frames"]["test"],
                                     y["random_frames"]["test"], r.epochs, r.blr, r.warmup_epochs, r.weight_decay, seed,
                                     device)
            row["release"] = {"top1": max(curve), "top1_epoch1": curve[0], "best_epoch": int(np.argmax(curve)) + 1,
                              "curve": [round(a, 4) for a in curve]}
        for name, key in (("strong", "random_frames"), ("unseen_sequences", "unseen_sequences")):
            row[name] = strong_probe(x[key]["train"], y[key]["train"], x[key]["test"], y[key]["test"], strong.lrs,
                                     strong.epochs, strong.batch_size, strong.val_fraction, seed)
        results["all" if fold is None else f"fold{fold}"] = row
        log.info("probe %s %s%s: %s", dataset, model, "" if fold is None else f" fold {fold}",
                 ", ".join(f"{p} {row[p]['top1']:.3f}" for p in PROTOCOLS if p in row))
        if tsne is None:
            keep = frames.subject.isin(sorted(frames.subject.unique())[:cfg.tsne_subjects]).to_numpy()
            xy = figures.tsne_2d(feats.numpy()[keep], seed)
            tsne = pd.DataFrame({"subject": frames.subject.to_numpy()[keep], "x": xy[:, 0], "y": xy[:, 1]})
    record = {"dataset": dataset, "model": model, "folds": results,
              "subjects": {"release": splits["random_frames"].train.subject.nunique(), "strong":
                           splits["random_frames"].train.subject.nunique(),
                           "unseen_sequences": splits["unseen_sequences"].train.subject.nunique()},
              "frames": {k: {"train": len(s.train), "test": len(s.test)} for k, s in splits.items()},
              "skipped_subjects": {k: list(s.skipped) for k, s in splits.items()}}
    path, tsne_path = out_paths(dataset, model, out_root, tsne_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tsne_path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    tsne.to_parquet(tsne_path, index=False)
    provenance.write(tsne_path.with_suffix(".provenance.json"), f"probe@{dataset}-{model}", params.to_dict(), CODE)
    return record

"""Stage ``evaluate``: the finetuned folds of every configured dataset, scored and analysed.

``fmae evaluate`` reads ``models/au/<variant>/<dataset>/fold<k>/`` (both variants, every fold
in ``finetune.folds``), the pretrained backbone, the prepare stage's crops and the finetune
stage's dvclive logs, and writes:

- ``metrics/au.json``: per dataset and variant the mean F1 over AUs and folds at the selected
  threshold (``f1_mean``) and at 0.5 (``f1_05_mean``), ROC-AUC, the all-positive predictor's F1,
  per AU (``bp4d.iat.au12.f1``) and per fold (``bp4d.iat.fold1.f1_mean``); ``protocol`` and
  ``optimistic`` say how the epoch and threshold were chosen (``finetune.selection``).
- ``metrics/identity.json``: linear identity-probe top-1 accuracy (final and first epoch) of
  the pretrained backbone and of each finetuned model, and chance.
- ``plots/evaluate/*.png``: F1 per epoch, probe accuracy per epoch, t-SNE, per-AU F1 (DVC plots).
- ``reports/au.md`` (tables in the paper's layout beside the paper's numbers) and
  ``reports/evaluate/`` (the plotted series as CSV, provenance).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import provenance
from ..au.folds import AUS
from ..config import MissingInput, Params
from ..au.labels import au_columns
from ..au.metrics import f1_per_au
from ..finetune.data import Crops, eval_transform, fold_parts
from ..finetune.train import build_model, load_backbone
from ..models import checkpoint
from . import figures, report
from .probe import extract, linear_probe, probe_split
from .scores import score_fold, summarise

log = logging.getLogger(__name__)

DATA = Path("data/au")
MODELS = Path("models/au")
LIVE = Path("dvclive/finetune")
METRICS = Path("metrics")
PLOTS = Path("plots/evaluate")
TABLES = Path("reports/evaluate")
REPORT = Path("reports/au.md")
VARIANTS = ("fmae", "iat")
CODE = ("pipeline/evaluate", "pipeline/finetune", "pipeline/models", "pipeline/au", "pipeline/data",
        "pipeline/config.py", "pipeline/provenance.py")


@dataclass(frozen=True)
class FoldRun:
    """One finetuned fold as the finetune stage left it."""

    variant: str
    dataset: str
    fold: int
    folder: Path
    metrics: dict

    @property
    def stage(self) -> str:
        return f"{'finetune' if self.variant == 'iat' else 'finetune_fmae'}@{self.dataset}-{self.fold}"


def fold_runs(params: Params, dataset: str, variant: str, root: Path = MODELS) -> list[FoldRun]:
    runs = []
    for fold in params.finetune.folds:
        folder = root / variant / dataset / f"fold{fold}"
        run = FoldRun(variant, dataset, fold, folder, {})
        need = [folder / n for n in ("metrics.json", "predictions.parquet", "checkpoint.pth")]
        missing = [str(p) for p in need if not p.is_file()]
        if missing:
            raise MissingInput(f"{', '.join(missing)} missing: run `dvc repro {run.stage}` first")
        runs.append(FoldRun(variant, dataset, fold, folder, json.loads((folder / "metrics.json").read_text())))
    protocols = {r.metrics["protocol"] for r in runs}
    if len(protocols) > 1:
        raise ValueError(f"{dataset} {variant}: folds were selected under different protocols {sorted(protocols)}; "
                         "re-run them with one finetune.selection")
    return runs


def au_scores(runs: list[FoldRun]) -> dict:
    folds = [score_fold(pd.read_parquet(r.folder / "predictions.parquet"), r.dataset, r.fold,
                        r.metrics["threshold"], r.metrics["epoch"]) for r in runs]
    return summarise(runs[0].dataset, folds)


def live_series(run: FoldRun, name: str, root: Path = LIVE) -> np.ndarray:
    """One per-epoch series the finetune stage logged with dvclive (``plots/metrics/<name>.tsv``)."""
    path = root / run.variant / f"{run.dataset}-{run.fold}" / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        raise MissingInput(f"{path} missing: the dvclive log of `{run.stage}` (re-run it)")
    return pd.read_csv(path, sep="\t").sort_values("step")[name].to_numpy(float)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    """Series of unequal length as ``[folds, max_len]``, NaN-padded."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _finetuned(params: Params, run: FoldRun) -> torch.nn.Module:
    model = build_model(params, run.dataset, run.metrics["lambda"])
    report_ = checkpoint.load_into(model, checkpoint.read(run.folder / "checkpoint.pth")["model"])
    if report_.missing or report_.mismatched:
        raise checkpoint.CheckpointError(f"{run.folder / 'checkpoint.pth'} does not fit the configured model: "
                                         f"{report_.summary()}")
    return model


def identity_analysis(params: Params, dataset: str, runs: dict[str, list[FoldRun]], data_root: Path = DATA):
    """Probe accuracies per epoch for the pretrained backbone and each fold model, and t-SNE panels."""
    cfg, device = params.evaluate, _device()
    index = pd.read_parquet(data_root / dataset / "index.parquet")
    split = probe_split(index, cfg.probe_train_frames, cfg.probe_test_frames, params.finetune.seed)
    frames = pd.concat([split.train, split.test])
    loader = DataLoader(Crops(data_root / dataset, frames, dataset, eval_transform(params.model.img_size)),
                        batch_size=128, num_workers=params.finetune.workers)
    n_train = len(split.train)
    y_train, y_test = split.train.subject.to_numpy(), split.test.subject.to_numpy()

    def probe(model) -> tuple[list[float], torch.Tensor]:
        feats = extract(model.to(device), loader, device)
        acc = linear_probe(feats[:n_train], y_train, feats[n_train:], y_test, cfg.probe_epochs, cfg.probe_lr,
                           cfg.probe_batch_size, params.finetune.seed)
        return acc, feats

    pretrained = build_model(params, dataset, 0.0)
    load_backbone(pretrained, params.finetune.init)
    jobs = [("pretrained", None, pretrained)] + [(v, r, None) for v in VARIANTS for r in runs[v]]
    curves: dict[str, list[list[float]]] = {}
    tsne_feats: dict[str, torch.Tensor] = {}
    for name, run, model in tqdm(jobs, desc=f"identity probe {dataset}", unit="model"):
        acc, feats = probe(model if model is not None else _finetuned(params, run))
        curves.setdefault(name, []).append(acc)
        if run is not None and run.fold == params.finetune.folds[0]:
            tsne_feats[name] = feats
    keep = sorted(frames.subject.unique())[:cfg.tsne_subjects]
    sel = frames.subject.isin(keep).to_numpy()
    panels = {name: (figures.tsne_2d(f.numpy()[sel], params.finetune.seed), frames.subject.to_numpy()[sel])
              for name, f in tsne_feats.items()}
    probe_info = {"subjects": int(frames.subject.nunique()), "train_frames": n_train, "test_frames": len(split.test),
                  "chance": round(1 / frames.subject.nunique(), 4), "skipped_subjects": list(split.skipped)}
    return {k: np.asarray(v) for k, v in curves.items()}, panels, probe_info


def identity_metrics(curves: dict[str, np.ndarray], info: dict, folds: tuple[int, ...]) -> dict:
    out = {"chance": info["chance"], "subjects": info["subjects"], "train_frames": info["train_frames"],
           "test_frames": info["test_frames"]}
    for name, acc in curves.items():
        out[name] = {"top1": round(float(acc[:, -1].mean()), 4), "top1_epoch1": round(float(acc[:, 0].mean()), 4)}
        if name != "pretrained":
            out[name] |= {f"fold{k}": {"top1": round(float(a[-1]), 4)} for k, a in zip(folds, acc)}
    return out


def split_floor(params: Params, dataset: str, split: str, data_root: Path = DATA) -> float:
    """The all-positive predictor's mean F1 on ``split`` (``val`` or ``test``), averaged over the folds:
    the floor of the F1-per-epoch curves, which are scored on that split."""
    index = pd.read_parquet(data_root / dataset / "index.parquet")
    floors = []
    for fold in params.finetune.folds:
        part = fold_parts(index, dataset, fold, params.finetune.val_fraction, params.finetune.seed)[split]
        labels = part[au_columns(dataset)].to_numpy()
        floors.append(float(f1_per_au(labels, np.ones(labels.shape)).mean()))
    return float(np.mean(floors))


def evaluate_dataset(params: Params, dataset: str) -> tuple[dict, dict, dict]:
    """(AU metrics, identity metrics, paths of the figures) of one dataset."""
    runs = {v: fold_runs(params, dataset, v) for v in VARIANTS}
    protocol = runs["iat"][0].metrics["protocol"]
    au = {v: au_scores(runs[v]) for v in VARIANTS}
    au["iat_minus_fmae_f1"] = round(au["iat"]["f1_mean"] - au["fmae"]["f1_mean"], 4)
    pick = "val" if protocol == "validation" else "test"
    dynamics = {v: _stack([live_series(r, f"{pick}_f1_best_threshold") for r in runs[v]]) for v in VARIANTS}
    id_train = _stack([live_series(r, "id_train_accuracy") for r in runs["iat"]]) if runs["iat"][0].metrics["lambda"] else None
    curves, panels, info = identity_analysis(params, dataset, runs)
    identity = identity_metrics(curves, info, params.finetune.folds)

    split_name = "validation subjects" if pick == "val" else "test fold (optimistic)"
    figs = {
        "f1_dynamics": figures.curves_figure(dynamics, PLOTS / f"{dataset}_f1_per_epoch.png",
                                             f"{dataset}: F1 per finetuning epoch", f"mean F1, {split_name}",
                                             hline=("all-positive predictor", split_floor(params, dataset, pick))),
        "identity_probe": figures.curves_figure(curves, PLOTS / f"{dataset}_identity_probe.png",
                                                f"{dataset}: linear identity probe on frozen features",
                                                "top-1 accuracy (probe test frames)", "probe epoch",
                                                hline=("chance", info["chance"])),
        "tsne": figures.tsne_figure(panels, PLOTS / f"{dataset}_tsne.png",
                                    f"{dataset}: t-SNE of backbone features, fold {params.finetune.folds[0]}, "
                                    f"{min(len(set(p[1])) for p in panels.values())} subjects"),
        "per_au": figures.per_au_figure(
            [f"AU{a}" for a in AUS[dataset]], {v: [au[v][f"au{a}"]["f1"] for a in AUS[dataset]] for v in VARIANTS},
            PLOTS / f"{dataset}_per_au_f1.png", f"{dataset}: test F1 per AU (mean over folds, {protocol})"),
    }
    if id_train is not None:
        figs["id_train"] = figures.curves_figure({"iat": id_train}, PLOTS / f"{dataset}_id_train_accuracy.png",
                                                 f"{dataset}: identity-head accuracy on training batches (IAT)",
                                                 "train top-1 of the ID head", hline=("chance", info["chance"]))
    _write_series(dataset, dynamics, curves)
    return {"protocol": protocol, **au}, identity, figs


def _write_series(dataset: str, dynamics: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> None:
    """The plotted numbers as CSV (one column per variant, fold means), for people who re-plot."""
    TABLES.mkdir(parents=True, exist_ok=True)
    for name, series in (("f1_per_epoch", dynamics), ("identity_probe", curves)):
        df = pd.DataFrame({k: np.nanmean(v, axis=0) for k, v in series.items()})
        df.insert(0, "epoch", np.arange(1, len(df) + 1))
        df.to_csv(TABLES / f"{dataset}_{name}.csv", index=False, float_format="%.4f")


def run(params: Params) -> None:
    au_metrics, id_metrics, figs = {}, {}, {}
    for dataset in params.finetune.datasets:
        a, i, f = evaluate_dataset(params, dataset)
        au_metrics[dataset], id_metrics[dataset], figs[dataset] = a, i, f
    protocols = {m.pop("protocol") for m in au_metrics.values()}
    protocol = protocols.pop() if len(protocols) == 1 else "mixed"
    au_metrics = {"protocol": protocol, "optimistic": protocol != "validation", **au_metrics}
    METRICS.mkdir(exist_ok=True)
    (METRICS / "au.json").write_text(json.dumps(au_metrics, indent=2) + "\n")
    (METRICS / "identity.json").write_text(json.dumps(id_metrics, indent=2) + "\n")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report.render(params, au_metrics, id_metrics, figs, provenance.code_version(CODE)["sha256"]))
    provenance.write(TABLES / "provenance.json", "evaluate", params.to_dict(), CODE)
    for dataset, m in au_metrics.items():
        if isinstance(m, dict):
            log.info("%s: F1 FMAE %.3f, FMAE-IAT %.3f (all-positive %.3f); identity probe FMAE %.3f, IAT %.3f, chance %.3f",
                     dataset, m["fmae"]["f1_mean"], m["iat"]["f1_mean"], m["iat"]["f1_constant_mean"],
                     id_metrics[dataset]["fmae"]["top1"], id_metrics[dataset]["iat"]["top1"],
                     id_metrics[dataset]["chance"])
    log.info("wrote %s, %s, %s and %s", METRICS / "au.json", METRICS / "identity.json", REPORT, PLOTS)

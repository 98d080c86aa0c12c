"""Stage ``evaluate``: the finetuned folds of every configured dataset, scored and analysed.

``fmae evaluate`` reads ``models/au/<variant>/<dataset>/fold<k>/`` (``fmae`` on ``finetune.folds``,
``iat`` on ``iat.folds``, ``random`` on ``finetune.random_folds``: metrics, predictions, checkpoint
and ``history.json``), the pretrained backbone and the prepare stage's crops, and writes:

- ``metrics/au.json``: per dataset and variant the mean F1 over AUs and folds at the selected
  threshold (``f1_mean``) and at 0.5 (``f1_05_mean``), ROC-AUC, the all-positive predictor's F1,
  per AU (``bp4d.iat.au12.f1``) and per fold (``bp4d.iat.fold1.f1_mean``); IAT and random init
  against FMAE on the folds both ran (``bp4d.iat_minus_fmae_f1``); the three identity probes of
  :mod:`.probe` (``bp4d.identity.<release|strong|unseen_sequences>.<pretrained|fmae|iat|random>``,
  each with its ``chance``) on ``evaluate.probe_folds``; ``protocol`` and ``optimistic`` say how
  the epoch and threshold were chosen (``finetune.selection``).
- ``plots/evaluate/*.png``: F1 per epoch, the release probe's accuracy per epoch, t-SNE, per-AU F1.
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

from .. import provenance, stage_code
from ..au.folds import AUS
from ..config import MissingInput, Params
from ..au.labels import au_columns
from ..au.metrics import f1_per_au
from ..finetune.data import Crops, eval_transform, fold_parts, train_transform
from ..finetune.train import VARIANTS, build_model, load_backbone
from ..models import checkpoint
from . import figures, report
from .probe import extract, probe_split, release_probe, sequence_split, strong_probe
from .scores import score_fold, summarise

log = logging.getLogger(__name__)

DATA = Path("data/au")
MODELS = Path("models/au")
METRICS = Path("metrics")
PLOTS = Path("plots/evaluate")
TABLES = Path("reports/evaluate")
REPORT = Path("reports/au.md")
STAGES = {"fmae": "finetune_fmae", "iat": "finetune", "random": "finetune_random"}
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)


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
        return f"{STAGES[self.variant]}@{self.dataset}-{self.fold}"


def fold_runs(params: Params, dataset: str, variant: str, root: Path = MODELS) -> list[FoldRun]:
    """The finetuned folds of ``variant`` (its folds: :meth:`Params.variant_folds`)."""
    runs = []
    for fold in params.variant_folds(variant):
        folder = root / variant / dataset / f"fold{fold}"
        run = FoldRun(variant, dataset, fold, folder, {})
        need = [folder / n for n in ("metrics.json", "predictions.parquet", "checkpoint.pth", "history.json")]
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


def history_series(run: FoldRun, name: str) -> np.ndarray:
    """One per-epoch series of the fold's ``history.json`` (NaN where an epoch lacks it)."""
    rows = json.loads((run.folder / "history.json").read_text())["history"]
    return np.array([row.get(name, np.nan) for row in sorted(rows, key=lambda r: r["epoch"])], float)


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


PROBES = ("release", "strong", "unseen_sequences")


def identity_analysis(params: Params, dataset: str, runs: dict[str, list[FoldRun]], data_root: Path = DATA):
    """The three identity probes (:mod:`.probe`) of the pretrained encoder and of every variant's model on
    each of ``evaluate.probe_folds``; the release probe's accuracy per epoch; t-SNE panels."""
    cfg, device, seed = params.evaluate, _device(), params.finetune.seed
    index = pd.read_parquet(data_root / dataset / "index.parquet")
    splits = {"random_frames": probe_split(index, cfg.probe_train_frames, cfg.probe_test_frames, seed),
              "unseen_sequences": sequence_split(index, cfg.probe_train_frames, cfg.probe_test_frames, seed)}
    frames = pd.concat([splits["random_frames"].train, splits["random_frames"].test,
                        splits["unseen_sequences"].train, splits["unseen_sequences"].test]).drop_duplicates("key")
    row_of = pd.Series(np.arange(len(frames)), index=frames.key.to_numpy())
    size, workers = params.model.img_size, params.finetune.workers
    plain = DataLoader(Crops(data_root / dataset, frames, dataset, eval_transform(size)), batch_size=128, num_workers=workers)
    f = params.finetune  # the release probe augments as finetuning does (its script's defaults)
    augmented = DataLoader(Crops(data_root / dataset, splits["random_frames"].train, dataset,
                                 train_transform(size, f.min_crop_scale, f.rand_augment, f.erase_prob, "paper")),
                           batch_size=cfg.release_probe.batch_size, shuffle=True, num_workers=workers, drop_last=True)
    strong = cfg.strong_probe

    def probe(model) -> tuple[dict, list[float], torch.Tensor]:
        model = model.to(device)
        feats = extract(model, plain, device)
        part = {k: {side: feats[row_of[getattr(s, side).key].to_numpy()] for side in ("train", "test")}
                for k, s in splits.items()}
        ids = {k: {side: getattr(s, side).subject_index.to_numpy() for side in ("train", "test")} for k, s in splits.items()}
        r = cfg.release_probe
        curve, _ = release_probe(model, augmented, ids["random_frames"]["train"], part["random_frames"]["test"],
                              ids["random_frames"]["test"], r.epochs, r.blr, r.warmup_epochs, r.weight_decay, seed, device)
        out = {"release": {"top1": max(curve), "top1_epoch1": curve[0], "best_epoch": int(np.argmax(curve)) + 1}}
        for name, key in (("strong", "random_frames"), ("unseen_sequences", "unseen_sequences")):
            out[name] = strong_probe(part[key]["train"], ids[key]["train"], part[key]["test"], ids[key]["test"],
                                     strong.lrs, strong.epochs, strong.batch_size, strong.val_fraction, seed)
        return out, curve, feats

    pretrained = build_model(params, dataset, 0.0)
    load_backbone(pretrained, params.finetune.init)
    jobs = [("pretrained", None, pretrained)] + [(v, r, None) for v in VARIANTS for r in runs[v]
                                                 if r.fold in cfg.probe_folds]
    results: dict[str, list[dict]] = {}
    curves: dict[str, list[list[float]]] = {}
    tsne_feats: dict[str, torch.Tensor] = {}
    for name, run, model in tqdm(jobs, desc=f"identity probes {dataset}", unit="model"):
        out, curve, feats = probe(model if model is not None else _finetuned(params, run))
        results.setdefault(name, []).append({**out, "fold": None if run is None else run.fold})
        curves.setdefault(name, []).append(curve)
        if run is None or run.fold == cfg.probe_folds[0]:
            tsne_feats[name] = feats
    keep = sorted(frames.subject.unique())[:cfg.tsne_subjects]
    sel = frames.subject.isin(keep).to_numpy()
    panels = {name: (figures.tsne_2d(f.numpy()[sel], seed), frames.subject.to_numpy()[sel]) for name, f in tsne_feats.items()}
    n = {k: s.train.subject.nunique() for k, s in splits.items()}
    info = {"probe_folds": list(cfg.probe_folds),
            "subjects": {"release": n["random_frames"], "strong": n["random_frames"], "unseen_sequences": n["unseen_sequences"]},
            "frames": {k: {"train": len(s.train), "test": len(s.test)} for k, s in splits.items()},
            "skipped_subjects": {k: list(s.skipped) for k, s in splits.items()}}
    return results, {k: np.asarray(v) for k, v in curves.items()}, panels, info


def identity_metrics(results: dict[str, list[dict]], info: dict) -> dict:
    """Per probe protocol: its chance level and the mean top-1 over the probed folds of each model."""
    out = {"probe_folds": ",".join(map(str, info["probe_folds"]))}
    for protocol in PROBES:
        subjects = info["subjects"][protocol]
        row = {"chance": round(1 / subjects, 4), "subjects": subjects}
        for name, runs in results.items():
            row[name] = round(float(np.mean([r[protocol]["top1"] for r in runs])), 4)
        out[protocol] = row
    out["release"]["epoch1"] = {name: round(float(np.mean([r["release"]["top1_epoch1"] for r in runs])), 4)
                                for name, runs in results.items()}
    out["strong"]["lr"] = {name: runs[0]["strong"]["lr"] for name, runs in results.items()}
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


def common_fold_gap(a: dict, b: dict) -> tuple[float | None, list[int]]:
    """Mean F1 of variant ``a`` minus variant ``b`` over the folds both ran (their per-fold entries)."""
    folds = sorted(int(k[4:]) for k in a if k.startswith("fold") and k in b)
    if not folds:
        return None, []
    return round(float(np.mean([a[f"fold{k}"]["f1_mean"] - b[f"fold{k}"]["f1_mean"] for k in folds])), 4), folds


def evaluate_dataset(params: Params, dataset: str) -> tuple[dict, dict]:
    """(AU metrics with the identity probes under ``identity``, paths of the figures) of one dataset."""
    runs = {v: fold_runs(params, dataset, v) for v in VARIANTS}
    protocol = runs["iat"][0].metrics["protocol"]
    au = {v: au_scores(runs[v]) for v in VARIANTS}
    for v in ("iat", "random"):
        gap, folds = common_fold_gap(au[v], au["fmae"])
        au[f"{v}_minus_fmae_f1"], au[f"{v}_minus_fmae_folds"] = gap, ",".join(map(str, folds))
    pick = "val" if protocol == "validation" else "test"
    dynamics = {v: _stack([history_series(r, f"{pick}_f1_best_threshold") for r in runs[v]]) for v in VARIANTS}
    id_train = _stack([history_series(r, "id_train_accuracy") for r in runs["iat"]]) if runs["iat"][0].metrics["lambda"] else None
    results, curves, panels, info = identity_analysis(params, dataset, runs)
    identity = identity_metrics(results, info)
    chance = identity["release"]["chance"]

    split_name = "validation subjects" if pick == "val" else "test fold (optimistic)"
    folds = ", ".join(map(str, params.evaluate.probe_folds))
    figs = {
        "f1_dynamics": figures.curves_figure(dynamics, PLOTS / f"{dataset}_f1_per_epoch.png",
                                             f"{dataset}: F1 per finetuning epoch", f"mean F1, {split_name}",
                                             hline=("all-positive predictor", split_floor(params, dataset, pick))),
        "identity_probe": figures.curves_figure(curves, PLOTS / f"{dataset}_identity_probe.png",
                                                f"{dataset}: the release's identity probe per epoch (fold {folds})",
                                                "top-1 accuracy (probe test frames)", "probe epoch",
                                                hline=("chance", chance)),
        "tsne": figures.tsne_figure(panels, PLOTS / f"{dataset}_tsne.png",
                                    f"{dataset}: t-SNE of backbone features, fold {params.evaluate.probe_folds[0]}, "
                                    f"{min(len(set(p[1])) for p in panels.values())} subjects"),
        "per_au": figures.per_au_figure(
            [f"AU{a}" for a in AUS[dataset]], {v: [au[v][f"au{a}"]["f1"] for a in AUS[dataset]] for v in VARIANTS},
            PLOTS / f"{dataset}_per_au_f1.png", f"{dataset}: test F1 per AU (mean over each variant's folds, {protocol})"),
    }
    if id_train is not None:
        figs["id_train"] = figures.curves_figure({"iat": id_train}, PLOTS / f"{dataset}_id_train_accuracy.png",
                                                 f"{dataset}: identity-head accuracy on training batches (IAT)",
                                                 "train top-1 of the ID head", hline=("chance", chance))
    _write_series(dataset, dynamics, curves)
    return {"protocol": protocol, **au, "identity": identity}, figs


def _write_series(dataset: str, dynamics: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> None:
    """The plotted numbers as CSV (one column per variant, fold means), for people who re-plot."""
    TABLES.mkdir(parents=True, exist_ok=True)
    for name, series in (("f1_per_epoch", dynamics), ("identity_probe", curves)):
        df = pd.DataFrame({k: pd.Series(np.nanmean(v, axis=0)) for k, v in series.items()})
        df.insert(0, "epoch", np.arange(1, len(df) + 1))
        df.to_csv(TABLES / f"{dataset}_{name}.csv", index=False, float_format="%.4f")


def run(params: Params) -> None:
    au_metrics, figs = {}, {}
    for dataset in params.finetune.datasets:
        au_metrics[dataset], figs[dataset] = evaluate_dataset(params, dataset)
    protocols = {m.pop("protocol") for m in au_metrics.values()}
    protocol = protocols.pop() if len(protocols) == 1 else "mixed"
    au_metrics = {"protocol": protocol, "optimistic": protocol != "validation", **au_metrics}
    METRICS.mkdir(exist_ok=True)
    (METRICS / "au.json").write_text(json.dumps(au_metrics, indent=2) + "\n")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report.render(params, au_metrics, figs, provenance.code_version(CODE)["sha256"]))
    provenance.write(TABLES / "provenance.json", "evaluate", params.to_dict(), CODE)
    for dataset, m in au_metrics.items():
        if isinstance(m, dict):
            i = m["identity"]
            log.info("%s: test F1 FMAE %.3f, FMAE-IAT %.3f, random init %.3f (all-positive %.3f); identity probes "
                     "(release / strong / unseen sequences) FMAE %.3f / %.3f / %.3f, IAT %.3f / %.3f / %.3f",
                     dataset, m["fmae"]["f1_mean"], m["iat"]["f1_mean"], m["random"]["f1_mean"],
                     m["fmae"]["f1_constant_mean"], *(i[p].get("fmae", np.nan) for p in PROBES),
                     *(i[p].get("iat", np.nan) for p in PROBES))
    log.info("wrote %s, %s and %s", METRICS / "au.json", REPORT, PLOTS)

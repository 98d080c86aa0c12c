"""Stage ``evaluate``: the finetuned folds of every configured dataset, scored and analysed.

``fmae evaluate`` reads ``models/au/<variant>/<dataset>/fold<k>/`` (``fmae`` on ``finetune.folds``,
``iat`` on ``iat.folds``, ``random`` on ``finetune.random_folds``: metrics, predictions and
``history.json``), the probe stages' records (``metrics/probes/``, :mod:`.probe`) and the prepare
stage's frame index, and writes:

- ``metrics/au.json``: per dataset and variant the mean F1 over AUs and folds at the selected
  threshold (``f1_mean``) and at 0.5 (``f1_05_mean``), ROC-AUC, the all-positive predictor's F1,
  per AU (``bp4d.iat.au12.f1``) and per fold (``bp4d.iat.fold1.f1_mean``); IAT and random init
  against FMAE on the folds both ran (``bp4d.iat_minus_fmae_f1``); the three identity probes side by
  side (``bp4d.identity.<release|strong|unseen_sequences>.<pretrained|fmae|iat|random>``, each with
  its ``chance``; means over ``evaluate.probe_folds``); ``protocol`` and ``optimistic`` say how the
  epoch and threshold were chosen (``finetune.selection``).
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

from .. import paths, provenance, stage_code
from ..au.data import fold_parts
from ..au.folds import AUS
from ..au.labels import au_columns
from ..au.metrics import f1_per_au
from ..au.train import VARIANTS
from ..config import MissingInput, Params
from . import figures, report
from .probe import MODELS, PROTOCOLS, out_paths  # noqa: I001
from .probe import OUT as PROBES_DIR
from .probe import TSNE as TSNE_DIR
from .scores import score_fold, summarise

log = logging.getLogger(__name__)

DATA = paths.AU_CROPS
FINETUNED = paths.AU_MODELS
METRICS = paths.METRICS
PLOTS = paths.AU_PLOTS
TABLES = paths.AU_TABLES
REPORT = paths.AU_REPORT
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


def fold_runs(params: Params, dataset: str, variant: str, root: Path = FINETUNED) -> list[FoldRun]:
    """The finetuned folds of ``variant`` (its folds: :meth:`Params.variant_folds`)."""
    runs = []
    for fold in params.variant_folds(variant):
        folder = root / variant / dataset / f"fold{fold}"
        run = FoldRun(variant, dataset, fold, folder, {})
        need = [folder / n for n in ("metrics.json", "predictions.parquet", "history.json")]
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


def probe_results(params: Params, dataset: str, root: Path = PROBES_DIR, tsne_root: Path = TSNE_DIR):
    """The probe stage's records of every encoder: (identity metrics, release-probe curves per fold, t-SNE panels)."""
    records, panels = {}, {}
    for model in MODELS:
        path, tsne = out_paths(dataset, model, root, tsne_root)
        if not path.is_file() or not tsne.is_file():
            stage = f"probe_pretrained@{dataset}" if model == "pretrained" else f"probe@{dataset}-{model}"
            raise MissingInput(f"{path if not path.is_file() else tsne} missing: run `dvc repro {stage}` first")
        records[model] = json.loads(path.read_text())
        table = pd.read_parquet(tsne)
        panels[model] = (table[["x", "y"]].to_numpy(), table.subject.to_numpy())
    first = records["pretrained"]
    out = {"probe_folds": ",".join(map(str, params.evaluate.probe_folds))}
    for protocol in PROTOCOLS:
        subjects = first["subjects"][protocol]
        out[protocol] = {"chance": round(1 / subjects, 4), "subjects": subjects}
        for model, rec in records.items():
            if all(protocol in f for f in rec["folds"].values()):  # the release's probe runs on the encoders named
                out[protocol][model] = round(float(np.mean([f[protocol]["top1"] for f in rec["folds"].values()])), 4)
    released = {m: r for m, r in records.items() if m in out["release"]}
    out["release"]["epoch1"] = {m: round(float(np.mean([f["release"]["top1_epoch1"] for f in r["folds"].values()])), 4)
                                for m, r in released.items()}
    out["strong"]["lr"] = {m: next(iter(r["folds"].values()))["strong"]["lr"] for m, r in records.items()}
    curves = {m: _stack([np.asarray(f["release"]["curve"]) for f in r["folds"].values()]) for m, r in released.items()}
    return out, curves, panels


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
    identity, curves, panels = probe_results(params, dataset)
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
                     m["fmae"]["f1_constant_mean"], *(i[p].get("fmae", np.nan) for p in PROTOCOLS),
                     *(i[p].get("iat", np.nan) for p in PROTOCOLS))
    log.info("wrote %s, %s and %s", METRICS / "au.json", REPORT, PLOTS)

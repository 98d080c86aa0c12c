"""Stage ``finetune`` (``finetune@<dataset>-<fold>``, with IAT), ``finetune_fmae`` (the plain FMAE
baseline, no identity head) and ``finetune_random`` (the same from random weights: what pretraining
adds): one subject-exclusive fold per DVC matrix instance.

``fmae finetune --dataset bp4d --fold 1 [--variant fmae]``; N GPUs: ``torchrun --nproc-per-node N
-m pipeline finetune --dataset bp4d --fold 1``. Writes ``models/au/<variant>/<dataset>/fold<k>/``:
``checkpoint.pth`` (released container: ``model`` with ``fc_norm``/``head``/``ID_head``,
``epoch``, ``params``, and ``inference``: what ``fmae predict`` needs to apply it), ``predictions.parquet`` (test frames, labels and probabilities),
``metrics.json``, ``history.json`` and ``provenance.json``; dvclive logs in
``dvclive/finetune/<variant>/<dataset>-<fold>/``. While it runs, ``resume.pth`` beside them holds
the last finished epoch (not a DVC output, so a killed run's file survives the next ``dvc repro``,
which continues from it); it is removed once the outputs are written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import paths, provenance, stage_code
from ..config import ConfigError, Params, UserError
from ..models import checkpoint
from ..models.au_checkpoint import inference_record
from ..training.backbone import init_path
from .folds import AUS
from .labels import au_columns
from .metrics import auc_per_au, f1_per_au, mean_auc
from .train import Run, finetune

DATA = paths.AU_CROPS
OUT = paths.AU_MODELS
LIVE = paths.AU_LIVE
RESUME = "resume.pth"
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)


def check_inputs(params: Params, dataset: str, data_root: Path = DATA, need_init: bool = True) -> None:
    """The prepared crops and (unless ``need_init`` is false) the initial weights exist; a one-line
    :class:`UserError` otherwise."""
    index = data_root / dataset / "index.parquet"
    if not index.is_file():
        raise UserError(f"{index} missing: prepare the dataset first with `fmae prepare --dataset {dataset}` "
                        f"(or `dvc repro prepare@{dataset}`)")
    if not need_init:
        return
    init = init_path(params.finetune.init)
    if init == paths.PRETRAINED and not init.is_file():
        raise UserError(f"{paths.PRETRAINED} missing (finetune.init): run `dvc repro pretrain` first, "
                        "or set finetune.init to a released FMAE checkpoint")
    if not init.is_file():
        raise ConfigError("finetune.init", params.finetune.init, f"an existing checkpoint file ({paths.PRETRAINED}: the pretrain "
                          "stage's, or a released FMAE / FMAE-IAT file)")


def out_dir(run: Run, root: Path = OUT) -> Path:
    return root / run.variant / run.dataset / f"fold{run.fold}"


def run(params: Params, dataset: str | None = None, fold: int | None = None, variant: str = "iat",
        data_root: Path = DATA, out_root: Path = OUT, live_root: Path = LIVE) -> dict | None:
    if dataset is None or fold is None:
        raise ConfigError("--dataset/--fold", (dataset, fold), "both, e.g. fmae finetune --dataset bp4d --fold 1", "command line")
    check_inputs(params, dataset, data_root, need_init=variant != "random")  # before anything is written (dvclive's folder too)
    job = Run(dataset, fold, variant)
    is_main = int(os.environ.get("RANK", "0")) == 0
    live = None
    if is_main:
        from dvclive import Live

        live = Live(str(live_root / variant / job.name), save_dvc_exp=False, dvcyaml=None, report=None)
    try:
        result = finetune(params, job, data_root / dataset, live, resume=out_dir(job, out_root) / RESUME)
    finally:
        if live is not None:
            live.end()
    if not is_main:
        return None
    metrics = write_outputs(params, job, result, out_dir(job, out_root), _crop_boxes(data_root / dataset))
    (out_dir(job, out_root) / RESUME).unlink(missing_ok=True)
    return metrics


def _crop_boxes(data: Path) -> dict | None:
    """Where the training crops' boxes came from (``prepare``'s provenance): a box file or the detector."""
    record = data / "provenance.json"
    return json.loads(record.read_text()).get("faces") if record.is_file() else None


def write_outputs(params: Params, job: Run, result: dict, out: Path, faces: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    sel = result["selection"]
    probs, test = result["test_probs"], result["test_index"]
    cols = au_columns(job.dataset)
    labels = test[cols].to_numpy()
    f1_sel, f1_half = f1_per_au(labels, probs, sel["threshold"]), f1_per_au(labels, probs, 0.5)
    preds = test[["subject", "sequence", "frame", "subject_index", *cols]].reset_index(drop=True)
    for k, au in enumerate(AUS[job.dataset]):
        preds[f"prob_au{au}"] = probs[:, k].astype(np.float32)
    preds.to_parquet(out / "predictions.parquet", index=False)
    record = inference_record(params.model.name, params.model.img_size, job.dataset, sel["threshold"],
                              params.au.box_margin, params.au.crop_size, variant=job.variant, fold=job.fold,
                              faces=faces)
    checkpoint.save_atomic({"model": result["model"].state_dict(), "epoch": sel["epoch"] - 1, "params": params.to_dict(),
                            "selection": sel, "inference": record, "optimizer": None, "scaler": None},
                           out / "checkpoint.pth")
    auc = auc_per_au(labels, probs)
    # the names of metrics/au.json's per-fold entries (bp4d.iat.fold1.f1_mean, ...), so the two read alike
    metrics = {
        "protocol": sel["protocol"], "optimistic": sel["optimistic"], "lambda": result["lambda"],
        "epoch": sel["epoch"], "threshold": sel["threshold"],
        "f1_mean": float(f1_sel.mean()), "f1_05_mean": float(f1_half.mean()),
        "auc_mean": None if np.isnan(mean := mean_auc(auc)) else mean,
        **{f"au{au}": {"f1": float(a), "f1_05": float(b), "auc": None if np.isnan(c) else float(c)}
           for au, a, b, c in zip(AUS[job.dataset], f1_sel, f1_half, auc)},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps({"history": result["history"], "subjects": result["subjects"],
                                                  "init": {k: len(v) for k, v in result["init_report"].items()}},
                                                 indent=1) + "\n")
    provenance.write(out / "provenance.json", f"finetune@{job.name} ({job.variant})", params.to_dict(), CODE)
    return metrics

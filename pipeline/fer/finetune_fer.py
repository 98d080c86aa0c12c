"""Stage ``finetune_fer`` (``finetune_fer@<dataset>``): the FMAE encoder finetuned for expression recognition.

``fmae finetune_fer --dataset rafdb``; N GPUs: ``torchrun --nproc-per-node N -m pipeline finetune_fer
--dataset rafdb``. Writes ``models/fer/<dataset>/``: ``checkpoint.pth`` (``model`` with ``fc_norm`` and
``head``, ``epoch``, ``params``, ``selection`` and ``inference``: what ``fmae predict`` needs),
``predictions.parquet`` (test images, labels and class probabilities), ``metrics.json``,
``history.json`` and ``provenance.json``; dvclive logs in ``dvclive/fer/<dataset>/``. A killed run
resumes from ``resume.pth`` beside them, as the AU folds do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import paths, provenance, stage_code
from ..config import ConfigError, Params, UserError
from ..data.images import IMAGENET_MEAN, IMAGENET_STD
from ..models import checkpoint
from .metrics import scores
from .train import finetune

DATA = paths.FER_CROPS
OUT = paths.FER_MODELS
LIVE = paths.FER_LIVE
RESUME = "resume.pth"
FORMAT = "fmae-fer-classifier/1"
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)


def inference_record(params: Params, dataset: str, classes: list[str]) -> dict:
    """The ``inference`` entry of a FER checkpoint: the model, its input and the classes of its outputs."""
    return {"format": FORMAT, "task": "fer", "model": params.model.name, "img_size": params.model.img_size,
            "dataset": dataset, "classes": classes, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "box_margin": params.fer.box_margin, "crop_size": params.fer.crop_size}


def check_inputs(params: Params, dataset: str, data_root: Path = DATA) -> None:
    index = data_root / dataset / "index.parquet"
    if not index.is_file():
        raise UserError(f"{index} missing: prepare the dataset first with `fmae prepare_fer --dataset {dataset}` "
                        f"(or `dvc repro prepare_fer@{dataset}`)")
    if not Path(params.fer.init).is_file():
        raise ConfigError("fer.init", params.fer.init, "an existing checkpoint file (models/fmae/fmae.pth: the pretrain "
                          "stage's, or a released FMAE file); run `dvc repro pretrain` first")


def run(params: Params, dataset: str | None = None, data_root: Path = DATA, out_root: Path = OUT,
        live_root: Path = LIVE) -> dict | None:
    if dataset is None:
        raise ConfigError("--dataset", dataset, "a FER dataset, e.g. fmae finetune_fer --dataset rafdb", "command line")
    check_inputs(params, dataset, data_root)
    out = out_root / dataset
    live = None
    if int(os.environ.get("RANK", "0")) == 0:
        from dvclive import Live

        live = Live(str(live_root / dataset), save_dvc_exp=False, dvcyaml=None, report=None)
    try:
        result = finetune(params, dataset, data_root / dataset, live, resume=out / RESUME)
    finally:
        if live is not None:
            live.end()
    if result is None:
        return None
    metrics = write_outputs(params, dataset, result, out, json.loads((data_root / dataset / "classes.json").read_text()))
    (out / RESUME).unlink(missing_ok=True)
    return metrics


def write_outputs(params: Params, dataset: str, result: dict, out: Path, classes: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    sel, probs, test = result["selection"], result["test_probs"], result["test_index"]
    labels = test.label.to_numpy()
    preds = test[["image", "label", "class"]].copy()
    preds["predicted"] = [classes[k] for k in probs.argmax(1)]
    for k, name in enumerate(classes):
        preds[f"prob_{name}"] = probs[:, k].astype(np.float32)
    preds.to_parquet(out / "predictions.parquet", index=False)
    checkpoint.save_atomic({"model": result["model"].state_dict(), "epoch": sel["epoch"] - 1, "params": params.to_dict(),
                            "selection": sel, "inference": inference_record(params, dataset, classes),
                            "optimizer": None, "scaler": None}, out / "checkpoint.pth")
    s = scores(labels, probs)
    metrics = {"protocol": sel["protocol"], "optimistic": sel["optimistic"], "epoch": sel["epoch"],
               "accuracy": s["accuracy"], "mean_class_accuracy": s["mean_class_accuracy"],
               "majority_accuracy": s["majority_accuracy"], "test_images": int(len(labels)),
               **{name: {"f1": f, "accuracy": None if np.isnan(r) else r}  # None: the class is not in the test split
                  for name, f, r in zip(classes, s["f1_per_class"], s["recall_per_class"])}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    (out / "history.json").write_text(json.dumps({"history": result["history"], "images": result["images"],
                                                  "classes": classes, "confusion": s["confusion"],
                                                  "init": {k: len(v) for k, v in result["init_report"].items()}},
                                                 indent=1) + "\n")
    provenance.write(out / "provenance.json", f"finetune_fer@{dataset}", params.to_dict(), CODE)
    return metrics

"""Stage ``evaluate_fer``: the FER results of every dataset of ``fer.datasets`` side by side.

Writes ``metrics/fer.json`` (per dataset: test accuracy, mean per-class accuracy, the majority-class
floor, the selected epoch, per-class F1; flat keys for ``dvc metrics show/diff``), the DVC plots
``plots/fer/<dataset>_confusion.png`` (rows: true class, normalised; counts in the cells) and
``plots/fer/<dataset>_accuracy_per_epoch.png`` (the selection split's accuracy per epoch against the
majority floor), and ``reports/fer.md`` in the layout of the paper's Table 4 with the paper's FMAE
row beside this run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import paths, provenance, stage_code
from ..config import Params, UserError

MODELS = paths.FER_MODELS
METRICS = paths.FER_METRICS
PLOTS = paths.FER_PLOTS
REPORT = paths.FER_REPORT
NAMES = {"rafdb": "RAF-DB", "affectnet": "AffectNet", "custom": "labels.csv"}
PAPER = {"rafdb": 93.45, "affectnet": 64.79}  # FMAE (ViT-L), Table 4 of arXiv 2407.11243, accuracy %
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)


def collect(params: Params, models: Path = MODELS) -> dict[str, dict]:
    out = {}
    for name in params.fer.datasets:
        folder = models / name
        if not (folder / "metrics.json").is_file():
            raise UserError(f"{folder / 'metrics.json'} missing: run `dvc repro finetune_fer@{name}` first")
        out[name] = {"metrics": json.loads((folder / "metrics.json").read_text()),
                     **json.loads((folder / "history.json").read_text())}
    return out


def flat_metrics(results: dict[str, dict]) -> dict:
    out = {}
    for name, r in results.items():
        m = r["metrics"]
        out[name] = {k: m[k] for k in ("accuracy", "mean_class_accuracy", "majority_accuracy", "epoch", "test_images")}
        out[name]["over_majority"] = m["accuracy"] - m["majority_accuracy"]
        out[name]["f1"] = {c: m[c]["f1"] for c in r["classes"]}
        out["protocol"], out["optimistic"] = m["protocol"], m["optimistic"]
    return out


def plot_confusion(name: str, classes: list[str], cm: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.0 * len(classes) + 1.5), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{share[i, j]:.0%}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title=f"{NAMES[name]}: test confusion (row-normalised, counts in brackets)")
    ax.set_xticklabels(classes, rotation=40, ha="right")
    ax.set_yticklabels(classes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_accuracy(name: str, history: list[dict], floor: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = "val" if "val_accuracy" in history[0] else "test"
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(epochs, [r[f"{split}_accuracy"] for r in history], marker="o", label=f"accuracy ({split} split)")
    ax.plot(epochs, [r[f"{split}_mean_class_accuracy"] for r in history], marker=".", label="mean per-class accuracy")
    ax.axhline(floor, color="grey", linestyle=":", label="majority class (test)")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title=f"{NAMES[name]}: accuracy per finetuning epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(params: Params, results: dict[str, dict]) -> str:
    synthetic = [n for n in results if Path(params.fer.dataset(n).root).resolve().is_relative_to(
        Path(params.synth.out_dir).resolve())]
    protocol = next(iter(results.values()))["metrics"]["protocol"]
    lines = ["# Facial expression recognition: evaluation", "",
             f"Selection protocol: **{protocol}**" + (" (epoch chosen on a held-out part of the training images; the "
                                                      "test split was scored once)." if protocol == "validation" else
                                                      " (epoch chosen on the test split: optimistic, as the released code)."),
             f"Backbone `{params.model.name}` at {params.model.img_size} px from `{params.fer.init}`; cross-entropy with "
             f"label smoothing {params.fer.label_smoothing}{', class-balanced sampling' if params.fer.balanced else ''}.", ""]
    if synthetic:
        lines += [f"**{', '.join(NAMES[n] for n in synthetic)}: synthetic data rendered by `fmae synthesize`, not the real "
                  "dataset; not comparable with the paper's numbers.**", ""]
    cols = list(results)
    lines += ["## Accuracy % (layout of the paper's Table 4)", "",
              "| Method | " + " | ".join(NAMES[c] + ("-" + str(params.fer.affectnet.classes) if c == "affectnet" else "")
                                       for c in cols) + " |", "|---|" + "---|" * len(cols)]
    lines.append("| FMAE (paper, ViT-L) | " + " | ".join(f"{PAPER[c]:.2f}" if c in PAPER else "—" for c in cols) + " |")
    lines.append(f"| FMAE (this run, {protocol} selection) | "
                 + " | ".join(f"{100 * results[c]['metrics']['accuracy']:.2f}" for c in cols) + " |")
    lines.append("| Mean per-class accuracy (this run) | "
                 + " | ".join(f"{100 * results[c]['metrics']['mean_class_accuracy']:.2f}" for c in cols) + " |")
    lines.append("| Majority class (this run's test split) | "
                 + " | ".join(f"{100 * results[c]['metrics']['majority_accuracy']:.2f}" for c in cols) + " |")
    lines += ["", "The paper's row is its published accuracy on the real datasets (Ning, Salah, Onal Ertugrul, "
              "arXiv 2407.11243, Table 4); only FMAE's row is transcribed.", ""]
    for name, r in results.items():
        m = r["metrics"]
        lines += [f"## {NAMES[name]}: per class (test split, {m['test_images']} images, epoch {m['epoch']})", "",
                  "| Class | " + " | ".join(r["classes"]) + " |", "|---|" + "---|" * len(r["classes"]),
                  "| F1 % | " + " | ".join(f"{100 * m[c]['f1']:.1f}" for c in r["classes"]) + " |",
                  "| Accuracy % | " + " | ".join("—" if m[c]["accuracy"] is None else f"{100 * m[c]['accuracy']:.1f}"
                                                for c in r["classes"]) + " |", ""]
        gap = 100 * (m["accuracy"] - m["majority_accuracy"])
        verdict = (f"beats the majority-class predictor by {gap:.1f} points" if gap > 0.05 else
                   "does not beat the majority-class predictor: it has not learnt the expressions, so its accuracy says "
                   "nothing about the method")
        lines += [f"- Accuracy {100 * m['accuracy']:.1f}%, which {verdict} ({100 * m['majority_accuracy']:.1f}%).", "",
                  f"![confusion](../plots/fer/{name}_confusion.png)", f"![accuracy](../plots/fer/{name}_accuracy_per_epoch.png)", ""]
    return "\n".join(lines) + "\n"


def run(params: Params, models: Path = MODELS, metrics_path: Path = METRICS, plots: Path = PLOTS,
        report_path: Path = REPORT) -> dict:
    results = collect(params, models)
    plots.mkdir(parents=True, exist_ok=True)
    for name, r in results.items():
        plot_confusion(name, r["classes"], np.array(r["confusion"]), plots / f"{name}_confusion.png")
        plot_accuracy(name, r["history"], r["metrics"]["majority_accuracy"], plots / f"{name}_accuracy_per_epoch.png")
    flat = flat_metrics(results)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(flat, indent=2) + "\n")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report(params, results))
    provenance.write(report_path.with_suffix(".provenance.json"), "evaluate_fer", params.to_dict(), CODE)
    for name in results:
        m = flat[name]
        print(f"evaluate_fer: {NAMES[name]}: test accuracy {100 * m['accuracy']:.1f}% (mean per class "
              f"{100 * m['mean_class_accuracy']:.1f}%, majority class {100 * m['majority_accuracy']:.1f}%)")
    return flat

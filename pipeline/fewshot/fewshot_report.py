"""Stage ``fewshot_report``: the few-shot comparison of the encoders, from each ``fewshot@<encoder>-<fold>``.

Writes ``metrics/fewshot.json`` (per encoder and budget: test AUC and F1 of the linear probe and of
the short finetune, means over ``fewshot.folds``), ``plots/fewshot/auc_by_subjects.png`` (test AUC
against labelled training subjects, one colour per encoder; solid: finetune, dashed: linear probe) and
``reports/fewshot.md`` (the same as a table, with the budgets' subjects and the protocol).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import paths
from ..config import MissingInput, Params
from .budgets import ALL

DATA = paths.FEWSHOT
METRICS = paths.FEWSHOT_METRICS
PLOT = paths.FEWSHOT_PLOT
REPORT = paths.FEWSHOT_REPORT
HOWS = ("probe", "finetune")
IDENTITY = "identity_probe"  # beside the budgets in each encoder's entry


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def gather(params: Params, root: Path = DATA) -> dict:
    """``{encoder: {budget: {"subjects": mean count, "probe": {auc, f1}, "finetune": {auc, f1}}, IDENTITY: {top1,
    chance}}}``, fold means."""
    out: dict = {}
    for encoder in params.fewshot.encoders:
        runs = []
        for fold in params.fewshot.folds:
            path = root / encoder / f"fold{fold}" / "metrics.json"
            if not path.is_file():
                raise MissingInput(f"{path} missing: run `dvc repro fewshot@{encoder}-{fold}` first")
            runs.append(json.loads(path.read_text()))
        budgets = runs[0]["budgets"]
        out[encoder] = {
            budget: {"subjects": _mean([len(r["budgets"][budget]["subjects"]) for r in runs]),
                     **{how: {m: _mean([r["budgets"][budget][how][m] for r in runs]) for m in ("auc", "f1")} for how in HOWS}}
            for budget in budgets}
        out[encoder][IDENTITY] = {m: _mean([r["identity_probe"][m] for r in runs]) for m in ("top1", "chance")}
    return out


def budget_rows(rows: dict) -> dict:
    """An encoder's entry without its identity probe: budget -> scores."""
    return {b: v for b, v in rows.items() if b != IDENTITY}


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for k, (encoder, rows) in enumerate(table.items()):
        rows = budget_rows(rows)
        xs = [rows[b]["subjects"] for b in rows]
        for how, style in zip(HOWS, ("--", "-")):
            ys = [rows[b][how]["auc"] for b in rows]
            ax.plot(xs, [np.nan if v is None else 100 * v for v in ys], style, marker="o", color=f"C{k}",
                    label=f"{encoder} ({'linear probe' if how == 'probe' else 'finetune'})")
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    first = budget_rows(next(iter(table.values())))  # ticks at the budgets themselves, not at powers of ten
    ax.set_xticks([first[b]["subjects"] for b in first],
                  [f"all ({first[b]['subjects']:g})" if b == ALL else f"{first[b]['subjects']:g}" for b in first])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("labelled training subjects (log scale)")
    ax.set_ylabel("test AUC (%), unseen subjects")
    ax.set_title("Few-shot AU detection by initial encoder")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def report(table: dict, params: Params) -> str:
    first = budget_rows(next(iter(table.values())))
    budgets = list(first)
    head = " | ".join(f"{b if b != ALL else 'all'} ({first[b]['subjects']:g})" for b in budgets)
    lines = ["# Few-shot AU detection (BP4D)", "",
             f"Test AUC / F1 (%) on each fold's unseen test subjects, mean over folds {list(params.fewshot.folds)}, by "
             "labelled training subjects (budget, and the mean count). Probe: a linear probe on the frozen encoder; "
             f"finetune: {params.fewshot.finetune_epochs} epochs of the AU finetuning recipe. Epoch, lr and F1 threshold "
             "are chosen on the fold's validation subjects (the `validation` protocol). Budgets are this project's choice "
             "(Bulat et al.'s are not public); every encoder sees the same subjects.", "",
             f"| Encoder | Protocol | {head} |", "|---|---|" + "---|" * len(budgets)]
    for encoder, rows in table.items():
        for how in HOWS:
            cells = " | ".join("-" if rows[b][how]["auc"] is None else
                               f"{100 * rows[b][how]['auc']:.1f} / {100 * rows[b][how]['f1']:.1f}" for b in budgets)
            lines.append(f"| {encoder} | {'linear probe' if how == 'probe' else 'finetune'} | {cells} |")
    leak = {e: rows[IDENTITY] for e, rows in table.items() if rows.get(IDENTITY, {}).get("top1") is not None}
    if leak:
        lines += ["", "Identity leakage of each frozen encoder before any finetuning: top-1 (%) of a linear probe "
                  "(evaluate's strong probe) naming the subject of frames from sequences it did not train on, every "
                  "subject of the fold; lower is more person-independent.", "",
                  "| Encoder | Identity top-1 | Chance |", "|---|---|---|"]
        lines += [f"| {e} | {100 * v['top1']:.1f} | {100 * v['chance']:.1f} |" for e, v in leak.items()]
    return "\n".join(lines) + "\n"


def run(params: Params, data_root: Path = DATA, metrics_path: Path = METRICS, plot_path: Path = PLOT,
        report_path: Path = REPORT) -> dict:
    table = gather(params, data_root)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps({"bp4d": table}, indent=1) + "\n")
    plot(table, plot_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report(table, params))
    print(f"fewshot_report: {metrics_path}, {plot_path}, {report_path}")
    return table

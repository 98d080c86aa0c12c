"""``fmae results``: the paper-style comparison of the workspace, HEAD and every experiment.

One row per experiment from DVC's own record (:func:`dvc.api.exp_show`): the knobs the paper
varies (``iat.lambda``, identity-head depth and loss, seed, selection protocol) and, per dataset,
test F1 of FMAE and FMAE-IAT at their selected thresholds, their difference, the all-positive
floor, mean ROC-AUC, the random-init baseline, and a second table of the three identity probes
(pretrained, FMAE, FMAE-IAT, random init, chance). Percentages, as the paper prints them. Metric
keys are the flat ones of ``metrics/au.json``; a value an experiment lacks prints as ``-``.
"""

from __future__ import annotations

import math
from typing import Any

from .config import UserError

KNOBS = [("lambda", "iat.lambda"), ("schedule", "iat.schedule"), ("head", "iat.id_head_layers"),
         ("id loss", "iat.id_loss"), ("augment", "finetune.augment"), ("seed", "finetune.seed"),
         ("selection", "finetune.selection")]
FIGURES = [("F1 FMAE", "{d}.fmae.f1_mean"), ("F1 IAT", "{d}.iat.f1_mean"), ("F1 random", "{d}.random.f1_mean"),
           ("IAT-FMAE", "{d}.iat_minus_fmae_f1"), ("floor", "{d}.fmae.f1_constant_mean"), ("AUC FMAE", "{d}.fmae.auc_mean"),
           ("AUC IAT", "{d}.iat.auc_mean"), ("AUC random", "{d}.random.auc_mean"),
           ("IAT epoch, fold 1", "{d}.iat.fold1.epoch")]  # the epoch validation selected (a count, not a %)
# the identity probes (metrics/au.json: <dataset>.identity.<protocol>.<model>): (a) the release's, (b) strong, (c) unseen sequences
PROBES = [(f"{tag} {model}", f"{{d}}.identity.{protocol}.{model}") for tag, protocol in
          (("a", "release"), ("b", "strong"), ("c", "unseen_sequences"))
          for model in ("pretrained", "fmae", "iat", "random", "chance")]
DATASETS = ("bp4d", "bp4dplus", "disfa")


def value(row: dict[str, Any], key: str) -> Any:
    """``key`` of an exp_show row, whether DVC printed it bare or prefixed with its file (``path:key``)."""
    if key in row:
        return row[key]
    hits = [v for k, v in row.items() if k.endswith(f":{key}")]
    return hits[0] if hits else None


def _cell(v: Any, percent: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        text = f"{100 * v:.1f}" if percent else f"{v:g}"
        return "0.0" if text == "-0.0" else text
    return str(v)


def table(rows: list[dict[str, Any]], dataset: str, figures: list[tuple[str, str]] = FIGURES) -> str:
    """The Markdown table of one dataset's ``figures`` over the exp_show ``rows``."""
    head = ["experiment", *(name for name, _ in KNOBS), *(name for name, _ in figures)]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for r in rows:
        name = r.get("Experiment") or r.get("rev") or "?"
        if r.get("typ") == "baseline" and r.get("rev") not in ("workspace", None):
            name = f"{r['rev']} (commit)"
        cells = [name, *(_cell(value(r, key), False) for _, key in KNOBS),
                 *(_cell(value(r, key.format(d=dataset)), not key.endswith(".epoch")) for _, key in figures)]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def run(params=None, dataset: str | None = None) -> None:
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        rows = dvc.api.exp_show()
    except DvcException as err:
        raise UserError(f"cannot read the experiments: {err} (run `fmae results` inside the project)") from None
    rows = [r for r in rows if r.get("State") in (None, "Success")]  # queued, running and failed ones have no results
    datasets = [dataset] if dataset else [d for d in DATASETS if any(value(r, f"{d}.iat.f1_mean") is not None for r in rows)]
    if not datasets:
        raise UserError("no evaluated experiment: `dvc repro` (or `dvc exp run`) the pipeline first")
    for d in datasets:
        print(f"## {d}: test F1 and AUC (%, mean over each variant's folds)\n")
        print(table(rows, d))
        print(f"\n## {d}: identity probes, top-1 (%): (a) the release's, (b) strong, (c) unseen sequences; chance per protocol\n")
        print(table(rows, d, PROBES))
        print()

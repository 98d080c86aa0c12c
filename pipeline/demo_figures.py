"""The README's figures of the embedded demo, rendered from the metrics files that hold them.

``fmae results --readme`` prints this block from the workspace's metrics (after ``make demo``); the
README carries it between ``<!-- demo-figures -->`` markers and ``tests/test_readme.py`` checks that it
equals the block rendered from the committed metrics, so no figure in the README is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import paths
from .config import Params

BEGIN, END = "<!-- demo-figures -->", "<!-- /demo-figures -->"
PROTOCOLS = {"release": "(a) the release's protocol (max over {epochs} epochs)", "strong": "(b) strong, random frames",
             "unseen_sequences": "(c) strong, unseen sequences"}
MODELS = {"pretrained": "pretrained", "fmae": "FMAE", "iat": "FMAE-IAT", "random": "random init"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _folds(m: dict) -> list[str]:
    return sorted(k for k in m if k.startswith("fold") and k[4:].isdigit())


def render(au: dict[str, Any], pretrain: dict[str, Any], fer: dict[str, Any], params: Params, dataset: str = "bp4d") -> str:
    """The Markdown block: test AUC and F1 per variant, the identity probes, MAE loss, FER accuracy."""
    m = au[dataset]
    names = {"fmae": "FMAE", "iat": f"FMAE-IAT, lambda {params.iat.lambda_:g}, {params.iat.schedule}",
             "random": "random init"}
    lines = ["| variant (folds) | test AUC | test F1 (validation-chosen threshold) | all-positive F1 | F1 over the floor "
             "| selected epoch(s) |", "|---|---|---|---|---|---|"]
    for v, name in names.items():
        folds = _folds(m[v])
        per_fold = f" ({' / '.join(_pct(m[v][f]['auc_mean']) for f in folds)})" if len(folds) > 1 else ""
        over = round(100 * m[v]["f1_mean"], 1) - round(100 * m[v]["f1_constant_mean"], 1)
        lines.append(f"| {name} ({', '.join(f[4:] for f in folds)}) | {_pct(m[v]['auc_mean'])}{per_fold} | "
                     f"{_pct(m[v]['f1_mean'])} | {_pct(m[v]['f1_constant_mean'])} | {over:+.1f} | "
                     f"{', '.join(str(m[v][f]['epoch']) for f in folds)} |")
    i = m["identity"]
    lines += ["", f"| identity probe, top-1 % (fold-{i['probe_folds']} models) | "
              + " | ".join(MODELS.values()) + " | chance |", "|---|---|---|---|---|---|"]
    for p, label in PROTOCOLS.items():
        cells = [_pct(i[p].get(model)) for model in MODELS]
        lines.append(f"| {label.format(epochs=params.evaluate.release_probe.epochs)} | {' | '.join(cells)} | "
                     f"{_pct(i[p]['chance'])} |")
    mae = pretrain["pretrain"]
    lines += ["", f"MAE: loss {mae['loss']:.3f} against the trivial {mae['trivial_loss']:.3f} after "
              f"{params.pretrain.epochs} epochs (`metrics/pretrain.json`)."]
    lines += [f"FER {name}: test accuracy {_pct(r['accuracy'])} against the majority class {_pct(r['majority_accuracy'])} "
              f"(epoch {r['epoch']} selected, {r['test_images']} test images)."
              for name, r in fer.items() if isinstance(r, dict) and "accuracy" in r]
    return "\n".join([BEGIN, *lines, END])


def from_files(root: Path = Path("."), params: Params | None = None) -> str:
    """:func:`render` of the metrics files under ``root`` (the workspace by default)."""
    from .config import UserError, load_params

    files = (paths.METRICS / "au.json", paths.PRETRAIN_METRICS, paths.FER_METRICS)
    if missing := [str(p) for p in files if not (root / p).is_file()]:
        raise UserError(f"{', '.join(missing)} missing: run the pipeline first (`make demo` or `dvc repro`)")
    au, mae, fer = (json.loads((root / p).read_text()) for p in files)
    return render(au, mae, fer, params or load_params(root / "params.yaml"))

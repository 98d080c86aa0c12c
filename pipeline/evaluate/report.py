"""``reports/au.md``: the evaluation as the paper lays it out (Tables 1-3: methods x AUs, F1 in %),
with the paper's published figures beside this run's, and the identity analysis of Section 5.
Every sentence that compares numbers is derived from them, whichever way they come out."""

from __future__ import annotations

from pathlib import Path

from ..au.folds import AUS
from ..au.train import VARIANTS
from ..config import Params
from . import paper

NAMES = {"bp4d": "BP4D", "bp4dplus": "BP4D+", "disfa": "DISFA"}
TABLE = {"bp4d": "Table 1", "bp4dplus": "Table 2", "disfa": "Table 3"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _row(name: str, cells: list[str]) -> str:
    return "| " + " | ".join([name, *cells]) + " |"


def _is_synthetic(params: Params, dataset: str) -> bool:
    root = Path(getattr(params.au, dataset).root).resolve()
    return Path(params.synth.out_dir).resolve() in (root, *root.parents)


LABELS = {"fmae": "FMAE", "iat": "FMAE-IAT", "random": "Random init"}
MODELS = {"pretrained": "FMAE pretrained (before finetuning)", "fmae": "FMAE finetuned", "iat": "FMAE-IAT finetuned",
          "random": "Random init, finetuned"}
PROBES = {"release": "(a) release's probe: 70/30 random frames, augmented, max over epochs",
          "strong": "(b) strong probe: same frames, lr chosen on training frames, to convergence",
          "unseen_sequences": "(c) strong probe on unseen sequences (train on some tasks, test on the others)"}


def _folds(m: dict) -> str:
    return ", ".join(k[4:] for k in m if k.startswith("fold") and k[4:].isdigit())


def au_table(params: Params, dataset: str, m: dict, protocol: str) -> list[str]:
    aus = AUS[dataset]
    head = _row("Method", [f"AU{a}" for a in aus] + ["Avg."])
    lines = [head, "|" + "---|" * (len(aus) + 2)]
    for v in ("fmae", "iat"):
        lines.append(_row(f"{LABELS[v]} (paper, ViT-L, test-fold selection)", ["—"] * len(aus) + [f"{paper.F1_MEAN[dataset][v]:.1f}"]))
    tag = "optimistic: test-fold selection" if protocol != "validation" else "validation selection"
    for v in VARIANTS:
        lines.append(_row(f"{LABELS[v]} (this run, folds {_folds(m[v])}, {tag})",
                          [_pct(m[v][f"au{a}"]["f1"]) for a in aus] + [_pct(m[v]["f1_mean"])]))
    for v in VARIANTS:
        lines.append(_row(f"{LABELS[v]} (this run, threshold 0.5)", [_pct(m[v][f"au{a}"]["f1_05"]) for a in aus]
                          + [_pct(m[v]["f1_05_mean"])]))
    lines.append(_row(f"All-positive predictor (folds {_folds(m['fmae'])})", ["—"] * len(aus) + [_pct(m["fmae"]["f1_constant_mean"])]))
    return lines


def fold_table(m: dict) -> list[str]:
    folds = sorted({k for v in VARIANTS for k in m[v] if k.startswith("fold") and k[4:].isdigit()})
    lines = [_row("Variant", [f"{f}: F1 / F1@0.5 / AUC (epoch, threshold)" for f in folds]),
             "|" + "---|" * (len(folds) + 1)]
    for v in VARIANTS:
        cells = [f"{_pct(m[v][f]['f1_mean'])} / {_pct(m[v][f]['f1_05_mean'])} / {_pct(m[v][f]['auc_mean'])} "
                 f"({m[v][f]['epoch']}, {m[v][f]['threshold']:.2f})" if f in m[v] else "—" for f in folds]
        lines.append(_row(LABELS[v], cells))
    return lines


def identity_table(i: dict) -> list[str]:
    """Models x probe protocols, top-1 %, with each protocol's chance and the paper's figures (protocol a)."""
    lines = [_row("Backbone", [*PROBES.values(), "paper (protocol a, BP4D, 41 subjects)"]), "|---|---|---|---|---|"]
    paper_col = {"pretrained": "—", "random": "—", "fmae": f"{paper.PROBE_TOP1['fmae']:.1f}",
                 "iat": f"{paper.PROBE_TOP1['iat']:.1f} ({paper.PROBE_TOP1['iat_epoch1']:.1f} after 1 epoch)"}
    for name, label in MODELS.items():
        if any(name in i[p] for p in PROBES):
            cells = [_pct(i[p].get(name)) + (f" ({_pct(i['release']['epoch1'][name])} after 1 epoch)"
                                             if p == "release" and name in i["release"] else "") for p in PROBES]
            lines.append(_row(label, [*cells, paper_col[name]]))
    lines.append(_row("Chance (1 / subjects)", [f"{_pct(i[p]['chance'])} ({i[p]['subjects']} subjects)" for p in PROBES]
                      + [f"{paper.PROBE_TOP1['chance']:.1f}"]))
    return lines


def _change(delta: float, what: str) -> str:
    """'raised it by 2.0 points' / 'lowered ...' / 'did not change it' when the change rounds to 0.0."""
    points = round(100 * abs(delta), 1)
    if points == 0:
        return f"did not change {what} (difference < 0.05 points)"
    return f"{'raised' if delta > 0 else 'lowered'} {what} by {points:.1f} points"


def findings(m: dict) -> list[str]:
    """Plain statements of what the numbers say on this run, whichever way they come out."""
    floor = m["fmae"]["f1_constant_mean"]
    out = ["- Test F1 (mean over AUs and each variant's folds): " + ", ".join(
        f"{LABELS[v]} {_pct(m[v]['f1_mean'])} (AUC {_pct(m[v]['auc_mean'])}, folds {_folds(m[v])})" for v in VARIANTS)
        + f"; all-positive predictor {_pct(floor)}."]
    for v, what in (("iat", "IAT"), ("random", "Starting from random weights instead of the pretrained encoder")):
        if m.get(f"{v}_minus_fmae_f1") is not None:
            out.append(f"- On the folds both ran ({m[f'{v}_minus_fmae_folds']}), {what} {_change(m[f'{v}_minus_fmae_f1'], 'test F1')}.")
    for v in VARIANTS:
        if m[v]["f1_mean"] <= m[v]["f1_constant_mean"] + 0.005:
            out.append(f"- {LABELS[v]} does not beat the all-positive predictor ({_pct(m[v]['f1_constant_mean'])}): it has "
                       "not learnt to detect AUs on these data, so its F1 says nothing about the method.")
    i = m["identity"]
    for p, label in PROBES.items():
        if "fmae" in i[p] and "iat" in i[p]:
            out.append(f"- {label.split(':')[0]}: {_pct(i[p]['fmae'])}% on FMAE features, {_pct(i[p]['iat'])}% on FMAE-IAT "
                       f"features (chance {_pct(i[p]['chance'])}%): IAT {_change(i[p]['iat'] - i[p]['fmae'], 'what this probe finds')}.")
    return out


def render(params: Params, au: dict, figs: dict, code_sha: str) -> str:
    protocol = au["protocol"]
    lines = ["# AU detection: evaluation", "",
             f"Selection protocol: **{protocol}**"
             + (" — epoch and threshold were chosen on the test fold, as the released code does: **optimistic**."
                if au["optimistic"] else " — epoch and global threshold chosen on held-out training subjects; "
                "each test fold was scored once."),
             f"Folds: FMAE {', '.join(map(str, params.finetune.folds))}, FMAE-IAT {', '.join(map(str, params.iat.folds))}, "
             f"random init {', '.join(map(str, params.finetune.random_folds))}; backbone `{params.model.name}` at "
             f"{params.model.img_size} px; augmentation {params.finetune.augment}; IAT lambda {params.iat.lambda_} "
             f"({params.iat.schedule}), ID head {params.iat.id_head_layers} layer(s), ID loss {params.iat.id_loss}. Evaluation code sha256 `{code_sha[:12]}`; `dvc.lock` names the commit.",
             "", f"The paper's rows are its published figures ({paper.SOURCE}) on the real datasets with ViT-L; "
             "only their averages are transcribed here.", ""]
    for dataset in params.finetune.datasets:
        m, f = au[dataset], figs[dataset]
        i = m["identity"]
        name = NAMES.get(dataset, dataset)
        lines += [f"## {name} (layout of the paper's {TABLE.get(dataset, 'tables')}), F1 %", ""]
        if _is_synthetic(params, dataset):
            lines += [f"**These are the embedded demo's numbers: a synthetic {name} rendered by `fmae synthesize`, "
                      "not the real dataset. They test the pipeline, not the method; do not compare them with the "
                      "paper's.**", ""]
        lines += au_table(params, dataset, m, protocol) + ["", "Per fold (F1 at the selected threshold / F1 at 0.5 / "
                                                           "ROC-AUC, %):", ""] + fold_table(m)
        lines += ["", f"### Identity information in the features (top-1 %, models of fold {i['probe_folds']})", "",
                  "Protocol (a) repeats the released code's probe so that the paper's figures can be compared; it reports "
                  "the best epoch on its own test frames. (b) and (c) choose everything on training frames.", ""]
        lines += identity_table(i)
        lines += ["", "### What the numbers say", ""] + findings(m) + [""]
        lines += [f"![{k}](../{p.as_posix()})" for k, p in f.items()] + [""]
    return "\n".join(lines)

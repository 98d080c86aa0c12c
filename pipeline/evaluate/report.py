"""``reports/au.md``: the evaluation as the paper lays it out (Tables 1-3: methods x AUs, F1 in %),
with the paper's published figures beside this run's, and the identity analysis of Section 5.
Every sentence that compares numbers is derived from them, whichever way they come out."""

from __future__ import annotations

from pathlib import Path

from ..au.folds import AUS
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


def au_table(params: Params, dataset: str, m: dict, protocol: str) -> list[str]:
    aus = AUS[dataset]
    head = _row("Method", [f"AU{a}" for a in aus] + ["Avg."])
    lines = [head, "|" + "---|" * (len(aus) + 2)]
    for v, label in (("fmae", "FMAE"), ("iat", "FMAE-IAT")):
        lines.append(_row(f"{label} (paper, ViT-L, test-fold selection)", ["—"] * len(aus) + [f"{paper.F1_MEAN[dataset][v]:.1f}"]))
    tag = "optimistic: test-fold selection" if protocol != "validation" else "validation selection"
    for v, label in (("fmae", "FMAE"), ("iat", "FMAE-IAT")):
        lines.append(_row(f"{label} (this run, {tag})", [_pct(m[v][f"au{a}"]["f1"]) for a in aus] + [_pct(m[v]["f1_mean"])]))
    for v, label in (("fmae", "FMAE"), ("iat", "FMAE-IAT")):
        lines.append(_row(f"{label} (this run, threshold 0.5)", [_pct(m[v][f"au{a}"]["f1_05"]) for a in aus]
                          + [_pct(m[v]["f1_05_mean"])]))
    lines.append(_row("All-positive predictor (this run's test folds)", ["—"] * len(aus) + [_pct(m["iat"]["f1_constant_mean"])]))
    return lines


def fold_table(m: dict) -> list[str]:
    folds = sorted(k for k in m["iat"] if k.startswith("fold") and k[4:].isdigit())
    lines = [_row("Variant", [f"{f}: F1 / F1@0.5 / AUC (epoch, threshold)" for f in folds]),
             "|" + "---|" * (len(folds) + 1)]
    for v, label in (("fmae", "FMAE"), ("iat", "FMAE-IAT")):
        cells = [f"{_pct(m[v][f]['f1_mean'])} / {_pct(m[v][f]['f1_05_mean'])} / {_pct(m[v][f]['auc_mean'])} "
                 f"({m[v][f]['epoch']}, {m[v][f]['threshold']:.2f})" for f in folds]
        lines.append(_row(label, cells))
    return lines


def identity_table(i: dict) -> list[str]:
    lines = [_row("Backbone", ["top-1 after 1 probe epoch", "top-1 after the last", "paper (BP4D, 41 subjects)"]),
             "|---|---|---|---|"]
    paper_col = {"pretrained": "—", "fmae": f"{paper.PROBE_TOP1['fmae']:.1f}",
                 "iat": f"{paper.PROBE_TOP1['iat']:.1f} ({paper.PROBE_TOP1['iat_epoch1']:.1f} after 1 epoch)"}
    for name, label in (("pretrained", "FMAE pretrained"), ("fmae", "FMAE finetuned"), ("iat", "FMAE-IAT finetuned")):
        if name in i:
            lines.append(_row(label, [_pct(i[name]["top1_epoch1"]), _pct(i[name]["top1"]), paper_col[name]]))
    lines.append(_row("Chance", [_pct(i["chance"]), _pct(i["chance"]), f"{paper.PROBE_TOP1['chance']:.1f}"]))
    return lines


def _change(delta: float, what: str) -> str:
    """'raised it by 2.0 points' / 'lowered ...' / 'did not change it' when the change rounds to 0.0."""
    points = round(100 * abs(delta), 1)
    if points == 0:
        return f"did not change {what} (difference < 0.05 points)"
    return f"{'raised' if delta > 0 else 'lowered'} {what} by {points:.1f} points"


def findings(m: dict, i: dict) -> list[str]:
    """Plain statements of what the numbers say about IAT on this run."""
    d_f1 = m["iat"]["f1_mean"] - m["fmae"]["f1_mean"]
    floor = m["iat"]["f1_constant_mean"]
    out = [f"- Test F1 (mean over AUs and folds): FMAE {_pct(m['fmae']['f1_mean'])}, FMAE-IAT {_pct(m['iat']['f1_mean'])}: "
           f"IAT {_change(d_f1, 'it')}."]
    for v, label in (("fmae", "FMAE"), ("iat", "FMAE-IAT")):
        if m[v]["f1_mean"] <= floor + 0.005:
            out.append(f"- {label} does not beat the all-positive predictor ({_pct(floor)}): it has not learnt to "
                       "detect AUs on these data, so its F1 says nothing about the method.")
    if "fmae" in i and "iat" in i:
        d_id = i["iat"]["top1"] - i["fmae"]["top1"]
        out.append(f"- Identity probe: {_pct(i['fmae']['top1'])}% on FMAE features, {_pct(i['iat']['top1'])}% on FMAE-IAT "
                   f"features (chance {_pct(i['chance'])}%): IAT {_change(d_id, 'the identity information a linear probe finds')}.")
    return out


def render(params: Params, au: dict, identity: dict, figs: dict, code_sha: str) -> str:
    protocol = au["protocol"]
    lines = ["# AU detection: evaluation", "",
             f"Selection protocol: **{protocol}**"
             + (" — epoch and threshold were chosen on the test fold, as the released code does: **optimistic**."
                if au["optimistic"] else " — epoch and global threshold chosen on held-out training subjects; "
                "each test fold was scored once."),
             f"Folds: {', '.join(map(str, params.finetune.folds))}; backbone `{params.model.name}` at "
             f"{params.model.img_size} px; IAT lambda {params.iat.lambda_}, ID head {params.iat.id_head_layers} layer(s), "
             f"ID loss {params.iat.id_loss}. Evaluation code sha256 `{code_sha[:12]}`; `dvc.lock` names the commit.",
             "", f"The paper's rows are its published figures ({paper.SOURCE}) on the real datasets with ViT-L; "
             "only their averages are transcribed here.", ""]
    for dataset in params.finetune.datasets:
        m, i, f = au[dataset], identity[dataset], figs[dataset]
        name = NAMES.get(dataset, dataset)
        lines += [f"## {name} (layout of the paper's {TABLE.get(dataset, 'tables')}), F1 %", ""]
        if _is_synthetic(params, dataset):
            lines += [f"**These are the embedded demo's numbers: a synthetic {name} rendered by `fmae synthesize`, "
                      "not the real dataset. They test the pipeline, not the method; do not compare them with the "
                      "paper's.**", ""]
        lines += au_table(params, dataset, m, protocol) + ["", "Per fold (F1 at the selected threshold / F1 at 0.5 / "
                                                           "ROC-AUC, %):", ""] + fold_table(m)
        lines += ["", f"### Identity information in the features ({i['subjects']} subjects, {i['train_frames']} "
                  f"probe-training and {i['test_frames']} probe-test frames)", ""] + identity_table(i)
        lines += ["", "### What the numbers say", ""] + findings(m, i) + [""]
        lines += [f"![{k}](../{p.as_posix()})" for k, p in f.items()] + [""]
    return "\n".join(lines)

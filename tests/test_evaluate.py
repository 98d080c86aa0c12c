"""Evaluation: metrics against scikit-learn, fold aggregation, the identity probe, figures, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from pipeline.au.folds import AUS
from pipeline.au.metrics import THRESHOLDS, auc_per_au, best_threshold, f1_per_au
from pipeline.evaluate import figures, report
from pipeline.evaluate.linear_probes import linear_probe, probe_split, release_probe, sequence_split, strong_probe
from pipeline.evaluate.scores import score_fold, summarise


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_f1_threshold_sweep_and_auc_match_scikit_learn(rng):
    labels = (rng.random((500, 6)) < [0.1, 0.3, 0.5, 0.2, 0.05, 0.4]).astype(int)
    probs = np.clip(labels * 0.3 + rng.random((500, 6)) * 0.7, 0, 1)
    probs[:10, 0] = 0.5  # ties
    for t in (0.2, 0.5, 0.77):
        want = [f1_score(labels[:, a], probs[:, a] >= t, zero_division=0) for a in range(6)]
        np.testing.assert_allclose(f1_per_au(labels, probs, t), want)
    want_auc = [roc_auc_score(labels[:, a], probs[:, a]) for a in range(6)]
    np.testing.assert_allclose(auc_per_au(labels, probs), want_auc)
    sweep = [np.mean([f1_score(labels[:, a], probs[:, a] >= t, zero_division=0) for a in range(6)]) for t in THRESHOLDS]
    thr, best = best_threshold(labels, probs)
    assert best == pytest.approx(max(sweep)) and thr == THRESHOLDS[int(np.argmax(sweep))]


def test_unknown_labels_are_left_out_like_dropping_the_rows(rng):
    labels = (rng.random((200, 3)) < 0.4).astype(int)
    probs = rng.random((200, 3))
    masked = labels.copy()
    masked[::7, 1] = -1
    keep = masked[:, 1] >= 0
    assert f1_per_au(masked, probs)[1] == pytest.approx(f1_score(labels[keep, 1], probs[keep, 1] >= 0.5))
    assert auc_per_au(masked, probs)[1] == pytest.approx(roc_auc_score(labels[keep, 1], probs[keep, 1]))


def _predictions(dataset: str, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    cols = [f"au{a}" for a in AUS[dataset]]
    df = pd.DataFrame(labels, columns=cols)
    for k, c in enumerate(cols):
        df[f"prob_{c}"] = probs[:, k]
    return df


def test_fold_aggregation_on_hand_made_predictions():
    """Two DISFA folds: F1 per AU per fold, then the mean over folds per AU, then over AUs."""
    n_au = len(AUS["disfa"])
    y1 = np.tile([[1], [1], [0], [0]], (1, n_au))
    p1 = np.tile([[0.9], [0.2], [0.1], [0.1]], (1, n_au))  # fold 1 at 0.5: tp 1, fn 1 -> F1 2/3 for every AU
    y2 = np.tile([[1], [0], [0], [0]], (1, n_au))
    p2 = np.tile([[0.9], [0.8], [0.1], [0.1]], (1, n_au))  # fold 2 at 0.5: tp 1, fp 1 -> 2/3; at 0.85: 1.0
    p2[:, 0] = [0.9, 0.1, 0.1, 0.1]  # AU1 perfect in fold 2
    f1 = score_fold(_predictions("disfa", y1, p1), "disfa", 1, 0.5, 3)
    f2 = score_fold(_predictions("disfa", y2, p2), "disfa", 2, 0.85, 5)
    np.testing.assert_allclose(f1.f1, 2 / 3)
    np.testing.assert_allclose(f2.f1, 1.0)
    assert f2.f1_05[0] == 1.0 and f2.f1_05[1] == pytest.approx(2 / 3)
    np.testing.assert_allclose(f1.f1_constant, 2 / 3)  # all-positive: tp 2, fp 2
    m = summarise("disfa", [f1, f2])
    assert m["f1_mean"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)
    assert m["au1"]["f1_05"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)
    assert m["au2"]["f1_05"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["fold2"] == {"f1_mean": 1.0, "f1_05_mean": pytest.approx((1 + (n_au - 1) * 2 / 3) / n_au, abs=1e-4),
                          "auc_mean": 1.0, "threshold": 0.85, "epoch": 5}
    assert m["n_folds"] == 2 and m["auc_mean"] == pytest.approx(1.0)


def test_summary_has_the_documented_keys():
    n = len(AUS["bp4d"])
    y = np.tile([[1], [0]], (3, n))
    m = summarise("bp4d", [score_fold(_predictions("bp4d", y, np.full(y.shape, 0.6)), "bp4d", k, 0.5, 1) for k in (1, 2, 3)])
    assert {"f1_mean", "f1_05_mean", "auc_mean", "f1_constant_mean", "n_folds"} <= set(m)
    assert {f"au{a}" for a in AUS["bp4d"]} <= set(m) and set(m["au12"]) == {"f1", "f1_05", "auc"}
    assert {"fold1", "fold2", "fold3"} <= set(m) and set(m["fold1"]) == {"f1_mean", "f1_05_mean", "auc_mean", "threshold", "epoch"}
    assert m["auc_mean"] == 0.5  # constant scores: AUC 0.5


def test_missing_prediction_columns_are_named():
    with pytest.raises(ValueError, match="prob_au26"):
        score_fold(_predictions("disfa", np.zeros((2, 8)), np.zeros((2, 8))).drop(columns="prob_au26"), "disfa", 1, 0.5, 1)


def test_probe_split_draws_disjoint_frames_per_subject():
    index = pd.DataFrame({"subject": ["A"] * 30 + ["B"] * 10 + ["C"] * 1, "frame": range(41)})
    split = probe_split(index, 14, 6, seed=0)
    train, test = split.train, split.test
    assert not set(train.frame) & set(test.frame)
    assert (train.subject == "A").sum() == 14 and (test.subject == "A").sum() == 6
    assert (train.subject == "B").sum() == 7 and (test.subject == "B").sum() == 3  # 10 frames: 14:6 proportion
    assert split.skipped == ("C",)


def test_probe_finds_separable_identities_and_not_random_ones():
    gen = torch.Generator().manual_seed(0)
    subjects = np.repeat(np.arange(10), 20)
    centres = torch.randn(10, 32, generator=gen) * 3
    feats = centres[subjects] + 0.3 * torch.randn(len(subjects), 32, generator=gen)
    tr = np.tile(np.arange(20) < 14, 10)
    acc = linear_probe(feats[tr], subjects[tr], feats[~tr], subjects[~tr], epochs=30, lr=1e-2, batch_size=32, seed=0)
    assert len(acc) == 30 and acc[-1] > 0.97
    noise = torch.randn(len(subjects), 32, generator=gen)
    acc = linear_probe(noise[tr], subjects[tr], noise[~tr], subjects[~tr], epochs=30, lr=1e-2, batch_size=32, seed=0)
    assert acc[-1] < 0.25  # chance is 0.1; 60 test frames


def test_probe_rejects_test_subjects_without_training_frames():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="no training frames"):
        linear_probe(x[:2], np.array(["a", "a"]), x[2:], np.array(["a", "b"]), 1, 1e-3, 2, 0)


def _valid_png(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and min(img.size) > 100


def test_figures_are_valid_pngs(tmp_path, rng):
    curves = {"fmae": rng.random((3, 5)), "iat": rng.random((3, 4))}
    _valid_png(figures.curves_figure(curves, tmp_path / "c.png", "t", "F1", hline=("chance", 0.1)))
    xy = figures.tsne_2d(rng.normal(size=(40, 8)), seed=0)
    assert xy.shape == (40, 2)
    subj = np.repeat(np.array(["F001", "M002"]), 20)
    _valid_png(figures.tsne_figure({"fmae": (xy, subj), "iat": (xy, subj)}, tmp_path / "t.png", "t"))
    _valid_png(figures.per_au_figure(["AU1", "AU2"], {"fmae": [0.5, None], "iat": [0.6, 0.2]}, tmp_path / "b.png", "t",
                                     floor=[0.4, 0.3]))


def _au_metrics(fmae: float, iat: float, floor: float, probe_fmae: float = 0.8, probe_iat: float = 0.3) -> dict:
    def variant(f):
        return {"f1_mean": f, "f1_05_mean": f, "auc_mean": 0.7, "f1_constant_mean": floor,
                **{f"au{a}": {"f1": f, "f1_05": f, "auc": 0.7} for a in AUS["bp4d"]},
                "fold1": {"f1_mean": f, "f1_05_mean": f, "auc_mean": 0.7, "threshold": 0.3, "epoch": 2}}

    probes = {p: {"chance": 0.0244, "subjects": 41, "pretrained": 0.9, "fmae": probe_fmae, "iat": probe_iat, "random": 0.7}
              for p in ("release", "strong", "unseen_sequences")}
    probes["release"]["epoch1"] = {"pretrained": 0.2, "fmae": 0.3, "iat": 0.05, "random": 0.1}
    return {"fmae": variant(fmae), "iat": variant(iat), "random": variant(0.45),
            "iat_minus_fmae_f1": round(iat - fmae, 4), "iat_minus_fmae_folds": "1",
            "random_minus_fmae_f1": round(0.45 - fmae, 4), "random_minus_fmae_folds": "1",
            "identity": {"probe_folds": "1", **probes}}


def test_report_findings_follow_the_numbers_either_way():
    up = "\n".join(report.findings(_au_metrics(0.60, 0.62, 0.40)))
    assert "IAT raised test F1 by 2.0 points" in up and "IAT lowered what this probe finds" in up
    assert "FMAE does not beat" not in up and "FMAE-IAT does not beat" not in up
    assert "Random init does not beat the all-positive predictor" not in up and "lowered test F1 by 15.0 points" in up
    down = "\n".join(report.findings(_au_metrics(0.403, 0.393, 0.40, probe_iat=0.9)))
    assert "IAT lowered test F1 by 1.0 points" in down and "IAT raised what this probe finds" in down
    assert "FMAE does not beat the all-positive predictor" in down and "FMAE-IAT does not beat" in down
    same = "\n".join(report.findings(_au_metrics(0.40, 0.4003, 0.40, probe_iat=0.8)))
    assert "did not change test F1 (difference < 0.05 points)" in same and "0.0 points" not in same
    assert "did not change what this probe finds" in same


def test_report_lays_out_paper_table(params, tmp_path):
    m = {"protocol": "paper", "optimistic": True, "bp4d": _au_metrics(0.6, 0.65, 0.4)}
    text = report.render(params, m, {"bp4d": {"tsne": tmp_path / "t.png"}}, "ab" * 32)
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header.split(" | ")[1:] == [f"AU{a}" for a in AUS["bp4d"]] + ["Avg. |"]
    assert "| FMAE-IAT (paper, ViT-L, test-fold selection) |" in text and "| 67.1 |" in text
    assert "optimistic" in text and "65.0" in text and "| Random init (this run, folds 1," in text
    assert "synthetic BP4D" in text  # the tests' params read the demo world
    probes = next(line for line in text.splitlines() if line.startswith("| FMAE-IAT finetuned"))
    assert probes.split(" | ")[1:] == ["30.0 (5.0 after 1 epoch)", "30.0", "30.0", "27.9 (4.6 after 1 epoch) |"]
    assert "| Chance (1 / subjects) | 2.4 (41 subjects) |" in text


def test_an_au_with_one_class_gets_a_null_auc_not_nan():
    n = len(AUS["disfa"])
    y = np.tile([[1], [0], [1], [0]], (1, n))
    y[:, 3] = 0  # AU6 never occurs in this fold: no ROC-AUC
    p = np.tile([[0.9], [0.2], [0.7], [0.1]], (1, n))
    m = summarise("disfa", [score_fold(_predictions("disfa", y, p), "disfa", 1, 0.5, 1)])
    assert m["au6"]["auc"] is None and m["au1"]["auc"] == 1.0
    assert m["auc_mean"] == 1.0 and m["fold1"]["auc_mean"] == 1.0  # the mean skips it


def test_folds_selected_under_different_protocols_are_refused(params, tmp_path):
    import json
    from dataclasses import replace

    from pipeline.evaluate.evaluate import fold_runs

    for fold, protocol in ((1, "validation"), (2, "paper"), (3, "validation")):
        folder = tmp_path / "iat" / "bp4d" / f"fold{fold}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"protocol": protocol}))
        (folder / "predictions.parquet").write_bytes(b"")
        (folder / "checkpoint.pth").write_bytes(b"")
        (folder / "history.json").write_text("{}")
    p = replace(params, iat=replace(params.iat, folds=(1, 2, 3)))
    with pytest.raises(ValueError, match=r"different protocols \['paper', 'validation'\]"):
        fold_runs(p, "bp4d", "iat", root=tmp_path)
    p = replace(params, iat=replace(params.iat, folds=(1, 3)))
    assert [r.fold for r in fold_runs(p, "bp4d", "iat", root=tmp_path)] == [1, 3]
    (tmp_path / "iat" / "bp4d" / "fold3" / "history.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"fold3/history.json missing: run `dvc repro finetune@bp4d-3`"):
        fold_runs(p, "bp4d", "iat", root=tmp_path)


class _Identity(torch.nn.Module):
    """A 'backbone' whose features are its inputs."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_release_probe_takes_one_adamw_step_as_computed_by_hand():
    """2 subjects, 2-d features, one batch, one epoch, no warm-up: the probe's weight after the step is
    W0 (1 - lr wd) - lr g / (|g| + eps) (AdamW's first step), g the gradient of the mean BCE against
    one-hot targets, lr = blr x batch / 256; W0 PyTorch's default Linear init from the seeded generator."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    subject = torch.tensor([3, 7])  # ids over a larger vocabulary: classes are the probed subjects
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(2), subject), batch_size=2)
    blr, wd, seed = 0.1 * 256 / 2, 0.05, 4
    acc, weight = release_probe(_Identity(), loader, subject.numpy(), x, subject.numpy(), epochs=1, blr=blr,
                                warmup_epochs=0, weight_decay=wd, seed=seed, device=torch.device("cpu"))
    lr = 0.1
    w0 = torch.empty(2, 2).uniform_(-2 ** -0.5, 2 ** -0.5, generator=torch.Generator().manual_seed(seed))
    target = torch.eye(2)
    g = (torch.sigmoid(x @ w0.T) - target).T @ x / 4  # mean over 2 frames x 2 classes
    want = w0 * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
    torch.testing.assert_close(weight, want)
    assert acc == [float(((x @ want.T).argmax(1) == torch.arange(2)).float().mean())]


def test_release_probe_reports_every_epoch_and_learns_separable_identities():
    gen = torch.Generator().manual_seed(0)
    subjects = np.repeat(np.arange(5), 30)
    feats = torch.randn(5, 16, generator=gen)[subjects] * 3 + 0.3 * torch.randn(150, 16, generator=gen)
    tr = np.tile(np.arange(30) < 20, 5)

    def run(train_subjects):
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
            feats[tr], torch.zeros(int(tr.sum())), torch.tensor(train_subjects)), batch_size=10, shuffle=True)
        return release_probe(_Identity(), loader, train_subjects, feats[~tr], subjects[~tr], epochs=8, blr=0.5 * 256 / 10,
                             warmup_epochs=1, weight_decay=0.05, seed=0, device=torch.device("cpu"))[0]

    acc = run(subjects[tr])
    assert len(acc) == 8 and max(acc) > 0.95
    assert max(run(np.random.default_rng(0).permutation(subjects[tr]))) < 0.5  # shuffled identities: near chance (0.2)


def test_sequence_split_tests_on_sequences_the_probe_never_saw():
    index = pd.DataFrame({"subject": ["A"] * 40 + ["B"] * 20 + ["C"] * 5, "key": [f"k{i}" for i in range(65)],
                          "sequence": ["T1"] * 10 + ["T2"] * 10 + ["T3"] * 10 + ["T4"] * 10 + ["T1"] * 10 + ["T2"] * 10 + ["T1"] * 5})
    split = sequence_split(index, 14, 6, seed=0)
    for subject in ("A", "B"):
        train = set(split.train[split.train.subject == subject].sequence)
        test = set(split.test[split.test.subject == subject].sequence)
        assert train and test and not train & test
    assert (split.train.subject == "A").sum() == 14 and (split.test.subject == "A").sum() == 6
    assert (split.train.subject == "B").sum() == 10 and (split.test.subject == "B").sum() == 6
    assert split.skipped == ("C",)


def test_strong_probe_picks_its_lr_on_training_frames_only():
    gen = torch.Generator().manual_seed(1)
    subjects = np.repeat(np.arange(8), 25)
    feats = torch.randn(8, 24, generator=gen)[subjects] * 2 + torch.randn(200, 24, generator=gen)
    tr = np.tile(np.arange(25) < 18, 8)
    out = strong_probe(feats[tr], subjects[tr], feats[~tr], subjects[~tr], (1e-3, 1e-2, 1e-1), 30, 32, 0.2, 0)
    assert out["top1"] > 0.9 and set(out["val_top1"]) == {"0.001", "0.01", "0.1"}
    shuffled = strong_probe(feats[tr], subjects[tr], feats[~tr], np.random.default_rng(0).permutation(subjects[~tr]),
                            (1e-3, 1e-2, 1e-1), 30, 32, 0.2, 0)
    assert shuffled["lr"] == out["lr"] and shuffled["val_top1"] == out["val_top1"] and shuffled["top1"] < 0.4
    noise = torch.randn(200, 24, generator=gen)
    assert strong_probe(noise[tr], subjects[tr], noise[~tr], subjects[~tr], (1e-3, 1e-2), 30, 32, 0.2, 0)["top1"] < 0.35


def test_identity_table_marks_the_release_probe_absent_where_it_did_not_run():
    i = _au_metrics(0.6, 0.62, 0.4)["identity"]
    for name in ("pretrained", "random"):  # evaluate.release_probe.models: [fmae, iat]
        del i["release"][name], i["release"]["epoch1"][name]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.identity_table(i)}
    assert rows["Random init, finetuned"].split(" | ")[1:4] == ["—", "70.0", "70.0"]
    assert rows["FMAE finetuned"].split(" | ")[1] == "80.0 (30.0 after 1 epoch)"


def test_probe_results_average_each_protocol_over_the_encoders_that_ran_it(params, tmp_path):
    """The release's probe runs on evaluate.release_probe.models only; the strong probes on every encoder."""
    from pipeline.evaluate.evaluate import probe_results
    from pipeline.evaluate.probe import out_paths

    def fold(top1, release):
        row = {"strong": {"top1": top1, "lr": 0.01}, "unseen_sequences": {"top1": top1 / 2}}
        if release:
            row["release"] = {"top1": top1 / 4, "top1_epoch1": 0.0, "curve": [0.0, top1 / 4]}
        return row

    for model, top1 in {"pretrained": 0.8, "fmae": 0.6, "iat": 0.4, "random": 1.0}.items():
        path, tsne = out_paths("bp4d", model, tmp_path / "m", tmp_path / "t")
        path.parent.mkdir(exist_ok=True), tsne.parent.mkdir(exist_ok=True)
        folds = {"all": fold(top1, False)} if model == "pretrained" else \
            {"fold1": fold(top1, model != "random"), "fold2": fold(top1 + 0.2, model != "random")}
        path.write_text(json.dumps({"folds": folds, "subjects": {p: 40 for p in ("release", "strong", "unseen_sequences")}}))
        pd.DataFrame({"subject": ["F001"], "x": [0.0], "y": [1.0]}).to_parquet(tsne)
    out, curves, panels = probe_results(params, "bp4d", tmp_path / "m", tmp_path / "t")
    want = {"pretrained": 0.8, "fmae": 0.7, "iat": 0.5, "random": 1.1, "chance": 0.025}
    assert {k: out["strong"][k] for k in want} == pytest.approx(want)
    assert {k: v for k, v in out["release"].items() if k in ("pretrained", "fmae", "iat", "random")} == \
        {"fmae": 0.175, "iat": 0.125}
    assert set(out["release"]["epoch1"]) == set(curves) == {"fmae", "iat"} and len(panels) == 4
    np.testing.assert_allclose(curves["iat"], [[0.0, 0.1], [0.0, 0.15]])

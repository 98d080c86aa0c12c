"""Few-shot parts: the labelled subjects at each budget, and the linear AU probe on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.fewshot.au_probe import au_linear_probe
from pipeline.fewshot.budgets import budget_subjects

SUBJECTS = [f"F{k:03d}" for k in range(1, 25)]


def test_budgets_are_nested_seeded_per_fold_and_the_same_on_every_call():
    got = budget_subjects(SUBJECTS, [2, 5, 10, "all"], seed=0, fold=1)
    assert list(got) == ["2", "5", "10", "all"] and [len(v) for v in got.values()] == [2, 5, 10, 24]
    assert set(got["2"]) <= set(got["5"]) <= set(got["10"]) <= set(got["all"]) == set(SUBJECTS)
    assert got == budget_subjects(list(reversed(SUBJECTS)), [2, 5, 10, "all"], seed=0, fold=1)  # order-free
    assert got["5"] != budget_subjects(SUBJECTS, [5], seed=0, fold=2)["5"]  # each fold draws its own
    assert budget_subjects(SUBJECTS, [0], seed=0, fold=1) == {"all": got["all"]}  # params.yaml's 0: all subjects
    for bad in (-1, 25, "half", True):
        with pytest.raises(ValueError, match="expected an integer from 1 to 24"):
            budget_subjects(SUBJECTS, [bad], seed=0, fold=1)


def _toy(n: int, rng: np.random.Generator, w: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    x = rng.normal(size=(n, w.shape[0])).astype(np.float32)
    y = (x @ w + 0.3 * rng.normal(size=(n, w.shape[1])) > 0).astype(np.float32)
    y[rng.random(y.shape) < 0.05] = -1  # some unknown labels
    return torch.from_numpy(x), y


def test_the_au_probe_reads_linear_aus_and_fails_on_shuffled_labels():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 4))
    train, val, test = _toy(400, rng, w), _toy(200, rng, w), _toy(400, rng, w)
    good = au_linear_probe(train, val, test, epochs=30)
    assert good["auc"] > 0.9 and good["f1"] > 0.7, good
    shuffled = (train[0], train[1][rng.permutation(len(train[1]))])
    bad = au_linear_probe(shuffled, val, test, epochs=30)
    assert bad["auc"] < 0.6, bad  # the mutation: labels that do not belong to the frames
    assert set(good["val_auc"]) == {"0.001", "0.01"} and good["lr"] in (1e-3, 1e-2)


def test_fewshot_stage_mistakes_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """An unknown encoder, a method that is also pretrain.method, a missing encoder or crop index: exit 2, one line."""
    from pipeline.cli import main
    from tests.conftest import PARAMS

    monkeypatch.chdir(tmp_path)  # a project with no stage outputs yet
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text())
    cases = {("--encoder", "simclr", "--fold", "1"): "--encoder = 'simclr': expected one of random, mae, fsfm",
             ("--encoder", "mae", "--fold", "4"): "--fold = 4",
             ("--encoder", "mae", "--fold", "1", "--set", "pretrain.method=fsfm"): "fewshot.methods = ['fsfm', 'clp']: expected methods other than",
             ("--encoder", "fsfm", "--fold", "1"): "index.parquet missing"}
    for args, message in cases.items():
        assert main(["fewshot", "--params", str(params), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_identity_leakage_names_subjects_of_unseen_sequences_from_features_that_hold_them(params):
    import pandas as pd

    from pipeline.fewshot.fewshot import identity_leakage

    rng = np.random.default_rng(0)
    frames = pd.DataFrame([{"subject": s, "sequence": f"T{q}"} for s in SUBJECTS[:8] for q in range(4) for _ in range(10)])
    codes = rng.normal(size=(8, 16))
    person = codes[frames.subject.map({s: i for i, s in enumerate(SUBJECTS[:8])}).to_numpy()]
    noise = rng.normal(size=(len(frames), 16))
    leaky = identity_leakage(params, frames, torch.tensor(person + 0.3 * noise, dtype=torch.float32))
    blind = identity_leakage(params, frames, torch.tensor(noise, dtype=torch.float32))
    assert leaky["subjects"] == 8 and leaky["chance"] == 0.125 and leaky["test_frames"] > 0
    assert leaky["top1"] > 0.9 and blind["top1"] < 0.3, (leaky, blind)  # the mutation: features without the person


def test_the_report_lists_identity_leakage_when_the_runs_measured_it(params):
    from pipeline.fewshot.fewshot_report import IDENTITY, report

    row = {"subjects": 2, "probe": {"auc": 0.6, "f1": 0.4}, "finetune": {"auc": None, "f1": 0.3}}
    table = {"random": {"2": row, IDENTITY: {"top1": 0.25, "chance": 0.05}}, "clp": {"2": row, IDENTITY: {"top1": None, "chance": None}}}
    text = report(table, params)
    assert "| random | linear probe | 60.0 / 40.0 |" in text and "| random | finetune | - |" in text
    assert "| random | 25.0 | 5.0 |" in text and "| clp | " not in text.split("Identity leakage")[1]
    assert "Identity leakage" not in report({"random": {"2": row}}, params)  # runs from before the probe

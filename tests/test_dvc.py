"""`dvc repro` on a copy of the project: the pipeline runs, and a second run re-does only the
always-run `scan`, whose unchanged manifest leaves everything after it cached."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import PARAMS, ROOT, TINY, TINY_STAGES
from tests.real_faces import PORTRAIT

BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _copy_project(dest: Path) -> Path:
    """A git repo holding the project's tracked files, with a tiny synthetic world."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("reports/", "plots/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    params = yaml.safe_load(PARAMS.read_text())  # the tests' base, not the shipped demo configuration
    for dotted, value in {**TINY, **TINY_STAGES}.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """One `dvc repro` of the copy for the whole module (each run costs minutes): its directory and
    the output of the run. Tests work on copies of it, so none sees another's changes."""
    root = _copy_project(tmp_path_factory.mktemp("reproduced"))
    return root, _run([str(BIN / "dvc"), "repro"], root)


@pytest.fixture
def project(reproduced, tmp_path):
    """A private copy of the reproduced project: workspace, git history, DVC cache and lock."""
    copy = tmp_path / "project"
    shutil.copytree(reproduced[0], copy, symlinks=True)
    yield copy
    # a failed or timed-out queue test must not leave DVC's queue workers training in the background
    subprocess.run([str(BIN / "dvc"), "queue", "stop", "--kill"], cwd=copy, capture_output=True, timeout=120)


@pytest.mark.slow
def test_repro_twice_second_run_reruns_only_scan(reproduced, project):
    first = reproduced[1]
    for stage in ("synthesize", "scan", "curate", "clips", "pretrain", "prepare@bp4d", "finetune@bp4d-1",
                  "finetune_fmae@bp4d-2", "finetune_random@bp4d-1", "evaluate", "prepare_fer@rafdb", "finetune_fer@affectnet", "evaluate_fer",
                  "pretrain_compare@fsfm", "pretrain_compare@clp", "fewshot@random-1", "fewshot@mae-1", "fewshot@fsfm-1",
                  "fewshot@clp-1", "fewshot_report"):
        assert f"Running stage '{stage}'" in first
    assert (project / "data/raw/truth/world.json").is_file() and (project / "reports/synth_aus.png").is_file()
    assert list((project / "data/face9m/shards").glob("face9m-*.tar"))
    assert (project / "models/au/iat/bp4d/fold1/checkpoint.pth").is_file()
    assert not list((project / "models/au").rglob("resume.pth")), "finished folds keep no resume file"
    second = _run([str(BIN / "dvc"), "repro"], project)
    # scan always runs (raw trees are not deps); an unchanged manifest leaves curate cached
    assert "Running stage 'scan'" in second
    assert "Stage 'synthesize' didn't change, skipping" in second
    assert "Stage 'curate' didn't change, skipping" in second
    assert "Stage 'pretrain' didn't change, skipping" in second
    assert "Running stage 'clips'" in second and "Stage 'curate' didn't change" in second  # clips lists its source anew
    assert json.loads((project / "metrics/clips.json").read_text())["shards_reused"] > 0
    assert "Stage 'finetune_fmae@bp4d-2' didn't change, skipping" in second
    assert "Stage 'evaluate' didn't change, skipping" in second
    assert "Stage 'finetune_fer@rafdb' didn't change, skipping" in second
    status = _run([str(BIN / "dvc"), "status"], project)
    assert "always changed" in status and "curate" not in status and "synthesize" not in status
    assert "pretrain" not in status
    metrics = _run([str(BIN / "dvc"), "metrics", "show"], project)
    assert "sources.celeba.kept" in metrics and "pretrain.loss" in metrics
    assert "models/au/fmae/bp4d/fold2/metrics.json" in metrics and "auc_mean" in metrics
    assert "bp4d.iat.f1_mean" in metrics and "bp4d.fmae.au12.f1" in metrics and "bp4d.iat.fold1.f1_mean" in metrics
    assert "bp4d.identity.release.iat" in metrics and "bp4d.identity.unseen_sequences.chance" in metrics
    assert "bp4d.random.f1_mean" in metrics and "bp4d.identity.strong.random" in metrics
    au = json.loads((project / "metrics/au.json").read_text())
    assert au["protocol"] == "validation" and au["optimistic"] is False
    assert {"f1_mean", "f1_05_mean", "auc_mean", "f1_constant_mean"} <= set(au["bp4d"]["iat"])
    for variant, folds in (("iat", (1,)), ("fmae", (1, 2))):  # the summary's per-fold entries are each fold's own metrics
        for fold in folds:
            own = json.loads((project / f"models/au/{variant}/bp4d/fold{fold}/metrics.json").read_text())
            entry = au["bp4d"][variant][f"fold{fold}"]
            assert entry["epoch"] == own["epoch"] and entry["threshold"] == own["threshold"]
            for key in ("f1_mean", "f1_05_mean", "auc_mean"):  # one naming scheme: the fold file's keys are the summary's
                assert entry[key] == pytest.approx(own[key], abs=1e-4), key
    assert "| Method | AU1 |" in (project / "reports/au.md").read_text()
    assert "rafdb.accuracy" in metrics and "affectnet.majority_accuracy" in metrics
    assert "bp4d.fsfm.all.finetune.auc" in metrics and "bp4d.random.1.probe.f1" in metrics
    assert "bp4d.clp.all.probe.auc" in metrics and "bp4d.clp.identity_probe.top1" in metrics
    fewshot = (project / "reports/fewshot.md").read_text()
    assert "| fsfm | linear probe |" in fewshot and "| clp | linear probe |" in fewshot and "| mae | " in fewshot.split("Identity leakage")[1]
    assert (project / "models/compare/clp/fmae.pth").is_file() and json.loads((project / "models/compare/clp/metrics.json").read_text())["pretrain"]["loss_temporal"] >= 0
    assert (project / "models/compare/fsfm/fmae.pth").is_file() and (project / "plots/fewshot/auc_by_subjects.png").is_file()
    regions = json.loads((project / "data/face9m/regions.json").read_text())
    assert regions and all(n["regions"] == n["samples"] > 0 for n in regions.values()), regions
    fer = (project / "reports/fer.md").read_text()
    assert "| Method | RAF-DB | AffectNet-8 |" in fer and "synthetic data" in fer
    _run([str(BIN / "dvc"), "plots", "show", "--out", "dvc_plots"], project)
    html = (project / "dvc_plots" / "index.html").read_text()
    assert "Pretraining loss" in html and "epoch_001.png" in html
    assert "cdn.jsdelivr" not in html and "vega-embed 6.18.2" in html  # the offline template: Vega inlined
    assert "Finetuning AU loss per epoch" in html and "Identity head training accuracy" in html
    for name in ("f1_per_epoch", "identity_probe", "tsne", "per_au_f1", "id_train_accuracy"):
        assert f"bp4d_{name}.png" in html, name
    assert "rafdb_confusion.png" in html and "FER validation accuracy per epoch" in html
    # the folds' own checkpoints carry what inference needs: predict applies two of them as an ensemble
    folds = [f"models/au/fmae/bp4d/fold{k}/checkpoint.pth" for k in (1, 2)]
    _run([str(BIN / "fmae"), "predict", str(PORTRAIT), "--checkpoint", *folds, "--out", "predict.csv"], project)
    table = pd.read_csv(project / "predict.csv")
    assert table.status.tolist() == ["ok"] and table.filter(regex=r"^AU\d\d$").shape[1] == 12
    thresholds = [json.loads((project / f.replace("checkpoint.pth", "metrics.json")).read_text())["threshold"]
                  for f in folds]
    record = json.loads((project / "predict.csv.provenance.json").read_text())
    assert record["threshold"] == pytest.approx(sum(thresholds) / 2)


@pytest.mark.slow
def test_experiments_rerun_only_what_their_params_reach_and_compare(project):
    """A workspace experiment that changes IAT's lambda and an FSFM switch at once re-runs the IAT and
    the few-shot comparison stages only; a queued one (`dvc exp run --queue`: a fresh checkout, new file
    times) re-runs the IAT stages only; the two experiments' per-fold metrics and curves diff."""
    dvc = str(BIN / "dvc")
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"]):
        subprocess.run(cmd, cwd=project, check=True)
    _run([dvc, "exp", "run", "--queue", "-S", "iat.lambda=0"], project)  # stashed now: the baseline's other params
    out = _run([dvc, "exp", "run", "-S", "iat.lambda=1.0", "-S", "pretrain.fsfm.distill=false"], project)
    for stage in ("finetune@bp4d-1", "probe@bp4d-iat", "evaluate", "pretrain_compare@fsfm", "fewshot@fsfm-1", "fewshot_report"):
        assert f"Running stage '{stage}'" in out, stage
    for cached in ("curate", "pretrain", "pretrain_compare@clp", "prepare@bp4d", "finetune_fmae@bp4d-1", "finetune_random@bp4d-1",
                   "finetune_fer@rafdb", "evaluate_fer"):  # pretrain.fsfm is FSFM's own section: the MAE and CLP stay
        assert f"Running stage '{cached}'" not in out, cached
    _run([dvc, "queue", "start", "-j", "1"], project)
    deadline = time.monotonic() + 900
    while re.search(r"\b(Queued|Running)\b", status := _run([dvc, "queue", "status"], project)):
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert "Failed" not in status, status
    names = _run([dvc, "exp", "list", "--name-only"], project).split()
    assert len(names) == 2, names
    in_workspace = re.search(r"Ran experiment\(s\): (\S+)", out).group(1)
    queued = next(n for n in names if n != in_workspace)
    log = _run([dvc, "queue", "logs", queued], project)
    assert "Running stage 'finetune@bp4d-1'" in log and "Running stage 'evaluate'" in log, log[-2000:]
    for cached in ("synthesize", "curate", "pretrain", "prepare@bp4d", "finetune_fmae@bp4d-1", "pretrain_compare@fsfm"):
        assert f"Running stage '{cached}'" not in log, cached
    diff = _run([dvc, "metrics", "diff", *names, "--all"], project)
    assert "models/au/iat/bp4d/fold1/metrics.json" in diff and "f1_mean" in diff, diff
    row = next(line for line in diff.splitlines() if "iat/bp4d/fold1/metrics.json" in line and "lambda" in line)
    assert " - " not in f" {row} ", row  # both experiments' values were found
    curves = _run([dvc, "plots", "diff", *names, "--json"], project)
    assert "val_f1_best_threshold" in curves and all(name in curves for name in names)
    results = _run([str(BIN / "fmae"), "results"], project)
    rows = {line.split("|")[1].strip(): line for line in results.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(names) <= set(rows) and "workspace" in rows, results
    lambdas = sorted(rows[n].split("|")[2].strip() for n in names)
    assert lambdas == ["0", "1"], results

"""The README's demo figures are the committed metrics, rendered (pipeline/demo_figures.py)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pipeline import demo_figures, paths
from pipeline.config import params_from_dict

from .conftest import ROOT


def _at_head(path) -> str:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_readme_demo_figures_are_the_committed_metrics():
    """Read at HEAD, so a workspace whose metrics a later `dvc repro` or experiment changed still passes."""
    import yaml

    readme = _at_head("README.md")
    block = readme[readme.index(demo_figures.BEGIN):readme.index(demo_figures.END) + len(demo_figures.END)]
    params = params_from_dict(yaml.safe_load(_at_head("params.yaml")))
    want = demo_figures.render(*(json.loads(_at_head(p.as_posix())) for p in
                                 (paths.METRICS / "au.json", paths.PRETRAIN_METRICS, paths.FER_METRICS)), params)
    assert block == want


def test_the_block_follows_the_metrics():
    """A changed figure changes the block (the check above cannot pass on a block that ignores its input)."""
    au = {"bp4d": {v: {"f1_mean": 0.5, "f1_constant_mean": 0.45, "auc_mean": 0.7,
                       "fold1": {"auc_mean": 0.7, "epoch": 3}} for v in ("fmae", "iat", "random")}}
    au["bp4d"]["identity"] = {"probe_folds": "1", **{p: {"chance": 0.0244, "fmae": 0.5} for p in demo_figures.PROTOCOLS}}
    mae, fer = {"pretrain": {"loss": 0.3, "trivial_loss": 1.0}}, {"rafdb": {"accuracy": 0.6, "majority_accuracy": 0.37,
                                                                           "epoch": 4, "test_images": 200}}
    from tests.conftest import PARAMS
    from pipeline.config import load_params

    params = load_params(PARAMS)
    one = demo_figures.render(au, mae, fer, params)
    assert "| FMAE (1) | 70.0 | 50.0 | 45.0 | +5.0 | 3 |" in one and "FER rafdb: test accuracy 60.0" in one
    au["bp4d"]["fmae"]["auc_mean"] = 0.71
    assert demo_figures.render(au, mae, fer, params) != one


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_readme_fewshot_table_is_the_committed_metrics():
    """The few-shot table in "FSFM and the few-shot comparison" is fewshot_report's, rendered from
    metrics/fewshot.json at HEAD."""
    import yaml

    from pipeline.fewshot.fewshot_report import report

    readme = _at_head("README.md")
    table = json.loads(_at_head(paths.FEWSHOT_METRICS.as_posix()))["bp4d"]
    rendered = report(table, params_from_dict(yaml.safe_load(_at_head("params.yaml"))))
    rows = rendered[rendered.index("| Encoder"):]
    assert rows in readme

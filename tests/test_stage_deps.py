"""Every module a stage can run is one of its DVC dependencies, so a code change re-runs the stage."""

from __future__ import annotations

import pytest
import yaml

from pipeline import stage_code
from pipeline.cli import STAGES

from .conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(stage: str, spec: dict) -> list[str]:
    """The entry module's closure files (empty package ``__init__`` files aside) no dep covers."""
    name = spec["cmd"].split()[1]
    entry = STAGES[name].module(name)
    deps = [d for d in spec.get("deps", []) if isinstance(d, str)]
    files = [p for p in stage_code.closure(entry) if p.name != "__init__.py" or _has_code(p)]
    return [f for f in stage_code.relative(files) if not covered(f, deps)]


def _has_code(path) -> bool:
    """An ``__init__.py`` with more than a docstring."""
    import ast

    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


@pytest.mark.parametrize("stage", sorted(DVC))
def test_dvc_deps_cover_the_stage_import_closure(stage):
    assert missing_deps(stage, DVC[stage]) == []


def test_a_removed_dep_or_an_added_import_is_caught(tmp_path, monkeypatch):
    spec = {**DVC["evaluate"], "deps": [d for d in DVC["evaluate"]["deps"] if d != "pipeline/optim.py"]}
    assert missing_deps("evaluate", spec) == ["pipeline/optim.py"]  # the probe's optimiser lives there
    # an import added to a module the stage reaches pulls in a module none of its deps cover
    real = stage_code._direct_imports.__wrapped__
    monkeypatch.setattr(stage_code, "_direct_imports", lambda name: real(name) | (
        {"pipeline.fer.metrics"} if name == "pipeline.evaluate.report" else set()))
    assert missing_deps("evaluate", DVC["evaluate"]) == ["pipeline/fer/metrics.py"]


def test_closure_follows_relative_lazy_and_package_imports():
    files = stage_code.relative(stage_code.closure("pipeline.au.finetune"))
    assert "pipeline/au/train.py" in files  # from .train import ...
    assert "pipeline/au/folds.py" in files  # config.py imports it inside a function
    assert "pipeline/__init__.py" in files and "pipeline/training/__init__.py" in files  # from ..training import loop
    assert "pipeline/synth/render.py" not in files and "pipeline/cli.py" not in files


def _written(spec: dict) -> list[str]:
    """The paths a stage writes: its outs, metrics and plots (plain or with options)."""
    return [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots") for o in spec.get(key, [])]


def test_every_path_of_the_paths_module_is_written_by_a_stage():
    """pipeline/paths.py names each stage output once; each is an out of dvc.yaml, under or above one, so a path
    changed in one place and not the other fails here."""
    from pathlib import Path

    from pipeline import paths

    written = [w for spec in DVC.values() for w in _written(spec)]
    named = {k: v for k, v in vars(paths).items() if isinstance(v, Path)}
    assert len(named) >= 20
    orphans = [f"{k} = {v}" for k, v in named.items() if not any(covered(w, [v.as_posix()]) or covered(v.as_posix(), [w])
                                                                 for w in written)]
    assert orphans == []


def test_every_stage_runs_the_module_named_after_it_and_says_what_it_reads(capsys):
    """One rule: `fmae X` runs pipeline.<package>.X; its --help lists the params dvc.yaml tracks for it."""
    import importlib

    from pipeline.cli import main, reads

    for name, stage in STAGES.items():
        assert hasattr(importlib.import_module(stage.module(name)), "run"), name
    assert {spec["cmd"].split()[1] for spec in DVC.values()} == set(STAGES)
    assert reads("finetune", ROOT / "dvc.yaml") == "model, finetune, au.unknown_policy, au.box_margin, au.crop_size, iat"
    assert reads("finetune", ROOT / "no-such.yaml") == "see the project's dvc.yaml"
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "Reads params.yaml: " in capsys.readouterr().out


def test_each_pretraining_stage_tracks_every_shared_key_and_its_own_method_section():
    """The two pretraining stages list pretrain's keys one by one (so that another method's section is
    not among them): a key added to PretrainConfig and forgotten here would leave DVC serving a stale
    encoder. The shared list is anchored once, and each stage adds its own method's section."""
    import dataclasses

    from pipeline.config import PRETRAIN_METHODS, PretrainConfig

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    assert set(PRETRAIN_METHODS) <= fields, "every method has a section of its own settings"
    shared = {f"pretrain.{k}" for k in fields - set(PRETRAIN_METHODS) - {"method"}} | {"model.name", "model.img_size",
                                                                                      "clips.length"}  # CLP's window
    for stage, own in (("pretrain", {"pretrain.method", "pretrain.${pretrain.method}"}),
                       ("pretrain_compare", {"pretrain.${item.method}"})):
        entries = DVC[stage]["params"]
        listed = {k for e in entries for k in ([e] if isinstance(e, str) else e["params.yaml"])}
        assert listed == shared | own, (stage, sorted(listed ^ (shared | own)))

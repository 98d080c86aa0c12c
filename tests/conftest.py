"""Shared fixtures: the tests' base params (``tests/params.yaml``) and a tiny synthetic world built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FMAE_CPU_BF16", "0")  # the tests' numbers (margins, tolerances) are fp32's on every CPU
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers on two cores, one thread each (in every child too):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # two torch pools of 2 threads on 2 cores spin against each other
        os.environ[_var] = "1"
    import torch

    torch.set_num_threads(1)
PARAMS = ROOT / "tests" / "params.yaml"  # the tests' base params, independent of the shipped params.yaml

# A world small enough to build in a few seconds, with every flaw kind and every quirk.
TINY = {
    "synth.workers": 2,
    "synth.sources": {name: {"images": 24, "identities": 6} for name in
                      ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face")},
    "synth.au": {"bp4d": {"subjects": 3, "tasks": 2, "frames": 6}, "bp4dplus": {"subjects": 3, "tasks": 2, "frames": 5},
                 "disfa": {"subjects": 2, "tasks": 1, "frames": 6}, "frame_scale": 0.2, "left_camera": True},
    "synth.fer": {"rafdb": {"images": 40}, "affectnet": {"images": 48}},
    "synth.video": {"identities": 3, "videos": 1, "clips": 2, "frames": 8, "size": 96},
}


# The later stages at a size that runs in seconds on the tiny world (used by the `dvc repro` test).
TINY_STAGES = {
    "curate.shard_size": 16,
    "model.img_size": 64,
    "pretrain.decoder_dim": 64, "pretrain.decoder_depth": 1, "pretrain.decoder_heads": 2,
    "pretrain.epochs": 1, "pretrain.batch_size": 8, "pretrain.workers": 1, "pretrain.log_every": 2,
    "au.frame_step": 1, "au.workers": 1,
    "finetune.epochs": 1, "finetune.batch_size": 4, "finetune.workers": 0,
    "finetune.folds": [1, 2], "iat.folds": [1],  # each matrix item costs ~15 s of process start and DVC bookkeeping
    "fer.rafdb": {"root": "data/raw/fer/RAF-DB/basic", "images": "aligned", "epochs": 1, "warmup_epochs": 0, "batch_size": 4, "blr": 1.0e-3},
    "fer.affectnet": {"root": "data/raw/fer/AffectNet", "classes": 8, "epochs": 1, "warmup_epochs": 0, "batch_size": 4, "blr": 5.0e-4},
    "fer.workers": 0,
    "fewshot.budgets": [1, 0], "fewshot.finetune_epochs": 1, "fewshot.probe_epochs": 5,  # fold 1 trains on 1 subject here
}

NAMES = ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face")


SLOW_TIMEOUT_S = 1200  # per slow test (a stage run, DVC, a training run); the others: pyproject's `timeout`


def pytest_collection_modifyitems(config, items):
    # the `dvc repro` module first: under `make test`'s two workers (one module per worker at a time) the
    # longest module starts at once instead of last, and the other worker takes every other module
    items.sort(key=lambda item: not item.nodeid.startswith("tests/test_dvc.py"))  # stable: otherwise file order
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


def pytest_addoption(parser):
    parser.addoption("--mutations", action="store_true",
                     help="also run the mutation checks of the learning tests (test_learning, test_fer, test_clp_learning): a broken pipeline must fail there")


@pytest.fixture
def mutations(request):
    """Marks a mutation check: a broken pipeline that must fail a learning test's margin (run with --mutations)."""
    if not request.config.getoption("--mutations"):
        pytest.skip("a mutation check (~1-2 minutes each): run with --mutations")


def curate_overrides(out: Path, **extra) -> dict:
    """Tiny-world params whose source roots point into the world written under ``out``."""
    from pipeline.synth.synthesize import regions_root, source_root

    roots = {f"sources.{n}": {"enabled": True, "root": str(source_root(out, n)), "max_images": 0,
                              "regions": str(regions_root(out, n))} for n in NAMES}
    return {**TINY, "synth.out_dir": str(out), **roots, "curate.shard_size": 16, **extra}


def tiny_params(out_dir: Path, **extra):
    return load_params(PARAMS, {**TINY, "synth.out_dir": str(out_dir), **extra})


@pytest.fixture(scope="session")
def params():
    return load_params(PARAMS)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(params, out_dir) of a tiny world written once per test session."""
    from pipeline.synth.synthesize import synthesize

    base = tmp_path_factory.mktemp("world")
    p = tiny_params(base / "raw")
    synthesize(p.synth, reports=base / "reports")
    return p, base / "raw"


@pytest.fixture(scope="session")
def curated(tiny_world, tmp_path_factory):
    """(params, base) of the tiny world scanned and curated once with 2 Ray workers;
    the shards are in ``base / "face9m" / "shards"``."""
    from pipeline.curate.curate import curate
    from pipeline.curate.scan import scan, write_manifest

    _, out = tiny_world
    base = tmp_path_factory.mktemp("curated")
    params = load_params(PARAMS, curate_overrides(out, **{"ray.num_cpus": 2}))
    write_manifest(scan(params), base / "manifest.parquet")
    curate(params, base / "manifest.parquet", base / "face9m", base / "curation.json", base / "samples.png")
    return params, base

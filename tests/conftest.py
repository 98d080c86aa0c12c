"""Shared fixtures: the project's default params and a tiny synthetic world built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]

# A world small enough to build in a few seconds, with every flaw kind and every quirk.
TINY = {
    "synth.workers": 2,
    "synth.sources": {name: {"images": 24, "identities": 6} for name in
                      ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face")},
    "synth.au": {"bp4d": {"subjects": 3, "tasks": 2, "frames": 6}, "bp4dplus": {"subjects": 3, "tasks": 2, "frames": 5},
                 "disfa": {"subjects": 2, "tasks": 1, "frames": 6}, "frame_scale": 0.2, "left_camera": True},
}


def tiny_params(out_dir: Path, **extra):
    return load_params(ROOT / "params.yaml", {**TINY, "synth.out_dir": str(out_dir), **extra})


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(params, out_dir) of a tiny world written once per test session."""
    from pipeline.synth.stage import synthesize

    base = tmp_path_factory.mktemp("world")
    p = tiny_params(base / "raw")
    synthesize(p.synth, reports=base / "reports")
    return p, base / "raw"

"""The project installs on the CPython versions the README states: its dependencies resolve for Linux
x86-64 on each, checked without an interpreter of that version (uv resolves for a target version and
platform from the package index's metadata). The suite itself runs on this machine's Python."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ("3.11", "3.12", "3.13")
NO_INDEX = ("failed to fetch", "error sending request", "dns error", "connection refused", "network is unreachable")


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: it is in the test extra (pip install -e '.[test]')")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("version", SUPPORTED)
def test_dependencies_resolve_for_each_supported_python(version, tmp_path):
    out = tmp_path / "requirements.txt"
    done = subprocess.run([_uv(), "pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "test", "--extra", "yunet",
                           "--python-version", version, "--python-platform", "x86_64-manylinux_2_28", "--quiet",
                           "--no-header", "-o", str(out)], capture_output=True, text=True, timeout=240)
    if done.returncode and any(s in done.stderr.lower() for s in NO_INDEX):
        pytest.skip(f"no package index reachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    pins = {line.split("==")[0].lower() for line in out.read_text().splitlines() if "==" in line}
    assert {"torch", "timm", "safetensors", "opencv-python-headless", "dvc", "ray"} <= pins
    assert ("yuface" in pins) == (version == "3.11")  # the optional YuNet exists for 3.11 only, and never blocks


def test_the_stated_versions_match_the_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == f">={SUPPORTED[0]}"
    assert "yuface" not in " ".join(meta["dependencies"])  # never a hard dependency
    readme = (ROOT / "README.md").read_text()
    assert f"Python {SUPPORTED[0]} to {SUPPORTED[-1]}" in readme

"""What produced an output: resolved params, code version, library versions, machine.

Written beside stage outputs. It holds no wall-clock time, so a re-run of unchanged code on
unchanged inputs writes the same bytes and DVC sees nothing new.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "opencv-python-headless", "pillow", "pandas", "pyarrow", "torch", "torchvision", "timm",
            "webdataset", "ray", "dvc", "dvclive")


def git_revision(cwd: str | Path = ".") -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def record(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"stage": stage, "params": params, "code": git_revision(), "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": versions()}


def write(path: str | Path, stage: str, params: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record(stage, params), indent=2, sort_keys=True) + "\n")

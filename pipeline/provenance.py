"""What produced an output: resolved params, code version, library versions, machine kind.

Written beside stage outputs. It holds no wall-clock time and no git commit (which changes
with every unrelated commit and every clone's dirty state); the code version is the SHA-256 of
the package's source files, so the same code and inputs give the same bytes on any clone, and
DVC sees nothing new. ``dvc.lock`` ties each output to the commit that produced it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "opencv-python-headless", "pillow", "pandas", "pyarrow", "torch", "torchvision", "timm",
            "webdataset", "ray", "dvc", "dvclive")
PACKAGE_DIR = Path(__file__).resolve().parent


def code_version(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """SHA-256 over the package's Python sources (relative path and content of each)."""
    h = hashlib.sha256()
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return {"package_sha256": h.hexdigest(), "files": len(files)}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def record(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"stage": stage, "params": params, "code": code_version(), "python": sys.version.split()[0],
            "machine": f"{platform.system()}-{platform.machine()}", "packages": versions()}


def write(path: str | Path, stage: str, params: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record(stage, params), indent=2, sort_keys=True) + "\n")

"""What produced an output: resolved params, code version, library versions, machine kind.

Written beside stage outputs. It holds no wall-clock time and no git commit (which changes
with every unrelated commit and every clone's dirty state); the code version is the SHA-256 of
the stage's own code dependencies (the ones ``dvc.yaml`` lists), so the same code and inputs
give the same bytes on any clone and DVC sees nothing new. ``dvc.lock`` ties each output to the
commit that produced it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "opencv-python-headless", "pillow", "pandas", "pyarrow", "torch", "torchvision", "timm",
            "webdataset", "ray", "dvc", "dvclive", "safetensors")
PACKAGE_DIR = Path(__file__).resolve().parent


def code_version(paths: Iterable[str | Path]) -> dict[str, Any]:
    """SHA-256 over the Python sources of ``paths`` (files or folders): the stage's code deps."""
    h = hashlib.sha256()
    files: list[Path] = []
    for p in map(Path, paths):
        p = p if p.is_absolute() else PACKAGE_DIR.parent / p  # dvc.yaml's paths, from the project root
        files += sorted(f for f in p.rglob("*.py") if "__pycache__" not in f.parts) if p.is_dir() else [p]
    for path in sorted(set(files)):
        rel = path.resolve().relative_to(PACKAGE_DIR.parent).as_posix()
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return {"sha256": h.hexdigest(), "files": len(set(files))}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def record(stage: str, params: dict[str, Any], code: Iterable[str | Path], **extra: Any) -> dict[str, Any]:
    """The record of ``stage``; ``extra`` adds fields of its own (e.g. which face detector made the crops)."""
    return {"stage": stage, "params": params, "code": code_version(code), "python": sys.version.split()[0],
            "machine": f"{platform.system()}-{platform.machine()}", "packages": versions(), **extra}


def write(path: str | Path, stage: str, params: dict[str, Any], code: Iterable[str | Path], **extra: Any) -> None:
    """Write the record of ``stage``; ``code`` lists the stage's code dependencies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record(stage, params, code, **extra), indent=2, sort_keys=True) + "\n")

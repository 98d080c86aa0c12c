"""One reader per Face9M source; each yields :class:`Record` in a stable (sorted) order."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

from .base import FileJob, Record, TarJob, capped, make_key

SOURCES = ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face", "folder")


def source_jobs(name: str, root: str | Path) -> Iterator[FileJob | TarJob]:
    """The header-reading jobs of source ``name`` under ``root``, in the source's stable order; each
    job, called, returns its records (one for a file, a tar's members for a tar)."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    return importlib.import_module(f"{__name__}.{name}").read(Path(root))


def read_source(name: str, root: str | Path, max_images: int = 0) -> Iterator[Record]:
    """Records of source ``name`` under ``root``, at most ``max_images`` (0 = all), read in this process."""
    return capped((rec for job in source_jobs(name, root) for rec in job()), max_images)


__all__ = ["SOURCES", "FileJob", "Record", "TarJob", "make_key", "read_source", "source_jobs"]

"""One reader per Face9M source; each yields :class:`Record` in a stable (sorted) order."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

from .base import Record, capped, make_key

SOURCES = ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face", "folder")


def read_source(name: str, root: str | Path, max_images: int = 0) -> Iterator[Record]:
    """Records of source ``name`` under ``root``, at most ``max_images`` (0 = all)."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    reader = importlib.import_module(f"{__name__}.{name}")
    return capped(reader.read(Path(root)), max_images)


__all__ = ["SOURCES", "Record", "make_key", "read_source"]

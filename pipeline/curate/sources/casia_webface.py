"""CASIA-WebFace: ``<7-digit identity>/<NNN>.jpg``."""

from pathlib import Path

from .base import file_record, walk_images


def read(root: Path):
    for rel in walk_images(root, "*/*"):
        yield file_record("casia_webface", root, rel, rel.split("/")[0])

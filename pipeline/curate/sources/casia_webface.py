"""CASIA-WebFace: ``<7-digit identity>/<NNN>.jpg``."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for rel in walk_images(root, "*/*"):
        yield FileJob("casia_webface", root, rel, rel.split("/")[0])

"""Any tree of images (your own source): every image file below the root; no identities."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for rel in walk_images(root, "**/*"):
        yield FileJob("folder", root, rel)

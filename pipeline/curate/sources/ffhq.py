"""FFHQ: ``images1024x1024/<00000..69000>/<00000..69999>.png``; no identity labels."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for rel in walk_images(root, "images1024x1024/*/*.png"):
        yield FileJob("ffhq", root, rel)

"""EDFace-Celeb-1M (FH128): the high-resolution ``HR/*.png`` only; the low-resolution copies
(``LR_*``) are skipped. No identity labels."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for rel in walk_images(root, "HR/**/*"):
        yield FileJob("edface", root, rel)

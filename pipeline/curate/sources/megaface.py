"""MegaFace MF2: ``<flickr user id>/<photo>.jpg`` (tight crops; the JSON beside each image is
not needed). The identity is the folder; names hold '@' and dots, hence the re-keying."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for rel in walk_images(root, "*/*"):
        yield FileJob("megaface", root, rel, rel.split("/")[0])

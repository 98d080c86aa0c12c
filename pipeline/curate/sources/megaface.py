"""MegaFace MF2: ``<flickr user id>/<photo>.jpg`` (tight crops; the JSON beside each image is
not needed). The identity is the folder; names hold '@' and dots, hence the re-keying."""

from pathlib import Path

from .base import file_record, walk_images


def read(root: Path):
    for rel in walk_images(root, "*/*"):
        yield file_record("megaface", root, rel, rel.split("/")[0])

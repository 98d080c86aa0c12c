"""VGGFace2: ``train|test/<class>/<NNNN_NN>.jpg``; the identity is the class folder."""

from pathlib import Path

from .base import FileJob, walk_images


def read(root: Path):
    for split in ("train", "test"):
        for rel in walk_images(root, f"{split}/*/*"):
            yield FileJob("vggface2", root, rel, rel.split("/")[1])

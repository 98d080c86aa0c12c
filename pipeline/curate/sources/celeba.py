"""CelebA: ``img_align_celeba/000001.jpg`` with identities from ``identity_CelebA.txt``."""

from pathlib import Path

from .base import FileJob, read_lines, walk_images


def read(root: Path):
    identity = dict(line.split()[:2] for line in read_lines(root / "identity_CelebA.txt"))
    for rel in walk_images(root, "img_align_celeba/*"):
        yield FileJob("celeba", root, rel, identity.get(rel.rsplit("/", 1)[1], ""))

"""LAION-Face as img2dataset writes it: ``split_*/NNNNN.tar`` WebDataset shards whose image
members are ``<key>.jpg``. Failed downloads appear only in the parquet files, never as images."""

from pathlib import Path

from .base import TarJob


def read(root: Path):
    for tar_path in sorted(root.glob("split_*/*.tar")):
        yield TarJob("laion_face", tar_path, tar_path.relative_to(root).as_posix())

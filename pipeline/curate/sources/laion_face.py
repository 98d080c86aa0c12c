"""LAION-Face as img2dataset writes it: ``split_*/NNNNN.tar`` WebDataset shards whose image
members are ``<key>.jpg``. Failed downloads appear only in the parquet files, never as images."""

from pathlib import Path
import tarfile

from .base import IMAGE_EXTENSIONS, member_record


def read(root: Path):
    for tar_path in sorted(root.glob("split_*/*.tar")):
        rel_tar = tar_path.relative_to(root).as_posix()
        with tarfile.open(tar_path) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and Path(m.name).suffix.lower() in IMAGE_EXTENSIONS),
                             key=lambda m: m.name)
            for m in members:
                yield member_record("laion_face", tar_path, rel_tar, m.name, tar.extractfile(m).read())

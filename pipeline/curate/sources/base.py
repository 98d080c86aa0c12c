"""What every source reader yields, and the helpers readers share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...config import MissingInput
from ..images import Header, Rejected, probe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class Record:
    """One image of a source, as listed in the manifest."""

    key: str  # stable, unique across sources, no dots (WebDataset splits keys at dots)
    source: str
    path: str  # the image file, or the tar holding it
    member: str  # the tar member name, "" for plain files
    size: int  # bytes
    sig: str  # content signature: size + first and last 4 KiB (see :func:`signature`)
    width: int  # displayed size (EXIF orientation applied), of the crop when there is one; 0 if unreadable
    height: int
    identity: str  # the source's identity label, "" when the source has none
    crop: tuple[float, float, float, float] | None  # (x, y, w, h) face box to cut out, in displayed pixels
    error: str  # "" or the reason the header could not be read (empty, not_an_image, corrupt)


@dataclass(frozen=True)
class FileJob:
    """The header read of one file, to run wherever: ``job()`` -> its records. Readers list jobs
    (cheap: names from a directory walk or a metadata file), the scan runs them in parallel."""

    source: str
    root: Path
    rel: str
    identity: str = ""
    crop: tuple[float, float, float, float] | None = None

    def __call__(self) -> list[Record]:
        try:
            return [file_record(self.source, self.root, self.rel, self.identity, self.crop)]
        except IsADirectoryError:  # a folder named like an image (the walk does not stat: see walk_images)
            return []
        except FileNotFoundError:
            if (self.root / self.rel).is_symlink():  # a dangling link is not an image, as before the walk stopped statting
                return []
            raise  # a file a metadata list names but the tree lacks: the scan says so in one line


@dataclass(frozen=True)
class TarJob:
    """Every image member of one tar (sorted by name), as records."""

    source: str
    tar_path: Path
    rel_tar: str

    def __call__(self) -> list[Record]:
        import tarfile

        with tarfile.open(self.tar_path) as tar:
            members = sorted((m for m in tar.getmembers()
                              if m.isfile() and Path(m.name).suffix.lower() in IMAGE_EXTENSIONS), key=lambda m: m.name)
            return [member_record(self.source, self.tar_path, self.rel_tar, m.name, tar.extractfile(m).read())
                    for m in members]


def make_key(source: str, relpath: str) -> str:
    """``<source>-<16 hex digits of SHA-1(relpath)>``: stable as files come and go."""
    return f"{source}-{hashlib.sha1(relpath.encode()).hexdigest()[:16]}"


SIG_BYTES = 4096


def signature(size: int, head: bytes, tail: bytes) -> str:
    """What tells ``curate`` that an image changed: its size and its first and last 4 KiB, hashed.

    Not the modification time, which a copy, a ``touch`` or DVC's checkout of the demo world in a
    queued experiment changes without changing a byte (and which would re-run curation and
    pretraining for nothing); not a hash of every byte, which would read all of Face9M on every
    ``dvc repro``. An edit that keeps the size and both ends is missed: re-encoding or resizing
    an image changes them.
    """
    return hashlib.sha1(str(size).encode() + b"\0" + head + b"\0" + tail).hexdigest()[:16]


def file_record(source: str, root: Path, rel: str, identity: str = "",
                crop: tuple[float, float, float, float] | None = None) -> Record:
    """A record of the file ``root/rel``, its size read from the header only."""
    path = root / rel
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(SIG_BYTES)
        fh.seek(max(0, size - SIG_BYTES))
        sig = signature(size, head, fh.read(SIG_BYTES))
        fh.seek(0)
        return _record(source, rel, str(path), "", size, sig, fh, identity, crop)


def _record(source, rel, path, member, size, sig, fp, identity, crop) -> Record:
    width = height = 0
    error = ""
    try:
        header: Header = probe(fp)
        width, height = header.width, header.height
        if crop is not None:
            width, height = max(0, round(crop[2])), max(0, round(crop[3]))
    except Rejected as rej:
        error = rej.reason
    return Record(make_key(source, rel), source, path, member, size, sig, width, height, identity, crop, error)


def member_record(source: str, tar_path: Path, rel_tar: str, member: str, data: bytes) -> Record:
    import io

    sig = signature(len(data), data[:SIG_BYTES], data[-SIG_BYTES:])
    return _record(source, f"{rel_tar}:{member}", str(tar_path), member, len(data), sig, io.BytesIO(data), "", None)


def walk_images(root: Path, pattern: str = "**/*") -> Iterator[str]:
    """Relative paths under ``root`` matching ``pattern`` with an image extension, sorted. Names only:
    no stat per file here (on a shared filesystem that is the latency the scan's workers overlap);
    a folder with an image's name is dropped by its :class:`FileJob`."""
    for path in sorted(root.glob(pattern)):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            yield path.relative_to(root).as_posix()


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MissingInput(f"{path}: metadata file missing (expected in the source root)")
    return [line for line in path.read_text().splitlines() if line.strip()]


def capped(records: Iterable[Record], limit: int) -> Iterator[Record]:
    for i, rec in enumerate(records):
        if limit and i >= limit:
            return
        yield rec


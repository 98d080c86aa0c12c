"""Writing one Face9M shard: decode, resize, encode, tar; atomic and verifiable.

A shard is written to ``<name>.tar.tmp`` and renamed when complete, then its stats file
(``stats/<name>.json``: plan fingerprint, sample count, per-source counts, decode rejects,
SHA-256 of the tar) is written the same way. A shard whose tar and stats exist, whose stats
carry the planned fingerprint and whose tar still hashes to the recorded SHA-256 is finished;
anything else is rewritten. That is what lets a killed run resume with identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from .images import Rejected, encode_jpeg, load_face_bgr

TAR_MTIME = 0  # fixed member mtime: no wall-clock in the bytes


@dataclass(frozen=True)
class ShardSpec:
    index: int
    rows: tuple[dict, ...]  # manifest rows, sorted by key
    fingerprint: str
    shard_dir: str
    stats_dir: str
    image_size: int
    jpeg_quality: int

    @property
    def name(self) -> str:
        return f"face9m-{self.index:06d}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def finished_stats(spec: ShardSpec) -> dict | None:
    """The stats of an already finished, intact shard of this plan, else None."""
    tar, stats = Path(spec.shard_dir) / f"{spec.name}.tar", Path(spec.stats_dir) / f"{spec.name}.json"
    if not (tar.is_file() and stats.is_file()):
        return None
    try:
        recorded = json.loads(stats.read_text())
    except json.JSONDecodeError:
        return None
    if recorded.get("fingerprint") != spec.fingerprint or recorded.get("sha256") != file_sha256(tar):
        return None
    return recorded


class RawReader:
    """Reads a manifest row's bytes: a plain file, or a tar member (each tar opened once)."""

    def __init__(self):
        self._open: dict[str, tarfile.TarFile] = {}

    def read(self, path: str, member: str = "") -> bytes:
        if not member:
            return Path(path).read_bytes()
        if path not in self._open:
            self._open[path] = tarfile.open(path)
        return self._open[path].extractfile(member).read()

    def close(self) -> None:
        for tar in self._open.values():
            tar.close()
        self._open.clear()


def _crop(row: dict):
    if row["crop_w"] == row["crop_w"]:  # not NaN
        return (row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"])
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_shard(spec: ShardSpec) -> dict:
    """Write (or verify and skip) one shard; returns its stats."""
    done = finished_stats(spec)
    if done is not None:
        return {**done, "skipped": True}
    shard_dir, stats_dir = Path(spec.shard_dir), Path(spec.stats_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    stats_dir.mkdir(parents=True, exist_ok=True)
    final = shard_dir / f"{spec.name}.tar"
    tmp = final.with_name(final.name + ".tmp")
    reader = RawReader()
    rejected, by_source = [], {}
    try:
        with wds.TarWriter(str(tmp), mtime=TAR_MTIME, user="face9m", group="face9m") as sink:
            for row in spec.rows:
                try:
                    data = reader.read(row["path"], row["member"])
                    bgr = load_face_bgr(data, spec.image_size, _crop(row))
                except Rejected as rej:
                    rejected.append({"key": row["key"], "reason": rej.reason, "detail": rej.detail[:200]})
                    continue
                meta = {"source": row["source"], "identity": row["identity"], "path": row["path"], "member": row["member"]}
                sink.write({"__key__": row["key"], "jpg": encode_jpeg(bgr, spec.jpeg_quality),
                            "json": json.dumps(meta, sort_keys=True).encode()})
                by_source[row["source"]] = by_source.get(row["source"], 0) + 1
    finally:
        reader.close()
    os.replace(tmp, final)
    stats = {"shard": final.name, "fingerprint": spec.fingerprint, "planned": len(spec.rows),
             "samples": sum(by_source.values()), "by_source": dict(sorted(by_source.items())), "rejected": rejected,
             "bytes": final.stat().st_size, "sha256": file_sha256(final)}
    _atomic_write(stats_dir / f"{spec.name}.json", (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
    return {**stats, "skipped": False}

"""Writing one Face9M shard: decode, resize, encode, tar; atomic and verifiable.

A shard is written to ``<name>.tar.tmp`` and renamed when complete, then its stats file
(``stats/<name>.json``: plan fingerprint, sample count, per-source counts, decode rejects,
SHA-256 of the tar) is written the same way. A shard whose tar and stats exist, whose stats
carry the planned fingerprint and whose tar still hashes to the recorded SHA-256 is finished;
anything else is rewritten. That is what lets a killed run resume with identical bytes.
Re-hashing every finished tar on resume would read the whole output again, so a shard that was
verified once gets a record in ``resume/<name>.json`` (its size, mtime and SHA-256, beside the DVC
outputs, not in them): while the tar's size and mtime still match it, it is trusted without
reading (``curate.rehash_finished: true`` re-hashes regardless).

Faults: a source file that cannot be read any more (deleted or made unreadable since the scan) is
a reject with reason ``unreadable``, listed with the others; a failed write (a full disk) removes
the partial file and raises :class:`OutputError`; a worker killed mid-shard leaves only a
``.tmp`` file, which the retried task (Ray retries tasks whose worker died) writes over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tarfile
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

import cv2

from .. import region_maps
from ..config import OutputError
from .images import Rejected, encode_jpeg, load_face_bgr, probe

TAR_MTIME = 0  # fixed member mtime: no wall-clock in the bytes
READ_ERRORS = (OSError, KeyError, tarfile.TarError)  # a file or tar member gone, or unreadable
# Fault injection for the retry test: the first task to get half-way through shard 0 creates this
# file and SIGKILLs its own worker process, as an OOM killer or a lost node would.
KILL_WORKER_ONCE = "FMAE_KILL_WORKER_ONCE"


@dataclass(frozen=True)
class ShardSpec:
    """One shard to write. Its rows (sorted by key) are ``rows`` when given, else row group
    ``row_group`` of the plan file ``plan`` (:func:`.plan.write_plan`): a task gets a file to read,
    not a copy of the rows."""

    index: int
    fingerprint: str
    shard_dir: str
    stats_dir: str
    image_size: int
    jpeg_quality: int
    plan: str = ""
    row_group: int = -1
    rows: tuple[dict, ...] = ()
    rehash: bool = False  # re-hash a finished tar even when its resume record matches

    @property
    def name(self) -> str:
        return f"face9m-{self.index:06d}"

    def members(self) -> list[dict]:
        if self.rows or not self.plan:
            return list(self.rows)
        import pyarrow.parquet as pq

        table = pq.ParquetFile(self.plan).read_row_group(self.row_group)
        return table.to_pandas().fillna({"member": "", "identity": "", "regions": ""}).to_dict("records")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resume_record(shard_dir: str | Path, name: str) -> Path:
    """Where a verified shard's size, mtime and SHA-256 are kept (beside the shards, not a DVC output)."""
    return Path(shard_dir).parent / "resume" / f"{name}.json"


def finished_stats(spec: ShardSpec) -> dict | None:
    """The stats of an already finished, intact shard of this plan, else None."""
    tar, stats = Path(spec.shard_dir) / f"{spec.name}.tar", Path(spec.stats_dir) / f"{spec.name}.json"
    if not (tar.is_file() and stats.is_file()):
        return None
    try:
        recorded = json.loads(stats.read_text())
    except json.JSONDecodeError:
        return None
    if recorded.get("fingerprint") != spec.fingerprint:
        return None
    st, record = tar.stat(), resume_record(spec.shard_dir, spec.name)
    seen = {"fingerprint": spec.fingerprint, "sha256": recorded.get("sha256"), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        if not spec.rehash and json.loads(record.read_text()) == seen:
            return recorded  # verified before, and the file has not changed since
    if recorded.get("sha256") != file_sha256(tar):
        return None
    _remember(record, seen)
    return recorded


def _remember(record: Path, seen: dict) -> None:
    with contextlib.suppress(OSError):  # only a speed-up: a read-only folder means re-hashing next time
        record.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(record, json.dumps(seen, sort_keys=True).encode())


class RawReader:
    """Reads a manifest row's bytes: a plain file, or a tar member (each tar opened once)."""

    def __init__(self):
        self._open: dict[str, tarfile.TarFile] = {}
        self.bytes_read = 0  # image bytes returned: what curation costs in source reads

    def read(self, path: str, member: str = "") -> bytes:
        if not member:
            data = Path(path).read_bytes()
        else:
            if path not in self._open:
                self._open[path] = tarfile.open(path)
            data = self._open[path].extractfile(member).read()
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        for tar in self._open.values():
            tar.close()
        self._open.clear()


def _crop(row: dict):
    if row["crop_w"] == row["crop_w"]:  # not NaN
        return (row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"])
    return None


def region_png(row: dict, data: bytes, size: int) -> bytes:
    """The row's region map cut and resized as its image is (nearest neighbour: labels stay labels), as PNG."""
    header = probe(data)
    try:
        labels = region_maps.read(row["regions"], (header.height, header.width))
    except region_maps.RegionMapError as err:
        raise Rejected("bad_region_map", str(err)) from None
    crop = _crop(row)
    if crop:
        x0, y0 = max(0, round(crop[0])), max(0, round(crop[1]))
        labels = labels[y0:max(y0 + 1, round(crop[1] + crop[3])), x0:max(x0 + 1, round(crop[0] + crop[2]))]
    ok, buf = cv2.imencode(".png", cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG")
    return buf.tobytes()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _maybe_kill_worker() -> None:
    marker = os.environ.get(KILL_WORKER_ONCE)
    if marker:
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def write_shard(spec: ShardSpec) -> dict:
    """Write (or verify and skip) one shard; returns its stats."""
    done = finished_stats(spec)
    if done is not None:
        return {**done, "skipped": True, "source_bytes": 0}
    shard_dir, stats_dir = Path(spec.shard_dir), Path(spec.stats_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    stats_dir.mkdir(parents=True, exist_ok=True)
    final = shard_dir / f"{spec.name}.tar"
    tmp = final.with_name(final.name + ".tmp")
    reader = RawReader()
    rows = spec.members()
    rejected, by_source, with_regions = [], {}, {}
    sink = None

    @contextlib.contextmanager
    def output():
        """A failed write (ENOSPC, EROFS, EACCES) removes this shard's files and raises OutputError."""
        try:
            yield
        except OSError as err:
            if sink is not None:
                with contextlib.suppress(OSError):
                    sink.close()  # marks the tar closed, so nothing writes to it again at exit
            for path in (tmp, final, stats_dir / f"{spec.name}.json.tmp", stats_dir / f"{spec.name}.json"):
                path.unlink(missing_ok=True)
            raise OutputError(f"{shard_dir}: cannot write {spec.name} ({err.strerror or err}); shards already "
                              "finished are kept and verified, so free space and re-run to resume") from None

    try:
        with output():
            sink = wds.TarWriter(str(tmp), mtime=TAR_MTIME, user="face9m", group="face9m")
        for n, row in enumerate(rows):
            if spec.index == 0 and n == len(rows) // 2:
                _maybe_kill_worker()
            try:
                data = reader.read(row["path"], row["member"])
            except READ_ERRORS as err:
                rejected.append({"key": row["key"], "reason": "unreadable", "detail": f"since the scan: {err}"[:200]})
                continue
            try:
                bgr = load_face_bgr(data, spec.image_size, _crop(row))
                regions = region_png(row, data, spec.image_size) if row.get("regions") else None
            except Rejected as rej:
                rejected.append({"key": row["key"], "reason": rej.reason, "detail": rej.detail[:200]})
                continue
            except OSError as err:  # the map was deleted or made unreadable since the scan
                rejected.append({"key": row["key"], "reason": "unreadable", "detail": f"region map since the scan: {err}"[:200]})
                continue
            meta = {"source": row["source"], "identity": row["identity"], "path": row["path"], "member": row["member"]}
            sample = {"__key__": row["key"], "jpg": encode_jpeg(bgr, spec.jpeg_quality),
                      "json": json.dumps(meta, sort_keys=True).encode()}
            if regions is not None:
                sample["regions.png"] = regions
                with_regions[row["source"]] = with_regions.get(row["source"], 0) + 1
            with output():
                sink.write(sample)
            by_source[row["source"]] = by_source.get(row["source"], 0) + 1
        with output():
            sink.close()
            os.replace(tmp, final)
            stats = {"shard": final.name, "fingerprint": spec.fingerprint, "planned": len(rows),
                     "samples": sum(by_source.values()), "by_source": dict(sorted(by_source.items())),
                     "regions_by_source": dict(sorted(with_regions.items())),
                     "rejected": rejected, "bytes": final.stat().st_size, "sha256": file_sha256(final)}
            _atomic_write(stats_dir / f"{spec.name}.json", (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
        st = final.stat()
        _remember(resume_record(shard_dir, spec.name),
                  {"fingerprint": spec.fingerprint, "sha256": stats["sha256"], "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    finally:
        reader.close()
    return {**stats, "skipped": False, "source_bytes": reader.bytes_read}  # not in the stats file: run-specific

"""Stage ``scan``: list every image of the enabled sources into a manifest (headers only).

Raw trees of millions of files are never DVC dependencies; this cheap, always-run stage turns
them into one file, ``data/face9m/manifest.parquet``, whose bytes change only when the
sources do, so ``curate`` re-runs only then. Columns: key, source, path, member, size, sig (content
signature: size + first and last 4 KiB, not the mtime, so a checkout or copy changes nothing),
width, height, identity, crop_x/y/w/h (NaN without a crop), error (header unreadable: empty,
not_an_image, corrupt), regions and regions_sig (the image's region map and a hash of its bytes, ""
without one: where ``sources.<name>.regions`` is set, :mod:`pipeline.region_maps`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import paths, region_maps
from ..config import MissingInput, Params, require_dir
from .manifest import ROW_GROUP
from .sources import source_jobs

log = logging.getLogger(__name__)
MANIFEST = paths.MANIFEST
COLUMNS = ["key", "source", "path", "member", "size", "sig", "width", "height", "identity",
           "crop_x", "crop_y", "crop_w", "crop_h", "error", "regions", "regions_sig"]


BATCH = 256  # header reads per task: the pool's per-task overhead is paid once per batch


def scan_blocks(params: Params, block: int = ROW_GROUP) -> Iterator[pd.DataFrame]:
    """The manifest in blocks of ``block`` rows (the last one shorter), in the sources' stable order.

    Header reads are file opens: on a shared filesystem their latency, not the CPU, is the limit, so
    they run in ``sources.scan_workers`` processes, :data:`BATCH` files a task, in order, so the
    manifest's bytes do not depend on the number of workers; the driver holds one block at a time."""
    enabled = params.sources.enabled()
    if not enabled:
        raise ValueError("params.yaml: sources: no source is enabled (set sources.<name>.enabled: true)")
    for name, src in enabled.items():  # every root checked before any work
        require_dir(src.root, f"sources.{name}.root")
        if src.regions:
            require_dir(src.regions, f"sources.{name}.regions")
    workers = params.sources.scan_workers or os.cpu_count() or 1
    pending: list[tuple] = []
    with contextlib.ExitStack() as stack, tqdm(desc="scan", unit="img", mininterval=1.0) as bar:
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers)) if workers > 1 else None
        for name, src in enabled.items():
            count = 0
            try:
                for rows in _run(pool, source_jobs(name, src.root)):
                    if src.max_images:
                        rows = rows[:src.max_images - count]
                    rows = _with_regions(rows, src.root, src.regions)
                    pending += rows
                    count += len(rows)
                    bar.update(len(rows))
                    while len(pending) >= block:
                        yield pd.DataFrame(pending[:block], columns=COLUMNS)
                        del pending[:block]
                    if src.max_images and count >= src.max_images:
                        break
            except FileNotFoundError as err:
                raise MissingInput(f"sources.{name}.root = {src.root!r}: {err}") from None
            if count == 0:
                log.warning("sources.%s.root = %r holds no images for the %s reader", name, src.root, name)
    if pending:
        yield pd.DataFrame(pending, columns=COLUMNS)


def scan(params: Params) -> pd.DataFrame:
    """The whole manifest in memory (small worlds, tests); :func:`run` streams it to the file."""
    blocks = list(scan_blocks(params))
    df = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=COLUMNS)
    _check_keys(df.key)
    return df


def _check_keys(keys) -> None:
    keys = pd.Series(keys)
    dupes = keys[keys.duplicated()]
    if len(dupes):
        raise RuntimeError(f"duplicate manifest keys (two sources share a root?): {list(dupes[:5])}")


def _rows(jobs: list) -> list[tuple]:
    """The manifest rows of a batch of jobs (run in a worker: plain tuples travel back cheaply)."""
    out = []
    for job in jobs:
        for rec in job():
            crop = rec.crop or (float("nan"),) * 4
            out.append((rec.key, rec.source, rec.path, rec.member, rec.size, rec.sig, rec.width, rec.height,
                        rec.identity, *crop, rec.error))
    return out


def _with_regions(rows: list[tuple], root: str, regions: str) -> list[tuple]:
    """Each row with its region map's path and signature appended ("", "" without one)."""
    if not regions:
        return [(*row, "", "") for row in rows]
    out = []
    for row in rows:
        rel = Path(row[2]).relative_to(root).as_posix() + (f":{row[3]}" if row[3] else "")
        out.append((*row, *region_maps.find(regions, rel)))
    return out


def _run(pool, jobs: Iterable) -> Iterator[list[tuple]]:
    """Rows of the jobs in batches of :data:`BATCH`, in the jobs' order, in ``pool`` or here. The
    pool's feeder thread lists the jobs while the workers read headers; it blocks when the pipe to
    the workers is full, so only a few batches are ever listed ahead."""
    batches = iter(lambda it=iter(jobs): list(itertools.islice(it, BATCH)), [])
    yield from (map(_rows, batches) if pool is None else pool.imap(_rows, batches))


def write_manifest(df: pd.DataFrame, path: Path, row_group: int = ROW_GROUP) -> None:
    """The manifest as Parquet in row groups of ``row_group`` rows (curation tasks read whole groups)."""
    df.to_parquet(path, index=False, row_group_size=row_group)


def stream_manifest(blocks: Iterable[pd.DataFrame], path: Path) -> int:
    """Write ``blocks`` (each a row group) as one Parquet file, the same bytes as :func:`write_manifest`
    of their concatenation; checks that the keys are unique. Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    writer, rows = None, 0
    try:
        for df in blocks:
            table = pa.Table.from_pandas(df, preserve_index=False)
            writer = writer or pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table, row_group_size=len(df))
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        write_manifest(pd.DataFrame(columns=COLUMNS), tmp)
    _check_keys(pq.read_table(tmp, columns=["key"]).column("key").to_pandas())
    os.replace(tmp, path)
    return rows


def run(params: Params) -> None:
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    stream_manifest(scan_blocks(params), MANIFEST)
    counts = pq_counts(MANIFEST)
    print(f"scan: {sum(counts.values())} images in {MANIFEST} ({', '.join(f'{k} {v}' for k, v in counts.items())})")


def pq_counts(path: Path) -> dict[str, int]:
    """Images per source in a manifest file, in the manifest's order."""
    import pyarrow.parquet as pq

    source = pq.read_table(path, columns=["source"]).column("source").to_pandas()
    return source.value_counts(sort=False).reindex(pd.unique(source)).to_dict()

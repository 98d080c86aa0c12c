"""Stage ``scan``: list every image of the enabled sources into a manifest (headers only).

Raw trees of millions of files are never DVC dependencies; this cheap, always-run stage turns
them into one file, ``data/face9m/manifest.parquet``, whose bytes change only when the
sources do, so ``curate`` re-runs only then. Columns: key, source, path, member, size, sig (content
signature: size + first and last 4 KiB, not the mtime, so a checkout or copy changes nothing),
width, height, identity, crop_x/y/w/h (NaN without a crop), error (header unreadable: empty,
not_an_image, corrupt).
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

from ..config import MissingInput, Params, require_dir
from .manifest import ROW_GROUP
from .sources import source_jobs

log = logging.getLogger(__name__)
MANIFEST = Path("data/face9m/manifest.parquet")
COLUMNS = ["key", "source", "path", "member", "size", "sig", "width", "height", "identity",
           "crop_x", "crop_y", "crop_w", "crop_h", "error"]


WINDOW = 65_536  # jobs handed to the pool at a time: bounded memory, order kept


def scan(params: Params) -> pd.DataFrame:
    enabled = params.sources.enabled()
    if not enabled:
        raise ValueError("params.yaml: sources: no source is enabled (set sources.<name>.enabled: true)")
    for name, src in enabled.items():  # every root checked before any work
        require_dir(src.root, f"sources.{name}.root")
    workers = params.sources.scan_workers or os.cpu_count() or 1
    rows = []
    with contextlib.ExitStack() as stack, tqdm(desc="scan", unit="img", mininterval=1.0) as bar:
        # header reads are file opens: on a shared filesystem their latency, not the CPU, is the limit,
        # so they run in ``workers`` processes, in order (imap), so the manifest's bytes do not depend on it
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers)) if workers > 1 else None
        for name, src in enabled.items():
            before = len(rows)
            try:
                for records in _run(pool, workers, source_jobs(name, src.root)):
                    for rec in records:
                        if src.max_images and len(rows) - before >= src.max_images:
                            break
                        crop = rec.crop or (float("nan"),) * 4
                        rows.append((rec.key, rec.source, rec.path, rec.member, rec.size, rec.sig, rec.width,
                                     rec.height, rec.identity, *crop, rec.error))
                        bar.update()
                    if src.max_images and len(rows) - before >= src.max_images:
                        break
            except FileNotFoundError as err:
                raise MissingInput(f"sources.{name}.root = {src.root!r}: {err}") from None
            if len(rows) == before:
                log.warning("sources.%s.root = %r holds no images for the %s reader", name, src.root, name)
    df = pd.DataFrame(rows, columns=COLUMNS)
    dupes = df.key[df.key.duplicated()]
    if len(dupes):
        raise RuntimeError(f"duplicate manifest keys (two sources share a root?): {list(dupes[:5])}")
    return df


def _call(job):
    return job()


def _run(pool, workers: int, jobs: Iterable) -> Iterator[list]:
    """Each job's records, in the jobs' order: in ``pool`` a window of jobs at a time, or here."""
    if pool is None:
        yield from map(_call, jobs)
        return
    jobs = iter(jobs)
    while window := list(itertools.islice(jobs, WINDOW)):
        yield from pool.imap(_call, window, chunksize=max(1, min(64, len(window) // (8 * workers))))


def write_manifest(df: pd.DataFrame, path: Path, row_group: int = ROW_GROUP) -> None:
    """The manifest as Parquet in row groups of ``row_group`` rows (curation tasks read whole groups)."""
    df.to_parquet(path, index=False, row_group_size=row_group)


def run(params: Params) -> None:
    df = scan(params)
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(df, MANIFEST)
    counts = df.groupby("source", sort=False).size().to_dict()
    print(f"scan: {len(df)} images in {MANIFEST} ({', '.join(f'{k} {v}' for k, v in counts.items())})")

"""Filtering, de-duplication and the shard plan, decided up front from the manifest.

Planning before any parallel work is what makes the shards independent of how many workers
write them: each shard's members are fixed here (seeded shuffle of the kept keys, cut into
``shard_size`` runs, sorted within a shard), and its bytes depend on nothing else.

At Face9M size (~9M rows) nothing here holds a string per row: rows are their positions in the
manifest, keys are their ranks in sorted key order (:func:`.manifest.read_planning`), sources and
header errors are categoricals, and the decisions are NumPy masks. Keys, paths and members are
looked up by row (:func:`.manifest.take`) only for the rejects and, a pass at a time, for the plan
file the shard tasks read (:func:`write_plan`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..config import CurateConfig

FORMAT_VERSION = 3  # bump when the bytes written for the same plan change
REJECT_COLUMNS = ["key", "source", "path", "member", "reason", "detail", "duplicate_of"]
WRITER_COLUMNS = ["path", "member", "size", "sig", "crop_x", "crop_y", "crop_w", "crop_h", "identity", "regions", "regions_sig"]
PLAN_ROWS_IN_MEMORY = 1_000_000  # rows of writer columns the driver holds at once while writing the plan

Lookup = Callable[[np.ndarray, list], pd.DataFrame]  # (rows, columns) -> those rows' columns, in that order


def decide(frame: pd.DataFrame, cfg: CurateConfig, content: np.ndarray,
           near: pd.api.extensions.ExtensionArray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(kept, rejects, near-duplicate counts per source pair) of the manifest.

    ``frame``: the planning columns of :func:`.manifest.read_planning` (row, rank, source, width,
    height, error), in manifest order (sources in params order, each in its reader's sorted order).
    ``content``: an int id per row, equal exactly for identical bytes (:func:`group_ids`); ``near``:
    the difference hash per row as a nullable ``Int64`` array (NA: none), or None when
    near-duplicates are off. Order of the rules: unreadable header, aspect, minimum side, exact
    duplicate, near-duplicate across sources (identical 64-bit difference hash). Of duplicates, the
    row listed first is kept.

    ``kept``: row, rank, source, sorted by rank (key order). ``rejects``: row, reason, detail and
    ``duplicate_row`` (the kept row it duplicates, -1 for other reasons), in rule order;
    :func:`describe_rejects` adds keys and paths.
    """
    width, height, rows = frame.width.to_numpy(), frame.height.to_numpy(), frame.row.to_numpy()
    rejected = []

    def reject(index: np.ndarray, reason: str, detail="", duplicate_row=-1) -> None:
        if len(index):
            rejected.append(pd.DataFrame({"row": rows[index], "reason": reason, "detail": detail,
                                          "duplicate_row": duplicate_row}))

    bad = (frame.error != "").to_numpy()
    for reason in sorted(set(frame.error[bad].astype(str))):
        reject(np.flatnonzero((frame.error == reason).to_numpy()), reason)
    alive = ~bad
    ratio = np.maximum(width, height) / np.maximum(np.minimum(width, height), 1)
    wide = np.flatnonzero(alive & (ratio > cfg.max_aspect))
    reject(wide, "aspect", detail=[f"{r:.3f} > {cfg.max_aspect}" for r in ratio[wide]])
    alive[wide] = False
    del ratio
    if cfg.min_side:
        small = np.flatnonzero(alive & (np.minimum(width, height) < cfg.min_side))
        reject(small, "too_small", detail=f"short side < {cfg.min_side}")
        alive[small] = False
    index = np.flatnonzero(alive)
    first = _first_of_group(np.asarray(content)[index], index)
    dup = first != index
    reject(index[dup], "duplicate", detail="same bytes", duplicate_row=rows[first[dup]])
    alive[index[dup]] = False
    pairs: dict[str, int] = {}
    if near is not None:
        index = np.flatnonzero(alive & ~np.asarray(pd.isna(near), dtype=bool))
        first = _first_of_group(np.asarray(near[index], dtype=np.int64), index)
        source, names = pd.factorize(frame.source)
        near_dup = (first != index) & (source[first] != source[index])
        pair = pd.Series([f"{names[a]}~{names[b]}" for a, b in zip(source[first[near_dup]], source[index[near_dup]])])
        pairs = {k: int(v) for k, v in pair.value_counts().sort_index().items()}
        reject(index[near_dup], "near_duplicate", detail="same difference hash", duplicate_row=rows[first[near_dup]])
        alive[index[near_dup]] = False
    columns = {"row": np.int64, "reason": str, "detail": str, "duplicate_row": np.int64}
    rejects = (pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=list(columns))).astype(columns)
    kept = frame.loc[alive, ["row", "rank", "source"]].sort_values("rank", ignore_index=True)
    return kept, rejects, pairs


def _first_of_group(groups: np.ndarray, index: np.ndarray) -> np.ndarray:
    """For each element, the ``index`` of the first element (in order) with the same group value."""
    if not len(groups):
        return index.copy()
    _, first_pos, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return index[first_pos][inverse.reshape(-1)]


def group_ids(values: np.ndarray) -> np.ndarray:
    """An int64 id per value, equal for equal values; a missing value (None/NaN) is its own group."""
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    missing = codes < 0
    codes = codes.astype(np.int64)
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(missing.sum())
    return codes


def describe_rejects(rejects: pd.DataFrame, lookup: Lookup) -> pd.DataFrame:
    """``rejects`` with the manifest's key, source, path and member, and the key they duplicate:
    the columns of :data:`REJECT_COLUMNS`, sorted by source and key."""
    where = lookup(rejects.row.to_numpy(), ["key", "source", "path", "member"]).reset_index(drop=True)
    out = pd.concat([where, rejects[["reason", "detail"]].reset_index(drop=True)], axis=1)
    dup = rejects.duplicate_row.to_numpy() >= 0
    out["duplicate_of"] = ""
    if dup.any():
        out.loc[dup, "duplicate_of"] = lookup(rejects.duplicate_row.to_numpy()[dup], ["key"]).key.to_numpy()
    out = out.astype({c: str for c in REJECT_COLUMNS})
    return out.sort_values(["source", "key"], ignore_index=True)[REJECT_COLUMNS]


def apply_filters(manifest: pd.DataFrame, cfg: CurateConfig, sha256: pd.Series,
                  dhash: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """:func:`decide` on a manifest frame in memory, with ``sha256`` and ``dhash`` given per key (the
    form tests and small tools have): (kept keys and sources in key order, described rejects, pairs)."""
    manifest = manifest.reset_index(drop=True)
    frame = manifest[["source", "width", "height", "error"]].assign(
        row=np.arange(len(manifest)), rank=manifest.key.rank(method="first").to_numpy(dtype=np.int64) - 1)
    content = group_ids(manifest.key.map(sha256).to_numpy(dtype=object))
    near = None if dhash is None else pd.array(manifest.key.map(dhash).tolist(), dtype="Int64")
    kept, rejects, pairs = decide(frame, cfg, content, near)
    lookup = lambda rows, cols: manifest.iloc[rows][cols]  # noqa: E731
    kept = manifest.iloc[kept.row.to_numpy()][["key", "source"]].reset_index(drop=True)
    return kept, describe_rejects(rejects, lookup), pairs


def plan_shards(kept: pd.DataFrame, cfg: CurateConfig) -> pd.DataFrame:
    """``kept`` (row, rank, source; any order) with a ``shard`` column: a seeded shuffle of the kept
    images in key order, ``shard_size`` per shard; sorted by shard, and by key within a shard."""
    kept = kept.sort_values("rank", ignore_index=True)
    order = np.random.default_rng(cfg.seed).permutation(len(kept))
    shard = np.empty(len(kept), dtype=np.int64)
    shard[order] = np.arange(len(kept)) // cfg.shard_size
    return kept.assign(shard=shard).iloc[np.argsort(shard, kind="stable")].reset_index(drop=True)


def shard_fingerprint(rows: pd.DataFrame, cfg: CurateConfig) -> str:
    """Hash of everything that determines a shard's bytes: its inputs and the output settings."""
    cols = ["key", "path", "member", "size", "sig", "crop_x", "crop_y", "crop_w", "crop_h", "source", "identity",
            "regions", "regions_sig"]
    payload = {"rows": rows[cols].astype(str).values.tolist(), "image_size": cfg.image_size,
               "jpeg_quality": cfg.jpeg_quality, "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def write_plan(planned: pd.DataFrame, lookup: Lookup, cfg: CurateConfig, path,
               rows_in_memory: int | None = None) -> list[tuple[int, int, str]]:
    """The plan file the shard tasks read: one Parquet row group per shard, in shard order, with the
    key, source, shard, manifest row and everything the writer needs (:data:`WRITER_COLUMNS`).

    ``planned`` is :func:`plan_shards`' output. The strings come from the manifest (``lookup``) in
    passes of about ``rows_in_memory`` rows, so the driver never holds all of them at once.
    Returns (shard, rows, fingerprint) per shard, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_in_memory = rows_in_memory or PLAN_ROWS_IN_MEMORY
    shards = planned.shard.to_numpy()
    bounds = np.flatnonzero(np.diff(shards, prepend=-1, append=-1))  # where each shard's run starts (and the end)
    out: list[tuple[int, int, str]] = []
    writer = None
    try:
        first = 0
        while first < len(bounds) - 1:
            last = first + 1  # shards [first, last) of this pass, at least one
            while last < len(bounds) - 1 and bounds[last + 1] - bounds[first] <= rows_in_memory:
                last += 1
            part = planned.iloc[bounds[first]:bounds[last]]
            cols = lookup(part.row.to_numpy(), ["key", "source", *WRITER_COLUMNS]).reset_index(drop=True)
            cols.insert(2, "shard", part.shard.to_numpy())
            cols.insert(3, "row", part.row.to_numpy())
            for index, rows in cols.groupby("shard", sort=True):
                table = pa.Table.from_pandas(rows, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(path), table.schema)
                writer.write_table(table, row_group_size=len(rows))
                out.append((int(index), len(rows), shard_fingerprint(rows, cfg)))
            del cols, part
            first = last
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # nothing kept: an empty plan of the same columns
        pd.DataFrame(columns=["key", "source", "shard", "row", *WRITER_COLUMNS]).to_parquet(path, index=False)
    return out

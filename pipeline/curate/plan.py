"""Filtering, de-duplication and the shard plan, decided up front from the manifest.

Planning before any parallel work is what makes the shards independent of how many workers
write them: each shard's members are fixed here (seeded shuffle of the kept keys, cut into
``shard_size`` runs, sorted within a shard), and its bytes depend on nothing else.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from ..config import CurateConfig

FORMAT_VERSION = 3  # bump when the bytes written for the same plan change
REJECT_COLUMNS = ["key", "source", "path", "member", "reason", "detail", "duplicate_of"]


def apply_filters(manifest: pd.DataFrame, cfg: CurateConfig, sha256: pd.Series,
                  dhash: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(kept, rejects, near-duplicate counts per source pair) of a manifest frame, with ``sha256`` and
    ``dhash`` given per key (the form tests and small tools have): :func:`decide` on that frame."""
    frame = manifest.assign(row=np.arange(len(manifest)))
    content = group_ids(frame.key.map(sha256).to_numpy(dtype=object))
    near = None if dhash is None else pd.array(frame.key.map(dhash).tolist(), dtype="Int64")
    kept, rejects, pairs = decide(frame, cfg, content, near)
    where = manifest[["path", "member"]].reset_index(drop=True)
    rejects = rejects.join(where, on="row")
    return kept.drop(columns="row"), rejects[REJECT_COLUMNS], pairs


def group_ids(values: np.ndarray) -> np.ndarray:
    """An int64 id per value, equal for equal values; a missing value (None/NaN) is its own group."""
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    missing = codes < 0
    codes = codes.astype(np.int64)
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(missing.sum())
    return codes


def decide(frame: pd.DataFrame, cfg: CurateConfig, content: np.ndarray,
           near: pd.api.extensions.ExtensionArray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(kept, rejects, near-duplicate counts per source pair).

    ``frame`` holds the manifest's planning columns (key, source, width, height, error) and ``row``,
    its position in the manifest, in manifest order (sources in params order, each in its reader's
    sorted order). ``content`` gives an int id per row, equal exactly for identical bytes (see
    :func:`group_ids`); ``near`` the difference hash per row as a nullable ``Int64`` array (NA: none),
    or None when near-duplicates are off. Order of the rules: unreadable header, aspect, minimum side, exact
    duplicate, near-duplicate across sources (identical 64-bit difference hash). Of duplicates, the
    row listed first is kept. ``kept``: key, source, row, sorted by key. ``rejects``: key, source,
    row, reason, detail, duplicate_of (path and member are the manifest's, by ``row``).
    """
    width, height = frame.width.to_numpy(), frame.height.to_numpy()
    keys, rows = frame.key, frame.row.to_numpy()
    rejected = []

    def reject(mask_or_index, reason, detail="", duplicate_of=""):
        index = np.flatnonzero(mask_or_index) if np.asarray(mask_or_index).dtype == bool else mask_or_index
        if len(index):
            rejected.append(pd.DataFrame({"key": keys.iloc[index].astype(str).to_numpy(),
                                          "source": frame.source.iloc[index].astype(str).to_numpy(),
                                          "row": rows[index], "reason": reason, "detail": detail,
                                          "duplicate_of": duplicate_of}))

    bad = (frame.error != "").to_numpy()
    for reason in sorted(set(frame.error[bad].astype(str))):
        reject((frame.error == reason).to_numpy(), reason)
    alive = ~bad
    ratio = np.maximum(width, height) / np.maximum(np.minimum(width, height), 1)
    wide = alive & (ratio > cfg.max_aspect)
    reject(wide, "aspect", detail=[f"{r:.3f} > {cfg.max_aspect}" for r in ratio[wide]])
    alive &= ~wide
    if cfg.min_side:
        small = alive & (np.minimum(width, height) < cfg.min_side)
        reject(small, "too_small", detail=f"short side < {cfg.min_side}")
        alive &= ~small
    # exact duplicates: of each content group, the row listed first (smallest row) is kept
    index = np.flatnonzero(alive)
    first = _first_of_group(np.asarray(content)[index], index)
    dup = first != index
    reject(index[dup], "duplicate", detail="same bytes", duplicate_of=keys.iloc[first[dup]].astype(str).to_numpy())
    alive[index[dup]] = False
    pairs: dict[str, int] = {}
    if near is not None:
        has = np.asarray(pd.isna(near), dtype=bool) == False  # noqa: E712 (an array, not a truth value)
        index = np.flatnonzero(alive & has)
        first = _first_of_group(np.asarray(near[index], dtype=np.int64), index)
        source, names = pd.factorize(frame.source)
        near_dup = (first != index) & (source[first] != source[index])
        pair = pd.Series([f"{names[a]}~{names[b]}" for a, b in zip(source[first[near_dup]], source[index[near_dup]])])
        pairs = {k: int(v) for k, v in pair.value_counts().sort_index().items()}
        reject(index[near_dup], "near_duplicate", detail="same difference hash",
               duplicate_of=keys.iloc[first[near_dup]].astype(str).to_numpy())
        alive[index[near_dup]] = False
    columns = ["key", "source", "row", "reason", "detail", "duplicate_of"]
    rejects = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=columns)
    rejects = rejects[columns].astype({"key": str, "source": str, "reason": str, "detail": str, "duplicate_of": str})
    kept = frame.loc[alive, ["key", "source", "row"]].sort_values("key", ignore_index=True)
    return kept, rejects, pairs


def _first_of_group(groups: np.ndarray, index: np.ndarray) -> np.ndarray:
    """For each element, the ``index`` of the first element (in order) with the same group value."""
    if not len(groups):
        return index.copy()
    _, first_pos, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return index[first_pos][inverse.reshape(-1)]


def plan_shards(kept: pd.DataFrame, cfg: CurateConfig) -> pd.DataFrame:
    """``kept`` with a ``shard`` column: seeded shuffle, ``shard_size`` per shard, keys sorted within."""
    kept = kept.sort_values("key", ignore_index=True)
    order = np.random.default_rng(cfg.seed).permutation(len(kept))
    shard = np.empty(len(kept), dtype=np.int64)
    shard[order] = np.arange(len(kept)) // cfg.shard_size
    return kept.assign(shard=shard).iloc[np.argsort(shard, kind="stable")].reset_index(drop=True)  # keys sorted within


def shard_fingerprint(rows: pd.DataFrame, cfg: CurateConfig) -> str:
    """Hash of everything that determines a shard's bytes: its inputs and the output settings."""
    cols = ["key", "path", "member", "size", "sig", "crop_x", "crop_y", "crop_w", "crop_h", "source", "identity"]
    payload = {"rows": rows[cols].astype(str).values.tolist(), "image_size": cfg.image_size,
               "jpeg_quality": cfg.jpeg_quality, "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


WRITER_COLUMNS = ["path", "member", "size", "sig", "crop_x", "crop_y", "crop_w", "crop_h", "identity"]
PLAN_ROWS_IN_MEMORY = 1_000_000  # rows of writer columns the driver holds at once while writing the plan


def write_plan(manifest_path, planned: pd.DataFrame, cfg: CurateConfig, path,
               rows_in_memory: int | None = None) -> list[tuple[int, int, str]]:
    """The plan file the shard tasks read: one Parquet row group per shard, in shard order, with the
    key, source, shard and everything the writer needs of each row (:data:`WRITER_COLUMNS`).

    ``planned`` is :func:`plan_shards`' output (key, source, row, shard). The writer columns come from
    the manifest in passes of about ``rows_in_memory`` rows, so the driver never holds the manifest's
    paths all at once. Returns (shard, rows, fingerprint) per shard, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .manifest import take

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
            cols = take(manifest_path, part.row.to_numpy(), WRITER_COLUMNS)
            part = pd.concat([part[["key", "source", "shard"]].reset_index(drop=True).astype({"key": str, "source": str}),
                              cols.reset_index(drop=True)], axis=1)
            for index, rows in part.groupby("shard", sort=True):
                table = pa.Table.from_pandas(rows, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(path), table.schema)
                writer.write_table(table, row_group_size=len(rows))
                out.append((int(index), len(rows), shard_fingerprint(rows, cfg)))
            first = last
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # nothing kept: an empty plan of the same columns
        pd.DataFrame(columns=["key", "source", "shard", *WRITER_COLUMNS]).to_parquet(path, index=False)
    return out

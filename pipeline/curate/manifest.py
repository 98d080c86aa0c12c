"""The manifest as columns: what the curation driver loads of it, and how tasks read their rows.

At Face9M size (~9M rows) the manifest is ~1-2 GB of strings, so nothing holds all of it as
Python objects: the driver reads only the columns that decide (:data:`PLANNING`), with strings in
Arrow buffers, and refers to rows by their position in the file; a task reads the few row groups
that hold its rows (:func:`take`). The scan writes row groups of :data:`ROW_GROUP` rows for that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW_GROUP = 8192  # rows per Parquet row group of the manifest: a task reads whole groups
PLANNING = ["key", "source", "size", "sig", "width", "height", "error"]  # what the driver decides from (keys as ranks)
LOCATION = ["path", "member"]  # where a row's bytes are
FILLS = {"member": "", "identity": "", "error": "", "regions": "", "regions_sig": ""}  # NULLs of older manifests


def read_planning(path: Path) -> pd.DataFrame:
    """What the driver decides from, with no string per row: ``row`` (position in the manifest),
    ``rank`` (the key's position in sorted key order: keys themselves are looked up by row only
    where needed), ``source`` and ``error`` as categoricals, ``size``, ``width``/``height`` as
    int32 and ``sig``, a 64-bit hash of the scan's content signature. About 30 bytes a row; columns are read one at a time, so the peak stays near that."""
    parquet = pq.ParquetFile(path)
    keys = parquet.read(columns=["key"]).column("key")
    order = pc.sort_indices(keys).to_numpy()
    del keys
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    del order
    df = pd.DataFrame({"row": np.arange(len(rank), dtype=np.int64), "rank": rank})
    del rank
    for col in ("source", "error"):
        codes = parquet.read(columns=[col], use_pandas_metadata=False).column(col).dictionary_encode().combine_chunks()
        df[col] = pd.Categorical.from_codes(codes.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32),
                                            codes.dictionary.to_pylist())
    df["error"] = df["error"].cat.add_categories([""]).fillna("") if "" not in df["error"].cat.categories \
        else df["error"].fillna("")
    for col, dtype in (("size", np.int64), ("width", np.int32), ("height", np.int32)):
        df[col] = parquet.read(columns=[col]).column(col).to_numpy().astype(dtype, copy=False)
    # the scan's content signature (size + first and last 4 KiB) as a 64-bit hash, a row group at a time
    df["sig"] = np.concatenate([pd.util.hash_array(parquet.read_row_group(g, columns=["sig"]).column("sig")
                                                   .to_numpy(zero_copy_only=False).astype(object))
                                for g in range(parquet.num_row_groups)] or [np.zeros(0, np.uint64)])
    return df


def take(path: Path, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The manifest's ``rows`` (positions, any order) with ``columns``, in the order given.

    Reads only the row groups that hold them, one at a time, keeping just the wanted rows of each:
    memory is the result plus one row group. pandas' default types, NULLs filled."""
    rows = np.asarray(rows, dtype=np.int64)
    parquet = pq.ParquetFile(path)
    starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
    if len(rows) and (rows.min() < 0 or rows.max() >= starts[-1]):
        raise IndexError(f"{path}: rows outside 0..{starts[-1] - 1}")
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    group_of = np.searchsorted(starts, ordered, side="right") - 1
    parts = []
    for g in np.unique(group_of):
        local = ordered[group_of == g] - starts[g]
        parts.append(parquet.read_row_group(int(g), columns=columns).take(pa.array(local)))
    table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table().select(columns)
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.arange(len(rows))
    df = table.take(pa.array(inverse)).to_pandas()
    return df.fillna({c: v for c, v in FILLS.items() if c in df.columns})


__all__ = ["ROW_GROUP", "PLANNING", "LOCATION", "read_planning", "take"]

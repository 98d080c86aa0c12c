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
import pyarrow.parquet as pq

ROW_GROUP = 8192  # rows per Parquet row group of the manifest: a task reads whole groups
PLANNING = ["key", "source", "size", "width", "height", "error"]  # what the driver decides from
LOCATION = ["path", "member"]  # where a row's bytes are
PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
FILLS = {"member": "", "identity": "", "error": ""}  # NULLs of older manifests


def read_planning(path: Path) -> pd.DataFrame:
    """The :data:`PLANNING` columns with a ``row`` column (the row's position in the manifest): keys
    as Arrow-backed strings (no object per row), source and error as categoricals, sizes as int32
    where they fit. About 40 bytes a row at Face9M's key length."""
    table = pq.read_table(path, columns=PLANNING, read_dictionary=["source", "error"])
    df = table.to_pandas(types_mapper=None if PANDAS_3 else _arrow_strings, self_destruct=True, split_blocks=True)
    del table
    if "" not in df["error"].cat.categories:
        df["error"] = df["error"].cat.add_categories([""])
    df["error"] = df["error"].fillna("")
    for col in ("width", "height"):
        df[col] = df[col].astype(np.int32)
    df["row"] = np.arange(len(df), dtype=np.int64)
    return df


def _arrow_strings(dtype: pa.DataType):
    return pd.StringDtype("pyarrow") if dtype in (pa.string(), pa.large_string()) else None


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

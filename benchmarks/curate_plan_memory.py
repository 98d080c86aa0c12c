"""Curation's driver at Face9M size: peak memory and time of planning a 10M-row manifest.

Run: ``python benchmarks/curate_plan_memory.py [--rows 10000000] [--shard-size 10000]`` (about 3 minutes
and 3 GB of disk on 2 cores). It writes a synthetic manifest of ``--rows`` rows with the scan's
columns and realistic strings (eight sources, paths of ~60 characters, 2% size collisions of which half
are exact duplicates, 1% unreadable headers, 3% too wide), in row groups as the scan writes them,
then runs the curate stage's driver work on it exactly as the stage does, minus the image I/O: read
the planning columns (keys as ranks), de-duplicate with faked fingerprints (the digests' group ids),
filter, plan the shards, write the plan file with the writer's columns, and describe the rejects
(keys, paths, the keys they duplicate). It prints
each phase's time and the process's peak resident memory (the generator runs in a child process, so
its memory is not counted). Target (issue 17): <= 2 GiB at 10M rows.
"""

from __future__ import annotations

import argparse
import functools
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params  # noqa: E402
from pipeline.curate import plan as planning  # noqa: E402
from pipeline.curate.manifest import ROW_GROUP, read_planning, take  # noqa: E402
from pipeline.curate.scan import COLUMNS  # noqa: E402

SOURCES = ["laion_face", "vggface2", "celeba", "casia_webface", "megaface", "ffhq", "umdfaces", "edface"]
ROOTS = ["LAION-Face/split_00000/", "VGG-Face2/data/train/n000001/", "CelebA/img_align_celeba/",
         "CASIA-WebFace/0000045/", "MegaFace/FlickrFinal2/001/", "FFHQ/images1024x1024/00000/", "UMDFaces/batch1/",
         "EDFace-Celeb-1M/train/"]


def generate(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        i = np.arange(start, start + n)
        src = np.minimum(i * len(SOURCES) // rows, len(SOURCES) - 1)  # sources one after another, as listed
        source = pa.DictionaryArray.from_arrays(pa.array(src, pa.int32()), pa.array(SOURCES)).cast(pa.string())
        number = pc.cast(pa.array(i + 10**9), pa.string())
        key = pc.binary_join_element_wise(source, number, "-")
        root = pa.DictionaryArray.from_arrays(pa.array(src, pa.int32()), pa.array(ROOTS)).cast(pa.string())
        path_ = pc.binary_join_element_wise("data/raw/sources/", root, number, ".jpg", "")
        size = rng.integers(10**6, 10**9, n)
        collide = rng.random(n) < 0.02
        size[collide] = rng.integers(0, 1000, collide.sum())  # a few shared sizes
        width = rng.integers(100, 1200, n)
        height = (width * rng.choice([1.0, 1.25, 0.8, 1.7], n, p=[0.5, 0.25, 0.22, 0.03])).astype(np.int64)
        error = np.where(rng.random(n) < 0.01, "corrupt", "")
        empty = pa.array([""] * n)
        nan = pa.array(np.full(n, np.nan))
        table = pa.table({"key": key, "source": source, "path": path_, "member": empty, "size": size,
                          "sig": pc.cast(pa.array(rng.integers(0, 2**62, n)), pa.string()), "width": width,
                          "height": height, "identity": pc.cast(pa.array(i // 20), pa.string()), "crop_x": nan,
                          "crop_y": nan, "crop_w": nan, "crop_h": nan, "error": pa.array(error)}).select(COLUMNS)
        writer = writer or pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.generate:
        generate(args.generate, args.rows)
        return
    cfg = load_params(Path(__file__).resolve().parents[1] / "params.yaml").curate
    from dataclasses import replace

    cfg = replace(cfg, shard_size=args.shard_size)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.parquet"
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--generate", str(manifest)], check=True)
        print(f"manifest: {args.rows:,} rows, {manifest.stat().st_size / 2**20:,.0f} MiB on disk, "
              f"generated in {time.perf_counter() - t:.0f} s (child process)", flush=True)
        laps, t = {}, time.perf_counter()
        base = peak_gib()
        frame = read_planning(manifest)
        laps["read planning columns"] = (time.perf_counter() - t, peak_gib())
        t = time.perf_counter()
        sizes = frame["size"].to_numpy()
        shared = np.flatnonzero(pd.Series(sizes).duplicated(keep=False).to_numpy())  # as the stage finds them
        content = np.arange(len(frame), dtype=np.int64) + len(frame)
        rng = np.random.default_rng(1)
        twins = rng.choice(shared, len(shared) // 2, replace=False)  # half the size collisions are exact copies
        content[twins] = content[rng.choice(shared, len(twins))]
        laps["fake fingerprints"] = (time.perf_counter() - t, peak_gib())
        t = time.perf_counter()
        kept, rejects, _ = planning.decide(frame, cfg, content)
        laps["filter + de-duplicate"] = (time.perf_counter() - t, peak_gib())
        t = time.perf_counter()
        planned = planning.plan_shards(kept, cfg)
        laps["plan shards"] = (time.perf_counter() - t, peak_gib())
        t = time.perf_counter()
        lookup = functools.partial(take, manifest)
        written = planning.write_plan(planned, lookup, cfg, Path(tmp) / "plan.parquet")
        laps["write plan file"] = (time.perf_counter() - t, peak_gib())
        t = time.perf_counter()
        rejects = planning.describe_rejects(rejects, lookup)
        laps["rejects' paths"] = (time.perf_counter() - t, peak_gib())
        print(f"kept {len(kept):,}, rejected {len(rejects):,} (with keys and paths), {len(written):,} shards of "
              f"{args.shard_size:,}; plan file {(Path(tmp) / 'plan.parquet').stat().st_size / 2**20:,.0f} MiB")
        for name, (seconds, peak) in laps.items():
            print(f"  {name:<24} {seconds:7.1f} s   peak RSS so far {peak:5.2f} GiB")
        print(f"total {sum(s for s, _ in laps.values()):.1f} s; driver peak RSS {peak_gib():.2f} GiB "
              f"(at start {base:.2f} GiB: Python, numpy, pandas, pyarrow)")


if __name__ == "__main__":
    main()

"""Stage ``curate``: the manifest -> Face9M WebDataset shards, with Ray.

1. Fingerprint the readable images that can have a duplicate (SHA-256 of their bytes; a
   difference hash too when ``curate.near_duplicates``), one Ray task per chunk of the manifest.
   Exact duplicates have the same size and the same scan signature (size + first and last 4 KiB),
   so an image whose pair no other image has is not read here at all: without near-duplicates,
   nearly every image is read once, by the shard writer.
2. Filter and de-duplicate, then plan the shards (:mod:`.plan`).
3. One Ray task per shard (:mod:`.shards`): decode, normalise, resize, encode, tar. Finished
   shards of the same plan are verified and skipped, so a killed run resumes where it stopped.

Outputs under ``data/face9m/``: ``shards/face9m-%06d.tar``, ``stats/face9m-%06d.json``,
``sizes.json`` (samples per shard), ``rejects.parquet`` (key, source, path, member, reason,
detail, duplicate_of), ``plan.parquet`` (which key went to which shard), ``provenance.json``;
plus ``metrics/curation.json`` and ``reports/curation_samples.png``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .. import paths, provenance, stage_code
from ..config import MissingInput, Params
from . import plan as planning
from .cluster import ray_session, run_tasks
from .manifest import LOCATION, read_planning, take
from .samples import pick_samples, write_contact_sheet
from .scan import MANIFEST
from .shards import READ_ERRORS, RawReader, ShardSpec, write_shard

log = logging.getLogger(__name__)
OUT = paths.FACE9M
METRICS = paths.CURATION_METRICS
SAMPLES = paths.CURATION_SAMPLES
REGIONS = paths.SHARD_REGIONS.name
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)
CHUNK = 1024  # most images per fingerprint task


def _fingerprint(manifest_path: str, rows, near: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(SHA-256 digests [n] as 32-byte strings, 64-bit difference hashes [n], which have one [n], bytes
    read) of the manifest's ``rows``; an image gone since the scan gets an empty digest (a duplicate of nothing:
    the shard writer rejects it as unreadable)."""
    from .images import Rejected, difference_hash

    where = take(Path(manifest_path), rows, LOCATION)
    digests = np.zeros(len(where), dtype="S32")
    dhashes, has_dhash = np.zeros(len(where), dtype=np.int64), np.zeros(len(where), dtype=bool)
    reader = RawReader()
    try:
        for i, (path, member) in enumerate(zip(where.path, where.member)):
            try:
                data = reader.read(path, member)
            except READ_ERRORS:
                continue
            digests[i] = hashlib.sha256(data).digest()
            if near:
                with contextlib.suppress(Rejected, OSError, SyntaxError, ValueError):  # undecodable: rejected later
                    dhashes[i], has_dhash[i] = np.uint64(difference_hash(data)).view(np.int64), True
    finally:
        reader.close()
    return digests, dhashes, has_dhash, reader.bytes_read


# Fault injection for the resume tests: the driver SIGKILLs itself once this many shards are
# finished, exactly as a killed `dvc repro` would end (no cleanup, tasks in flight may finish).
KILL_AFTER_SHARDS = "FMAE_KILL_AFTER_SHARDS"


def _fingerprints(ray, manifest_path: Path, frame: pd.DataFrame, cfg, nodes: Counter):
    """(content group per row, difference hash per row or None, source bytes read): the fingerprint
    tasks over the rows that can have a duplicate.

    Exact duplicates share their size and their scan signature (size + first and last 4 KiB), so
    only images whose (size, signature) pair another image shares are hashed in full; the
    difference hash of near-duplicates needs every readable image decoded."""
    readable = (frame.error == "").to_numpy()
    shared = frame[["size", "sig"]].duplicated(keep=False).to_numpy() & readable
    suspects = np.flatnonzero(readable if cfg.near_duplicates else shared)
    log.info("fingerprint: %d of %d readable images share their size and signature with another and are hashed",
             int(shared.sum()), int(readable.sum()))
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    step = min(CHUNK, max(32, -(-len(suspects) // (4 * cpus))))  # >= 4 tasks per CPU for balance
    chunks = [suspects[i:i + step] for i in range(0, len(suspects), step)]
    prints = run_tasks(ray, _fingerprint, [(str(manifest_path), c, cfg.near_duplicates) for c in chunks],
                        "fingerprint", "img", [len(c) for c in chunks], nodes=nodes)
    # exact-duplicate groups: equal digests share an id; every other row is a group of its own
    content = np.arange(len(frame), dtype=np.int64) + len(frame)
    near = (pd.arrays.IntegerArray(np.zeros(len(frame), dtype=np.int64), np.ones(len(frame), dtype=bool))
            if cfg.near_duplicates else None)  # NA: no difference hash
    if chunks:
        digests = np.concatenate([p[0] for p in prints])
        hashed = np.concatenate(chunks)
        exact = shared[hashed] & (digests != b"")  # near-only rows and vanished files: no exact group
        content[hashed[exact]] = np.unique(digests[exact], return_inverse=True)[1]
        if near is not None:
            has = np.concatenate([p[2] for p in prints])
            near[hashed[has]] = np.concatenate([p[1] for p in prints])[has]
    return content, near, sum(p[3] for p in prints)


def _writer_rejects(stats: list[dict], plan_path: Path) -> pd.DataFrame:
    """The images the shard writers rejected (undecodable, gone since the scan), as :func:`.plan.decide`
    lists rejects: manifest row, reason, detail, duplicate_row -1."""
    failed = [r for st in stats for r in st["rejected"]]
    if not failed:
        return pd.DataFrame({"row": np.zeros(0, np.int64), "reason": [], "detail": [], "duplicate_row": np.zeros(0, np.int64)})
    where = pq.read_table(plan_path, columns=["key", "row"], filters=[("key", "in", [r["key"] for r in failed])])
    row_of = dict(zip(where.column("key").to_pylist(), where.column("row").to_pylist()))
    return pd.DataFrame({"row": [row_of[r["key"]] for r in failed], "reason": [r["reason"] for r in failed],
                         "detail": [r["detail"] for r in failed], "duplicate_row": -1})


def curate(params: Params, manifest_path: Path = MANIFEST, out: Path = OUT, metrics_path: Path = METRICS,
           samples_path: Path = SAMPLES) -> dict:
    cfg = params.curate
    if not Path(manifest_path).is_file():
        raise MissingInput(f"{manifest_path} missing: run `fmae scan` (or `dvc repro scan`) first")
    frame = read_planning(manifest_path)
    lookup = functools.partial(take, Path(manifest_path))  # (rows, columns) -> those manifest rows
    out.mkdir(parents=True, exist_ok=True)
    clock = _PhaseClock()
    nodes: Counter = Counter()
    with ray_session(params.ray) as ray:
        clock.lap("ray start")
        content, near, hashed_bytes = _fingerprints(ray, manifest_path, frame, cfg, nodes)
        clock.lap("fingerprint")
        kept, rejects, pairs = planning.decide(frame, cfg, content, near)
        del content, near
        planned = planning.plan_shards(kept, cfg)
        del kept
        plan_path = out / "plan.parquet"
        written = planning.write_plan(planned, lookup, cfg, plan_path)
        specs = [ShardSpec(index, fingerprint, str(out / "shards"), str(out / "stats"), cfg.image_size,
                           cfg.jpeg_quality, plan=str(plan_path), row_group=group, rehash=cfg.rehash_finished)
                 for group, (index, _, fingerprint) in enumerate(written)]
        _remove_stale(out, {s.name for s in specs})
        clock.lap("plan")
        kill_after = int(os.environ[KILL_AFTER_SHARDS]) if os.environ.get(KILL_AFTER_SHARDS) else None
        stats = run_tasks(ray, write_shard, [(s,) for s in specs], "curate", "img", [n for _, n, _ in written],
                           kill_after, nodes)
        clock.lap("shards")
    failed = _writer_rejects(stats, plan_path)  # images the shard writers could not use
    rejects = pd.concat([rejects, failed], ignore_index=True) if len(failed) else rejects
    rejects = planning.describe_rejects(rejects, lookup)
    gone = int((rejects.reason == "unreadable").sum())
    if gone:
        log.warning("%d image(s) listed by the scan could not be read any more (reason 'unreadable' in %s); "
                    "re-run `fmae scan` if the sources changed", gone, out / "rejects.parquet")
    rejects.to_parquet(out / "rejects.parquet", index=False)
    sizes = {st["shard"]: st["samples"] for st in stats}
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    regions = region_counts(stats)
    (out / REGIONS).write_text(json.dumps(regions, indent=1, sort_keys=True) + "\n")
    metrics = _metrics(frame, rejects, pairs, regions)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    provenance.write(out / "provenance.json", "curate", params.to_dict(), CODE)
    in_shards = planned[~planned.row.isin(failed.row)]
    picks = pick_samples(in_shards, cfg.seed)
    picks = picks.assign(key=lookup(picks.row.to_numpy(), ["key"]).key.to_numpy(), source=picks.source.astype(str))
    write_contact_sheet(out / "shards", picks, Path(samples_path))
    clock.lap("reports")
    log.info("curate phases (s): %s", clock)
    log.info("Ray tasks per node: %s", ", ".join(f"{node[:8]} {n}" for node, n in sorted(nodes.items())))
    skipped = sum(st["skipped"] for st in stats)
    read = {"hashing": int(hashed_bytes), "shards": int(sum(st["source_bytes"] for st in stats)),
            "kept_images": int(frame["size"].to_numpy()[in_shards.row.to_numpy()].sum())}
    log.info("source bytes read: %.3f GB to hash possible duplicates, %.3f GB to write shards, for kept images of "
             "%.3f GB (%.2fx; a resumed run reads only the shards it writes)", read["hashing"] / 1e9,
             read["shards"] / 1e9, read["kept_images"] / 1e9,
             (read["hashing"] + read["shards"]) / max(read["kept_images"], 1))
    return {"shards": len(stats), "skipped": skipped, "tasks_per_node": dict(nodes), "bytes_read": read,
            **metrics["total"]}


class _PhaseClock:
    def __init__(self):
        self.t, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.t = round(now - self.t, 3), now

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.laps.items())


def _remove_stale(out: Path, names: set[str]) -> None:
    """Drop shards and stats that are not in this plan (a smaller plan, an interrupted write)."""
    for folder, suffixes in ((out / "shards", (".tar", ".tar.tmp")), (out / "stats", (".json", ".json.tmp")),
                             (out / "resume", (".json", ".json.tmp"))):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            stem = path.name.split(".")[0]
            if path.name.endswith(".tmp") or stem not in names or not path.name.endswith(suffixes):
                path.unlink()


def region_counts(stats: list[dict]) -> dict[str, dict[str, int]]:
    """Per source: samples in the shards, and how many of them carry a region map."""
    counts: dict[str, dict[str, int]] = {}
    for st in stats:
        for source, n in st["by_source"].items():
            entry = counts.setdefault(source, {"samples": 0, "regions": 0})
            entry["samples"] += n
            entry["regions"] += st.get("regions_by_source", {}).get(source, 0)
    return counts


def _metrics(frame: pd.DataFrame, rejects: pd.DataFrame, pairs: dict[str, int], regions: dict | None = None) -> dict:
    per_source = {}
    reasons = sorted(set(rejects.reason))
    scanned = frame.source.value_counts()
    for source in pd.unique(frame.source):  # in manifest order
        dropped = rejects[rejects.source == source].reason.value_counts()
        per_source[source] = {"scanned": int(scanned[source]), "kept": int(scanned[source] - dropped.sum()),
                              "dropped": {r: int(dropped.get(r, 0)) for r in reasons},
                              "region_maps": int((regions or {}).get(source, {}).get("regions", 0))}
    total = {"scanned": int(len(frame)), "kept": int(len(frame) - len(rejects)), "dropped": int(len(rejects))}
    return {"total": total, "sources": per_source, "near_duplicate_pairs": pairs}


def run(params: Params) -> None:
    result = curate(params)
    print(f"curate: {result['kept']} of {result['scanned']} images kept in {result['shards']} shards "
          f"({result['skipped']} already finished) under {OUT}/shards; rejects in {OUT}/rejects.parquet; "
          f"counts in {METRICS}")


def read_keys(shard_dir: Path) -> list[str]:
    """Every sample key in the shards, read back with webdataset (for checks and tests)."""
    import webdataset as wds

    urls = [str(p) for p in sorted(Path(shard_dir).glob("*.tar"))]
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)] if urls else []


__all__ = ["curate", "run", "read_keys"]

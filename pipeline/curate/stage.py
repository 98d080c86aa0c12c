"""Stage ``curate``: the manifest -> Face9M WebDataset shards, with Ray.

1. Fingerprint the readable images that can have a duplicate (SHA-256 of their bytes; a
   difference hash too when ``curate.near_duplicates``), one Ray task per chunk of the manifest.
   Exact duplicates have the same byte size, so an image whose size no other image has is not
   read here at all: without near-duplicates, most images are read once, by the shard writer.
2. Filter and de-duplicate, then plan the shards (:mod:`.plan`).
3. One Ray task per shard (:mod:`.shards`): decode, normalise, resize, encode, tar. Finished
   shards of the same plan are verified and skipped, so a killed run resumes where it stopped.

Outputs under ``data/face9m/``: ``shards/face9m-%06d.tar``, ``stats/face9m-%06d.json``,
``sizes.json`` (samples per shard), ``rejects.parquet`` (key, source, path, member, reason,
detail, duplicate_of), ``plan.parquet`` (which key went to which shard), ``provenance.json``;
plus ``metrics/curation.json`` and ``reports/curation_samples.png``.
"""

from __future__ import annotations

from collections import Counter

import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import provenance
from ..config import MissingInput, Params, UserError
from . import plan as planning
from .cluster import ray_session
from .samples import write_contact_sheet
from .scan import MANIFEST
from .shards import READ_ERRORS, RawReader, ShardSpec, write_shard

log = logging.getLogger(__name__)
OUT = Path("data/face9m")
METRICS = Path("metrics/curation.json")
SAMPLES = Path("reports/curation_samples.png")
PACKAGE = Path(__file__).resolve().parents[1]
CODE = (PACKAGE / "curate", PACKAGE / "provenance.py")
CHUNK = 1024  # most images per fingerprint task


def _fingerprint(rows: list[dict], near: bool) -> list[tuple[str, str, int | None]]:
    from .images import Rejected, difference_hash

    reader, out = RawReader(), []
    try:
        for row in rows:
            try:
                data = reader.read(row["path"], row["member"])
            except READ_ERRORS:  # gone since the scan: a duplicate of nothing; the shard writer rejects it
                out.append((row["key"], f"unreadable:{row['key']}", None))
                continue
            dh = None
            if near:
                try:
                    dh = difference_hash(data)
                except (Rejected, OSError, SyntaxError, ValueError):
                    dh = None  # undecodable: the shard writer will reject it with its reason
            out.append((row["key"], hashlib.sha256(data).hexdigest(), dh))
    finally:
        reader.close()
    return out


# Fault injection for the resume tests: the driver SIGKILLs itself once this many shards are
# finished, exactly as a killed `dvc repro` would end (no cleanup, tasks in flight may finish).
KILL_AFTER_SHARDS = "FMAE_KILL_AFTER_SHARDS"


def _on_node(fn, *args):
    """Run ``fn(*args)`` in a Ray task and say which node ran it."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(*args)


def _run_tasks(ray, fn, args: list, desc: str, unit: str, weights: list[int], kill_after: int | None = None,
               nodes: Counter | None = None, in_flight: int | None = None) -> list:
    """Run ``fn(*a)`` for each ``a`` as Ray tasks with a throughput/ETA bar; results in ``args`` order.

    At most ``in_flight`` tasks (default: 4 per cluster CPU) are submitted and unfinished at any
    time, so the object store and the driver hold a bounded number of arguments and results in
    flight however many tasks there are. ``nodes`` counts the tasks each Ray node ran."""
    # SPREAD: on a cluster, tasks go round the nodes instead of filling the driver's node first
    # (the work is I/O on a shared filesystem, so every node's share of the bandwidth counts)
    # max_retries: a task whose worker process dies (OOM killer, lost node) runs again; shard
    # writes are idempotent (a .tmp file, renamed when complete), so a retry gives the same bytes
    remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=3)(_on_node)
    if in_flight is None:
        in_flight = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    results: list = [None] * len(args)
    index: dict = {}
    pending: list = []
    submitted = finished = 0
    with tqdm(total=sum(weights), desc=desc, unit=unit, mininterval=1.0) as bar:
        while finished < len(args):
            while submitted < len(args) and len(pending) < in_flight:
                ref = remote.remote(fn, *args[submitted])
                index[ref], submitted = submitted, submitted + 1
                pending.append(ref)
            done, pending = ray.wait(pending, num_returns=1)
            i = index.pop(done[0])
            try:
                node, results[i] = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, UserError):  # e.g. a full disk: its message, not a remote traceback
                    raise err.cause from None
                raise
            finished += 1
            if nodes is not None:
                nodes[node] += 1
            bar.update(weights[i])
            if kill_after is not None and finished >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    return results


def curate(params: Params, manifest_path: Path = MANIFEST, out: Path = OUT, metrics_path: Path = METRICS,
           samples_path: Path = SAMPLES) -> dict:
    cfg = params.curate
    if not Path(manifest_path).is_file():
        raise MissingInput(f"{manifest_path} missing: run `fmae scan` (or `dvc repro scan`) first")
    manifest = pd.read_parquet(manifest_path).fillna({"member": "", "identity": "", "error": ""})
    readable = manifest[manifest.error == ""]
    # only an image that shares its byte size with another can be an exact duplicate; the
    # difference hash of near-duplicates needs every image decoded
    suspects = readable["size"].duplicated(keep=False) | cfg.near_duplicates
    records = readable[suspects].to_dict("records")
    log.info("fingerprint: %d of %d readable images share their byte size with another and are hashed",
             len(records), len(readable))
    out.mkdir(parents=True, exist_ok=True)
    clock = _PhaseClock()
    nodes: Counter = Counter()
    with ray_session(params.ray) as ray:
        clock.lap("ray start")
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        step = min(CHUNK, max(32, -(-len(records) // (4 * cpus))))  # >= 4 tasks per CPU for balance
        chunks = [records[i:i + step] for i in range(0, len(records), step)]
        prints = _run_tasks(ray, _fingerprint, [(c, cfg.near_duplicates) for c in chunks], "fingerprint", "img",
                            [len(c) for c in chunks], nodes=nodes)
        prints = [p for chunk in prints for p in chunk]
        sha = pd.Series({k: s for k, s, _ in prints} | {k: f"unique-size:{k}" for k in readable.key[~suspects]},
                        dtype=object)
        dh = pd.Series({k: d for k, _, d in prints if d is not None}, dtype=object) if cfg.near_duplicates else None
        clock.lap("fingerprint")
        kept, rejects, pairs = planning.apply_filters(manifest, cfg, sha, dh)
        planned = planning.plan_shards(kept, cfg)
        specs = []
        for index, rows in planned.groupby("shard", sort=True):
            rows = rows.drop(columns="shard")
            specs.append(ShardSpec(int(index), tuple(rows.to_dict("records")), planning.shard_fingerprint(rows, cfg),
                                   str(out / "shards"), str(out / "stats"), cfg.image_size, cfg.jpeg_quality))
        _remove_stale(out, {s.name for s in specs})
        clock.lap("plan")
        kill_after = int(os.environ[KILL_AFTER_SHARDS]) if os.environ.get(KILL_AFTER_SHARDS) else None
        stats = _run_tasks(ray, write_shard, [(s,) for s in specs], "curate", "img", [len(s.rows) for s in specs],
                           kill_after, nodes)
        clock.lap("shards")
    decode_rejects = pd.DataFrame(
        [{**r, "duplicate_of": ""} for st in stats for r in st["rejected"]], columns=["key", "reason", "detail", "duplicate_of"])
    if len(decode_rejects):
        decode_rejects = decode_rejects.merge(manifest[["key", "source", "path", "member"]], on="key")
        rejects = pd.concat([rejects, decode_rejects[planning.REJECT_COLUMNS]], ignore_index=True)
    rejects = rejects.sort_values(["source", "key"]).reset_index(drop=True)
    gone = int((rejects.reason == "unreadable").sum())
    if gone:
        log.warning("%d image(s) listed by the scan could not be read any more (reason 'unreadable' in %s); "
                    "re-run `fmae scan` if the sources changed", gone, out / "rejects.parquet")
    rejects.to_parquet(out / "rejects.parquet", index=False)
    planned[["key", "source", "shard"]].to_parquet(out / "plan.parquet", index=False)
    sizes = {st["shard"]: st["samples"] for st in stats}
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    metrics = _metrics(manifest, rejects, pairs)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    provenance.write(out / "provenance.json", "curate", params.to_dict(), CODE)
    failed = set(decode_rejects.key) if len(decode_rejects) else set()
    write_contact_sheet(out / "shards", planned.loc[~planned.key.isin(failed), ["key", "source", "shard"]],
                        Path(samples_path), seed=cfg.seed)
    clock.lap("reports")
    log.info("curate phases (s): %s", clock)
    log.info("Ray tasks per node: %s", ", ".join(f"{node[:8]} {n}" for node, n in sorted(nodes.items())))
    skipped = sum(st["skipped"] for st in stats)
    return {"shards": len(stats), "skipped": skipped, "tasks_per_node": dict(nodes), **metrics["total"]}


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
    for folder, suffixes in ((out / "shards", (".tar", ".tar.tmp")), (out / "stats", (".json", ".json.tmp"))):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            stem = path.name.split(".")[0]
            if path.name.endswith(".tmp") or stem not in names or not path.name.endswith(suffixes):
                path.unlink()


def _metrics(manifest: pd.DataFrame, rejects: pd.DataFrame, pairs: dict[str, int]) -> dict:
    per_source = {}
    reasons = sorted(set(rejects.reason))
    for source, group in manifest.groupby("source", sort=False):
        dropped = rejects[rejects.source == source].reason.value_counts()
        per_source[source] = {"scanned": int(len(group)), "kept": int(len(group) - dropped.sum()),
                              "dropped": {r: int(dropped.get(r, 0)) for r in reasons}}
    total = {"scanned": int(len(manifest)), "kept": int(len(manifest) - len(rejects)), "dropped": int(len(rejects))}
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

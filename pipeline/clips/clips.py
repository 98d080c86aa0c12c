"""Stage ``clips``: windows of consecutive face crops from a face-video source, as WebDataset shards.

Outputs under ``data/clips/``::

    shards/clips-000000.tar      per window: <key>.f00.jpg ... <key>.f<T-1>.jpg, <key>.json (identity, video, clip,
                                 first frame, boxes); the key is <identity>_<video>_<clip>_<first frame>
    done/clips-000000.json       the shard's plan fingerprint and its rows (a finished shard of the same plan is kept);
                                 apart from the shards, so that a pretraining that reads them does not depend on the
                                 source files' times the fingerprint holds
    sizes.json                   windows per shard (what the pretraining loader reads, as curation's)
    index.parquet                one row per window: key, shard, identity, identity_index, video, clip, start
    provenance.json
    metrics/clips.json           clips, clips in which no window fits (and why), windows, identities, ignored paths

The clips, sorted by path, go in groups of ``clips.clips_per_shard``; each group is one Ray task (on
the cluster at ``ray.address``, or a local Ray) that reads its clips, tracks the face and writes one
shard (a temporary file renamed when complete). A restarted run keeps every shard whose fingerprint
(its clips' paths, sizes and times, and the settings) matches, so a killed run resumes and an
unchanged source costs a listing. The source folder is not a DVC dependency (it may be terabytes):
the stage always runs and rewrites only what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cv2
import pandas as pd

from .. import paths, provenance, stage_code
from ..config import ClipsConfig, ConfigError, Params
from ..curate.cluster import ray_session, run_tasks
from ..faces import detect
from .layout import Clip, list_clips, read_frames

OUT = paths.CLIPS
METRICS = paths.CLIPS_METRICS
CODE = stage_code.closure(__name__)
PREFIX = "clips"


def _fingerprint(group: list[Clip], cfg: ClipsConfig) -> str:
    files = [(c.key, *_stat(c.path)) for c in group]
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("root", "clips_per_shard")}
    return hashlib.sha256(json.dumps([files, settings], sort_keys=True).encode()).hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    """Size and mtime of a clip (a folder of frames: summed over its files)."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return sum(p.stat().st_size for p in files), max(int(p.stat().st_mtime) for p in files)


def write_shard(group: list[Clip], cfg: ClipsConfig, folder: str, name: str, fingerprint: str, done: str) -> dict:
    """Cut one group's windows into ``folder/name`` (its record into ``done``) -> its rows and the clips without a window."""
    import torch
    import webdataset as wds

    from ..faces.detect import FaceDetector
    from .tracks import clip_windows

    torch.set_num_threads(1)
    sidecar = Path(done) / name.replace(".tar", ".json")
    if sidecar.is_file() and (Path(folder) / name).is_file():
        done = json.loads(sidecar.read_text())
        if done.get("fingerprint") == fingerprint:
            return done | {"reused": True}
    detector = FaceDetector(cfg.min_face_score, name=cfg.detector)
    rows, empty = [], {}
    tmp = Path(folder) / f".{name}.tmp"
    with wds.TarWriter(str(tmp), mtime=0) as tar:
        for clip in group:
            frames = read_frames(clip)
            windows, tracks = clip_windows(frames, detector, cfg.length, cfg.stride, cfg.box_margin, cfg.crop_size,
                                           cfg.min_iou)
            if not windows:
                longest = max((b - a for a, b in tracks), default=0)
                empty[clip.key] = (f"no face found ({cfg.detector} score >= {cfg.min_face_score})" if not tracks else
                                   f"longest face track {longest} frames < clips.length {cfg.length}")
            for w in windows:
                key = f"{clip.identity}_{clip.video}_{clip.clip}_{w.start:05d}"
                meta = {"identity": clip.identity, "video": clip.video, "clip": clip.clip, "start": w.start,
                        "boxes": [[round(v, 1) for v in b] for b in w.boxes]}
                sample = {"__key__": key, "json": meta}
                for k, crop in enumerate(w.crops):
                    sample[f"f{k:02d}.jpg"] = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])[1].tobytes()
                tar.write(sample)
                rows.append({"key": key, "shard": name, "identity": clip.identity, "video": clip.video,
                             "clip": clip.clip, "start": w.start})
    os.replace(tmp, Path(folder) / name)
    done = {"fingerprint": fingerprint, "rows": rows, "empty": empty, "clips": len(group)}
    sidecar.write_text(json.dumps(done) + "\n")
    return done | {"reused": False}


def make_clips(params: Params, out: Path = OUT, metrics_path: Path = METRICS) -> dict:
    cfg = params.clips
    try:  # before any work: a detector that cannot run here is one line, not a traceback from a Ray task
        detect.describe(cfg.detector)
    except ValueError as err:
        raise ConfigError("clips.detector", cfg.detector, f"a detector that runs here ({err})") from None
    listing = list_clips(cfg.root)
    groups = [listing.clips[i:i + cfg.clips_per_shard] for i in range(0, len(listing.clips), cfg.clips_per_shard)]
    names = [f"{PREFIX}-{i:06d}.tar" for i in range(len(groups))]
    shards, done = out / "shards", out / "done"
    for folder in (shards, done):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # shards of an earlier, longer listing
            if stale.name.removesuffix(".json").removesuffix(".tar") + ".tar" not in names:
                stale.unlink()
    args = [(g, cfg, str(shards), n, _fingerprint(g, cfg), str(done)) for g, n in zip(groups, names)]
    with ray_session(params.ray) as ray:
        results = run_tasks(ray, write_shard, args, "clips", "clip", [len(g) for g in groups])
    rows = [r for result in results for r in result["rows"]]
    index = pd.DataFrame(rows, columns=["key", "shard", "identity", "video", "clip", "start"])
    people = sorted(index.identity.unique())
    index.insert(3, "identity_index", index.identity.map({p: i for i, p in enumerate(people)}).astype("int32"))
    index.to_parquet(out / "index.parquet", index=False)
    sizes = {name: int((index.shard == name).sum()) for name in names}
    (out / "sizes.json").write_text(json.dumps({n: k for n, k in sizes.items() if k}, indent=1, sort_keys=True) + "\n")
    empty = {k: why for result in results for k, why in result["empty"].items()}
    metrics = {"clips": len(listing.clips), "windows": len(index), "identities": len(people),
               "clips_without_window": len(empty), "without_window": empty, "ignored_paths": listing.ignored,
               "shards": len(names), "shards_reused": sum(r["reused"] for r in results)}
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def run(params: Params) -> None:
    m = make_clips(params)
    provenance.write(OUT / "provenance.json", "clips", params.to_dict(), CODE)
    print(f"clips: {m['windows']} windows of {params.clips.length} frames from {m['clips']} clips of "
          f"{m['identities']} identities in {m['shards']} shards under {OUT}/shards ({m['shards_reused']} kept from "
          f"an earlier run); {m['clips_without_window']} clips without a window and {len(m['ignored_paths'])} ignored "
          f"paths listed in {METRICS}")

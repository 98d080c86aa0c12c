"""Stage ``prepare`` (one per dataset): frame index + 224 px face crops as WebDataset shards.

Writes ``data/au/<dataset>/``: ``index.parquet`` (subject, sequence, frame, image, AU labels,
``subject_index`` over the dataset's whole subject vocabulary, and where each crop lies:
``shard``, ``offset``, ``size`` of its JPEG inside the tar), ``shards/<dataset>-%06d.tar``
(members ``<key>.jpg`` + ``<key>.json``), ``sizes.json``, ``skipped.csv`` (every labelled frame
left out and why: no image, no face found, unreadable), ``face_boxes.csv`` (the box each crop was
cut from, with the detector's score when it was detected) and ``provenance.json`` (which records
where the boxes came from: the dataset's ``face_boxes.csv``, or the detector and its version).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .. import paths, provenance, stage_code
from ..config import ConfigError, InputError, Params
from ..data.shards import write_indexed_shards
from ..faces import detect
from ..faces.crop import crop_face
from ..faces.detect import FaceDetector
from .crops import BOX_COLUMNS, BOX_FILE, read_boxes
from .folds import subjects
from .labels import apply_policy, au_columns, read_dataset

OUT = paths.AU_CROPS
SHARD_SIZE = 1000
JPEG_QUALITY = 95
DETECT_BATCH = 16  # frames per detector call
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)
log = logging.getLogger(__name__)


def _read_frame(root: Path, image: str, cache: dict) -> np.ndarray | None:
    """BGR pixels of one frame reference: ``path``, ``archive.zip:member`` or ``video.avi#index``."""
    if "#" in image:
        rel, index = image.rsplit("#", 1)
        frames = cache.get(rel)
        if frames is None:  # decode a video once per sequence, sequentially (seeking is unreliable)
            cap, frames = cv2.VideoCapture(str(root / rel)), []
            ok, frame = cap.read()
            while ok:
                frames.append(frame)
                ok, frame = cap.read()
            cap.release()
            cache.clear()
            cache[rel] = frames
        i = int(index)
        return frames[i] if i < len(frames) else None
    if ".zip:" in image:
        rel, member = image.split(":", 1)
        zf = cache.get(rel)
        if zf is None:  # one open archive per sequence, not one per frame
            zf = cache[rel] = zipfile.ZipFile(root / rel)
        data = zf.read(member)
    else:
        data = (root / image).read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def crop_sequence(root: str, rows: list[dict], boxes: dict | None, margin: float, size: int,
                  min_score: float, detector: str = "retinaface") -> list[tuple[int, bytes | str, tuple | None, float | None]]:
    """Per frame of one sequence: (row id, JPEG bytes, box, detector score), or (row id, reason,
    None, None) when it is skipped. ``boxes`` None: each frame's largest face found by ``detector``."""
    root = Path(root)
    cache: dict = {}
    frames = [_read_frame(root, r["image"], cache) if r["image"] else None for r in rows]
    for handle in cache.values():
        if isinstance(handle, zipfile.ZipFile):
            handle.close()
    if boxes is None:
        torch.set_num_threads(1)  # one process per core already
        find, readable, faces = FaceDetector(min_score, name=detector), [i for i, f in enumerate(frames) if f is not None], {}
        for start in range(0, len(readable), DETECT_BATCH):  # frames of a sequence share their size: one batch
            ids = readable[start:start + DETECT_BATCH]
            faces.update(zip(ids, find.batch([frames[i] for i in ids])))
        found = [(faces[i][0].box, faces[i][0].score) if faces.get(i) else None for i in range(len(frames))]
    else:
        found = [(b, None) if (b := boxes.get((r["subject"], r["sequence"], r["frame"]))) else None for r in rows]
    out = []
    for r, frame, hit in zip(rows, frames, found):
        if not r["image"]:
            out.append((r["row"], "no image for this label frame", None, None))
        elif frame is None:
            out.append((r["row"], f"cannot decode {r['image']}", None, None))
        elif hit is None:
            why = f"no face found ({detector} score >= {min_score})" if boxes is None else "no box in face_boxes.csv"
            out.append((r["row"], why, None, None))
        else:
            crop = crop_face(frame, hit[0], margin, size)
            jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
            out.append((r["row"], jpeg, tuple(float(v) for v in hit[0]), hit[1]))
    return out


def prepare(params: Params, dataset: str, out: Path) -> pd.DataFrame:
    cfg = params.au
    ds_cfg = getattr(cfg, dataset)
    root = Path(ds_cfg.root)
    if not root.is_dir():
        raise ConfigError(f"au.{dataset}.root", ds_cfg.root, "an existing folder with the dataset")
    labels = apply_policy(read_dataset(dataset, root, ds_cfg.frame_offset), dataset, cfg.unknown_policy)
    vocab = subjects(dataset)
    unknown = sorted(set(labels.subject) - set(vocab))
    if unknown:
        raise InputError(f"{root}: subject(s) {unknown[:5]} are not in the {dataset} subject list of pipeline/au/folds.py")
    labels = labels.sort_values(["subject", "sequence", "frame"], ignore_index=True)
    position = labels.groupby(["subject", "sequence"]).cumcount()
    labels = labels[position % cfg.frame_step == 0].reset_index(drop=True)  # every n-th labelled frame
    labels["row"] = np.arange(len(labels))
    labels["subject_index"] = labels.subject.map({s: i for i, s in enumerate(vocab)}).astype(np.int16)
    box_table = read_boxes(root)
    boxes = None if box_table is None else {
        (s, q, int(f)): (x, y, w, h) for s, q, f, x, y, w, h in box_table.itertuples(index=False)}
    try:  # before any work: a detector that cannot run here is one line, not a traceback from a worker
        faces = {"boxes": str(root / BOX_FILE)} if boxes is not None else detect.describe(cfg.detector) | {"min_score": cfg.min_face_score}
    except ValueError as err:
        raise ConfigError("au.detector", cfg.detector, f"a detector that runs here ({err})") from None
    if boxes is None:
        log.info("%s: no %s, detecting faces with %s", root, BOX_FILE, faces["package"])

    jobs = [g.to_dict("records") for _, g in labels.groupby(["subject", "sequence"], sort=True)]
    crops: dict[int, bytes] = {}
    used: dict[int, tuple] = {}  # row -> (x, y, w, h, score) of the box cropped
    skipped: list[tuple[int, str]] = []
    # forkserver, not fork: torch and YuNet run on OpenMP thread pools, which hang in a child forked
    # from a process that has used them (a notebook, the tests); forkserver's children start clean
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(cfg.workers, mp_context=context) as pool, tqdm(total=len(labels), desc=f"prepare {dataset}", unit="frame") as bar:
        futures = [pool.submit(crop_sequence, str(root), job, _subset(boxes, job), cfg.box_margin, cfg.crop_size,
                               cfg.min_face_score, cfg.detector) for job in jobs]
        for fut in futures:
            results = fut.result()
            for row, result, box, score in results:
                if isinstance(result, str):
                    skipped.append((row, result))
                else:
                    crops[row], used[row] = result, (*box, score)
            bar.update(len(results))
    kept = labels[labels.row.isin(crops)].reset_index(drop=True)
    index = _write_shards(kept, crops, out / "shards", dataset)
    skip = labels.set_index("row").loc[[r for r, _ in skipped], ["subject", "sequence", "frame", "image"]]
    skip["reason"] = [why for _, why in skipped]
    out.mkdir(parents=True, exist_ok=True)
    skip.to_csv(out / "skipped.csv", index=False)
    cropped = kept[list(BOX_COLUMNS[:3])].copy()
    cropped[[*BOX_COLUMNS[3:], "score"]] = [used[r] for r in kept.row] if len(kept) else np.empty((0, 5))
    cropped.to_csv(out / BOX_FILE, index=False)
    index.drop(columns=["row"]).to_parquet(out / "index.parquet", index=False)
    sizes = index.groupby("shard").size().to_dict()
    (out / "sizes.json").write_text(json.dumps({k: int(v) for k, v in sorted(sizes.items())}, indent=1) + "\n")
    provenance.write(out / "provenance.json", f"prepare@{dataset}", params.to_dict(), CODE, faces=faces)
    log.info("%s: %d frames cropped, %d skipped (see %s)", dataset, len(index), len(skip), out / "skipped.csv")
    return index


def _subset(boxes: dict | None, job: list[dict]) -> dict | None:
    if boxes is None:
        return None
    return {k: boxes[k] for r in job if (k := (r["subject"], r["sequence"], r["frame"])) in boxes}


def _write_shards(index: pd.DataFrame, crops: dict[int, bytes], folder: Path, dataset: str) -> pd.DataFrame:
    """Tar shards of ``SHARD_SIZE`` crops; each JPEG's byte offset is recorded for random access."""
    index = index.copy()
    keys = [f"{s}_{q}_{f:05d}".replace(".", "_") for s, q, f in zip(index.subject, index.sequence, index.frame)]
    labels = au_columns(dataset)
    metas = [{"subject": r.subject, "sequence": r.sequence, "frame": int(r.frame), "subject_index": int(r.subject_index),
              **{c: int(getattr(r, c)) for c in labels}} for r in index.itertuples(index=False)]
    where = write_indexed_shards(folder, dataset, keys, [crops[r] for r in index.row], metas, SHARD_SIZE)
    for column in where.columns:
        index[column] = where[column].to_numpy()
    return index


def run(params: Params, dataset: str | None = None, out: Path = OUT) -> None:
    for name in [dataset] if dataset else params.finetune.datasets:
        prepare(params, name, out / name)

"""Stage ``prepare_fer`` (one per FER dataset): image index + face crops as WebDataset shards.

Writes ``data/fer/<dataset>/``: ``index.parquet`` (image, label, class, split, and where each crop
lies: ``key``, ``shard``, ``offset``, ``size``), ``shards/<dataset>-%06d.tar``, ``classes.json`` (the
class names in label order), ``skipped.csv`` (every listed image left out, and why: a code outside
the benchmark's classes, a NULL box, a missing or undecodable file) and ``provenance.json``.

The crop is the dataset's face box grown by ``fer.box_margin`` per side (AffectNet, RAF-DB's original
images) or the whole image where the image is the face (RAF-DB's aligned images, class-folder copies,
``labels.csv``), resized to ``fer.crop_size``; images are decoded as curation decodes them (EXIF
orientation, grayscale and CMYK to RGB, truncated files refused).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .. import paths, provenance, stage_code
from ..config import ConfigError, Params
from ..curate.images import Rejected, encode_jpeg, load_face_bgr, probe
from ..data.shards import write_indexed_shards
from ..faces.crop import expand_box
from .classes import classes
from .readers import read_affectnet, read_labels_csv, read_rafdb

OUT = paths.FER_CROPS
SHARD_SIZE = 1000
JPEG_QUALITY = 95
CHUNK = 64
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)
log = logging.getLogger(__name__)


def class_names(params: Params, dataset: str) -> tuple[str, ...]:
    cfg = params.fer
    return cfg.custom.classes if dataset == "custom" else classes(dataset, cfg.affectnet.classes)


def read(params: Params, dataset: str) -> pd.DataFrame:
    """The dataset's listed images (see :mod:`.readers`); a root with ``labels.csv`` is read as one."""
    cfg = params.fer.dataset(dataset)
    root = Path(cfg.root)
    if not root.is_dir():
        raise ConfigError(f"fer.{dataset}.root", cfg.root, "an existing folder with the dataset")
    if dataset == "custom" or (root / "labels.csv").is_file():
        return read_labels_csv(root, class_names(params, dataset))
    if dataset == "rafdb":
        return read_rafdb(root, params.fer.rafdb.images)
    return read_affectnet(root, params.fer.affectnet.classes)


def crop_images(root: str, rows: list[tuple[int, str, float, float, float, float]], margin: float, size: int
                ) -> list[tuple[int, bytes | str]]:
    """(row id, JPEG bytes of the crop) per image, or (row id, why it was skipped). Decoding is curation's:
    EXIF orientation, any colour mode to RGB, a truncated JPEG refused rather than half grey."""
    out = []
    for row, image, x, y, w, h in rows:
        path = Path(root) / image
        if not path.is_file():
            out.append((row, "no such image file"))
            continue
        data = path.read_bytes()
        try:
            crop = None
            if not np.isnan(x):
                header = probe(data)
                x0, y0, x1, y1 = expand_box(x, y, w, h, margin, header.width, header.height)
                crop = (x0, y0, x1 - x0, y1 - y0)
            face = load_face_bgr(data, size, crop)
        except (Rejected, ValueError) as err:
            out.append((row, f"cannot use the image: {err}"))
            continue
        out.append((row, encode_jpeg(face, JPEG_QUALITY)))
    return out


def prepare(params: Params, dataset: str, out: Path) -> pd.DataFrame:
    cfg = params.fer
    root = Path(cfg.dataset(dataset).root)
    names = class_names(params, dataset)
    listed = read(params, dataset).reset_index(drop=True)
    listed["row"] = np.arange(len(listed))
    usable = listed[listed.reason == ""]
    jobs = [[(r.row, r.image, r.x, r.y, r.w, r.h) for r in part.itertuples(index=False)]
            for _, part in usable.groupby(np.arange(len(usable)) // CHUNK)]
    crops: dict[int, bytes] = {}
    reasons = dict(zip(listed.row[listed.reason != ""], listed.reason[listed.reason != ""]))
    pool = ProcessPoolExecutor(cfg.workers) if cfg.workers else None  # fer.workers 0: crop in this process
    mapper = pool.map if pool else map
    with tqdm(total=len(usable), desc=f"prepare_fer {dataset}", unit="image") as bar:
        for results in mapper(crop_images, [str(root)] * len(jobs), jobs, [cfg.box_margin] * len(jobs),
                              [cfg.crop_size] * len(jobs)):
            for row, result in results:
                if isinstance(result, str):
                    reasons[row] = result
                else:
                    crops[row] = result
            bar.update(len(results))
    if pool:
        pool.shutdown()
    kept = listed[listed.row.isin(crops)].reset_index(drop=True)
    kept["class"] = [names[k] for k in kept.label]
    keys = [f"{split}_{row:07d}" for split, row in zip(kept.split, kept.row)]
    metas = [{"image": image, "label": int(label), "class": names[label], "split": split}
             for image, label, split in zip(kept.image, kept.label, kept.split)]
    where = write_indexed_shards(out / "shards", dataset, keys, [crops[r] for r in kept.row], metas, SHARD_SIZE)
    index = pd.concat([kept[["image", "label", "class", "split"]], where], axis=1)
    skipped = listed.set_index("row").loc[sorted(reasons), ["image", "split"]].reset_index(drop=True)
    skipped["reason"] = [reasons[r] for r in sorted(reasons)]
    out.mkdir(parents=True, exist_ok=True)
    index.to_parquet(out / "index.parquet", index=False)
    skipped.to_csv(out / "skipped.csv", index=False)
    (out / "classes.json").write_text(json.dumps(list(names)) + "\n")
    sizes = index.groupby("shard").size().to_dict()
    (out / "sizes.json").write_text(json.dumps({k: int(v) for k, v in sorted(sizes.items())}, indent=1) + "\n")
    provenance.write(out / "provenance.json", f"prepare_fer@{dataset}", params.to_dict(), CODE)
    counts = index.groupby(["split", "class"]).size().unstack(0, fill_value=0)
    log.info("%s: %d images cropped, %d skipped (see %s)\n%s", dataset, len(index), len(skipped), out / "skipped.csv", counts)
    return index


def run(params: Params, dataset: str | None = None, out: Path = OUT) -> None:
    for name in [dataset] if dataset else params.fer.datasets:
        prepare(params, name, out / name)

"""The pretraining input pipeline alone: images/s from WebDataset shards, per loader worker.

Run: ``python benchmarks/loader.py [--shards data/face9m/shards] [--workers 1,2]``. It reads the
curated shards (``make demo`` writes them; ``--make N`` writes N synthetic 224 px JPEGs into a
temporary shard set instead) through the training loader (epoch shard order, split by worker,
shuffle buffer, JPEG decode, flip, uint8 batches) and prints images/s in total and per worker.
Target: >= 800 img/s per core from 224 px shards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from pipeline.data.shards import read_shard_set
from pipeline.pretrain.data import epoch_loader


def make_shards(folder: Path, images: int, per_shard: int = 256) -> Path:
    """``images`` noisy 224 px JPEGs (q95, realistic entropy) in shards, with sizes.json."""
    rng = np.random.default_rng(0)
    shards = folder / "shards"
    shards.mkdir(parents=True)
    sizes = {}
    for s in range(0, images, per_shard):
        name = f"bench-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(shards / name), mtime=0) as tw:
            for i in range(s, min(images, s + per_shard)):
                img = cv2.GaussianBlur(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), (5, 5), 0)
                tw.write({"__key__": f"{i:08d}", "jpg": cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()})
        sizes[name] = min(images, s + per_shard) - s
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return shards


def measure(shards, workers: int, batch: int, size: int, steps: int) -> float:
    loader = epoch_loader(shards, epoch=0, seed=0, batch_size=batch, image_size=size, workers=workers,
                          shuffle_buffer=1000, augment="flip", steps=steps)
    it = iter(loader)
    next(it)  # workers started, first batch out
    start = time.perf_counter()
    n = sum(b.shape[0] for b in it)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", default="data/face9m/shards")
    ap.add_argument("--make", type=int, default=0, help="write this many synthetic images instead")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_shards(Path(tmp), args.make) if args.make else Path(args.shards)
        shards = read_shard_set(folder)
        print(f"shards          {len(shards.shards)} in {folder} ({shards.samples} images), output {args.size}px")
        for workers in map(int, args.workers.split(",")):
            rate = measure(shards, workers, args.batch, args.size, args.steps)
            print(f"workers {workers:<7} {rate:,.0f} img/s total, {rate / workers:,.0f} img/s per worker")


if __name__ == "__main__":
    main()

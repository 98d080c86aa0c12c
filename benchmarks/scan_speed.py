"""The scan's header pass with 1 and 2 worker processes: images/s and the speed-up.

Run: ``python benchmarks/scan_speed.py [--images 100000] [--workers 1,2] [--cold]`` (a few minutes on
2 cores). It writes ``--images`` distinct small JPEGs (a `folder` source, 1,000 a directory) into a
temporary directory, then scans them with each worker count (``sources.scan_workers``; the pool's
start is included), checking that every run gives the same manifest. With the files in the page
cache this is the CPU-bound case. ``--cold`` drops the page cache before each run (root only: it
writes /proc/sys/vm/drop_caches), so every header read waits on the disk, as on a shared filesystem
where each open costs ~1 ms; that latency is what the workers overlap.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params  # noqa: E402
from pipeline.curate.scan import scan  # noqa: E402
from pipeline.curate.sources import SOURCES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each run (root)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mine"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
        for i in range(args.images):
            folder = root / f"{i // 1000:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            img = base.copy()
            img[i % 120, :, i % 3] = i % 256  # distinct bytes
            Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=85)
        off = {f"sources.{n}": {"enabled": False, "root": "x", "max_images": 0} for n in SOURCES if n != "folder"}
        first = None
        for workers in map(int, args.workers.split(",")):
            params = load_params(Path(__file__).resolve().parents[1] / "params.yaml",
                                 {**off, "sources.folder": {"enabled": True, "root": str(root), "max_images": 0},
                                  "sources.scan_workers": workers})
            if args.cold:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
            start = time.perf_counter()
            df = scan(params)
            seconds = time.perf_counter() - start
            rate = len(df) / seconds
            first = first or (df, rate)
            assert df.equals(first[0]), "the manifest depends on the number of workers"
            print(f"{'cold' if args.cold else 'warm'} cache, {workers} worker(s): {len(df):,} images in {seconds:.1f} s = {rate:,.0f} img/s "
                  f"({rate / first[1]:.2f}x the first)", flush=True)


if __name__ == "__main__":
    main()

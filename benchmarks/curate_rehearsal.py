"""A Face9M scale rehearsal on one machine: scan + curate of ``--images`` real image files, end to end.

Run: ``python benchmarks/curate_rehearsal.py [--images 200000] [--cpus 2] [--shard-size 10000]``
(about 10 minutes and 2 GB of disk on 2 cores). It renders ``--faces`` synthetic faces with the
project's renderer and writes ``--images`` distinct files from them, 1,000 a folder (a ``folder``
source): each a face with a unique perturbation, cut to 110-170 px (0.7% too wide for the aspect
rule), JPEG (2% PNG), plus 0.5% exact copies of earlier files. Then it runs the stages' own code
as `dvc repro` would, with ``sources.scan_workers`` = ``ray.num_cpus`` = ``--cpus``: the scan
streamed to the manifest, then curation with a local Ray. It prints images/s per phase, the
driver's peak RSS (this process; Ray's workers and the scan's pool are other processes), the source
bytes read per kept image's bytes, and the wall time this projects for 9M images on N 32-core
nodes, with the model behind it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.config import load_params  # noqa: E402
from pipeline.curate.curate import curate  # noqa: E402
from pipeline.curate.scan import scan_blocks, stream_manifest  # noqa: E402
from pipeline.curate.sources import SOURCES  # noqa: E402
from pipeline.synth.sources import Item, make_image  # noqa: E402

FACE9M = 9_000_000
_FACES: list[np.ndarray] = []


def _render(args) -> np.ndarray:
    synth, i = args
    img, (x, y, w, h) = make_image(synth, "celeba", Item(200_000 + i, i, f"rehearsal:{i}", ""))
    return img


def _init(faces) -> None:
    _FACES.extend(faces)


def _write(job: tuple[Path, int]) -> None:
    root, i = job
    rng = np.random.default_rng(i)
    face = _FACES[i % len(_FACES)]
    h, w = face.shape[:2]
    side = int(rng.integers(110, 171))
    aspect = 1.7 if i % 150 == 7 else float(rng.uniform(0.8, 1.25))
    y0, x0 = int(rng.integers(0, max(1, h - side))), int(rng.integers(0, max(1, w - side)))
    img = cv2.resize(face[y0:y0 + side, x0:x0 + side], (int(side * aspect), side), interpolation=cv2.INTER_AREA)
    img[i % img.shape[0], :, i % 3] = i % 251  # a unique line: every file distinct
    png = i % 50 == 3
    ok, data = cv2.imencode(".png" if png else ".jpg", img, [] if png else [cv2.IMWRITE_JPEG_QUALITY, 85])
    folder = root / f"{i // 1000:04d}"
    folder.mkdir(exist_ok=True)
    (folder / f"{i:07d}.{'png' if png else 'jpg'}").write_bytes(data.tobytes())


def generate(root: Path, images: int, faces: int, cpus: int) -> None:
    params = load_params(ROOT / "params.yaml")
    with Pool(cpus) as pool:
        rendered = pool.map(_render, [(params.synth, i) for i in range(faces)])
    with Pool(cpus, initializer=_init, initargs=(rendered,)) as pool:
        pool.map(_write, [(root, i) for i in range(images)], chunksize=500)
    files = sorted(root.glob("*/*"))
    for n, i in enumerate(range(0, len(files), 200)):  # 0.5% exact copies, beside their originals
        copy = files[i].with_name(f"copy{n:06d}{files[i].suffix}")
        copy.write_bytes(files[i].read_bytes())


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--faces", type=int, default=48)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "images", Path(tmp) / "face9m"
        root.mkdir()
        t = time.perf_counter()
        generate(root, args.images, args.faces, args.cpus)
        files = sum(1 for _ in root.glob("*/*"))
        size = sum(p.stat().st_size for p in root.glob("*/*"))
        print(f"generated {files:,} files ({size / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s", flush=True)
        off = {f"sources.{n}": {"enabled": False, "root": "x", "max_images": 0} for n in SOURCES if n != "folder"}
        params = load_params(ROOT / "params.yaml", {
            **off, "sources.folder": {"enabled": True, "root": str(root), "max_images": 0},
            "sources.scan_workers": args.cpus, "ray.num_cpus": args.cpus, "curate.shard_size": args.shard_size})
        out.mkdir()
        t = time.perf_counter()
        rows = stream_manifest(scan_blocks(params), out / "manifest.parquet")
        scan_s = time.perf_counter() - t
        scan_peak = peak_gib()
        t = time.perf_counter()
        result = curate(params, out / "manifest.parquet", out, Path(tmp) / "curation.json", Path(tmp) / "samples.png")
        curate_s = time.perf_counter() - t
        read = result["bytes_read"]
        ratio = (read["hashing"] + read["shards"]) / read["kept_images"]
        print(f"\nscan:    {rows:,} images in {scan_s:.1f} s = {rows / scan_s:,.0f} img/s ({args.cpus} workers)")
        print(f"curate:  {result['kept']:,} kept of {result['scanned']:,} in {result['shards']} shards, {curate_s:.1f} s "
              f"= {result['scanned'] / curate_s:,.0f} img/s ({args.cpus} Ray CPUs, Ray's start included)")
        print(f"driver peak RSS: {scan_peak:.2f} GiB after the scan, {peak_gib():.2f} GiB at the end")
        print(f"source bytes read: {read['hashing'] / 2**20:,.0f} MiB hashing possible duplicates + "
              f"{read['shards'] / 2**20:,.0f} MiB writing shards, per kept image's bytes: {ratio:.3f}x")
        per_core = result["scanned"] / curate_s / args.cpus
        print(f"\nprojection for {FACE9M:,} images (model: curate wall = 9M / (r x 32 N) + planning; planning at "
              "10M rows measured ~85 s by curate_plan_memory.py; the scan runs on one node)")
        print(f"  r = {per_core:,.0f} img/s per core (this rehearsal's small images)"
              " | r = 100 img/s per core (a mix of ~1 MP JPEGs and FFHQ PNGs, curate_throughput.py)")
        for nodes in (1, 4, 16):
            small = FACE9M / (per_core * 32 * nodes) + 85
            large = FACE9M / (100 * 32 * nodes) + 85
            print(f"  {nodes:>2} node(s): {small / 60:6.1f} min | {large / 3600:5.1f} h")
        print(f"  scan on one 32-core node at this rehearsal's per-worker rate: "
              f"{FACE9M / (rows / scan_s / args.cpus * 32) / 60:.1f} min (local disk; NFS opens add ~1 ms / workers)")


if __name__ == "__main__":
    main()

"""Curation throughput: the per-image path against the usual ones, then the stage with Ray.

Run: ``python benchmarks/curate_throughput.py`` (about two minutes on 2 cores). It generates its
own inputs (synthetic faces with sensor noise, so JPEG/PNG entropy is realistic):
~1 MP JPEGs (1152x864, q90), 1024x1024 PNGs (FFHQ-like) and 250x250 JPEGs (CASIA-like), and
prints, per core:

- ``pillow``: Pillow full decode, bicubic resize to 224, JPEG q95 (the naive path);
- ``opencv``: OpenCV full decode, INTER_AREA resize, JPEG q95 (img2dataset's path);
- ``project``: :func:`pipeline.curate.images.load_face` + JPEG q95 (DCT-reduced decode);
- ``decode``: bare decode only (for the PNG target: the project within 1.15x of it);

then the ``curate`` stage end to end (fingerprint + shards, Ray already started) with 1 and 2
Ray workers. Targets: project >= 2.0x opencv on 1 MP JPEGs; PNG within 1.15x of bare decode;
2 workers >= 1.7x one.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.config import RayConfig, load_params
from pipeline.curate.cluster import ray_session
from pipeline.curate.curate import curate
from pipeline.curate.images import encode_jpeg, load_face_bgr
from pipeline.curate.scan import scan
from pipeline.synth.identity import sample_identity
from pipeline.synth.look import apply_look, paint_background, sample_look
from pipeline.synth.render import Pose, render_face
from pipeline.synth.seeding import rng_for

SIZE, QUALITY = 224, 95


def make_inputs(folder: Path, n_big: int, n_png: int, n_small: int) -> dict[str, list[bytes]]:
    groups = {"jpeg_1mp": ((1152, 864), "jpg", n_big), "png_1024": ((1024, 1024), "png", n_png),
              "jpeg_250": ((250, 250), "jpg", n_small)}
    out: dict[str, list[bytes]] = {}
    for name, ((w, h), fmt, n) in groups.items():
        out[name] = []
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = rng_for(0, "bench", name, i)
            person = sample_identity(rng, f"b{i}")
            img = np.empty((h, w, 3), np.uint8)
            paint_background(img, person.background, person.background_stripes)
            render_face(img, person, {}, Pose(w / 2, h * 0.55, min(w, h) * 0.6))
            img = apply_look(img, sample_look(rng, 1.0), rng)
            ext = ".jpg" if fmt == "jpg" else ".png"
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
            data = cv2.imencode(ext, img, params)[1].tobytes()
            (folder / name / f"{i:05d}{ext}").write_bytes(data)
            out[name].append(data)
    return out


def pillow_path(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data)).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def opencv_path(data: bytes) -> bytes:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA),
                        [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()


def project_path(data: bytes) -> bytes:
    return encode_jpeg(load_face_bgr(data, SIZE), QUALITY)


def bare_decode(data: bytes):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def rate(fn, items: list[bytes], repeats: int = 3) -> float:
    """Images per second of ``fn`` on one core: median over ``repeats`` passes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for data in items:
            fn(data)
        times.append(time.perf_counter() - t0)
    return len(items) / statistics.median(times)


def _warm_up() -> None:
    import pipeline.curate.shards  # noqa: F401  (what the tasks import)

    time.sleep(0.3)


def stage_rate(folder: Path, workers: int, repeats: int = 3) -> tuple[float, int]:
    """Median img/s of the curate stage (fingerprint + plan + shards + reports) over ``repeats`` runs."""
    sources = {f"sources.{n}.enabled": False for n in ("celeba", "ffhq", "vggface2", "casia_webface", "megaface",
                                                       "edface", "umdfaces", "laion_face")}
    params = load_params("params.yaml", {**sources, "sources.folder": {"enabled": True, "root": str(folder), "max_images": 0},
                                         "ray.num_cpus": workers, "curate.shard_size": 32})
    rates, kept = [], 0
    with tempfile.TemporaryDirectory() as tmp, ray_session(RayConfig("", workers)) as ray:
        tmp = Path(tmp)
        scan(params).to_parquet(tmp / "manifest.parquet", index=False)
        warm = ray.remote(num_cpus=1)(_warm_up)  # start the worker processes before timing
        ray.get([warm.remote() for _ in range(workers * 2)])
        for r in range(repeats):
            t0 = time.perf_counter()
            result = curate(params, tmp / "manifest.parquet", tmp / f"face9m{r}", tmp / "m.json", tmp / "s.png")
            rates.append(result["kept"] / (time.perf_counter() - t0))
            kept = result["kept"]
    return statistics.median(rates), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=200, help="~1 MP JPEGs")
    parser.add_argument("--png", type=int, default=60, help="1024x1024 PNGs")
    parser.add_argument("--small", type=int, default=600, help="250x250 JPEGs")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "inputs"
        inputs = make_inputs(folder, args.big, args.png, args.small)
        print(f"per core, img/s (median of 3 passes; output {SIZE}x{SIZE} JPEG q{QUALITY})")
        print(f"{'input':10s} {'pillow':>8s} {'opencv':>8s} {'project':>8s} {'decode':>8s}  project/opencv  project time/decode time")
        for name, items in inputs.items():
            r = {k: rate(fn, items) for k, fn in (("pillow", pillow_path), ("opencv", opencv_path),
                                                  ("project", project_path), ("decode", bare_decode))}
            print(f"{name:10s} {r['pillow']:8.0f} {r['opencv']:8.0f} {r['project']:8.0f} {r['decode']:8.0f}  "
                  f"{r['project'] / r['opencv']:13.2f}x  {r['decode'] / r['project']:22.2f}x")
        one, n = stage_rate(folder, 1)
        two, _ = stage_rate(folder, 2)
        print(f"curate stage end to end ({n} images, Ray started, median of 3): 1 worker {one:.0f} img/s, 2 workers {two:.0f} img/s, "
              f"speed-up {two / one:.2f}x")


if __name__ == "__main__":
    main()

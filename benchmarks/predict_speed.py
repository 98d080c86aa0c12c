"""Speed of ``fmae predict``: frames per second, split into decode, detection and model time.

Run: ``python benchmarks/predict_speed.py [--frames 64] [--models vit_tiny_patch16_224@112,vit_base_patch16_224@224]
[--batch-sizes 1,32] [--device auto]`` (about two minutes on 2 CPU cores). It writes the test suite's
real-portrait clip (Grace Hopper moving and zooming in a 640x480 frame, one face a frame, MP4) with
``--frames`` frames and prints, per frame:

- ``decode``: OpenCV decoding of the MP4;
- ``detect``: the face detector (``--detector``, RetinaFace by default, on ``--device``) on the decoded
  frames, one frame per call and ``max(--batch-sizes)`` frames per call (YuNet: CPU only, one frame a call);
- ``crop``: the training crop (box + margin, 224 px) and the model's resize/normalise transform, with
  OpenCV and PIL on the CPU, on the device on CUDA (as ``fmae predict`` does);
- ``model``: the forward pass per face at each batch size (bf16 autocast on CUDA), for each model
  (random weights: speed does not depend on them);

then ``fmae predict``'s own loop end to end on the clip (its :class:`Timings`) with the first
model. On CUDA add ``vit_large_patch16_224@224`` to ``--models``. Throughput is bounded by the
slowest stage; for a real-time check, 30 fps video needs > 30 frames/s end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.distributed import autocast  # noqa: E402
from pipeline.faces.crop import crop_face  # noqa: E402
from pipeline.faces.detect import DETECTORS, FaceDetector  # noqa: E402
from pipeline.models.au_checkpoint import AUModel  # noqa: E402
from pipeline.models.vit_classifier import ViTClassifier  # noqa: E402
from pipeline.predict import device_crops  # noqa: E402
from pipeline.predict.engine import Ensemble, Timings, predict  # noqa: E402
from pipeline.training.transforms import eval_transform  # noqa: E402
from tests.real_faces import decoded_frames, write_video  # noqa: E402


def per_frame(fn, items, repeat: int = 1) -> float:
    """Median over ``repeat`` runs of the mean ms per item of ``fn`` applied to every item."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) * 1000 / len(items))
    return statistics.median(runs)


def model_ms(name: str, size: int, batch: int, device: torch.device, faces: int) -> float:
    """ms per face of the AU model's forward pass at ``batch`` faces per call."""
    model = ViTClassifier(name, 12, img_size=size, drop_path=0.0).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    calls = max(2, faces // batch)
    with torch.no_grad(), autocast(device):
        for _ in range(2):
            model(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / (calls * batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--models", default="vit_tiny_patch16_224@112,vit_base_patch16_224@224")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--detector", default="retinaface", choices=DETECTORS)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    models = [(n, int(s)) for n, s in (m.split("@") for m in args.models.split(","))]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.frames} frames of 640x480")
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(Path(tmp) / "clip.mp4", frames=args.frames, loop=True)
        frames = decoded_frames(clip)
        decode = _decode_ms(clip, len(frames))
        detector = FaceDetector(0.3, name=args.detector, device=device)
        detect_one = per_frame(detector, frames, repeat=3)
        many = max(batches)
        chunks = [frames[i:i + many] for i in range(0, len(frames), many)]
        detect_many = per_frame(detector.batch, chunks, repeat=3) * len(chunks) / len(frames)
        detect = detect_one if device.type == "cpu" else detect_many  # predict's way: one CPU frame a call, batches on a GPU
        boxes = [faces[0].box for faces in detector.batch(frames)]
        transform, size = eval_transform(models[0][1]), models[0][1]
        if device.type == "cuda":  # predict's path there: the frame uploaded, crop and resize on the device

            def cut(fb):
                crops = device_crops.crop(device_crops.frame_tensor(fb[0], device), fb[1], 0.05, 224)[None]
                out = device_crops.model_input(crops, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
                torch.cuda.synchronize()
                return out
        else:

            def cut(fb):
                return transform(Image.fromarray(cv2.cvtColor(crop_face(*fb, 0.05, 224), cv2.COLOR_BGR2RGB)))
        crop = per_frame(cut, list(zip(frames, boxes)), repeat=3)
        print(f"\nper frame: decode {decode:.2f} ms, detect ({args.detector}, {device.type}) {detect_one:.2f} ms one frame "
              f"a call, {detect_many:.2f} ms {many} a call, crop+transform ({'device' if device.type == 'cuda' else 'OpenCV + PIL'}) "
              f"{crop:.2f} ms")
        print("\n| model | input | batch | model ms/face | frames/s (decode+detect+crop+model) | model-only faces/s |")
        print("|---|---|---|---|---|---|")
        for name, size in models:
            for batch in batches:
                ms = model_ms(name, size, batch, device, faces=max(batch * 4, 32 if device.type == "cpu" else 512))
                total = decode + detect + crop + ms
                print(f"| {name} | {size} | {batch} | {ms:.2f} | {1000 / total:.1f} | {1000 / ms:.0f} |")

        name, size = models[0]
        model = ViTClassifier(name, 12, img_size=size, drop_path=0.0).eval()
        au = AUModel(model, Path("random"), "bp4d", (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24), 0.5, size,
                     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.05, 224)
        timings = Timings()
        start = time.perf_counter()
        predict([clip], Ensemble([au], device), batch_size=max(batches), progress=False, timings=timings, detector=detector)
        wall = time.perf_counter() - start
        t = timings.as_dict()
        print(f"\nfmae predict loop, {name}@{size}, batch {max(batches)}: {t['frames']} frames in {wall:.2f} s = "
              f"{t['frames'] / wall:.1f} frames/s (decode {t['decode_s']:.2f} s, detect {t['detect_s']:.2f} s, "
              f"crop+model {t['model_s']:.2f} s)")


def _decode_ms(clip: Path, n: int) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        decoded_frames(clip)
        runs.append((time.perf_counter() - start) * 1000 / n)
    return statistics.median(runs)


if __name__ == "__main__":
    main()

"""``fmae predict INPUT... --checkpoint PATH...``: the command around :func:`engine.predict`.

Writes the table (CSV, or Parquet when ``--out`` ends in ``.parquet``) and beside it
``<out>.provenance.json`` (checkpoints with their SHA-256, detector and version, options, code
version, packages, timings); optionally annotated images / MP4s and per-video timelines. Bad
inputs are listed in the table (``status`` unreadable, ``reason``) and on stderr; the run goes on
and exits 0. Only a problem with the checkpoints or options stops it, as a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd
import torch

from .. import provenance, stage_code
from ..config import ConfigError, UserError
from ..faces import detect
from ..models import au_checkpoint, checkpoint, fer_checkpoint
from .annotate import Annotator
from .engine import DETECT_FLOOR, UNREADABLE, Ensemble, ExpressionEnsemble, Timings, predict
from .plot import plot_timeline

CODE = stage_code.closure(__name__)  # the sources predict can run, recorded with its outputs
SUFFIXES = (".csv", ".parquet")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """How ``fmae predict`` runs; every field is a command-line option of the same name."""

    out: str = "results.csv"  # the table, .csv or .parquet
    dataset: str | None = None  # the AU list of a released checkpoint that does not name it
    every: int = 1  # read every N-th video frame
    batch_size: int = 32  # faces per model call
    min_face: int = 40  # faces whose shorter side is below this many pixels are listed, not scored
    min_score: float = 0.6  # faces below this detector score are listed, not scored
    device: str = "auto"  # auto, cpu or cuda[:N]
    detector: str = "retinaface"  # a name of pipeline.faces.detect.DETECTORS
    annotate: str | None = None  # folder for annotated images / MP4s
    plot: str | None = None  # folder for each video's AU-over-time plot
    progress: bool = True  # progress bars

    def __post_init__(self):
        if Path(self.out).suffix.lower() not in SUFFIXES:
            raise ConfigError("--out", self.out, f"a file name ending in {' or '.join(SUFFIXES)}", "command line")
        for key in ("every", "batch_size", "min_face"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')}", getattr(self, key), "an integer >= 1", "command line")
        if not 0 <= self.min_score <= 1:
            raise ConfigError("--min-score", self.min_score, "a number in [0, 1]", "command line")
        if self.detector not in detect.DETECTORS:
            raise ConfigError("--detector", self.detector, f"one of {', '.join(detect.DETECTORS)}", "command line")
        if self.device not in ("auto", "cpu") and not (self.device.startswith("cuda") and torch.cuda.is_available()):
            raise ConfigError("--device", self.device, "auto, cpu, or cuda[:N] on a machine with a CUDA GPU", "command line")

    @classmethod
    def from_args(cls, args) -> Options:
        """The options of a parsed command line (argparse's names are the fields' names)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def run(inputs: list[str], checkpoints: list[str], options: Options = Options()) -> pd.DataFrame:
    o = options
    out_path, device, dataset, every, min_score = Path(o.out), o.device, o.dataset, o.every, o.min_score
    recorded = {"every": o.every, "batch_size": o.batch_size, "min_face": o.min_face, "min_score": o.min_score, "detector": o.detector}
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    expression = [p for p in checkpoints if fer_checkpoint.is_fer(checkpoint.read(p))]
    models = [au_checkpoint.load(p, dataset) for p in checkpoints if p not in expression]
    fer_models = [fer_checkpoint.load(p) for p in expression]
    try:
        detector = detect.FaceDetector(min(DETECT_FLOOR, min_score), name=o.detector, device=dev)
    except ValueError as err:
        raise UserError(str(err)) from None
    for m in models:
        if (source := _crop_source(m.faces)) not in (None, o.detector):
            log.warning("%s was trained on crops from %s, not from %s: faces here are found by %s, whose boxes may "
                        "frame them differently", m.path, source, o.detector, o.detector)
    try:  # one ensemble per task: the AU checkpoints, the expression checkpoints
        heads = ([Ensemble(models, dev)] if models else []) + ([ExpressionEnsemble(fer_models, dev)] if fer_models else [])
    except ValueError as err:
        raise UserError(str(err)) from None
    au = heads[0] if models else None
    try:  # a bad output place is found before the work, not after it
        out_path.parent.mkdir(parents=True, exist_ok=True)
        annotator = Annotator(Path(o.annotate), heads, every) if o.annotate else None
    except OSError as err:
        raise UserError(f"{err.filename}: cannot write there ({err.strerror})") from None
    timings = Timings()
    try:
        table = predict(inputs, heads, every=every, batch_size=o.batch_size, min_face=o.min_face, min_score=min_score,
                        on_frame=annotator, progress=o.progress, timings=timings, detector=detector)
    finally:
        if annotator is not None:
            annotator.close()
    _write(table, out_path)
    record = provenance.record("predict", recorded | {"device": str(dev), "inputs": [str(i) for i in inputs]}, CODE,
                               checkpoints=[_describe(m) for m in models + fer_models],
                               faces=detector.describe() | {"min_score": min_score},
                               threshold=au.threshold if au else None, timings=timings.as_dict())
    sidecar = out_path.with_name(out_path.name + ".provenance.json")
    sidecar.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    if o.plot:
        videos = table.loc[table.time_s.notna(), "input"].unique()
        for head in heads:
            for video in videos:
                what = "AU" if head is au else "expression"
                if (png := plot_timeline(table, video, head.names, head.threshold, Path(o.plot), what)) is not None:
                    log.info("%s timeline of %s: %s", what, video, png)
    _summarise(table, out_path, timings)
    return table


def _crop_source(faces: dict | None) -> str | None:
    """What cut a checkpoint's training crops: a detector's name, ``the boxes in <file>``, or None (not recorded)."""
    if not faces:
        return None
    if "boxes" in faces:
        return f"the boxes in {faces['boxes']}"
    name = str(faces.get("detector", "")).lower()
    return "yunet" if name.startswith("yunet") else name or None  # checkpoints before 2026-12 say "YuNet (libfacedetection)"


def _write(table: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".parquet":
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, out)


def _describe(model: au_checkpoint.AUModel | fer_checkpoint.FERModel) -> dict:
    h = hashlib.sha256()
    with open(model.path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    about = {"threshold": model.threshold} if isinstance(model, au_checkpoint.AUModel) else {"classes": list(model.classes)}
    return {"path": str(model.path), "sha256": h.hexdigest(), "model": model.model.encoder_name,
            "img_size": model.img_size, "dataset": model.dataset, **about}


def _summarise(table: pd.DataFrame, out: Path, timings: Timings) -> None:
    bad = table[table.status == UNREADABLE]
    for row in bad.itertuples(index=False):
        log.warning("%s: %s", row.input, row.reason)
    counts = table.status.value_counts().to_dict()
    t = timings.as_dict()
    speed = f", {t['frames_per_s']:.1f} frames/s" if t["frames_per_s"] else ""
    log.info("%s: %d frames, %d faces scored, rows by status %s%s", out, t["frames"], t["faces"], counts, speed)
    if len(bad):
        log.warning("%d input(s) or part(s) could not be read: listed above and in %s (status 'unreadable')", len(bad), out)

"""Expression (FER) checkpoints for inference: ``finetune_fer``'s ``checkpoint.pth`` and its ``inference`` record
(model, input size, the classes of its outputs, normalisation and crop), loaded to apply it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checkpoint
from .checkpoint import CheckpointError
from .vit_classifier import ViTClassifier

FORMAT = "fmae-fer-classifier/1"


def is_fer(container: dict) -> bool:
    """Whether a checkpoint container (``checkpoint.read``) holds an expression classifier."""
    return (container.get("inference") or {}).get("task") == "fer"


@dataclass
class FERModel:
    """A finetuned expression classifier ready for inference, with what its inputs and outputs mean."""

    model: ViTClassifier
    path: Path
    dataset: str
    classes: tuple[str, ...]
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    box_margin: float
    crop_size: int

    @property
    def crop(self) -> tuple[float, int]:
        return self.box_margin, self.crop_size


def load(path: str | Path) -> FERModel:
    path = Path(path)
    ckpt = checkpoint.read(path)
    if not is_fer(ckpt):
        raise CheckpointError(f"{path}: not an expression checkpoint of `fmae finetune_fer` (no inference record of task fer)")
    meta, state = ckpt["inference"], ckpt["model"]
    classes = tuple(meta["classes"])
    model = ViTClassifier(meta["model"], len(classes), img_size=int(meta["img_size"]), drop_path=0.0)
    report = checkpoint.load_into(model, state)
    if report.missing or report.mismatched:
        raise CheckpointError(f"{path}: does not fit {meta['model']} at {meta['img_size']} px with {len(classes)} classes: "
                              f"missing {report.missing[:4]}, other shape {report.mismatched[:2]}")
    model.eval()
    return FERModel(model, path, meta["dataset"], classes, int(meta["img_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                    float(meta["box_margin"]), int(meta["crop_size"]))

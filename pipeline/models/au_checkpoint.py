"""AU checkpoints for inference: what a finetuned checkpoint carries, and loading one to apply it.

The finetune stage stores an ``inference`` record beside the weights (:func:`inference_record`):
the timm model name, input size, dataset and its AU list, the selected threshold, the input
normalisation and the crop (box margin, crop size), so a checkpoint is all ``predict`` needs.
A released FMAE-IAT finetuned file has none of it: its architecture is read off the weights, the
AU list comes from ``--dataset``, and the threshold is 0.5 (the released code stores none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..au.folds import AUS
from ..data.images import IMAGENET_MEAN, IMAGENET_STD
from . import checkpoint
from .checkpoint import CheckpointError
from .vit_classifier import ViTClassifier, vit_arch

FORMAT = "fmae-au-detector/1"
WIDTHS = {192: "tiny", 384: "small", 768: "base", 1024: "large"}
RELEASED = {"threshold": 0.5, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "box_margin": 0.05, "crop_size": 224}


def inference_record(model: str, img_size: int, dataset: str, threshold: float, box_margin: float, crop_size: int,
                     **about) -> dict:
    """The ``inference`` entry of a finetuned checkpoint; ``about`` adds descriptive fields (variant, fold)."""
    return {"format": FORMAT, "model": model, "img_size": img_size, "dataset": dataset, "aus": list(AUS[dataset]),
            "threshold": float(threshold), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "box_margin": box_margin, "crop_size": crop_size, **about}


@dataclass
class AUModel:
    """A finetuned AU detector ready for inference, with what its inputs and outputs mean."""

    model: ViTClassifier
    path: Path
    dataset: str
    aus: tuple[int, ...]
    threshold: float
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    box_margin: float
    crop_size: int
    faces: dict | None = None  # where the training crops' boxes came from (None: not recorded)

    @property
    def crop(self) -> tuple[float, int]:
        return self.box_margin, self.crop_size


def load(path: str | Path, dataset: str | None = None) -> AUModel:
    """The AU model in ``path`` (the pipeline's fold checkpoint, or a released finetuned one with
    ``dataset``); a one-line :class:`CheckpointError` for anything else."""
    path = Path(path)
    ckpt = checkpoint.read(path)
    state = ckpt["model"]
    if any(k.startswith(("decoder_", "mask_token")) for k in state):
        raise CheckpointError(f"{path}: an MAE pretraining checkpoint (encoder + decoder, no AU head); predict needs a "
                              "finetuned AU checkpoint such as models/au/iat/bp4d/fold1/checkpoint.pth "
                              "(finetune this one with `fmae finetune` first)")
    if "head.weight" not in state or "patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path}: not a finetuned ViT AU detector (no 'head.weight' / 'patch_embed.proj.weight'; "
                              f"keys: {sorted(state)[:6]}...)")
    meta = ckpt.get("inference")
    if meta is not None:
        if dataset is not None and dataset != meta["dataset"]:
            raise CheckpointError(f"{path}: trained on {meta['dataset']}, not {dataset} (--dataset): drop --dataset "
                                  "or pass a checkpoint of that dataset")
        name, img_size = meta["model"], int(meta["img_size"])
        info = {k: meta[k] for k in RELEASED} | {"dataset": meta["dataset"]}
    else:
        if dataset is None:
            raise CheckpointError(f"{path}: no inference record (a released FMAE-IAT checkpoint?): name its AU list "
                                  f"with --dataset {{{','.join(AUS)}}}")
        name, img_size = _architecture(path, state)
        selection = ckpt.get("selection") or {}
        info = RELEASED | {"dataset": dataset, "threshold": selection.get("threshold", RELEASED["threshold"])}
    aus = tuple(AUS[info["dataset"]])
    if state["head.weight"].shape[0] != len(aus):
        raise CheckpointError(f"{path}: its AU head has {state['head.weight'].shape[0]} outputs but {info['dataset']} "
                              f"has {len(aus)} AUs {list(aus)}: pass the --dataset it was trained on")
    model = ViTClassifier(name, len(aus), img_size=img_size, drop_path=0.0)
    report = checkpoint.load_into(model, state, skip=("ID_head.",))
    if report.missing or report.mismatched:
        raise CheckpointError(f"{path}: does not fit {name} at {img_size} px: "
                              f"missing {report.missing[:4]}, other shape {report.mismatched[:2]}")
    model.eval()
    return AUModel(model, path, info["dataset"], aus, float(info["threshold"]), img_size, tuple(info["mean"]),
                   tuple(info["std"]), float(info["box_margin"]), int(info["crop_size"]), (meta or {}).get("faces"))


def _architecture(path: Path, state: dict[str, torch.Tensor]) -> tuple[str, int]:
    """The timm name and input size of a ViT state dict without a record (released files)."""
    width, _, patch, _ = state["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5)) if "pos_embed" in state else 224 // patch
    if width not in WIDTHS:
        raise CheckpointError(f"{path}: a ViT of width {width}; expected one of {sorted(WIDTHS)} (ViT-Ti/S/B/L)")
    name = f"vit_{WIDTHS[width]}_patch{patch}_224"
    if vit_arch(name)["depth"] != depth:
        raise CheckpointError(f"{path}: {depth} blocks of width {width}, which is not {name}")
    return name, grid * patch

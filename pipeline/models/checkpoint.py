"""Checkpoints in the released FMAE/MAE container format, and loading what people bring.

A container is a dict ``{"model": state_dict, "optimizer": ..., "epoch": int, "scaler": ...,
"args" or "params": ...}``; released files pickle an ``argparse.Namespace`` as ``args``. A bare
state dict is accepted too, and a ``module.`` prefix (saved from a DDP wrapper) is stripped.
Loading reports which keys matched, which the model lacks, which the file lacks and which had
another shape, so a user sees at once whether the weights they meant actually arrived.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model (printed as one line by ``fmae``)."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file and rename it over ``path``: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_resumable(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """The container at ``path`` if a run of the same settings wrote it (its ``fingerprint``
    matches), else None: no file, or one of other settings or data (warned; it gets overwritten)."""
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = read(path)
    if ckpt.get("fingerprint") != fingerprint:
        log.warning("%s was written with other settings or data: starting afresh (it will be overwritten)", path)
        return None
    log.info("resuming from %s after epoch %d", path, ckpt["epoch"] + 1)
    return ckpt


def read(path: str | Path) -> dict[str, Any]:
    """The container in ``path`` (a bare state dict comes back as ``{"model": it}``).

    Loads with ``weights_only=True`` and ``argparse.Namespace`` allow-listed (released files
    pickle their args), so no arbitrary code runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds; all mean "cannot read"
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({_reason(err)})") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (a state dict or a container with 'model'), got {type(obj).__name__}")
    if "model" not in obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"model": obj}
    if not isinstance(obj.get("model"), dict):
        raise CheckpointError(f"{path}: no 'model' state dict inside (keys: {sorted(obj)[:10]})")
    obj["model"] = {k.removeprefix("module."): v for k, v in obj["model"].items()}
    return obj


def _reason(err: Exception) -> str:
    """torch.load's error in one line (its weights-only message runs to a page)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if text.startswith("Weights only load failed"):
        return "not a torch file, or one that pickles objects other than tensors, containers and argparse.Namespace"
    return text[:200]


@dataclass
class LoadReport:
    """What :func:`load_into` did: keys copied, keys left at their init, keys ignored."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not used by the model
    resized: list[str] = field(default_factory=list)  # position embeddings resampled to the model's grid
    mismatched: list[str] = field(default_factory=list)  # same name, other shape: left at init

    def summary(self) -> str:
        return (f"{len(self.matched)} tensors loaded, {len(self.missing)} missing from the file, "
                f"{len(self.unexpected)} unused, {len(self.mismatched)} with another shape, "
                f"{len(self.resized)} position embeddings resampled")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("matched", "missing", "unexpected", "resized", "mismatched")}


POS_EMBED_KEYS = ("pos_embed", "decoder_pos_embed")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> LoadReport:
    """Copy the tensors of ``state`` whose names and shapes fit ``model``; report the rest.

    Keys starting with an entry of ``skip`` are treated as unused. A position embedding for
    another grid is resampled with timm's ``resample_abs_pos_embed`` (one prefix token).
    """
    from timm.layers import resample_abs_pos_embed

    own = model.state_dict()
    report = LoadReport()
    take: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own or (skip and key.startswith(skip)):
            report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape != target.shape and key in POS_EMBED_KEYS and value.ndim == 3:
            old = int(round((value.shape[1] - 1) ** 0.5))
            new = int(round((target.shape[1] - 1) ** 0.5))
            value = resample_abs_pos_embed(value, new_size=(new, new), old_size=(old, old), num_prefix_tokens=1)
            report.resized.append(key)
        if value.shape != target.shape:
            report.mismatched.append(f"{key}: file {tuple(value.shape)}, model {tuple(target.shape)}")
            continue
        take[key] = value
        report.matched.append(key)
    model.load_state_dict(take, strict=False)
    report.missing = [k for k in own if k not in take]
    return report

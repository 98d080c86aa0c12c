"""Pretrained weights into a finetuning model: the pretrain stage's encoder or a released checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import paths
from ..models import checkpoint

log = logging.getLogger(__name__)


def init_path(init: str) -> Path:
    """The file ``finetune.init`` names (``pretrain``, the older spelling, is the pretrain stage's output)."""
    return paths.PRETRAINED if init == "pretrain" else Path(init)


def load_backbone(model: torch.nn.Module, init: str) -> checkpoint.LoadReport:
    """Pretrained weights into ``model``: the pretrain stage's, a released FMAE (decoder keys unused)
    or a released FMAE-IAT finetuned checkpoint (``fc_norm``, ``head``, ``ID_head`` too)."""
    path = init_path(init)
    report = checkpoint.load_into(model, checkpoint.read(path)["model"])
    log.info("init from %s: %s", path, report.summary())
    if not any(k.startswith("blocks.") for k in report.matched):
        raise checkpoint.CheckpointError(f"{path}: no encoder block fits {model.encoder_name}")
    return report

"""Stage ``pretrain``: MAE on the curated Face9M shards -> ``models/fmae/``.

Single process: ``fmae pretrain`` (what ``dvc repro`` runs). N GPUs on M nodes:
``torchrun --nnodes M --nproc-per-node N [--rdzv-endpoint host:port] -m pipeline pretrain``.
Outputs: ``models/fmae/checkpoint-last.pth`` (resumable container), ``models/fmae/fmae.pth``
(final weights, released-format keys), ``models/fmae/provenance.json``, dvclive logs in
``dvclive/pretrain/`` (loss, lr, images/s, data-wait fraction, MFU on GPUs, reconstruction
grids) and ``metrics/pretrain.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .. import paths, provenance, stage_code
from ..config import ConfigError, Params
from ..data.shards import read_shard_set
from .train import pretrain

SHARDS = paths.SHARDS
OUT = paths.PRETRAINED_DIR
LIVE = paths.PRETRAIN_LIVE
METRICS = paths.PRETRAIN_METRICS
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)

log = logging.getLogger(__name__)


def run(params: Params, shards_dir: Path = SHARDS, out: Path = OUT, live_dir: Path = LIVE,
        metrics_path: Path = METRICS, stop_after: int | None = None) -> dict:
    if params.pretrain.init and not Path(params.pretrain.init).is_file():
        raise ConfigError("pretrain.init", params.pretrain.init, "'' (random init) or the path of an existing checkpoint file")
    shards = read_shard_set(shards_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0
    live = None
    if is_main:
        from dvclive import Live

        resuming = (out / "checkpoint-last.pth").is_file()
        live = Live(str(live_dir), resume=resuming, save_dvc_exp=False, dvcyaml=None, report=None)
        live.log_params({"model": params.model.name, **params.to_dict()["pretrain"]})
    try:
        summary = pretrain(params, shards, out, live, stop_after=stop_after)
    finally:
        if live is not None:
            live.end()
    if is_main:
        provenance.write(out / "provenance.json", "pretrain", params.to_dict(), CODE)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps({"pretrain": summary}, indent=2, sort_keys=True) + "\n")
        log.info("pretraining done: %s", summary)
    return summary

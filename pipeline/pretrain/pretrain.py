"""Stage ``pretrain``: MAE (or FSFM, ``pretrain.method``) on the curated Face9M shards -> ``models/fmae/``;
``pretrain_compare@<method>`` (``fmae pretrain --method M``): the same run with another method, for the
few-shot comparison -> ``models/compare/<method>/`` (dvclive in ``dvclive/pretrain_compare/<method>/``,
metrics in its ``metrics.json``).

Single process: ``fmae pretrain`` (what ``dvc repro`` runs). N GPUs on M nodes:
``torchrun --nnodes M --nproc-per-node N [--rdzv-endpoint host:port] -m pipeline pretrain``.
CLP (``pretrain.method: clp``) reads the ``clips`` stage's windows (``data/clips``) instead of the images.
Outputs: ``models/fmae/checkpoint-last.pth`` (resumable container), ``models/fmae/fmae.pth``
(final weights, released-format keys), ``models/fmae/provenance.json``, dvclive logs in
``dvclive/pretrain/`` (loss, lr, images/s, data-wait fraction, MFU on GPUs, reconstruction
grids) and ``metrics/pretrain.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from .. import paths, provenance, stage_code
from ..config import PRETRAIN_METHODS, ConfigError, MissingInput, Params, PretrainConfig, UserError
from ..data.shards import read_shard_set
from .train import pretrain

SHARDS = paths.SHARDS
OUT = paths.PRETRAINED_DIR
LIVE = paths.PRETRAIN_LIVE
METRICS = paths.PRETRAIN_METRICS
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)

log = logging.getLogger(__name__)


def check_regions(cfg: PretrainConfig, counts_path: Path) -> None:
    """FSFM's region masking needs a map for every curated image: one line naming the first source without."""
    if cfg.method != "fsfm" or cfg.fsfm.masking != "regions":
        return
    counts = json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    for source, n in sorted(counts.items()):
        if n["regions"] < n["samples"]:
            raise UserError(f"pretrain.method = fsfm with fsfm.masking = regions: {counts_path}: source {source} has region "
                            f"maps for {n['regions']} of its {n['samples']} curated images; set sources.{source}.regions to "
                            "the folder of its maps (README: region maps) and re-curate, or set pretrain.fsfm.masking: random")


def clip_windows(params: Params, cfg: PretrainConfig, clips: Path = paths.CLIPS):
    """CLP's shards and people, checked against the settings: one line for what does not fit."""
    from ..clp.data import identity_indices

    length = params.clips.length
    if cfg.clp.far >= length:
        raise ConfigError("pretrain.clp.far", cfg.clp.far, f"an integer < clips.length = {length} (a window needs negatives)")
    if cfg.batch_size // length < 2:
        raise ConfigError("pretrain.batch_size", cfg.batch_size, f"at least 2 windows of clips.length = {length} frames "
                          f"with method clp (>= {2 * length}): the cross-identity term pairs windows of two people")
    if not (clips / "sizes.json").is_file():
        raise MissingInput(f"{clips / 'sizes.json'} missing: run `dvc repro clips` first (CLP pretrains on its windows)")
    return read_shard_set(clips / "shards", clips / "sizes.json"), identity_indices(clips / "index.parquet")


def run(params: Params, shards_dir: Path = SHARDS, out: Path = OUT, live_dir: Path = LIVE,
        metrics_path: Path = METRICS, stop_after: int | None = None, method: str | None = None) -> dict:
    cfg = params.pretrain
    if method is not None and method != cfg.method:  # pretrain_compare@<method>: the same settings, another method
        if method not in PRETRAIN_METHODS:
            raise ConfigError("--method", method, f"one of {', '.join(PRETRAIN_METHODS)}", "command line")
        cfg = dataclasses.replace(cfg, method=method)
        out, live_dir = paths.COMPARE_DIR / method, paths.COMPARE_LIVE / method
        metrics_path = out / "metrics.json"
    if cfg.init and not Path(cfg.init).is_file():
        raise ConfigError("pretrain.init", cfg.init, "'' (random init) or the path of an existing checkpoint file")
    check_regions(cfg, shards_dir.parent / paths.SHARD_REGIONS.name)
    record = params.to_dict()
    record["pretrain"]["method"] = cfg.method  # what ran (pretrain_compare: not params.yaml's pretrain.method)
    shards, identities = clip_windows(params, cfg) if cfg.method == "clp" else (read_shard_set(shards_dir), None)
    is_main = int(os.environ.get("RANK", "0")) == 0
    live = None
    if is_main:
        from dvclive import Live

        resuming = (out / "checkpoint-last.pth").is_file()
        live = Live(str(live_dir), resume=resuming, save_dvc_exp=False, dvcyaml=None, report=None)
        live.log_params({"model": params.model.name, **record["pretrain"]})
    try:
        summary = pretrain(params, shards, out, live, stop_after=stop_after, cfg=cfg, identities=identities)
    finally:
        if live is not None:
            live.end()
    if is_main:
        provenance.write(out / "provenance.json", f"pretrain ({cfg.method})", record, CODE)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps({"pretrain": summary}, indent=2, sort_keys=True) + "\n")
        log.info("pretraining done: %s", summary)
    return summary

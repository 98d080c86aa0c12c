"""``fmae <stage>`` / ``python -m pipeline <stage>``: run one pipeline stage.

Each stage is a module with ``run(params)``; the params are loaded and validated here, once,
before the stage is imported, so a bad setting fails in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .config import PARAMS_FILE, ConfigError, load_params

STAGES = {
    "synthesize": ("pipeline.synth.stage", "write the synthetic face world (sources and AU datasets)"),
    "scan": ("pipeline.curate.scan", "list the enabled Face9M sources into a manifest (headers only)"),
    "curate": ("pipeline.curate.stage", "filter, de-duplicate and shard Face9M with Ray"),
    "pretrain": ("pipeline.pretrain.stage", "MAE pretraining of the ViT on the Face9M shards (torchrun for DDP)"),
    "prepare": ("pipeline.au.prepare", "AU frame index and face-crop shards of one dataset (--dataset)"),
    "finetune": ("pipeline.finetune.stage", "AU finetuning of one fold (--dataset, --fold, --variant iat|fmae)"),
    "evaluate": ("pipeline.evaluate.stage", "F1 tables over folds, identity probe, t-SNE, learning curves, report"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmae", description="FMAE-IAT pipeline stages (normally run by `dvc repro`).")
    parser.add_argument("stage", choices=sorted(STAGES), help="; ".join(f"{k}: {v[1]}" for k, v in STAGES.items()))
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one param for this run only, YAML value (e.g. --set synth.workers=1)")
    parser.add_argument("--dataset", help="prepare, finetune: the AU dataset (bp4d, bp4dplus, disfa)")
    parser.add_argument("--fold", type=int, help="finetune: the 1-based test fold")
    parser.add_argument("--variant", choices=("iat", "fmae"), help="finetune: iat (identity head, iat.*) or fmae (none)")
    args = parser.parse_args(argv)
    stage_args = {k: v for k in ("dataset", "fold", "variant") if (v := getattr(args, k)) is not None}
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = dict(_parse_override(s) for s in args.set)
        params = load_params(args.params, overrides)
    except ConfigError as err:
        print(f"fmae {args.stage}: {err}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[args.stage][0])
    try:
        module.run(params, **stage_args)
    except ConfigError as err:
        print(f"fmae {args.stage}: {err}", file=sys.stderr)
        return 2
    return 0


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError("--set", text, "KEY=VALUE, e.g. synth.workers=1", "command line")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string; people mean a number
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed

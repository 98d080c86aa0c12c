"""``fmae <stage>`` / ``python -m pipeline <stage>``: run one pipeline stage.

Each stage is a module with ``run(params, **options)``; the params are loaded and validated here,
once, before the stage is imported, so a bad setting fails in well under a second. Every mistake a
user can make on the command line or in ``params.yaml`` ends in one line on stderr and exit code 2
(:class:`~pipeline.config.UserError`), never in a traceback, and before the stage writes anything.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import PARAMS_FILE, PRETRAIN_METHODS, ConfigError, UserError, load_params

DATASETS = ("bp4d", "bp4dplus", "disfa")
FER_DATASETS = ("rafdb", "affectnet", "custom")


@dataclass(frozen=True)
class Stage:
    package: str  # stage X runs the module pipeline.<package>.X: one rule for every entry module
    help: str

    def module(self, name: str) -> str:
        return f"pipeline.{self.package}.{name}"


STAGES = {
    "synthesize": Stage("synth", "write the synthetic face world (sources and AU datasets)"),
    "scan": Stage("curate", "list the enabled Face9M sources into a manifest (headers only)"),
    "curate": Stage("curate", "filter, de-duplicate and shard Face9M with Ray"),
    "clips": Stage("clips", "windows of consecutive face crops from a face-video source, with Ray (CLP's data)"),
    "pretrain": Stage("pretrain", "MAE or FSFM pretraining of the ViT on the Face9M shards (torchrun for DDP)"),
    "prepare": Stage("au", "AU frame index and face-crop shards of one dataset"),
    "finetune": Stage("au", "AU finetuning of one fold"),
    "probe": Stage("evaluate", "identity probes (the release's, strong, unseen sequences) of one encoder"),
    "evaluate": Stage("evaluate", "F1 tables over folds and variants, identity probes, t-SNE, learning curves, report"),
    "prepare_fer": Stage("fer", "expression image index and face-crop shards of one FER dataset"),
    "finetune_fer": Stage("fer", "expression recognition finetuning of one FER dataset"),
    "evaluate_fer": Stage("fer", "FER accuracy tables, confusion matrices, accuracy per epoch, report"),
    "fewshot": Stage("fewshot", "few-shot AU transfer of one encoder on one fold: linear probe and short finetune per subject budget"),
    "fewshot_report": Stage("fewshot", "the few-shot comparison: metrics, AUC against labelled subjects, report"),
}


def reads(name: str, dvc_yaml: Path = Path("dvc.yaml")) -> str:
    """The params.yaml keys that dvc.yaml declares for the stages running ``fmae <name>`` (what DVC
    re-runs them on), or a pointer to dvc.yaml where there is none to read."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "see the project's dvc.yaml"
    keys = [k for spec in stages.values() if str(spec.get("cmd", "")).split()[:2] == ["fmae", name]
            for entry in spec.get("params", [])
            for k in ([entry] if isinstance(entry, str) else entry.get("params.yaml", []) if isinstance(entry, dict) else [])]
    return ", ".join(dict.fromkeys(keys)) or "none"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``fmae finetune: --fold: ...``) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fmae", description="FMAE-IAT pipeline stages (normally run by `dvc repro`).")
    subs = parser.add_subparsers(dest="stage", required=True, metavar="STAGE", parser_class=_Parser)
    for name, stage in STAGES.items():
        sub = subs.add_parser(name, help=stage.help, description=f"{stage.help}. Reads params.yaml: {reads(name)}.")
        sub.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override one param for this run only, YAML value (e.g. --set synth.workers=1)")
        if name in ("prepare", "finetune"):
            sub.add_argument("--dataset", choices=DATASETS, required=name == "finetune",
                             help="the AU dataset" + ("" if name == "finetune" else " (default: every one of finetune.datasets)"))
        if name in ("prepare_fer", "finetune_fer"):
            sub.add_argument("--dataset", choices=FER_DATASETS, required=name == "finetune_fer",
                             help="the FER dataset" + ("" if name == "finetune_fer" else " (default: every one of fer.datasets)"))
        if name == "probe":
            sub.add_argument("--dataset", choices=DATASETS, required=True, help="the AU dataset whose frames are probed")
            sub.add_argument("--model", choices=("pretrained", "fmae", "iat", "random"), required=True,
                             help="pretrained: finetune.init before finetuning; a variant: its models of evaluate.probe_folds")
        if name == "pretrain":
            sub.add_argument("--method", choices=PRETRAIN_METHODS,
                             help="pretrain with this method instead of pretrain.method, into models/compare/<method>/ "
                                  "(the pretrain_compare stages)")
        if name == "fewshot":
            sub.add_argument("--encoder", required=True, help="random, or a pretraining method of pretrain.method and fewshot.methods")
            sub.add_argument("--fold", type=int, required=True, help="the 1-based BP4D test fold")
        if name == "finetune":
            sub.add_argument("--fold", type=int, required=True, help="the 1-based test fold (BP4D, DISFA: 1-3; BP4D+: 1-4)")
            sub.add_argument("--variant", choices=("iat", "fmae", "random"), default="iat",
                             help="iat: with the gradient-reversed identity head (iat.*); fmae: the plain baseline; "
                                  "random: the plain baseline from random weights (finetune.init unused)")
    _add_predict(subs)
    sub = subs.add_parser("results", help="the paper-style table of the workspace, HEAD and every experiment",
                          description="One row per DVC experiment: lambda, identity head, seed, protocol, test F1 and "
                                      "AUC of FMAE and FMAE-IAT, the all-positive floor and the identity probe.")
    sub.add_argument("--dataset", choices=DATASETS, help="only this dataset (default: every evaluated one)")
    sub.add_argument("--readme", action="store_true",
                     help="print instead the README's demo figures, rendered from the workspace's metrics files")
    sub = subs.add_parser("overlay", help="run the pipeline with an overlay's keys (dvc exp run -S ...)",
                          description="Apply an overlay (params-fast.yaml, params-paper.yaml: only the keys that differ "
                                      "from params.yaml) as `dvc exp run -S key=value ...`; arguments after `--` go to "
                                      "dvc exp run (e.g. -- --queue, -- --name fast).")
    sub.add_argument("file", type=Path, help="the overlay file")
    sub.add_argument("--print", action="store_true", help="print the dvc command instead of running it")
    return parser


def _add_predict(subs) -> None:
    sub = subs.add_parser("predict", help="AU and expression probabilities for your own images, folders and videos",
                          description="Detect every face (RetinaFace, or YuNet with --detector yunet), crop it as training crops are cut "
                                      "and write one row "
                                      "per face per frame with a probability and an occurrence column per AU (AU "
                                      "checkpoints) and a probability column per expression (FER checkpoints). "
                                      "Does not read params.yaml: the checkpoint carries what it needs.")
    sub.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) and videos")
    sub.add_argument("--checkpoint", "-c", nargs="+", action="extend", required=True, metavar="PATH",
                     help="an AU fold checkpoint (models/au/<variant>/<dataset>/fold<k>/checkpoint.pth) and/or an "
                          "expression checkpoint (models/fer/<dataset>/checkpoint.pth); several of one kind are "
                          "averaged as an ensemble")
    sub.add_argument("--dataset", choices=DATASETS, help="the AU list of a released checkpoint that does not name it")
    sub.add_argument("--out", "-o", default="results.csv", help="output table, .csv or .parquet (default: %(default)s)")
    sub.add_argument("--every", type=int, default=1, metavar="N", help="read every N-th video frame (default: all)")
    sub.add_argument("--batch-size", type=int, default=32, help="faces per model call (default: %(default)s)")
    sub.add_argument("--min-face", type=int, default=40, metavar="PX",
                     help="faces whose shorter side is below this many pixels are listed, not scored (default: %(default)s)")
    sub.add_argument("--min-score", type=float, default=0.6,
                     help="faces below this detector score are listed, not scored (default: %(default)s)")
    sub.add_argument("--device", default="auto", help="auto (CUDA when present, bf16), cpu or cuda[:N]")
    sub.add_argument("--detector", default="retinaface",  # checked by predict.run.Options: parsing imports no torch
                     help="face detector: retinaface (shipped; on --device) or yunet (CPU; needs the yuface wheel) "
                          "(default: %(default)s)")
    sub.add_argument("--annotate", metavar="DIR", help="also write annotated images / MP4s (boxes, active AUs) here")
    sub.add_argument("--plot", metavar="DIR", help="also write each video's AU-over-time plot (face 0) here")


def _predict(args) -> None:
    from .predict.run import Options, run

    run(args.inputs, args.checkpoint, Options.from_args(args))


def main(argv: list[str] | None = None) -> int:
    argv, extra = list(sys.argv[1:] if argv is None else argv), []
    if argv[:1] == ["overlay"] and "--" in argv:  # what follows `--` is dvc exp run's
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = build_parser().parse_args(argv)
    stage_args = {k: v for k in ("dataset", "fold", "variant", "model", "method", "encoder") if (v := getattr(args, k, None)) is not None}
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.stage == "predict":
            _predict(args)
            return 0
        if args.stage == "overlay":
            from . import overlay

            return overlay.run(args.file, extra, args.print)
        if args.stage == "results":
            from .demo_figures import from_files
            from .results import run as results

            if args.readme:
                print(from_files())
            else:
                results(dataset=args.dataset)
            return 0
        if "fold" in stage_args:
            _check_fold(stage_args.get("dataset", "bp4d"), stage_args["fold"])
        params = load_params(args.params, dict(_parse_override(s) for s in args.set))
        module = importlib.import_module(STAGES[args.stage].module(args.stage))
        module.run(params, **stage_args)
    except UserError as err:
        print(f"fmae {args.stage}: {err}", file=sys.stderr)
        return 2
    return 0


def _check_fold(dataset: str, fold: int) -> None:
    from .au.folds import FOLDS

    n = len(FOLDS[dataset])
    if not 1 <= fold <= n:
        raise ConfigError("--fold", fold, f"a fold of {dataset}: 1-{n}", "command line")


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError("--set", text, "KEY=VALUE, e.g. synth.workers=1", "command line")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError("--set", text, "a YAML value after '=' (quote strings with ':' or '#')", "command line") from None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string; people mean a number
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed

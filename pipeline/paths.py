"""Where the stages write, relative to the project root: each path once, for the stage that writes it
and the stages and commands that read it. ``dvc.yaml`` names the same paths as the stages' outs
(``tests/test_stage_deps.py`` checks that each one here is an out there)."""

from pathlib import Path

MANIFEST = Path("data/face9m/manifest.parquet")  # scan
FACE9M = Path("data/face9m")  # curate: shards/, rejects.parquet
SHARDS = FACE9M / "shards"
SHARD_REGIONS = FACE9M / "regions.json"  # per source: samples, and those with a region map (FSFM's masking)
CURATION_METRICS = Path("metrics/curation.json")
CURATION_SAMPLES = Path("reports/curation_samples.png")

CLIPS = Path("data/clips")  # clips: shards/, sizes.json, index.parquet (windows of face-video clips, for CLP)
CLIPS_METRICS = Path("metrics/clips.json")

PRETRAINED_DIR = Path("models/fmae")  # pretrain: checkpoint-last.pth, fmae.pth, provenance.json
PRETRAINED = PRETRAINED_DIR / "fmae.pth"
PRETRAIN_LIVE = Path("dvclive/pretrain")
PRETRAIN_METRICS = Path("metrics/pretrain.json")
COMPARE_DIR = Path("models/compare")  # pretrain_compare@<method>: <method>/ as PRETRAINED_DIR (other pretraining methods)
COMPARE_LIVE = Path("dvclive/pretrain_compare")
FEWSHOT = Path("models/fewshot")  # fewshot@<encoder>-<fold>: <encoder>/fold<k>/metrics.json
FEWSHOT_METRICS = Path("metrics/fewshot.json")  # fewshot_report
FEWSHOT_PLOT = Path("plots/fewshot/auc_by_subjects.png")
FEWSHOT_REPORT = Path("reports/fewshot.md")

AU_CROPS = Path("data/au")  # prepare@<dataset>: <dataset>/index.parquet and shards
AU_MODELS = Path("models/au")  # finetune*@<dataset>-<fold>: <variant>/<dataset>/fold<k>/
AU_LIVE = Path("dvclive/finetune")
PROBES = Path("metrics/probes")  # probe*: <dataset>-<model>.json
PROBE_TSNE = Path("data/probes")  # probe*: <dataset>-<model>.tsne.parquet
METRICS = Path("metrics")  # evaluate: au.json
AU_PLOTS = Path("plots/evaluate")
AU_TABLES = Path("reports/evaluate")
AU_REPORT = Path("reports/au.md")

FER_CROPS = Path("data/fer")  # prepare_fer@<dataset>
FER_MODELS = Path("models/fer")  # finetune_fer@<dataset>: <dataset>/
FER_LIVE = Path("dvclive/fer")
FER_METRICS = Path("metrics/fer.json")  # evaluate_fer
FER_PLOTS = Path("plots/fer")
FER_REPORT = Path("reports/fer.md")

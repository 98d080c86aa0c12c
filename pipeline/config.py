"""Typed, frozen configuration loaded from ``params.yaml``.

``params.yaml`` is the only source of settings. :func:`load_params` turns it into a tree of
frozen dataclasses (:class:`Params`) and rejects, before any work starts, unknown keys, wrong
types and bad values with a :class:`ConfigError` naming the key, the value and what is allowed.
Stages receive these objects; none of them parses YAML.

Each dataclass below mirrors one section of ``params.yaml``; range checks live in the
``__post_init__`` of the class that owns the field, and report the field's name relative to
that class. The loader prefixes the section path, so messages read
``params.yaml: iat.lambda = -1.0: expected a number >= 0``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PARAMS_FILE = "params.yaml"

# Encoders a user may name in ``model.name``: timm ViTs with 16 px patches at 224 px.
MODEL_NAMES = (
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
)
SOURCE_NAMES = ("celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face")
AU_DATASETS = ("bp4d", "bp4dplus", "disfa")
FER_DATASETS = ("rafdb", "affectnet", "custom")


class UserError(Exception):
    """A mistake the user can fix (a bad setting, a missing input): ``fmae`` prints it as one line
    and exits with 2, never with a traceback."""


class MissingInput(UserError, FileNotFoundError):
    """A file a stage reads is missing: a dataset's metadata, or an earlier stage's output."""


class InputError(UserError, ValueError):
    """An input file's content is not what was expected (a missing column, an unknown subject)."""


class OutputError(UserError, OSError):
    """An output cannot be written (a full disk, a read-only or vanished folder)."""


class ConfigError(UserError, ValueError):
    """A setting in params.yaml is unknown, of the wrong type, or out of range."""

    def __init__(self, key: str, value: Any, expected: str, source: str = PARAMS_FILE):
        self.key, self.value, self.expected, self.source = key, value, expected, source
        super().__init__(f"{source}: {key} = {value!r}: expected {expected}")

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.expected, self.source)


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise a :class:`ConfigError` for ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, value, expected)


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


# ----------------------------------------------------------------------------------- synth
@dataclass(frozen=True)
class SynthSource:
    images: int  # images written for this source (before injected flaws)
    identities: int  # distinct people among them

    def __post_init__(self):
        check(self.images >= 1, "images", self.images, "an integer >= 1")
        check(1 <= self.identities <= self.images, "identities", self.identities, f"an integer in [1, images={self.images}]")


@dataclass(frozen=True)
class SynthSources:
    celeba: SynthSource
    ffhq: SynthSource
    vggface2: SynthSource
    casia_webface: SynthSource
    megaface: SynthSource
    edface: SynthSource
    umdfaces: SynthSource
    laion_face: SynthSource


@dataclass(frozen=True)
class SynthAUDataset:
    subjects: int  # how many of the dataset's real subject IDs to render, spread over its folds
    tasks: int  # sequences per subject (BP4D tasks, BP4D+ coded tasks; DISFA has one video)
    frames: int  # frames per sequence

    def __post_init__(self):
        check(self.subjects >= 1, "subjects", self.subjects, "an integer >= 1")
        check(self.tasks >= 1, "tasks", self.tasks, "an integer >= 1")
        check(self.frames >= 2, "frames", self.frames, "an integer >= 2")


@dataclass(frozen=True)
class SynthAU:
    bp4d: SynthAUDataset
    bp4dplus: SynthAUDataset
    disfa: SynthAUDataset
    frame_scale: float  # frame size as a fraction of the real dataset's resolution
    left_camera: bool  # also write DISFA's left-camera videos

    def __post_init__(self):
        check(0.05 <= self.frame_scale <= 1.0, "frame_scale", self.frame_scale, "a number in [0.05, 1]")
        check(self.bp4d.tasks <= 8, "bp4d.tasks", self.bp4d.tasks, "at most 8 (BP4D has tasks T1-T8)")
        check(self.bp4dplus.tasks <= 4, "bp4dplus.tasks", self.bp4dplus.tasks, "at most 4 (BP4D+ codes T1, T6, T7, T8)")
        check(self.disfa.tasks == 1, "disfa.tasks", self.disfa.tasks, "1 (DISFA has one video per subject)")


@dataclass(frozen=True)
class SynthFERDataset:
    images: int  # expression images written (train and test together)

    def __post_init__(self):
        check(self.images >= 40, "images", self.images, "an integer >= 40 (every class needs a few images per split)")


@dataclass(frozen=True)
class SynthFER:
    rafdb: SynthFERDataset
    affectnet: SynthFERDataset


@dataclass(frozen=True)
class SynthVideo:
    identities: int  # people of the face-video source (VoxCeleb2 layout), each in their own videos
    videos: int  # source videos per identity (one background each)
    clips: int  # clips per video (each its own lighting, AU trajectory and pose drift)
    frames: int  # frames per clip (25 fps)
    size: int  # side of the square, face-centred frames (VoxCeleb2: 224)

    def __post_init__(self):
        check(self.identities >= 2, "identities", self.identities, "an integer >= 2 (other people are CLP's contrast)")
        check(self.videos >= 1, "videos", self.videos, "an integer >= 1")
        check(self.clips >= 1, "clips", self.clips, "an integer >= 1")
        check(self.frames >= 2, "frames", self.frames, "an integer >= 2")
        check(64 <= self.size <= 512, "size", self.size, "an integer in [64, 512]")


@dataclass(frozen=True)
class SynthConfig:
    seed: int
    out_dir: str
    workers: int
    identity_au_strength: float
    ffhq_size: int
    flaws_per_kind: int
    shared_identities: int
    sources: SynthSources
    au: SynthAU
    fer: SynthFER
    video: SynthVideo

    def __post_init__(self):
        check(self.workers >= 1, "workers", self.workers, "an integer >= 1")
        check(self.identity_au_strength >= 0, "identity_au_strength", self.identity_au_strength, "a number >= 0")
        check(64 <= self.ffhq_size <= 1024, "ffhq_size", self.ffhq_size, "an integer in [64, 1024]")
        check(self.flaws_per_kind >= 0, "flaws_per_kind", self.flaws_per_kind, "an integer >= 0")
        check(self.shared_identities >= 0, "shared_identities", self.shared_identities, "an integer >= 0")
        check(bool(self.out_dir), "out_dir", self.out_dir, "a non-empty path")


# --------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class SourceConfig:
    enabled: bool
    root: str
    max_images: int  # 0 = no cap
    regions: str = ""  # folder of the images' facial region maps (pipeline.region_maps), "" = none

    def __post_init__(self):
        check(self.max_images >= 0, "max_images", self.max_images, "an integer >= 0 (0 = no cap)")
        check(not self.enabled or bool(self.root), "root", self.root, "a path when the source is enabled")


@dataclass(frozen=True)
class SourcesConfig:
    celeba: SourceConfig
    ffhq: SourceConfig
    vggface2: SourceConfig
    casia_webface: SourceConfig
    megaface: SourceConfig
    edface: SourceConfig
    umdfaces: SourceConfig
    laion_face: SourceConfig
    folder: SourceConfig
    scan_workers: int = 0  # processes reading headers in parallel (0 = one per CPU)

    def __post_init__(self):
        check(self.scan_workers >= 0, "scan_workers", self.scan_workers, "an integer >= 0 (0 = one per CPU)")

    def enabled(self) -> dict[str, SourceConfig]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), SourceConfig) and getattr(self, f.name).enabled}


# ---------------------------------------------------------------------------------- curate
@dataclass(frozen=True)
class CurateConfig:
    max_aspect: float
    min_side: int
    image_size: int
    jpeg_quality: int
    shard_size: int
    seed: int
    near_duplicates: bool
    rehash_finished: bool = False  # re-hash finished shards on resume (else trusted by size + mtime)

    def __post_init__(self):
        check(self.max_aspect >= 1.0, "max_aspect", self.max_aspect, "a number >= 1")
        check(self.min_side >= 0, "min_side", self.min_side, "an integer >= 0 (0 = off)")
        check(self.image_size >= 16, "image_size", self.image_size, "an integer >= 16")
        check(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "an integer in [1, 100]")
        check(self.shard_size >= 1, "shard_size", self.shard_size, "an integer >= 1")


@dataclass(frozen=True)
class RayConfig:
    address: str  # "" = start a local Ray
    num_cpus: int

    def __post_init__(self):
        check(self.num_cpus >= 1, "num_cpus", self.num_cpus, "an integer >= 1")


# ----------------------------------------------------------------------------------- clips
@dataclass(frozen=True)
class ClipsConfig:
    root: str  # a face-video source: <identity>/<video>/<clip>.mp4 (VoxCeleb2's dev/mp4) or <clip>/ frame folders
    length: int  # frames per window (T)
    stride: int  # frames between the first frames of two windows of a track
    crop_size: int  # side of the stored face crops
    box_margin: float  # face box grown by this fraction of its size per side
    min_face_score: float  # detector score (0-1) a face needs
    min_iou: float  # a face overlapping the previous frame's by less ends the track
    detector: Literal["retinaface", "yunet"]
    jpeg_quality: int
    clips_per_shard: int  # clips per Ray task and shard

    def __post_init__(self):
        check(bool(self.root), "root", self.root, "a path to the face-video source")
        check(self.length >= 2, "length", self.length, "an integer >= 2 (a window is a span of time)")
        check(self.stride >= 1, "stride", self.stride, "an integer >= 1")
        check(self.crop_size >= 16, "crop_size", self.crop_size, "an integer >= 16")
        check(0 <= self.box_margin <= 1, "box_margin", self.box_margin, "a number in [0, 1]")
        check(0 <= self.min_face_score <= 1, "min_face_score", self.min_face_score, "a number in [0, 1]")
        check(0 <= self.min_iou < 1, "min_iou", self.min_iou, "a number in [0, 1)")
        check(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "an integer in [1, 100]")
        check(self.clips_per_shard >= 1, "clips_per_shard", self.clips_per_shard, "an integer >= 1")


# ------------------------------------------------------------------------------- modelling
@dataclass(frozen=True)
class ModelConfig:
    name: str
    img_size: int  # input side in pixels (the timm name's 224 is replaced; position embeddings follow)
    drop_path: float

    def __post_init__(self):
        check(self.img_size >= 32 and self.img_size % 16 == 0, "img_size", self.img_size, "a multiple of 16, >= 32 (paper: 224)")
        check(self.name in MODEL_NAMES, "name", self.name, f"one of {', '.join(MODEL_NAMES)}")
        check(0.0 <= self.drop_path < 1.0, "drop_path", self.drop_path, "a number in [0, 1)")


@dataclass(frozen=True)
class Schedule:
    """How long and how fast a run trains: pretraining, a finetuning recipe (what differs between FER
    datasets), the release's identity probe."""

    epochs: int
    warmup_epochs: int  # linear lr warm-up, then a half-cosine to the end
    batch_size: int  # per process and step
    blr: float  # base lr: lr = blr x batch x processes / 256

    def __post_init__(self):
        check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        check(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs", self.warmup_epochs, f"an integer in [0, epochs={self.epochs}]")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        check(self.blr > 0, "blr", self.blr, "a number > 0")


@dataclass(frozen=True)
class FSFMConfig:
    masking: Literal["regions", "random"]  # regions: CRFR-P from the shards' region maps; random: the MAE's masking
    distill: bool  # the identity-level self-distillation branch (online rep decoder + EMA target)


@dataclass(frozen=True)
class MAEConfig:
    """The MAE's own settings: none beyond the keys every method shares (mask ratio, decoder, schedule).
    The section exists so that each stage depends on its own method's settings only (dvc.yaml:
    ``pretrain.${pretrain.method}``): an FSFM switch does not re-run the MAE."""


@dataclass(frozen=True)
class CLPConfig:
    """CLP (this project's reconstruction, README): pretraining on the clips stage's windows."""

    epochs: int  # passes over the clip windows (replaces pretrain.epochs: another data set, ~3x the cost per image)
    near: int  # frames at most this far apart in a window are positives
    far: int  # frames at least this far apart in a window are its hard negatives
    margin: float  # of the temporal triplet hinge on unit vectors (squared distances 0-4)
    au_dim: int  # AU code width
    id_dim: int  # identity code width
    hidden: int  # hidden width of the code and decoder MLPs
    temporal: float  # weight of the temporal margin term (0 = off)
    same_person: float  # weight of rebuilding a frame from its AU code and its clip's identity code (0 = off)
    swap: float  # weight of the identity-swap consistency term (0 = off)
    jitter: float  # per-frame random shift and scale, as a fraction of the side (0 = off)
    jitter_degrees: float  # per-frame random rotation in degrees (0 = off)

    def __post_init__(self):
        check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        check(1 <= self.near < self.far, "far", self.far, f"an integer > near={self.near} >= 1")
        check(self.margin > 0, "margin", self.margin, "a number > 0")
        for key in ("au_dim", "id_dim", "hidden"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        for key in ("temporal", "same_person", "swap"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "a weight >= 0 (0 switches the term off)")
        check(0 <= self.jitter < 0.5, "jitter", self.jitter, "a fraction in [0, 0.5)")
        check(0 <= self.jitter_degrees <= 45, "jitter_degrees", self.jitter_degrees, "degrees in [0, 45]")
        check(self.temporal + self.same_person + self.swap > 0, "temporal", self.temporal,
              "a weight > 0 for at least one of temporal, same_person, swap")


PRETRAIN_METHODS = ("mae", "fsfm", "clp")  # each has a section of its own settings, pretrain.<method>


@dataclass(frozen=True)
class PretrainConfig(Schedule):
    mask_ratio: float
    norm_pix_loss: bool
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    accum_steps: int
    weight_decay: float
    save_every: int
    init: str  # "" = random init, else a released FMAE/MAE checkpoint
    seed: int
    augment: Literal["flip", "rrc"]  # FMAE: resize + flip; rrc: MAE's RandomResizedCrop(0.2, 1) + flip
    workers: int  # data loader processes per training process
    shuffle_buffer: int  # samples in each loader worker's shuffle buffer
    compile: bool  # torch.compile the model
    log_every: int  # steps between host syncs (loss, lr, throughput to dvclive; NaN check)
    method: Literal["mae", "fsfm", "clp"]  # the objective (FSFM: region-guided masking + self-distillation; CLP: video)
    mae: MAEConfig  # the MAE's own settings (none: it is the shared keys above)
    fsfm: FSFMConfig  # FSFM's two parts, each a switch (used when method is fsfm)
    clp: CLPConfig  # CLP's terms and schedule (used when method is clp)

    def __post_init__(self):
        check(self.method not in ("fsfm", "clp") or self.augment == "flip", "augment", self.augment,
              f"flip with method {self.method} (FSFM's region maps, CLP's windows follow a flip, not a crop)")
        check(self.workers >= 0, "workers", self.workers, "an integer >= 0 (0 = load in the training process)")
        check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "an integer >= 1")
        check(self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
        check(0.0 < self.mask_ratio < 1.0, "mask_ratio", self.mask_ratio, "a number in the open interval (0, 1)")
        check(self.decoder_dim >= 1, "decoder_dim", self.decoder_dim, "an integer >= 1")
        check(self.decoder_depth >= 1, "decoder_depth", self.decoder_depth, "an integer >= 1")
        check(self.decoder_heads >= 1 and self.decoder_dim % self.decoder_heads == 0, "decoder_heads",
              self.decoder_heads, f"a positive divisor of decoder_dim={self.decoder_dim}")
        super().__post_init__()
        check(self.accum_steps >= 1, "accum_steps", self.accum_steps, "an integer >= 1")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        check(self.save_every >= 1, "save_every", self.save_every, "an integer >= 1")


@dataclass(frozen=True)
class AUDatasetConfig:
    root: str
    frame_offset: int  # image frame = label frame + offset (DISFA: -1, 0-based decoded video frames)

    def __post_init__(self):
        check(bool(self.root), "root", self.root, "a path to the dataset's root folder")


@dataclass(frozen=True)
class AUConfig:
    bp4d: AUDatasetConfig
    bp4dplus: AUDatasetConfig
    disfa: AUDatasetConfig
    unknown_policy: Literal["negative", "mask"]  # BP4D/BP4D+ code 9
    frame_step: int  # keep every n-th labelled frame of each sequence (1 = all, as the paper)
    crop_size: int  # side of the stored face crops
    box_margin: float  # box expansion per side, as a fraction of its width/height
    min_face_score: float  # detector score a face needs when the dataset has no face_boxes.csv
    detector: Literal["retinaface", "yunet"]  # the face detector used where there is no face_boxes.csv
    workers: int  # processes cropping frames

    def __post_init__(self):
        check(self.frame_step >= 1, "frame_step", self.frame_step, "an integer >= 1 (1 = every labelled frame)")
        check(self.crop_size >= 32, "crop_size", self.crop_size, "an integer >= 32 (paper: 224)")
        check(0 <= self.box_margin < 1, "box_margin", self.box_margin, "a number in [0, 1) (paper: 0.05)")
        check(0 <= self.min_face_score <= 1, "min_face_score", self.min_face_score, "a number in [0, 1]")
        check(self.workers >= 1, "workers", self.workers, "an integer >= 1")


@dataclass(frozen=True)
class Training:
    """The rest of a finetuning recipe: optimiser, augmentation, model selection, data order."""

    layer_decay: float
    weight_decay: float  # AdamW, on weights only
    augment: Literal["paper", "flip"]  # paper: the three keys below; flip: resize + horizontal flip only
    min_crop_scale: float  # RandomResizedCrop's smallest area fraction
    rand_augment: str  # timm RandAugment spec, "" = off
    erase_prob: float  # RandomErasing probability
    selection: Literal["validation", "paper"]  # epoch (and AU threshold) from held-out training data, or the test split
    val_fraction: float  # share of the training data held out for validation
    seed: int
    workers: int  # data loader processes per training process

    def __post_init__(self):
        check(self.workers >= 0, "workers", self.workers, "an integer >= 0")
        check(0.0 < self.layer_decay <= 1.0, "layer_decay", self.layer_decay, "a number in (0, 1]")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        check(0.0 < self.min_crop_scale <= 1.0, "min_crop_scale", self.min_crop_scale, "a number in (0, 1]")
        check(self.rand_augment == "" or self.rand_augment.startswith("rand-"), "rand_augment", self.rand_augment,
              "'' (off) or a timm RandAugment spec such as rand-m9-mstd0.5-inc1")
        check(0.0 <= self.erase_prob <= 1.0, "erase_prob", self.erase_prob, "a number in [0, 1]")
        check(0.0 < self.val_fraction < 1.0, "val_fraction", self.val_fraction, "a number in the open interval (0, 1)")


@dataclass(frozen=True)
class Recipe(Training, Schedule):
    """A whole finetuning recipe, the one type the training loop takes: ``finetune`` is one (AUs),
    ``fer.recipe(name)`` builds one from a FER dataset's schedule and the shared ``fer`` keys."""

    def __post_init__(self):
        Schedule.__post_init__(self)
        Training.__post_init__(self)

    @classmethod
    def of(cls, schedule: Schedule, training: Training) -> Recipe:
        return Recipe(**{f.name: getattr(schedule, f.name) for f in dataclasses.fields(Schedule)},
                   **{f.name: getattr(training, f.name) for f in dataclasses.fields(Training)})


@dataclass(frozen=True)
class FinetuneConfig(Recipe):
    datasets: tuple[str, ...]
    folds: tuple[int, ...]
    init: str  # "pretrain" = the pretrain stage's weights, or a path to a released checkpoint
    random_folds: tuple[int, ...]  # folds of the random-init baseline (stage finetune_random)

    def __post_init__(self):
        for i, name in enumerate(self.datasets):
            check(name in AU_DATASETS, f"datasets.{i}", name, f"one of {', '.join(AU_DATASETS)}")
        check_folds(self.folds, self.datasets, "folds")
        check_folds(self.random_folds, self.datasets, "random_folds")
        check(bool(self.init), "init", self.init, "'pretrain' or a checkpoint path")
        check(len(set(self.datasets)) == len(self.datasets), "datasets", list(self.datasets), "no repeated dataset")
        super().__post_init__()


def check_folds(folds: tuple[int, ...], datasets: tuple[str, ...], key: str) -> None:
    """A non-empty list of distinct folds that every dataset of ``finetune.datasets`` has."""
    from .au.folds import FOLDS

    for i, fold in enumerate(folds):
        for name in datasets:
            if name in FOLDS:
                check(1 <= fold <= len(FOLDS[name]), f"{key}.{i}", fold,
                      f"a fold of every listed dataset ({name} has folds 1-{len(FOLDS[name])}; BP4D+ has 4, "
                      "so cross-validate it in its own run: datasets [bp4dplus], folds [1, 2, 3, 4])")
    check(bool(folds) and len(set(folds)) == len(folds), key, list(folds), "a non-empty list without repeats")


@dataclass(frozen=True)
class FERDataset(Schedule):
    root: str  # the dataset's folder ("" = not configured)


@dataclass(frozen=True)
class FERRafdb(FERDataset):
    images: Literal["aligned", "original"]  # Image/aligned (100x100, as the paper) or Image/original + boxes


@dataclass(frozen=True)
class FERAffectNet(FERDataset):
    classes: int  # 8 (AffectNet-8, codes 0-7, the paper's) or 7 (codes 0-6)

    def __post_init__(self):
        super().__post_init__()
        check(self.classes in (7, 8), "classes", self.classes, "7 or 8")


@dataclass(frozen=True)
class FERCustom(FERDataset):
    classes: tuple[str, ...]  # class names in label order (labels.csv names them or gives their 0-based index)


@dataclass(frozen=True)
class FERConfig(Training):
    datasets: tuple[str, ...]
    rafdb: FERRafdb
    affectnet: FERAffectNet
    custom: FERCustom
    init: str
    crop_size: int
    box_margin: float
    label_smoothing: float
    balanced: bool

    def __post_init__(self):
        for i, name in enumerate(self.datasets):
            check(name in FER_DATASETS, f"datasets.{i}", name, f"one of {', '.join(FER_DATASETS)}")
            check(bool(getattr(self, name).root), f"{name}.root", getattr(self, name).root,
                  "a path to the dataset's folder (it is listed in fer.datasets)")
        check(len(set(self.datasets)) == len(self.datasets), "datasets", list(self.datasets), "no repeated dataset")
        check(bool(self.datasets), "datasets", [], f"at least one of {', '.join(FER_DATASETS)} (the FER stages run on them)")
        check("custom" not in self.datasets or len(self.custom.classes) >= 2, "custom.classes", list(self.custom.classes),
              "at least two class names (fer.custom is listed in fer.datasets)")
        check(bool(self.init), "init", self.init, "a checkpoint path")
        check(self.crop_size >= 32, "crop_size", self.crop_size, "an integer >= 32 (paper: 224)")
        check(0 <= self.box_margin < 1, "box_margin", self.box_margin, "a number in [0, 1)")
        check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "a number in [0, 1)")
        super().__post_init__()

    def dataset(self, name: str) -> FERDataset:
        return getattr(self, name)

    def recipe(self, name: str) -> Recipe:
        """Dataset ``name``'s schedule with the recipe keys the FER datasets share."""
        return Recipe.of(self.dataset(name), self)


@dataclass(frozen=True)
class IATConfig:
    lambda_: float = field(metadata={"key": "lambda"})
    schedule: Literal["constant", "ramp"]  # constant (the release) or DANN's ramp 2 / (1 + exp(-10 p)) - 1 of progress p
    folds: tuple[int, ...]  # folds of the IAT variant (stage finetune)
    id_head_layers: int = 1
    id_loss: Literal["bce", "ce"] = "bce"

    def __post_init__(self):
        check(self.lambda_ >= 0, "lambda", self.lambda_, "a number >= 0 (0 = no identity head)")
        check(self.id_head_layers in (1, 2, 3), "id_head_layers", self.id_head_layers, "1, 2 or 3")


@dataclass(frozen=True)
class ReleaseProbeConfig(Schedule):
    """(a) the released code's identity probe (its finetuning script's defaults)."""

    weight_decay: float
    # the encoders it runs on (20 augmented passes each); the strong probes run on every encoder
    models: tuple[Literal["pretrained", "fmae", "iat", "random"], ...]

    def __post_init__(self):
        super().__post_init__()
        check(len(set(self.models)) == len(self.models), "models", list(self.models), "a list without repeats")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")


@dataclass(frozen=True)
class StrongProbeConfig:
    """(b) and (c): a probe trained to convergence, its lr chosen on held-out training frames."""

    epochs: int
    lrs: tuple[float, ...]
    batch_size: int
    val_fraction: float

    def __post_init__(self):
        check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        check(bool(self.lrs) and all(lr > 0 for lr in self.lrs), "lrs", list(self.lrs), "a non-empty list of numbers > 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        check(0.0 < self.val_fraction < 1.0, "val_fraction", self.val_fraction, "a number in the open interval (0, 1)")


@dataclass(frozen=True)
class EvaluateConfig:
    probe_folds: tuple[int, ...]  # the folds whose finetuned models are probed (each variant that ran them)
    probe_train_frames: int
    probe_test_frames: int
    release_probe: ReleaseProbeConfig
    strong_probe: StrongProbeConfig
    tsne_subjects: int

    def __post_init__(self):
        check(self.probe_train_frames >= 1, "probe_train_frames", self.probe_train_frames, "an integer >= 1")
        check(self.probe_test_frames >= 1, "probe_test_frames", self.probe_test_frames, "an integer >= 1")
        check(self.tsne_subjects >= 2, "tsne_subjects", self.tsne_subjects, "an integer >= 2")


@dataclass(frozen=True)
class FewshotConfig:
    methods: tuple[str, ...]  # pretraining methods besides pretrain.method, each pretrained for the comparison
    encoders: tuple[str, ...]  # encoders compared: random, pretrain.method, and methods
    folds: tuple[int, ...]  # BP4D folds
    budgets: tuple[int, ...]  # labelled training subjects per fold, 0 = all of them
    finetune_epochs: int  # epochs of each short finetune (finetune's recipe otherwise)
    probe_epochs: int  # epochs of each linear probe
    seed: int  # which subjects each budget labels (the same for every encoder)

    def __post_init__(self):
        for i, m in enumerate(self.methods):
            check(m in PRETRAIN_METHODS, f"methods.{i}", m, f"one of {', '.join(PRETRAIN_METHODS)}")
        check(len(set(self.methods)) == len(self.methods), "methods", list(self.methods), "distinct methods")
        check(bool(self.encoders) and len(set(self.encoders)) == len(self.encoders), "encoders", list(self.encoders),
              "a non-empty list of distinct encoders")
        check(bool(self.folds) and all(1 <= f <= 3 for f in self.folds), "folds", list(self.folds), "BP4D folds of 1-3")
        check(bool(self.budgets) and all(b >= 0 for b in self.budgets), "budgets", list(self.budgets),
              "a non-empty list of subject counts >= 1, or 0 for all")
        check(self.finetune_epochs >= 1, "finetune_epochs", self.finetune_epochs, "an integer >= 1")
        check(self.probe_epochs >= 1, "probe_epochs", self.probe_epochs, "an integer >= 1")


@dataclass(frozen=True)
class Params:
    synth: SynthConfig
    sources: SourcesConfig
    curate: CurateConfig
    ray: RayConfig
    clips: ClipsConfig
    model: ModelConfig
    pretrain: PretrainConfig
    au: AUConfig
    finetune: FinetuneConfig
    iat: IATConfig
    evaluate: EvaluateConfig
    fer: FERConfig
    fewshot: FewshotConfig

    def __post_init__(self):
        check_folds(self.iat.folds, self.finetune.datasets, "iat.folds")
        check_folds(self.evaluate.probe_folds, self.finetune.datasets, "evaluate.probe_folds")

    def variant_folds(self, variant: str) -> tuple[int, ...]:
        """The folds each AU variant runs on: ``fmae`` (finetune.folds), ``iat`` (iat.folds), ``random``
        (finetune.random_folds)."""
        return {"fmae": self.finetune.folds, "iat": self.iat.folds, "random": self.finetune.random_folds}[variant]

    def to_dict(self) -> dict[str, Any]:
        """The resolved params as plain data, with params.yaml's key names."""
        return _to_plain(self)


# ---------------------------------------------------------------------------------- loader
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(_yaml_key(f) for f in dataclasses.fields(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        check(value in typing.get_args(tp), key, value, _type_name(tp))
        return value
    if origin is tuple:
        check(isinstance(value, list), key, value, _type_name(tp))
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{key}.{i}") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {tp} for {key}")
    if tp is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, _type_name(tp))
        return float(value)
    if tp is int:
        check(isinstance(value, int) and not isinstance(value, bool), key, value, _type_name(tp))
        return value
    if tp in (bool, str):
        check(isinstance(value, tp), key, value, _type_name(tp))
        return value
    raise TypeError(f"unsupported annotation {tp} for {key}")


def _build(cls: type, data: Any, path: str) -> Any:
    check(isinstance(data, Mapping), path or "<top level>", data, _type_name(cls))
    hints = typing.get_type_hints(cls)
    flds = {_yaml_key(f): f for f in dataclasses.fields(cls)}
    for k in data:
        check(k in flds, _join(path, str(k)), data[k], f"no such key; known keys here: {', '.join(flds)}")
    kwargs = {}
    for ykey, f in flds.items():
        key = _join(path, ykey)
        if ykey not in data:
            check(f.default is not dataclasses.MISSING, key, "<missing>", f"{_type_name(hints[f.name])} (required)")
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[ykey], key)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise err.under(path) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {_yaml_key(f): _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _apply_override(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise ConfigError(dotted, value, "an existing key of params.yaml" + _closest(data, dotted))
        node = node[p]
    if last not in node:
        raise ConfigError(dotted, value, "an existing key of params.yaml" + _closest(data, dotted))
    node[last] = value


def _dotted_keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            keys += _dotted_keys(v, f"{prefix}{k}.")
    return keys


def _closest(data: Mapping[str, Any], dotted: str) -> str:
    """'; did you mean ...?' with the nearest existing dotted keys, or '' when none is near."""
    import difflib

    same_depth = [k for k in _dotted_keys(data) if k.count(".") == dotted.count(".")]
    near = difflib.get_close_matches(dotted, same_depth, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(near)}?" if near else ""


def params_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Params:
    """Validate plain data (e.g. a parsed params.yaml) into :class:`Params`.

    ``overrides`` maps dotted keys (``"iat.lambda"``) to new values, applied before validation.
    """
    import copy

    data = copy.deepcopy(dict(data))
    for dotted, value in (overrides or {}).items():
        _apply_override(data, dotted, value)
    return _build(Params, data, "")


def load_params(path: str | Path = PARAMS_FILE, overrides: Mapping[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml``; raises :class:`ConfigError` on any bad setting."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("<file>", str(path), "an existing params.yaml (run from the project root or pass --params)", str(path))
    try:
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a mapping of sections (synth:, sources:, ...) at the top level, "
                        f"found a {type(data).__name__}")
    try:
        return params_from_dict(data, overrides)
    except ConfigError as err:
        raise ConfigError(err.key, err.value, err.expected, str(path)) from None


def require_dir(path: str | Path, key: str) -> Path:
    """Check, before a stage starts work, that a configured root exists."""
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(key, str(path), "an existing directory (set it in params.yaml to where the data lives)")
    return p

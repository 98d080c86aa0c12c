"""The pretraining input: Face9M shards -> uint8 image batches, one loader per epoch.

Augmentation is FMAE's (resize to the model's input + horizontal flip); ``rrc`` adds MAE's
RandomResizedCrop(scale 0.2-1) instead of the plain resize. Images stay uint8 until the device.
FSFM's batches (:class:`FSFMSample`) also carry each image's masking noise and drawn facial region,
made in the loader workers from the sample's region map (flipped with the image); CLP's
(:class:`pipeline.clp.data.WindowSample`) are windows of consecutive face crops from the clips stage.
"""

from __future__ import annotations

import math
from functools import partial

import cv2
import numpy as np
import torch
import webdataset as wds

from ..data.images import decode_rgb, to_chw
from ..data.shards import ShardSet, epoch_shard_stream, worker_rng


class FaceAugment:
    """bytes -> uint8 ``[3, size, size]``: resize (or random-resized-crop) and a random flip."""

    def __init__(self, size: int, mode: str, seed: int, epoch: int):
        self.size, self.mode, self.seed, self.epoch = size, mode, seed, epoch
        self._rng = None
        self._rrc = None
        if mode == "rrc":
            from torchvision.transforms import InterpolationMode, v2
            self._rrc = v2.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=InterpolationMode.BICUBIC,
                                             antialias=True)

    def __call__(self, data: bytes) -> torch.Tensor:
        if self._rng is None:  # created in the worker process, so each worker has its own stream
            self._rng = worker_rng(self.seed, self.epoch, salt=1)
        rgb = decode_rgb(data, self.size)
        if self._rng.random() < 0.5:
            rgb = rgb[:, ::-1]
        img = to_chw(rgb)
        return self._rrc(img) if self._rrc is not None else img


class FSFMSample:
    """A shard sample -> (uint8 image ``[3, size, size]``, masking noise ``[L]``, drawn region ``[L]`` bool).

    ``masking`` ``regions``: CRFR-P on the sample's region map (``regions.png``, resized with the image,
    flipped with it); ``random``: the MAE's uniform noise and no region."""

    def __init__(self, size: int, patch: int, ratio: float, masking: str, seed: int, epoch: int):
        self.size, self.patch, self.ratio, self.masking = size, patch, ratio, masking
        self.seed, self.epoch = seed, epoch
        self._rng: torch.Generator | None = None
        self._flip = None

    def __call__(self, sample: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from ..fsfm.masking import crfr_p
        from ..fsfm.regions import patch_groups

        if self._rng is None:  # in the worker process: a stream of its own
            self._flip = worker_rng(self.seed, self.epoch, salt=1)
            self._rng = torch.Generator().manual_seed(self._flip.getrandbits(62))
        rgb = decode_rgb(_jpg(sample), self.size)
        flip = self._flip.random() < 0.5
        length = (self.size // self.patch) ** 2
        if self.masking == "random":
            img = to_chw(rgb[:, ::-1] if flip else rgb)
            return img, torch.rand(length, generator=self._rng), torch.zeros(length, dtype=torch.bool)
        if "regions.png" not in sample:
            raise KeyError(f"{sample.get('__url__')}: sample {sample.get('__key__')} has no region map (regions.png); "
                           "pretrain.fsfm.masking: random pretrains without maps")
        labels = cv2.imdecode(np.frombuffer(sample["regions.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        if labels.shape != (self.size, self.size):
            labels = cv2.resize(labels, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        if flip:
            rgb, labels = rgb[:, ::-1], labels[:, ::-1]
        noise, _, region = crfr_p(patch_groups(torch.from_numpy(labels.copy())[None], self.patch), self.ratio, self._rng)
        return to_chw(rgb), noise[0], region[0]


def _stack_parts(samples: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(part) for part in zip(*samples))


def _jpg(sample: dict) -> bytes:
    if "jpg" not in sample:
        raise KeyError(f"{sample.get('__url__')}: sample {sample.get('__key__')} has no .jpg member")
    return sample["jpg"]


def _stack(samples: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(samples)


def steps_per_epoch(shards: ShardSet, batch_size: int, world_size: int) -> int:
    """Optimizer micro-steps per process so one epoch visits about every sample once."""
    return max(1, shards.samples // (batch_size * world_size))


def epoch_loader(shards: ShardSet, *, epoch: int, seed: int, batch_size: int, image_size: int, workers: int,
                 shuffle_buffer: int, augment: str, steps: int, pin_memory: bool = False,
                 sample=None) -> wds.WebLoader:
    """Exactly ``steps`` batches of ``batch_size`` uint8 images for this process and ``epoch``; with
    ``sample`` (a method's mapper of one shard sample to a tuple of tensors, e.g. :class:`FSFMSample`):
    batches of its tuples, each part stacked."""
    per_worker = math.ceil(steps / max(1, workers))
    stages = [wds.map(sample), wds.batched(batch_size, collation_fn=_stack_parts, partial=False)] if sample else [
        wds.map(_jpg), wds.map(FaceAugment(image_size, augment, seed, epoch)),
        wds.batched(batch_size, collation_fn=_stack, partial=False)]
    pipeline = wds.DataPipeline(
        partial(epoch_shard_stream, shards.urls(), seed, epoch),
        wds.tarfile_to_samples(),
        wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), rng=_LazyRng(seed, epoch)),
        *stages,
    ).with_epoch(per_worker)
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                           persistent_workers=False, prefetch_factor=4 if workers else None)
    return loader.slice(steps)


class _LazyRng:
    """A ``random.Random`` stand-in created on first use, i.e. inside the loader worker."""

    def __init__(self, seed: int, epoch: int):
        self.seed, self.epoch, self._rng = seed, epoch, None

    def __getattr__(self, name):
        if name.startswith("__") or "_rng" not in self.__dict__:
            raise AttributeError(name)
        if self._rng is None:
            self._rng = worker_rng(self.seed, self.epoch, salt=0)
        return getattr(self._rng, name)

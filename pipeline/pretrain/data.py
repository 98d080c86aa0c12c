"""The pretraining input: Face9M shards -> uint8 image batches, one loader per epoch.

Augmentation is FMAE's (resize to the model's input + horizontal flip); ``rrc`` adds MAE's
RandomResizedCrop(scale 0.2-1) instead of the plain resize. Images stay uint8 until the device.
"""

from __future__ import annotations

import math
from functools import partial

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
                 shuffle_buffer: int, augment: str, steps: int, pin_memory: bool = False) -> wds.WebLoader:
    """Exactly ``steps`` batches of ``batch_size`` uint8 images for this process and ``epoch``."""
    per_worker = math.ceil(steps / max(1, workers))
    pipeline = wds.DataPipeline(
        partial(epoch_shard_stream, shards.urls(), seed, epoch),
        wds.tarfile_to_samples(),
        wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), rng=_LazyRng(seed, epoch)),
        wds.map(_jpg),
        wds.map(FaceAugment(image_size, augment, seed, epoch)),
        wds.batched(batch_size, collation_fn=_stack, partial=False),
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

"""WebDataset shard streams for training: epoch-seeded shard order, split by node then by worker.

A folder of shards comes with ``sizes.json`` (``{"name.tar": samples}``), written by the stage
that made them; it gives the epoch length without opening a tar. For an epoch, every process
draws the same permutation of the shard list from ``(seed, epoch, pass)``, takes its share
(``[rank::world]``) and each loader worker its share of that (``[worker::workers]``). A worker
cycles through its shards (re-permuted each pass) for as long as the epoch asks, so every
process runs exactly the same number of steps: DDP never waits on a process that ran dry.
"""

from __future__ import annotations

import json
import os
import random
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import webdataset as wds

from ..config import UserError


class ShardError(UserError, ValueError):
    """The shard folder is missing, empty, inconsistent with sizes.json or too small for the workers."""


@dataclass(frozen=True)
class ShardSet:
    folder: Path
    shards: tuple[str, ...]  # file names, sorted
    sizes: tuple[int, ...]

    @property
    def samples(self) -> int:
        return sum(self.sizes)

    def urls(self) -> list[str]:
        return [str(self.folder / s) for s in self.shards]


def read_shard_set(folder: str | Path, sizes_file: str | Path | None = None) -> ShardSet:
    """The shards listed in ``sizes.json`` (default: beside ``folder``), checked to exist."""
    folder = Path(folder)
    sizes_path = Path(sizes_file) if sizes_file else folder.parent / "sizes.json"
    if not sizes_path.is_file():
        raise ShardError(f"{sizes_path}: missing; it lists the shards of {folder} and their sample counts")
    sizes = json.loads(sizes_path.read_text())
    if not isinstance(sizes, dict) or not sizes:
        raise ShardError(f"{sizes_path}: expected a non-empty mapping of shard file name -> sample count")
    missing = [name for name in sizes if not (folder / name).is_file()]
    if missing:
        raise ShardError(f"{sizes_path}: lists {len(missing)} shard(s) not in {folder}, e.g. {missing[0]}")
    names = tuple(sorted(sizes))
    return ShardSet(folder, names, tuple(int(sizes[n]) for n in names))


def check_workers(shards: ShardSet, workers: int, world_size: int, key: str) -> None:
    """Every loader worker of every process needs at least one shard of its own."""
    readers = max(1, workers) * world_size
    if len(shards.shards) < readers:
        raise ShardError(f"{shards.folder}: {len(shards.shards)} shard(s) for {readers} readers "
                         f"({key}={workers} loader workers x {world_size} process(es)); lower {key} "
                         f"or re-shard with a smaller shard size")


def epoch_shard_stream(urls: list[str], seed: int, epoch: int) -> Iterator[dict[str, str]]:
    """This worker's shards for ``epoch``, forever: permuted per pass, split by node then worker."""
    rank, world, worker, workers = wds.utils.pytorch_worker_info()
    for pass_ in range(1 << 30):
        order = np.random.default_rng([seed, epoch, pass_]).permutation(len(urls))
        mine = [urls[i] for i in order][rank::world][worker::workers]
        for url in mine:
            yield {"url": url}


def seed_for(*parts: int) -> int:
    """A 31-bit seed derived from integers (same on every machine and Python run)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)


def worker_rng(seed: int, epoch: int, salt: int = 0) -> random.Random:
    """A Python RNG distinct per (seed, epoch, process, worker): sample shuffle and augmentation."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return random.Random(seed_for(seed, epoch, rank, worker, salt))


def write_indexed_shards(folder: Path, prefix: str, keys: Sequence[str], jpegs: Sequence[bytes], metas: Sequence[dict],
                         shard_size: int = 1000) -> pd.DataFrame:
    """Tar shards ``<prefix>-%06d.tar`` of ``shard_size`` samples (``<key>.jpg`` + ``<key>.json``, mtime 0),
    replacing any in ``folder``; returns ``key, shard, offset, size`` per sample: where its JPEG's bytes
    lie, so a map-style dataset reads any subset with one ``pread`` (``prepare`` and ``prepare_fer``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.tar"):
        old.unlink()
    shards = [f"{prefix}-{i // shard_size:06d}.tar" for i in range(len(keys))]
    for start in range(0, len(keys), shard_size):
        shard = shards[start]
        tmp = folder / f".{shard}.tmp"
        with wds.TarWriter(str(tmp), mtime=0) as tw:
            for key, jpeg, meta in zip(keys[start:start + shard_size], jpegs[start:start + shard_size],
                                       metas[start:start + shard_size]):
                tw.write({"__key__": key, "jpg": jpeg, "json": meta})
        os.replace(tmp, folder / shard)
    offsets = {}
    for shard in sorted(set(shards)):
        with tarfile.open(folder / shard) as tar:
            for m in tar:
                if m.name.endswith(".jpg"):
                    offsets[(shard, m.name[:-4])] = (m.offset_data, m.size)
    return pd.DataFrame({"key": list(keys), "shard": shards, "offset": [offsets[(s, k)][0] for s, k in zip(shards, keys)],
                         "size": [offsets[(s, k)][1] for s, k in zip(shards, keys)]})

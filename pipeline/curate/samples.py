"""A contact sheet of random curated samples, one row per source, for people to look at.

Samples are chosen from the shard plan first and only their members are read back, so the
cost does not grow with the size of Face9M.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

PER_SOURCE = 10
TILE = 96


def pick_samples(written: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Up to :data:`PER_SOURCE` random rows per source, seeded, of ``written`` (rank, source, shard
    of every sample in the shards; ``rank`` orders the keys), sources in name order."""
    rng = np.random.default_rng(seed)
    picks = []
    for source in sorted(set(pd.unique(written.source))):
        group = written[written.source == source].sort_values("rank")
        picks.append(group.iloc[np.sort(rng.choice(len(group), size=min(PER_SOURCE, len(group)), replace=False))])
    return pd.concat(picks) if picks else written.iloc[:0]


def write_contact_sheet(shard_dir: Path, picks: pd.DataFrame, out: Path) -> None:
    """One row of tiles per source: ``picks`` (key, source, shard) from :func:`pick_samples`."""
    images: dict[str, np.ndarray] = {}
    for shard, group in picks.groupby("shard", sort=True):
        with tarfile.open(Path(shard_dir) / f"face9m-{int(shard):06d}.tar") as tar:
            for key in group.key:
                data = tar.extractfile(f"{key}.jpg").read()
                images[key] = cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (TILE, TILE),
                                         interpolation=cv2.INTER_AREA)
    rows = []
    blank = np.full((TILE, TILE, 3), 255, np.uint8)
    for source, group in picks.groupby("source", sort=True):
        tiles = [images[k] for k in group.key] + [blank] * (PER_SOURCE - len(group))
        label = np.full((TILE, 150, 3), 255, np.uint8)
        cv2.putText(label, source, (6, TILE // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(np.hstack([label, *tiles]))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows) if rows else np.full((TILE, 150 + TILE * PER_SOURCE, 3), 255, np.uint8))

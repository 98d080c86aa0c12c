"""Filtering, de-duplication and the shard plan, decided up front from the manifest.

Planning before any parallel work is what makes the shards independent of how many workers
write them: each shard's members are fixed here (seeded shuffle of the kept keys, cut into
``shard_size`` runs, sorted within a shard), and its bytes depend on nothing else.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from ..config import CurateConfig

FORMAT_VERSION = 3  # bump when the bytes written for the same plan change
REJECT_COLUMNS = ["key", "source", "path", "member", "reason", "detail", "duplicate_of"]


def _rejects(df: pd.DataFrame, reason: str, detail="", duplicate_of="") -> pd.DataFrame:
    out = df[["key", "source", "path", "member"]].copy()
    out["reason"], out["detail"], out["duplicate_of"] = reason, detail, duplicate_of
    return out


def apply_filters(manifest: pd.DataFrame, cfg: CurateConfig, sha256: pd.Series,
                  dhash: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(kept, rejects, near-duplicate counts per source pair) of the manifest.

    ``sha256``/``dhash`` are indexed by key. Order of the rules: unreadable header, aspect,
    minimum side, exact duplicate, then, when ``dhash`` is given, near-duplicates across
    sources (identical 64-bit difference hash). Of duplicates, the one listed first in the
    manifest (sources in params order, each in its reader's sorted order) is kept.
    """
    rejected = []
    df = manifest
    bad = df.error != ""
    for reason, group in df[bad].groupby("error", sort=True):
        rejected.append(_rejects(group, reason))
    df = df[~bad]
    ratio = np.maximum(df.width, df.height) / np.maximum(np.minimum(df.width, df.height), 1)
    wide = ratio > cfg.max_aspect
    rejected.append(_rejects(df[wide], "aspect", detail=ratio[wide].map(lambda r: f"{r:.3f} > {cfg.max_aspect}")))
    df = df[~wide]
    if cfg.min_side:
        small = np.minimum(df.width, df.height) < cfg.min_side
        rejected.append(_rejects(df[small], "too_small", detail=f"short side < {cfg.min_side}"))
        df = df[~small]
    df = df.assign(_sha=df.key.map(sha256))  # manifest order is listing order
    first = df.groupby("_sha", sort=False).key.transform("first")
    dup = df.key != first
    rejected.append(_rejects(df[dup], "duplicate", detail="same bytes", duplicate_of=first[dup]))
    df = df[~dup]
    pairs: dict[str, int] = {}
    if dhash is not None:
        df = df.assign(_dh=df.key.map(dhash))
        hashed = df[df._dh.notna()]
        head = hashed.groupby("_dh", sort=False).agg(first_key=("key", "first"), first_source=("source", "first"))
        joined = hashed.join(head, on="_dh")
        near = (joined.key != joined.first_key) & (joined.source != joined.first_source)
        for (a, b), n in joined[near].groupby(["first_source", "source"]).size().items():
            pairs[f"{a}~{b}"] = int(n)
        rejected.append(_rejects(joined[near], "near_duplicate", detail="same difference hash", duplicate_of=joined.first_key[near]))
        df = df[~df.key.isin(joined.key[near])]
    rejects = pd.concat([r for r in rejected if len(r)] or [pd.DataFrame(columns=REJECT_COLUMNS)], ignore_index=True)
    kept = df.drop(columns=[c for c in df.columns if c.startswith("_")]).sort_values("key").reset_index(drop=True)
    return kept, rejects[REJECT_COLUMNS], pairs


def plan_shards(kept: pd.DataFrame, cfg: CurateConfig) -> pd.DataFrame:
    """``kept`` with a ``shard`` column: seeded shuffle, ``shard_size`` per shard, keys sorted within."""
    kept = kept.sort_values("key").reset_index(drop=True)
    order = np.random.default_rng(cfg.seed).permutation(len(kept))
    shard = np.empty(len(kept), dtype=np.int64)
    shard[order] = np.arange(len(kept)) // cfg.shard_size
    return kept.assign(shard=shard).sort_values(["shard", "key"]).reset_index(drop=True)


def shard_fingerprint(rows: pd.DataFrame, cfg: CurateConfig) -> str:
    """Hash of everything that determines a shard's bytes: its inputs and the output settings."""
    cols = ["key", "path", "member", "size", "sig", "crop_x", "crop_y", "crop_w", "crop_h", "source", "identity"]
    payload = {"rows": rows[cols].astype(str).values.tolist(), "image_size": cfg.image_size,
               "jpeg_quality": cfg.jpeg_quality, "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()

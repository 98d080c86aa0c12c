"""Deterministic random streams keyed by names, independent of process layout."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator determined by ``seed`` and the ``keys`` path alone (not by call order).

    Keys are hashed with SHA-256 (never Python's salted ``hash``), so the same world comes out
    whichever process renders which part.
    """
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *words]))

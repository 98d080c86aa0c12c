"""Smooth AU sequences whose base rates depend on the subject: the identity shortcut.

Each AU follows a smooth latent Gaussian process ``z(t)`` (white noise filtered over
:data:`SMOOTH_FRAMES`, unit variance). Its intensity is ``clip(GAIN * (z + mu), 0, 5)`` where
``mu`` sets the fraction of frames in which the AU is active:
``P(active) = sigmoid(BASE_LOGIT + subject_offset[au] + task_boost[au])``. A high ``GAIN`` makes
onsets and offsets short and apexes long, as in real episodes: over half of the active frames are at
intensity C (3) or above (at ``GAIN`` 2.4 four in five active frames were below C, movements too
small to see at 112 px, and even a CNN reached only test AUC 0.72 on the demo). The subject offsets
are drawn once per person with standard deviation ``synth.identity_au_strength``, so a model can
partly predict AUs from *who* is in the frame, the shortcut identity adversarial training removes.
Task boosts give each task its emotion (T1 happiness raises AU 6 and 12, ...), which makes AUs
co-occur as they do in real elicitation tasks.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from .render import AUS

BASE_LOGIT = -1.3
GAIN = 5.0
SMOOTH_FRAMES = 5.0

# Logit boosts of each elicitation task (BP4D's T1-T8; BP4D+ reuses T1, T6, T7, T8; DISFA's
# video clips are a mix, "video").
TASK_BOOSTS: dict[str, dict[int, float]] = {
    "T1": {6: 1.8, 12: 2.2, 25: 1.0, 10: 0.5},  # happiness / amusement
    "T2": {1: 1.2, 4: 1.2, 15: 1.5, 17: 1.2},  # sadness
    "T3": {1: 1.8, 2: 1.8, 25: 1.2, 26: 1.2},  # surprise / startle
    "T4": {12: 1.2, 14: 1.2, 24: 0.8, 6: 0.6},  # embarrassment
    "T5": {1: 1.2, 2: 1.0, 4: 1.2, 25: 1.0, 7: 0.6},  # fear
    "T6": {4: 1.5, 6: 1.0, 7: 1.5, 9: 1.0, 10: 1.2},  # physical pain
    "T7": {4: 1.8, 7: 1.2, 23: 1.5, 24: 1.5},  # anger
    "T8": {9: 2.0, 10: 1.5, 15: 1.0, 17: 1.0},  # disgust
    "video": {1: 0.6, 2: 0.5, 4: 0.5, 6: 0.8, 9: 0.5, 12: 1.0, 25: 1.2, 26: 0.8},
}


def subject_offsets(rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-AU logit offsets [len(AUS)] of one subject's base rates."""
    return rng.normal(0.0, strength, len(AUS)) if strength > 0 else np.zeros(len(AUS))


def active_probability(offsets: np.ndarray, task: str) -> np.ndarray:
    boost = np.array([TASK_BOOSTS[task].get(au, 0.0) for au in AUS])
    return 1.0 / (1.0 + np.exp(-(BASE_LOGIT + offsets + boost)))


def smooth_noise(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """[n, k] smooth Gaussian processes with unit marginal variance."""
    sigma = SMOOTH_FRAMES
    half = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= np.sqrt((kernel**2).sum())
    white = rng.normal(size=(n + 2 * half, k))
    return np.stack([np.convolve(white[:, j], kernel, mode="valid") for j in range(k)], 1)


def au_sequence(rng: np.random.Generator, n_frames: int, offsets: np.ndarray, task: str) -> np.ndarray:
    """Intensities [n_frames, len(AUS)] in [0, 5], smooth over time."""
    p = np.clip(active_probability(offsets, task), 1e-4, 1 - 1e-4)
    mu = np.array([NormalDist().inv_cdf(float(q)) for q in p])
    z = smooth_noise(rng, n_frames, len(AUS))
    return np.clip(GAIN * (z + mu), 0.0, 5.0)


def random_expression(rng: np.random.Generator, p_active: float = 0.25) -> np.ndarray:
    """A still image's intensities [len(AUS)] (pretraining sources have no sequences)."""
    return rng.uniform(0.5, 5.0, len(AUS)) * (rng.random(len(AUS)) < p_active)

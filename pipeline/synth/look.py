"""Per-image nuisance: background, pose jitter, lighting, blur, noise, JPEG quality."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Look:
    light_angle: float  # radians: direction the light comes from
    light_strength: float  # 0 flat .. 0.4 strong side light
    brightness: float  # multiplicative
    blur: float  # Gaussian sigma in pixels (0 = sharp)
    noise: float  # Gaussian noise sigma in grey levels
    jpeg_quality: int


def sample_look(rng: np.random.Generator, strength: float = 1.0) -> Look:
    """A random look; ``strength`` scales how far it strays from a clean studio photo."""
    return Look(
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0, 0.35) * strength),
        brightness=float(1 + rng.uniform(-0.2, 0.15) * strength),
        blur=float(max(0.0, rng.uniform(-0.4, 1.2)) * strength),
        noise=float(rng.uniform(0, 6) * strength),
        jpeg_quality=int(rng.integers(70, 96)),
    )


def paint_background(img: np.ndarray, colours, stripes: bool) -> None:
    """A vertical gradient between two colours, optionally with soft diagonal stripes."""
    h, w = img.shape[:2]
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    c0, c1 = (np.array(c, np.float32) for c in colours)
    grad = c0 * (1 - t) + c1 * t
    out = np.broadcast_to(grad, (h, w, 3)).copy()
    if stripes:
        yy, xx = np.mgrid[0:h, 0:w]
        out *= (1 + 0.12 * np.sin((xx + yy) * (2 * np.pi / max(12, w // 8))))[..., None].astype(np.float32)
    img[:] = np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _light_gain(look: Look, h: int, w: int) -> np.ndarray:
    ys, xs = np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32)
    field = np.cos(look.light_angle) * xs[None, :] + np.sin(look.light_angle) * ys[:, None]
    gain = look.brightness * (1 + look.light_strength * field)
    return np.repeat(gain[..., None], 3, axis=2).astype(np.float32)


def apply_look(img: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, brightness, blur and sensor noise (JPEG happens at encode time).

    Noise comes from OpenCV's generator reseeded from ``rng``, which keeps it deterministic
    and costs a fifth of NumPy's normal sampler on a frame.
    """
    h, w = img.shape[:2]
    out = cv2.multiply(img.astype(np.float32), _light_gain(look, h, w))
    if look.blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), look.blur)
    if look.noise > 0:
        cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
        noise = np.empty_like(out)
        cv2.randn(noise, 0.0, float(look.noise))
        out += noise
    return np.clip(out, 0, 255, out=out).astype(np.uint8)

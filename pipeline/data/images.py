"""Decoding and batching of 224 px training images; normalisation happens on the device."""

from __future__ import annotations

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_rgb(data: bytes, size: int) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 ``[size, size, 3]`` (resized only if the shard holds another size)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    if bgr.shape[0] != size or bgr.shape[1] != size:
        interp = cv2.INTER_AREA if min(bgr.shape[:2]) > size else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (size, size), interpolation=interp)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def normalize(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float, ImageNet-normalised, on ``device`` (a quarter of the copy of floats)."""
    x = batch.to(device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize` to [0, 1] floats (for pictures)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)

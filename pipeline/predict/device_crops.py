"""The training crop and the model's evaluation transform, cut and resized on the model's device.

On a GPU, cutting each face with OpenCV and resizing it with PIL on the CPU would cost more than the
model's forward pass. These functions do the same steps as :func:`pipeline.faces.crop.crop_face`
followed by :func:`pipeline.training.transforms.eval_transform` with torch on the device: the same
integer box (:func:`pipeline.faces.crop.expand_box`), a resize to the crop size (antialiased
bilinear where OpenCV shrinks by area, bicubic where it enlarges), rounding to 8-bit values as the
stored crops have, then the bicubic resize to the model's input and the normalisation. The kernels
are torch's, not OpenCV's and PIL's, so the pixels differ by a few grey levels and the probabilities
by about 0.01 (``tests/test_predict.py`` bounds it); ``fmae predict`` uses this path on CUDA only,
and the exact CPU path elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from ..faces.crop import expand_box


def frame_tensor(bgr, device: torch.device) -> torch.Tensor:
    """A BGR uint8 frame (H, W, 3) as an RGB float (3, H, W) tensor of 0-255 values on ``device``."""
    return torch.from_numpy(bgr).to(device, non_blocking=True).permute(2, 0, 1).flip(0).float()


def crop(pixels: torch.Tensor, box: Sequence[float], margin: float, size: int) -> torch.Tensor:
    """The face crop (3, size, size), 0-255 integer values as float, from a :func:`frame_tensor`."""
    x0, y0, x1, y1 = expand_box(*box, margin, pixels.shape[2], pixels.shape[1])
    face = pixels[None, :, y0:y1, x0:x1]
    shrink = min(face.shape[-2:]) >= size
    out = F.interpolate(face, size=(size, size), mode="bilinear" if shrink else "bicubic",
                        antialias=shrink, align_corners=False)
    return out[0].round().clamp(0, 255)


def model_input(crops: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A batch of crops (N, 3, S, S) resized to the model's input and normalised as its evaluation transform does."""
    x = F.interpolate(crops, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255) / 255.0
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t

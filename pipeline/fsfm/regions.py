"""Facial regions of a face image: the LaPa label set, and which region groups each ViT patch touches.

A region map is an (H, W) integer image in the LaPa labels (the synthetic renderer can write exact
ones; for real faces a face parser's output). A patch belongs to a group when any of its pixels does
(a max-pool per patch), so a patch can belong to several; ``boundary`` holds the patches where skin
meets hair or background.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..region_maps import LAPA

GROUPS = ("brows", "eyes", "nose", "mouth", "boundary", "hair", "skin", "background")
FACIAL = GROUPS[:6]  # the groups CRFR-P draws the fully masked region from
_LABELS = {"brows": (2, 3), "eyes": (4, 5), "nose": (6,), "mouth": (7, 8, 9), "hair": (10,), "skin": (1,),
           "background": (0,)}


def patch_groups(maps: torch.Tensor, patch: int) -> torch.Tensor:
    """``maps`` (N, H, W) of LaPa labels -> (N, L, len(GROUPS)) booleans, L = (H/patch) * (W/patch) in
    the ViT's row-major patch order: whether each patch holds a pixel of each group."""
    if maps.ndim != 3 or maps.shape[1] % patch or maps.shape[2] % patch:
        raise ValueError(f"region maps of shape {tuple(maps.shape)}: expected (N, H, W) with H and W multiples of {patch}")
    if maps.min() < 0 or maps.max() > max(LAPA.values()):
        raise ValueError(f"region maps hold labels {int(maps.min())}..{int(maps.max())}: expected LaPa labels 0-10")
    labels = F.one_hot(maps.long(), len(LAPA)).permute(0, 3, 1, 2).float()  # (N, 11, H, W)
    present = F.max_pool2d(labels, patch).flatten(2).transpose(1, 2) > 0  # (N, L, 11)
    columns = {name: present[..., list(ids)].any(-1) for name, ids in _LABELS.items()}
    columns["boundary"] = columns["skin"] & (columns["hair"] | columns["background"])
    return torch.stack([columns[name] for name in GROUPS], -1)

"""CRFR-P, FSFM's region-guided masking ("covering a random facial region, proportionally elsewhere").

With L patches and mask ratio r (``n = round(r L)`` patches masked): draw one of the six facial
groups the face has (one without patches cannot be drawn) and mask all its patches (M_fr); mask the
share ``(n - |M_fr|) / (L - |M_fr|)`` of every other group's remaining patches, each patch counted once,
for the smallest group it touches (groups overlap: a boundary patch is skin and hair too, and would
otherwise be drawn for each); then add or remove random patches outside M_fr until exactly n are masked.
When M_fr alone exceeds n, n random patches of it are masked and nothing else.

The result is returned as the ``noise`` that :meth:`pipeline.models.mae.MaskedAutoencoder.random_masking`
sorts (masked patches get the n highest values), so the MAE's own masking code applies it unchanged.
"""

from __future__ import annotations

import torch

from .regions import FACIAL, GROUPS


def _pick(candidates: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """``k`` random indices of the True entries of the boolean vector ``candidates``."""
    idx = torch.nonzero(candidates).flatten()
    return idx[torch.randperm(len(idx), generator=g)[:max(0, k)]]


def crfr_p(groups: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``groups`` (N, L, len(GROUPS)) from :func:`pipeline.fsfm.regions.patch_groups` -> (noise (N, L),
    mask (N, L) with exactly round(r L) ones, region (N, L): the masked patches of the drawn group M_fr)."""
    if not 0 < ratio < 1:
        raise ValueError(f"mask ratio {ratio}: expected a value in (0, 1)")
    g = generator or torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    n_items, length, _ = groups.shape
    n = int(round(length * ratio))
    mask = torch.zeros(n_items, length, dtype=torch.bool)
    region = torch.zeros_like(mask)
    groups = groups.cpu()
    for i in range(n_items):
        present = [GROUPS.index(f) for f in FACIAL if groups[i, :, GROUPS.index(f)].any()]
        chosen = present[int(torch.randint(len(present), (), generator=g))] if present else -1
        fr = groups[i, :, chosen].clone() if present else torch.zeros(length, dtype=torch.bool)
        if fr.sum() > n:  # the region alone is larger than the budget: n of its patches
            keep = torch.zeros(length, dtype=torch.bool)
            keep[_pick(fr, n, g)] = True
            mask[i] = region[i] = keep
            continue
        m, counted = fr.clone(), fr.clone()
        share = (n - int(fr.sum())) / (length - int(fr.sum()))
        for k in sorted(range(len(GROUPS)), key=lambda k: int(groups[i, :, k].sum())):  # smallest group first
            part = groups[i, :, k] & ~counted  # a patch in several groups counts once, for the smallest
            counted |= part
            m[_pick(part, int(round(share * int(part.sum()))), g)] = True
        extra = int(m.sum()) - n
        if extra > 0:  # overlapping groups masked too many: unmask random patches outside the region
            m[_pick(m & ~fr, extra, g)] = False
        elif extra < 0:
            m[_pick(~m, -extra, g)] = True
        mask[i], region[i] = m, fr
    noise = torch.rand(n_items, length, generator=g) * 0.5 + mask.float() * 0.5  # masked: [0.5, 1), kept: [0, 0.5)
    return noise, mask, region

"""CLP around the MAE's encoder: the pooled feature of every frame of a window, its AU and identity
codes, and the switched terms of :mod:`.losses`.

The encoder sees whole frames (no masking): CLP learns from what changes between frames, not from
filling in patches. A frame's feature is the mean of the encoder's patch tokens, the feature the
finetuning and the probes read (global average pooling). Only the encoder's weights leave the
pretraining (exported under the MAE's keys, its untrained decoder with them), so every consumer of
``fmae.pth`` reads a CLP encoder as it reads an MAE's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.mae import MaskedAutoencoder
from .losses import CrossIdentity, clp_loss, temporal_margin_loss

TERMS = ("temporal", "same_person", "swap")


def other_person(identities: torch.Tensor) -> torch.Tensor:
    """For each window of a batch, the index of the next window (cyclically) of another person;
    -1 where every window of the batch is of the same person."""
    n = identities.shape[0]
    shifts = torch.arange(1, n, device=identities.device)
    candidates = (torch.arange(n, device=identities.device)[:, None] + shifts[None, :]) % n  # (n, n-1)
    differs = identities[candidates] != identities[:, None]
    first = differs.float().argmax(dim=1)
    partner = candidates.gather(1, first[:, None])[:, 0]
    return torch.where(differs.any(dim=1), partner, torch.full_like(partner, -1))


class CLP(nn.Module):
    """``(frames [N, T, 3, H, W] normalised, identities [N]) -> (loss, {term: value}, None)``."""

    def __init__(self, mae: MaskedAutoencoder, cfg):
        super().__init__()
        self.mae = mae
        self.cfg = cfg
        self.codes = CrossIdentity(mae.embed_dim, cfg.au_dim, cfg.id_dim, cfg.hidden)
        self.weights = {name: float(getattr(cfg, name)) for name in TERMS}

    def features(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[M, 3, H, W]`` -> the mean patch token ``[M, D]`` of the unmasked encoder."""
        latent, _, _ = self.mae.forward_encoder(imgs, 0.0)
        return latent[:, 1:].mean(dim=1)

    def forward(self, frames: torch.Tensor, identities: torch.Tensor):
        n, t = frames.shape[:2]
        f = self.features(frames.flatten(0, 1)).view(n, t, -1)
        au, _ = self.codes(f)
        terms = {"temporal": temporal_margin_loss(au, self.cfg.near, self.cfg.far, self.cfg.margin)}
        if self.weights["same_person"] or self.weights["swap"]:
            partner = other_person(identities)
            keep = partner >= 0
            if keep.any():
                shift = (torch.arange(t, device=f.device) + t // 2) % t  # the frame half a window away
                pairs = self.codes.losses(f[keep].flatten(0, 1), f[keep][:, shift].flatten(0, 1),
                                          f[partner[keep]].flatten(0, 1))
            else:  # one person in the whole batch: nobody to swap with
                pairs = {"same_person": f.new_zeros(()), "swap": f.new_zeros(())}
            terms.update(pairs)
        return clp_loss(terms, {k: w for k, w in self.weights.items() if k in terms}), terms, None

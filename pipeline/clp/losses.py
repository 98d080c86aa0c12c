"""CLP's two objectives as this project reconstructs them from the paper's abstract.

1. **Temporal contrast with a margin.** Within a clip of T consecutive face frames, a frame's AU
   embedding should sit nearer to its neighbours (``|i - j| <= near``: the face has barely moved)
   than to frames further along the same clip (``|i - j| >= far``: same person, same light, other
   AUs: the hard negatives that identity cannot separate), by a margin: a triplet hinge over every
   (anchor, positive, negative) of the clip on L2-normalised embeddings, ``max(0, d(a, p) - d(a, n) + m)``
   with ``d`` the squared Euclidean distance (2 - 2 cos). Frames between ``near`` and ``far`` are
   neither. Negatives from other clips are not used: another person differs by identity, which is what
   the representation should ignore, so they are no informative negatives for AUs.
2. **Cross-identity reconstruction.** The encoder's feature f splits into an AU code a = A(f) and an
   identity code c = C(f), and a decoder G(a, c) rebuilds the feature. Reconstructing frame t from its
   own AU code and the identity code of *another frame of the same clip* (same person) makes c carry
   the person and a carry what changes; then the identity code is swapped with a frame of *another
   person*, and the AU code read back from the swapped feature must be the one put in (and the
   identity code the other person's): analogous AUs of different people are pulled together.

Each term is a switch (``terms``) so that the ablation runs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def clip_pairs(length: int, near: int = 1, far: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean (T, T) masks: ``0 < |i - j| <= near`` and ``|i - j| >= far``."""
    if not 1 <= near < far:
        raise ValueError(f"near {near}, far {far}: expected 1 <= near < far")
    gap = (torch.arange(length)[:, None] - torch.arange(length)[None, :]).abs()
    return (gap > 0) & (gap <= near), gap >= far


def temporal_margin_loss(z: torch.Tensor, near: int = 1, far: int = 3, margin: float = 0.5) -> torch.Tensor:
    """``z`` (N, T, D) embeddings of N clips of T frames -> the mean triplet hinge over every
    (anchor, positive, negative) of each clip (0 when a clip is too short to have both)."""
    z = F.normalize(z, dim=-1)
    d = 2 - 2 * z @ z.transpose(1, 2)  # (N, T, T) squared distances of unit vectors
    pos, neg = clip_pairs(z.shape[1], near, far)
    valid = (pos[:, :, None] & neg[:, None, :]).to(z.device)  # (T, T, T): anchor i, positive j, negative k
    if not valid.any():
        return z.new_zeros(())
    hinge = F.relu(d[:, :, :, None] - d[:, :, None, :] + margin)  # (N, i, j, k)
    return hinge[:, valid].mean()


def standardize(f: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each feature dimension to zero mean and unit variance over the batch (dim 0)."""
    return (f - f.mean(0)) / (f.std(0) + eps)


class CrossIdentity(nn.Module):
    """The AU and identity codes of a feature and the decoder that puts a feature back together."""

    def __init__(self, dim: int, au_dim: int = 64, id_dim: int = 64, hidden: int = 256):
        super().__init__()
        self.au = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, au_dim))
        self.id = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, id_dim))
        self.decode = nn.Sequential(nn.Linear(au_dim + id_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.au(f), self.id(f)

    def losses(self, f: torch.Tensor, other_frame: torch.Tensor, other_person: torch.Tensor) -> dict[str, torch.Tensor]:
        """``f``, ``other_frame`` (the same clip, another time) and ``other_person`` (another clip's person),
        each (N, D) -> ``same_person``: rebuild f from its AU code and the other frame's identity code;
        ``swap``: the feature made of f's AU code and the other person's identity code gives both codes back."""
        a, _ = self(f)
        _, c_same = self(other_frame)
        _, c_other = self(other_person)
        same = F.mse_loss(self.decode(torch.cat([a, c_same], -1)), standardize(f).detach())
        a_back, c_back = self(self.decode(torch.cat([a, c_other], -1)))
        swap = F.mse_loss(a_back, a.detach()) + F.mse_loss(c_back, c_other.detach())
        return {"same_person": same, "swap": swap}


def clp_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The weighted sum of the switched-on terms (a weight of 0 switches a term off)."""
    unknown = set(weights) - set(terms)
    if unknown:
        raise ValueError(f"CLP loss weights for {sorted(unknown)}: expected some of {sorted(terms)}")
    return sum(w * terms[k] for k, w in weights.items() if w)

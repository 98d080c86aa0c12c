"""FSFM's identity-level self-distillation: an online projector and predictor, an EMA target, the loss.

The online branch encodes the masked face, a rep decoder (2 blocks at encoder width) fills the masked
tokens, and the mean of its tokens goes through the projector and the predictor; the target branch, an
exponential moving average of encoder, rep decoder and projector, sees the whole face. Both outputs are
L2-normalised and compared by cosine. The total loss is the MAE reconstruction of the masked patches,
plus a small weight on the reconstruction of the drawn facial region alone, plus the similarity term.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

REGION_WEIGHT = 0.007  # L_rec over the fully masked facial region M_fr
SIM_WEIGHT = 0.1


class Projector(nn.Module):
    """BYOL's MLP with LayerNorm in place of BatchNorm: ``dim -> hidden -> out``; also the predictor's shape."""

    def __init__(self, dim: int, hidden: int = 4096, out: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def momentum(step: int, total: int, base: float = 0.996) -> float:
    """The EMA momentum at ``step`` of ``total``: ``base`` at the start, rising on a cosine to 1 at the end."""
    if total <= 0:
        raise ValueError(f"total steps {total}: expected a positive number")
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total) / total) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """``target = m * target + (1 - m) * online``, parameter by parameter; buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(m).add_(o.detach(), alpha=1.0 - m)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def similarity_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-1/2 cos(prediction, target)`` averaged over the batch; the target carries no gradient."""
    return -0.5 * F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


def total_loss(rec: torch.Tensor, rec_region: torch.Tensor, sim: torch.Tensor | None) -> torch.Tensor:
    """FSFM's objective: ``L_rec + 0.007 L_rec(M_fr) + 0.1 L_sim`` (no similarity term when the branch is off)."""
    loss = rec + REGION_WEIGHT * rec_region
    return loss if sim is None else loss + SIM_WEIGHT * sim

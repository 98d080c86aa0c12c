"""The AU detector of FMAE-IAT: a timm ViT, mean-pooled patch tokens + ``fc_norm``, an AU head and,
behind a gradient-reversal layer, an identity head over the dataset's whole subject vocabulary.

It *is* a timm ``VisionTransformer`` (``global_pool='avg'``), so timm's layer-decay grouping,
``no_weight_decay`` and state-dict names apply unchanged; released FMAE-IAT checkpoints
(``fc_norm.*``, ``head.*``, ``ID_head.*``) load key for key.
"""

from __future__ import annotations

import math

import timm
import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class GradientReversal(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the incoming gradient by ``-lambda``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lambda_ * grad, None


def dann_ramp(progress: float) -> float:
    """DANN's adaptation factor 2 / (1 + exp(-10 p)) - 1 at training progress p in [0, 1] (Ganin et al.,
    JMLR 2016): 0 at the start, 0.987 at p = 0.5, 0.99991 at the end."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class GRL(nn.Module):
    """Gradient reversal; ``lambda_`` is constant (the release) unless the training loop sets it per step
    (``iat.schedule: ramp``)."""

    def __init__(self, lambda_: float):
        super().__init__()
        self.lambda_ = lambda_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return GradientReversal.apply(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda={self.lambda_}"


def identity_head(dim: int, subjects: int, layers: int) -> nn.Module:
    """1 layer: Linear(D, S) (the paper's choice); 2: D -> D/2 -> S; 3: D -> D/2 -> D/4 -> S, GELU between."""
    widths = [dim, *(dim // 2 ** k for k in range(1, layers)), subjects]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < layers - 1:
            mods.append(nn.GELU())
    return mods[0] if layers == 1 else nn.Sequential(*mods)


def vit_arch(name: str) -> dict:
    """Width, depth, heads, MLP ratio and patch size of a timm ViT name (read off a meta-device model)."""
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False)
    return {"embed_dim": vit.embed_dim, "depth": len(vit.blocks), "num_heads": vit.blocks[0].attn.num_heads,
            "mlp_ratio": vit.blocks[0].mlp.fc1.out_features / vit.embed_dim, "patch_size": vit.patch_embed.patch_size[0]}


class ViTClassifier(VisionTransformer):
    """Forward returns ``(au_logits [N, A], id_logits [N, S] or None)``."""

    def __init__(self, name: str, num_aus: int, num_subjects: int = 0, lambda_: float = 0.0, id_head_layers: int = 1,
                 img_size: int = 224, drop_path: float = 0.1):
        super().__init__(img_size=img_size, num_classes=num_aus, global_pool="avg", drop_path_rate=drop_path,
                         **vit_arch(name))
        self.encoder_name = name
        trunc_normal_(self.head.weight, std=2e-5)  # as MAE/FMAE finetuning
        nn.init.zeros_(self.head.bias)
        if lambda_ != 0:
            self.grl = GRL(lambda_)
            # ``ID_head`` (not PEP 8) is the attribute name in the released FMAE-IAT checkpoints.
            self.ID_head = identity_head(self.embed_dim, num_subjects, id_head_layers)
        else:
            self.grl, self.ID_head = None, None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, ``fc_norm``-ed feature ``[N, D]`` both heads read (and the identity probe)."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor):
        feat = self.features(x)
        au = self.head(feat)
        ids = self.ID_head(self.grl(feat)) if self.ID_head is not None else None
        return au, ids

"""The FSFM pretraining model: the project's MAE plus the self-distillation branch and its EMA target.

Online: the MAE's encoder sees the visible patches (CRFR-P's mask); the pixel decoder reconstructs
the masked ones (the MAE's own loss, over all masked patches and, weighted, over the drawn facial
region alone); a rep decoder (2 transformer blocks at the encoder's width) puts a mask token of its
own at every masked position, and the mean of its patch tokens goes through the projector and the
predictor. Target: an exponential moving average of encoder, rep decoder and projector that sees the
whole face. (FSFM's rep decoder shares the pixel decoder's mask token; here the pixel decoder is
narrower than the encoder, so the rep decoder has one at the encoder's width.)

The encoder is the MAE's, so :meth:`MaskedAutoencoder.encoder_state_dict` exports the same checkpoint
for finetuning; the target branch is part of :meth:`state_dict`, so a resumed run continues it.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..models.mae import MaskedAutoencoder
from .distill import Projector, ema_update, similarity_loss, total_loss


class _Branch(nn.Module):
    """Encoder, rep decoder and projector as one module, so the EMA walks their parameters together."""

    def __init__(self, mae: MaskedAutoencoder, depth: int, hidden: int, out: int):
        super().__init__()
        dim, block = mae.embed_dim, mae.blocks[0]
        self.patch_embed, self.cls_token, self.pos_embed = mae.patch_embed, mae.cls_token, mae.pos_embed
        self.blocks, self.norm = mae.blocks, mae.norm
        self.rep_mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.rep_mask_token, std=0.02)
        self.rep_blocks = nn.ModuleList(
            Block(dim, block.attn.num_heads, block.mlp.fc1.out_features / dim, qkv_bias=True,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6)) for _ in range(depth))
        self.rep_norm = nn.LayerNorm(dim, eps=1e-6)
        self.projector = Projector(dim, hidden, out)

    def represent(self, latent: torch.Tensor, ids_restore: torch.Tensor | None) -> torch.Tensor:
        """Encoder output ``[N, 1+K, D]`` -> the projected mean of the rep decoder's patch tokens ``[N, out]``;
        ``ids_restore`` None: every patch was visible."""
        x = latent[:, 1:, :]
        if ids_restore is not None:
            n, length = ids_restore.shape
            fill = self.rep_mask_token.expand(n, length - x.shape[1], -1)
            x = torch.gather(torch.cat([x, fill], 1), 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([latent[:, :1, :], x + self.pos_embed[:, 1:, :]], 1)
        for blk in self.rep_blocks:
            x = blk(x)
        return self.projector(self.rep_norm(x)[:, 1:, :].mean(1))

    def encode_all(self, imgs: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        return self.norm(self.blocks(torch.cat([cls, x], 1)))


class FSFM(nn.Module):
    """``model(imgs, noise, region) -> (loss, parts, mask)``; ``distill`` False leaves out the self-distillation
    branch. ``parts`` holds each term as a detached device tensor (no host sync)."""

    def __init__(self, mae: MaskedAutoencoder, distill: bool = True, rep_depth: int = 2, hidden: int = 4096, out: int = 256):
        super().__init__()
        self.mae, self.distill = mae, distill
        if distill:
            self.online = _Branch(mae, rep_depth, hidden, out)
            self.predictor = Projector(out, hidden, out)
            self.target = copy.deepcopy(self.online).requires_grad_(False)

    def no_weight_decay(self) -> set[str]:
        """The MAE's exclusions under this module's names, and the rep decoder's mask token."""
        keep = {f"mae.{name}" for name in self.mae.no_weight_decay()}
        return keep | ({"online.rep_mask_token", "online.cls_token", "online.pos_embed"} if self.distill else set())

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor, region: torch.Tensor):
        """``noise`` and ``region`` from :func:`pipeline.fsfm.masking.crfr_p` (random noise and an empty
        region: the plain MAE objective, plus the branch)."""
        latent, mask, ids_restore = self.mae.forward_encoder(imgs, self.mae.mask_ratio, noise)
        pred = self.mae.forward_decoder(latent, ids_restore)
        rec = self.mae.forward_loss(imgs, pred, mask)
        region = region.to(mask.dtype)
        rec_region = self.mae.forward_loss(imgs, pred, region) if region.sum() > 0 else rec.new_zeros(())
        sim = None
        if self.distill:
            online = self.predictor(self.online.represent(latent, ids_restore))
            with torch.no_grad():
                self.target.eval()
                target = self.target.represent(self.target.encode_all(imgs), None)
            sim = similarity_loss(online, target)
        loss = total_loss(rec, rec_region, sim)
        terms = {"rec": rec, "rec_region": rec_region} | ({"sim": sim} if sim is not None else {})
        return loss, {k: v.detach() for k, v in terms.items()}, mask

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """After each optimiser step: the target moves ``1 - momentum`` of the way to the online branch."""
        if self.distill:
            ema_update(self.target, self.online, momentum)

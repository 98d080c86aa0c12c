"""Masked autoencoder (He et al. 2022) with a timm ViT encoder, as FMAE pretrains it.

The encoder's pieces (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``) are
taken from ``timm.create_model(name)`` and kept under the same attribute names as MAE and timm
use, so a state dict of this module has the released FMAE/MAE keys and its encoder part loads
straight into a timm ``VisionTransformer``. The decoder is built from timm ``Block``s.

Shapes: ``N`` images, ``L`` patches per image, ``p`` patch side, ``D`` encoder width,
``E`` decoder width. Masks are ``[N, L]`` with 0 = keep (visible), 1 = remove (masked).
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding as MAE lays it out: ``[1, cls + grid*grid, dim]``.

    Per position (row r, column c) the channels read ``[sin(c w), cos(c w), sin(r w), cos(r w)]``
    with ``w = 10000 ** -(k / (dim/4))``; the CLS row is zeros. timm's helper gives
    ``[sin r, cos r, sin c, cos c]`` with interleaving, so its two halves are swapped.
    """
    emb = build_sincos2d_pos_embed([grid, grid], dim=dim, interleave_sin_cos=True)  # [grid*grid, dim]
    emb = emb.view(grid * grid, 2, dim // 2).flip(1).reshape(grid * grid, dim)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)
    return emb.unsqueeze(0)


class MaskedAutoencoder(nn.Module):
    """MAE: encode the visible quarter of the patches, decode all of them, regress the masked ones."""

    def __init__(self, encoder: str = "vit_base_patch16_224", decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16, norm_pix_loss: bool = True, mask_ratio: float = 0.75, img_size: int = 224):
        super().__init__()
        vit = timm.create_model(encoder, pretrained=False, num_classes=0, img_size=img_size)
        self.encoder_name = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        # Encoder: timm's modules under MAE's names.
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.pos_embed = nn.Parameter(torch.zeros_like(vit.pos_embed), requires_grad=False)  # fixed sin-cos
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.patch_size = self.patch_embed.patch_size[0]
        grid = self.patch_embed.grid_size[0]
        dim = vit.embed_dim
        mlp_ratio = self.blocks[0].mlp.fc1.out_features / dim
        norm_layer = partial(type(self.norm), eps=1e-6)
        # Decoder.
        self.decoder_embed = nn.Linear(dim, decoder_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, decoder_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth))
        self.decoder_norm = norm_layer(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size ** 2 * 3, bias=True)
        self.initialize_weights()

    # ------------------------------------------------------------------------------ init
    def initialize_weights(self) -> None:
        """MAE's init: sin-cos positions, xavier-uniform linears (patch projection as one), N(0, .02) tokens."""
        grid = self.patch_embed.grid_size[0]
        self.pos_embed.data.copy_(sincos_pos_embed(self.pos_embed.shape[-1], grid))
        self.decoder_pos_embed.data.copy_(sincos_pos_embed(self.decoder_pos_embed.shape[-1], grid))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay besides biases and norms (which timm excludes as 1-D)."""
        return {"cls_token", "pos_embed", "mask_token", "decoder_pos_embed"}

    @property
    def embed_dim(self) -> int:
        return self.pos_embed.shape[-1]

    # ------------------------------------------------------------------------- patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs ``[N, 3, H, W]`` -> patches ``[N, L, p*p*3]`` (row-major patches, pixels as (p, q, c))."""
        p = self.patch_size
        n, c, h, w = imgs.shape
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """patches ``[N, L, p*p*3]`` -> imgs ``[N, 3, H, W]`` (square images)."""
        p = self.patch_size
        g = int(round(x.shape[1] ** 0.5))
        x = x.reshape(x.shape[0], g, g, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], 3, g * p, g * p)

    @staticmethod
    def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
        """Keep a random ``1 - mask_ratio`` of each sample's tokens, chosen by sorting noise.

        x ``[N, L, D]``, noise ``[N, L]`` in [0, 1) (drawn here unless given; lowest values are kept).
        Returns x_visible ``[N, K, D]`` with ``K = L - round(L * mask_ratio)``, mask ``[N, L]``
        (0 keep, 1 remove, in the original order) and ids_restore ``[N, L]`` that unshuffles.
        """
        n, length, d = x.shape
        keep = length - int(round(length * mask_ratio))
        if noise is None:
            noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        mask = torch.ones(n, length, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_visible, mask, ids_restore

    # ------------------------------------------------------------------------- forward
    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
        """imgs ``[N, 3, H, W]`` -> latent ``[N, 1+K, D]`` (CLS first), mask ``[N, L]``, ids_restore ``[N, L]``."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = self.blocks(torch.cat([cls, x], dim=1))
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent ``[N, 1+K, D]`` -> predicted pixels ``[N, L, p*p*3]`` for every patch."""
        x = self.decoder_embed(latent)  # [N, 1+K, E]
        n, length = ids_restore.shape
        masked = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:, :], masked], dim=1)  # [N, L, E] in shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # original order
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]  # drop CLS

    def target(self, imgs: torch.Tensor) -> torch.Tensor:
        """Regression target ``[N, L, p*p*3]``: pixels, per-patch normalised when norm_pix_loss."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the masked patches only. pred ``[N, L, p*p*3]``, mask ``[N, L]``."""
        per_patch = ((pred.float() - self.target(imgs).float()) ** 2).mean(dim=-1)  # [N, L]
        return (per_patch * mask).sum() / mask.sum()

    def trivial_loss(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of predicting each masked patch's own mean (zero under norm_pix_loss): what a
        model scores that learnt nothing about image content. A run must end well below it."""
        target = self.target(imgs).float()
        return self.forward_loss(imgs, target.mean(dim=-1, keepdim=True).expand_as(target), mask)

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None):
        """imgs ``[N, 3, H, W]`` (normalised) -> (loss, pred ``[N, L, p*p*3]``, mask ``[N, L]``)."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    # --------------------------------------------------------------------------- export
    ENCODER_PREFIXES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under timm ``VisionTransformer`` names (what finetuning loads)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self.ENCODER_PREFIXES)}


def build_mae(model, cfg) -> MaskedAutoencoder:
    """The MAE of a ``ModelConfig`` with the decoder and loss settings of a ``PretrainConfig``."""
    return MaskedAutoencoder(model.name, decoder_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                             decoder_heads=cfg.decoder_heads, norm_pix_loss=cfg.norm_pix_loss,
                             mask_ratio=cfg.mask_ratio, img_size=model.img_size)

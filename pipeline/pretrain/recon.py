"""The reconstruction grid logged each epoch: original / masked input / reconstruction."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.images import decode_rgb, denormalize, normalize, to_chw
from ..models.mae import MaskedAutoencoder


def fixed_samples(shard: str | Path, n: int, size: int) -> torch.Tensor:
    """The first ``n`` images of ``shard`` as uint8 ``[n, 3, size, size]``: the same every epoch."""
    images = []
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".jpg"):
                images.append(to_chw(decode_rgb(tar.extractfile(member).read(), size)))
                if len(images) == n:
                    break
    return torch.stack(images)


@torch.no_grad()
def reconstruction_grid(model: MaskedAutoencoder, images: torch.Tensor, seed: int) -> Image.Image:
    """Rows: originals, what the encoder saw (masked patches grey), reconstruction with the visible
    patches pasted back. Predictions of a norm-pix model are mapped back to pixels with each
    patch's own mean and variance, as MAE's visualisation does."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = normalize(images, device)
    n, length = x.shape[0], model.patch_embed.num_patches
    noise = torch.rand(n, length, generator=torch.Generator().manual_seed(seed)).to(device)
    _, pred, mask = model(x.float(), noise=noise)
    pred = pred.float()
    if model.norm_pix_loss:
        target = model.patchify(x)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    mask_img = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, model.patch_size ** 2 * 3))
    recon = model.unpatchify(pred)
    masked = x * (1 - mask_img)
    pasted = x * (1 - mask_img) + recon * mask_img
    rows = [denormalize(x), denormalize(masked) * (1 - mask_img) + 0.5 * mask_img, denormalize(pasted)]
    model.train(was_training)
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # [3, 3H, nW]
    pixels = Image.fromarray((grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
    return _label_rows(pixels, ["original", f"input ({1 - model.mask_ratio:.0%} seen)", "reconstruction"])


def _label_rows(grid: Image.Image, labels: list[str], width: int = 150) -> Image.Image:
    """The grid with a white column on the left naming each row."""
    out = Image.new("RGB", (grid.width + width, grid.height), "white")
    out.paste(grid, (width, 0))
    draw, rows = ImageDraw.Draw(out), len(labels)
    font = ImageFont.load_default(size=max(10, min(16, grid.height // rows // 6)))
    for k, text in enumerate(labels):
        draw.text((6, (k + 0.5) * grid.height / rows), text, fill="black", font=font, anchor="lm")
    return out

"""The MAE maths: patches, masking, loss, targets and position embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.mae import MaskedAutoencoder, sincos_pos_embed


@pytest.fixture(scope="module")
def mae():
    torch.manual_seed(0)
    return MaskedAutoencoder("vit_tiny_patch16_224", decoder_dim=64, decoder_depth=1, decoder_heads=2, img_size=64)


def test_patchify_unpatchify_round_trip(mae):
    imgs = torch.randn(3, 3, 64, 64)
    patches = mae.patchify(imgs)
    assert patches.shape == (3, 16, 16 * 16 * 3)
    # patch 1 is the second patch of the top row, pixels in (row, column, channel) order
    assert torch.equal(patches[0, 1].view(16, 16, 3), imgs[0, :, :16, 16:32].permute(1, 2, 0))
    assert torch.equal(mae.unpatchify(patches), imgs)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.1])
def test_random_masking_counts_differs_per_sample_and_unshuffles(ratio):
    torch.manual_seed(1)
    n, length, d = 6, 49, 5
    x = torch.arange(n * length * d, dtype=torch.float32).view(n, length, d)
    visible, mask, ids_restore = MaskedAutoencoder.random_masking(x, ratio)
    masked = round(length * ratio)
    assert visible.shape == (n, length - masked, d)
    assert (mask.sum(1) == masked).all() and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert len({tuple(m.tolist()) for m in mask}) == n  # a different mask for every sample
    for i in range(n):  # the visible tokens are exactly the unmasked ones
        kept = x[i][mask[i] == 0]
        assert sorted(map(tuple, visible[i].tolist())) == sorted(map(tuple, kept.tolist()))
    # ids_restore puts the shuffled sequence [visible, masked] back in the original order
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    shuffled = torch.gather(x, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, d))
    assert torch.equal(shuffled[:, : length - masked], visible)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d)), x)


def test_given_noise_reproduces_the_mask():
    noise = torch.rand(2, 16)
    x = torch.randn(2, 16, 4)
    _, m1, _ = MaskedAutoencoder.random_masking(x, 0.75, noise)
    _, m2, _ = MaskedAutoencoder.random_masking(x, 0.75, noise.clone())
    assert torch.equal(m1, m2)
    assert torch.equal(m1[0] == 0, noise[0] <= noise[0].sort().values[3])  # the 4 lowest are kept


def test_loss_comes_from_masked_patches_only(mae):
    imgs = torch.randn(2, 3, 64, 64)
    pred = torch.randn(2, 16, 768)
    mask = torch.zeros(2, 16)
    mask[:, ::3] = 1
    loss = mae.forward_loss(imgs, pred, mask)
    # change the pixels of every visible patch: the loss must not move
    patches = mae.patchify(imgs)
    patches[mask == 0] = torch.randn_like(patches[mask == 0]) * 5
    assert torch.allclose(mae.forward_loss(mae.unpatchify(patches), pred, mask), loss)
    # change one masked patch: it must (not by a constant: the norm-pix target ignores offsets)
    patches[0, 0] += torch.randn(768)
    assert not torch.allclose(mae.forward_loss(mae.unpatchify(patches), pred, mask), loss)


def test_norm_pix_target_formula(mae):
    imgs = torch.rand(2, 3, 64, 64)
    patches = mae.patchify(imgs).double()
    n = patches.shape[-1]
    mean = patches.sum(-1, keepdim=True) / n
    var = ((patches - mean) ** 2).sum(-1, keepdim=True) / (n - 1)
    expected = (patches - mean) / torch.sqrt(var + 1e-6)
    assert torch.allclose(mae.target(imgs).double(), expected, atol=1e-5)
    raw = MaskedAutoencoder("vit_tiny_patch16_224", 64, 1, 2, norm_pix_loss=False, img_size=64)
    assert torch.equal(raw.target(imgs), mae.patchify(imgs))


def _mae_sincos(dim: int, grid: int) -> np.ndarray:
    """MAE's get_2d_sincos_pos_embed, written out again from the paper's code description."""
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_axis(dim // 2, xs), one_axis(dim // 2, ys)], axis=1)  # first half: column
    return np.concatenate([np.zeros((1, dim)), emb], axis=0)


@pytest.mark.parametrize("dim,grid", [(192, 14), (512, 14), (64, 4)])
def test_sincos_embedding_matches_mae_formula(dim, grid):
    ours = sincos_pos_embed(dim, grid)
    assert ours.shape == (1, 1 + grid * grid, dim)
    assert np.allclose(ours[0].numpy(), _mae_sincos(dim, grid), atol=1e-6)


def test_model_uses_fixed_sincos_and_released_key_names(mae):
    assert not mae.pos_embed.requires_grad and not mae.decoder_pos_embed.requires_grad
    assert torch.allclose(mae.pos_embed, sincos_pos_embed(192, 4))
    keys = set(mae.state_dict())
    for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
              "norm.weight", "mask_token", "decoder_embed.weight", "decoder_pos_embed", "decoder_blocks.0.mlp.fc1.weight",
              "decoder_norm.weight", "decoder_pred.weight"):
        assert k in keys, k
    assert set(mae.encoder_state_dict()) == {k for k in keys if not k.startswith(("decoder", "mask_token"))}


def test_forward_shapes_and_backward(mae):
    loss, pred, mask = mae(torch.randn(2, 3, 64, 64))
    assert pred.shape == (2, 16, 768) and mask.shape == (2, 16) and loss.ndim == 0
    loss.backward()
    assert mae.blocks[0].attn.qkv.weight.grad is not None and mae.pos_embed.grad is None

"""FSFM's parts: region groups of patches, CRFR-P masking, the EMA target and the loss terms."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.fsfm.distill import Projector, ema_update, momentum, similarity_loss, total_loss
from pipeline.fsfm.masking import crfr_p
from pipeline.fsfm.regions import FACIAL, GROUPS, LAPA, patch_groups
from pipeline.models.mae import MaskedAutoencoder

G = {name: k for k, name in enumerate(GROUPS)}


def face_map(size: int = 64) -> torch.Tensor:
    """A cartoon LaPa map: background border, hair on top, skin, brows, eyes, nose and mouth blocks."""
    m = torch.zeros(size, size, dtype=torch.long)
    m[10:54, 10:54] = LAPA["skin"]  # edges inside patches: skin meets hair and background there (boundary)
    m[10:17, 10:54] = LAPA["hair"]
    m[20:22, 16:28], m[20:22, 36:48] = LAPA["left_brow"], LAPA["right_brow"]
    m[24:28, 16:28], m[24:28, 36:48] = LAPA["left_eye"], LAPA["right_eye"]
    m[30:38, 28:36] = LAPA["nose"]
    m[42:44, 22:42], m[44:46, 22:42], m[46:48, 22:42] = LAPA["upper_lip"], LAPA["inner_mouth"], LAPA["lower_lip"]
    return m


def test_a_patch_belongs_to_every_group_one_of_its_pixels_does():
    m = torch.zeros(1, 8, 8, dtype=torch.long)  # 2 x 2 patches of 4 px
    m[0, 0:4, 0:4] = LAPA["skin"]
    m[0, 3, 3] = LAPA["left_eye"]  # one eye pixel in patch 0
    m[0, 0:4, 4:8] = LAPA["hair"]
    m[0, 2:4, 4:6] = LAPA["skin"]  # patch 1: hair and skin -> boundary
    m[0, 4:8, 0:4] = LAPA["upper_lip"]  # patch 2: mouth only; patch 3: background only
    groups = patch_groups(m, 4)[0]
    assert groups.shape == (4, len(GROUPS))
    assert {GROUPS[k] for k in torch.nonzero(groups[0]).flatten().tolist()} == {"eyes", "skin"}
    assert {GROUPS[k] for k in torch.nonzero(groups[1]).flatten().tolist()} == {"boundary", "hair", "skin"}
    assert {GROUPS[k] for k in torch.nonzero(groups[2]).flatten().tolist()} == {"mouth"}
    assert {GROUPS[k] for k in torch.nonzero(groups[3]).flatten().tolist()} == {"background"}


def test_region_maps_must_fit_the_patches_and_the_label_set():
    with pytest.raises(ValueError, match="multiples of 16"):
        patch_groups(torch.zeros(1, 30, 32, dtype=torch.long), 16)
    with pytest.raises(ValueError, match="LaPa labels 0-10"):
        patch_groups(torch.full((1, 32, 32), 11), 16)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
def test_crfr_p_masks_exactly_round_rl_patches_and_covers_the_drawn_region(ratio):
    groups = patch_groups(face_map()[None].expand(200, -1, -1), 4)  # 256 patches
    noise, mask, region = crfr_p(groups, ratio, torch.Generator().manual_seed(0))
    n = round(256 * ratio)
    assert (mask.sum(1) == n).all()
    assert (mask | ~region).all()  # every patch of M_fr is masked
    assert region.any(1).all()
    for i in range(len(mask)):  # M_fr is one whole facial group, or n of its patches when it is larger
        whole = [groups[i, :, G[name]] for name in FACIAL]
        assert any(torch.equal(region[i], w) for w in whole) or (region[i].sum() == n and any((region[i] <= w).all() for w in whole))
    masked_by_sort = MaskedAutoencoder.random_masking(torch.zeros(200, 256, 1), ratio, noise)[1]
    assert torch.equal(masked_by_sort.bool(), mask)  # the MAE's own masking applies it unchanged


def test_crfr_p_spreads_the_rest_of_the_budget_in_proportion():
    """Outside M_fr each group loses about the same share, (n - |M_fr|) / (L - |M_fr|), over many draws."""
    groups = patch_groups(face_map()[None].expand(2000, -1, -1), 4)
    _, mask, region = crfr_p(groups, 0.75, torch.Generator().manual_seed(1))
    n, length = 192, 256
    for name in ("skin", "background", "hair"):
        member = groups[:, :, G[name]] & ~region
        observed = (mask & member).sum().item() / member.sum().item()
        expected = ((n - region.sum(1)) / (length - region.sum(1))).float().mul(member.sum(1)).sum().item() / member.sum().item()
        assert abs(observed - expected) < 0.02, (name, observed, expected)
    drawn = torch.tensor([[torch.equal(region[i], groups[i, :, G[f]]) for f in FACIAL] for i in range(300)])
    counts = drawn.float().sum(0)
    assert (counts > 20).all(), counts  # each of the six facial groups gets drawn


def test_a_region_larger_than_the_budget_gives_n_of_its_patches():
    groups = torch.zeros(50, 100, len(GROUPS), dtype=torch.bool)
    groups[:, :, [G[f] for f in FACIAL]] = True  # every facial group covers every patch
    _, mask, region = crfr_p(groups, 0.3, torch.Generator().manual_seed(2))
    assert (mask.sum(1) == 30).all() and torch.equal(mask, region)


def test_the_ema_momentum_rises_on_a_cosine_from_its_base_to_one():
    assert momentum(0, 100) == pytest.approx(0.996)
    assert momentum(50, 100) == pytest.approx(0.998)
    assert momentum(100, 100) == pytest.approx(1.0) and momentum(150, 100) == pytest.approx(1.0)
    assert momentum(25, 100) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)


def test_the_ema_update_moves_the_target_a_share_one_minus_m_towards_the_online_weights():
    online, target = Projector(3, 4, 2), Projector(3, 4, 2)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    ema_update(target, online, 0.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


def test_the_loss_terms_against_hand_computed_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0]])  # cosines 1 and 0
    assert similarity_loss(a, b).item() == pytest.approx(-0.25)
    assert similarity_loss(a, -a).item() == pytest.approx(0.5)
    assert total_loss(torch.tensor(0.5), torch.tensor(2.0), torch.tensor(-0.4)).item() == pytest.approx(0.5 + 0.014 - 0.04)
    assert total_loss(torch.tensor(0.5), torch.tensor(2.0), None).item() == pytest.approx(0.514)
    b.requires_grad_(True)
    similarity_loss(a.requires_grad_(True), b).backward()
    assert b.grad is None and a.grad is not None  # the target branch gets no gradient


def _tiny_fsfm(distill: bool = True):
    torch.manual_seed(0)
    from pipeline.fsfm.model import FSFM

    mae = MaskedAutoencoder("vit_tiny_patch16_224", decoder_dim=32, decoder_depth=1, decoder_heads=2, img_size=64)
    return FSFM(mae, distill=distill, hidden=64, out=16)


def test_fsfm_trains_the_online_branch_and_moves_the_target_only_by_ema():
    model = _tiny_fsfm()
    imgs = torch.randn(4, 3, 64, 64)
    groups = patch_groups(torch.nn.functional.interpolate(face_map()[None, None].float(), size=64).long()[:, 0].expand(4, -1, -1), 16)
    noise, _, region = crfr_p(groups, 0.75, torch.Generator().manual_seed(0))
    loss, parts, _ = model(imgs, noise, region)
    parts = {k: float(v) for k, v in parts.items()}
    assert set(parts) == {"rec", "rec_region", "sim"} and -0.5 <= parts["sim"] <= 0.5
    assert loss.item() == pytest.approx(parts["rec"] + 0.007 * parts["rec_region"] + 0.1 * parts["sim"], rel=1e-5)
    target_before = [p.clone() for p in model.target.parameters()]
    loss.backward()
    assert all(p.grad is None for p in model.target.parameters())
    assert model.online.rep_mask_token.grad is not None and model.predictor.net[0].weight.grad is not None
    assert model.mae.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.mae.blocks[0].attn.qkv.weight.add_(1.0)  # an optimiser step on the shared encoder
    model.update_target(0.99)
    moved = model.target.blocks[0].attn.qkv.weight - target_before[[n for n, _ in model.target.named_parameters()].index("blocks.0.attn.qkv.weight")]
    assert torch.allclose(moved, torch.full_like(moved, 0.01), atol=1e-6)
    assert set(model.mae.encoder_state_dict()) == set(MaskedAutoencoder("vit_tiny_patch16_224", 32, 1, 2, img_size=64).encoder_state_dict())


def test_fsfm_without_the_branch_is_the_mae_loss_plus_the_region_term():
    model = _tiny_fsfm(distill=False)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    loss, parts, _ = model(imgs, noise, torch.zeros(2, 16, dtype=torch.bool))
    parts = {k: float(v) for k, v in parts.items()}
    mae_loss = model.mae(imgs, noise=noise)[0]
    assert set(parts) == {"rec", "rec_region"} and parts["rec_region"] == 0 and loss.item() == pytest.approx(mae_loss.item())

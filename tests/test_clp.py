"""CLP's losses as reconstructed (issue 31): the clip's positives and negatives, the temporal margin
loss and the cross-identity terms against hand-computed toys."""

from __future__ import annotations

import pytest
import torch

from pipeline.clp.losses import CrossIdentity, clip_pairs, clp_loss, temporal_margin_loss


def test_near_frames_are_positives_far_frames_of_the_same_clip_negatives():
    pos, neg = clip_pairs(5, near=1, far=3)
    assert pos[2].tolist() == [False, True, False, True, False]
    assert neg[0].tolist() == [False, False, False, True, True] and not neg[2].any()
    assert not (pos & neg).any() and not pos.diagonal().any()
    with pytest.raises(ValueError, match="1 <= near < far"):
        clip_pairs(5, near=2, far=2)


def test_temporal_margin_loss_by_hand():
    """T = 4, near 1, far 3: the triplets are (0, 1, 3) and (3, 2, 0)."""
    e = torch.eye(2)
    same, orth = e[0], e[1]
    z = torch.stack([same, same, orth, orth])[None]  # d(0,1) = 0, d(0,3) = 2; d(3,2) = 0, d(3,0) = 2
    assert temporal_margin_loss(z, 1, 3, margin=0.5).item() == pytest.approx(0.0)
    z = torch.stack([same, orth, orth, same])[None]  # d(0,1) = 2, d(0,3) = 0: hinge 2 - 0 + 0.5 both ways
    assert temporal_margin_loss(z, 1, 3, margin=0.5).item() == pytest.approx(2.5)
    assert temporal_margin_loss(torch.randn(2, 3, 4), 1, 3).item() == 0.0  # no frame is 3 apart


def test_the_temporal_loss_falls_when_embeddings_follow_time():
    t = torch.linspace(0, 1.5, 8)
    smooth = torch.stack([torch.cos(t), torch.sin(t)], -1)[None]
    shuffled = smooth[:, torch.tensor([0, 5, 2, 7, 4, 1, 6, 3])]
    assert temporal_margin_loss(smooth, 1, 3, 0.1) < temporal_margin_loss(shuffled, 1, 3, 0.1)


def test_cross_identity_terms():
    torch.manual_seed(0)
    model = CrossIdentity(dim=8, au_dim=3, id_dim=3, hidden=16)
    f, g, h = torch.randn(3, 5, 8).unbind(0)
    terms = model.losses(f, g, h)
    assert set(terms) == {"same_person", "swap"} and all(v.item() > 0 for v in terms.values())
    a, _ = model(f)
    _, c = model(g)
    assert terms["same_person"].item() == pytest.approx(((model.decode(torch.cat([a, c], -1)) - f) ** 2).mean().item())
    terms["swap"].backward()
    assert model.decode[0].weight.grad.abs().sum() > 0  # the swap trains the decoder
    assert clp_loss(terms, {"same_person": 1.0, "swap": 0.0}).item() == pytest.approx(terms["same_person"].item())
    with pytest.raises(ValueError, match="expected some of"):
        clp_loss(terms, {"temporal": 1.0})

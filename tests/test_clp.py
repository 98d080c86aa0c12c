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
    target = (f - f.mean(0)) / f.std(0)
    assert terms["same_person"].item() == pytest.approx(((model.decode(torch.cat([a, c], -1)) - target) ** 2).mean().item(), rel=1e-4)
    terms["swap"].backward()
    assert model.decode[0].weight.grad.abs().sum() > 0  # the swap trains the decoder
    assert clp_loss(terms, {"same_person": 1.0, "swap": 0.0}).item() == pytest.approx(terms["same_person"].item())
    with pytest.raises(ValueError, match="expected some of"):
        clp_loss(terms, {"temporal": 1.0})


def test_each_window_is_paired_with_the_next_window_of_another_person():
    from pipeline.clp.model import other_person

    assert other_person(torch.tensor([0, 0, 1, 2, 1])).tolist() == [2, 2, 3, 4, 0]
    assert other_person(torch.tensor([3, 3, 3])).tolist() == [-1, -1, -1]


def test_a_window_sample_is_its_frames_in_order_flipped_together(tmp_path):
    import json

    import cv2
    import numpy as np

    from pipeline.clp.data import WindowSample

    frames = [np.full((8, 8, 3), 30 * k, np.uint8) for k in range(4)]
    for f in frames:
        f[:, :2] = 255  # a bright left edge: a flip moves it right
    sample = {"__key__": "w", "json": json.dumps({"identity": "id00046"}).encode(),
              **{f"f{k:02d}.jpg": cv2.imencode(".png", f)[1].tobytes() for k, f in enumerate(frames)}}
    make = WindowSample(8, 4, {"id00017": 0, "id00046": 1}, seed=0, epoch=0)
    seen = set()
    for _ in range(20):
        window, person = make(sample)
        assert window.shape == (4, 3, 8, 8) and person.item() == 1
        assert window[:, :, 4, 4].float().mean(1).tolist() == [30.0 * k for k in range(4)]  # time order kept
        left = window[:, :, :, 0].float().mean((1, 2))
        assert (left == 255).all() or (left < 255).all()  # every frame flipped or none
        seen.add(bool(left[0] == 255))
    assert seen == {True, False}
    with pytest.raises(KeyError, match="clips.length"):
        WindowSample(8, 5, {"id00046": 1}, 0, 0)(sample)


def test_clp_forward_switches_its_terms():
    from types import SimpleNamespace

    from pipeline.clp.model import CLP
    from pipeline.models.mae import MaskedAutoencoder

    torch.manual_seed(0)
    cfg = SimpleNamespace(near=1, far=3, margin=0.5, au_dim=8, id_dim=8, hidden=16, temporal=1.0, same_person=1.0, swap=1.0)
    mae = MaskedAutoencoder("vit_tiny_patch16_224", 32, 1, 2, img_size=32)
    frames, people = torch.randn(3, 4, 3, 32, 32), torch.tensor([0, 1, 1])
    loss, terms, _ = CLP(mae, cfg)(frames, people)
    assert set(terms) == {"temporal", "same_person", "swap"}
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    loss.backward()
    assert mae.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the encoder learns from it
    off = SimpleNamespace(**{**vars(cfg), "same_person": 0.0, "swap": 0.0})
    loss, terms, _ = CLP(mae, off)(frames, people)
    assert set(terms) == {"temporal"} and loss.item() == pytest.approx(terms["temporal"].item())


def test_clp_pretraining_mistakes_are_one_line(params, tmp_path):
    import dataclasses

    from pipeline.config import ConfigError, MissingInput
    from pipeline.pretrain.pretrain import clip_windows

    cfg = dataclasses.replace(params.pretrain, method="clp")
    with pytest.raises(MissingInput, match="dvc repro clips"):
        clip_windows(params, cfg, tmp_path)
    with pytest.raises(ConfigError, match="pretrain.clp.far"):
        clip_windows(params, dataclasses.replace(cfg, clp=dataclasses.replace(cfg.clp, far=params.clips.length)), tmp_path)
    with pytest.raises(ConfigError, match="at least 2 windows"):
        clip_windows(params, dataclasses.replace(cfg, batch_size=params.clips.length), tmp_path)

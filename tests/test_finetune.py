"""AU finetuning pieces: GRL, heads, layer decay, labels, crops, folds, selection, checkpoints."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.au.crops import crop_face, expand_box
from pipeline.au.folds import AUS, FOLDS, fold_split, subjects
from pipeline.au.labels import UNKNOWN, apply_policy, read_occurrence_csv
from pipeline.au.metrics import best_threshold, f1_per_au
from pipeline.finetune.data import fold_parts
from pipeline.finetune.train import Run, au_loss, finetune, id_loss, load_backbone
from pipeline.models import checkpoint
from pipeline.models.au_detector import GRL, AUDetector
from pipeline.models.mae import MaskedAutoencoder
from pipeline.optim import adamw

from .conftest import ROOT, TINY, TINY_STAGES


def detector(lambda_=2.0, layers=1):
    torch.manual_seed(0)
    return AUDetector("vit_tiny_patch16_224", 12, 41, lambda_, layers, img_size=32, drop_path=0.0)


# -------------------------------------------------------------------------------- GRL
@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_grl_is_identity_forward_and_scales_gradient_by_minus_lambda(lam):
    x = torch.randn(4, 8, requires_grad=True)
    y = GRL(lam)(x)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 8)
    y.backward(upstream)
    assert torch.allclose(x.grad, -lam * upstream)


def test_id_head_gets_plain_gradient_and_backbone_the_reversed_one():
    m = detector(lambda_=2.0)
    x = torch.randn(3, 3, 32, 32)
    feat = m.features(x).detach().requires_grad_(True)
    logits = m.ID_head(m.grl(feat))
    loss = logits.sum()
    loss.backward()
    # the head's weight gradient is that of the un-reversed loss: sum over the batch of the features
    assert torch.allclose(m.ID_head.weight.grad, feat.detach().sum(0).expand_as(m.ID_head.weight), atol=1e-5)
    # the feature gradient is -lambda x the head's
    assert torch.allclose(feat.grad, -2.0 * m.ID_head.weight.sum(0).expand_as(feat), atol=1e-5)


def test_lambda_zero_builds_no_identity_head():
    m = detector(lambda_=0.0)
    assert m.ID_head is None and not any(k.startswith("ID_head") for k in m.state_dict())
    assert m(torch.randn(2, 3, 32, 32))[1] is None


@pytest.mark.parametrize("layers,shapes", [(1, [(41, 192)]), (2, [(96, 192), (41, 96)]), (3, [(96, 192), (48, 96), (41, 48)])])
def test_identity_head_depths(layers, shapes):
    m = detector(layers=layers)
    assert [tuple(p.shape) for n, p in m.ID_head.named_parameters() if n.endswith("weight")] == shapes


def test_au_head_init_and_pooled_feature():
    m = detector()
    assert m.head.weight.std() < 1e-4 and m.global_pool == "avg" and isinstance(m.fc_norm, torch.nn.LayerNorm)


def test_layer_decay_groups_and_scales():
    m = detector()
    opt = adamw(m, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999), layer_decay=0.65)
    names = {id(p): n for n, p in m.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    depth = len(m.blocks)
    assert scale["head.weight"] == pytest.approx(1.0) and scale["ID_head.weight"] == pytest.approx(1.0)
    assert scale["blocks.11.attn.qkv.weight"] == pytest.approx(0.65)
    assert scale["blocks.0.attn.qkv.weight"] == pytest.approx(0.65 ** depth)
    assert scale["patch_embed.proj.weight"] == pytest.approx(0.65 ** (depth + 1))
    assert scale["cls_token"] == scale["pos_embed"] == scale["patch_embed.proj.weight"]


# ----------------------------------------------------------------------------- labels
def test_bp4d_code_9_is_unknown_then_policy(tmp_path):
    path = tmp_path / "F001_T1.csv"
    header = "0," + ",".join(map(str, range(1, 100)))
    row = lambda f, codes: f"{f}," + ",".join(str(codes.get(au, 0)) for au in range(1, 100))  # noqa: E731
    path.write_text("\n".join([header, row(10, {1: 1, 2: 9, 12: 1}), row(11, {4: 1, 99: 9})]) + "\n")
    table = read_occurrence_csv(path, AUS["bp4d"])
    assert table.frame.tolist() == [10, 11]
    assert table.au1.tolist() == [1, 0] and table.au2.tolist() == [UNKNOWN, 0] and table.au4.tolist() == [0, 1]
    table.insert(0, "subject", "F001")
    assert apply_policy(table, "bp4d", "negative").au2.tolist() == [0, 0]
    assert apply_policy(table, "bp4d", "mask").au2.tolist() == [UNKNOWN, 0]


def test_named_header_maps_columns_by_au_number(tmp_path):
    coded = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27)
    path = tmp_path / "F001_T1.csv"
    values = {au: (1 if au in (12, 24) else 0) for au in coded}
    path.write_text("1," + ",".join(map(str, coded)) + "\n" + "5," + ",".join(str(values[a]) for a in coded) + "\n")
    table = read_occurrence_csv(path, AUS["bp4dplus"])
    assert table.au12.item() == 1 and table.au24.item() == 1 and table.au10.item() == 0


def test_disfa_positive_iff_intensity_at_least_two(tiny_world):
    from pipeline.au.labels import read_disfa

    _, out = tiny_world
    table = read_disfa(out / "au" / "DISFA", offset=-1)
    raw = pd.read_csv(out / "au/DISFA/ActionUnit_Labels/SN001/SN001_au12.txt", header=None, names=["frame", "i"])
    mine = table[table.subject == "SN001"].set_index("frame").au12
    assert (mine.loc[raw.frame].to_numpy() == (raw.i >= 2).to_numpy()).all()
    assert table.image.iloc[0].endswith("#0")  # label frame 1 = decoded frame 0


# ------------------------------------------------------------------------------ crops
def test_box_grows_five_percent_per_side_and_clips():
    assert expand_box(100, 50, 200, 100, 0.05, 1000, 1000) == (90, 45, 310, 155)
    assert expand_box(2, 3, 100, 100, 0.05, 104, 1000) == (0, 0, 104, 108)
    with pytest.raises(ValueError, match="outside"):
        expand_box(2000, 0, 10, 10, 0.05, 100, 100)


def test_crop_is_the_expanded_box_resized():
    img = np.zeros((200, 300, 3), np.uint8)
    img[45:155, 90:210] = 255  # exactly the expanded box of (100, 50, 100, 100)
    crop = crop_face(img, (100, 50, 100, 100), 0.05, 64)
    assert crop.shape == (64, 64, 3) and crop.min() == 255


# ------------------------------------------------------------------------------ folds
@pytest.mark.parametrize("dataset,n_subjects,n_folds", [("bp4d", 41, 3), ("bp4dplus", 140, 4), ("disfa", 27, 3)])
def test_folds_are_disjoint_and_cover_every_subject(dataset, n_subjects, n_folds):
    folds = FOLDS[dataset]
    assert len(folds) == n_folds
    flat = [s for f in folds for s in f]
    assert len(flat) == len(set(flat)) == n_subjects == len(subjects(dataset))
    for k in range(1, n_folds + 1):
        train, test = fold_split(dataset, k)
        assert set(train) | set(test) == set(flat) and not set(train) & set(test)
        assert set(test) == set(folds[k - 1])


def test_validation_subjects_come_from_training_subjects_only():
    index = pd.DataFrame({"subject": list(subjects("bp4d")) * 2})
    parts = fold_parts(index, "bp4d", 1, 0.2, seed=0)
    train, test = fold_split("bp4d", 1)
    val = set(parts["val"].subject)
    assert val and val <= set(train) and not val & set(parts["train"].subject)
    assert set(parts["test"].subject) == set(test) and len(val) == round(len(train) * 0.2)


# -------------------------------------------------------------------------- selection
def test_f1_matches_hand_counts_and_unknowns_are_ignored():
    labels = np.array([[1, 0], [1, 1], [0, -1], [0, 1]])
    probs = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.9], [0.1, 0.3]])
    # AU a: tp 1 (row0), fn 1 (row1), fp 1 (row2) -> F1 0.5; AU b: tp 1, fn 1, row 2 unknown -> 2/3
    assert np.allclose(f1_per_au(labels, probs, 0.5), [0.5, 2 / 3])


def test_threshold_sweep_finds_the_separating_threshold():
    labels = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.35], [0.3], [0.2], [0.1]])
    thr, f1 = best_threshold(labels, probs)
    assert f1 == 1.0 and 0.2 < thr <= 0.3
    assert f1_per_au(labels, probs, 0.5)[0] == 0.0  # at 0.5 nothing is predicted


def test_losses():
    logits, labels = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, -1.0]])
    assert au_loss(logits, labels).item() == pytest.approx(np.log(2))  # unknowns are out of the mean
    ids = torch.zeros(2, 5)
    assert id_loss(ids, torch.tensor([0, 3]), "bce").item() == pytest.approx(np.log(2))
    assert id_loss(ids, torch.tensor([0, 3]), "ce").item() == pytest.approx(np.log(5))


# ------------------------------------------------------------------------- checkpoints
def test_loads_pretrained_mae_with_decoder_keys(tmp_path):
    mae = MaskedAutoencoder("vit_tiny_patch16_224", 64, 1, 2, img_size=32)
    torch.save({"model": mae.state_dict(), "epoch": 49}, tmp_path / "fmae.pth")
    m = detector()
    report = load_backbone(m, str(tmp_path / "fmae.pth"))
    assert "blocks.0.attn.qkv.weight" in report.matched and "pos_embed" in report.matched
    assert {"head.weight", "fc_norm.weight", "ID_head.weight"} <= set(report.missing)
    assert "decoder_pred.weight" in report.unexpected and "norm.weight" in report.unexpected
    assert torch.equal(m.blocks[3].mlp.fc1.weight, mae.blocks[3].mlp.fc1.weight)


def test_loads_released_finetuned_iat_checkpoint(tmp_path):
    import argparse

    source = detector()
    state = {k: v for k, v in source.state_dict().items()}
    torch.save({"model": state, "args": argparse.Namespace(nb_classes=12)}, tmp_path / "iat.pth")
    m = AUDetector("vit_tiny_patch16_224", 12, 41, 2.0, 1, img_size=32)
    report = checkpoint.load_into(m, checkpoint.read(tmp_path / "iat.pth")["model"])
    assert not report.missing and not report.unexpected
    assert torch.equal(m.ID_head.weight, source.ID_head.weight) and torch.equal(m.head.weight, source.head.weight)


# ---------------------------------------------------------------------------- resuming
@pytest.fixture(scope="module")
def tiny_fold(tiny_world, tmp_path_factory):
    """(params, crops folder) of the tiny world's BP4D, prepared, with a random MAE as the init."""
    from pipeline.au.prepare import prepare
    from pipeline.config import load_params
    from pipeline.models.mae import build_mae
    from pipeline.synth.stage import au_root

    _, out = tiny_world
    base = tmp_path_factory.mktemp("finetune")
    params = load_params(ROOT / "params.yaml", {**TINY, **TINY_STAGES, "synth.out_dir": str(out),
                                                "au.bp4d.root": str(au_root(out, "bp4d")), "finetune.epochs": 3,
                                                "finetune.init": str(base / "mae.pth")})
    checkpoint.save_atomic({"model": build_mae(params.model, params.pretrain).state_dict()}, base / "mae.pth")
    prepare(params, "bp4d", base / "bp4d")
    return params, base / "bp4d"


def _comparable(result: dict) -> tuple:
    history = [{k: v for k, v in row.items() if k != "images_per_s"} for row in result["history"]]
    return history, result["selection"], result["test_probs"].tolist()


def test_killed_finetune_resumes_to_the_uninterrupted_result(tiny_fold, tmp_path, caplog):
    params, crops = tiny_fold
    run = Run("bp4d", 1, "iat")
    caplog.set_level(logging.INFO)
    whole = finetune(params, run, crops)
    assert finetune(params, run, crops, resume=tmp_path / "resume.pth", stop_after=2) is None
    saved = checkpoint.read(tmp_path / "resume.pth")
    assert saved["epoch"] == 1 and [r["epoch"] for r in saved["history"]] == [1, 2]
    resumed = finetune(params, run, crops, resume=tmp_path / "resume.pth")
    assert "resuming from" in caplog.text
    assert _comparable(resumed) == _comparable(whole)
    a, b = whole["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_file_of_other_settings_is_not_used(tiny_fold, tmp_path, caplog):
    params, crops = tiny_fold
    run = Run("bp4d", 1, "iat")
    finetune(params, run, crops, resume=tmp_path / "resume.pth", stop_after=1)
    other = replace(params, finetune=replace(params.finetune, blr=params.finetune.blr * 2))
    caplog.set_level(logging.INFO)
    result = finetune(other, run, crops, resume=tmp_path / "resume.pth")
    assert "other settings" in caplog.text and "resuming from" not in caplog.text
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]

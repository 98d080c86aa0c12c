"""AU finetuning pieces: GRL, heads, layer decay, labels, crops, folds, selection, checkpoints."""

from __future__ import annotations

import logging
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.au.data import fold_parts
from pipeline.au.folds import AUS, FOLDS, fold_split, subjects
from pipeline.au.labels import UNKNOWN, apply_policy, read_occurrence_csv
from pipeline.au.metrics import best_threshold, f1_per_au
from pipeline.au.train import Run, au_loss, finetune, id_loss
from pipeline.faces.crop import crop_face, expand_box
from pipeline.models import checkpoint
from pipeline.models.mae import MaskedAutoencoder
from pipeline.models.vit_classifier import GRL, ViTClassifier
from pipeline.optim import adamw
from pipeline.training.backbone import load_backbone

from .conftest import PARAMS, TINY, TINY_STAGES


def detector(lambda_=2.0, layers=1):
    torch.manual_seed(0)
    return ViTClassifier("vit_tiny_patch16_224", 12, 41, lambda_, layers, img_size=32, drop_path=0.0)


# -------------------------------------------------------------------------------- GRL
@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_grl_is_identity_forward_and_scales_gradient_by_minus_lambda(lam):
    x = torch.randn(4, 8, requires_grad=True)
    y = GRL(lam)(x)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 8)
    y.backward(upstream)
    assert torch.allclose(x.grad, -lam * upstream)


def _id_only_gradients(m: ViTClassifier, x: torch.Tensor):
    """Backward of the identity logits' sum through the model's own ``forward``: the ID head's weight
    gradient, the gradient arriving at the pooled feature, and the patch embedding's gradient."""
    captured = {}

    def keep(_module, _inputs, out):
        out.retain_grad()
        captured["feat"] = out

    hook = m.fc_norm.register_forward_hook(keep)
    m.zero_grad(set_to_none=True)
    _, id_logits = m(x)
    hook.remove()
    id_logits.sum().backward()
    feat = captured["feat"]
    return m.ID_head.weight.grad.clone(), feat.detach(), feat.grad.clone(), m.patch_embed.proj.weight.grad.clone()


def test_id_head_gets_plain_gradient_and_backbone_the_reversed_one():
    m = detector(lambda_=2.0)
    x = torch.randn(3, 3, 32, 32)
    head_grad, feat, feat_grad, embed_grad = _id_only_gradients(m, x)
    # the head's weight gradient is that of the un-reversed loss: sum over the batch of the features
    assert torch.allclose(head_grad, feat.sum(0).expand_as(head_grad), atol=1e-5)
    # the gradient leaving the GRL towards the backbone is -lambda x the head's
    assert torch.allclose(feat_grad, -2.0 * m.ID_head.weight.sum(0).expand_as(feat_grad), atol=1e-5)
    # and it reaches the backbone (not detached), reversed: lambda -1 is a plain pass-through
    m.grl.lambda_ = -1.0
    *_, plain_embed_grad = _id_only_gradients(m, x)
    assert plain_embed_grad.abs().sum() > 0
    assert torch.allclose(embed_grad, -2.0 * plain_embed_grad, rtol=1e-4, atol=1e-7)


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


def test_one_step_of_the_finetuning_optimiser_moves_every_parameter():
    """A frozen backbone, a parameter left out of the optimiser or a zero layer-decay scale would
    leave some weights where they started (the overfit test cannot tell: a head alone memorises)."""
    m = detector(lambda_=2.0)
    opt = adamw(m, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999), layer_decay=0.65)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    au_logits, id_logits = m(torch.randn(4, 3, 32, 32))
    loss = au_loss(au_logits, torch.tensor([[1.0, 0.0] * 6] * 4)) + id_loss(id_logits, torch.tensor([0, 1, 2, 3]), "bce")
    loss.backward()
    opt.step()
    frozen = [n for n, p in m.named_parameters() if torch.equal(p, before[n])]
    assert not frozen, frozen


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


def test_train_transform_is_the_papers_by_default_and_each_part_can_be_turned_off(params):
    from pipeline.training.transforms import train_transform

    def parts(transform):
        return [type(t).__name__ for t in transform.transforms]

    paper = train_transform(64)
    assert parts(paper) == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment", "MaybeToTensor",
                            "Normalize", "RandomErasing"]
    assert paper.transforms[0].scale == (0.08, 1.0) and paper.transforms[-1].probability == 0.25
    plain = train_transform(64, replace(params.finetune, augment="paper", min_crop_scale=1.0, rand_augment="",
                                                    erase_prob=0.0))
    assert parts(plain) == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "MaybeToTensor", "Normalize"]
    assert plain.transforms[0].scale == (1.0, 1.0)
    flip = train_transform(64, replace(params.finetune, augment="flip"))
    assert parts(flip) == ["Resize", "RandomHorizontalFlip", "ToTensor", "Normalize"]


def test_crop_is_the_expanded_box_resized():
    img = np.zeros((200, 300, 3), np.uint8)
    img[45:155, 90:210] = 255  # exactly the expanded box of (100, 50, 100, 100): 120 x 110 px
    red = (0, 0, 255)  # BGR
    img[45:55], img[145:155], img[45:155, 90:100], img[45:155, 200:210] = red, red, red, red  # its 10-px border
    crop = crop_face(img, (100, 50, 100, 100), 0.05, 64).astype(int)
    assert crop.shape == (64, 64, 3)
    # every edge of the crop carries the expanded box's border (a crop of the bare box would be
    # white there, a larger one black), and its inside is the white interior
    for edge in (crop[0], crop[-1], crop[:, 0], crop[:, -1]):
        assert (edge[:, 2] > 200).all() and (edge[:, :2] < 60).all()
    assert (crop[10:-10, 10:-10] > 240).all()


def test_crop_takes_exactly_the_box_grown_by_the_margin_on_every_side():
    """On random pixels any offset shows: (100, 50, 100, 80) grown by 5% of its width / height per side is
    x 95-205, y 46-134, resized with INTER_AREA (a narrower box, or one grown in one direction only, differs)."""
    img = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    want = cv2.resize(img[46:134, 95:205], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(crop_face(img, (100, 50, 100, 80), 0.05, 64), want)


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
    logits = torch.tensor([[2.0, -1.0, 5.0], [-0.5, 3.0, -4.0]])
    labels = torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, -1.0]])

    def bce(z, y):  # written out: -[y log s(z) + (1 - y) log(1 - s(z))]
        s = 1 / (1 + np.exp(-z))
        return -(y * np.log(s) + (1 - y) * np.log(1 - s))

    known = [bce(2.0, 1), bce(-1.0, 0), bce(-0.5, 0)]  # the unknown (-1) entries are out of the mean
    assert au_loss(logits, labels).item() == pytest.approx(np.mean(known), rel=1e-6)
    ids = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0], [0.2, 0.1, -1.0, 2.5, -0.3]])
    subject = torch.tensor([0, 3])
    one_hot = np.eye(5)[[0, 3]]
    assert id_loss(ids, subject, "bce").item() == pytest.approx(bce(ids.numpy(), one_hot).mean(), rel=1e-6)
    log_softmax = ids.numpy() - np.log(np.exp(ids.numpy()).sum(1, keepdims=True))
    assert id_loss(ids, subject, "ce").item() == pytest.approx(-log_softmax[[0, 1], [0, 3]].mean(), rel=1e-6)


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
    m = ViTClassifier("vit_tiny_patch16_224", 12, 41, 2.0, 1, img_size=32)
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
    from pipeline.synth.synthesize import au_root

    _, out = tiny_world
    base = tmp_path_factory.mktemp("finetune")
    params = load_params(PARAMS, {**TINY, **TINY_STAGES, "synth.out_dir": str(out),
                                                "au.bp4d.root": str(au_root(out, "bp4d")), "finetune.epochs": 3,
                                                "finetune.init": str(base / "mae.pth")})
    checkpoint.save_atomic({"model": build_mae(params.model, params.pretrain).state_dict()}, base / "mae.pth")
    prepare(params, "bp4d", base / "bp4d")
    return params, base / "bp4d"


@pytest.mark.slow
def test_au_detector_overfits_one_batch_of_crops(tiny_fold):
    """The detector, its loss and its optimiser can fit 16 real crops: train F1 >= 0.9."""
    from sklearn.metrics import f1_score

    from pipeline.au.data import Crops
    from pipeline.training.transforms import eval_transform

    params, crops_dir = tiny_fold
    index = pd.read_parquet(crops_dir / "index.parquet")
    index = index[(index[[f"au{a}" for a in AUS["bp4d"]]] == 1).any(axis=1)].head(16)
    batch = Crops(crops_dir, index, "bp4d", eval_transform(params.model.img_size))
    x, y = torch.stack([batch[i][0] for i in range(len(batch))]), batch.labels
    torch.manual_seed(0)
    model = ViTClassifier(params.model.name, 12, 41, 0.0, img_size=params.model.img_size, drop_path=0.0)
    opt = adamw(model, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999))
    for _ in range(150):
        loss = au_loss(model(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = (torch.sigmoid(model(x)[0]) > 0.5).int()
    assert f1_score(y.int().numpy().ravel(), pred.numpy().ravel()) >= 0.9, loss.item()


def _comparable(result: dict, forced: bool) -> tuple:
    drop = {"images_per_s", "val_f1_best_threshold"} if forced else {"images_per_s"}
    history = [{k: v for k, v in row.items() if k not in drop} for row in result["history"]]
    selection = {k: v for k, v in result["selection"].items() if not (forced and k == "score")}
    return history, selection, result["test_probs"].tolist()


def _assert_selection_is_the_argmax(result: dict) -> None:
    """The selected epoch is the first best of the history's selection score; its threshold is that epoch's."""
    scores = [row["val_f1_best_threshold"] for row in result["history"]]
    epoch = int(np.argmax(scores)) + 1
    assert result["selection"]["epoch"] == epoch
    assert result["selection"]["threshold"] == result["history"][epoch - 1]["val_threshold"]
    assert result["selection"]["score"] == max(scores)


@pytest.mark.slow
@pytest.mark.parametrize("best", ["natural", "latest", "earliest"])
def test_killed_finetune_resumes_to_the_uninterrupted_result(tiny_fold, tmp_path, caplog, monkeypatch, best):
    """``latest``/``earliest`` force the selection score to rise/fall every epoch, so the resume file
    is written with the best weights being the current ones (not stored) or an earlier epoch's (stored)."""
    import itertools

    import pipeline.au.train as train_module

    if best != "natural":
        calls, real = itertools.count(1), train_module.best_threshold

        def forced(labels, probs):
            threshold, _ = real(labels, probs)
            k = next(calls)  # counts across all runs of this test: later calls always score higher (lower)
            return threshold, (k if best == "latest" else -k) / 100

        monkeypatch.setattr(train_module, "best_threshold", forced)
    params, crops = tiny_fold
    run = Run("bp4d", 1, "iat")
    caplog.set_level(logging.INFO)
    whole = finetune(params, run, crops)
    _assert_selection_is_the_argmax(whole)
    assert finetune(params, run, crops, resume=tmp_path / "resume.pth", stop_after=2) is None
    saved = checkpoint.read(tmp_path / "resume.pth")
    assert saved["epoch"] == 1 and [r["epoch"] for r in saved["history"]] == [1, 2]
    if best == "latest":
        assert saved["best"]["epoch"] == 2 and saved["best"]["state"] is None
    if best == "earliest":
        assert saved["best"]["epoch"] == 1 and saved["best"]["state"] is not None
    resumed = finetune(params, run, crops, resume=tmp_path / "resume.pth")
    assert "resuming from" in caplog.text
    _assert_selection_is_the_argmax(resumed)
    assert _comparable(resumed, best != "natural") == _comparable(whole, best != "natural")
    # forced: the epoch the forced scores make best; natural: the best of the *resumed* run's own history
    natural = int(np.argmax([row["val_f1_best_threshold"] for row in resumed["history"]])) + 1
    assert whole["selection"]["epoch"] == {"natural": natural, "latest": 3, "earliest": 1}[best]
    a, b = whole["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_file_of_other_settings_is_not_used(tiny_fold, tmp_path, caplog):
    params, crops = tiny_fold
    run = Run("bp4d", 1, "iat")
    finetune(params, run, crops, resume=tmp_path / "resume.pth", stop_after=1)
    other = replace(params, finetune=replace(params.finetune, blr=params.finetune.blr * 2))
    caplog.set_level(logging.INFO)
    result = finetune(other, run, crops, resume=tmp_path / "resume.pth")
    assert "other settings" in caplog.text and "resuming from" not in caplog.text
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]

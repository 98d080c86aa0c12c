"""FER: the readers on the synthetic native layouts, label mappings, prepare_fer, metrics, finetuning."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pipeline.config import InputError, MissingInput, load_params
from pipeline.fer import classes as C
from pipeline.fer.metrics import scores
from pipeline.fer.readers import read_affectnet, read_labels_csv, read_rafdb
from pipeline.synth import fer_datasets

from .conftest import PARAMS, TINY


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(params, truth) of a small RAF-DB and AffectNet written in their native layouts."""
    out = tmp_path_factory.mktemp("fer") / "raw"
    params = load_params(PARAMS, {**TINY, "synth.out_dir": str(out),
                                                "synth.fer": {"rafdb": {"images": 100}, "affectnet": {"images": 100}},
                                                "fer.rafdb.root": str(fer_datasets.fer_root(out, "rafdb")),
                                                "fer.affectnet.root": str(fer_datasets.fer_root(out, "affectnet")),
                                                "fer.crop_size": 64, "fer.workers": 1})
    truth = pd.DataFrame([row for name in ("rafdb", "affectnet") for row in fer_datasets.write_dataset(params.synth, name)])
    return params, truth


def _root(params, name):
    return fer_datasets.fer_root(params.synth.out_dir, name)


def test_class_tables_round_trip():
    assert [C.RAFDB[label - 1] for label in range(1, 8)] == ["surprise", "fear", "disgust", "happiness", "sadness",
                                                             "anger", "neutral"]
    assert [C.AFFECTNET[code] for code in range(8)] == ["neutral", "happiness", "sadness", "surprise", "fear", "disgust",
                                                        "anger", "contempt"]
    assert C.classes("affectnet", 7) == C.AFFECTNET[:7] and C.classes("rafdb") == C.RAFDB
    assert sum(C.RAFDB_TRAIN_COUNTS) == 12271 and sum(C.RAFDB_TEST_COUNTS) == 3068
    assert sum(C.AFFECTNET_TRAIN_COUNTS) == 287651
    assert [C.canonical(n) for n in ("Happy", "Sad", "angry", "Neutral ")] == ["happiness", "sadness", "anger", "neutral"]


def test_rafdb_reader_counts_labels_and_split_follow_the_world(world):
    params, truth = world
    rows = read_rafdb(_root(params, "rafdb"))
    want = truth[truth.dataset == "rafdb"]
    assert len(rows) == len(want) and (rows.reason == "").all()
    by_name = dict(zip(want.image, zip(want.code, want.split)))
    for image, label, split in zip(rows.image, rows.label, rows.split):
        name = image.split("/")[-1].replace("_aligned", "")
        assert by_name[name] == (label + 1, split)  # 1-based file labels, split by name prefix
        assert (_root(params, "rafdb") / image).is_file()
    counts = want.groupby("split").size()
    assert counts["train"] / counts.sum() == pytest.approx(12271 / 15339, abs=0.02)
    assert want[want.split == "train"].code.value_counts().idxmax() == 4  # happiness is RAF-DB's largest class


def test_rafdb_original_images_come_with_their_boxes(world):
    params, _ = world
    rows = read_rafdb(_root(params, "rafdb"), images="original")
    assert rows.image.str.startswith("Image/original/").all() and rows[["x", "y", "w", "h"]].notna().all().all()
    assert (rows.w > 10).all() and (rows.h > 10).all()


def test_rafdb_label_file_spellings_formats_and_mistakes(world, tmp_path):
    params, _ = world
    root = tmp_path / "basic"
    shutil.copytree(_root(params, "rafdb") / "EmoLabel", root / "EmoLabel")
    typo = root / "EmoLabel" / "list_patition_label.txt"
    typo.rename(root / "EmoLabel" / "list_partition_label.txt")  # the README's spelling works too
    assert len(read_rafdb(root)) == len(read_rafdb(_root(params, "rafdb")))
    (root / "EmoLabel" / "list_partition_label.txt").write_text("train_00001.jpg train 5\ntest_0001.jpg test 7\n")
    assert read_rafdb(root).label.tolist() == [4, 6]  # a 3-column variant some scripts wrote
    (root / "EmoLabel" / "list_partition_label.txt").write_text("train_00001.jpg 5\ntrain_00002.jpg 8\n")
    with pytest.raises(InputError, match=r"list_partition_label.txt:2: label '8' is not one of 1-7"):
        read_rafdb(root)
    with pytest.raises(MissingInput, match="list_patition_label.txt"):
        read_rafdb(tmp_path / "empty")


def test_affectnet_reader_codes_headers_and_left_out_rows(world):
    params, truth = world
    root = _root(params, "affectnet")
    assert not (root / "Manually_Annotated_file_lists/validation.csv").read_text().startswith("subDirectory")  # no header
    rows = read_affectnet(root, 8)
    want = truth[truth.dataset == "affectnet"]
    assert len(rows) == len(want)
    merged = rows.assign(image=rows.image.str.removeprefix("Manually_Annotated_Images/")).merge(want, on="image")
    usable = merged[merged.reason == ""]
    assert (usable.label == usable.code).all()  # the official codes are the class indices
    assert set(merged[merged.code >= 8].reason.str.extract(r"\((.*)\)")[0]) == {"none", "uncertain", "no-face"}
    assert merged[merged.flaw.str.contains("null_fields")].reason.tolist() == ["NULL face box in the list"]
    assert (merged.split_x == merged.split_y).all()  # training.csv is train, validation.csv the test split
    seven = read_affectnet(root, 7)
    contempt = seven.assign(image=seven.image.str.removeprefix("Manually_Annotated_Images/")).merge(want, on="image")
    assert (contempt[contempt.code == 7].reason.str.contains("contempt")).all() and (seven.label < 7).all()


def test_class_folder_copies_map_codes_and_names(world, tmp_path):
    """The authors' copy names folders by code (0-7); Kaggle copies by name, in any order."""
    params, _ = world
    official = read_affectnet(_root(params, "affectnet"), 8)
    usable = official[official.reason == ""]
    names = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Anger", 7: "Contempt"}
    for style in ("codes", "names"):
        root = tmp_path / style
        for image, label, split in zip(usable.image, usable.label, usable.split):
            folder = root / ("train" if split == "train" else "val") / (str(label) if style == "codes" else names[label])
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(_root(params, "affectnet") / image, folder / image.split("/")[-1])
        rows = read_affectnet(root, 8)
        got = dict(zip(rows.image.str.split("/").str[-1], rows.label))
        assert got == dict(zip(usable.image.str.split("/").str[-1], usable.label)), style
    (tmp_path / "names" / "train" / "Bored").mkdir()
    with pytest.raises(InputError, match="'Bored' is not a affectnet class"):
        read_affectnet(tmp_path / "names", 8)


def test_labels_csv_takes_names_or_indices_and_refuses_others(tmp_path):
    (tmp_path / "labels.csv").write_text("image,label,split\na.jpg,happy,train\nb.jpg,0,test\nc.jpg,Sadness,train\n")
    rows = read_labels_csv(tmp_path, ("neutral", "happiness", "sadness"))
    assert rows.label.tolist() == [1, 0, 2] and rows.split.tolist() == ["train", "test", "train"]
    (tmp_path / "labels.csv").write_text("image,label,split\na.jpg,bored,train\n")
    with pytest.raises(InputError, match="bored"):
        read_labels_csv(tmp_path, ("neutral", "happiness"))
    (tmp_path / "labels.csv").write_text("image,label\na.jpg,happy\n")
    with pytest.raises(InputError, match="split"):
        read_labels_csv(tmp_path, ("neutral", "happiness"))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_scores_match_scikit_learn():
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
    )

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    labels[labels == 4] = 3  # class 4 absent from the labels, as a rare class can be from a small test split
    probs = rng.dirichlet(np.ones(5), 300)
    probs[np.arange(0, 300, 3), labels[::3]] += 1  # better than chance
    s = scores(labels, probs)
    pred = probs.argmax(1)
    assert s["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert s["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))  # the mean recall
    np.testing.assert_allclose(s["f1_per_class"], f1_score(labels, pred, labels=range(5), average=None, zero_division=0))
    np.testing.assert_array_equal(s["confusion"], confusion_matrix(labels, pred, labels=range(5)))
    assert s["majority_accuracy"] == pytest.approx(np.bincount(labels).max() / len(labels))
    assert np.isnan(s["recall_per_class"][4])


def test_prepare_lists_every_left_out_image_and_crops_the_rest(world, tmp_path):
    from pipeline.fer.prepare_fer import prepare

    params, truth = world
    index = prepare(params, "affectnet", tmp_path / "affectnet")
    skipped = pd.read_csv(tmp_path / "affectnet" / "skipped.csv")
    want = truth[truth.dataset == "affectnet"]
    assert len(index) + len(skipped) == len(want)  # nothing dropped silently
    flawed = want.set_index("image").flaw
    reasons = dict(zip(skipped.image.str.removeprefix("Manually_Annotated_Images/"), skipped.reason))
    assert "truncated" in reasons[flawed[flawed == "truncated"].index[0]]
    assert {i for i in flawed.index if "null_fields" in flawed[i]} <= set(reasons)
    assert json.loads((tmp_path / "affectnet" / "classes.json").read_text()) == list(C.AFFECTNET)
    from pipeline.fer.train import dataset
    from pipeline.training.transforms import eval_transform

    crops = dataset(tmp_path / "affectnet", index, eval_transform(64))
    x, y, _ = crops[0]
    assert x.shape == (3, 64, 64) and int(y) == index.label[0]
    gray = index[index.image.str.removeprefix("Manually_Annotated_Images/").isin(flawed[flawed == "grayscale"].index)]
    assert len(gray) and crops[int(gray.index[0])][0].shape[0] == 3  # grayscale files become three channels


class SmallCNN(nn.Module):
    """Four conv blocks and a linear head over the classes; ``(logits, None)`` like the ViT classifier."""

    encoder_name = "small-cnn"

    def __init__(self, n_classes: int):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.trunk = nn.Sequential(block(3, 32), block(32, 64), block(64, 96), block(96, 128), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten())
        self.head = nn.Linear(128, n_classes)

    def forward(self, x):
        return self.head(self.trunk(x)), None


MARGIN = 0.15  # accuracy points over the majority class that the working pipeline clears and a broken one does not


def _finetune_small_cnn(tmp_path_factory, monkeypatch, shuffle_labels: bool = False) -> dict:
    """prepare_fer on a 600-image RAF-DB, then finetune_fer's own loop (loaders, augmentation, loss, schedule,
    validation hold-out) with a small CNN in the ViT's place: the ViT needs far more steps than a test may take."""
    from pipeline.fer import prepare_fer as fer_prepare
    from pipeline.fer import train
    from pipeline.models import checkpoint

    out = tmp_path_factory.mktemp("fer-learn") / "raw"
    params = load_params(PARAMS, {
        **TINY, "synth.out_dir": str(out), "synth.fer": {"rafdb": {"images": 600}, "affectnet": {"images": 48}},
        "fer.rafdb": {"root": str(fer_datasets.fer_root(out, "rafdb")), "images": "aligned", "epochs": 12,
                      "warmup_epochs": 1, "batch_size": 32, "blr": 1.0e-2},
        "fer.crop_size": 64, "model.img_size": 64, "fer.min_crop_scale": 1.0, "fer.rand_augment": "",
        "fer.erase_prob": 0.0, "fer.layer_decay": 1.0, "fer.workers": 0, "fer.init": "unused.pth"})
    fer_datasets.write_dataset(params.synth, "rafdb")
    if shuffle_labels:  # the bug to catch: labels no longer belong to their images
        read = fer_prepare.read
        monkeypatch.setattr(fer_prepare, "read", lambda *a: (lambda t: t.assign(label=np.random.default_rng(0).permutation(
            t.label.to_numpy())))(read(*a)))
    data = out.parent / "rafdb"
    fer_prepare.prepare(params, "rafdb", data)
    monkeypatch.setattr(train, "build_model", lambda p, n: SmallCNN(n))
    monkeypatch.setattr(train, "load_backbone", lambda model, init: checkpoint.LoadReport())
    result = train.finetune(params, "rafdb", data)
    truth = read_rafdb(fer_datasets.fer_root(out, "rafdb")).set_index("image").label  # the true labels
    return scores(truth.loc[result["test_index"].image].to_numpy(), result["test_probs"])


@pytest.mark.slow
def test_expression_finetuning_beats_the_majority_class(tmp_path_factory, monkeypatch):
    s = _finetune_small_cnn(tmp_path_factory, monkeypatch)
    print("working pipeline:", {k: s[k] for k in ("accuracy", "majority_accuracy")})
    assert s["accuracy"] >= s["majority_accuracy"] + MARGIN, s


@pytest.mark.slow
def test_mutation_shuffled_labels(tmp_path_factory, monkeypatch, request):
    if not request.config.getoption("--mutations"):
        pytest.skip("a mutation check (~1.5 minutes): run with --mutations")
    s = _finetune_small_cnn(tmp_path_factory, monkeypatch, shuffle_labels=True)
    print("shuffled labels:", {k: s[k] for k in ("accuracy", "majority_accuracy")})
    assert s["accuracy"] < s["majority_accuracy"] + MARGIN, s


@pytest.mark.slow
def test_killed_expression_finetuning_resumes_to_the_uninterrupted_result(world, tmp_path, caplog):
    """finetune_fer shares the AU folds' loop: a run stopped after epoch 1 and resumed ends with the same
    weights, history and selection as an uninterrupted one (the ViT, balanced sampling, 3 epochs)."""
    import logging

    from pipeline.fer import train
    from pipeline.fer.prepare_fer import prepare
    from pipeline.models.mae import MaskedAutoencoder

    params, _ = world
    torch.manual_seed(0)
    encoder = MaskedAutoencoder("vit_tiny_patch16_224", 64, 1, 2, True, 0.75, 64).encoder_state_dict()
    torch.save({"model": encoder}, tmp_path / "encoder.pth")
    from dataclasses import replace

    fer = replace(params.fer, init=str(tmp_path / "encoder.pth"), balanced=True, workers=0,
                  rafdb=replace(params.fer.rafdb, epochs=3, warmup_epochs=1, batch_size=8))
    params = replace(params, fer=fer, model=replace(params.model, img_size=64))
    data = tmp_path / "rafdb"
    prepare(params, "rafdb", data)
    whole = train.finetune(params, "rafdb", data)
    assert train.finetune(params, "rafdb", data, resume=tmp_path / "resume.pth", stop_after=1) is None
    caplog.set_level(logging.INFO)
    resumed = train.finetune(params, "rafdb", data, resume=tmp_path / "resume.pth")
    assert "resuming from" in caplog.text
    drop = lambda h: [{k: v for k, v in row.items() if k != "images_per_s"} for row in h]  # noqa: E731
    assert drop(resumed["history"]) == drop(whole["history"]) and resumed["selection"] == whole["selection"]
    a, b = whole["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(whole["test_probs"], resumed["test_probs"])

"""What ``prepare`` writes, checked against the synthetic world's ground truth, per dataset.

The world records every rendered frame's AU intensities, unknown codes and face box in
``truth/au_frames.parquet`` and its quirks in ``truth/au_quirks.csv``; the index, the skipped list
and the crop shards must follow from them by the documented rules alone.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.au.data import Crops
from pipeline.au.folds import AUS, subjects
from pipeline.au.labels import UNKNOWN
from pipeline.training.transforms import eval_transform

from .conftest import PARAMS, TINY, TINY_STAGES

DATASETS = ("bp4d", "bp4dplus", "disfa")


@pytest.fixture(scope="module", params=["negative", "mask"])
def prepared(request, tiny_world, tmp_path_factory):
    """{dataset: (index, skipped, folder)} of the tiny world, prepared under one unknown policy."""
    from pipeline.au.prepare import prepare
    from pipeline.config import load_params
    from pipeline.synth.synthesize import au_root

    _, out = tiny_world
    base = tmp_path_factory.mktemp(f"prepared-{request.param}")
    roots = {f"au.{d}.root": str(au_root(out, d)) for d in DATASETS}
    params = load_params(PARAMS, {**TINY, **TINY_STAGES, **roots, "synth.out_dir": str(out),
                                                "au.unknown_policy": request.param})
    done = {}
    for d in DATASETS:
        index = prepare(params, d, base / d)
        done[d] = (index, pd.read_csv(base / d / "skipped.csv"), base / d)
    return request.param, params, done


@pytest.fixture(scope="module")
def truth(tiny_world):
    _, out = tiny_world
    return (pd.read_parquet(out / "truth" / "au_frames.parquet"),
            pd.read_csv(out / "truth" / "au_quirks.csv", dtype=str))


def _expected(row: pd.Series, au: int, dataset: str, policy: str) -> int:
    """The label the documented rules give one truth row for one AU."""
    level = float(row[f"au{au}"]) if f"au{au}" in row.index else 0.0  # AUs the world does not render: 0
    if dataset == "disfa":
        return int(np.rint(level) >= 2)  # DISFA files hold integer intensities; positive iff >= 2
    if str(au) in row.unknown_aus.split():
        return 0 if policy == "negative" else UNKNOWN
    return int(np.rint(level) >= 1)  # BP4D/BP4D+ occurrence code 1


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_au_label_follows_the_truth(prepared, truth, dataset):
    policy, _, done = prepared
    index = done[dataset][0]
    frames = truth[0][truth[0].dataset == dataset]
    if dataset == "disfa":  # the benchmark reads the right camera; label frame f is video frame f - 1
        frames = frames[frames.sequence == "right"]
        assert all(img.endswith(f"#{f - 1}") for img, f in zip(index.image, index.frame))
    joined = index.merge(frames, on=["subject", "sequence", "frame"], suffixes=("", "_truth"), validate="one_to_one")
    assert len(joined) == len(index) > 0  # every indexed frame is a rendered one
    checked = 0
    for _, row in joined.iterrows():
        truth_row = row[[c for c in row.index if c.endswith("_truth")]].rename(lambda c: c[:-len("_truth")])
        truth_row["unknown_aus"] = row["unknown_aus"]
        for au in AUS[dataset]:
            assert row[f"au{au}"] == _expected(truth_row, au, dataset, policy), (dataset, row.subject, row.frame, au)
            checked += 1
    assert checked == len(index) * len(AUS[dataset])
    if dataset != "disfa":
        n_unknown = (index[[f"au{a}" for a in AUS[dataset]]] == UNKNOWN).to_numpy().sum()
        assert (n_unknown > 0) == (policy == "mask")


@pytest.mark.parametrize("dataset", DATASETS)
def test_subject_index_is_the_position_in_the_whole_vocabulary(prepared, dataset):
    index = prepared[2][dataset][0]
    vocab = subjects(dataset)
    assert (index.subject_index == [vocab.index(s) for s in index.subject]).all()


@pytest.mark.parametrize("dataset", DATASETS)
def test_skipped_frames_are_exactly_the_known_quirks(prepared, truth, tiny_world, dataset):
    p, _ = tiny_world
    _, skipped, _ = prepared[2][dataset]
    quirks = truth[1][truth[1].dataset == dataset]
    frames = truth[0][truth[0].dataset == dataset]
    expected = set()
    for q in quirks.itertuples():
        if q.quirk == "label_rows_without_frames":  # BP4D+ F041-like: 5 label rows past the last JPEG
            last = frames[(frames.subject == q.subject) & (frames.sequence == q.sequence)].frame.max()
            expected |= {(q.subject, q.sequence, int(last) + k) for k in range(1, 6)}
        elif q.quirk == "video_one_frame_short":  # DISFA SN010-like: the last label frame has no image
            expected.add((q.subject, q.sequence, p.synth.au.disfa.frames))
    got = {(s, q, int(f)) for s, q, f in zip(skipped.subject, skipped.sequence, skipped.frame)}
    assert got == expected
    assert (dataset == "bp4d") == (not expected)  # the tiny world carries the BP4D+ and DISFA quirks


@pytest.mark.parametrize("dataset", DATASETS)
def test_crops_serve_the_tar_members_with_labels_in_au_order(prepared, dataset):
    _, _, done = prepared
    index, _, folder = done[dataset]
    cols = [f"au{a}" for a in AUS[dataset]]
    crops = Crops(folder, index, dataset, eval_transform(32))
    members = {}
    for shard in sorted(index.shard.unique()):
        with tarfile.open(folder / "shards" / shard) as tar:
            for m in tar:
                members[m.name] = tar.extractfile(m).read()
    assert len(members) == 2 * len(index)  # <key>.jpg + <key>.json for every row, nothing else
    for i, row in index.iterrows():
        assert crops._read(i) == members[f"{row.key}.jpg"]
        meta = json.loads(members[f"{row.key}.json"])
        assert [meta[c] for c in cols] == row[cols].tolist() == crops.labels[i].int().tolist()
        assert meta["subject_index"] == row.subject_index == int(crops.subjects[i])


def test_disfa_face_boxes_are_the_rendered_faces(tiny_world, truth):
    from pipeline.au.crops import read_boxes
    from pipeline.synth.synthesize import au_root

    _, out = tiny_world
    boxes = read_boxes(au_root(out, "disfa"))
    frames = truth[0][truth[0].dataset == "disfa"]
    joined = boxes.merge(frames, on=["subject", "sequence", "frame"], suffixes=("", "_truth"), validate="one_to_one")
    assert len(joined) == len(boxes) == len(frames) > 0
    for c in "xywh":
        np.testing.assert_allclose(joined[c], joined[f"{c}_truth"], atol=0.06)


def _frames_of(root, image: str, videos: dict):
    """BGR pixels of one frame reference, read here independently of prepare's reader."""
    import cv2

    if ".zip:" in image:  # BP4D+: one archive per subject
        import zipfile

        rel, member = image.split(":", 1)
        with zipfile.ZipFile(root / rel) as zf:
            return cv2.imdecode(np.frombuffer(zf.read(member), np.uint8), cv2.IMREAD_COLOR)
    if "#" not in image:
        return cv2.imread(str(root / image), cv2.IMREAD_COLOR)
    rel, i = image.rsplit("#", 1)
    if rel not in videos:
        cap, videos[rel] = cv2.VideoCapture(str(root / rel)), []
        ok, frame = cap.read()
        while ok:
            videos[rel].append(frame)
            ok, frame = cap.read()
    return videos[rel][int(i)]


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_crop_is_the_face_of_its_own_labelled_frame(prepared, dataset):
    """The JPEG stored under a frame's key is that frame's face box (face_boxes.csv) cropped and encoded:
    byte for byte, so a writer that hands a key its neighbour's crop, or a reader of the wrong frame, fails."""
    import cv2

    from pipeline.au.prepare import JPEG_QUALITY
    from pipeline.faces.crop import crop_face

    _, params, done = prepared
    index, _, folder = done[dataset]
    boxes = pd.read_csv(folder / "face_boxes.csv").set_index(["subject", "sequence", "frame"])
    root = Path(getattr(params.au, dataset).root)
    crops, videos = Crops(folder, index, dataset, eval_transform(32)), {}
    for i, row in index.iterrows():
        box = tuple(boxes.loc[(row.subject, row.sequence, row.frame), ["x", "y", "w", "h"]])
        crop = crop_face(_frames_of(root, row.image, videos), box, params.au.box_margin, params.au.crop_size)
        assert crops._read(i) == cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes(), row.key


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_rendered_frame_is_indexed_or_listed_as_skipped(prepared, truth, dataset):
    """Nothing is dropped silently: each labelled frame the world rendered (every one: au.frame_step 1)
    is in the index or in skipped.csv with its reason."""
    _, params, done = prepared
    index, skipped, _ = done[dataset]
    assert params.au.frame_step == 1
    frames = truth[0][truth[0].dataset == dataset]
    if dataset == "disfa":
        frames = frames[frames.sequence == "right"]
    keys = set(zip(frames.subject, frames.sequence, frames.frame.astype(int)))
    listed = set(zip(index.subject, index.sequence, index.frame.astype(int))) | \
        set(zip(skipped.subject, skipped.sequence, skipped.frame.astype(int)))
    assert keys and not keys - listed, sorted(keys - listed)[:5]

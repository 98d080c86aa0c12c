"""`fmae predict` on real photographs and a video made from one: rows, timestamps, the model's own
output, ensembles, checkpoints it must refuse, and bad inputs that are listed while the run goes on."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.cli import main
from pipeline.faces.crop import crop_face
from pipeline.faces.detect import FaceDetector
from pipeline.models import checkpoint
from pipeline.models.au_checkpoint import inference_record, load
from pipeline.models.mae import MaskedAutoencoder
from pipeline.models.vit_classifier import ViTClassifier
from pipeline.predict import device_crops
from pipeline.predict.engine import Ensemble, predict
from pipeline.predict.run import Options, run
from pipeline.training.transforms import eval_transform

from .real_faces import FPS, PORTRAIT, VIDEO_FRAMES, decoded_frames, write_video

AUS = ["AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"]


def fold_model(seed: int) -> ViTClassifier:
    """A small AU detector with an identity head (as IAT folds have), heads spread so the AUs differ."""
    torch.manual_seed(seed)
    model = ViTClassifier("vit_tiny_patch16_224", 12, 41, 2.0, img_size=64, drop_path=0.0)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    return model.eval()


def save_fold(path, seed: int, threshold: float = 0.45, record: bool = True):
    model = fold_model(seed)
    ckpt = {"model": model.state_dict(), "epoch": 0}
    if record:
        ckpt["inference"] = inference_record("vit_tiny_patch16_224", 64, "bp4d", threshold, 0.05, 224, variant="iat", fold=1)
    checkpoint.save_atomic(ckpt, path)
    return path


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    folder = base / "photos" / "day1"
    folder.mkdir(parents=True)
    Image.open(PORTRAIT).save(folder / "hopper.png")
    return {"base": base, "photos": base / "photos", "video": write_video(base / "clip.mp4"),
            "ckpt": save_fold(base / "fold1.pth", 1), "ckpt2": save_fold(base / "fold2.pth", 2, threshold=0.55)}


def direct_probs(model: ViTClassifier, bgr: np.ndarray, box) -> np.ndarray:
    """The model applied by hand to one face: the training crop, the evaluation transform, a sigmoid."""
    crop = crop_face(bgr, box, 0.05, 224)
    x = eval_transform(64)(Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)))[None]
    with torch.no_grad():
        return torch.sigmoid(model(x)[0])[0].numpy()


def test_rows_timestamps_and_probabilities_match_the_model_applied_directly(material, tmp_path):
    out = tmp_path / "results.csv"
    assert main(["predict", str(PORTRAIT), str(material["video"]), "--checkpoint", str(material["ckpt"]),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == ["input", "frame", "time_s", "face", "status", "reason"]
    assert AUS == [c for c in table.columns if c.startswith("AU") and not c.endswith("_on")]
    photo, video = table[table.input == str(PORTRAIT)], table[table.input == str(material["video"])]
    assert len(photo) == 1 and photo.status.iloc[0] == "ok" and np.isnan(photo.time_s.iloc[0])
    assert list(video.frame) == list(range(VIDEO_FRAMES))  # one row per frame: one face, or "no face"
    assert np.allclose(video.time_s, video.frame / FPS)
    assert (video.status.iloc[:-1] == "ok").all() and video.status.iloc[-1] == "no face"

    model, detector = fold_model(1), FaceDetector(0.3)
    frames = decoded_frames(material["video"])
    for row in video.iloc[:-1].itertuples():
        face = detector(frames[row.frame])[0]
        assert np.allclose([row.x, row.y, row.w, row.h], face.box) and row.score == pytest.approx(face.score)
        assert np.allclose([getattr(row, au) for au in AUS], direct_probs(model, frames[row.frame], face.box), atol=1e-5)
    probs = table.loc[table.status == "ok", AUS].to_numpy()
    assert probs.std(axis=0).max() > 0.01  # the faces get different outputs: not a constant
    on = table.loc[table.status == "ok", [f"{a}_on" for a in AUS]].to_numpy()
    assert np.array_equal(on, (probs >= 0.45).astype(int))  # occurrence at the checkpoint's threshold
    record = json.loads((tmp_path / "results.csv.provenance.json").read_text())
    assert record["faces"]["detector"] == "retinaface" and record["checkpoints"][0]["threshold"] == 0.45
    assert record["timings"]["frames"] == VIDEO_FRAMES + 1 and record["timings"]["faces"] == VIDEO_FRAMES  # photo + clip


def test_video_stride_folders_parquet_and_an_ensemble(material, tmp_path):
    out = tmp_path / "results.parquet"
    table = run([str(material["photos"]), str(material["video"])], [str(material["ckpt"]), str(material["ckpt2"])],
                Options(str(out), every=3, progress=False))
    written = pd.read_parquet(out)
    assert len(written) == len(table)
    assert written.input.iloc[0].endswith("day1/hopper.png")  # the folder was searched recursively
    video = written[written.input == str(material["video"])]
    assert list(video.frame) == [0, 3, 6, 9] and np.allclose(video.time_s, video.frame / FPS)
    one = run([str(material["video"])], [str(material["ckpt"])], Options(str(tmp_path / "a.csv"), every=3, progress=False))
    two = run([str(material["video"])], [str(material["ckpt2"])], Options(str(tmp_path / "b.csv"), every=3, progress=False))
    assert np.allclose(video[AUS].to_numpy(), (one[AUS].to_numpy() + two[AUS].to_numpy()) / 2, atol=1e-6)
    assert json.loads((tmp_path / "results.parquet.provenance.json").read_text())["threshold"] == pytest.approx(0.5)


def test_bad_inputs_are_listed_with_reasons_and_the_good_rows_written(material, tmp_path):
    bad = tmp_path / "bad"
    (bad / "nothing").mkdir(parents=True)
    (bad / "notes").mkdir()
    (bad / "notes" / "readme.txt").write_text("no pictures here")
    (bad / "zero.jpg").write_bytes(b"")
    data = PORTRAIT.read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (bad / "text.mp4").write_text("this is not a video\n" * 50)
    video = material["video"].read_bytes()
    (bad / "cut.mp4").write_bytes(video[: len(video) // 3])  # the MP4 index (moov) is at the end: lost
    avi = write_video(tmp_path / "clip.avi", codec="MJPG").read_bytes()
    (bad / "cut.avi").write_bytes(avi[: len(avi) // 2])  # frames before the cut decode
    inputs = [bad / "nothing", bad / "notes", bad / "zero.jpg", bad / "truncated.jpg", bad / "text.mp4",
              bad / "cut.mp4", bad / "missing.png", bad / "cut.avi", PORTRAIT]
    out = tmp_path / "results.csv"
    assert main(["predict", *map(str, inputs), "--checkpoint", str(material["ckpt"]), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    bad_rows = table[table.status == "unreadable"]
    reasons = dict(zip(bad_rows.input, bad_rows.reason))
    assert reasons[str(bad / "nothing")] == reasons[str(bad / "notes")] == "no images or videos in this folder"
    assert reasons[str(bad / "zero.jpg")] == "empty file (0 bytes)"
    assert "truncated" in reasons[str(bad / "truncated.jpg")]
    assert reasons[str(bad / "text.mp4")].startswith("cannot open as a video")
    assert reasons[str(bad / "cut.mp4")].startswith("cannot open as a video")
    assert reasons[str(bad / "missing.png")] == "no such file or folder"
    cut = table[table.input == str(bad / "cut.avi")]
    assert (cut.status.iloc[:-1] == "ok").all() and len(cut) > 3  # the frames before the cut are kept
    assert cut.reason.iloc[-1].startswith(f"decoding stopped at frame {int(cut.frame.iloc[-1])} of the {VIDEO_FRAMES}")
    assert list(dict.fromkeys(table.input)) == list(map(str, inputs))  # in input order, nothing dropped
    assert table.status.iloc[-1] == "ok" and len(bad_rows) == 8


def test_small_and_unsure_faces_are_listed_without_aus(material, tmp_path):
    table = run([str(PORTRAIT)], [str(material["ckpt"])], Options(str(tmp_path / "r.csv"), min_face=400, progress=False))
    assert table.status.tolist() == ["small face"] and table[AUS].isna().all(axis=None)
    table = run([str(PORTRAIT)], [str(material["ckpt"])], Options(str(tmp_path / "r.csv"), min_score=1.0, progress=False))
    assert table.status.tolist() == ["low score"] and table.score.iloc[0] > 0.5


def test_a_group_photo_gives_one_row_per_face_largest_first(material, tmp_path):
    canvas = np.full((700, 1000, 3), 90, np.uint8)
    hopper = cv2.imread(str(PORTRAIT))
    canvas[:600, :512] = hopper
    for scale, x in ((0.5, 560), (0.3, 840)):
        small = cv2.resize(hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas[100:100 + small.shape[0], x:x + small.shape[1]] = small
    cv2.imwrite(str(tmp_path / "group.png"), canvas)
    table = run([str(tmp_path / "group.png")], [str(material["ckpt"])], Options(str(tmp_path / "g.csv"), progress=False))
    assert table.face.tolist() == [0, 1, 2] and (table.status == "ok").all()
    assert table.w.is_monotonic_decreasing and table.x.tolist()[1:] == sorted(table.x.tolist()[1:])
    assert table[AUS].notna().all(axis=None)


@pytest.mark.parametrize("faces, warned", [({"detector": "YuNet (libfacedetection)", "package": "yuface 2023.5.1"}, True),
                                           ({"detector": "retinaface", "min_score": 0.5}, False),
                                           ({"boxes": "/data/BP4D/face_boxes.csv"}, True), (None, False)])
def test_predict_warns_when_the_training_crops_came_from_another_detector(material, tmp_path, caplog, faces, warned):
    ckpt = {"model": fold_model(1).state_dict(), "epoch": 0,
            "inference": inference_record("vit_tiny_patch16_224", 64, "bp4d", 0.5, 0.05, 224, faces=faces)}
    checkpoint.save_atomic(ckpt, tmp_path / "fold.pth")
    with caplog.at_level("WARNING"):
        run([str(PORTRAIT)], [str(tmp_path / "fold.pth")], Options(str(tmp_path / "r.csv"), progress=False))
    said = [r.getMessage() for r in caplog.records if "not from retinaface" in r.getMessage()]
    assert bool(said) == warned, said


def test_crops_cut_on_the_device_match_the_training_crops_path(material):
    """The GPU path (torch crops and resizes, used on CUDA) against the exact CPU path (OpenCV and PIL,
    the training crops' own), both run here on the CPU: the same rows, pixels a few grey levels apart,
    probabilities within 0.02."""
    frame = cv2.imread(str(PORTRAIT))
    box = FaceDetector(0.3)(frame)[0].box
    exact = crop_face(frame, box, 0.05, 224)
    on_device = device_crops.crop(device_crops.frame_tensor(frame, torch.device("cpu")), box, 0.05, 224)
    diff = np.abs(on_device.permute(1, 2, 0).numpy()[:, :, ::-1] - exact.astype(np.float32))
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16, (diff.mean(), np.percentile(diff, 99))

    ensemble = Ensemble([load(material["ckpt"])], torch.device("cpu"))
    cpu = predict([material["video"]], ensemble, progress=False)
    ensemble.on_device = True
    device = predict([material["video"]], ensemble, progress=False)
    assert cpu[["input", "frame", "face", "status", "x", "w"]].equals(device[["input", "frame", "face", "status", "x", "w"]])
    gap = np.nanmax(np.abs(cpu[AUS].to_numpy() - device[AUS].to_numpy()))
    assert 0 < gap < 0.02, gap


def test_annotated_output_and_timeline(material, tmp_path):
    run([str(PORTRAIT), str(material["video"])], [str(material["ckpt"])], Options(str(tmp_path / "r.csv"),
        annotate=str(tmp_path / "ann"), plot=str(tmp_path / "plots"), progress=False))
    image = cv2.imread(str(tmp_path / "ann" / "sample_data__grace_hopper.jpg"))
    assert image.shape == cv2.imread(str(PORTRAIT)).shape and not np.array_equal(image, cv2.imread(str(PORTRAIT)))
    assert len(decoded_frames(next((tmp_path / "ann").glob("*clip.mp4")))) == VIDEO_FRAMES
    png = next((tmp_path / "plots").glob("*clip.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_released_checkpoints_need_their_dataset_and_wrong_files_are_refused(material, tmp_path, capsys):
    released = save_fold(tmp_path / "released.pth", 1, record=False)
    with pytest.raises(checkpoint.CheckpointError, match="--dataset"):
        load(released)
    model = load(released, "bp4d")
    assert model.threshold == 0.5 and model.img_size == 64 and model.model.encoder_name == "vit_tiny_patch16_224"
    with pytest.raises(checkpoint.CheckpointError, match="12 outputs but disfa has 8 AUs"):
        load(released, "disfa")
    with pytest.raises(checkpoint.CheckpointError, match="trained on bp4d, not disfa"):
        load(material["ckpt"], "disfa")

    mae = tmp_path / "mae.pth"
    checkpoint.save_atomic({"model": MaskedAutoencoder("vit_tiny_patch16_224", img_size=64, decoder_dim=32, decoder_depth=1,
                                                       decoder_heads=2).state_dict()}, mae)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    for path, message in ((mae, "an MAE pretraining checkpoint"), (junk, "cannot read as a torch checkpoint"),
                          (tmp_path / "none.pth", "no such checkpoint file")):
        assert main(["predict", str(PORTRAIT), "--checkpoint", str(path), "--out", str(tmp_path / "r.csv")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert main(["predict", str(PORTRAIT), "--checkpoint", str(material["ckpt"]), "--out", str(tmp_path / "r.txt")]) == 2
    assert "--out" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["predict", str(PORTRAIT), "--checkpoint", str(material["ckpt"]), "--out", str(tmp_path / "afile" / "r.csv")]) == 2
    assert "cannot write there" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def save_expression_model(path, seed: int, classes=("neutral", "happiness", "sadness"), margin: float = 0.1):
    torch.manual_seed(seed)
    model = ViTClassifier("vit_tiny_patch16_224", len(classes), img_size=64, drop_path=0.0).eval()
    torch.nn.init.normal_(model.head.weight, std=0.3)
    record = {"format": "fmae-fer-classifier/1", "task": "fer", "model": "vit_tiny_patch16_224", "img_size": 64,
              "dataset": "rafdb", "classes": list(classes), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
              "box_margin": margin, "crop_size": 128}
    checkpoint.save_atomic({"model": model.state_dict(), "epoch": 0, "inference": record}, path)
    return model


def test_an_expression_checkpoint_adds_a_probability_per_class_beside_the_aus(material, tmp_path):
    """AU and FER checkpoints together: each cropped by its own record (margin, size), the FER columns
    are the classifier's softmax applied by hand, and ``expression`` is the most probable class."""
    model = save_expression_model(tmp_path / "fer.pth", 3)
    out = tmp_path / "both.csv"
    assert main(["predict", str(PORTRAIT), str(material["video"]), "--checkpoint", str(material["ckpt"]),
                 str(tmp_path / "fer.pth"), "--out", str(out), "--every", "4", "--annotate", str(tmp_path / "ann"),
                 "--plot", str(tmp_path / "plots")]) == 0
    table = pd.read_csv(out)
    fer = ["FER_neutral", "FER_happiness", "FER_sadness"]
    assert AUS == [c for c in table.columns if c.startswith("AU") and not c.endswith("_on")]
    assert [c for c in table.columns if c.startswith("FER_")] == fer and "expression" in table.columns
    ok = table[table.status == "ok"]
    assert np.allclose(ok[fer].sum(axis=1), 1.0, atol=1e-5)
    assert (ok.expression == ok[fer].idxmax(axis=1).str.removeprefix("FER_")).all()
    photo = ok[ok.input == str(PORTRAIT)].iloc[0]
    face = FaceDetector(0.3)(cv2.imread(str(PORTRAIT)))[0]
    crop = crop_face(cv2.imread(str(PORTRAIT)), face.box, 0.1, 128)  # the FER record's own crop
    x = eval_transform(64)(Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)))[None]
    with torch.no_grad():
        want = torch.softmax(model(x)[0], -1)[0].numpy()
    assert np.allclose(photo[fer].to_numpy(float), want, atol=1e-5)
    assert np.allclose(photo[AUS].to_numpy(float), direct_probs(fold_model(1), cv2.imread(str(PORTRAIT)), face.box), atol=1e-5)
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())  # the video's AU and expression timelines
    assert len(plots) == 2 and plots[1] == plots[0].replace(".png", "_expression.png")
    assert len(list((tmp_path / "ann").iterdir())) == 2  # the annotated photo and video
    record = json.loads((tmp_path / "both.csv.provenance.json").read_text())
    assert record["checkpoints"][1]["classes"] == ["neutral", "happiness", "sadness"]
    only = run([str(PORTRAIT)], [str(tmp_path / "fer.pth")], Options(str(tmp_path / "fer_only.csv"), progress=False))
    assert not [c for c in only.columns if c.startswith("AU")] and np.allclose(only[fer].iloc[0].to_numpy(float), want, atol=1e-5)
    save_expression_model(tmp_path / "fer4.pth", 4, classes=("neutral", "happiness", "sadness", "anger"))
    assert main(["predict", str(PORTRAIT), "--checkpoint", str(tmp_path / "fer.pth"), str(tmp_path / "fer4.pth"),
                 "--out", str(tmp_path / "x.csv")]) == 2  # an ensemble of different class lists is refused

"""The face-video source: the synthetic world's VoxCeleb2 layout, its reader, face tracks and clip windows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.clips.layout import list_clips, read_frames
from pipeline.clips.tracks import clip_windows, iou, spans, window_starts
from pipeline.config import InputError, MissingInput
from pipeline.synth import videos
from pipeline.synth.synthesize import video_root


def test_the_reader_finds_every_written_clip_and_frame(tiny_world):
    params, out = tiny_world
    spec = params.synth.video
    truth = pd.read_parquet(out / "truth" / "video_frames.parquet")
    listing = list_clips(video_root(out) / videos.SPLIT)
    assert listing.ignored == []
    assert len(listing.clips) == spec.identities * spec.videos * spec.clips > 0
    assert {c.key for c in listing.clips} == set(truth["identity"] + "/" + truth["video"] + "/" + truth["clip"])
    assert truth.identity.nunique() == spec.identities and len(truth) == len(listing.clips) * spec.frames
    for clip in listing.clips:
        frames = read_frames(clip)
        assert len(frames) == spec.frames and frames[0].shape == (spec.size, spec.size, 3)
    # within a clip the face moves slowly: the truth boxes of neighbouring frames overlap
    one = truth[truth.file == truth.file.iloc[0]].sort_values("frame")
    boxes = one[["x", "y", "w", "h"]].to_numpy()
    assert min(iou(a, b) for a, b in zip(boxes[:-1], boxes[1:])) > 0.7


def test_clips_differ_within_a_person_and_people_differ(tiny_world):
    """Per clip its own AU trajectory and lighting; the person is the same in every clip of an identity."""
    _, out = tiny_world
    truth = pd.read_parquet(out / "truth" / "video_frames.parquet")
    aus = [c for c in truth.columns if c.startswith("au")]
    per_clip = truth.groupby("file")[aus].mean()
    assert per_clip.drop_duplicates().shape[0] == per_clip.shape[0]
    clips = list_clips(video_root(out) / videos.SPLIT).clips
    same = [c for c in clips if c.identity == clips[0].identity and c.video == clips[0].video]
    a, b = (read_frames(c)[0].astype(np.float32) for c in same[:2])
    assert np.abs(a - b).mean() > 1.0  # another clip: other lighting and expression


def test_frame_folders_are_clips_too_and_strays_are_listed(tmp_path):
    folder = tmp_path / "id00017" / "abcdefghijk" / "00001"
    folder.mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(folder / f"{k:04d}.jpg"), np.full((32, 32, 3), 40 * k, np.uint8))
    (tmp_path / "README.txt").write_text("not a clip")
    (folder.parent / "notes.txt").write_text("not a clip either")
    listing = list_clips(tmp_path)
    assert [c.key for c in listing.clips] == ["id00017/abcdefghijk/00001"]
    assert listing.ignored == ["README.txt", "id00017/abcdefghijk/notes.txt"]
    frames = read_frames(listing.clips[0])
    assert [int(f.mean()) for f in frames] == [0, 40, 80]  # in file order


def test_reader_mistakes_are_one_line(tmp_path):
    with pytest.raises(MissingInput, match="no such folder"):
        list_clips(tmp_path / "absent")
    (tmp_path / "id00017").mkdir()
    with pytest.raises(InputError, match="no clips found; expected <identity>/<video>/<clip>.mp4"):
        list_clips(tmp_path)
    broken = tmp_path / "id00017" / "abcdefghijk"
    broken.mkdir()
    (broken / "00001.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="00001.mp4: no frame could be decoded"):
        read_frames(list_clips(tmp_path).clips[0])


def test_a_missed_face_or_a_jump_ends_a_track():
    a, b, far = (10, 10, 50, 50), (12, 11, 50, 50), (200, 10, 50, 50)
    assert spans([a, b, b, None, a, a, far, far], min_iou=0.3) == [(0, 3), (4, 6), (6, 8)]
    assert spans([None, None], 0.3) == [] and spans([a], 0.3) == [(0, 1)]
    assert window_starts([(0, 10), (12, 16)], length=4, stride=3) == [0, 3, 6, 12]
    assert window_starts([(0, 3)], length=4, stride=1) == []


def test_the_detector_tracks_the_synthetic_face_through_a_clip(tiny_world):
    """RetinaFace finds the face in every frame of a synthetic clip, near its true box, in one track;
    a blanked frame in the middle splits it (the windows never straddle the gap)."""
    from pipeline.faces.detect import FaceDetector

    params, out = tiny_world
    truth = pd.read_parquet(out / "truth" / "video_frames.parquet")
    clip = list_clips(video_root(out) / videos.SPLIT).clips[0]
    frames = read_frames(clip)
    detector = FaceDetector(min_score=0.5)
    windows, tracks = clip_windows(frames, detector, length=4, stride=2, margin=0.05, size=64)
    n = len(frames)
    assert tracks == [(0, n)] and [w.start for w in windows] == list(range(0, n - 3, 2))
    assert windows[0].crops[0].shape == (64, 64, 3) and len(windows[0].crops) == 4
    true = truth[truth.file == clip.path.relative_to(video_root(out)).as_posix()].sort_values("frame")
    found = [box for w in windows for box in w.boxes[:2]]
    starts = [w.start + k for w in windows for k in range(2)]
    overlaps = [iou(box, tuple(true.iloc[i][["x", "y", "w", "h"]])) for box, i in zip(found, starts)]
    assert min(overlaps) > 0.5, overlaps
    frames[n // 2] = np.full_like(frames[0], 128)
    windows, tracks = clip_windows(frames, detector, length=3, stride=1, margin=0.05, size=64)
    assert tracks == [(0, n // 2), (n // 2 + 1, n)]
    assert all(not (w.start <= n // 2 < w.start + 3) for w in windows)


@pytest.fixture(scope="module")
def clip_shards(tiny_world, tmp_path_factory):
    """The clips stage run once on the tiny world's video source (a local Ray with 2 CPUs)."""
    from pipeline.clips.clips import make_clips
    from pipeline.config import load_params

    from .conftest import PARAMS, TINY

    _, out = tiny_world
    params = load_params(PARAMS, {**TINY, "clips.root": str(video_root(out) / videos.SPLIT), "ray.num_cpus": 2})
    base = tmp_path_factory.mktemp("clips")
    metrics = make_clips(params, base / "clips", base / "clips.json")
    return params, out, base, metrics


@pytest.mark.slow
def test_the_clips_stage_cuts_every_window_of_every_clip_into_shards(clip_shards):
    import webdataset as wds

    from pipeline.clips.tracks import window_starts
    from pipeline.faces.crop import crop_face

    params, out, base, metrics = clip_shards
    cfg, spec = params.clips, params.synth.video
    per_clip = len(window_starts([(0, spec.frames)], cfg.length, cfg.stride))
    n_clips = spec.identities * spec.videos * spec.clips
    assert metrics["clips"] == n_clips and metrics["clips_without_window"] == 0 and metrics["ignored_paths"] == []
    assert metrics["windows"] == n_clips * per_clip and metrics["identities"] == spec.identities
    index = pd.read_parquet(base / "clips" / "index.parquet")
    assert len(index) == metrics["windows"] and sorted(index.identity_index.unique()) == list(range(spec.identities))
    urls = sorted(str(p) for p in (base / "clips" / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == index.key.tolist()
    first = samples[0]
    assert sorted(k for k in first if k.endswith(".jpg")) == [f"f{k:02d}.jpg" for k in range(cfg.length)]
    meta = json.loads(first["json"])
    clip = next(c for c in list_clips(cfg.root).clips if (c.identity, c.video, c.clip) == (meta["identity"], meta["video"], meta["clip"]))
    frames = read_frames(clip)
    for k in (0, cfg.length - 1):  # each stored crop is its own frame's face, cut around its own box
        stored = cv2.imdecode(np.frombuffer(first[f"f{k:02d}.jpg"], np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        expected = crop_face(frames[meta["start"] + k], tuple(meta["boxes"][k]), cfg.box_margin, cfg.crop_size)
        assert np.abs(stored - expected).mean() < 6.0  # JPEG at 48 px (4:2:0 chroma on sharp synthetic edges)
        other = crop_face(frames[meta["start"] + k], tuple(meta["boxes"][(k + 1) % cfg.length]), cfg.box_margin, cfg.crop_size)
        assert np.abs(stored - other).mean() > np.abs(stored - expected).mean()


@pytest.mark.slow
def test_a_repeated_clips_run_keeps_its_shards_and_a_changed_setting_rewrites_them(clip_shards):
    from pipeline.clips.clips import make_clips
    from pipeline.config import load_params

    from .conftest import PARAMS, TINY

    params, out, base, first = clip_shards
    shards = sorted((base / "clips" / "shards").glob("*.tar"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    again = make_clips(params, base / "clips", base / "again.json")
    assert again["shards_reused"] == again["shards"] == len(shards) and again["windows"] == first["windows"]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards} == before
    # a fresh checkout (a queued DVC experiment): the same videos with new times are cut again into the same bytes,
    # and the shards folder holds the shards alone, so the pretraining that depends on it stays cached
    for video in Path(params.clips.root).rglob("*.mp4"):
        os.utime(video, (video.stat().st_atime + 60, video.stat().st_mtime + 60))
    touched = make_clips(params, base / "clips", base / "touched.json")
    assert touched["shards_reused"] == 0 and {p.name: p.read_bytes() for p in shards} == {n: b for n, (b, _) in before.items()}
    assert sorted(p.name for p in (base / "clips" / "shards").iterdir()) == [p.name for p in shards]
    longer = load_params(PARAMS, {**TINY, "clips.root": params.clips.root, "ray.num_cpus": 2, "clips.length": 6})
    changed = make_clips(longer, base / "clips", base / "changed.json")
    assert changed["shards_reused"] == 0 and changed["windows"] < first["windows"]


def test_a_clips_source_that_is_not_there_is_one_line(tmp_path, capsys, monkeypatch):
    from pipeline.cli import main

    from .conftest import PARAMS

    monkeypatch.chdir(tmp_path)
    assert main(["clips", "--params", str(PARAMS), "--set", f"clips.root={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none: no such folder (a face-video source" in err and len(err.splitlines()) == 1


def test_a_clips_detector_that_cannot_run_here_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from pipeline.cli import main

    from .conftest import PARAMS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "yuface", None)  # as on a Python without the wheel
    assert main(["clips", "--params", str(PARAMS), "--set", "clips.detector=yunet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "clips.detector = 'yunet': expected a detector that runs here" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "data").exists()

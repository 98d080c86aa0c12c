"""The synthetic world's files parse in their documented native formats, and its flaws and
quirks are exactly where the truth sidecar says."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.synth.au_datasets import BP4DPLUS_CODED_AUS, DISFA_LABELLED_AUS, quirk_subject, rendered_subjects
from pipeline.synth.synthesize import au_root, source_root, synthesize
from tests.conftest import tiny_params


@pytest.fixture(scope="module")
def truth(tiny_world):
    _, out = tiny_world
    return pd.read_csv(out / "truth" / "sources.csv", keep_default_na=False)


def _read(out: Path, source: str, path: str) -> bytes:
    root = source_root(out, source)
    if ":" in path:  # tar member
        tar_rel, member = path.split(":")
        with tarfile.open(root / tar_rel) as tar:
            return tar.extractfile(member).read()
    return (root / path).read_bytes()


def test_the_sidecar_lists_each_sources_configured_images(tiny_world, truth):
    """One truth row per image each source was asked for (flawed files included), so a writer that
    writes nothing cannot leave the layout tests looping over nothing."""
    p, _ = tiny_world
    counts = truth.groupby("source").size().to_dict()
    assert counts == {name: getattr(p.synth.sources, name).images for name in counts} and len(counts) == 8


def test_every_source_file_matches_the_sidecar(tiny_world, truth):
    _, out = tiny_world
    assert len(truth) > 0
    for row in truth.itertuples():
        assert hashlib.sha256(_read(out, row.source, row.path)).hexdigest() == row.sha256, row.path


def test_every_flaw_kind_is_injected(truth):
    kinds = set(truth.flaw) - {""}
    assert kinds >= {"grayscale", "cmyk", "exif_rotated", "rgba", "png16", "palette", "truncated", "corrupt",
                     "zero_byte", "not_an_image", "aspect", "aspect_boundary", "duplicate", "cross_duplicate"}
    assert set(truth.source) == {"celeba", "ffhq", "vggface2", "casia_webface", "megaface", "edface", "umdfaces", "laion_face"}


def _umd_box(out, path):
    batch, rel = path.split("/", 1)
    csv = pd.read_csv(source_root(out, "umdfaces") / f"{batch}_ultraface.csv")
    row = csv[csv.FILE == rel].iloc[0]
    return row.FACE_WIDTH, row.FACE_HEIGHT


def test_flaws_are_where_the_sidecar_says(tiny_world, truth):
    _, out = tiny_world
    by_sha = truth.groupby("sha256").path.apply(list).to_dict()
    for row in truth[truth.flaw != ""].itertuples():
        data = _read(out, row.source, row.path)
        kind = row.flaw
        if kind == "zero_byte":
            assert data == b""
        elif kind == "not_an_image":
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(data))
        elif kind in ("truncated", "corrupt"):
            with pytest.raises((OSError, SyntaxError, ValueError)):
                Image.open(io.BytesIO(data)).load()
        elif kind in ("duplicate", "cross_duplicate"):
            if kind == "duplicate":
                assert len(by_sha[row.sha256]) >= 2
            donor_source, donor_path = row.duplicate_of.split(":", 1)
            assert _read(out, donor_source, donor_path) == data
        else:
            img = Image.open(io.BytesIO(data))
            img.load()
            w, h = img.size
            if kind == "grayscale":
                assert img.mode == "L"
            elif kind == "cmyk":
                assert img.mode == "CMYK"
            elif kind == "rgba":
                assert img.mode == "RGBA" and img.getextrema()[3] == (0, 255)
            elif kind == "palette":
                assert img.mode == "P"
            elif kind == "png16":
                assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
            elif kind == "exif_rotated":
                orientation = img.getexif().get(0x0112)
                assert orientation in (3, 6, 8)
                upright = ImageOps.exif_transpose(img)
                assert upright.size == ((h, w) if orientation in (6, 8) else (w, h))
            elif kind in ("aspect", "aspect_boundary"):
                if row.source == "umdfaces":  # the flaw is the CSV box, which curation crops
                    w, h = _umd_box(out, row.path)
                ratio = max(w, h) / min(w, h)
                assert ratio > 1.5 if kind == "aspect" else ratio == 1.5
            else:
                pytest.fail(f"untested flaw kind {kind}")


def test_clean_files_decode_as_rgb_within_the_aspect_rule(tiny_world, truth):
    _, out = tiny_world
    for row in truth[truth.flaw == ""].itertuples():
        img = Image.open(io.BytesIO(_read(out, row.source, row.path)))
        assert img.mode == "RGB"
        if row.source != "umdfaces":
            assert max(img.size) / min(img.size) <= 1.5, row.path


def test_celeba_layout(tiny_world):
    p, out = tiny_world
    root = source_root(out, "celeba")
    n = p.synth.sources.celeba.images
    ids = pd.read_csv(root / "identity_CelebA.txt", sep=" ", header=None, names=["file", "id"])
    assert len(ids) == n and ids.file.iloc[0] == "000001.jpg" and ids.id.nunique() == p.synth.sources.celeba.identities
    assert all((root / "img_align_celeba" / f).is_file() for f in ids.file)
    parts = pd.read_csv(root / "list_eval_partition.txt", sep=" ", header=None)
    assert set(parts[1]) == {0, 1, 2}
    attrs = pd.read_csv(root / "list_attr_celeba.txt", sep=r"\s+", skiprows=1)
    assert len(attrs) == n and attrs.shape[1] == 40 and set(np.unique(attrs.values)) <= {-1, 1}
    boxes = pd.read_csv(root / "list_bbox_celeba.txt", sep=r"\s+", skiprows=1)
    assert list(boxes.columns) == ["image_id", "x_1", "y_1", "width", "height"] and len(boxes) == n


def test_ffhq_layout(tiny_world, truth):
    _, out = tiny_world
    root = source_root(out, "ffhq")
    meta = json.loads((root / "ffhq-dataset-v2.json").read_text())
    assert meta["0"]["image"]["file_path"] == "images1024x1024/00000/00000.png"
    flawed = set(truth[(truth.source == "ffhq") & (truth.flaw != "")].path)
    for entry in meta.values():
        data = (root / entry["image"]["file_path"]).read_bytes()
        ok = hashlib.md5(data).hexdigest() == entry["image"]["file_md5"]
        assert ok == (entry["image"]["file_path"] not in flawed), entry["image"]["file_path"]  # flawed files fail md5


def test_vggface2_layout(tiny_world):
    _, out = tiny_world
    root = source_root(out, "vggface2")
    meta = pd.read_csv(root / "meta" / "identity_meta.csv", skipinitialspace=True)
    assert list(meta.columns) == ["Class_ID", "Name", "Sample_Num", "Flag", "Gender"]
    for split in ("train", "test"):
        names = (root / f"{split}_list.txt").read_text().split()
        bb = pd.read_csv(root / "bb_landmark" / f"loose_bb_{split}.csv")
        assert list(bb.columns) == ["NAME_ID", "X", "Y", "W", "H"]
        assert names and [n[:-4] for n in names] == list(bb.NAME_ID)
        assert all((root / split / n).is_file() for n in names)
        assert all(n.split("/")[0].startswith("n") and n.split("/")[1][-7:] == "_01.jpg" for n in names)
    assert meta.Sample_Num.sum() == sum(len((root / f"{s}_list.txt").read_text().split()) for s in ("train", "test"))


def test_casia_megaface_edface_layouts(tiny_world):
    _, out = tiny_world
    casia = sorted(source_root(out, "casia_webface").glob("*/*.jpg"))
    assert casia and all(len(f.parent.name) == 7 and len(f.stem) == 3 for f in casia)
    mega = sorted(source_root(out, "megaface").glob("*/*.jpg"))
    assert mega and all("@" in f.parent.name and f.stem.count(".") == 1 for f in mega)
    for f in mega:
        box = json.loads(f.with_name(f.name + ".json").read_text())["bounding_box"]
        assert set(box) == {"x", "y", "width", "height"}
    edface = source_root(out, "edface")
    hr, lr = sorted((edface / "HR").glob("*.png")), sorted((edface / "LR_x4").glob("*.png"))
    assert len(hr) == len(lr) and Image.open(lr[0]).size == (32, 32)


def p_umd_images(tiny_world) -> int:
    """UMDFaces photos the tiny world wrote (the sidecar lists every file it wrote)."""
    truth = pd.read_csv(tiny_world[1] / "truth" / "sources.csv")
    return int(((truth.source == "umdfaces") & truth.path.str.endswith(".jpg")).sum())


def test_umdfaces_layout(tiny_world):
    _, out = tiny_world
    root = source_root(out, "umdfaces")
    total, csvs = 0, sorted(root.glob("umdfaces_batch*_ultraface.csv"))
    assert csvs
    for csv in csvs:
        df = pd.read_csv(csv)
        assert list(df.columns[:9]) == ["SUBJECT_ID", "FILE", "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT", "YAW", "PITCH", "ROLL"]
        batch = csv.name.replace("_ultraface.csv", "")
        assert all((root / batch / f).is_file() for f in df.FILE)
        total += len(df)
    assert total == len(list(root.glob("umdfaces_batch*/*/*.jpg"))) == p_umd_images(tiny_world) > 0


def test_laion_face_layout(tiny_world):
    _, out = tiny_world
    root = source_root(out, "laion_face") / "split_00000"
    tars, samples = sorted(root.glob("*.tar")), 0
    assert tars
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            assert all(m.mtime == 0 for m in tar.getmembers())
        keys = sorted({n.split(".")[0] for n in names})
        assert all({f"{k}.jpg", f"{k}.txt", f"{k}.json"} <= set(names) for k in keys)
        meta = pd.read_parquet(tar_path.with_suffix(".parquet"))
        assert sorted(meta[meta.status == "success"].key) == keys
        stats = json.loads((root / f"{tar_path.stem}_stats.json").read_text())
        assert stats["count"] == len(meta) and stats["successes"] == len(keys)
        samples += len(keys)
    assert samples == tiny_world[0].synth.sources.laion_face.images


def test_bp4d_layout_and_labels(tiny_world):
    p, out = tiny_world
    root = au_root(out, "bp4d")
    frames = pd.read_parquet(out / "truth" / "au_frames.parquet")
    named = quirk_subject(p.synth, "bp4d")
    csvs, rows_checked = sorted((root / "AUCoding" / "AU_OCC").glob("*.csv")), 0
    assert len(csvs) == p.synth.au.bp4d.subjects * p.synth.au.bp4d.tasks
    for csv in csvs:
        subject, task = csv.stem.split("_")
        df = pd.read_csv(csv, header=0)
        if subject == named:  # raw header: pandas would rename the second "1" column
            assert csv.read_text().splitlines()[0].split(",") == ["1", *map(str, BP4DPLUS_CODED_AUS)]
            continue
        assert list(df.columns) == [str(k) for k in range(100)]
        assert (df.iloc[:, 40:] == 9).all().all() and set(np.unique(df.iloc[:, 1:40])) <= {0, 1, 9}
        seq_dir = root / "Sequences_2D+3D" / subject / task
        widths = {len(f.stem) for f in seq_dir.glob("*.jpg")}
        assert len(widths) == 1  # one padding width per directory
        width = widths.pop()
        truth = frames[(frames.dataset == "bp4d") & (frames.subject == subject) & (frames.sequence == task)]
        assert list(df["0"]) == list(truth.frame)
        for row, t in zip(df.itertuples(index=False), truth.itertuples()):
            assert (seq_dir / f"{row[0]:0{width}d}.jpg").is_file()
            code = row[12]  # AU12 column
            assert code == 9 if "12" in t.unknown_aus.split() else code == int(round(t.au12) >= 1)
            rows_checked += 1
        inten = pd.read_csv(root / "AUCoding" / "AU_INT" / "AU12" / f"{subject}_{task}_AU12.csv", header=None)
        assert list(inten[0]) == list(df["0"]) and inten[1].between(0, 9).all()
    legacy = frames[(frames.dataset == "bp4d") & (frames.subject != named)]
    assert rows_checked == len(legacy) > 0


def test_bp4dplus_layout(tiny_world):
    p, out = tiny_world
    root = au_root(out, "bp4dplus")
    subjects = rendered_subjects(p.synth, "bp4dplus")
    zips = {z.stem for z in (root / "2D+3D").glob("*.zip")}
    dirs = {d.name for d in (root / "2D+3D").iterdir() if d.is_dir()}
    assert zips and dirs and zips | dirs == set(subjects) and not zips & dirs
    quirk = quirk_subject(p.synth, "bp4dplus")
    csvs = sorted((root / "AUCoding" / "AU_OCC").glob("*.csv"))
    assert len(csvs) == p.synth.au.bp4dplus.subjects * p.synth.au.bp4dplus.tasks
    for csv in csvs:
        subject, task = csv.stem.split("_")
        assert task in ("T1", "T6", "T7", "T8")
        df = pd.read_csv(csv, header=None, skiprows=1)
        assert csv.read_text().splitlines()[0] == "1," + ",".join(map(str, BP4DPLUS_CODED_AUS))
        if subject in zips:
            with zipfile.ZipFile(root / "2D+3D" / f"{subject}.zip") as zf:
                images = [n for n in zf.namelist() if n.startswith(f"{subject}/{task}/")]
        else:
            images = list((root / "2D+3D" / subject / task).glob("*.jpg"))
        extra = len(df) - len(images)
        assert extra == (5 if subject == quirk and task == "T6" else 0)


def test_disfa_layout_and_short_video(tiny_world):
    p, out = tiny_world
    root = au_root(out, "disfa")
    short = quirk_subject(p.synth, "disfa")
    n = p.synth.au.disfa.frames
    for subject in rendered_subjects(p.synth, "disfa"):
        videos = list((root / "Video_RightCamera").glob(f"RightVideo{subject}_[Cc]omp.avi"))
        assert len(videos) == 1 and (root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi").is_file()
        cap = cv2.VideoCapture(str(videos[0]))
        decoded = 0
        while cap.read()[0]:
            decoded += 1
        assert decoded == (n - 1 if subject == short else n)
        for au in DISFA_LABELLED_AUS:
            lab = pd.read_csv(root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt", header=None)
            assert list(lab[0]) == list(range(1, n + 1)) and lab[1].between(0, 5).all()


def test_face_boxes_cover_every_frame(tiny_world):
    p, out = tiny_world
    frames = pd.read_parquet(out / "truth" / "au_frames.parquet")
    for dataset in ("bp4d", "bp4dplus", "disfa"):
        boxes = pd.read_csv(au_root(out, dataset) / "face_boxes.csv")
        assert list(boxes.columns) == ["subject", "sequence", "frame", "x", "y", "w", "h"]
        a = getattr(p.synth.au, dataset)
        cameras = 2 if dataset == "disfa" and p.synth.au.left_camera else 1
        assert len(boxes) == (frames.dataset == dataset).sum() == a.subjects * a.tasks * a.frames * cameras > 0
        assert (boxes.w > 0).all() and (boxes.h > 0).all()


def test_same_bytes_for_any_number_of_workers(tiny_world, tmp_path):
    p, out = tiny_world
    one = tiny_params(tmp_path / "raw", **{"synth.workers": 1})
    synthesize(one.synth, reports=tmp_path / "reports")

    def digest(root: Path) -> dict[str, str]:
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(root.rglob("*")) if f.is_file()}

    assert digest(tmp_path / "raw") == digest(out)


def test_world_files_carry_the_fixed_mtime(tiny_world):
    from pipeline.synth.synthesize import WORLD_MTIME

    _, out = tiny_world
    assert {int(p.stat().st_mtime) for p in out.rglob("*") if p.is_file()} == {WORLD_MTIME}

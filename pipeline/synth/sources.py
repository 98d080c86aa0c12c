"""The eight Face9M pretraining sources, written in their native on-disk layouts.

Each writer lays files out as the real distribution does (file names, folder structure and
metadata files; see each function's docstring), with injected flaws (:mod:`.flaws`). Where the
real layout is unverified (MegaFace MF2, EDFace-Celeb-1M) the docstring says what is assumed.
Every image is a pure function of ``(seed, source, index)``, so sources can be written in any
order or process, and a cross-source duplicate is the other source's exact bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..config import SynthConfig, SynthSource
from ..region_maps import regions_path
from .expression import random_expression
from .flaws import EXPECT, JPEG_FLAWS, PNG_FLAWS, encode, encode_flawed
from .identity import Identity, sample_identity
from .look import apply_look, paint_background, sample_look
from .render import Pose, render_face, render_regions
from .seeding import rng_for

# Per source: file format, whether images are face crops (aligned = little pose jitter), and
# the canvas size rule. Sizes are the real ones except FFHQ (synth.ffhq_size).
FORMATS = {"celeba": "jpg", "ffhq": "png", "vggface2": "jpg", "casia_webface": "jpg", "megaface": "jpg",
           "edface": "png", "umdfaces": "jpg", "laion_face": "jpg"}
ALIGNED = {"celeba", "ffhq", "edface"}


@dataclass(frozen=True)
class Item:
    index: int
    person: int  # identity number within the source
    identity: str  # identity key in the world (shared across sources for the first few people)
    flaw: str


def plan_items(cfg: SynthConfig, name: str) -> list[Item]:
    spec: SynthSource = getattr(cfg.sources, name)
    kinds = JPEG_FLAWS if FORMATS[name] == "jpg" else PNG_FLAWS
    if name == "celeba":  # the cross-source duplicates are CelebA's files
        kinds = tuple(k for k in kinds if k != "cross_duplicate")
    wanted = [k for k in kinds for _ in range(cfg.flaws_per_kind)]
    rng = rng_for(cfg.seed, "flaw-plan", name)
    slots = rng.choice(np.arange(1, spec.images), size=min(len(wanted), spec.images - 1), replace=False)
    flaw_at = dict(zip(slots.tolist(), wanted))
    items = []
    for i in range(spec.images):
        person = i * spec.identities // spec.images
        key = f"shared:{person}" if person < cfg.shared_identities else f"{name}:{person}"
        items.append(Item(i, person, key, flaw_at.get(i, "")))
    return items


def identity_for(seed: int, key: str) -> Identity:
    return sample_identity(rng_for(seed, "identity", key), key)


def _canvas(name: str, cfg: SynthConfig, flaw: str, rng: np.random.Generator) -> tuple[int, int]:
    if name == "celeba":
        w, h = 178, 218
    elif name == "ffhq":
        w = h = cfg.ffhq_size
    elif name == "edface":
        w = h = 128
    elif name == "casia_webface":
        w = h = 250
    elif name == "vggface2":
        w = int(rng.integers(100, 250)); h = int(w * rng.uniform(1.15, 1.4))
    elif name == "megaface":
        w = int(rng.integers(120, 300)); h = int(w * rng.uniform(1.0, 1.25))
    elif name == "umdfaces":
        w, h = [(480, 360), (360, 480), (400, 400), (512, 384)][int(rng.integers(4))]
    else:  # laion_face: web photos of any shape
        w = int(rng.integers(320, 560)); h = int(w / rng.uniform(0.7, 1.45))
    if flaw == "aspect":
        ratio = rng.uniform(1.6, 2.2)
        w, h = (int(h * ratio), h) if rng.random() < 0.5 else (w, int(w * ratio))
    elif flaw == "aspect_boundary":
        m = max(2, min(w, h) // 2)
        w, h = 3 * m, 2 * m  # exactly 1.5: must be kept
    return w, h


@dataclass(frozen=True)
class Scene:
    """What one source image shows, drawn from its seed: everything but the pixels."""

    rng: np.random.Generator  # the image's generator, at the point the look is drawn from it
    person: Identity
    pose: Pose
    aus: dict
    shape: tuple[int, int]  # (height, width)
    background: tuple


def scene(cfg: SynthConfig, name: str, item: Item) -> Scene:
    rng = rng_for(cfg.seed, "source", name, item.index)
    person = identity_for(cfg.seed, item.identity)
    w, h = _canvas(name, cfg, item.flaw, rng)
    if name in ("umdfaces", "laion_face"):
        size = min(w, h) * rng.uniform(0.2, 0.4)
        cx, cy = rng.uniform(size * 0.7, w - size * 0.7), rng.uniform(size * 0.7, h - size * 0.8)
    else:
        size = min(w, h) * (0.62 if name in ALIGNED else rng.uniform(0.5, 0.72))
        jitter = 0.01 if name in ALIGNED else 0.06
        cx = w / 2 + rng.normal(0, jitter) * w
        cy = h * (0.56 if name == "celeba" else 0.53) + rng.normal(0, jitter) * h
    roll, yaw = (rng.normal(0, 1.5), rng.normal(0, 3)) if name in ALIGNED else (rng.normal(0, 5), rng.normal(0, 8))
    pose = Pose(cx, cy, size, roll, yaw)
    bg = tuple(tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in col) for col in person.background)
    return Scene(rng, person, pose, random_expression(rng), (h, w), bg)


def make_image(cfg: SynthConfig, name: str, item: Item) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Render one source image (BGR) and its face box (x, y, w, h) in pixels."""
    sc = scene(cfg, name, item)
    img = np.empty((*sc.shape, 3), np.uint8)
    paint_background(img, sc.background, sc.person.background_stripes)
    render_face(img, sc.person, sc.aus, sc.pose)
    img = apply_look(img, sample_look(sc.rng, 0.6 if name in ALIGNED else 1.0), sc.rng)
    return img, sc.pose.box()


def region_map(cfg: SynthConfig, name: str, item: Item) -> np.ndarray:
    """The exact LaPa label map (uint8, the image's size) of :func:`make_image`'s face; the look changes
    colours only, so the map follows from the scene alone."""
    sc = scene(cfg, name, item)
    return render_regions(sc.shape, sc.person, sc.aus, sc.pose)


def image_bytes(cfg: SynthConfig, name: str, item: Item) -> tuple[bytes, str, np.ndarray, tuple]:
    """The bytes written for ``item`` (flaw applied), the flaw detail, the image and its box."""
    img, box = make_image(cfg, name, item)
    quality = int(rng_for(cfg.seed, "quality", name, item.index).integers(75, 96))
    if item.flaw in ("", "aspect", "aspect_boundary", "duplicate", "cross_duplicate"):
        return encode(img, FORMATS[name], quality), "", img, box
    data, detail = encode_flawed(img, FORMATS[name], item.flaw, rng_for(cfg.seed, "flaw", name, item.index), quality)
    return data, detail, img, box


class SourceWriter:
    """Writes one source's files and collects its truth rows (one per file written)."""

    def __init__(self, cfg: SynthConfig, name: str, root: Path, regions: Path | None = None):
        self.cfg, self.name, self.root, self.regions = cfg, name, root, regions
        self.items = plan_items(cfg, name)
        self.truth: list[dict] = []
        self._clean: dict[int, tuple[bytes, str, int]] = {}

    def encode(self, item: Item, relpath: str) -> tuple[bytes, np.ndarray, tuple]:
        """Bytes for ``item`` (duplicates resolved), its image and face box; records the truth row."""
        data, detail, img, box = image_bytes(self.cfg, self.name, item)
        dup_of, drawn = "", (self.name, item)  # the image whose face the bytes show
        if item.flaw == "duplicate":
            data, dup_of, earlier = self._clean[max(i for i in self._clean if i < item.index)]
            detail, drawn = "same bytes as an earlier file of this source", (self.name, self.items[earlier])
        elif item.flaw == "cross_duplicate":
            donor = next(it for it in plan_items(self.cfg, "celeba") if not it.flaw)
            data = image_bytes(self.cfg, "celeba", donor)[0]
            dup_of, detail = f"celeba:img_align_celeba/{donor.index + 1:06d}.jpg", "a CelebA file copied into this source"
            drawn = ("celeba", donor)
        elif item.flaw == "":
            self._clean[item.index] = (data, f"{self.name}:{relpath}", item.index)
        if self.regions is not None:
            self.write_regions(relpath, region_map(self.cfg, *drawn))
        self.truth.append({"source": self.name, "path": relpath, "identity": item.identity, "flaw": item.flaw,
                           "expect": EXPECT[item.flaw], "detail": detail, "duplicate_of": dup_of,
                           "sha256": hashlib.sha256(data).hexdigest()})
        return data, img, box

    def add(self, item: Item, relpath: str) -> tuple[np.ndarray, tuple]:
        """Encode ``item`` and write it at ``relpath`` under the source root."""
        data, img, box = self.encode(item, relpath)
        self.write(relpath, data)
        return img, box

    def write_regions(self, relpath: str, labels: np.ndarray) -> None:
        """The image's LaPa label map as a PNG at :func:`regions_path` under the regions root."""
        path = self.regions / regions_path(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(labels, "png"))

    def write(self, relpath: str, data: bytes | str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)


def _lines(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


def write_celeba(w: SourceWriter) -> None:
    """``img_align_celeba/000001.jpg`` (178x218); ``identity_CelebA.txt`` ("<file> <id>"),
    ``list_eval_partition.txt`` ("<file> 0|1|2"), ``list_bbox_celeba.txt`` and
    ``list_attr_celeba.txt`` (line 1 count, line 2 header). Boxes here refer to the aligned
    images (the real ones refer to the in-the-wild originals, which are not written)."""
    ids, parts, boxes, attrs = [], [], [], []
    n = len(w.items)
    for it in w.items:
        fname = f"{it.index + 1:06d}.jpg"
        _, box = w.add(it, f"img_align_celeba/{fname}")
        ids.append(f"{fname} {it.person + 1}")
        parts.append(f"{fname} {0 if it.index < 0.8 * n else 1 if it.index < 0.9 * n else 2}")
        boxes.append(f"{fname} " + " ".join(str(int(round(v))) for v in box))
        attrs.append(f"{fname} " + " ".join(f"{v:2d}" for v in _celeba_attributes(identity_for(w.cfg.seed, it.identity))))
    w.write("identity_CelebA.txt", _lines(ids))
    w.write("list_eval_partition.txt", _lines(parts))
    w.write("list_bbox_celeba.txt", _lines([str(n), "image_id x_1 y_1 width height", *boxes]))
    w.write("list_attr_celeba.txt", _lines([str(n), " ".join(CELEBA_ATTRS), *attrs]))


CELEBA_ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
                "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
                "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
                "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
                "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def _celeba_attributes(p: Identity) -> list[int]:
    known = {"Bald": p.hair_style == "bald", "Bangs": p.hair_style == "fringe", "Eyeglasses": bool(p.glasses),
             "Black_Hair": p.hair_colour == (20, 20, 25), "Blond_Hair": p.hair_colour == (110, 180, 220),
             "Gray_Hair": p.hair_colour == (165, 165, 170), "Male": p.sex == "M", "Mustache": p.moustache,
             "No_Beard": not p.beard, "Goatee": p.beard, "Wavy_Hair": p.hair_style == "curly"}
    return [1 if known.get(a, False) else -1 for a in CELEBA_ATTRS]


def write_ffhq(w: SourceWriter) -> None:
    """``images1024x1024/00000/00000.png`` (folders step 1000) and ``ffhq-dataset-v2.json``
    (per index: category, image.file_path/file_size/file_md5/pixel_size/pixel_md5). As with a
    damaged download, the JSON describes the intended file: a flawed file fails its md5."""
    meta = {}
    for it in w.items:
        rel = f"images1024x1024/{it.index // 1000 * 1000:05d}/{it.index:05d}.png"
        data, img, _ = w.encode(it, rel)
        w.write(rel, data)
        intended = encode(img, "png") if it.flaw else data
        meta[str(it.index)] = {
            "category": "training" if it.index < 0.857 * len(w.items) else "validation",
            "metadata": {"license": "Attribution-NonCommercial-ShareAlike", "country": ""},
            "image": {"file_path": rel, "file_size": len(intended), "file_md5": hashlib.md5(intended).hexdigest(),
                      "pixel_size": [img.shape[1], img.shape[0]], "pixel_md5": hashlib.md5(img.tobytes()).hexdigest()},
        }
    w.write("ffhq-dataset-v2.json", json.dumps(meta, indent=1))


def write_vggface2(w: SourceWriter) -> None:
    """``train|test/n000002/0001_01.jpg``; ``meta/identity_meta.csv`` (Class_ID, Name,
    Sample_Num, Flag, Gender); ``train_list.txt``/``test_list.txt``; and
    ``bb_landmark/loose_bb_{train,test}.csv`` (NAME_ID, X, Y, W, H)."""
    lists: dict[str, list[str]] = {"train": [], "test": []}
    bbs: dict[str, list[str]] = {"train": ["NAME_ID,X,Y,W,H"], "test": ["NAME_ID,X,Y,W,H"]}
    counts: dict[int, int] = {}
    for it in w.items:
        split = "test" if it.person % 5 == 4 else "train"
        cls = f"n{2 + 3 * it.person:06d}"
        counts[it.person] = counts.get(it.person, 0) + 1
        name_id = f"{cls}/{counts[it.person]:04d}_01"
        _, box = w.add(it, f"{split}/{name_id}.jpg")
        lists[split].append(f"{name_id}.jpg")
        bbs[split].append(f'"{name_id}",' + ",".join(str(int(round(v))) for v in box))
    meta = ["Class_ID, Name, Sample_Num, Flag, Gender"]
    for person, n in sorted(counts.items()):
        p = identity_for(w.cfg.seed, plan_key(w, person))
        meta.append(f'n{2 + 3 * person:06d}, "Person_{person}", {n}, {0 if person % 5 == 4 else 1}, {p.sex.lower()}')
    w.write("meta/identity_meta.csv", _lines(meta))
    for split in ("train", "test"):
        w.write(f"{split}_list.txt", _lines(lists[split]))
        w.write(f"bb_landmark/loose_bb_{split}.csv", _lines(bbs[split]))


def plan_key(w: SourceWriter, person: int) -> str:
    return next(it.identity for it in w.items if it.person == person)


def write_casia(w: SourceWriter) -> None:
    """``0000045/001.jpg``: 7-digit identity folders of 250x250 JPEGs, no metadata file."""
    counts: dict[int, int] = {}
    for it in w.items:
        counts[it.person] = counts.get(it.person, 0) + 1
        w.add(it, f"{45 + 17 * it.person:07d}/{counts[it.person]:03d}.jpg")


def write_megaface(w: SourceWriter) -> None:
    """MF2 (assumed layout): ``<flickr user id>/<photo id>_<secret>.<face>.jpg`` plus a JSON box
    beside each image (``<image>.json``: bounding_box x/y/width/height, full image size).
    User ids hold ``@`` and file names hold dots, as the real ones do."""
    for it in w.items:
        user = f"{10000000 + 7919 * it.person}@N0{it.person % 8}"
        rel = f"{user}/{4000000 + 131 * it.index}_{hashlib.md5(str(it.index).encode()).hexdigest()[:10]}.{it.index % 3}.jpg"
        img, (x, y, bw, bh) = w.add(it, rel)
        box = {"x": round(x, 1), "y": round(y, 1), "width": round(bw, 1), "height": round(bh, 1)}
        w.write(rel + ".json", json.dumps({"bounding_box": box, "full_image_size": [img.shape[1], img.shape[0]]}))


def write_edface(w: SourceWriter) -> None:
    """EDFace-Celeb-1M FH128 (assumed layout): ``HR/0000001.png`` 128x128 high-resolution faces
    and ``LR_x4/0000001.png`` 32x32 low-resolution copies that a reader must ignore. No identity
    labels."""
    for it in w.items:
        img, _ = w.add(it, f"HR/{it.index + 1:07d}.png")
        w.write(f"LR_x4/{it.index + 1:07d}.png", encode(cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA), "png"))


def write_umdfaces(w: SourceWriter) -> None:
    """``umdfaces_batch{1,2,3}/<subject>/<image>.jpg`` full photos plus
    ``umdfaces_batch{N}_ultraface.csv`` (SUBJECT_ID, FILE, FACE_X, FACE_Y, FACE_WIDTH,
    FACE_HEIGHT, YAW, PITCH, ROLL, P1X..P21Y, VIS1..VIS21, PR_MALE, PR_FEMALE): crop with the box."""
    header = ["SUBJECT_ID", "FILE", "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT", "YAW", "PITCH", "ROLL"]
    header += [f"P{k}{c}" for k in range(1, 22) for c in "XY"] + [f"VIS{k}" for k in range(1, 22)] + ["PR_MALE", "PR_FEMALE"]
    rows: dict[int, list[str]] = {1: [], 2: [], 3: []}
    counts: dict[int, int] = {}
    for it in w.items:
        batch = 1 + it.person % 3
        counts[it.person] = counts.get(it.person, 0) + 1
        rel = f"person_{it.person:04d}/person_{it.person:04d}_{counts[it.person]:04d}.jpg"
        _, (x, y, bw, bh) = w.add(it, f"umdfaces_batch{batch}/{rel}")
        if it.flaw == "aspect":  # a wide detection box on a normal photo
            x, bw = x - bw * 0.4, bw * 1.8
        elif it.flaw == "aspect_boundary":  # a box of exactly 3:2, which curation must keep
            bh = float(2 * round(bh / 2))
            x, bw = x - bh * 0.25, bh * 1.5
        pts = [f"{x + bw * (0.2 + 0.6 * (k % 7) / 6):.1f},{y + bh * (0.3 + 0.5 * (k // 7) / 2):.1f}" for k in range(21)]
        male = 1.0 if identity_for(w.cfg.seed, it.identity).sex == "M" else 0.0
        rows[batch].append(",".join([str(it.person + 1), rel, f"{x:.2f}", f"{y:.2f}", f"{bw:.2f}", f"{bh:.2f}", "0.0", "0.0", "0.0",
                                     *pts, *["1"] * 21, f"{male:.2f}", f"{1 - male:.2f}"]))
    for batch, lines in rows.items():
        w.write(f"umdfaces_batch{batch}_ultraface.csv", _lines([",".join(header), *lines]))


LAION_PER_SHARD = 50


def write_laion_face(w: SourceWriter) -> None:
    """img2dataset ``--output_format webdataset`` output: ``split_00000/00000.tar`` holding
    ``<key>.jpg``, ``<key>.txt`` (caption) and ``<key>.json``, with ``00000.parquet`` (one row
    per attempted URL, failed downloads included, no file for them) and ``00000_stats.json``."""
    rng = rng_for(w.cfg.seed, "laion-failures")
    n_shards = -(-len(w.items) // LAION_PER_SHARD)
    for shard in range(n_shards):
        chunk = w.items[shard * LAION_PER_SHARD:(shard + 1) * LAION_PER_SHARD]
        rows, members = [], []
        for j, it in enumerate(chunk):
            key = f"{shard:05d}{j:04d}"
            url = f"https://img.example.org/{hashlib.md5(key.encode()).hexdigest()[:12]}.jpg"
            if rng.random() < 0.05:  # link rot: in the parquet, never in the tar
                rows.append(_laion_row(key, url, "failed_to_download", "HTTP Error 404: Not Found", None, None))
            data, img, _ = w.encode(it, f"split_00000/{shard:05d}.tar:{key}.jpg")
            h, wd = img.shape[:2]
            row = _laion_row(key, url, "success", None, wd, h)
            rows.append(row)
            members += [(f"{key}.jpg", data), (f"{key}.txt", f"a photo of person {it.person}".encode()),
                        (f"{key}.json", json.dumps(row, sort_keys=True).encode())]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        w.write(f"split_00000/{shard:05d}.tar", buf.getvalue())
        pq = io.BytesIO()
        pd.DataFrame(rows).to_parquet(pq, index=False)
        w.write(f"split_00000/{shard:05d}.parquet", pq.getvalue())
        ok = sum(r["status"] == "success" for r in rows)
        w.write(f"split_00000/{shard:05d}_stats.json", json.dumps(
            {"count": len(rows), "successes": ok, "failed_to_download": len(rows) - ok, "failed_to_resize": 0,
             "status_dict": {"success": ok, "HTTP Error 404: Not Found": len(rows) - ok}}, indent=1))


def _laion_row(key, url, status, error, width, height) -> dict:
    return {"key": key, "url": url, "caption": "a face", "status": status, "error_message": error,
            "width": width, "height": height, "original_width": width, "original_height": height,
            "SAMPLE_ID": int(key), "NSFW": "UNLIKELY", "similarity": 0.31, "LICENSE": "?"}


WRITERS = {"celeba": write_celeba, "ffhq": write_ffhq, "vggface2": write_vggface2, "casia_webface": write_casia,
           "megaface": write_megaface, "edface": write_edface, "umdfaces": write_umdfaces, "laion_face": write_laion_face}
DIRNAMES = {"celeba": "CelebA", "ffhq": "FFHQ", "vggface2": "VGGFace2", "casia_webface": "CASIA-WebFace",
            "megaface": "MegaFace", "edface": "EDFace-Celeb-1M", "umdfaces": "UMDFaces", "laion_face": "LAION-Face"}


def write_source(cfg: SynthConfig, name: str, root: Path, regions: Path | None = None) -> list[dict]:
    """Write source ``name`` under ``root`` (and each image's LaPa label map under ``regions``); returns
    its truth rows."""
    writer = SourceWriter(cfg, name, root, regions)
    WRITERS[name](writer)
    return writer.truth

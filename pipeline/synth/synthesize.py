"""Stage ``synthesize``: write the synthetic face world under ``synth.out_dir``.

Outputs::

    <out_dir>/sources/<Source>/...       the eight pretraining sources, native layouts
    <out_dir>/regions/<Source>/...       each source image's exact LaPa label map (PNG, same relative path)
    <out_dir>/au/{BP4D,BP4D+,DISFA}/...  the AU datasets, native layouts + face_boxes.csv
    <out_dir>/fer/{RAF-DB/basic,AffectNet}/...   the FER datasets, native layouts
    <out_dir>/video/VoxCeleb2/dev/mp4/<id>/<video>/<clip>.mp4   a face-video source (CLP's pretraining data)
    <out_dir>/truth/sources.csv          every source file: identity, injected flaw, expected outcome
    <out_dir>/truth/au_frames.parquet    every AU frame: identity, AU intensities, face box
    <out_dir>/truth/au_quirks.csv        the dataset quirks reproduced, and where
    <out_dir>/truth/fer_images.csv       every FER image: dataset, split, file, emotion, label code, flaw
    <out_dir>/truth/video_frames.parquet every video frame: identity, video, clip, frame, AU intensities, face box
    <out_dir>/truth/world.json           counts per source and dataset
    <out_dir>/provenance.json            params, code version, libraries
    reports/synth_aus.png, reports/synth_identities.png, reports/synth_expressions.png   contact sheets

Work is split into one job per source and one per AU subject; each job's output depends only
on the seed and its own name, so the bytes are the same for any ``synth.workers``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import provenance, stage_code
from ..config import AU_DATASETS, SOURCE_NAMES, Params, SynthConfig
from . import au_datasets, fer_datasets, sources, videos
from .contact_sheet import write_sheets

log = logging.getLogger(__name__)
REPORTS = Path("reports")
CODE = stage_code.closure(__name__)  # the sources this stage can run (its dvc.yaml deps cover them)
# Every file of the world gets this mtime (2023-11-14), as reproducible builds do with
# SOURCE_DATE_EPOCH: the scan manifest records mtimes, and a re-synthesised identical world
# must give an identical manifest so that curation stays cached.
WORLD_MTIME = 1_700_000_000


def stamp_mtimes(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (WORLD_MTIME, WORLD_MTIME))


def source_root(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / "sources" / sources.DIRNAMES[name]


def regions_root(out_dir: str | Path, name: str) -> Path:
    """Where the region maps of source ``name`` are written (``sources.<name>.regions`` reads them)."""
    return Path(out_dir) / "regions" / sources.DIRNAMES[name]


def au_root(out_dir: str | Path, dataset: str) -> Path:
    return Path(out_dir) / "au" / au_datasets.DIRNAMES[dataset]


def video_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "video" / videos.DIRNAME


def _job(cfg: SynthConfig, job: tuple[str, ...]):
    if job[0] == "source":
        return job, sources.write_source(cfg, job[1], source_root(cfg.out_dir, job[1]), regions_root(cfg.out_dir, job[1]))
    if job[0] == "fer":
        return job, fer_datasets.write_dataset(cfg, job[1])
    if job[0] == "video":
        return job, videos.write_identity(cfg, job[1], video_root(cfg.out_dir))
    _, dataset, subject = job
    return job, au_datasets.write_subject(cfg, dataset, subject, au_root(cfg.out_dir, dataset))


def plan_jobs(cfg: SynthConfig) -> list[tuple[str, ...]]:
    """All jobs, costliest first so that the pool stays busy to the end."""
    jobs: list[tuple[tuple[str, ...], int]] = []
    for name in SOURCE_NAMES:
        jobs.append((("source", name), getattr(cfg.sources, name).images))
    for dataset in fer_datasets.WRITERS:
        jobs.append((("fer", dataset), getattr(cfg.fer, dataset).images * 2))
    for identity in videos.identities(cfg.video.identities):
        jobs.append((("video", identity), cfg.video.videos * cfg.video.clips * cfg.video.frames))
    for dataset in AU_DATASETS:
        spec = getattr(cfg.au, dataset)
        cams = 2 if dataset == "disfa" and cfg.au.left_camera else 1
        for subject in au_datasets.rendered_subjects(cfg, dataset):
            jobs.append((("au", dataset, subject), spec.tasks * spec.frames * cams))
    return [job for job, _ in sorted(jobs, key=lambda jc: -jc[1])]


def synthesize(cfg: SynthConfig, reports: Path = REPORTS) -> dict:
    out = Path(cfg.out_dir)
    if out.exists():
        shutil.rmtree(out)
    jobs = plan_jobs(cfg)
    results = {}
    bar = tqdm(total=len(jobs), desc="synthesize", unit="job", mininterval=2.0)
    if cfg.workers == 1:
        for job in jobs:
            results[job] = _job(cfg, job)[1]
            bar.update()
    else:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for job, result in pool.map(_job, [cfg] * len(jobs), jobs):
                results[job] = result
                bar.update()
    bar.close()

    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    source_rows = [row for name in SOURCE_NAMES for row in results[("source", name)]]
    pd.DataFrame(source_rows).to_csv(truth / "sources.csv", index=False)
    frames, quirks, summary = [], [], {"sources": {}, "au": {}}
    for name in SOURCE_NAMES:
        rows = results[("source", name)]
        summary["sources"][name] = {"files": len(rows), "flawed": sum(bool(r["flaw"]) for r in rows)}
    for dataset in AU_DATASETS:
        subjects = au_datasets.rendered_subjects(cfg, dataset)
        outputs = [results[("au", dataset, s)] for s in subjects]
        au_datasets.write_face_boxes(au_root(out, dataset), [b for o in outputs for b in o.boxes])
        frames += [r for o in outputs for r in o.truth]
        quirks += [q for o in outputs for q in o.quirks]
        summary["au"][dataset] = {"subjects": len(subjects), "frames": sum(len(o.truth) for o in outputs)}
    pd.DataFrame(frames).to_parquet(truth / "au_frames.parquet", index=False)
    pd.DataFrame(quirks, columns=["dataset", "subject", "sequence", "quirk", "detail"]).to_csv(truth / "au_quirks.csv", index=False)
    fer = pd.DataFrame([row for name in fer_datasets.WRITERS for row in results[("fer", name)]])
    fer.to_csv(truth / "fer_images.csv", index=False)
    summary["fer"] = {name: {"images": int((fer.dataset == name).sum())} for name in fer_datasets.WRITERS}
    people = videos.identities(cfg.video.identities)
    video_frames = pd.DataFrame([row for identity in people for row in results[("video", identity)]])
    video_frames.to_parquet(truth / "video_frames.parquet", index=False)
    summary["video"] = {"identities": len(people), "clips": int(video_frames.file.nunique()), "frames": len(video_frames)}
    (truth / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_sheets(cfg.seed, reports)
    stamp_mtimes(out)
    return summary


def run(params: Params) -> None:
    summary = synthesize(params.synth)
    out = Path(params.synth.out_dir)
    provenance.write(out / "provenance.json", "synthesize", params.to_dict(), CODE)
    os.utime(out / "provenance.json", (WORLD_MTIME, WORLD_MTIME))
    n_src = sum(s["files"] for s in summary["sources"].values())
    n_au = sum(d["frames"] for d in summary["au"].values())
    n_fer = sum(d["images"] for d in summary["fer"].values())
    n_clips = summary["video"]["clips"]
    print(f"synthesize: {n_src} source files, {n_au} AU frames, {n_fer} FER images, {n_clips} video clips under "
          f"{params.synth.out_dir}; "
          f"contact sheets in {REPORTS}/synth_aus.png, synth_identities.png and synth_expressions.png")

"""A contact sheet of random curated samples, one row per source, for people to look at."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

PER_SOURCE = 10
TILE = 96


def write_contact_sheet(shard_dir: Path, out: Path, seed: int = 0) -> None:
    by_source: dict[str, list[bytes]] = {}
    for tar_path in sorted(Path(shard_dir).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            files = {m.name: m for m in tar.getmembers()}
            for name, m in files.items():
                if name.endswith(".json"):
                    source = json.loads(tar.extractfile(m).read())["source"]
                    by_source.setdefault(source, []).append(tar.extractfile(files[name[:-5] + ".jpg"]).read())
    rng = np.random.default_rng(seed)
    rows = []
    for source in sorted(by_source):
        images = by_source[source]
        pick = rng.choice(len(images), size=min(PER_SOURCE, len(images)), replace=False)
        tiles = [cv2.resize(cv2.imdecode(np.frombuffer(images[i], np.uint8), cv2.IMREAD_COLOR), (TILE, TILE),
                            interpolation=cv2.INTER_AREA) for i in sorted(pick)]
        tiles += [np.full((TILE, TILE, 3), 255, np.uint8)] * (PER_SOURCE - len(tiles))
        label = np.full((TILE, 150, 3), 255, np.uint8)
        cv2.putText(label, source, (6, TILE // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(np.hstack([label, *tiles]))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = np.vstack(rows) if rows else np.full((TILE, 150 + TILE * PER_SOURCE, 3), 255, np.uint8)
    cv2.imwrite(str(out), sheet)

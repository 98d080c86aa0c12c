"""Stage ``scan``: list every image of the enabled sources into a manifest (headers only).

Raw trees of millions of files are never DVC dependencies; this cheap, always-run stage turns
them into one file, ``data/face9m/manifest.parquet``, whose bytes change only when the
sources do, so ``curate`` re-runs only then. Columns: key, source, path, member, size, sig (content
signature: size + first and last 4 KiB, not the mtime, so a checkout or copy changes nothing),
width, height, identity, crop_x/y/w/h (NaN without a crop), error (header unreadable: empty,
not_an_image, corrupt).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..config import MissingInput, Params, require_dir
from .sources import read_source

log = logging.getLogger(__name__)
MANIFEST = Path("data/face9m/manifest.parquet")
COLUMNS = ["key", "source", "path", "member", "size", "sig", "width", "height", "identity",
           "crop_x", "crop_y", "crop_w", "crop_h", "error"]


def scan(params: Params) -> pd.DataFrame:
    enabled = params.sources.enabled()
    if not enabled:
        raise ValueError("params.yaml: sources: no source is enabled (set sources.<name>.enabled: true)")
    for name, src in enabled.items():  # every root checked before any work
        require_dir(src.root, f"sources.{name}.root")
    rows = []
    with tqdm(desc="scan", unit="img", mininterval=1.0) as bar:
        for name, src in enabled.items():
            before = len(rows)
            try:
                for rec in read_source(name, src.root, src.max_images):
                    crop = rec.crop or (float("nan"),) * 4
                    rows.append((rec.key, rec.source, rec.path, rec.member, rec.size, rec.sig, rec.width, rec.height,
                                 rec.identity, *crop, rec.error))
                    bar.update()
            except FileNotFoundError as err:
                raise MissingInput(f"sources.{name}.root = {src.root!r}: {err}") from None
            if len(rows) == before:
                log.warning("sources.%s.root = %r holds no images for the %s reader", name, src.root, name)
    df = pd.DataFrame(rows, columns=COLUMNS)
    dupes = df.key[df.key.duplicated()]
    if len(dupes):
        raise RuntimeError(f"duplicate manifest keys (two sources share a root?): {list(dupes[:5])}")
    return df


def run(params: Params) -> None:
    df = scan(params)
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(MANIFEST, index=False)
    counts = df.groupby("source", sort=False).size().to_dict()
    print(f"scan: {len(df)} images in {MANIFEST} ({', '.join(f'{k} {v}' for k, v in counts.items())})")

"""UMDFaces: full photos in ``umdfaces_batch{N}/``, each face cut out with the box of
``umdfaces_batch{N}_ultraface.csv`` (FILE relative to the batch folder). The aspect rule and
the manifest's width/height apply to the box."""

from pathlib import Path

import pandas as pd

from ...config import MissingInput
from .base import FileJob


def read(root: Path):
    csvs = sorted(root.glob("umdfaces_batch*_ultraface.csv"))
    if not csvs:
        raise MissingInput(f"{root}: no umdfaces_batch*_ultraface.csv box files")
    for csv in csvs:
        batch = csv.name.removesuffix("_ultraface.csv")
        boxes = pd.read_csv(csv, usecols=["SUBJECT_ID", "FILE", "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT"])
        for row in boxes.sort_values("FILE").itertuples(index=False):
            crop = (float(row.FACE_X), float(row.FACE_Y), float(row.FACE_WIDTH), float(row.FACE_HEIGHT))
            yield FileJob("umdfaces", root, f"{batch}/{row.FILE}", str(row.SUBJECT_ID), crop)

"""Pictures of the synthetic world for people: AUs x identities, emotions x identities, and a crowd."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .identity import sample_identity
from .look import paint_background
from .emotions import EMOTIONS, expression
from .render import AU_NAMES, EXPRESSION_AUS, RENDERED_AUS, Pose, render_face
from .seeding import rng_for

CELL = 144
LEVELS = (0, 3, 5)


def _face(person, aus, size=CELL, unilateral=frozenset()) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    paint_background(img, person.background, False)
    return render_face(img, person, aus, Pose(size / 2, size * 0.52, size * 0.78), unilateral)


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def au_sheet(seed: int, n_identities: int = 4) -> np.ndarray:
    """Rows: the rendered AUs; columns: identities, each at intensity 0, 3 and 5."""
    people = [sample_identity(rng_for(seed, "sheet-identity", k), f"sheet:{k}") for k in range(n_identities)]
    margin, top = 210, 40
    sheet = np.full((top + CELL * len(RENDERED_AUS), margin + CELL * len(LEVELS) * n_identities, 3), 255, np.uint8)
    for c, person in enumerate(people):
        for j, level in enumerate(LEVELS):
            x = margin + CELL * (c * len(LEVELS) + j)
            _label(sheet, f"id {c + 1}: {level}", (x + 18, 25))
    for r, au in enumerate(RENDERED_AUS):
        y = top + CELL * r
        _label(sheet, f"AU{au} {AU_NAMES[au]}", (6, y + CELL // 2 + 5))
        if au in EXPRESSION_AUS:
            _label(sheet, "(FER images only)", (6, y + CELL // 2 + 25), 0.4)
        for c, person in enumerate(people):
            for j, level in enumerate(LEVELS):
                x = margin + CELL * (c * len(LEVELS) + j)
                sheet[y:y + CELL, x:x + CELL] = _face(person, {au: level})
    return sheet


def expression_sheet(seed: int, n_identities: int = 8) -> np.ndarray:
    """Rows: the emotions of the FER datasets; columns: different people, each a random variant of the prototype."""
    margin = 130
    sheet = np.full((CELL * len(EMOTIONS), margin + CELL * n_identities, 3), 255, np.uint8)
    for r, emotion in enumerate(EMOTIONS):
        _label(sheet, emotion, (6, CELL * r + CELL // 2 + 5), 0.55)
        for c in range(n_identities):
            person = sample_identity(rng_for(seed, "sheet-expression", r, c), f"sheet-expression:{r}:{c}")
            aus, unilateral = expression(rng_for(seed, "sheet-expression-aus", r, c), emotion)
            sheet[CELL * r:CELL * (r + 1), margin + CELL * c:margin + CELL * (c + 1)] = _face(person, aus, unilateral=unilateral)
    return sheet


def identity_sheet(seed: int, rows: int = 4, cols: int = 10) -> np.ndarray:
    """Neutral faces of ``rows x cols`` different people."""
    tiles = [_face(sample_identity(rng_for(seed, "crowd", k), f"crowd:{k}"), {}) for k in range(rows * cols)]
    return np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(rows)])


def write_sheets(seed: int, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "synth_aus.png", out_dir / "synth_identities.png", out_dir / "synth_expressions.png"]
    cv2.imwrite(str(paths[0]), au_sheet(seed))
    cv2.imwrite(str(paths[1]), identity_sheet(seed))
    cv2.imwrite(str(paths[2]), expression_sheet(seed))
    return paths

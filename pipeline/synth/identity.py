"""Persistent per-person traits of the synthetic world.

An :class:`Identity` holds everything that stays fixed for one person across all their images:
face shape, skin tone, hair, eyes, brows, nose, mouth, accessories and a preferred background.
Geometry is in *face-box units*: the face box (what a detector returns, ear to ear and
forehead to chin) is the unit square, x to the right and y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# BGR colours (OpenCV order).
_SKIN_LIGHT = np.array([196, 224, 255.0])
_SKIN_DARK = np.array([37, 56, 90.0])
HAIR_COLOURS = {
    "black": (20, 20, 25),
    "dark_brown": (30, 45, 70),
    "brown": (45, 75, 120),
    "blond": (110, 180, 220),
    "red": (40, 70, 170),
    "grey": (165, 165, 170),
}
HAIR_STYLES = ("short", "long", "bald", "curly", "fringe")
IRIS_COLOURS = ((60, 40, 20), (40, 70, 110), (140, 110, 60), (90, 120, 80))
CLOTHES = ((120, 60, 30), (40, 40, 160), (90, 90, 90), (40, 110, 40), (170, 170, 200), (30, 30, 30))


@dataclass(frozen=True)
class Identity:
    key: str
    sex: str  # "F" or "M"
    face_w: float  # half-width of the head ellipse
    head_top: float  # y of the top of the skull
    jaw_square: float  # 0 round jaw .. 1 square jaw
    skin: tuple[float, float, float]
    hair_style: str
    hair_colour: tuple[int, int, int]
    hairline: float
    eye_y: float
    eye_sep: float  # x distance of each eye centre from the midline
    eye_w: float
    eye_h: float
    iris: tuple[int, int, int]
    brow_gap: float  # brow height above the eye centre
    brow_arch: float
    brow_thick: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_colour: tuple[float, float, float]
    mouth_curve: float  # neutral corner height: < 0 corners up
    glasses: str  # "", "round" or "square"
    glasses_colour: tuple[int, int, int]
    beard: bool
    moustache: bool
    clothes: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    background_stripes: bool


def sample_identity(rng: np.random.Generator, key: str, sex: str | None = None) -> Identity:
    """Draw a person; ``sex`` fixes the first letter of AU-dataset subject IDs (F/M)."""
    sex = sex or ("F" if rng.random() < 0.5 else "M")
    tone = rng.beta(2.0, 2.0)
    skin = tuple((_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone).round(1).tolist())
    lip = np.array(skin) * np.array([0.75, 0.62, 0.95]) + np.array([10, 0, 20])
    hair_colour = list(HAIR_COLOURS)[rng.choice(len(HAIR_COLOURS), p=[0.3, 0.25, 0.2, 0.1, 0.07, 0.08])]
    style_p = [0.3, 0.35, 0.05, 0.12, 0.18] if sex == "F" else [0.5, 0.08, 0.15, 0.15, 0.12]
    glasses = rng.choice(["", "round", "square"], p=[0.7, 0.15, 0.15])
    bg = [tuple(int(c) for c in rng.integers(30, 230, 3)) for _ in range(2)]
    return Identity(
        key=key,
        sex=sex,
        face_w=float(rng.uniform(0.36, 0.43)),
        head_top=float(rng.uniform(-0.12, -0.04)),
        jaw_square=float(rng.uniform(0.0, 1.0)),
        skin=skin,
        hair_style=str(HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=style_p)]),
        hair_colour=HAIR_COLOURS[hair_colour],
        hairline=float(rng.uniform(0.07, 0.15)),
        eye_y=float(rng.uniform(0.39, 0.43)),
        eye_sep=float(rng.uniform(0.15, 0.19)),
        eye_w=float(rng.uniform(0.065, 0.085)),
        eye_h=float(rng.uniform(0.026, 0.036)),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
        brow_gap=float(rng.uniform(0.075, 0.095)),
        brow_arch=float(rng.uniform(0.0, 0.025)),
        brow_thick=float(rng.uniform(0.012, 0.024) * (1.25 if sex == "M" else 1.0)),
        nose_len=float(rng.uniform(0.14, 0.19)),
        nose_w=float(rng.uniform(0.045, 0.065)),
        mouth_y=float(rng.uniform(0.74, 0.77)),
        mouth_w=float(rng.uniform(0.20, 0.26)),
        lip_upper=float(rng.uniform(0.018, 0.03)),
        lip_lower=float(rng.uniform(0.024, 0.038)),
        lip_colour=tuple(np.clip(lip, 0, 255).round(1).tolist()),
        mouth_curve=float(rng.uniform(-0.008, 0.008)),
        glasses=str(glasses),
        glasses_colour=tuple(int(c) for c in rng.choice([20, 60, 140, 200], 3)),
        beard=bool(sex == "M" and rng.random() < 0.3),
        moustache=bool(sex == "M" and rng.random() < 0.3),
        clothes=CLOTHES[rng.integers(len(CLOTHES))],
        background=(bg[0], bg[1]),
        background_stripes=bool(rng.random() < 0.3),
    )

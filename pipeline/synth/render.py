"""Draw one synthetic face with given AU intensities, with OpenCV primitives.

Geometry lives in *face-box units* (the detector box is the unit square, x right, y down); a
:class:`Pose` maps it to pixels (centre, box side, roll, and yaw as a depth-dependent shift).
Polygons are drawn anti-aliased with 4 bits of sub-pixel precision, so a small change of
intensity moves edges by a fraction of a pixel and the image changes smoothly and
monotonically with it.

AU -> deformation (``a = intensity / 5``; displacements in face-box units, 0.01 ~ 1 px on the
demo's 112 px crops), each confined to :data:`AU_REGIONS`. Magnitudes follow the FACS descriptions:
at intensity E (5) the strong AUs are large, plainly visible movements (brows move by ~10% of the
face height, the jaw drops by 18% and opens the mouth wide), while lid tightener, dimpler, lip tightener
and lip pressor stay subtle, as in real data (``tests/test_render.py`` pins both down):

====  =====================  ==================================================================
AU    FACS name              what changes
====  =====================  ==================================================================
1     inner brow raiser      inner brow ends rise (0.10 a); central forehead wrinkles
2     outer brow raiser      outer brow ends rise (0.10 a); lateral forehead wrinkles
4     brow lowerer           brows drop (0.06 a) and knit to the midline (0.04 a); glabella furrows
6     cheek raiser           cheek apples rise (0.08 a) and brighten; lower lids push up (eye
                             aperture -55% a), upper lids narrow; crow's feet
7     lid tightener          lower lids rise (aperture -50% a), upper lids drop slightly (subtle)
9     nose wrinkler          wrinkles across the nasal bridge; nostrils and alae rise (0.035 a)
10    upper lip raiser       upper lip rises at the centre (0.06 a), teeth show; nasolabial folds deepen
12    lip corner puller      corners rise (0.09 a) and widen (0.06 a) into a smile; nasolabial folds deepen
14    dimpler                corners tighten inward (0.01 a); dimples beside the corners (subtle)
15    lip corner depressor   corners drop (0.06 a)
17    chin raiser            lower lip pushed up (0.025 a); chin boss rises (0.035 a); chin skin dimples
23    lip tightener          vermilion thins (-55% a); mouth narrows (0.02 a) (subtle)
24    lip pressor            vermilion thins (-45% a); mouth line flattens and darkens (subtle)
25    lips part              lower lip drops away from the upper (gap 0.07 a): mouth interior, teeth
26    jaw drop               chin and jaw drop (0.18 a) and pull the lips apart (gap 0.6-1.0 x the drop)
====  =====================  ==================================================================

Two more AUs are rendered for still expressions only (the FER datasets' prototypes of surprise, fear
and anger), never in the AU datasets' sequences, so those stay as they were:

====  =====================  ==================================================================
5     upper lid raiser       upper lids rise (aperture +130% a), white shows above the iris
20    lip stretcher          lips stretch sideways (0.13 a), corners pulled down (0.04 a), lips thin (-40% a), creases beside the corners
====  =====================  ==================================================================

AU 12 and 14 can be made unilateral (``render_face(..., unilateral={12, 14})``: the subject's right
side only, the image's left at zero yaw), as in contempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from .identity import Identity

AUS = (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24, 25, 26)  # the AU datasets' sequences
EXPRESSION_AUS = (5, 20)  # rendered for still expressions only
RENDERED_AUS = tuple(sorted(AUS + EXPRESSION_AUS))
UNILATERAL_AUS = (12, 14)  # may act on one side of the face only
AU_NAMES = {5: "upper lid raiser", 20: "lip stretcher",
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 6: "cheek raiser",
    7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser", 12: "lip corner puller",
    14: "dimpler", 15: "lip corner depressor", 17: "chin raiser", 23: "lip tightener",
    24: "lip pressor", 25: "lips part", 26: "jaw drop",
}
# (x0, y0, x1, y1) in face-box units: no pixel outside an AU's box changes with that AU alone
# (at zero roll and yaw; a rotated pose rotates the boxes with the face).
AU_REGIONS = {
    1: (0.18, 0.05, 0.82, 0.40), 2: (0.0, 0.05, 1.0, 0.40), 4: (0.18, 0.15, 0.82, 0.44),
    6: (0.05, 0.30, 0.95, 0.72), 7: (0.12, 0.30, 0.88, 0.50), 9: (0.32, 0.36, 0.68, 0.66),
    10: (0.2, 0.50, 0.8, 0.84), 12: (0.15, 0.50, 0.85, 0.88), 14: (0.2, 0.62, 0.8, 0.86),
    15: (0.2, 0.62, 0.8, 0.88), 17: (0.25, 0.64, 0.75, 1.04), 23: (0.2, 0.62, 0.8, 0.88),
    24: (0.2, 0.62, 0.8, 0.90), 25: (0.25, 0.64, 0.75, 0.92), 26: (0.0, 0.64, 1.0, 1.25),
    5: (0.12, 0.28, 0.88, 0.46), 20: (0.15, 0.55, 0.85, 0.88),
}
_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Pose:
    cx: float  # face-box centre, pixels
    cy: float
    size: float  # face-box side, pixels
    roll: float = 0.0  # degrees, clockwise in the image
    yaw: float = 0.0  # degrees, positive turns the face to the image's right

    def box(self) -> tuple[float, float, float, float]:
        """The axis-aligned face box (x, y, w, h) a detector would report."""
        return (self.cx - self.size / 2, self.cy - self.size / 2, self.size, self.size)


class _Canvas:
    def __init__(self, img: np.ndarray, pose: Pose):
        self.img = img
        self.pose = pose
        r, y = np.radians(pose.roll), np.radians(pose.yaw)
        self.rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]]) * pose.size
        self.cos_yaw, self.sin_yaw = np.cos(y), np.sin(y)

    def px(self, pts: np.ndarray, depth: float) -> np.ndarray:
        """Face-box points [N, 2] -> fixed-point pixel coordinates [N, 2] (int32, 4 fractional bits)."""
        uv = np.array(pts, dtype=np.float64).reshape(-1, 2) - 0.5
        uv[:, 0] = uv[:, 0] * self.cos_yaw + depth * self.sin_yaw
        out = uv @ self.rot.T
        out += (self.pose.cx, self.pose.cy)
        out *= _ONE
        return np.rint(out).astype(np.int32)

    def fill(self, pts, colour, depth=0.0, alpha=1.0):
        if alpha <= 0.0:
            return
        poly = self.px(pts, depth)
        if alpha >= 1.0:
            cv2.fillPoly(self.img, [poly], _bgr(colour), cv2.LINE_AA, _SHIFT)
            return
        h, w = self.img.shape[:2]
        x0, y0 = np.maximum(poly.min(0) // _ONE - 2, 0)
        x1, y1 = np.minimum(poly.max(0) // _ONE + 3, (w, h))
        if x1 <= x0 or y1 <= y0:
            return
        roi = self.img[y0:y1, x0:x1]
        layer = roi.copy()
        cv2.fillPoly(layer, [poly - np.array([x0, y0], np.int32) * _ONE], _bgr(colour), cv2.LINE_AA, _SHIFT)
        cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0, dst=roi)

    def stroke(self, pts, width, colour, depth=0.0, alpha=1.0):
        if alpha <= 0.0:
            return
        self.fill(_stroke_polygon(np.asarray(pts, float), width), colour, depth, alpha)


def to_pixels(pose: Pose, pts, depth: float = 0.0) -> np.ndarray:
    """Face-box points ``[N, 2]`` -> pixel coordinates ``[N, 2]`` (float) of a face drawn at ``pose``."""
    return _Canvas(None, pose).px(pts, depth) / _ONE


def _bgr(colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in colour)


def _stroke_polygon(pts: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """A polyline thickened into a polygon (width may taper along the line)."""
    d = np.empty_like(pts)
    d[1:-1] = pts[2:] - pts[:-2]
    d[0], d[-1] = pts[1] - pts[0], pts[-1] - pts[-2]
    n = d[:, ::-1] * (-1.0, 1.0)
    n *= (np.asarray(width, dtype=float) / 2 / (np.hypot(n[:, 0], n[:, 1]) + 1e-12))[:, None]
    return np.concatenate([pts + n, (pts - n)[::-1]])


def _ellipse(cx, cy, rx, ry, n=28, a0=0.0, a1=2 * np.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _shade(colour, k) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * k, 0, 255)) for c in colour)


def _intensities(aus: Mapping[int, float] | np.ndarray) -> dict[int, float]:
    """AU -> intensity / 5 for every rendered AU (a sequence's array covers :data:`AUS`; the rest are 0)."""
    if isinstance(aus, Mapping):
        unknown = set(aus) - set(RENDERED_AUS)
        if unknown:
            raise ValueError(f"AUs {sorted(unknown)} are not rendered; rendered AUs: {RENDERED_AUS}")
        return {au: float(np.clip(aus.get(au, 0.0), 0, 5)) / 5 for au in RENDERED_AUS}
    arr = np.asarray(aus, dtype=float)
    if arr.shape != (len(AUS),):
        raise ValueError(f"expected {len(AUS)} intensities in the order {AUS}, got shape {arr.shape}")
    return {**{au: 0.0 for au in EXPRESSION_AUS}, **{au: float(np.clip(v, 0, 5)) / 5 for au, v in zip(AUS, arr)}}


def _sided(a: dict[int, float], unilateral: frozenset[int], s: int) -> dict[int, float]:
    """The intensities acting on side ``s`` (-1: the subject's right, the image's left at zero yaw)."""
    return a if s < 0 or not unilateral else {au: 0.0 if au in unilateral else v for au, v in a.items()}


CHIN_Y, JAW_Y0 = 0.97, 0.70


def _jaw_drop(pts: np.ndarray, drop: float) -> np.ndarray:
    """Move points below the mouth line down, in proportion to their distance from it."""
    pts = pts.copy()
    below = pts[:, 1] > JAW_Y0
    pts[below, 1] += drop * np.minimum((pts[below, 1] - JAW_Y0) / (CHIN_Y - JAW_Y0), 1.0)
    return pts


def _head_outline(p: Identity, drop: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    cy = 0.45
    up = s < 0
    x = np.where(up, 0.5 + p.face_w * c, 0.5 + p.face_w * (1 - 0.22 * s**2) * np.sign(c) * np.abs(c) ** (1 - 0.35 * p.jaw_square))
    y = np.where(up, cy + (cy - p.head_top) * s, cy + (CHIN_Y - cy) * np.abs(s) ** (1 - 0.3 * p.jaw_square))
    return _jaw_drop(np.stack([x, y], 1), drop)


def render_face(img: np.ndarray, p: Identity, aus: Mapping[int, float] | np.ndarray, pose: Pose,
                unilateral: frozenset[int] | set[int] = frozenset()) -> np.ndarray:
    """Draw identity ``p`` making expression ``aus`` (AU -> intensity 0-5) onto ``img`` in place; the AUs
    in ``unilateral`` (of :data:`UNILATERAL_AUS`) act on the subject's right side only."""
    a = _intensities(aus)
    uni = frozenset(unilateral)
    if not uni <= set(UNILATERAL_AUS):
        raise ValueError(f"AUs {sorted(uni - set(UNILATERAL_AUS))} cannot be unilateral; only {UNILATERAL_AUS}")
    cv = _Canvas(img, pose)
    skin, dark = p.skin, _shade(p.skin, 0.55)
    drop = 0.18 * a[26]

    # body and hair behind the head
    cv.fill(_ellipse(0.5, 1.62, 0.85, 0.42), p.clothes, -0.1)
    if p.hair_style == "long":
        cv.fill(np.concatenate([_ellipse(0.5, 0.45, p.face_w + 0.09, 0.62, a0=np.pi, a1=2 * np.pi),
                                [[0.5 + p.face_w + 0.12, 1.3], [0.5 - p.face_w - 0.12, 1.3]]]), p.hair_colour, -0.1)
    cv.fill([[0.37, 0.8], [0.63, 0.8], [0.66, 1.35], [0.34, 1.35]], _shade(skin, 0.85), -0.05)
    for s in (-1, 1):
        cv.fill(_ellipse(0.5 + s * p.face_w, p.eye_y + 0.06, 0.035, 0.075), _shade(skin, 0.93), -0.05)
    cv.fill(_head_outline(p, drop), skin)

    _draw_beard(cv, p, drop)
    _draw_eyes(cv, p, a)
    _draw_cheeks(cv, p, a)
    _draw_brows(cv, p, a, dark)
    _draw_nose(cv, p, a, dark)
    _draw_mouth(cv, p, a, dark, drop, uni)
    _draw_chin(cv, p, a, dark, drop, uni)
    if p.glasses:
        _draw_glasses(cv, p)
    _draw_hair_front(cv, p)
    return img


def _draw_beard(cv: _Canvas, p: Identity, drop: float) -> None:
    if p.moustache:
        ny = p.eye_y + p.nose_len
        top = max(ny + 0.015, p.mouth_y - 0.06)
        cv.fill([[0.5 - p.mouth_w * 0.58, p.mouth_y - 0.012], [0.5 - p.mouth_w * 0.4, top], [0.5 + p.mouth_w * 0.4, top],
                 [0.5 + p.mouth_w * 0.58, p.mouth_y - 0.012], [0.5, p.mouth_y - 0.03]], p.hair_colour, 0.15, 0.9)
    if p.beard:
        outline = _head_outline(p, 0.0)
        lower = outline[outline[:, 1] > p.mouth_y - 0.06]
        lower = lower[np.argsort(np.arctan2(lower[:, 1] - 0.45, lower[:, 0] - 0.5))]
        inner = _ellipse(0.5, p.mouth_y - 0.06, p.face_w * 0.75, 0.15, n=24, a0=0.0, a1=np.pi)[::-1]
        cv.fill(_jaw_drop(np.concatenate([lower[::-1], inner[::-1]]), drop), p.hair_colour, 0.05, 0.85)


def _lids(p: Identity, a: dict[int, float], s: int):
    ex, ey = 0.5 + s * p.eye_sep, p.eye_y
    t = np.linspace(-1, 1, 15)
    uh = p.eye_h * (1 - 0.2 * a[7]) * (1 - 0.15 * a[6]) * (1 + 1.3 * a[5])
    lh = p.eye_h * 0.8 * (1 - 0.5 * a[7]) * (1 - 0.55 * a[6])
    x = ex + t * p.eye_w
    return ex, ey, np.stack([x, ey - uh * (1 - t**2)], 1), np.stack([x, ey + lh * (1 - t**2)], 1)


def _draw_eyes(cv: _Canvas, p: Identity, a: dict[int, float]) -> None:
    for s in (-1, 1):
        ex, ey, upper, lower = _lids(p, a, s)
        cv.fill(np.concatenate([upper, lower[::-1]]), (236, 236, 240), 0.1)
        r = 0.42 * p.eye_w
        cv.fill(_ellipse(ex, ey, r, r), p.iris, 0.11)
        cv.fill(_ellipse(ex, ey, 0.4 * r, 0.4 * r), (15, 15, 15), 0.11)
        top, bot = ey - 2.3 * p.eye_h, ey + 2.2 * p.eye_h
        cv.fill(np.concatenate([upper, [[upper[-1, 0] + 0.01, top], [upper[0, 0] - 0.01, top]]]), p.skin, 0.1)
        cv.fill(np.concatenate([lower, [[lower[-1, 0] + 0.01, bot], [lower[0, 0] - 0.01, bot]]]), p.skin, 0.1)
        cv.stroke(upper, 0.008, _shade(p.skin, 0.3), 0.1)
        cv.stroke(lower, 0.0035, _shade(p.skin, 0.7), 0.1)


def _draw_cheeks(cv: _Canvas, p: Identity, a: dict[int, float]) -> None:
    for s in (-1, 1):
        ex, ey = 0.5 + s * p.eye_sep, p.eye_y
        lift = 0.08 * a[6]
        cv.fill(_ellipse(ex + s * 0.01, ey + 0.16 - lift, 0.08, 0.055), _shade(p.skin, 1.15), 0.08, 0.2 + 0.6 * a[6])
        cv.stroke(_ellipse(ex, ey + 0.055 - 0.3 * lift, p.eye_w * 0.9, 0.015, n=12, a0=0.2, a1=np.pi - 0.2),
                  0.005, _shade(p.skin, 0.6), 0.08, 0.8 * a[6])
        corner = np.array([ex + s * p.eye_w * 1.2, ey])
        for ang in (-0.35, 0.0, 0.35):
            d = np.array([s * np.cos(ang), np.sin(ang)]) * 0.055
            cv.stroke(np.stack([corner, corner + 0.5 * d, corner + d]), 0.004, _shade(p.skin, 0.55), 0.05, 0.9 * a[6])


def _draw_brows(cv: _Canvas, p: Identity, a: dict[int, float], dark) -> None:
    u = np.linspace(0, 1, 9)
    colour = p.hair_colour if p.hair_style != "bald" else _shade(p.skin, 0.4)
    for s in (-1, 1):
        x = 0.5 + s * (0.045 + u * (p.eye_sep + 1.15 * p.eye_w - 0.045)) - s * 0.04 * a[4] * (1 - u) ** 0.7
        y = (p.eye_y - p.brow_gap - p.brow_arch * np.sin(np.pi * u * 0.9) + 0.012 * u**2
             - 0.10 * a[1] * (1 - u) ** 1.2 - 0.10 * a[2] * u**1.2 + 0.06 * a[4] * (1 - 0.4 * u))
        cv.stroke(np.stack([x, y], 1), p.brow_thick * (1 - 0.45 * u), colour, 0.12)
        base = p.eye_y - p.brow_gap
        for k in (1, 2):  # forehead wrinkles: AU1 centre, AU2 sides
            wy = base - 0.05 * k
            xc = np.linspace(0.5 + s * 0.01, 0.5 + s * 0.11, 6)
            cv.stroke(np.stack([xc, wy - 0.006 * np.sin((xc - 0.5) * 20)], 1), 0.005, dark, 0.12, 0.8 * a[1])
            xs = np.linspace(0.5 + s * 0.13, 0.5 + s * 0.25, 6)
            cv.stroke(np.stack([xs, wy + 0.1 * np.abs(xs - 0.5) - 0.013], 1), 0.005, dark, 0.12, 0.8 * a[2])
        gx = 0.5 + s * 0.018
        cv.stroke([[gx, base - 0.01], [gx + s * 0.004, base + 0.03], [gx + s * 0.01, base + 0.06]], 0.006, dark, 0.15, 0.9 * a[4])


def _draw_nose(cv: _Canvas, p: Identity, a: dict[int, float], dark) -> None:
    ny = p.eye_y + p.nose_len
    lift = 0.035 * a[9]
    for s in (-1, 1):
        cv.stroke([[0.5 + s * 0.03, p.eye_y + 0.01], [0.5 + s * 0.035, ny - 0.06], [0.5 + s * p.nose_w * 0.8, ny - 0.03]],
                  0.005, _shade(p.skin, 0.8), 0.2, 0.4 + 0.5 * a[9])
        cv.fill(_ellipse(0.5 + s * p.nose_w * 0.45, ny - lift, 0.014, 0.008), _shade(p.skin, 0.35), 0.2)
        cv.stroke(_ellipse(0.5 + s * p.nose_w * 0.75, ny - 0.012 - lift, 0.02, 0.022, n=10,
                           a0=np.pi / 2 - s * 1.4, a1=np.pi / 2 + s * 0.2), 0.004, _shade(p.skin, 0.65), 0.2)
    cv.fill(_ellipse(0.5, ny - 0.02 - 0.5 * lift, p.nose_w * 0.45, 0.022), _shade(p.skin, 1.06), 0.25, 0.6)
    for k in range(3):  # AU9 wrinkles across the bridge
        wy = p.eye_y + 0.03 + 0.02 * k
        cv.stroke([[0.45, wy + 0.008], [0.5, wy], [0.55, wy + 0.008]], 0.005, dark, 0.2, 0.9 * a[9])


def _mouth_curves(p: Identity, a: dict[int, float], drop: float, uni: frozenset[int] = frozenset()):
    t = np.linspace(-1, 1, 25)
    right = (t < 0).astype(float)  # the subject's right half of the mouth (the image's left)
    a12, a14 = ((a[au] * right if au in uni else a[au]) for au in (12, 14))
    hw = p.mouth_w / 2 + 0.06 * a12 - 0.01 * a14 - 0.02 * a[23] + 0.13 * a[20]
    x = 0.5 + t * hw
    corner = (p.mouth_curve * (1 - 0.7 * a[24]) - 0.09 * a12 + 0.06 * a[15] - 0.008 * a14 + 0.04 * a[20]) * np.abs(t) ** 2.5
    line = p.mouth_y + corner - 0.025 * a[17] * (1 - t**2) + 0.2 * drop
    gate = 0.6 + 0.4 * min(1.0, 4 * a[25])  # the dropped jaw pulls the lips apart, more so when they part (AU25)
    gap = (0.07 * a[25] + drop * gate) * (1 - t**2) ** 0.8
    raise10 = 0.06 * a[10] * np.sqrt(1 - t**2)
    thin = (1 - 0.55 * a[23]) * (1 - 0.45 * a[24]) * (1 - 0.4 * a[20])
    ut = p.lip_upper * thin * (1 - t**2) ** 0.6 * (1 - 0.25 * np.exp(-((t / 0.15) ** 2)))
    lt = p.lip_lower * thin * (1 + 0.25 * a[17]) * (1 - t**2) ** 0.5
    up_bot = line - raise10
    lo_top = line + gap
    return x, line, np.stack([x, up_bot - ut], 1), np.stack([x, up_bot], 1), np.stack([x, lo_top], 1), np.stack([x, lo_top + lt], 1)


def _nasolabial_end(p: Identity, a: dict[int, float], s: int) -> np.ndarray:
    return np.array([0.5 + s * (p.mouth_w / 2 + 0.03 + 0.04 * a[12]), p.mouth_y + 0.03 - 0.05 * a[12]])


def _draw_mouth(cv: _Canvas, p: Identity, a: dict[int, float], dark, drop: float, uni: frozenset[int] = frozenset()) -> None:
    ny = p.eye_y + p.nose_len
    for s in (-1, 1):
        side = _sided(a, uni, s)
        start = np.array([0.5 + s * (p.nose_w + 0.02), ny - 0.01])
        end = _nasolabial_end(p, side, s)
        mid = (start + end) / 2 + np.array([s * 0.02, 0.0])
        cv.stroke(np.stack([start, mid, end]), 0.007, dark, 0.12, 0.12 + 0.7 * max(side[10], side[12]))
    x, line, up_top, up_bot, lo_top, lo_bot = _mouth_curves(p, a, drop, uni)
    cv.fill(np.concatenate([up_bot, lo_top[::-1]]), (45, 30, 70), 0.15)
    teeth = up_bot.copy()
    teeth[:, 1] += np.minimum(0.025, lo_top[:, 1] - up_bot[:, 1])
    cv.fill(np.concatenate([up_bot, teeth[::-1]]), (222, 228, 232), 0.15)
    cv.fill(np.concatenate([up_top, up_bot[::-1]]), p.lip_colour, 0.15)
    cv.fill(np.concatenate([lo_top, lo_bot[::-1]]), _shade(p.lip_colour, 1.08), 0.15)
    cv.stroke(np.stack([x, line], 1)[2:-2], 0.004 * (1 + a[24]), _shade(p.lip_colour, 0.45), 0.15, 0.6 + 0.3 * a[24])
    for s, idx in ((-1, 0), (1, -1)):  # AU14 dimples beside the corners
        cx, cy = x[idx] + s * 0.022, line[idx]
        arc = _ellipse(cx, cy, 0.008, 0.016, n=8, a0=-1.2, a1=1.2)
        arc[:, 0] = cx + s * (arc[:, 0] - cx)  # mirror on the left so both open toward the mouth
        cv.stroke(arc, 0.005, dark, 0.12, 0.7 * _sided(a, uni, s)[14])
        crease = np.array([[cx + s * 0.01, cy + 0.004], [cx + s * 0.035, cy + 0.012], [cx + s * 0.055, cy + 0.026]])
        cv.stroke(crease, 0.007, dark, 0.12, 0.9 * a[20])  # AU20: the skin stretched beside the corners
    cv.fill(_ellipse(0.5, up_top[:, 1].min() - 0.012, p.mouth_w * 0.35, 0.01), _shade(p.skin, 1.1), 0.14, 0.35 * a[24])
    cv.fill(_ellipse(0.5, lo_bot[:, 1].max() + 0.012, p.mouth_w * 0.3, 0.01), _shade(p.skin, 1.1), 0.14, 0.35 * a[24])


# Fixed chin-skin pattern (AU17's "orange peel"), identical for everyone.
_CHIN_DIMPLES = np.random.default_rng(17).uniform([-0.07, -0.03], [0.07, 0.03], (9, 2))


def _draw_chin(cv: _Canvas, p: Identity, a: dict[int, float], dark, drop: float, uni: frozenset[int] = frozenset()) -> None:
    *_, lo_bot = _mouth_curves(p, a, drop, uni)
    sulcus_y = lo_bot[:, 1].max() + 0.03
    cv.stroke([[0.44, sulcus_y + 0.004], [0.5, sulcus_y], [0.56, sulcus_y + 0.004]], 0.006, dark, 0.1, 0.2 + 0.6 * a[17])
    boss = np.array([0.5, 0.9 - 0.035 * a[17] + drop])
    cv.fill(_ellipse(boss[0], boss[1], 0.065, 0.032), _shade(p.skin, 1.15), 0.1, 0.5 * a[17])
    for dx, dy in _CHIN_DIMPLES:
        cv.fill(_ellipse(boss[0] + dx, boss[1] + dy, 0.006, 0.005, n=8), dark, 0.1, 0.55 * a[17])


def _draw_glasses(cv: _Canvas, p: Identity) -> None:
    colour = p.glasses_colour
    for s in (-1, 1):
        ex, ey = 0.5 + s * p.eye_sep, p.eye_y
        r = p.eye_w * 1.35
        if p.glasses == "round":
            rim = _ellipse(ex, ey, r, r * 0.8, n=36)
        else:
            rim = np.array([[ex - r, ey - 0.7 * r], [ex + r, ey - 0.7 * r], [ex + r, ey + 0.65 * r], [ex - r, ey + 0.65 * r], [ex - r, ey - 0.7 * r]])
        cv.fill(rim, (200, 220, 230), 0.14, 0.12)
        cv.stroke(np.concatenate([rim, rim[:2]]), 0.01, colour, 0.14)
        cv.stroke([[ex + s * r, ey - 0.02], [0.5 + s * p.face_w, ey]], 0.008, colour, 0.05)
    cv.stroke([[0.5 - p.eye_sep + p.eye_w * 1.35, p.eye_y - 0.02], [0.5, p.eye_y - 0.035],
               [0.5 + p.eye_sep - p.eye_w * 1.35, p.eye_y - 0.02]], 0.008, colour, 0.2)


def _draw_hair_front(cv: _Canvas, p: Identity) -> None:
    if p.hair_style == "bald":
        return
    side_y = p.eye_y - 0.1
    t = np.linspace(np.pi, 2 * np.pi, 30)
    outer = np.stack([0.5 + (p.face_w + 0.025) * np.cos(t), 0.45 + (0.45 - p.head_top + 0.035) * np.sin(t)], 1)
    outer = np.concatenate([[[0.5 - p.face_w - 0.02, side_y]], outer, [[0.5 + p.face_w + 0.02, side_y]]])
    xs = np.linspace(0.5 + p.face_w * 0.98, 0.5 - p.face_w * 0.98, 30)
    line = p.hairline + 0.12 if p.hair_style == "fringe" else p.hairline
    line = np.minimum(line, 0.23)
    inner = line + (side_y - line) * (np.abs(xs - 0.5) / (p.face_w * 0.98)) ** 4
    if p.hair_style == "fringe":
        inner = inner + 0.012 * np.sin(xs * 60)
    cv.fill(np.concatenate([outer, np.stack([xs, inner], 1)]), p.hair_colour, 0.0)
    if p.hair_style == "curly":
        for ang in np.linspace(np.pi * 1.05, np.pi * 1.95, 9):
            cx, cy = 0.5 + (p.face_w + 0.02) * np.cos(ang), 0.45 + (0.45 - p.head_top + 0.03) * np.sin(ang)
            cv.fill(_ellipse(cx, cy, 0.05, 0.045), _shade(p.hair_colour, 1.15), 0.0)


# ------------------------------------------------------------------------------ region maps
# The LaPa label set (as pipeline.fsfm.regions.LAPA): 0 background, 1 skin, 2/3 brows, 4/5 eyes,
# 6 nose, 7 upper lip, 8 inner mouth, 9 lower lip, 10 hair. Neck, ears and clothes are background,
# beards and moustaches hair, glasses not a class (the eyes behind them keep their label), as in LaPa.
class _Labels(_Canvas):
    """A canvas that paints labels: hard edges (no anti-aliasing, no blending), one channel; while
    ``label`` is set, every fill paints it (the face's own drawing code then paints a region)."""

    label: int | None = None

    def fill(self, pts, colour, depth=0.0, alpha=1.0):
        cv2.fillPoly(self.img, [self.px(pts, depth)], self.label if self.label is not None else int(colour),
                     cv2.LINE_8, _SHIFT)


def render_regions(shape: tuple[int, int], p: Identity, aus: Mapping[int, float] | np.ndarray, pose: Pose,
                   unilateral: frozenset[int] | set[int] = frozenset()) -> np.ndarray:
    """The exact LaPa label map (uint8, ``shape`` = (height, width)) of the face :func:`render_face` draws
    with the same arguments: every region from the same geometry, so it follows pose and expression."""
    a, uni = _intensities(aus), frozenset(unilateral)
    labels = _Labels(np.zeros(shape, np.uint8), pose)
    drop = 0.18 * a[26]
    if p.hair_style == "long":
        labels.fill(np.concatenate([_ellipse(0.5, 0.45, p.face_w + 0.09, 0.62, a0=np.pi, a1=2 * np.pi),
                                    [[0.5 + p.face_w + 0.12, 1.3], [0.5 - p.face_w - 0.12, 1.3]]]), 10, -0.1)
    labels.fill([[0.37, 0.8], [0.63, 0.8], [0.66, 1.35], [0.34, 1.35]], 0, -0.05)  # the neck, in front of long hair
    for s in (-1, 1):  # ears: skin
        labels.fill(_ellipse(0.5 + s * p.face_w, p.eye_y + 0.06, 0.035, 0.075), 1, -0.05)
    labels.fill(_head_outline(p, drop), 1)
    labels.label = 10
    _draw_beard(labels, p, drop)
    labels.label = None
    for side, s in ((4, -1), (5, 1)):
        _, _, upper, lower = _lids(p, a, s)
        labels.fill(np.concatenate([upper, lower[::-1]]), side, 0.1)
    u = np.linspace(0, 1, 9)
    for side, s in ((2, -1), (3, 1)):  # the brow strokes of _draw_brows
        x = 0.5 + s * (0.045 + u * (p.eye_sep + 1.15 * p.eye_w - 0.045)) - s * 0.04 * a[4] * (1 - u) ** 0.7
        y = (p.eye_y - p.brow_gap - p.brow_arch * np.sin(np.pi * u * 0.9) + 0.012 * u**2
             - 0.10 * a[1] * (1 - u) ** 1.2 - 0.10 * a[2] * u**1.2 + 0.06 * a[4] * (1 - 0.4 * u))
        labels.fill(_stroke_polygon(np.stack([x, y], 1), p.brow_thick * (1 - 0.45 * u)), side, 0.12)
    ny, lift = p.eye_y + p.nose_len, 0.035 * a[9]
    labels.fill([[0.5 - 0.035, p.eye_y + 0.01], [0.5 + 0.035, p.eye_y + 0.01], [0.5 + p.nose_w * 0.95, ny - lift],
                 [0.5 + p.nose_w * 0.6, ny + 0.012 - lift], [0.5 - p.nose_w * 0.6, ny + 0.012 - lift],
                 [0.5 - p.nose_w * 0.95, ny - lift]], 6, 0.2)
    _, _, up_top, up_bot, lo_top, lo_bot = _mouth_curves(p, a, drop, uni)
    labels.fill(np.concatenate([up_bot, lo_top[::-1]]), 8, 0.15)
    labels.fill(np.concatenate([up_top, up_bot[::-1]]), 7, 0.15)
    labels.fill(np.concatenate([lo_top, lo_bot[::-1]]), 9, 0.15)
    labels.label = 10
    _draw_hair_front(labels, p)
    return labels.img

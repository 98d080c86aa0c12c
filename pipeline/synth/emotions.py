"""Basic emotions as AU combinations: the expressions of the synthetic FER datasets.

The prototypes follow the EMFACS-style combinations of the FACS literature (Ekman & Friesen; the
issue's list): happiness AU 6+12, surprise 1+2+5+26, sadness 1+4+15, anger 4+5+7+23, disgust
9+10+15, fear 1+2+4+5+20+26 and contempt a unilateral 12+14. Each image varies its prototype: every
AU's intensity is scaled by a random factor, a non-essential AU is sometimes left out, and a few
unrelated AUs appear at trace intensity, so that no two faces of one class are the same and the
classes overlap a little, as posed and in-the-wild expressions do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import RENDERED_AUS


@dataclass(frozen=True)
class Prototype:
    aus: dict[int, float]  # AU -> intensity 0-5 at the prototype's apex
    core: tuple[int, ...]  # AUs that are never left out (the ones that define the class)
    unilateral: frozenset[int] = frozenset()


PROTOTYPES: dict[str, Prototype] = {
    "neutral": Prototype({}, ()),
    "happiness": Prototype({6: 3.5, 12: 4.5, 25: 1.5}, (6, 12)),
    "sadness": Prototype({1: 3.5, 4: 2.5, 15: 3.5, 17: 1.5}, (1, 15)),
    "surprise": Prototype({1: 4.0, 2: 4.0, 5: 3.5, 26: 4.0}, (1, 2, 26)),
    "fear": Prototype({1: 3.5, 2: 3.0, 4: 3.0, 5: 4.0, 20: 4.0, 26: 2.5}, (1, 4, 5, 20)),
    "anger": Prototype({4: 4.0, 5: 3.0, 7: 3.0, 23: 3.5}, (4, 23)),
    "disgust": Prototype({9: 4.0, 10: 3.5, 15: 2.5}, (9, 10)),
    "contempt": Prototype({12: 3.0, 14: 4.0}, (12, 14), frozenset({12, 14})),
}
EMOTIONS = tuple(PROTOTYPES)


def expression(rng: np.random.Generator, emotion: str) -> tuple[dict[int, float], frozenset[int]]:
    """One face's AU intensities for ``emotion`` and the AUs that act on one side only."""
    proto = PROTOTYPES[emotion]
    aus = {}
    for au, level in proto.aus.items():
        if au in proto.core or rng.random() > 0.25:
            aus[au] = float(np.clip(level * rng.uniform(0.6, 1.2), 0.5, 5.0))
    for au in rng.choice(RENDERED_AUS, size=int(rng.integers(0, 3)), replace=False):
        if int(au) not in aus:  # trace activity of unrelated AUs
            aus[int(au)] = float(rng.uniform(0.3, 1.3))
    return aus, proto.unilateral

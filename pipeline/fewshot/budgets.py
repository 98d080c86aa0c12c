"""Which training subjects are labelled at each budget: seeded per fold, nested, the same for every encoder.

One seeded permutation of a fold's training subjects (validation subjects excluded, they stay fixed
for model selection) is drawn per fold; a budget of k subjects is its first k, so 2 is inside 5,
inside 10, inside ``all``, and every encoder is compared on the same faces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.shards import seed_for

ALL = "all"


def budget_subjects(train_subjects: Sequence[str], budgets: Sequence[int | str], seed: int, fold: int) -> dict[str, list[str]]:
    """``{str(budget): subjects}`` for each budget (an integer >= 1, or ``"all"`` or 0 for all), in budget order."""
    pool = sorted(set(train_subjects))
    order = [pool[i] for i in np.random.default_rng(seed_for(seed, 1000 + fold)).permutation(len(pool))]
    out = {}
    for b in budgets:
        if b == ALL or (b == 0 and not isinstance(b, bool)):
            out[ALL] = sorted(order)
        elif isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= len(pool):
            out[str(b)] = sorted(order[:b])
        else:
            raise ValueError(f"few-shot budget {b!r}: expected an integer from 1 to {len(pool)} (the fold's training "
                             f"subjects), or {ALL!r} or 0 for all")
    return out

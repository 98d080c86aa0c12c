"""Subject-exclusive folds of BP4D, BP4D+ and DISFA, as data.

Fold ``k`` (1-based) tests on ``FOLDS[dataset][k-1]`` and trains on the other lists. These are
the lists used by the FMAE-IAT release. JAA-Net and ME-GraphAU use the same three BP4D groups
and the same three DISFA groups but number them differently (ME-GraphAU's fold ``n`` tests on
its part ``4 - n``), so only 3-fold averages are comparable across papers, never single folds.
"""

from __future__ import annotations

AUS = {
    "bp4d": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "bp4dplus": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "disfa": (1, 2, 4, 6, 9, 12, 25, 26),
}

FOLDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "bp4d": (
        tuple("F001 F002 F008 F009 F010 F016 F018 F023 M001 M004 M007 M008 M012 M014".split()),
        tuple("F003 F005 F011 F013 F020 F022 M002 M005 M010 M011 M013 M016 M017 M018".split()),
        tuple("F004 F006 F007 F012 F014 F015 F017 F019 F021 M003 M006 M009 M015".split()),
    ),
    "bp4dplus": (
        tuple("M040 F072 M015 M029 M003 F076 F053 F026 F044 F066 F057 F061 F071 M050 M033 F079 F020 M025 "
              "F014 F004 F013 M017 F033 M042 M004 F038 F019 M036 M026 M048 F039 F046 M051 F047 M020".split()),
        tuple("F074 F012 F034 M001 F056 F075 M009 M038 F024 M047 F016 M045 M034 M022 F060 M011 M044 M046 "
              "M005 M028 F077 F028 M055 M019 F032 F030 M037 M043 F031 F022 M023 M018 M016 F065 M052".split()),
        tuple("F029 F054 F064 F045 F009 F040 F008 M041 F063 M056 M024 F001 F080 M010 F062 F035 M054 F052 "
              "F027 F043 F042 F050 M057 F078 F058 F017 M035 M030 M027 F021 M031 F069 F002 M008 F068".split()),
        tuple("M058 F037 F010 F023 M007 M002 F025 F073 F048 F041 F051 F011 M032 F005 M021 F018 M013 M049 "
              "M014 F070 F006 F067 M039 M006 F059 F003 F007 F049 M053 F081 F055 M012 F082 F015 F036".split()),
    ),
    "disfa": (
        tuple("SN001 SN002 SN009 SN010 SN016 SN026 SN027 SN030 SN032".split()),
        tuple("SN006 SN011 SN012 SN013 SN018 SN021 SN024 SN028 SN031".split()),
        tuple("SN003 SN004 SN005 SN007 SN008 SN017 SN023 SN025 SN029".split()),
    ),
}


def subjects(dataset: str) -> tuple[str, ...]:
    """The dataset's whole subject vocabulary, sorted (its index is the identity label)."""
    return tuple(sorted(s for fold in FOLDS[dataset] for s in fold))


def fold_split(dataset: str, fold: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train subjects, test subjects) of 1-based ``fold``."""
    folds = FOLDS[dataset]
    if not 1 <= fold <= len(folds):
        raise ValueError(f"{dataset} has folds 1..{len(folds)}, not {fold}")
    test = folds[fold - 1]
    train = tuple(sorted(s for k, f in enumerate(folds) if k != fold - 1 for s in f))
    return train, tuple(sorted(test))


def spread_subjects(dataset: str, n: int) -> tuple[str, ...]:
    """``n`` subjects taken round-robin over the folds, so every fold keeps test subjects."""
    folds = [sorted(f) for f in FOLDS[dataset]]
    width = max(map(len, folds))
    order = [f[i] for i in range(width) for f in folds if i < len(f)]
    return tuple(sorted(order[:n]))

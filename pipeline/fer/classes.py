"""The expression classes of each FER dataset, in the order of its own label codes, and its class sizes.

Class names are the same words across datasets (AffectNet's "Happy" is ``happiness`` here) so that
results can be read side by side; each dataset keeps its own order, the one its label codes give.
"""

from __future__ import annotations

# RAF-DB basic: labels 1-7 in EmoLabel/list_patition_label.txt; class k is label k + 1.
RAFDB = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
RAFDB_TRAIN_COUNTS = (1290, 281, 717, 4772, 1982, 705, 2524)  # 12,271 images (official README and loaders)
RAFDB_TEST_COUNTS = (329, 74, 160, 1185, 478, 162, 680)  # 3,068

# AffectNet: expression codes 0-10 in the Manually_Annotated_file_lists; AffectNet-8 keeps 0-7, -7 keeps 0-6.
AFFECTNET = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
AFFECTNET_OTHER = {8: "none", 9: "uncertain", 10: "no-face"}  # codes outside every benchmark
AFFECTNET_TRAIN_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)  # 287,651 (codes 0-7)
AFFECTNET_VALIDATION_PER_CLASS = 500  # the validation list is balanced; papers test on it

# Names people use for these classes in folder-per-class copies (Kaggle), mapped to the names above.
ALIASES = {"happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise", "fearful": "fear",
           "disgusted": "disgust", "contemptuous": "contempt"}


def classes(dataset: str, n_affectnet: int = 8) -> tuple[str, ...]:
    """The class names of ``dataset`` (``rafdb``, ``affectnet``) in label-code order."""
    if dataset == "rafdb":
        return RAFDB
    if dataset == "affectnet":
        return AFFECTNET[:n_affectnet]
    raise ValueError(f"unknown FER dataset {dataset!r}")


def canonical(name: str) -> str:
    """A class name as this project spells it (``Happy`` -> ``happiness``)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)

"""Figures published in the FMAE-IAT paper (arXiv 2407.11243), shown beside the project's own.

Only the numbers the project could verify are here: the mean F1 over AUs (mean of 3 or 4 folds,
ViT-L, the released protocol: epoch and threshold picked on the test fold) and the identity
probe of Section 5. The per-AU rows of Tables 1-3 are not transcribed.
"""

from __future__ import annotations

SOURCE = "Ning, Salah, Onal Ertugrul, arXiv 2407.11243"

# Mean F1 (%) over AUs and folds, Tables 1-3.
F1_MEAN = {
    "bp4d": {"fmae": 66.6, "iat": 67.1},
    "bp4dplus": {"fmae": 66.2, "iat": 66.8},
    "disfa": {"fmae": 68.7, "iat": 70.1},
}

# Linear identity probe on frozen BP4D features (70 train / 30 test frames per subject), %.
PROBE_TOP1 = {"fmae": 83.0, "iat": 27.9, "iat_epoch1": 4.6, "chance": 2.4}


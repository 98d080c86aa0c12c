"""FSFM (Wang et al., CVPR 2025) as a second pretraining method: facial-region masks, region-guided
masking (CRFR-P) and the identity-level self-distillation branch. Written from the paper and the facts
in ``shared/reference``; the official code (CC BY-NC 4.0) was read, not copied."""

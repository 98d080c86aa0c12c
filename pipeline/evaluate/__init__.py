"""Evaluation: per-AU F1 tables over folds, the identity probe, t-SNE and learning dynamics."""

"""Face9M curation: source readers, the `scan` and `curate` stages, and the per-image path."""

"""``fmae predict``: AU probabilities for people's own images, folders and videos."""

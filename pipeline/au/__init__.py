"""AU datasets: subject vocabularies, folds, and (later) readers of the native layouts."""

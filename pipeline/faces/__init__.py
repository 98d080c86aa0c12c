"""Faces in frames: the detector and the crop, shared by ``prepare`` (training crops) and ``predict``
(inference crops), so a model sees at inference exactly the kind of crop it was trained on."""

"""Facial expression recognition (the paper's Table 4): RAF-DB and AffectNet readers, crops, finetuning."""

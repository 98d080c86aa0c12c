"""AU finetuning with identity adversarial training, per subject-exclusive fold (stage ``finetune``)."""

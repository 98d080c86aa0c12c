"""Models shared by the stages: the MAE used for pretraining and the AU detector used for finetuning."""

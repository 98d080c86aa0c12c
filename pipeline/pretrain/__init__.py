"""MAE pretraining on the curated Face9M shards (stage ``pretrain``)."""

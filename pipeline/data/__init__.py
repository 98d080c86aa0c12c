"""Input pipelines shared by the training stages (WebDataset shards, image decoding)."""

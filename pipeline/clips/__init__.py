"""Face-video clips for video pretraining (CLP): the VoxCeleb layout's reader, face tracks, clip windows."""

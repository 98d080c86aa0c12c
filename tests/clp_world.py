"""A face-video world for CLP's learning test: the synthetic VoxCeleb2 source cut into windows by the
clips stage, a small encoder with the MAE encoder's interface, and the AU probe that scores an encoder
on people it never saw."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.config import load_params
from pipeline.synth import videos
from pipeline.synth.synthesize import video_root

from .conftest import PARAMS, TINY

VIDEO = {"identities": 16, "videos": 2, "clips": 2, "frames": 24, "size": 96}  # 64 clips, 1,536 frames
SETTINGS = {
    **TINY, "synth.video": VIDEO, "model.img_size": 64,
    "clips.length": 6, "clips.stride": 3, "clips.crop_size": 64, "clips.clips_per_shard": 16,
    "pretrain.method": "clp", "pretrain.batch_size": 48, "pretrain.blr": 3e-3, "pretrain.warmup_epochs": 1,
    "pretrain.workers": 1, "pretrain.log_every": 5,
    "pretrain.clp": {"epochs": 16, "near": 1, "far": 3, "margin": 0.5, "au_dim": 64, "id_dim": 64, "hidden": 256,
                     "temporal": 1.0, "same_person": 0.1, "swap": 0.1, "jitter": 0.04, "jitter_degrees": 4},
}


def write_world(out: Path, **overrides):
    """The video source alone (no images, no AU datasets) -> (params, truth: one row per frame)."""
    params = load_params(PARAMS, {**SETTINGS, "synth.out_dir": str(out),
                                  "clips.root": str(video_root(out) / videos.SPLIT), **overrides})
    rows = [row for person in videos.identities(VIDEO["identities"])
            for row in videos.write_identity(params.synth, person, video_root(out))]
    return params, pd.DataFrame(rows)


class SmallEncoder(nn.Module):
    """Four strided convolutions whose 4 x 4 output cells are the tokens, behind the MAE encoder's
    interface (``forward_encoder`` -> [N, 1 + K, D], ``patch_embed.img_size``, ``embed_dim``)."""

    def __init__(self, size: int, dim: int = 128):
        super().__init__()
        self.patch_embed = SimpleNamespace(img_size=(size, size), patch_size=(16, 16))
        self.embed_dim = dim
        widths = [3, 32, 64, 128, dim]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward_encoder(self, x: torch.Tensor, mask_ratio: float = 0.0, noise=None):
        tokens = self.net(x).flatten(2).transpose(1, 2)
        return torch.cat([tokens.mean(1, keepdim=True), tokens], 1), None, None


def frame_features(encoder, shards: list[str], size: int) -> tuple[np.ndarray, list[tuple]]:
    """Every frame of every window -> (mean patch token, (identity, video, clip, frame))."""
    import webdataset as wds

    from pipeline.data.images import decode_rgb, normalize, to_chw

    feats, keys = [], []
    encoder.eval()
    for sample in wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples()):
        meta = json.loads(sample["json"])
        names = sorted(k for k in sample if k.endswith(".jpg"))
        x = normalize(torch.stack([to_chw(decode_rgb(sample[n], size)) for n in names]), torch.device("cpu"))
        with torch.no_grad():
            latent, _, _ = encoder.forward_encoder(x, 0.0)
        feats.append(latent[:, 1:].mean(1).numpy())
        keys += [(meta["identity"], meta["video"], meta["clip"], meta["start"] + k) for k in range(len(names))]
    return np.concatenate(feats), keys


def au_probe_r(features: np.ndarray, keys: list[tuple], truth: pd.DataFrame, test_people: set[str],
               ridge: float = 1e-3) -> float:
    """Ridge regression of the true AU intensities on standardised features, fitted on the other
    people's frames -> mean Pearson r over the AUs that vary on ``test_people``'s frames."""
    aus = [c for c in truth.columns if c.startswith("au")]
    y = truth.set_index(["identity", "video", "clip", "frame"])[aus].loc[keys].to_numpy(np.float64)
    test = np.array([k[0] in test_people for k in keys])
    x = features.astype(np.float64)
    x = (x - x[~test].mean(0)) / (x[~test].std(0) + 1e-6)
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x[~test].T @ x[~test] + ridge * len(x) * np.eye(x.shape[1]), x[~test].T @ y[~test])
    pred = x[test] @ w
    return float(np.mean([np.corrcoef(pred[:, j], y[test, j])[0, 1] for j in range(len(aus)) if y[test, j].std() > 0]))

"""Do frozen ViT features carry the AUs? Linear probes on pooled and spatial features.

Run: ``python benchmarks/au_feature_probe.py [--data data/au/bp4d] [--fold 1] [random]
[models/fmae/fmae.pth ...]``. For each encoder named (``random``: the finetuning ViT at its random
init; otherwise a checkpoint path) it extracts, on one fold's training+validation and test
subjects, the mean-pooled ``fc_norm`` feature the AU head reads and the flattened patch tokens,
fits one L2-regularised logistic regression per AU on standardised features and prints the mean
test ROC-AUC of each, after the same probe on raw pixels. A pooled-feature AUC near 0.5 with a
higher spatial one means the encoder sees the AUs but has not put them into its pooled feature.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from pipeline.au.data import Crops, fold_parts
from pipeline.au.train import build_model
from pipeline.config import load_params
from pipeline.training.backbone import load_backbone
from pipeline.training.transforms import eval_transform


def tensors(folder: Path, part: pd.DataFrame, dataset: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One fold part's crops (test transform) and labels, in memory."""
    crops = Crops(folder, part, dataset, eval_transform(size))
    return torch.stack([crops[i][0] for i in range(len(crops))]), crops.labels


@torch.no_grad()
def features(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    model.eval()
    tokens = torch.cat([model.forward_features(x[i:i + 128])[:, model.num_prefix_tokens:] for i in range(0, len(x), 128)])
    return {"pooled": model.fc_norm(tokens.mean(1)).numpy(), "spatial": tokens.flatten(1).numpy()}


def probe_auc(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray, c: float) -> float:
    scaler = StandardScaler().fit(train)
    a, b = scaler.transform(train), scaler.transform(test)
    aucs = [roc_auc_score(y_test[:, j], LogisticRegression(C=c, max_iter=1000).fit(a, y_train[:, j]).decision_function(b))
            for j in range(y_train.shape[1]) if len(set(y_train[:, j])) == 2 and len(set(y_test[:, j])) == 2]
    return float(np.mean(aucs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoders", nargs="*", default=["random"], help="'random' or checkpoint paths")
    ap.add_argument("--data", type=Path, default=Path("data/au/bp4d"))
    ap.add_argument("--dataset", default=None, help="bp4d, bp4dplus or disfa (default: the --data folder's name)")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    dataset = args.dataset or args.data.name
    params = load_params(args.params)
    parts = fold_parts(pd.read_parquet(args.data / "index.parquet"), dataset, args.fold,
                       params.finetune.val_fraction, params.finetune.seed)
    x_train, y_train = tensors(args.data, pd.concat([parts["train"], parts["val"]]), dataset, params.model.img_size)
    x_test, y_test = tensors(args.data, parts["test"], dataset, params.model.img_size)
    y_train, y_test = y_train.numpy(), y_test.numpy()
    print(f"{dataset} fold {args.fold}: {len(x_train)} probe-training frames, {len(x_test)} test frames")
    print(f"raw pixels: test AUC {probe_auc(x_train.flatten(1).numpy()[:, ::3], y_train, x_test.flatten(1).numpy()[:, ::3], y_test, 0.01):.3f}")
    for name in args.encoders:
        torch.manual_seed(0)
        model = build_model(params, dataset, 0.0)
        if name != "random":
            load_backbone(model, name)
        train, test = features(model, x_train), features(model, x_test)
        for kind in train:
            print(f"{name} {kind}: test AUC {probe_auc(train[kind], y_train, test[kind], y_test, 0.1):.3f}", flush=True)


if __name__ == "__main__":
    main()

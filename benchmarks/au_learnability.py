"""Can a model learn the AUs of the prepared crops at all? The finetuning ViT against a CNN reference.

Run: ``python benchmarks/au_learnability.py [--data data/au/bp4d] [--fold 1] [--epochs 20]
[--models vit,resnet18] [--init PATH | --random-init] [--layer-decay 0.65]``. It loads one fold's prepared crops once (test transform, no
augmentation), trains each model with AdamW + warm-up/cosine on the training subjects, and prints
per epoch the training AU loss, then mean ROC-AUC and best-global-threshold F1 on the validation
and test subjects, next to the all-positive predictor's F1. The last line per model gives the test
F1 at the epoch and threshold chosen on validation subjects. ``vit`` is the finetuning model
(``model.*`` params, initialised from ``--init``, by default the pretrain stage's
``models/fmae/fmae.pth``, or from random weights with ``--random-init``; ``--layer-decay`` applies
layer-wise lr decay to it as the finetune stage does); ``resnet18`` is timm's, from scratch: a reference with a convolutional inductive bias,
not part of the pipeline. Uses CUDA (bf16) when present. The fold's frames are held in memory as
float tensors (the demo's fold 1: ~120 MB); for a real dataset prepare a subsample
(``au.frame_step``) into its own folder first.

Reading the output: an AUC near 0.5 on test subjects while the training loss falls means the model
memorises training subjects rather than learning AUs; a training loss that stays at the marginal
(~0.57 on the demo) means it has learnt nothing yet. On the demo's world (FACS-like AU magnitudes)
the ResNet-18 reaches test AUC ~0.80 in 20 epochs on 440 frames, while the ViT-Ti, from random or
the demo's MAE init, is still on its plateau at ~260 steps (see the README's table). With 10x the
data (4,320 training frames rendered in memory) and an MAE pretrained for 1,000 steps on 8,000
rendered faces (loss 0.40 against the trivial 1.0), ``--layer-decay 0.65 --lr 1e-3`` reached test
AUC 0.59 after 6 epochs (810 steps, 9 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch

from pipeline.au.metrics import auc_per_au, best_threshold, f1_per_au
from pipeline.config import load_params
from pipeline.distributed import autocast
from pipeline.finetune.data import Crops, eval_transform, fold_parts
from pipeline.finetune.train import PRETRAINED, au_loss, build_model, load_backbone
from pipeline.optim import adamw, warmup_cosine


def tensors(folder: Path, part: pd.DataFrame, dataset: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    crops = Crops(folder, part, dataset, eval_transform(size))
    return torch.stack([crops[i][0] for i in range(len(crops))]), crops.labels


def make_model(kind: str, params, dataset: str, n_aus: int, init: str) -> torch.nn.Module:
    if kind == "resnet18":
        return timm.create_model("resnet18", num_classes=n_aus)
    model = build_model(params, dataset, 0.0)
    if init:
        load_backbone(model, init)
    return model


def scores(model, x: torch.Tensor, y: np.ndarray, device: torch.device) -> tuple[float, tuple[float, float], np.ndarray]:
    """(mean ROC-AUC, (best global threshold, its mean F1), probabilities)."""
    model.eval()
    with torch.no_grad(), autocast(device):
        out = [model(x[i:i + 256].to(device)) for i in range(0, len(x), 256)]
    probs = torch.cat([torch.sigmoid((o[0] if isinstance(o, tuple) else o).float()).cpu() for o in out]).numpy()
    model.train()
    return float(np.nanmean(auc_per_au(y, probs))), best_threshold(y, probs), probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/au/bp4d"))
    ap.add_argument("--dataset", default=None, help="bp4d, bp4dplus or disfa (default: the --data folder's name)")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--models", default="vit,resnet18")
    ap.add_argument("--random-init", action="store_true", help="the ViT from random weights, not --init")
    ap.add_argument("--init", default=str(PRETRAINED), help="the ViT's initial encoder (default: the pretrain stage's)")
    ap.add_argument("--layer-decay", type=float, default=None,
                    help="layer-wise lr decay of the ViT (default: none; the finetune stage uses finetune.layer_decay)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    if "vit" in args.models.split(",") and not args.random_init and not Path(args.init).is_file():
        ap.error(f"--init {args.init}: no such checkpoint (run `dvc repro pretrain` first, or pass --random-init)")
    dataset = args.dataset or args.data.name
    params = load_params(args.params)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = pd.read_parquet(args.data / "index.parquet")
    parts = fold_parts(index, dataset, args.fold, params.finetune.val_fraction, params.finetune.seed)
    data = {k: tensors(args.data, v, dataset, params.model.img_size) for k, v in parts.items()}
    x_train, y_train = data["train"]
    constant = best_threshold(data["test"][1].numpy(), np.ones(data["test"][1].shape))[1]
    print(f"{dataset} fold {args.fold}: {len(x_train)} training frames, {len(data['val'][0])} validation, "
          f"{len(data['test'][0])} test; all-positive test F1 {constant:.3f}; device {device}")
    for kind in args.models.split(","):
        torch.manual_seed(0)
        model = make_model(kind, params, dataset, y_train.shape[1], "" if args.random_init else args.init).to(device)
        steps = len(x_train) // args.batch_size
        opt = adamw(model, args.lr, 0.05, (0.9, 0.999), args.layer_decay if kind == "vit" else None, device)
        sched = warmup_cosine(opt, steps * args.epochs, steps, min_lr=1e-6)
        best, start = (-1.0, 0, 0.0), time.perf_counter()
        for epoch in range(args.epochs):
            perm, total = torch.randperm(len(x_train)), 0.0
            for i in range(steps):
                sched.step_update(epoch * steps + i)
                b = perm[i * args.batch_size:(i + 1) * args.batch_size]
                with autocast(device):
                    out = model(x_train[b].to(device))
                loss = au_loss(out[0] if isinstance(out, tuple) else out, y_train[b].to(device))
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                total += loss.item()
            (val_auc, (thr, val_f1), _), (test_auc, (_, test_f1), test_probs) = (
                scores(model, data[k][0], data[k][1].numpy(), device) for k in ("val", "test"))
            if val_f1 > best[0]:
                best = (val_f1, epoch + 1, float(f1_per_au(data["test"][1].numpy(), test_probs, thr).mean()))
            print(f"{kind} epoch {epoch + 1:3d}: train loss {total / steps:.3f} | val AUC {val_auc:.3f} F1 {val_f1:.3f} "
                  f"| test AUC {test_auc:.3f} F1 {test_f1:.3f}", flush=True)
        print(f"{kind}: test F1 {best[2]:.3f} at validation-chosen epoch {best[1]} and threshold "
              f"(all-positive {constant:.3f}); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

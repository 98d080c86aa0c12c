"""What the paper's settings cost: FLOPs, parameters and memory per stage, counted on the models.

Run: ``python benchmarks/paper_scale.py [--model vit_large_patch16_224] [--mfu 0.4]`` (about a
minute on a CPU). Everything is counted on this project's own models at the paper's sizes
(``params-paper.yaml``: ViT-L/16 at 224, MAE decoder 512/8/16, 50 epochs of Face9M, 30 finetuning
epochs of BP4D): FLOPs of one forward + backward per image by torch's ``FlopCounterMode``, the bytes
autograd saves for the backward pass per image (activations, fp32 here; about half under bf16
autocast), and the weights + gradients + AdamW state (16 bytes a parameter with fp32 master
weights). GPU hours are *computed*, not measured: total FLOPs / (peak bf16 x ``--mfu``), for the
bf16 peaks of ``pipeline/optim.py``. Measure the real figures with ``benchmarks/model_step.py`` on
a GPU.
"""

from __future__ import annotations

import argparse

import torch

from pipeline.models.mae import MaskedAutoencoder
from pipeline.models.vit_classifier import ViTClassifier
from pipeline.optim import PEAK_BF16, train_flops_per_image

GPUS = ("H100", "A100")
FACE9M = 9_000_000
BP4D_TRAIN = 146_847 * 2 // 3  # coded frames, two of three folds train


def saved_bytes_per_image(model: torch.nn.Module, sample: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward, for one image (the batch is 2; halved):
    each storage counted once, the parameters (which linear layers save too) not at all."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(sample)
        loss = out[0] if isinstance(out, tuple) else out
    loss.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return total // sample.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_large_patch16_224")
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (default: %(default)s)")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    mae = MaskedAutoencoder(args.model, 512, 8, 16, img_size=224)
    det = ViTClassifier(args.model, 12, 41, 2.0, img_size=224)
    stages = [
        ("pretrain (MAE, mask 0.75, 50 epochs of Face9M)", mae, FACE9M * 50, 128),
        ("finetune (IAT, 30 epochs, one BP4D fold)", det, BP4D_TRAIN * 30, 64),
    ]
    print(f"{args.model} at 224, assumed MFU {args.mfu:.0%}\n")
    print("| stage | params (M) | GFLOPs / image (fwd+bwd) | activations MB / image (fp32) | "
          "weights+grads+AdamW GB | batch / GPU | memory / GPU GB (bf16 act.) | total EFLOPs | "
          + " | ".join(f"{gpu} GPU-hours" for gpu in GPUS) + " |")
    print("|---" * (9 + len(GPUS)) + "|")
    for name, model, images, batch in stages:
        n = sum(p.numel() for p in model.parameters())
        flops = train_flops_per_image(model, x)
        act = saved_bytes_per_image(model, x)
        states = 16 * n
        memory = states + batch * act / 2
        total = flops * images
        hours = [total / (PEAK_BF16[gpu] * args.mfu) / 3600 for gpu in GPUS]
        print(f"| {name} | {n / 1e6:.0f} | {flops / 1e9:.0f} | {act / 2**20:.0f} | {states / 2**30:.1f} | {batch} | "
              f"{memory / 2**30:.0f} | {total / 1e18:.1f} | " + " | ".join(f"{h:,.0f}" for h in hours) + " |")
    print(f"\nfinetune evaluation per epoch and prediction: forward only, ~1/3 of the training FLOPs per image; "
          f"BP4D has {146_847:,} coded frames, so the paper's 3 folds x 2 variants = 6 finetune runs.")


if __name__ == "__main__":
    main()

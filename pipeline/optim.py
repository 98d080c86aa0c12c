"""Optimiser, learning-rate schedule and throughput figures shared by the training stages."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn


def scaled_lr(blr: float, effective_batch: int) -> float:
    """The linear scaling rule of MAE: ``lr = blr x effective batch / 256``."""
    return blr * effective_batch / 256


def adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
          layer_decay: float | None = None, device: torch.device | None = None) -> torch.optim.Optimizer:
    """timm's AdamW with weight decay on >= 2-D weights only (plus ``model.no_weight_decay()``
    exclusions) and optional layer-wise lr decay (``lr_scale`` per group); fused on CUDA."""
    fused = device is not None and device.type == "cuda"
    return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=weight_decay, betas=betas,
                               layer_decay=layer_decay, **({"fused": True} if fused else {}))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  min_lr: float = 0.0) -> CosineLRScheduler:
    """Per-iteration linear warmup from 0, then a half-cycle cosine to ``min_lr`` at ``total_steps``.

    Call ``step_update(global_step)`` before each optimiser step.
    """
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True,
                             cycle_limit=1, t_in_epochs=False)


def train_flops_per_image(model: nn.Module, sample: torch.Tensor, **forward_kwargs) -> float:
    """FLOPs of one forward + backward per image, counted by torch on the actual model.

    ``sample`` is a small batch on the model's device; the model's loss must be ``forward()[0]``
    or the output itself.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(sample, **forward_kwargs)
        loss = out[0] if isinstance(out, tuple) else out
        loss.float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / sample.shape[0]


# Dense bf16 peak of common accelerators, FLOP/s (no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of ``device`` if it is a GPU this table knows, else None (no MFU reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)

"""torch.distributed set-up, detected from torchrun's environment; the only module that knows about it.

Run a training stage with ``torchrun --nproc-per-node N -m pipeline <stage>`` (and ``--nnodes``,
``--rdzv-endpoint`` for several machines); without torchrun the same code runs as one process.
NCCL is used on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup() -> Context:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    return Context(rank, world, local, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (a copy); only called at logging intervals."""
    if not dist.is_initialized():
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if not dist.is_initialized():
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def no_sync(model: torch.nn.Module, skip: bool):
    """DDP's ``no_sync()`` while accumulating gradients (``skip``), else a null context."""
    if skip and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def cpu_bf16() -> bool:
    """Whether autocast on the CPU runs in bf16: ``FMAE_CPU_BF16=1`` / ``0`` decides; unset, where the CPU
    multiplies bf16 in hardware (AMX or AVX512-BF16). The demo's ViT-Ti trains ~1.4x faster there
    (measured on a 2-core Xeon with AMX: 112 vs 80 img/s), in the precision GPU runs use anyway."""
    forced = os.environ.get("FMAE_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes: stay in fp32
        return False


def autocast(device: torch.device):
    """bf16 autocast on CUDA and on CPUs with native bf16 (:func:`cpu_bf16`); plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP (or compiled) wrapper: the one whose state dict is saved."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

"""The model step alone, on synthetic tensors: images/s, counted FLOPs and MFU of pretraining,
finetuning and prediction.

Run, on a GPU (the paper's shapes; ``benchmarks/gpu_figures.sh`` runs the set the README reports):

    python benchmarks/model_step.py --task mae --model vit_base_patch16_224 --batch 256 --compile
    python benchmarks/model_step.py --task au --model vit_large_patch16_224 --batch 64 --iat-lambda 1 --compile
    python benchmarks/model_step.py --task predict --model vit_large_patch16_224 --batch 256 --compile

or with the defaults on a CPU. The tasks are the training loops' own steps:

- ``mae``: the masked autoencoder (mask 0.75, ``--decoder`` width,depth,heads; paper 512,8,16), loss
  from the model, AdamW (fused on CUDA), backward, optimiser step;
- ``au``: the AU detector with BP4D's 12 AUs and, at ``--iat-lambda`` != 0, the identity head behind
  the gradient reversal (41 subjects), the masked AU BCE + identity BCE of the finetune stage;
- ``predict``: the AU detector's forward pass in eval mode under ``torch.inference_mode``, as
  ``fmae predict`` runs it.

bf16 autocast on CUDA (``--dtype``), no host sync inside the timed loop, ``--repeats`` timed windows
of ``--steps`` steps after warm-up (and compilation), the median window reported. FLOPs per image
are counted by torch on this very model (forward + backward for training, forward for predict);
MFU is achieved / the datasheet's dense bf16 peak (``pipeline/optim.py``), and, on CUDA, also
against a bf16 matrix product measured here (8192^3, the ceiling this card reaches in practice).
``--json FILE`` appends the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.au.train import au_loss, id_loss  # noqa: E402
from pipeline.models.mae import MaskedAutoencoder  # noqa: E402
from pipeline.models.vit_classifier import ViTClassifier  # noqa: E402
from pipeline.optim import adamw, peak_flops, train_flops_per_image  # noqa: E402

BP4D_AUS, BP4D_SUBJECTS = 12, 41


class AUStep(nn.Module):
    """The finetune stage's loss as a module: AU BCE (+ identity BCE behind the GRL)."""

    def __init__(self, model: ViTClassifier, batch: int):
        super().__init__()
        self.model = model
        self.register_buffer("labels", torch.randint(0, 2, (batch, BP4D_AUS)).float())
        self.register_buffer("subjects", torch.randint(0, BP4D_SUBJECTS, (batch,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        au, ids = self.model(x)
        n = len(x)
        loss = au_loss(au, self.labels[:n])
        return loss if ids is None else loss + id_loss(ids, self.subjects[:n], "bce")


def build(args, device: torch.device) -> nn.Module:
    if args.task == "mae":
        width, depth, heads = map(int, args.decoder.split(","))
        return MaskedAutoencoder(args.model, width, depth, heads, img_size=args.img_size).to(device)
    model = ViTClassifier(args.model, BP4D_AUS, BP4D_SUBJECTS if args.task == "au" else 0,
                       args.iat_lambda if args.task == "au" else 0.0, img_size=args.img_size,
                       drop_path=0.1 if args.task == "au" else 0.0)
    return (AUStep(model, args.batch) if args.task == "au" else model.eval()).to(device)


def forward_flops_per_image(model: nn.Module, sample: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(sample)
    return counter.get_total_flops() / sample.shape[0]


def measured_matmul_peak(n: int = 8192, reps: int = 10) -> float:
    """bf16 FLOP/s of an ``n``^3 matrix product on random data (median of ``reps`` after warm-up)."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n**3 / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["mae", "au", "predict"], default="mae")
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--decoder", default="512,8,16", help="mae: width,depth,heads (paper: 512,8,16)")
    ap.add_argument("--iat-lambda", type=float, default=1.0, help="au: gradient reversal strength; 0 = no identity head")
    ap.add_argument("--batch", type=int, default=None, help="default: 256 on CUDA, 16 on CPU")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed window (default: 20 CUDA, 3 CPU)")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="append the figures to this file as one JSON line")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    args.batch = args.batch or (256 if cuda else 16)
    dtype = args.dtype or ("bf16" if cuda else "fp32")
    steps = args.steps or (20 if cuda else 3)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model = build(args, device)
    sample = torch.randn(2, 3, args.img_size, args.img_size, device=device)
    train = args.task != "predict"
    flops = train_flops_per_image(model, sample) if train else forward_flops_per_image(model, sample)
    opt = adamw(model, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95), device=device) if train else None
    net = torch.compile(model) if args.compile else model
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def step():
        if not train:
            with torch.inference_mode(), cast:
                net(x)
            return
        with cast:
            out = net(x)
            loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(3 if cuda else 1):  # warm-up (and compilation)
        step()
    if cuda:
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    windows = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        windows.append(time.perf_counter() - start)
    seconds = statistics.median(windows)
    rate = args.batch * steps / seconds
    peak = peak_flops(device)
    measured = measured_matmul_peak() if cuda else None
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    what = {"mae": f"MAE, decoder {args.decoder}", "au": f"AU finetune, IAT lambda {args.iat_lambda:g}",
            "predict": "AU predict (forward)"}[args.task]
    row = {"task": args.task, "model": args.model, "img_size": args.img_size, "what": what, "dtype": dtype,
           "batch": args.batch, "compiled": args.compile, "device": name, "torch": torch.__version__,
           "gflops_per_image": flops / 1e9, "img_per_s": rate, "ms_per_step": seconds / steps * 1e3,
           "window_spread": (max(windows) - min(windows)) / seconds, "warmup_s": warmup_s,
           "tflops": flops * rate / 1e12, "mfu_datasheet": flops * rate / peak if peak else None,
           "matmul_tflops": measured / 1e12 if measured else None,
           "mfu_measured_peak": flops * rate / measured if measured else None,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    print(f"device          {name}")
    print(f"model           {what}, {args.model} @ {args.img_size}px, {dtype}, batch {args.batch}"
          f"{', compiled' if args.compile else ''} (warm-up {warmup_s:.0f} s)")
    print(f"GFLOPs/img      {flops / 1e9:.1f} ({'train step' if train else 'forward'}, counted)")
    print(f"throughput      {rate:,.1f} img/s  ({row['ms_per_step']:.1f} ms/step, windows spread {row['window_spread']:.1%})")
    print(f"achieved        {row['tflops']:.2f} TFLOP/s")
    if peak:
        print(f"MFU             {row['mfu_datasheet']:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 datasheet peak; "
              f"{row['mfu_measured_peak']:.1%} of the {row['matmul_tflops']:.0f} TFLOP/s an 8192^3 bf16 matmul reaches here")
    else:
        print("MFU             n/a (no known bf16 peak for this device)")
    if cuda:
        print(f"peak memory     {row['peak_memory_gib']:.1f} GiB")
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

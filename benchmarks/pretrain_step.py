"""The MAE train step alone, on synthetic tensors: images/s and MFU.

Run: ``python benchmarks/pretrain_step.py --model vit_base_patch16_224 --batch 256 --dtype bf16 --compile``
on a GPU (target on one H100: >= 4,000 img/s and >= 35% MFU for MAE-B with the 512x8 decoder),
or with the defaults on a CPU. The step is the training loop's: autocast (bf16 on CUDA), AdamW
(fused on CUDA), backward, optimiser step, no host sync inside the timed loop. FLOPs per image
are counted by torch on this very model (forward + backward), MFU = achieved / bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from pipeline.models.mae import MaskedAutoencoder
from pipeline.optim import adamw, peak_flops, train_flops_per_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--decoder", default="512,8,16", help="width,depth,heads (paper: 512,8,16)")
    ap.add_argument("--batch", type=int, default=None, help="default: 256 on CUDA, 16 on CPU")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 CUDA, 5 CPU)")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (256 if cuda else 16)
    dtype = args.dtype or ("bf16" if cuda else "fp32")
    steps = args.steps or (30 if cuda else 5)
    width, depth, heads = map(int, args.decoder.split(","))
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    model = MaskedAutoencoder(args.model, width, depth, heads, img_size=args.img_size).to(device)
    flops = train_flops_per_image(model, torch.randn(2, 3, args.img_size, args.img_size, device=device))
    opt = adamw(model, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95), device=device)
    net = torch.compile(model) if args.compile else model
    x = torch.randn(batch, 3, args.img_size, args.img_size, device=device)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def step():
        with cast:
            loss = net(x)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3 if cuda else 1):  # warm-up (and compilation)
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = batch * steps / seconds
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device          {name}")
    print(f"model           MAE {args.model} @ {args.img_size}px, decoder {width}x{depth}x{heads}, {dtype}, "
          f"batch {batch}{', compiled' if args.compile else ''}")
    print(f"GFLOPs/img      {flops / 1e9:.1f} (train step, counted)")
    print(f"throughput      {rate:,.1f} img/s  ({seconds / steps * 1e3:.1f} ms/step)")
    print(f"achieved        {flops * rate / 1e12:.2f} TFLOP/s")
    if peak:
        print(f"MFU             {flops * rate / peak:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 peak")
    else:
        print("MFU             n/a (no known bf16 peak for this device)")
    if cuda:
        print(f"peak memory     {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()

"""The pretraining loop (MAE, FSFM or CLP): one entry point for one CPU process or N GPUs under torchrun.

Per step there is no host sync: losses accumulate on the device and are read, all-reduced and
checked for NaN/inf every ``log_every`` optimiser updates and at the end of each epoch. A
checkpoint is written (atomically, by rank 0) every ``save_every`` epochs and at the end; a
run that finds a checkpoint of the same settings resumes after its epoch. Each epoch reseeds
the masking RNG and the loader from ``(seed, epoch, rank)``, so a resumed run follows the same
path as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .. import distributed
from ..distributed import autocast
from ..config import PRETRAIN_METHODS, Params, PretrainConfig
from ..data.images import normalize
from ..data.shards import ShardSet, check_workers, seed_for
from ..models import checkpoint
from ..models.mae import MaskedAutoencoder, build_mae
from ..optim import adamw, peak_flops, scaled_lr, train_flops_per_image, warmup_cosine
from .data import FSFMSample, epoch_loader, steps_per_epoch
from .recon import fixed_samples, reconstruction_grid

log = logging.getLogger(__name__)
LAST = "checkpoint-last.pth"
FINAL = "fmae.pth"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Meter:
    """Device-side sums between two host syncs, and the host timings of the same span."""

    loss: torch.Tensor
    trivial: torch.Tensor  # the per-patch-mean baseline on the same batches and masks
    terms: dict = field(default_factory=dict)  # FSFM, CLP: each loss term's device-side sum (rec, rec_region, sim; temporal, ...)
    steps: int = 0
    images: int = 0
    wait: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    @classmethod
    def on(cls, device: torch.device) -> Meter:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device))


def fingerprint(params: Params, shards: ShardSet, world_size: int, cfg: PretrainConfig | None = None) -> str:
    """What a checkpoint must share with this run to be resumed from (not logging or compile).

    The shards enter by name, sample count and byte size: re-curated shards of other images
    (a changed world or filter) differ in bytes even when their counts match; hashing every
    tar's content would cost a full read of Face9M per start."""
    plain = {**params.to_dict()["pretrain"], **({"method": cfg.method} if cfg else {})}
    cfg = {k: v for k, v in plain.items() if k not in ("save_every", "log_every", "compile")
           and (k not in PRETRAIN_METHODS or k == plain["method"])}  # another method's switches do not matter
    files = {name: [count, (shards.folder / name).stat().st_size] for name, count in zip(shards.shards, shards.sizes)}
    blob = json.dumps([params.model.name, params.model.img_size, cfg, files, world_size], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def init_from(model: MaskedAutoencoder, path: str) -> None:
    """Start from a released FMAE/MAE checkpoint (full or encoder-only)."""
    report = checkpoint.load_into(model, checkpoint.read(path)["model"])
    log.info("pretrain.init %s: %s", path, report.summary())
    if not report.matched:
        raise checkpoint.CheckpointError(f"{path}: no tensor fits {model.encoder_name}; is it a ViT MAE checkpoint?")


def pretrain(params: Params, shards: ShardSet, out_dir: Path, live=None, stop_after: int | None = None,
             cfg: PretrainConfig | None = None, identities: dict[str, int] | None = None) -> dict:
    """Train, checkpoint and log; return the final metrics. ``stop_after`` ends after that epoch
    (1-based) as if the run had been killed there (used to test resuming). ``cfg``: the pretraining
    settings when not ``params.pretrain`` (another method, for ``pretrain_compare``). CLP: ``shards``
    are the clips stage's windows and ``identities`` its people's indices."""
    cfg = cfg or params.pretrain
    window = params.clips.length if cfg.method == "clp" else 0
    ctx = distributed.setup()
    check_workers(shards, cfg.workers, ctx.world_size, "pretrain.workers")
    torch.manual_seed(cfg.seed)
    model = build_mae(params.model, cfg).to(ctx.device)
    if cfg.init:
        init_from(model, cfg.init)
    trainee: torch.nn.Module = model  # what is optimised: the MAE, or FSFM or CLP around it (its encoder is the MAE's)
    if cfg.method == "fsfm":
        from ..fsfm.distill import momentum
        from ..fsfm.model import FSFM

        trainee = FSFM(model, distill=cfg.fsfm.distill).to(ctx.device)
    elif cfg.method == "clp":
        from ..clp.model import CLP

        trainee = CLP(model, cfg.clp).to(ctx.device)
    epochs = cfg.clp.epochs if cfg.method == "clp" else cfg.epochs
    batch = cfg.batch_size // window if window else cfg.batch_size  # CLP: windows of `window` frames a step

    micro = steps_per_epoch(shards, batch, ctx.world_size)
    updates = max(1, micro // cfg.accum_steps)
    micro = updates * cfg.accum_steps
    eff_batch = cfg.batch_size * cfg.accum_steps * ctx.world_size
    opt = adamw(trainee, scaled_lr(cfg.blr, eff_batch), cfg.weight_decay, (0.9, 0.95), device=ctx.device)
    sched = warmup_cosine(opt, updates * epochs, updates * cfg.warmup_epochs)

    fp = fingerprint(params, shards, ctx.world_size, cfg)
    record = params.to_dict()  # the params the checkpoints carry: with the method that ran (pretrain_compare's)
    record["pretrain"]["method"] = cfg.method
    start_epoch, summary = _resume(out_dir / LAST, fp, trainee, opt)
    size = model.patch_embed.img_size[0]
    if window:  # per frame: a window's forward and backward over its frames
        flops = train_flops_per_image(trainee, torch.randn(2, window, 3, size, size, device=ctx.device),
                                      identities=torch.arange(2, device=ctx.device)) / window
    else:
        flops = train_flops_per_image(model, torch.randn(2, 3, size, size, device=ctx.device))
    peak = peak_flops(ctx.device)
    samples = fixed_samples(shards.urls()[0], 8, size) if ctx.is_main and not window else None  # CLP trains no decoder

    net: torch.nn.Module = trainee
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(  # CLP: a term switched off (or a one-person batch) leaves
            trainee, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,  # its heads without gradient
            find_unused_parameters=cfg.method == "clp")
    if cfg.compile:
        net = torch.compile(net)

    if start_epoch >= epochs and ctx.is_main:
        log.info("%s already holds all %d epochs of these settings", out_dir / LAST, epochs)
        _save(out_dir, trainee, model, opt, epochs - 1, record, fp, summary, final=True)
    for epoch in range(start_epoch, epochs):
        torch.manual_seed(seed_for(cfg.seed, epoch, ctx.rank))
        loader = epoch_loader(shards, epoch=epoch, seed=cfg.seed, batch_size=batch, image_size=size, workers=cfg.workers,
                              shuffle_buffer=cfg.shuffle_buffer, augment=cfg.augment, steps=micro,
                              pin_memory=ctx.device.type == "cuda", sample=_sampler(cfg, model, epoch, window, identities))
        epoch_meter, meter = Meter.on(ctx.device), Meter.on(ctx.device)
        bar = tqdm(total=updates, desc=f"pretrain epoch {epoch + 1}/{epochs}", disable=not ctx.is_main,
                   mininterval=5)
        tick = time.perf_counter()
        for i, inputs in enumerate(loader):
            meter.wait += time.perf_counter() - tick
            boundary = (i + 1) % cfg.accum_steps == 0
            with distributed.no_sync(net, not boundary):
                loss, terms, trivial, images = _step(cfg, net, model, inputs, ctx.device)
            (loss / cfg.accum_steps).backward()
            meter.loss += loss.detach()
            meter.trivial += trivial
            for name, value in terms.items():
                meter.terms[name] = meter.terms.get(name, 0.0) + value.detach().float()
            meter.steps += 1
            meter.images += images * ctx.world_size
            if boundary:
                update = epoch * updates + (i + 1) // cfg.accum_steps
                sched.step_update(update - 1)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if cfg.method == "fsfm":
                    trainee.update_target(momentum(update, updates * epochs))
                bar.update()
                if update % cfg.log_every == 0:
                    row = _sync(meter, ctx, flops, peak)
                    row["lr"] = opt.param_groups[0]["lr"]
                    _log(live, update, row, "train/")
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
                    _merge(epoch_meter, meter)
                    meter = Meter.on(ctx.device)
            tick = time.perf_counter()
        bar.close()
        _merge(epoch_meter, meter)
        summary = _sync(epoch_meter, ctx, flops, peak)
        summary |= {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                    "images_seen": (epoch + 1) * micro * batch * (window or 1) * ctx.world_size}
        last = epoch + 1 == epochs or epoch + 1 == stop_after
        if ctx.is_main:
            if (epoch + 1) % cfg.save_every == 0 or last:
                _save(out_dir, trainee, model, opt, epoch, record, fp, summary, final=epoch + 1 == epochs)
            _log(live, (epoch + 1) * updates, {k: v for k, v in summary.items() if k != "epoch"}, "epoch/")
            if live is not None and samples is not None:
                live.log_image(f"recon/epoch_{epoch + 1:03d}.png", reconstruction_grid(model, samples, cfg.seed))
        distributed.barrier()
        if epoch + 1 == stop_after:
            break
    distributed.teardown()
    return summary


def _sampler(cfg: PretrainConfig, model: MaskedAutoencoder, epoch: int, window: int, identities: dict | None):
    """The method's mapper of one shard sample (None: the MAE's plain images)."""
    size, patch = model.patch_embed.img_size[0], model.patch_embed.patch_size[0]
    if cfg.method == "fsfm":
        return FSFMSample(size, patch, cfg.mask_ratio, cfg.fsfm.masking, cfg.seed, epoch)
    if cfg.method == "clp":
        from ..clp.data import WindowSample

        return WindowSample(size, window, identities, cfg.seed, epoch, cfg.clp.jitter, cfg.clp.jitter_degrees)
    return None


def _step(cfg: PretrainConfig, net: torch.nn.Module, model: MaskedAutoencoder, inputs, device: torch.device):
    """One micro-batch forward -> (loss, {term: value}, trivial baseline (a tensor or a number), images seen)."""
    if cfg.method == "clp":  # windows [N, T, 3, H, W] and their people
        frames, people = inputs
        n, t = frames.shape[:2]
        x = normalize(frames.flatten(0, 1), device).view(n, t, *frames.shape[2:])
        with autocast(device):
            loss, terms, _ = net(x, people.to(device))
        return loss, terms, cfg.clp.margin, n * t  # the temporal term of collapsed codes (a number: no copy a step)
    if cfg.method == "fsfm":
        x = normalize(inputs[0], device)
        noise, region = (t.to(device, non_blocking=True) for t in inputs[1:])
        with autocast(device):
            loss, terms, mask = net(x, noise, region)
    else:
        x = normalize(inputs, device)
        with autocast(device):
            loss, _, mask = net(x)
        terms = {}
    with torch.no_grad():
        trivial = model.trivial_loss(x, mask)
    return loss, terms, trivial, x.shape[0]


def _resume(path: Path, fp: str, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, dict]:
    """Load ``path`` if a run of the same settings wrote it; return (epoch to start at, its metrics)."""
    ckpt = checkpoint.read_resumable(path, fp)
    if ckpt is None:
        return 0, {}
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    return ckpt["epoch"] + 1, ckpt.get("summary", {})


def _save(out_dir: Path, trainee: torch.nn.Module, model: MaskedAutoencoder, opt, epoch: int, record: dict, fp: str,
          summary: dict, final: bool) -> None:
    """The resumable container of what is trained (FSFM: with its EMA target; ``scaler`` is None: bf16
    needs no loss scaling) and, at the end, the shareable weights: full MAE keys (encoder + decoder),
    no optimiser state, whichever the method."""
    checkpoint.save_atomic({"model": trainee.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "scaler": None,
                            "params": record, "fingerprint": fp, "summary": summary}, out_dir / LAST)
    if final:
        checkpoint.save_atomic({"model": model.state_dict(), "epoch": epoch, "params": record}, out_dir / FINAL)


def _merge(total: Meter, part: Meter) -> None:
    total.loss += part.loss
    total.trivial += part.trivial
    for name, value in part.terms.items():
        total.terms[name] = total.terms.get(name, 0.0) + value
    total.steps += part.steps
    total.images += part.images
    total.wait += part.wait


def _sync(meter: Meter, ctx: distributed.Context, flops: float, peak: float | None) -> dict:
    """The one host sync of a logging span: mean loss over processes, throughput, NaN check."""
    names = sorted(meter.terms)
    loss, trivial, *terms = distributed.all_reduce_mean(
        torch.stack([meter.loss, meter.trivial, *(meter.terms[n] for n in names)]) / max(meter.steps, 1)).tolist()
    if not math.isfinite(loss):
        raise TrainingDiverged(f"pretraining loss is {loss} after {meter.steps} steps of this span; stopping. "
                               "The last good checkpoint is kept; lower pretrain.blr or check the input shards.")
    seconds = max(time.perf_counter() - meter.start, 1e-9)
    named = dict(zip(names, terms))  # FSFM: its reconstruction term is what the baseline compares with; CLP: its temporal term
    rec = named.get("rec", named.get("temporal", loss))
    row = {"loss": loss, "trivial_loss": trivial, "loss_over_trivial": rec / trivial if trivial > 0 else float("nan"),
           "images_per_s": meter.images / seconds, "data_wait_fraction": min(1.0, meter.wait / seconds),
           **{f"loss_{n}": v for n, v in zip(names, terms)}}
    if peak:
        row["mfu"] = flops * meter.images / seconds / (peak * ctx.world_size)
    return row


def _log(live, step: int, row: dict, prefix: str) -> None:
    if live is None:
        return
    live.step = step
    for key, value in row.items():
        live.log_metric(prefix + key, value)

"""Pretraining: optimiser groups, schedule, checkpoints, DDP, resume, NaN stop, learning."""

from __future__ import annotations

import json

import argparse
import os
import subprocess
import sys

import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.config import load_params
from pipeline.data.shards import ShardError, check_workers, read_shard_set
from pipeline.models import checkpoint
from pipeline.models.mae import MaskedAutoencoder
from pipeline.optim import adamw, warmup_cosine
from pipeline.pretrain.train import LAST, TrainingDiverged, init_from, pretrain
from tests.conftest import PARAMS, ROOT, curate_overrides

SMALL = {"model.img_size": 64, "pretrain.decoder_dim": 64, "pretrain.decoder_depth": 1, "pretrain.decoder_heads": 2,
         "pretrain.batch_size": 8, "pretrain.workers": 2, "pretrain.log_every": 2, "pretrain.warmup_epochs": 1,
         "pretrain.shuffle_buffer": 32, "pretrain.blr": 1.5e-2}


def small_mae(**kw) -> MaskedAutoencoder:
    return MaskedAutoencoder("vit_tiny_patch16_224", decoder_dim=64, decoder_depth=1, decoder_heads=2, img_size=64, **kw)


def small_mae_seeded(seed: int) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return small_mae()


@pytest.fixture(scope="module")
def shards(curated):
    _, base = curated
    return read_shard_set(base / "face9m" / "shards")


def run_params(tiny_world, **extra):
    _, out = tiny_world
    return load_params(PARAMS, curate_overrides(out, **SMALL, **extra))


# ---------------------------------------------------------------------------- optimiser
def test_weight_decay_only_on_weight_matrices():
    model = small_mae()
    opt = adamw(model, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n for n in decayed)
    assert {"cls_token", "mask_token", "blocks.0.attn.qkv.bias", "blocks.0.norm1.weight", "norm.bias"} <= plain
    assert "blocks.0.attn.qkv.weight" in decayed and "decoder_pred.weight" in decayed
    # fixed position embeddings are not optimised at all
    assert "pos_embed" not in decayed | plain and "decoder_pos_embed" not in decayed | plain
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)


def test_lr_schedule_warmup_then_half_cosine():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.4)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10)

    def lr_at(step):
        sched.step_update(step)
        return opt.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(0.0)
    assert lr_at(5) == pytest.approx(0.2)
    assert lr_at(10) == pytest.approx(0.4)  # warmup end: the peak
    assert lr_at(55) == pytest.approx(0.2)  # half way through the cosine
    assert lr_at(100) == pytest.approx(0.0, abs=1e-12)  # the end


# -------------------------------------------------------------------------- checkpoints
def test_loads_released_full_mae_checkpoint_with_pickled_args(tmp_path):
    torch.manual_seed(3)
    source = small_mae()
    args = argparse.Namespace(model="mae_vit_tiny_patch16", norm_pix_loss=True, blr=1.5e-4)
    torch.save({"model": source.state_dict(), "optimizer": {}, "epoch": 799, "scaler": {}, "args": args},
               tmp_path / "mae.pth")
    target = small_mae()
    init_from(target, str(tmp_path / "mae.pth"))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_loads_encoder_only_checkpoint_and_reports_keys(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64)
    state = {f"module.{k}": v for k, v in vit.state_dict().items()}  # saved from a DDP wrapper
    torch.save(state, tmp_path / "encoder.pth")
    ckpt = checkpoint.read(tmp_path / "encoder.pth")
    model = small_mae()
    report = checkpoint.load_into(model, ckpt["model"])
    assert "blocks.11.mlp.fc2.weight" in report.matched and "pos_embed" in report.matched
    assert "mask_token" in report.missing and "decoder_pred.weight" in report.missing
    assert not report.unexpected and not report.mismatched
    assert torch.equal(model.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)


def test_position_embedding_of_another_grid_is_resampled(tmp_path):
    big = MaskedAutoencoder("vit_tiny_patch16_224", 64, 1, 2, img_size=224)
    report = checkpoint.load_into(small_mae(), big.state_dict())
    assert "pos_embed" in report.resized and not report.mismatched


def test_unreadable_checkpoint_names_the_file(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="bad.pth"):
        checkpoint.read(tmp_path / "bad.pth")
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint"):
        checkpoint.read(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------- data
def test_too_few_shards_for_the_readers_is_a_clear_error(shards):
    with pytest.raises(ShardError, match=r"pretrain.workers=8 loader workers x 4 process"):
        check_workers(shards, 8, 4, "pretrain.workers")


def test_loader_gives_exact_steps_and_differs_per_epoch(shards):
    from pipeline.pretrain.data import epoch_loader

    kw = dict(seed=0, batch_size=4, image_size=64, workers=2, shuffle_buffer=16, augment="flip", steps=5)
    e0 = list(epoch_loader(shards, epoch=0, **kw))
    assert len(e0) == 5 and all(b.shape == (4, 3, 64, 64) and b.dtype == torch.uint8 for b in e0)
    assert all(torch.equal(a, b) for a, b in zip(e0, epoch_loader(shards, epoch=0, **kw)))  # seeded
    assert not torch.equal(e0[0], next(iter(epoch_loader(shards, epoch=1, **kw))))


# --------------------------------------------------------------------------- DDP vs one
def _ddp_worker(rank: int, world: int, port: int, x: torch.Tensor, noise: torch.Tensor, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = small_mae()
    net = torch.nn.parallel.DistributedDataParallel(model)
    opt = adamw(model, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    share = x.shape[1] // world
    for step in range(x.shape[0]):
        part = slice(rank * share, (rank + 1) * share)
        net(x[step, part], noise=noise[step, part])[0].backward()
        opt.step()
        opt.zero_grad()
    if rank == 0:
        torch.save(model.state_dict(), out)
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path):
    torch.manual_seed(5)
    x, noise = torch.randn(3, 8, 3, 64, 64), torch.rand(3, 8, 16)  # 3 steps of a global batch of 8
    out = tmp_path / "ddp.pt"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), x, noise, str(out)), nprocs=2, start_method="spawn")
    single = tmp_path / "single.pt"
    mp.start_processes(_ddp_worker, args=(1, _free_port(), x, noise, str(single)), nprocs=1, start_method="spawn")
    a, b = torch.load(out), torch.load(single)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    start = small_mae_seeded(0).state_dict()  # the weights the workers started from (same seed)
    assert sum(not torch.equal(a[k], start[k]) for k in a) > len(a) // 2  # it did train


# ---------------------------------------------------------------------- the real loop
@pytest.mark.slow
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tiny_world, shards, tmp_path):
    params = run_params(tiny_world, **{"pretrain.epochs": 2})
    pretrain(params, shards, tmp_path / "full")
    first = pretrain(params, shards, tmp_path / "resumed", stop_after=1)
    assert checkpoint.read(tmp_path / "resumed" / LAST)["epoch"] == 0 and not (tmp_path / "resumed" / "fmae.pth").exists()
    pretrain(params, shards, tmp_path / "resumed")
    a = checkpoint.read(tmp_path / "full" / "fmae.pth")["model"]
    b = checkpoint.read(tmp_path / "resumed" / "fmae.pth")["model"]
    assert first["epoch"] == 1
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_checkpoint_of_other_settings_is_not_resumed(tiny_world, shards, tmp_path, caplog):
    pretrain(run_params(tiny_world, **{"pretrain.epochs": 1}), shards, tmp_path)
    summary = pretrain(run_params(tiny_world, **{"pretrain.epochs": 1, "pretrain.mask_ratio": 0.5}), shards, tmp_path)
    assert "starting afresh" in caplog.text and summary["epoch"] == 1


def test_resume_fingerprint_follows_the_shard_bytes(tiny_world, shards, tmp_path):
    from pipeline.data.shards import ShardSet
    from pipeline.pretrain.train import fingerprint

    params = run_params(tiny_world)
    copy = tmp_path / "shards"
    copy.mkdir()
    for name in shards.shards:
        (copy / name).write_bytes((shards.folder / name).read_bytes())
    same = ShardSet(copy, shards.shards, shards.sizes)
    assert fingerprint(params, same, 1) == fingerprint(params, shards, 1)
    with (copy / shards.shards[0]).open("ab") as fh:  # same names and sample counts, other bytes
        fh.write(b"\0" * 512)
    assert fingerprint(params, same, 1) != fingerprint(params, shards, 1)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_world, shards, tmp_path, monkeypatch):
    params = run_params(tiny_world, **{"pretrain.epochs": 2})
    pretrain(params, shards, tmp_path, stop_after=1)
    good = checkpoint.read(tmp_path / LAST)
    monkeypatch.setattr(MaskedAutoencoder, "forward_loss", lambda self, imgs, pred, mask: pred.sum() * float("nan"))
    with pytest.raises(TrainingDiverged, match="last good checkpoint is kept"):
        pretrain(params, shards, tmp_path)
    kept = checkpoint.read(tmp_path / LAST)
    assert kept["epoch"] == 0 and all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())


@pytest.mark.slow
def test_loss_falls_below_the_trivial_baseline_on_the_demo_faces(tiny_world, shards, tmp_path):
    """Predicting each patch's mean (zero under norm_pix_loss) scores ``trivial_loss`` on the very
    batches and masks of the run; a model that learnt image content ends clearly below it."""
    params = run_params(tiny_world, **{"pretrain.epochs": 6})
    first = pretrain(params, shards, tmp_path, stop_after=1)
    last = pretrain(params, shards, tmp_path)
    assert 0.9 < last["trivial_loss"] <= 1.0  # norm_pix targets: ~unit variance per patch
    assert last["loss"] < first["loss"] and last["loss_over_trivial"] < 0.9, (first, last)


def test_trivial_loss_is_the_per_patch_mean_prediction():
    model = small_mae_seeded(1)
    imgs, mask = torch.randn(2, 3, 64, 64), torch.tensor([[1.0] * 8 + [0.0] * 8] * 2)
    target = model.target(imgs)
    assert model.trivial_loss(imgs, mask).item() == pytest.approx(model.forward_loss(imgs, torch.zeros_like(target), mask).item(), rel=1e-5)
    model.norm_pix_loss = False
    mean = model.patchify(imgs).mean(-1, keepdim=True)
    expected = (((model.patchify(imgs) - mean) ** 2).mean(-1) * mask).sum() / mask.sum()
    assert model.trivial_loss(imgs, mask).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_run_the_stage(curated, tmp_path):
    """The stage under torchrun with 2 gloo processes: trains, one checkpoint, metrics written."""
    _, base = curated
    overrides = [f"--set={k}={v}" for k, v in {**SMALL, "pretrain.epochs": 1, "pretrain.workers": 1}.items()]
    (tmp_path / "data" / "face9m").mkdir(parents=True)
    (tmp_path / "data" / "face9m" / "shards").symlink_to(base / "face9m" / "shards")
    (tmp_path / "data" / "face9m" / "sizes.json").symlink_to(base / "face9m" / "sizes.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port", str(_free_port()),
           "-m", "pipeline", "pretrain", "--params", str(PARAMS), *overrides]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint.read(tmp_path / "models/fmae/fmae.pth")["epoch"] == 0
    assert (tmp_path / "metrics/pretrain.json").is_file() and (tmp_path / "dvclive/pretrain/metrics.json").is_file()


@pytest.mark.slow
def test_fsfm_reconstruction_falls_below_the_trivial_baseline_and_resumes_with_its_target(tiny_world, shards, tmp_path):
    """FSFM (region masking from the curated maps, self-distillation with the EMA target) learns the same
    faces: its reconstruction term ends below the per-patch-mean baseline; the resumable container holds
    the EMA target, and the exported encoder has the MAE's keys."""
    params = run_params(tiny_world, **{"pretrain.epochs": 6, "pretrain.method": "fsfm"})
    first = pretrain(params, shards, tmp_path, stop_after=1)
    last = pretrain(params, shards, tmp_path)
    assert {"loss_rec", "loss_rec_region", "loss_sim"} <= set(last)
    assert last["loss_rec"] < first["loss_rec"] and last["loss_rec"] < 0.9 * last["trivial_loss"], (first, last)
    assert -0.5 <= last["loss_sim"] < first["loss_sim"], (first, last)  # the online prediction moves toward the target
    resumable = torch.load(tmp_path / LAST, map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("target.") for k in resumable)
    exported = torch.load(tmp_path / "fmae.pth", map_location="cpu", weights_only=False)["model"]
    assert set(exported) == set(small_mae().state_dict())


def test_fsfm_region_masking_without_maps_is_one_line_naming_the_source(tmp_path):
    from pipeline.config import UserError
    from pipeline.pretrain.pretrain import check_regions

    params = load_params(PARAMS, {"pretrain.method": "fsfm"})
    counts = tmp_path / "regions.json"
    counts.write_text(json.dumps({"celeba": {"samples": 10, "regions": 10}, "umdfaces": {"samples": 5, "regions": 0}}))
    with pytest.raises(UserError, match=r"source umdfaces has region maps for 0 of its 5 .*sources.umdfaces.regions"):
        check_regions(params.pretrain, counts)
    check_regions(load_params(PARAMS, {"pretrain.method": "fsfm", "pretrain.fsfm.masking": "random"}).pretrain, counts)

"""The learning demo: MAE-pretrain the demo ViT on synthetic faces, then finetune it for AU detection
on unseen subjects, against random init and with IAT. Bigger than `make demo`, smaller than a paper run.

Run: ``make learning-demo`` or ``python benchmarks/learning_demo.py [--out data/learning_demo]
[--faces 8000] [--mae-steps 4000] [--tasks 8] [--frames 80] [--frame-step 4] [--epochs 12]
[--layer-decay 0.75] [--folds 1,2,3] [--compare-folds 1] [--variants fmae,random,iat]``. About 50
minutes on 2 CPU cores with the defaults (the README has the measured run); on a CUDA GPU it runs
there, in bf16 autocast.

What it does, with the pipeline's own renderer, models, losses, optimiser and metrics, but with the
data held in memory instead of going through the DVC stages (which would add curation and JPEG
round trips to every step):
1. renders ``--faces`` source faces of distinct synthetic people, cropped at the face box + 5%
   (the AU crops' framing), 112 px;
2. pretrains the MAE of ``params.yaml``'s ``model``/``pretrain`` sections on them for
   ``--mae-steps`` steps (batch 64, flips only), logging the loss against the trivial
   per-patch-mean loss of the same batch;
3. renders BP4D's 41 subjects x ``--tasks`` tasks x ``--frames`` frames (every ``--frame-step``-th
   kept) with the world's labels, and splits each fold into training, validation (20% of the
   training subjects) and test subjects;
4. finetunes ``fmae`` (from the MAE) on every fold of ``--folds`` and the other variants, ``random``
   (random weights) and ``iat`` (the MAE with the identity head behind the gradient reversal at
   ``iat.lambda``), on ``--compare-folds``: ``--epochs`` of AdamW lr 1e-3, layer decay
   ``--layer-decay``, warm-up 1 epoch, cosine, flips. Each epoch is scored on the validation
   subjects; the epoch and threshold with the best validation F1 are applied once to the test
   subjects (the pipeline's ``validation`` protocol). A linear identity probe reads the test subjects'
   features (70/30 frames per subject) of the MAE and of each finetuned model.

Measured on fold 1 while choosing these defaults (2 cores; test AUC / F1 at the validation threshold,
all-positive F1 0.437): MAE 2,000 steps then 12 epochs at layer decay 0.65: 0.732 / 0.525; at 0.75:
0.734 / 0.550; MAE 4,000 steps, 0.75: 0.751 / 0.557. From random weights (6 epochs): 0.54. A 6-block
ViT (192 wide) after the same 2,000 MAE steps: 0.62; 6 blocks of 128: 0.64, so depth matters more than
the 3x the smaller models save. Random shifts of +-8% and scale +-10% as augmentation: 0.56 after 6
epochs instead of 0.71 (the ViT leans on where features sit in the aligned crop).

Outputs in ``--out``: ``faces.npy``, ``mae.pth``, ``au.npz`` (each reused when its settings match,
recorded in ``*.settings.json``), ``results.json`` (per-epoch figures, the selected epochs' test
figures per AU, the probes, the summary, params, code version) and ``learning.png`` (the MAE loss,
validation AUC per epoch per variant, test AUC per AU).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.au.folds import AUS, subjects  # noqa: E402
from pipeline.au.metrics import auc_per_au, best_threshold, f1_per_au  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.data.images import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from pipeline.distributed import autocast  # noqa: E402
from pipeline.evaluate.probe import linear_probe  # noqa: E402
from pipeline.faces.crop import crop_face  # noqa: E402
from pipeline.finetune.data import fold_parts  # noqa: E402
from pipeline.finetune.train import au_loss, build_model, id_loss, load_backbone  # noqa: E402
from pipeline.models.mae import MaskedAutoencoder  # noqa: E402
from pipeline.optim import adamw, scaled_lr, warmup_cosine  # noqa: E402
from pipeline.provenance import code_version, versions  # noqa: E402
from pipeline.synth import au_datasets  # noqa: E402
from pipeline.synth.render import AUS as RENDERED_AUS  # noqa: E402
from pipeline.synth.sources import Item, make_image  # noqa: E402

SIZE, MARGIN = 112, 0.05
SOURCES = ("celeba", "vggface2", "casia_webface", "megaface", "ffhq", "edface")  # single-face framings
MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
_SYNTH = None  # the world's settings, set in each render process
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # bf16 autocast on CUDA


def crop(img: np.ndarray, box) -> np.ndarray:
    """The pipeline's face crop (box grown by 5% per side, clipped), 112 px, RGB."""
    return cv2.cvtColor(crop_face(img, box, MARGIN, SIZE), cv2.COLOR_BGR2RGB)


def _init(synth) -> None:
    global _SYNTH
    _SYNTH = synth


def _face(i: int) -> np.ndarray:
    # people numbered apart from the world's own identities; four images per person
    img, box = make_image(_SYNTH, SOURCES[i % len(SOURCES)], Item(100_000 + i, i, f"learning-demo:{i // 4}", ""))
    return crop(img, box)


def _subject(job: tuple[str, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    subject, tasks, frames, step = job
    columns = [RENDERED_AUS.index(a) for a in AUS["bp4d"]]
    xs, ys = [], []
    for t in range(1, tasks + 1):
        for i, img, intensity, pose in au_datasets._frames(_SYNTH, "bp4d", subject, f"T{t}", frames):
            if i % step == 0:
                xs.append(crop(img, pose.box()))
                ys.append(au_datasets._occurrence(intensity[None, columns])[0])
    return np.stack(xs), np.stack(ys).astype(np.float32)


def cached(path: Path, settings: dict, make, load, save):
    """``load(path)`` if it was made with ``settings``, else ``make()``, saved with them."""
    record = path.with_name(path.name + ".settings.json")
    if path.is_file() and record.is_file() and json.loads(record.read_text()) == settings:
        print(f"{path}: reused (same settings)", flush=True)
        return load(path)
    value = make()
    save(path, value)
    record.write_text(json.dumps(settings, indent=1) + "\n")
    return value


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W] on ``DEVICE``."""
    x = x.to(DEVICE, non_blocking=True).permute(0, 3, 1, 2).float() / 255
    return (x - MEAN.to(DEVICE)) / STD.to(DEVICE)


def flip_half(x: torch.Tensor) -> torch.Tensor:
    """A horizontal flip of a random half of uint8 ``[N, H, W, 3]`` images (W is dim 2)."""
    flip = torch.rand(len(x)) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(2)
    return x


def pretrain(params, faces: np.ndarray, steps: int, batch: int) -> dict:
    p = params.pretrain
    torch.manual_seed(0)
    model = MaskedAutoencoder(params.model.name, p.decoder_dim, p.decoder_depth, p.decoder_heads, p.norm_pix_loss,
                              p.mask_ratio, params.model.img_size).to(DEVICE)
    opt = adamw(model, scaled_lr(p.blr, batch), p.weight_decay, (0.9, 0.95), device=DEVICE)
    sched = warmup_cosine(opt, steps, max(1, steps // 20))
    faces_t, tick, window, log = torch.from_numpy(faces), time.perf_counter(), [], []
    for step in range(steps):
        sched.step_update(step)
        x = to_input(flip_half(faces_t[torch.randint(0, len(faces_t), (batch,))]))
        with autocast(DEVICE):
            loss, _, mask = model(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append((loss.item(), model.trivial_loss(x, mask).item()))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            loss_w, trivial_w = np.mean(window, axis=0)
            log.append({"step": step + 1, "loss": float(loss_w), "trivial_loss": float(trivial_w)})
            print(f"MAE step {step + 1}/{steps}: loss {loss_w:.3f} (trivial {trivial_w:.3f}), "
                  f"{time.perf_counter() - tick:.0f} s", flush=True)
            window = []
    return {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "log": log}


def finetune(params, variant: str, data: dict, mae_path: Path, epochs: int, lr: float, layer_decay: float,
             batch: int = 32) -> dict:
    """One variant on one fold's ``data``. Each epoch is scored on the validation subjects (F1 at their
    best threshold, ROC-AUC); the best epoch's weights and threshold are then applied once to the test
    subjects (per-AU AUC too), and a linear identity probe reads the test subjects' features."""
    lambda_ = params.iat.lambda_ if variant == "iat" else 0.0
    torch.manual_seed(0)
    model = build_model(params, "bp4d", lambda_)
    if variant != "random":
        load_backbone(model, str(mae_path))
    model.to(DEVICE)
    x_train, y_train, s_train = data["train"]
    y_val, y_test = data["val"][1].numpy(), data["test"][1].numpy()
    steps = len(x_train) // batch
    opt = adamw(model, lr, params.finetune.weight_decay, (0.9, 0.999), layer_decay, DEVICE)
    sched = warmup_cosine(opt, steps * epochs, steps, min_lr=1e-6)
    history, best, tick = [], None, time.perf_counter()
    for epoch in range(epochs):
        order, sums = torch.randperm(len(x_train)), np.zeros(2)
        for i in range(steps):
            sched.step_update(epoch * steps + i)
            b = order[i * batch:(i + 1) * batch]
            with autocast(DEVICE):
                au_logits, id_logits = model(to_input(flip_half(x_train[b])))
            loss = au_loss(au_logits, y_train[b].to(DEVICE))
            sums[0] += loss.item()
            if id_logits is not None:
                loss_id = id_loss(id_logits, s_train[b].to(DEVICE), params.iat.id_loss)
                sums[1] += loss_id.item()
                loss = loss + loss_id
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        val_probs, _ = predict(model, data["val"][0])
        threshold, val_f1 = best_threshold(y_val, val_probs)
        row = {"epoch": epoch + 1, "train_au_loss": sums[0] / steps, "val_f1": val_f1, "threshold": threshold,
               "val_auc": float(np.nanmean(auc_per_au(y_val, val_probs))), "seconds": time.perf_counter() - tick}
        if lambda_:
            row["train_id_loss"] = sums[1] / steps
        history.append(row)
        if best is None or val_f1 > best["val_f1"]:
            best = {**row, "state": copy.deepcopy(model.state_dict())}
        print(f"{variant} epoch {epoch + 1}/{epochs}: train AU loss {row['train_au_loss']:.3f} | validation "
              f"subjects: AUC {row['val_auc']:.3f}, F1 {val_f1:.3f} at threshold {threshold:.2f} | "
              f"{row['seconds']:.0f} s", flush=True)
    model.load_state_dict(best.pop("state"))
    test_probs, feats = predict(model, data["test"][0])
    test_auc = auc_per_au(y_test, test_probs)
    selected = {**best, "test_auc": float(np.nanmean(test_auc)),
                "test_f1": float(f1_per_au(y_test, test_probs, best["threshold"]).mean()),
                "test_auc_per_au": dict(zip(map(str, AUS["bp4d"]), np.round(test_auc, 4).tolist()))}
    print(f"{variant}: epoch {best['epoch']} selected; test AUC {selected['test_auc']:.3f}, F1 {selected['test_f1']:.3f}",
          flush=True)
    return {"history": history, "selected": selected, "probe": identity_probe(feats, data["test"][2].numpy(), params)}


def pretrained_probe(params, data: dict, mae_path: Path) -> float:
    """The identity probe on the MAE encoder's own features, before any finetuning."""
    model = build_model(params, "bp4d", 0.0)
    load_backbone(model, str(mae_path))
    _, feats = predict(model.to(DEVICE), data["test"][0])
    return identity_probe(feats, data["test"][2].numpy(), params)


@torch.no_grad()
def predict(model, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """(AU probabilities, pooled features) for uint8 frames, in order."""
    model.eval()
    probs, feats = [], []
    for i in range(0, len(x), 256):
        with autocast(DEVICE):
            feat = model.features(to_input(x[i:i + 256]))
            logits = model.head(feat)
        feats.append(feat.float().cpu())
        probs.append(torch.sigmoid(logits.float()).cpu())
    model.train()
    return torch.cat(probs).numpy(), torch.cat(feats)


def identity_probe(feats: torch.Tensor, subject: np.ndarray, params) -> float:
    """Top-1 of a linear probe trained on 7 in 10 of each test subject's frames, tested on the others."""
    groups = pd.Series(subject).groupby(subject)
    position, count = groups.cumcount().to_numpy(), groups.transform("size").to_numpy()
    train = (position % 10 < 7) & (position < count - 1)  # every subject keeps a frame to test on
    cfg = params.evaluate
    return linear_probe(feats[train], subject[train], feats[~train], subject[~train], cfg.probe_epochs,
                        cfg.probe_lr, cfg.probe_batch_size, 0)[-1]


def mean_over(results: dict, variant: str, folds: list[str]) -> dict:
    """The validation-selected test figures and the probe of ``variant``, averaged over ``folds``."""
    runs = [results["folds"][f]["variants"][variant] for f in folds]
    row = {k: float(np.mean([r["selected"][k] for r in runs])) for k in ("test_auc", "test_f1", "epoch")}
    per_au = [r["selected"]["test_auc_per_au"] for r in runs]
    return {**row, "probe": float(np.mean([r["probe"] for r in runs])), "folds": folds,
            "test_auc_per_au": {au: float(np.nanmean([p[au] for p in per_au])) for au in per_au[0]}}


def floors(results: dict, folds: list[str]) -> dict:
    """The all-positive predictor's test F1, the probe on the pretrained features and chance, over ``folds``."""
    return {k: float(np.mean([results["folds"][f][key] for f in folds]))
            for k, key in (("all_positive_f1", "f1_all_positive"), ("probe_pretrained", "probe_pretrained"),
                           ("probe_chance", "probe_chance"))}


def summary(results: dict) -> dict:
    """``fmae`` over all its folds (the targets), and every variant on the folds they all ran."""
    ran = {v: [f for f, fold in results["folds"].items() if v in fold["variants"]]
           for v in results["settings"]["variants"].split(",")}
    common = sorted(set.intersection(*map(set, ran.values())))
    out = {"comparison": {"folds": common, **floors(results, common),
                          **{v: mean_over(results, v, common) for v in ran}} if common else None}
    if "fmae" in ran:
        out["fmae"] = {**mean_over(results, "fmae", ran["fmae"]), **floors(results, ran["fmae"])}
    return out


def plot(results: dict, path: Path) -> None:
    """The MAE loss against its trivial baseline; validation AUC per finetuning epoch per variant (the mean
    over the folds it ran, each fold faint); the selected epochs' test AUC per AU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mae, ax, ax_au) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=120, gridspec_kw={"width_ratios": [2, 3, 3]})
    steps = [r["step"] for r in results["mae_log"]]
    ax_mae.plot(steps, [r["loss"] for r in results["mae_log"]], marker=".", label="MAE loss")
    ax_mae.plot(steps, [r["trivial_loss"] for r in results["mae_log"]], color="grey", linestyle=":",
                label="trivial (each patch's mean)")
    ax_mae.set(xlabel="MAE step", ylabel="masked-patch MSE (normalised pixels)", title="Pretraining", ylim=(0, None))
    ax_mae.legend()
    variants = results["settings"]["variants"].split(",")
    for k, variant in enumerate(variants):
        curves = np.array([[r["val_auc"] for r in f["variants"][variant]["history"]]
                           for f in results["folds"].values() if variant in f["variants"]])
        epochs = np.arange(1, curves.shape[1] + 1)
        for curve in curves if len(curves) > 1 else []:
            ax.plot(epochs, curve, color=f"C{k}", alpha=0.25, linewidth=1)
        ax.plot(epochs, curves.mean(0), color=f"C{k}", marker="o", label=f"{variant} ({len(curves)} fold(s))")
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set(xlabel="finetuning epoch", ylabel="mean ROC-AUC, validation subjects (unseen)", title="AU detection while finetuning")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    comparison = results["summary"]["comparison"]
    if comparison:
        aus = list(comparison[variants[0]]["test_auc_per_au"])
        width = 0.8 / len(variants)
        for k, variant in enumerate(variants):
            ax_au.bar(np.arange(len(aus)) + (k - (len(variants) - 1) / 2) * width,
                      [comparison[variant]["test_auc_per_au"][au] for au in aus], width, color=f"C{k}", label=variant)
        ax_au.axhline(0.5, color="grey", linestyle=":")
        ax_au.set(xticks=range(len(aus)), xticklabels=[f"AU{au}" for au in aus], ylim=(0.3, 1.0), ylabel="test ROC-AUC",
                  title=f"Test subjects, selected epoch (fold {', '.join(comparison['folds'])})")
        ax_au.tick_params(axis="x", labelsize=7)
        ax_au.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(results: dict) -> list[str]:
    """The closing lines: the MAE against its baseline, fmae over its folds, the variants side by side."""
    s, log = results["summary"], results["mae_log"][-1]
    lines = [f"MAE: loss {log['loss']:.3f} against the trivial {log['trivial_loss']:.3f}"]
    if "fmae" in s:
        f = s["fmae"]
        lines.append(f"fmae over folds {', '.join(f['folds'])}: test AUC {f['test_auc']:.3f}, F1 {f['test_f1']:.3f} "
                     f"(all-positive {f['all_positive_f1']:.3f}, so {f['test_f1'] - f['all_positive_f1']:+.3f})")
    c = s["comparison"]
    if c:
        lines.append(f"on fold(s) {', '.join(c['folds'])}: identity probe on the pretrained features {c['probe_pretrained']:.3f} "
                     f"(chance {c['probe_chance']:.3f}), all-positive F1 {c['all_positive_f1']:.3f}")
        lines += [f"{v:>8}: test AUC {r['test_auc']:.3f}, F1 {r['test_f1']:.3f}, selected epoch {r['epoch']:.1f}, "
                  f"identity probe {r['probe']:.3f}" for v, r in c.items() if isinstance(r, dict) and "test_auc" in r]
    return lines


def flat_metrics(results: dict) -> dict:
    """The summary as flat keys for ``dvc metrics show`` (a top-level metrics file of ``dvc.yaml``)."""
    s, log = results["summary"], results["mae_log"][-1]
    out = {"mae": {"loss": log["loss"], "trivial_loss": log["trivial_loss"], "steps": log["step"]},
           "minutes": round(results["seconds"] / 60, 1), "code_sha256": results["code"]["sha256"][:12]}
    if "fmae" in s:
        f = s["fmae"]
        out["fmae"] = {"folds": len(f["folds"]), "test_auc": f["test_auc"], "test_f1": f["test_f1"],
                       "all_positive_f1": f["all_positive_f1"], "f1_over_all_positive": f["test_f1"] - f["all_positive_f1"]}
    c = s["comparison"]
    if c:
        out["comparison"] = {"folds": ",".join(c["folds"]), "all_positive_f1": c["all_positive_f1"],
                             "probe_pretrained": c["probe_pretrained"], "probe_chance": c["probe_chance"],
                             **{v: {k: r[k] for k in ("test_auc", "test_f1", "epoch", "probe")}
                                for v, r in c.items() if isinstance(r, dict) and "test_auc" in r}}
    return out


def publish(results: dict, out: Path, metrics: Path | None, figure: Path | None) -> None:
    """``results.json`` and ``learning.png`` in ``out``; the flat metrics and a copy of the figure where the
    repository keeps them (``metrics/``, ``reports/``), so ``dvc metrics show`` and the README show this run."""
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, out / "learning.png")
    if metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps(flat_metrics(results), indent=2) + "\n")
    if figure is not None:
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes((out / "learning.png").read_bytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/learning_demo"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--faces", type=int, default=8000, help="synthetic faces to pretrain on")
    ap.add_argument("--mae-steps", type=int, default=4000)
    ap.add_argument("--mae-batch", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=8, help="BP4D tasks per subject (1-8)")
    ap.add_argument("--frames", type=int, default=80, help="frames rendered per task")
    ap.add_argument("--frame-step", type=int, default=4, help="keep every n-th frame")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16), help="render processes")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layer-decay", type=float, default=0.75,
                    help="layer-wise lr decay (paper: 0.65 for ViT-L; here 0.75 learns slightly faster, see the docstring)")
    ap.add_argument("--folds", default="1,2,3", help="BP4D folds (1-3) of the fmae runs, comma-separated")
    ap.add_argument("--compare-folds", default="1",
                    help="folds on which the other variants run too (default 1; 1,2,3 for the full comparison)")
    ap.add_argument("--variants", default="fmae,random,iat", help="comma-separated: fmae, random, iat")
    ap.add_argument("--metrics", type=Path, default=Path("metrics/learning_demo.json"),
                    help="the summary as DVC metrics (dvc.yaml lists this file); '' = not written")
    ap.add_argument("--figure", type=Path, default=Path("reports/learning_demo.png"), help="a copy of learning.png; '' = none")
    args = ap.parse_args()
    variants, folds, compare = args.variants.split(","), args.folds.split(","), args.compare_folds.split(",")
    bad = [v for v in variants if v not in ("fmae", "random", "iat")] + [f for f in folds + compare if f not in ("1", "2", "3")]
    if bad or not 1 <= args.tasks <= 8 or min(args.faces, args.mae_steps, args.frames, args.frame_step, args.epochs, args.workers) < 1:
        ap.error(f"--variants must name fmae, random or iat and --folds 1, 2 or 3 (got {bad}); --tasks 1-8; counts >= 1")
    variant_folds = {v: {int(f) for f in (folds if v == "fmae" else compare)} for v in variants}
    params = load_params(args.params)
    args.out.mkdir(parents=True, exist_ok=True)
    start, code = time.perf_counter(), code_version([ROOT / "pipeline", Path(__file__)])  # before any edit can land
    world = {"seed": params.synth.seed, "identity_au_strength": params.synth.identity_au_strength,
             "renderer": code_version([ROOT / "pipeline" / "synth"])["sha256"]}  # a changed renderer re-renders
    with Pool(args.workers, initializer=_init, initargs=(params.synth,)) as pool:
        faces = cached(args.out / "faces.npy", {**world, "faces": args.faces},
                       lambda: np.stack(pool.map(_face, range(args.faces), chunksize=64)), np.load, np.save)
        jobs = [(s, args.tasks, args.frames, args.frame_step) for s in subjects("bp4d")]
        frames = cached(args.out / "au.npz", {**world, "tasks": args.tasks, "frames": args.frames, "step": args.frame_step},
                        lambda: pool.map(_subject, jobs),
                        lambda p: [(d[f"x{i}"], d[f"y{i}"]) for d in [np.load(p)] for i in range(len(jobs))],
                        lambda p, v: np.savez(p, **{f"{k}{i}": a for i, (x, y) in enumerate(v) for k, a in (("x", x), ("y", y))}))
    print(f"{len(faces)} faces and {sum(len(x) for x, _ in frames)} AU frames ready, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    mae_settings = {**world, "faces": args.faces, "steps": args.mae_steps, "batch": args.mae_batch,
                    "model": params.to_dict()["model"], "pretrain": params.to_dict()["pretrain"]}
    mae = cached(args.out / "mae.pth", mae_settings, lambda: pretrain(params, faces, args.mae_steps, args.mae_batch),
                 lambda p: torch.load(p, weights_only=True), lambda p, v: torch.save(v, p))

    vocab = subjects("bp4d")
    index = pd.DataFrame({"subject": np.concatenate([[s] * len(x) for s, (x, _) in zip(vocab, frames)])})
    x_all, y_all = torch.from_numpy(np.concatenate([x for x, _ in frames])), torch.from_numpy(np.concatenate([y for _, y in frames]))
    s_all = torch.tensor(index.subject.map({s: i for i, s in enumerate(vocab)}).to_numpy())
    results = {"mae_log": mae["log"], "folds": {},
               "settings": vars(args) | {"out": str(args.out), "params": str(args.params)},
               "params": params.to_dict(), "code": code, "versions": versions()}
    for fold in sorted(set().union(*variant_folds.values())):
        parts = fold_parts(index, "bp4d", fold, params.finetune.val_fraction, params.finetune.seed)
        rows = {k: torch.from_numpy(np.array(v.index)) for k, v in parts.items()}
        data = {k: (x_all[r], y_all[r], s_all[r]) for k, r in rows.items()}
        floor = best_threshold(data["test"][1].numpy(), np.ones(data["test"][1].shape))[1]
        print(f"fold {fold}: {len(data['train'][0])} training, {len(data['val'][0])} validation, "
              f"{len(data['test'][0])} test frames; all-positive test F1 {floor:.3f}", flush=True)
        results["folds"][str(fold)] = {
            "f1_all_positive": floor, "probe_chance": 1 / parts["test"].subject.nunique(),
            "probe_pretrained": pretrained_probe(params, data, args.out / "mae.pth"),
            "frames": {k: len(v[0]) for k, v in data.items()},
            "variants": {v: finetune(params, v, data, args.out / "mae.pth", args.epochs, args.lr, args.layer_decay)
                         for v in variants if fold in variant_folds[v]}}
    results["summary"] = summary(results)
    results["seconds"] = time.perf_counter() - start
    publish(results, args.out, args.metrics if str(args.metrics) not in ("", ".") else None,
            args.figure if str(args.figure) not in ("", ".") else None)
    print("\n" + "\n".join(report(results)))
    print(f"{results['seconds'] / 60:.1f} min; {args.out / 'results.json'}, {args.out / 'learning.png'}")


if __name__ == "__main__":
    main()

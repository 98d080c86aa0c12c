"""The learning demo: MAE-pretrain the demo ViT on synthetic faces, then finetune it for AU detection
on unseen subjects, against random init and with IAT. Bigger than `make demo`, smaller than a paper run.

Run: ``make learning-demo`` or ``python benchmarks/learning_demo.py [--out data/learning_demo]
[--faces 8000] [--mae-steps 1000] [--tasks 8] [--frames 80] [--frame-step 4] [--epochs 6]
[--variants fmae,random,iat]``. About 35 minutes on 2 CPU cores with the defaults; on a CUDA GPU
it runs there, in bf16 autocast.

What it does, with the pipeline's own renderer, models, losses, optimiser and metrics, but with the
data held in memory instead of going through the DVC stages (which would add curation and JPEG
round trips to every step):
1. renders ``--faces`` source faces of distinct synthetic people, cropped at the face box + 5%
   (the AU crops' framing), 112 px;
2. pretrains the MAE of ``params.yaml``'s ``model``/``pretrain`` sections on them for
   ``--mae-steps`` steps (batch 64, flips only), printing the loss against the trivial
   per-patch-mean loss of the same batch;
3. renders BP4D's 41 subjects x ``--tasks`` tasks x ``--frames`` frames (every ``--frame-step``-th
   kept) with the world's labels, and splits BP4D fold 1 into training, validation (20% of the
   training subjects) and test subjects;
4. finetunes each variant for ``--epochs`` (AdamW lr 1e-3, layer decay 0.65, warm-up 1 epoch,
   cosine, flips): ``fmae`` from the MAE, ``random`` from random weights, ``iat`` from the MAE with
   the identity head behind the gradient reversal (``iat.lambda``). After every epoch: mean test
   ROC-AUC and F1 at the threshold chosen on validation subjects; at the end, a linear identity
   probe on the test subjects' features (70/30 frames per subject).

Outputs in ``--out``: ``faces.npy``, ``mae.pth``, ``au.npz`` (each reused when its settings match,
recorded in ``*.settings.json``), ``results.json`` (per-epoch figures, the probe, params, code
version) and ``learning.png`` (test AUC per epoch per variant).
"""

from __future__ import annotations

import argparse
import json
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
    lambda_ = params.iat.lambda_ if variant == "iat" else 0.0
    torch.manual_seed(0)
    model = build_model(params, "bp4d", lambda_)
    if variant != "random":
        load_backbone(model, str(mae_path))
    model.to(DEVICE)
    x_train, y_train, s_train = data["train"]
    steps = len(x_train) // batch
    opt = adamw(model, lr, params.finetune.weight_decay, (0.9, 0.999), layer_decay, DEVICE)
    sched = warmup_cosine(opt, steps * epochs, steps, min_lr=1e-6)
    history, tick = [], time.perf_counter()
    for epoch in range(epochs):
        order, total = torch.randperm(len(x_train)), 0.0
        for i in range(steps):
            sched.step_update(epoch * steps + i)
            b = order[i * batch:(i + 1) * batch]
            with autocast(DEVICE):
                au_logits, id_logits = model(to_input(flip_half(x_train[b])))
            loss = au_loss(au_logits, y_train[b].to(DEVICE))
            total += loss.item()
            if id_logits is not None:
                loss = loss + id_loss(id_logits, s_train[b].to(DEVICE), params.iat.id_loss)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        (val_probs, _), (test_probs, _) = (predict(model, data[k][0]) for k in ("val", "test"))
        threshold, val_f1 = best_threshold(data["val"][1].numpy(), val_probs)
        y_test = data["test"][1].numpy()
        row = {"epoch": epoch + 1, "train_au_loss": total / steps, "val_f1": val_f1, "threshold": threshold,
               "test_auc": float(np.nanmean(auc_per_au(y_test, test_probs))),
               "test_f1": float(f1_per_au(y_test, test_probs, threshold).mean()),
               "seconds": time.perf_counter() - tick}
        history.append(row)
        print(f"{variant} epoch {epoch + 1}/{epochs}: train AU loss {row['train_au_loss']:.3f} | test AUC "
              f"{row['test_auc']:.3f}, F1 {row['test_f1']:.3f} at the validation threshold {threshold:.2f} | "
              f"{row['seconds']:.0f} s", flush=True)
    _, feats = predict(model, data["test"][0])
    return {"history": history, "probe": identity_probe(feats, data["test"][2].numpy(), params)}


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


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for variant, run in results["variants"].items():
        epochs = [r["epoch"] for r in run["history"]]
        ax.plot(epochs, [r["test_auc"] for r in run["history"]], marker="o", label=variant)
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set(xlabel="epoch", ylabel="mean test ROC-AUC (unseen subjects)", title="BP4D-like fold 1, learning demo")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/learning_demo"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--faces", type=int, default=8000, help="synthetic faces to pretrain on")
    ap.add_argument("--mae-steps", type=int, default=1000)
    ap.add_argument("--mae-batch", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=8, help="BP4D tasks per subject (1-8)")
    ap.add_argument("--frames", type=int, default=80, help="frames rendered per task")
    ap.add_argument("--frame-step", type=int, default=4, help="keep every n-th frame")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layer-decay", type=float, default=0.65)
    ap.add_argument("--variants", default="fmae,random,iat", help="comma-separated: fmae, random, iat")
    args = ap.parse_args()
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in ("fmae", "random", "iat")]
    if bad or not 1 <= args.tasks <= 8 or min(args.faces, args.mae_steps, args.frames, args.frame_step, args.epochs) < 1:
        ap.error(f"--variants must name fmae, random or iat (got {bad}); --tasks 1-8; counts >= 1")
    params = load_params(args.params)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    world = {"seed": params.synth.seed, "identity_au_strength": params.synth.identity_au_strength,
             "renderer": code_version([ROOT / "pipeline" / "synth"])["sha256"]}  # a changed renderer re-renders
    with Pool(2, initializer=_init, initargs=(params.synth,)) as pool:
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
    parts = fold_parts(index, "bp4d", 1, params.finetune.val_fraction, params.finetune.seed)
    rows = {k: torch.from_numpy(np.array(v.index)) for k, v in parts.items()}
    data = {k: (x_all[r], y_all[r], s_all[r]) for k, r in rows.items()}
    floor = best_threshold(data["test"][1].numpy(), np.ones(data["test"][1].shape))[1]
    print(f"fold 1: {len(data['train'][0])} training, {len(data['val'][0])} validation, {len(data['test'][0])} test "
          f"frames; all-positive test F1 {floor:.3f}", flush=True)
    results = {"variants": {}, "mae_log": mae["log"], "f1_all_positive": floor, "probe_chance": 1 / parts["test"].subject.nunique(),
               "frames": {k: len(v[0]) for k, v in data.items()}, "settings": vars(args) | {"out": str(args.out), "params": str(args.params)},
               "params": params.to_dict(), "code": code_version([ROOT / "pipeline", Path(__file__)]), "versions": versions()}
    for variant in variants:
        results["variants"][variant] = finetune(params, variant, data, args.out / "mae.pth", args.epochs, args.lr,
                                                args.layer_decay)
    results["seconds"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, args.out / "learning.png")
    print(f"\nMAE: loss {mae['log'][-1]['loss']:.3f} against the trivial {mae['log'][-1]['trivial_loss']:.3f}")
    for variant, run in results["variants"].items():
        last = run["history"][-1]
        print(f"{variant:>6}: test AUC {last['test_auc']:.3f}, F1 {last['test_f1']:.3f} (all-positive {floor:.3f}), "
              f"identity probe {run['probe']:.3f} (chance {results['probe_chance']:.3f})")
    print(f"{results['seconds'] / 60:.1f} min; {args.out / 'results.json'}, {args.out / 'learning.png'}")


if __name__ == "__main__":
    main()

"""The paper's figures as PNGs (matplotlib, no display needed): F1 per epoch (Figure 5), identity
probe accuracy per epoch (Figure 3), t-SNE of backbone features (Figure 4), per-AU F1 bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

LABELS = {"pretrained": "FMAE pretrained (no finetuning)", "fmae": "FMAE", "iat": "FMAE-IAT",
          "random": "random init (no pretraining)"}
COLOURS = {"pretrained": "tab:grey", "fmae": "tab:blue", "iat": "tab:red", "random": "tab:green"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_figure(curves: dict[str, np.ndarray], path: Path, title: str, ylabel: str,
                  xlabel: str = "epoch", hline: tuple[str, float] | None = None) -> Path:
    """One line per variant; ``curves[name]`` is ``[folds, epochs]`` (mean drawn, folds faint) or ``[epochs]``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        values = np.atleast_2d(np.asarray(values, dtype=float))
        x = np.arange(1, values.shape[1] + 1)
        colour = COLOURS.get(name)
        if len(values) > 1:
            for k, row in enumerate(values):
                ax.plot(x, row, color=colour, alpha=0.25, linewidth=1,
                        label=f"{LABELS.get(name, name)}, each fold" if k == 0 else None)
        ax.plot(x, np.nanmean(values, axis=0), color=colour, marker="o", markersize=3,
                label=LABELS.get(name, name) + (f" (mean of {len(values)})" if len(values) > 1 else ""))
    if hline is not None:
        ax.axhline(hline[1], color="black", linestyle="--", linewidth=1, label=hline[0])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def tsne_figure(panels: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Side-by-side 2-D embeddings, points coloured by subject: ``panels[name] = (xy [N, 2], subjects [N])``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (name, (xy, subjects)) in zip(axes[0], panels.items()):
        names = sorted(set(subjects.tolist()))
        cmap = plt.get_cmap("tab20", max(len(names), 1))
        for k, s in enumerate(names):
            sel = subjects == s
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(k), label=s)
        ax.set_title(LABELS.get(name, name))
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5), title="subject")
    fig.suptitle(title)
    return _save(fig, path)


def per_au_figure(aus: list[str], values: dict[str, list[float]], path: Path, title: str,
                  floor: list[float] | None = None) -> Path:
    """Grouped bars of F1 per AU per variant; ``floor`` marks the all-positive predictor per AU."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(aus) + 2), 4))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(aus))
    for k, (name, v) in enumerate(values.items()):
        ax.bar(x + (k - (len(values) - 1) / 2) * width, np.nan_to_num(np.asarray(v, float)), width,
               color=COLOURS.get(name), label=LABELS.get(name, name))
    if floor is not None:
        ax.scatter(x, floor, marker="_", s=300, color="black", label="all-positive predictor", zorder=3)
    ax.set_xticks(x, aus)
    ax.set(title=title, ylabel="F1", ylim=(0, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def tsne_2d(features: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn t-SNE to 2-D (perplexity capped for small sets)."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) / 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)

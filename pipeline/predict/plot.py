"""``fmae predict --plot DIR``: one video's probabilities over time (face 0), a strip per AU or expression."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .annotate import output_name  # noqa: E402


def plot_timeline(table: pd.DataFrame, video: str, aus: list[str], threshold: float | None, path: Path,
                  what: str = "AU") -> Path | None:
    """PNG of face 0's probabilities (columns ``aus``) in ``video`` against time, with the occurrence
    ``threshold`` dashed (None: none, as for expressions); None when the video has no such face."""
    rows = table[(table.input == video) & (table.face == 0) & (table.status == "ok")].sort_values("time_s")
    if rows.empty:
        return None
    fig, axes = plt.subplots(len(aus), 1, figsize=(9, 0.55 * len(aus) + 0.9), sharex=True, squeeze=False)
    for ax, au in zip(axes[:, 0], aus):
        ax.fill_between(rows.time_s, rows[au], color="tab:blue", alpha=0.25, linewidth=0)
        ax.plot(rows.time_s, rows[au], color="tab:blue", linewidth=1)
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", linewidth=0.7, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.tick_params(axis="y", labelsize=6, length=2)
        ax.set_ylabel(au.removeprefix("FER_"), rotation=0, ha="right", va="center", fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1, 0].set_xlabel("time (s)")
    note = f" (dashed: threshold {threshold:.2f})" if threshold is not None else ""
    fig.suptitle(f"{Path(video).name}: {what} probability of face 0{note}", fontsize=9)
    fig.tight_layout(h_pad=0.1)
    path = Path(path) / f"{output_name(video)}{'' if what == 'AU' else '_' + what.lower()}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

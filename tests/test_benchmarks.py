"""The GPU figures' benchmark (``benchmarks/model_step.py``) on a CPU: every task runs, and the FLOPs it
divides by are the model's (a training step ~3x its forward pass)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_model_step_counts_training_as_three_forward_passes(tmp_path):
    out = tmp_path / "rows.jsonl"
    for task in ("au", "predict", "mae"):
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_step.py"), "--task", task,
                        "--model", "vit_tiny_patch16_224", "--img-size", "32", "--decoder", "32,1,2", "--batch", "4",
                        "--steps", "1", "--repeats", "1", "--iat-lambda", "0", "--json", str(out)],
                       check=True, capture_output=True, cwd=tmp_path)
    rows = {r["task"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"au", "predict", "mae"}
    assert all(r["img_per_s"] > 0 and r["mfu_datasheet"] is None for r in rows.values())  # no GPU peak on a CPU
    ratio = rows["au"]["gflops_per_image"] / rows["predict"]["gflops_per_image"]
    assert 2.8 < ratio < 3.2, ratio  # backward ~2x forward
    assert rows["mae"]["gflops_per_image"] < rows["au"]["gflops_per_image"]  # the encoder sees a quarter of the tokens

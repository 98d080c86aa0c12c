"""The benchmarks on a CPU: model_step.py runs every task and divides by the model's FLOPs (a training step ~3x
its forward pass); the detector and predict benchmarks print their tables; the GPU script parses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


@pytest.mark.slow
def test_detector_and_predict_benchmarks_print_their_tables(tmp_path):
    """benchmarks/detectors.py and predict_speed.py run at a tiny size and print every row they promise."""
    detectors = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "detectors.py"), "--frames", "2", "--batch", "2"],
                               check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    row = next(line for line in detectors.splitlines() if line.startswith("| retinaface"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("IoU") and cells[8] == "3/3 (+0)" and cells[9] == "0 false"  # clean, group, noise
    speed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "predict_speed.py"), "--frames", "8",
                            "--models", "vit_tiny_patch16_224@32", "--batch-sizes", "1,4", "--device", "cpu"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "detect (retinaface, cpu)" in speed and "batch 4: 8 frames in" in speed  # the loop counts its frames
    assert sum(line.startswith("| vit_tiny_patch16_224") for line in speed.splitlines()) == 2


def test_the_gpu_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_figures.sh")], check=True)

"""The learning demo's own pieces (``benchmarks/learning_demo.py``); its results are in the README."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from .conftest import ROOT


def _demo():
    spec = importlib.util.spec_from_file_location("learning_demo", ROOT / "benchmarks" / "learning_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flip_is_horizontal_and_keeps_the_channels():
    demo = _demo()
    x = torch.randint(0, 256, (64, 4, 5, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    y = demo.flip_half(x)
    flipped = [not torch.equal(a, b) for a, b in zip(x, y)]
    assert 16 < sum(flipped) < 48  # about half
    for a, b, f in zip(x, y, flipped):
        assert torch.equal(b, a.flip(1) if f else a)  # mirrored along the width, RGB order kept


def test_input_is_the_normalised_channels_first_image():
    demo = _demo()
    x = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    out = demo.to_input(x)
    assert out.shape == (2, 3, 4, 5)
    mean, std = np.array(demo.IMAGENET_MEAN), np.array(demo.IMAGENET_STD)
    want = (x[1, 2, 3].numpy() / 255 - mean) / std
    np.testing.assert_allclose(out[1, :, 2, 3].numpy(), want, rtol=1e-5)


def test_crop_is_the_pipelines_box_grown_five_percent_in_rgb():
    demo = _demo()
    img = np.zeros((300, 300, 3), np.uint8)
    img[100:200, 100:200] = (255, 0, 0)  # a blue (BGR) square exactly the box
    face = demo.crop(img, (100, 100, 100, 100))
    assert face.shape == (112, 112, 3)
    border = round(112 * 5 / 110)  # 5 px of margin each side of a 100 px box in 110 px
    assert face[border + 2:-border - 2, border + 2:-border - 2, 2].min() == 255  # blue is the last RGB channel
    assert face[:border - 1, :, 2].max() == 0 and face[:, :border - 1, 2].max() == 0


def _run(auc: float, f1: float, epoch: int, probe: float) -> dict:
    history = [{"epoch": e, "val_auc": auc - 0.1 + 0.05 * e} for e in (1, 2)]
    per_au = {"1": auc + 0.1, "2": auc - 0.1}
    return {"history": history, "probe": probe,
            "selected": {"test_auc": auc, "test_f1": f1, "epoch": epoch, "test_auc_per_au": per_au}}


def _results() -> dict:
    folds = {
        "1": {"f1_all_positive": 0.40, "probe_chance": 0.1, "probe_pretrained": 0.9,
              "variants": {"fmae": _run(0.80, 0.55, 2, 0.7), "random": _run(0.60, 0.45, 1, 0.9), "iat": _run(0.70, 0.50, 2, 0.3)}},
        "2": {"f1_all_positive": 0.44, "probe_chance": 0.2, "probe_pretrained": 0.8, "variants": {"fmae": _run(0.70, 0.51, 1, 0.5)}},
        "3": {"f1_all_positive": 0.42, "probe_chance": 0.1, "probe_pretrained": 0.7, "variants": {"fmae": _run(0.75, 0.48, 2, 0.6)}},
    }
    results = {"folds": folds, "settings": {"variants": "fmae,random,iat"}, "seconds": 600.0,
               "mae_log": [{"step": 50, "loss": 0.6, "trivial_loss": 1.0}, {"step": 100, "loss": 0.4, "trivial_loss": 1.0}],
               "code": {"sha256": "ab" * 32}}
    results["summary"] = _demo().summary(results)
    return results


def test_summary_averages_fmae_over_its_folds_and_compares_variants_on_the_common_ones():
    s = _results()["summary"]
    fmae = s["fmae"]
    assert fmae["folds"] == ["1", "2", "3"]
    np.testing.assert_allclose([fmae["test_auc"], fmae["test_f1"], fmae["epoch"], fmae["all_positive_f1"]],
                               [0.75, (0.55 + 0.51 + 0.48) / 3, 5 / 3, 0.42])
    np.testing.assert_allclose(fmae["test_auc_per_au"]["1"], 0.85)
    c = s["comparison"]
    assert c["folds"] == ["1"]  # random and iat ran on fold 1 only
    assert (c["fmae"]["test_auc"], c["random"]["test_auc"], c["iat"]["probe"]) == (0.80, 0.60, 0.3)
    assert (c["all_positive_f1"], c["probe_pretrained"], c["probe_chance"]) == (0.40, 0.9, 0.1)


def test_publish_writes_the_flat_metrics_and_the_figure(tmp_path):
    import json

    demo, results = _demo(), _results()
    demo.publish(results, tmp_path, tmp_path / "metrics" / "m.json", tmp_path / "reports" / "fig.png")
    metrics = json.loads((tmp_path / "metrics" / "m.json").read_text())
    assert metrics["fmae"]["folds"] == 3 and metrics["minutes"] == 10.0
    np.testing.assert_allclose(metrics["fmae"]["f1_over_all_positive"], (0.55 + 0.51 + 0.48) / 3 - 0.42)
    assert metrics["comparison"]["iat"] == {"test_auc": 0.70, "test_f1": 0.50, "epoch": 2, "probe": 0.3}
    assert metrics["mae"] == {"loss": 0.4, "trivial_loss": 1.0, "steps": 100}
    assert (tmp_path / "reports" / "fig.png").read_bytes() == (tmp_path / "learning.png").read_bytes()
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["fmae"]["folds"] == ["1", "2", "3"]

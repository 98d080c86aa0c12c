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

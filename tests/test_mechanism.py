"""Identity adversarial training on a toy problem, independent of the synthetic face world.

Inputs carry AU information and identity information in separate (then linearly mixed) dimensions.
A small encoder is trained with the pipeline's own pieces (``GRL``, ``au_loss``, ``id_loss``). What
the gradient reversal does, and what these tests pin down: the encoder defeats the co-trained
identity head (its accuracy falls to chance) while the AUs stay detectable; with the reversal's sign
flipped the head learns every subject.

What it does *not* do here (measured, see the README): a fresh linear probe trained on the frozen
features still decodes identity (top-1 ~1.0 at lambda 1 or 2, against ~0.4 with the identity loss
off), because fooling a fixed linear adversary takes features that still separate the subjects.
So no test here asserts that IAT lowers the probe; the paper's probe result is an empirical claim
about ViT features, which the evaluate stage measures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.au.metrics import auc_per_au
from pipeline.au.train import au_loss, id_loss
from pipeline.evaluate.linear_probes import linear_probe
from pipeline.models.vit_classifier import GRL, dann_ramp

SUBJECTS, AUS, PER_SUBJECT = 10, 3, 90
ID_DIMS, NOISE, ID_SCALE = 8, 0.3, 3.0


def toy_data(seed: int):
    """x ``[N, AUS + ID_DIMS]`` (mixed by a fixed rotation), AU labels ``[N, AUS]``, subject ``[N]``."""
    g = torch.Generator().manual_seed(seed)
    subject = torch.arange(SUBJECTS).repeat_interleave(PER_SUBJECT)
    labels = (torch.rand(len(subject), AUS, generator=g) < 0.4).float()  # AUs independent of identity
    identity = ID_SCALE * torch.randn(SUBJECTS, ID_DIMS, generator=g)[subject]
    x = torch.cat([2 * labels - 1, identity], 1) + NOISE * torch.randn(len(subject), AUS + ID_DIMS, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(AUS + ID_DIMS, AUS + ID_DIMS, generator=g))
    return x @ rotation, labels, subject


class Toy(nn.Module):
    def __init__(self, lambda_: float):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(AUS + ID_DIMS, 32), nn.GELU(), nn.Linear(32, 16), nn.LayerNorm(16))
        self.head = nn.Linear(16, AUS)
        self.grl = GRL(lambda_)
        self.ID_head = nn.Linear(16, SUBJECTS)

    def forward(self, x):
        feat = self.encoder(x)
        return self.head(feat), self.ID_head(self.grl(feat))


def train_toy(lambda_: float, steps: int = 400, seed: int = 0) -> dict:
    """Train on 2/3 of each subject's frames; return the co-trained identity head's accuracy on
    them, a fresh linear probe's top-1 on the other third, and the AU ROC-AUC there."""
    x, labels, subject = toy_data(seed)
    torch.manual_seed(seed)
    model = Toy(lambda_)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    train = torch.arange(len(x)) % 3 != 0
    for _ in range(steps):
        au_logits, id_logits = model(x[train])
        loss = au_loss(au_logits, labels[train]) + id_loss(id_logits, subject[train], "bce")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        feat = model.encoder(x)
        au_probs = torch.sigmoid(model.head(feat)).numpy()
        head_acc = float((model.ID_head(feat[train]).argmax(1) == subject[train]).float().mean())
    test = ~train
    probe = linear_probe(feat[train], subject[train].numpy(), feat[test], subject[test].numpy(),
                         epochs=60, lr=1e-2, batch_size=64, seed=seed)[-1]
    auc = float(np.mean(auc_per_au(labels[test].numpy(), au_probs[test.numpy()])))
    return {"id_head": head_acc, "probe": probe, "auc": auc}


@pytest.fixture(scope="module")
def cooperative():
    """lambda -1: the GRL passes the identity gradient on unchanged, i.e. the sign-flip bug."""
    return train_toy(-1.0)


def test_without_reversal_the_identity_head_learns_the_subjects(cooperative):
    assert cooperative["id_head"] > 0.9 and cooperative["auc"] > 0.95, cooperative


def test_gradient_reversal_defeats_the_identity_head_and_keeps_the_aus(cooperative):
    adversarial = train_toy(2.0)  # the paper's BP4D lambda
    chance = 1 / SUBJECTS
    assert adversarial["id_head"] < chance + 0.15, adversarial  # the encoder beats its adversary
    assert cooperative["id_head"] - adversarial["id_head"] > 0.6
    assert adversarial["auc"] > 0.9, adversarial  # while the AUs stay detectable


def test_dann_ramp_values():
    assert dann_ramp(0.0) == 0.0
    assert dann_ramp(0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1) and dann_ramp(0.5) == pytest.approx(0.98661, abs=1e-5)
    assert dann_ramp(1.0) == pytest.approx(0.9999092, abs=1e-7)


@pytest.mark.parametrize("schedule", ["constant", "ramp"])
def test_the_objective_schedules_the_reversal_scale(schedule):
    from pipeline.au.train import AUObjective
    from pipeline.models.vit_classifier import ViTClassifier

    model = ViTClassifier("vit_tiny_patch16_224", 3, 5, 2.0, img_size=32)
    objective = AUObjective(2.0, "bce", schedule)
    for progress in (0.0, 0.5, 1.0):
        objective.on_step(model, progress)
        want = 2.0 if schedule == "constant" else 2.0 * dann_ramp(progress)
        assert model.grl.lambda_ == pytest.approx(want) and objective.current == pytest.approx(want)
    x = torch.ones(2, 4, requires_grad=True)
    objective.on_step(model, 0.5)
    model.grl(x).sum().backward()  # the reversal scales the backward pass by the scheduled lambda
    assert torch.allclose(x.grad, torch.full_like(x, -model.grl.lambda_))

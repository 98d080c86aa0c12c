import numpy as np
import pytest

from pipeline.synth.expression import au_sequence, subject_offsets
from pipeline.synth.identity import sample_identity
from pipeline.synth.render import AU_REGIONS, AUS, Pose, render_face
from pipeline.synth.seeding import rng_for

SIZE = 200
POSE = Pose(SIZE / 2, SIZE / 2, 120)  # face box from 40 to 160 px: regions map linearly
PEOPLE = [sample_identity(rng_for(7, "test-identity", k), f"t{k}") for k in range(4)]


def _render(person, aus):
    img = np.full((SIZE, SIZE, 3), 128, np.uint8)
    return render_face(img, person, aus, POSE).astype(int)


def _region_mask(au):
    x0, y0, x1, y1 = AU_REGIONS[au]
    to_px = lambda v: POSE.cx - POSE.size / 2 + v * POSE.size  # noqa: E731 (same for x and y here)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[max(0, int(np.floor(to_px(y0)))):int(np.ceil(to_px(y1))) + 1, max(0, int(np.floor(to_px(x0)))):int(np.ceil(to_px(x1))) + 1] = True
    return mask


def test_renderer_is_deterministic_for_a_seed():
    a = sample_identity(rng_for(3, "identity", "x"), "x")
    b = sample_identity(rng_for(3, "identity", "x"), "x")
    aus = rng_for(3, "aus").uniform(0, 5, len(AUS))
    assert a == b
    assert np.array_equal(_render(a, aus), _render(b, aus))
    assert sample_identity(rng_for(4, "identity", "x"), "x") != a


@pytest.mark.parametrize("au", AUS)
@pytest.mark.parametrize("person", PEOPLE, ids=lambda p: p.key)
def test_each_au_changes_only_its_region_and_more_with_intensity(au, person):
    neutral = _render(person, {})
    outside = ~_region_mask(au)
    changes = []
    for level in (1, 2, 3, 4, 5):
        diff = np.abs(_render(person, {au: level}) - neutral).sum(axis=2)
        assert diff[outside].max() == 0, f"AU{au} at {level} changed pixels outside its region"
        changes.append(diff.sum())
    assert changes[0] > 0, f"AU{au} at intensity 1 changed nothing"
    assert all(b > a for a, b in zip(changes, changes[1:])), f"AU{au} not monotonic: {changes}"


def test_au_effects_are_subtle():
    """Even at intensity 5 an AU changes a small part of the face box."""
    person = PEOPLE[0]
    neutral = _render(person, {})
    for au in AUS:
        changed = (np.abs(_render(person, {au: 5}) - neutral).sum(axis=2) > 24).mean()
        assert changed < 0.05, (au, changed)


def test_unknown_au_is_an_error():
    with pytest.raises(ValueError, match="not rendered"):
        _render(PEOPLE[0], {5: 3})


def test_sequences_are_smooth_bounded_and_subject_dependent():
    rng = rng_for(0, "seq")
    seq = au_sequence(rng, 400, np.zeros(len(AUS)), "T1")
    assert seq.shape == (400, len(AUS)) and seq.min() >= 0 and seq.max() <= 5
    assert np.abs(np.diff(seq, axis=0)).mean() < 0.25 * seq.std()  # frame-to-frame steps are small
    # with a strong identity effect, subjects' activation rates differ far more than without
    def spread(strength):
        rates = [(au_sequence(rng_for(0, "s", k), 300, subject_offsets(rng_for(0, "o", k), strength), "T1") >= 0.5).mean(0)
                 for k in range(12)]
        return np.std(rates, axis=0).mean()
    assert spread(2.0) > 2 * spread(0.0)

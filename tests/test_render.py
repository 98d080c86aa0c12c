import numpy as np
import pytest

from pipeline.synth.expression import au_sequence, subject_offsets
from pipeline.synth.identity import sample_identity
from pipeline.synth.render import AU_REGIONS, AUS, RENDERED_AUS, Pose, render_face
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


@pytest.mark.parametrize("au", RENDERED_AUS)
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


STRONG_AUS = (1, 2, 4, 5, 6, 10, 12, 17, 20, 26)  # large, plainly visible movements at intensity E
SUBTLE_AUS = (7, 14, 23, 24)  # lid tightener, dimpler, lip tightener and pressor: subtle, as in real data


def _changed_fraction(person, au: int) -> float:
    """Fraction of the face box whose pixels change by more than 24 grey levels (summed) at intensity 5."""
    neutral = _render(person, {})
    return float((np.abs(_render(person, {au: 5}) - neutral).sum(axis=2) > 24).sum() / POSE.size**2)


def test_strong_aus_are_plainly_visible_and_subtle_ones_subtler():
    changed = {au: np.mean([_changed_fraction(p, au) for p in PEOPLE]) for au in STRONG_AUS + SUBTLE_AUS}
    assert min(changed[a] for a in STRONG_AUS) > 0.015, changed
    assert max(changed[a] for a in SUBTLE_AUS) < min(changed[a] for a in STRONG_AUS), changed
    assert changed[26] > 0.06, changed  # the jaw drop opens the mouth wide
    assert max(changed.values()) < 0.2  # still an expression, not a different face


def test_jaw_drop_opens_the_mouth_and_lips_part_show_the_teeth():
    person = PEOPLE[0]
    mouth = (slice(int(POSE.cy - 60 + 0.70 * 120), int(POSE.cy - 60 + 1.0 * 120)), slice(int(POSE.cx - 20), int(POSE.cx + 20)))
    dark = lambda img: (img[mouth].sum(axis=2) < 200).sum()  # noqa: E731 (the mouth interior)
    bright = lambda img: (img[mouth].min(axis=2) > 170).sum()  # noqa: E731 (teeth)
    neutral, jaw, lips = _render(person, {}), _render(person, {26: 5}), _render(person, {25: 5})
    opening = lambda img: dark(img) + bright(img)  # noqa: E731 (interior and teeth between the lips)
    assert opening(jaw) > opening(neutral) + 60
    assert bright(lips) > bright(neutral) + 20


def test_unknown_au_is_an_error():
    with pytest.raises(ValueError, match="not rendered"):
        _render(PEOPLE[0], {11: 3})
    with pytest.raises(ValueError, match="cannot be unilateral"):
        render_face(np.zeros((SIZE, SIZE, 3), np.uint8), PEOPLE[0], {4: 3}, POSE, unilateral={4})


@pytest.mark.parametrize("person", PEOPLE, ids=lambda p: p.key)
def test_unilateral_smile_and_dimple_change_one_side_only(person):
    neutral = _render(person, {})
    both = np.abs(_render(person, {12: 5, 14: 5}) - neutral).sum(axis=2)
    one = np.abs(render_face(np.full((SIZE, SIZE, 3), 128, np.uint8), person, {12: 5, 14: 5}, POSE,
                             unilateral={12, 14}).astype(int) - neutral).sum(axis=2)
    left, right = one[:, :SIZE // 2 - 2], one[:, SIZE // 2 + 2:]  # the subject's right is the image's left
    assert right.sum() == 0 and left.sum() > 0.3 * both[:, :SIZE // 2 - 2].sum()


def test_the_expression_only_aus_leave_sequence_frames_as_they_were():
    """A sequence's intensity array covers the 15 AUs; AU 5 and 20 stay at 0 there."""
    person = PEOPLE[1]
    aus = rng_for(5, "aus").uniform(0, 5, len(AUS))
    as_dict = {au: v for au, v in zip(AUS, aus)}
    assert np.array_equal(_render(person, aus), _render(person, {**as_dict, 5: 0, 20: 0}))
    assert not np.array_equal(_render(person, aus), _render(person, {**as_dict, 5: 3}))


def test_sequences_are_smooth_bounded_and_subject_dependent():
    rng = rng_for(0, "seq")
    seq = au_sequence(rng, 400, np.zeros(len(AUS)), "T1")
    assert seq.shape == (400, len(AUS)) and seq.min() >= 0 and seq.max() <= 5
    assert np.abs(np.diff(seq, axis=0)).mean() < 0.25 * seq.std()  # frame-to-frame steps are small
    active = seq[np.rint(seq) >= 1]
    assert (active >= 3).mean() > 0.5  # episodes spend most of their time near the apex, not at trace level
    # with a strong identity effect, subjects' activation rates differ far more than without
    def spread(strength):
        rates = [(au_sequence(rng_for(0, "s", k), 300, subject_offsets(rng_for(0, "o", k), strength), "T1") >= 0.5).mean(0)
                 for k in range(12)]
        return np.std(rates, axis=0).mean()
    assert spread(2.0) > 2 * spread(0.0)

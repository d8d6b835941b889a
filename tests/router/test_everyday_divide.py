"""The library's divide between packets' texts and everyday questions (router.everyday)."""

from __future__ import annotations

import numpy as np

from fieldkit.router.everyday import Divide, Everyday

LEADS = (0.12, 0.06)


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two clouds of unit vectors, around two different directions."""
    rng = np.random.default_rng(seed)
    ours = np.eye(16)[0] + 0.3 * rng.standard_normal((40, 16))
    theirs = np.eye(16)[1] + 0.3 * rng.standard_normal((90, 16))
    return [
        (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32) for x in (ours, theirs)
    ]


def test_the_divide_runs_from_plus_one_at_the_texts_to_minus_one_at_the_everyday_questions():
    ours, theirs = clusters()
    divide = Divide.fit(ours, theirs)
    assert divide is not None
    means = np.stack([ours.mean(axis=0), theirs.mean(axis=0)])
    sides = divide.side(np.concatenate([means, means.mean(axis=0, keepdims=True)]))
    assert np.allclose(sides, [1.0, -1.0, 0.0], atol=1e-5)
    assert (divide.side(ours) > 0).mean() > 0.95
    assert (divide.side(theirs) < 0).mean() > 0.95


def test_no_divide_without_both_sides():
    ours, theirs = clusters()
    assert Divide.fit(ours[:0], theirs) is None
    assert Divide.fit(ours, theirs[:0]) is None
    assert Divide.fit(theirs, theirs) is None  # the means coincide
    assert Divide.fit(ours[:39], theirs) is None  # too few texts (DIVIDE_MIN_TEXTS)
    one = Divide.fit(ours[:1], theirs, min_texts=1)  # a single text still has a side
    assert one is not None
    assert one.side(ours[:1])[0] > 0


def test_the_objection_needs_the_everyday_side_only_inside_the_lead():
    everyday = Everyday(["How do I boil eggs?"], np.zeros((1, 4), np.float32))
    far = everyday.objection(0, 0.70, 0.55, "poultry", LEADS, side=0.9)
    assert far.startswith('an everyday question, not an expert\'s: nearer "How do I boil eggs?"')
    assert "side" not in far  # nearer by the whole lead: the divide is not asked
    near = everyday.objection(0, 0.63, 0.55, "poultry", LEADS, side=-0.3)
    assert near.endswith(
        "than poultry's texts (0.55), and on the everyday side of the library (-0.30)"
    )
    assert everyday.objection(0, 0.63, 0.55, "poultry", LEADS, side=0.3) == ""
    assert everyday.objection(0, 0.60, 0.55, "poultry", LEADS, side=-1.0) == ""  # too far behind
    assert everyday.objection(0, 0.63, 0.55, "poultry", LEADS) == ""  # no divide

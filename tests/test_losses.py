"""The multi-negative hinge loss and the accuracy, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from musicrep.training.losses import (
    accuracy,
    candidate_similarities,
    hinge_loss,
    info_nce,
    joint_loss,
    masked_accuracy,
    masked_hinge,
    similarities,
)


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_hinge_loss_matches_hand_computation():
    # Anchor along x; cosines are the cosines of the angles.
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    p = torch.tensor([_unit(60), [0.0, 1.0]])  # cos 0.5 and 1.0
    n = torch.tensor([[_unit(90), _unit(0)], [[1.0, 0.0], [0.0, -1.0]]])  # cos 0, 1 | 0, -1
    # row 0, margin 0.4: max(0, 0.4-0.5+0) + max(0, 0.4-0.5+1) = 0 + 0.9
    # row 1: max(0, 0.4-1+0) + max(0, 0.4-1-1) = 0
    # the authors' K.sum: summed over the negatives and the batch: 0.9 + 0
    loss = hinge_loss(a, positive=p, negatives=n, margin=0.4)
    assert loss.item() == pytest.approx(0.9, abs=1e-6)
    # the named departure: mean over the batch of the sum over negatives
    assert hinge_loss(a, positive=p, negatives=n, margin=0.4, reduction="mean").item() == pytest.approx(0.45, abs=1e-6)
    # a third row adds its own violations to the sum: cos(a, p) = 0, cos(a, n) = 0.5 and 0
    # -> max(0, 0.4 - 0 + 0.5) + max(0, 0.4 - 0 + 0) = 1.3
    a3 = torch.cat([a, torch.tensor([[1.0, 0.0]])])
    p3 = torch.cat([p, torch.tensor([[0.0, 1.0]])])
    n3 = torch.cat([n, torch.tensor([[_unit(60), _unit(90)]])])
    assert hinge_loss(a3, positive=p3, negatives=n3, margin=0.4).item() == pytest.approx(0.9 + 1.3, abs=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        hinge_loss(a, positive=p, negatives=n, margin=0.4, reduction="max")


def test_similarities_and_accuracy():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    n = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[2.0, 0.0]]])  # the last is a tie
    sims = similarities(a, positive=p, negatives=n)
    assert sims.shape == (3, 2)
    assert sims[1].tolist() == pytest.approx([0.0, 1.0])
    assert accuracy(a, positive=p, negatives=n).item() == pytest.approx(1 / 3)  # a tie counts as wrong


def test_loss_gradient_pushes_the_right_way():
    a = torch.tensor([[1.0, 0.2]], requires_grad=True)
    p = torch.tensor([[0.0, 1.0]], requires_grad=True)
    n = torch.tensor([[[1.0, 0.0], [1.0, 0.1]]], requires_grad=True)
    hinge_loss(a, positive=p, negatives=n, margin=0.1).backward()
    assert (p.grad @ torch.tensor([1.0, 0.0])).item() < 0  # descending moves p toward a
    with pytest.raises(ValueError):
        hinge_loss(a, positive=p, negatives=n[0], margin=0.1)


def test_joint_loss_sums_concepts():
    parts = {"artist": torch.tensor(0.5), "album": torch.tensor(0.25), "track": torch.tensor(0.125)}
    assert joint_loss(parts).item() == pytest.approx(0.875)


# ---------------------------------------------------------------- in-batch negatives and InfoNCE

def _two_rows():
    """Anchors along x and y; positives at 60 deg from x, and along y."""
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([_unit(60), [0.0, 1.0]])
    return a, p


def test_in_batch_candidates_are_the_other_rows_positives_of_another_label():
    a, p = _two_rows()
    none = torch.zeros(2, 0, 2)
    sims, valid = candidate_similarities(a, positive=p, negatives=none, labels=torch.tensor([0, 1]))
    # columns: own positive, then cos(a_i, p_j) for j = 0, 1
    want = torch.tensor([[0.5, 0.5, 0.0], [1.0, math.sin(math.radians(60)), 1.0]])
    assert torch.allclose(sims, want, atol=1e-6)
    assert valid.tolist() == [[True, False, True], [True, True, False]]  # never its own positive
    _, same = candidate_similarities(a, positive=p, negatives=none, labels=torch.tensor([3, 3]))
    assert same.tolist() == [[True, False, False], [True, False, False]]  # a same-label row is not a negative


def test_masked_hinge_and_info_nce_match_hand_computation():
    a, p = _two_rows()
    n = torch.tensor([[_unit(0)], [_unit(0)]])  # one sampled negative each: cos 1 | 0
    sims, valid = candidate_similarities(a, positive=p, negatives=n, labels=torch.tensor([0, 1]))
    # row 0: sampled max(0, .4-.5+1) = .9, in-batch p_1: max(0, .4-.5+0) = 0
    # row 1: sampled max(0, .4-1+0) = 0, in-batch p_0: max(0, .4-1+sin60) = .266
    s60 = math.sin(math.radians(60))
    assert masked_hinge(sims, valid=valid, margin=0.4).item() == pytest.approx(0.9 + (0.4 - 1 + s60), abs=1e-6)
    # without in-batch candidates it is the paper's hinge
    s0, v0 = candidate_similarities(a, positive=p, negatives=n)
    assert masked_hinge(s0, valid=v0, margin=0.4).item() == pytest.approx(hinge_loss(a, positive=p, negatives=n, margin=0.4).item(), abs=1e-6)
    # InfoNCE, t = 0.5: row 0 logits (.5, 1, 0)/.5, row 1 (1, 0, s60)/.5
    t = 0.5
    row0 = -0.5 / t + math.log(math.exp(0.5 / t) + math.exp(1 / t) + math.exp(0 / t))
    row1 = -1 / t + math.log(math.exp(1 / t) + math.exp(0 / t) + math.exp(s60 / t))
    assert info_nce(sims, valid=valid, temperature=t).item() == pytest.approx(row0 + row1, abs=1e-5)
    assert info_nce(sims, valid=valid, temperature=t, reduction="mean").item() == pytest.approx((row0 + row1) / 2, abs=1e-5)
    # accuracy: row 0 loses to its sampled negative, row 1 beats both
    assert masked_accuracy(sims, valid=valid).item() == pytest.approx(0.5)


def test_info_nce_ignores_masked_candidates_entirely():
    a, p = _two_rows()
    sims, valid = candidate_similarities(a, positive=p, negatives=torch.zeros(2, 0, 2), labels=torch.tensor([7, 7]))
    # no valid negative: the softmax holds the positive alone, the loss is 0, the hinge too
    assert info_nce(sims, valid=valid, temperature=0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_hinge(sims, valid=valid, margin=0.4).item() == 0.0

"""The multi-negative hinge loss and the accuracy, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from musicrep.losses import accuracy, hinge_loss, joint_loss, similarities


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
    loss = hinge_loss(a, p, n, margin=0.4)
    assert loss.item() == pytest.approx(0.9, abs=1e-6)
    # the named departure: mean over the batch of the sum over negatives
    assert hinge_loss(a, p, n, margin=0.4, reduction="mean").item() == pytest.approx(0.45, abs=1e-6)
    # a third row adds its own violations to the sum: cos(a, p) = 0, cos(a, n) = 0.5 and 0
    # -> max(0, 0.4 - 0 + 0.5) + max(0, 0.4 - 0 + 0) = 1.3
    a3 = torch.cat([a, torch.tensor([[1.0, 0.0]])])
    p3 = torch.cat([p, torch.tensor([[0.0, 1.0]])])
    n3 = torch.cat([n, torch.tensor([[_unit(60), _unit(90)]])])
    assert hinge_loss(a3, p3, n3, margin=0.4).item() == pytest.approx(0.9 + 1.3, abs=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        hinge_loss(a, p, n, margin=0.4, reduction="max")


def test_similarities_and_accuracy():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    n = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[2.0, 0.0]]])  # the last is a tie
    sims = similarities(a, p, n)
    assert sims.shape == (3, 2)
    assert sims[1].tolist() == pytest.approx([0.0, 1.0])
    assert accuracy(a, p, n).item() == pytest.approx(1 / 3)  # a tie counts as wrong


def test_loss_gradient_pushes_the_right_way():
    a = torch.tensor([[1.0, 0.2]], requires_grad=True)
    p = torch.tensor([[0.0, 1.0]], requires_grad=True)
    n = torch.tensor([[[1.0, 0.0], [1.0, 0.1]]], requires_grad=True)
    hinge_loss(a, p, n, margin=0.1).backward()
    assert (p.grad @ torch.tensor([1.0, 0.0])).item() < 0  # descending moves p toward a
    with pytest.raises(ValueError):
        hinge_loss(a, p, n[0], margin=0.1)


def test_joint_loss_sums_concepts():
    parts = {"artist": torch.tensor(0.5), "album": torch.tensor(0.25), "track": torch.tensor(0.125)}
    assert joint_loss(parts).item() == pytest.approx(0.875)

"""The multi-negative hinge loss on cosine similarity, single and joint.

For an anchor ``a``, its positive ``p`` and N negatives ``n_i``::

    loss(a) = sum_i max(0, margin - cos(a, p) + cos(a, n_i))

Reduction: **sum over the N negatives and over the batch** (``reduction="sum"``,
the default). The sum over negatives is the paper's formula as written (Park et
al. 2018, eq. 2; Lee et al. 2019). The sum over the batch is what the authors'
Keras code does: their loss function returns ``K.sum(...)`` with no axis, a
scalar over the whole batch, and Keras passes a scalar through unchanged (it
does not average it), so their SGD step grows with the batch (batch 15 in their
code). ``reduction="mean"`` averages over the batch instead (a step independent
of the batch size); it is a named departure, not the authors' value.

Under DDP the training loop multiplies each rank's summed loss by the world
size, so that DDP's gradient average equals the gradient of the sum over the
global batch: every anchor moves the weights as much as in the authors' run.

The joint model adds the three concept losses, each with its own margin
(artist 0.4, album 0.25, track 0.1 after the paper's grid search).
"""

from __future__ import annotations

import torch

from .model import cosine

DEFAULT_MARGINS: dict[str, float] = {"artist": 0.4, "album": 0.25, "track": 0.1}


def similarities(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the anchor with its positive and each negative.

    Parameters
    ----------
    anchor : [B, D]
    positive : [B, D]
    negatives : [B, N, D]

    Returns
    -------
    torch.Tensor [B, 1 + N]: column 0 is cos(a, p), columns 1.. are cos(a, n_i)
    """
    if anchor.dim() != 2 or positive.shape != anchor.shape or negatives.dim() != 3:
        raise ValueError(
            f"expected anchor [B, D], positive [B, D], negatives [B, N, D]; got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negatives.shape)}"
        )
    pos = cosine(anchor, positive)[:, None]
    neg = cosine(anchor[:, None, :], negatives)
    return torch.cat([pos, neg], dim=1)


REDUCTIONS: tuple[str, ...] = ("sum", "mean")


def hinge_from_similarities(sims: torch.Tensor, *, margin: float, reduction: str = "sum") -> torch.Tensor:
    """Loss from [B, 1 + N] similarities (column 0 the positive): a scalar, summed over N and
    summed (``"sum"``, the authors') or averaged (``"mean"``) over B."""
    per_anchor = torch.clamp(margin - sims[:, :1] + sims[:, 1:], min=0.0).sum(dim=1)
    if reduction == "sum":
        return per_anchor.sum()
    if reduction == "mean":
        return per_anchor.mean()
    raise ValueError(f"reduction={reduction!r} is not one of {list(REDUCTIONS)}")


def hinge_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *, margin: float, reduction: str = "sum"
) -> torch.Tensor:
    """``sum_b sum_i max(0, margin - cos(a_b, p_b) + cos(a_b, n_bi))`` (``mean_b`` with ``reduction="mean"``).

    Parameters
    ----------
    anchor : [B, D]
    positive : [B, D]
    negatives : [B, N, D]
    margin : the hinge margin
    reduction : "sum" (the authors' Keras ``K.sum``) or "mean" over the batch

    Returns
    -------
    torch.Tensor, a scalar
    """
    return hinge_from_similarities(similarities(anchor, positive, negatives), margin=margin, reduction=reduction)


def accuracy_from_similarities(sims: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose positive (column 0) beats every negative strictly; a tie counts as wrong."""
    return (sims[:, 0] > sims[:, 1:].max(dim=1).values).float().mean()


def accuracy(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Share of anchors whose positive has the highest cosine among the 1 + N candidates.

    Chance level is 1 / (1 + N) (20% with 4 negatives). Shapes as :func:`hinge_loss`.
    """
    return accuracy_from_similarities(similarities(anchor, positive, negatives))


def joint_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The joint model's loss: the concept losses (each already with its margin) added."""
    if not losses:
        raise ValueError("joint_loss needs at least one concept loss")
    return torch.stack(list(losses.values())).sum()

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

Beyond the paper (named settings of :class:`~musicrep.training.train.TrainConfig`, off by
default): **in-batch negatives** (``in_batch_negatives``), where the positives of
the batch's other anchors serve as negatives too (those of another label: a
song of the anchor's own artist is not a negative), and the **InfoNCE** loss
(``loss="infonce"``, ``-log softmax(cos / temperature)`` of the positive among
the candidates). Both work on a similarity matrix with a validity mask
(:func:`candidate_similarities`), since the number of real negatives varies by
anchor once in-batch candidates with the anchor's label are left out.
"""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError
from .model import cosine


def similarities(anchor: torch.Tensor, *, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
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
        raise InvalidArgumentError(
            f"expected anchor [B, D], positive [B, D], negatives [B, N, D]; got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negatives.shape)}"
        )
    pos = cosine(anchor, b=positive)[:, None]
    neg = cosine(anchor[:, None, :], b=negatives)
    return torch.cat([pos, neg], dim=1)


REDUCTIONS: tuple[str, ...] = ("sum", "mean")
LOSSES: tuple[str, ...] = ("hinge", "infonce")


def candidate_similarities(
    anchor: torch.Tensor, *, positive: torch.Tensor, negatives: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities of each anchor with its candidates, and which candidates are real.

    Parameters
    ----------
    anchor, positive : [B, D]
    negatives : [B, N, D] sampled negatives (N may be 0)
    labels : int [B], each anchor's label; given, the other rows' positives join
        as in-batch negatives wherever their label differs from the anchor's

    Returns
    -------
    sims : [B, 1 + N (+ B)]: column 0 cos(a, p), then the N sampled negatives, then
        (with ``labels``) cos(a_i, p_j) for every row j
    valid : bool, same shape: column 0 and the sampled negatives always; an
        in-batch column j only for j != i with another label
    """
    sims = similarities(anchor, positive=positive, negatives=negatives)
    valid = torch.ones_like(sims, dtype=torch.bool)
    if labels is not None:
        cross = cosine(anchor[:, None, :], b=positive[None, :, :])  # [B, B]: cos(a_i, p_j)
        labels = labels.to(anchor.device)
        other = labels[:, None] != labels[None, :]  # excludes the diagonal (its own positive) too
        sims, valid = torch.cat([sims, cross], dim=1), torch.cat([valid, other], dim=1)
    return sims, valid


def _reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return per_anchor.sum()
    if reduction == "mean":
        return per_anchor.mean()
    raise InvalidArgumentError(f"reduction={reduction!r} is not one of {list(REDUCTIONS)}")


def masked_hinge(sims: torch.Tensor, *, valid: torch.Tensor, margin: float, reduction: str = "sum") -> torch.Tensor:
    """The hinge over every valid negative: ``sum_j valid_ij * max(0, margin - s_i0 + s_ij)``, reduced over B.

    With every candidate valid and no in-batch columns this is the paper's hinge (:func:`hinge_loss`).
    """
    terms = torch.clamp(margin - sims[:, :1] + sims[:, 1:], min=0.0) * valid[:, 1:]
    return _reduce(terms.sum(dim=1), reduction)


def info_nce(sims: torch.Tensor, *, valid: torch.Tensor, temperature: float, reduction: str = "sum") -> torch.Tensor:
    """``-log( exp(s_i0 / t) / sum_{valid j} exp(s_ij / t) )`` per anchor (column 0, the positive, included), reduced over B."""
    logits = (sims / temperature).masked_fill(~valid, float("-inf"))
    return _reduce(torch.logsumexp(logits, dim=1) - logits[:, 0], reduction)


def masked_accuracy(sims: torch.Tensor, *, valid: torch.Tensor) -> torch.Tensor:
    """Share of anchors whose positive beats every valid negative strictly (an anchor without negatives counts as right)."""
    best = sims[:, 1:].masked_fill(~valid[:, 1:], float("-inf")).max(dim=1).values if sims.shape[1] > 1 else \
        torch.full_like(sims[:, 0], float("-inf"))
    return (sims[:, 0] > best).float().mean()


def hinge_loss(
    anchor: torch.Tensor, *, positive: torch.Tensor, negatives: torch.Tensor, margin: float, reduction: str = "sum"
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
    sims, valid = candidate_similarities(anchor, positive=positive, negatives=negatives)
    return masked_hinge(sims, valid=valid, margin=margin, reduction=reduction)


def accuracy(anchor: torch.Tensor, *, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Share of anchors whose positive has the highest cosine among the 1 + N candidates.

    Chance level is 1 / (1 + N) (20% with 4 negatives). Shapes as :func:`hinge_loss`.
    """
    sims, valid = candidate_similarities(anchor, positive=positive, negatives=negatives)
    return masked_accuracy(sims, valid=valid)


def joint_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The joint model's loss: the concept losses (each already with its margin) added."""
    if not losses:
        raise InvalidArgumentError("joint_loss needs at least one concept loss")
    return torch.stack(list(losses.values())).sum()

"""What one training step, one epoch of steps and one validation pass compute.

The encoder and optimizer a run trains (the authors' settings), the lr schedule,
the loss of a batch of every concept in one forward pass, and the per-anchor
metrics of an epoch. The training loop (:mod:`musicrep.training.train`) calls them
in order; under DDP each rank computes its own batches and the metrics are
averaged over the ranks.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import torch

from ..errors import InvalidArgumentError
from .augment import augment_batches
from .distributed import Dist, all_sum
from .losses import candidate_similarities, info_nce, joint_loss, masked_accuracy, masked_hinge
from .model import Encoder
from .resume import TrainState
from .sampling import ConceptSampler, batch_labels, make_batches
from .settings import TrainConfig


def make_encoder(config: TrainConfig, *, n_mels: int) -> Encoder:
    """The encoder a run trains, with the run's architecture and init settings."""
    return Encoder(width=config.width, n_mels=n_mels, conv_bias=config.conv_bias, bn_eps=config.bn_eps,
                   bn_momentum=config.bn_momentum, init=config.init)


def lr_at(step: int, *, config: TrainConfig) -> float:
    """Keras time-based decay, as the authors' ``SGD(decay=1e-6)``: ``lr / (1 + decay * step)``."""
    return config.lr / (1.0 + config.lr_decay * step)


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The run's optimizer over ``model``'s parameters: Nesterov SGD (the authors') or Adam."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # on a GPU one fused kernel updates every parameter; on CPU the reference loop
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay, **fused)


def concept_loss(sims: torch.Tensor, *, valid: torch.Tensor, concept: str, config: TrainConfig) -> torch.Tensor:
    """One concept's loss from its candidates' similarities: the paper's hinge (its margin) or InfoNCE."""
    if config.loss == "infonce":
        return info_nce(sims, valid=valid, temperature=config.temperature, reduction=config.loss_reduction)
    return masked_hinge(sims, valid=valid, margin=config.margin(concept), reduction=config.loss_reduction)


def step_losses(
    model: torch.nn.Module, *, batches: dict[str, torch.Tensor], config: TrainConfig, device: torch.device,
    labels: dict[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Loss of one step: every concept's batch through the encoder in one forward pass.

    Parameters
    ----------
    batches : concept -> [B, 2 + N, T, n_mels] (anchor, positive, negatives)
    labels : concept -> int [B], the anchors' labels (:func:`musicrep.training.sampling.batch_labels`);
        needed with ``config.in_batch_negatives``

    Returns
    -------
    (total loss, concept -> loss, concept -> accuracy), scalars
    """
    if config.in_batch_negatives and labels is None:
        raise InvalidArgumentError("in_batch_negatives needs the anchors' labels "
                                   "(musicrep.training.sampling.batch_labels)")
    shapes = {c: tuple(b.shape) for c, b in batches.items()}
    per_slot = config.bn_per_slot and len({s[0] for s in shapes.values()}) == 1
    # Slot-major order ([K, B] per concept) when each slot (anchor, positive, each
    # negative, of each concept) gets its own BatchNorm statistics, as separate
    # Keras inputs do; sample-major otherwise.
    # Each batch goes to the device as it came (a worker's pinned memory copies without
    # blocking); the reordering copy is then made there, not in unpinned host memory.
    on_device = [torch.as_tensor(b).to(device, non_blocking=True) for b in batches.values()]
    x = torch.cat([b.transpose(0, 1).reshape(-1, *b.shape[2:]) if per_slot else b.reshape(-1, *b.shape[2:])
                   for b in on_device])
    slots = sum(s[1] for s in shapes.values()) if per_slot else 1
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.amp):
        emb = model(x, slots=slots) if slots > 1 and model.training else model(x)
    emb = emb.float()  # cosine and hinge in float32 whatever the forward precision
    losses, accs, offset = {}, {}, 0
    for c, (B, K, *_rest) in shapes.items():
        e = emb[offset : offset + B * K]
        e = e.reshape(K, B, -1).transpose(0, 1) if per_slot else e.reshape(B, K, -1)
        offset += B * K
        row_labels = torch.as_tensor(labels[c]) if config.in_batch_negatives else None
        sims, valid = candidate_similarities(e[:, 0], positive=e[:, 1], negatives=e[:, 2:], labels=row_labels)
        losses[c] = concept_loss(sims, valid=valid, concept=c, config=config)
        accs[c] = masked_accuracy(sims.detach(), valid=valid)
    return joint_loss(losses), losses, accs


def train_step(
    net: torch.nn.Module, *, model: Encoder, optimizer: torch.optim.Optimizer, batches: dict[str, torch.Tensor],
    config: TrainConfig, step: int, world: int = 1, device: torch.device = torch.device("cpu"),
    labels: dict[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One optimizer step, as the authors take it: lr decayed to ``step``, L2 on the kernels.

    ``net`` is ``model`` itself or its DDP/compiled wrapper. With the summed loss
    under DDP each rank's loss is multiplied by the world size, so that DDP's
    gradient average is the gradient of the sum over the global batch: a run on
    K processes with batch B each takes the step of one process on K x B.
    Returns what :func:`step_losses` returns (before the scaling and the penalty).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config=config)
    loss, losses, accs = step_losses(net, batches=batches, config=config, device=device, labels=labels)
    objective = loss * world if config.loss_reduction == "sum" and world > 1 else loss
    if config.l2_conv > 0:
        # once per step, not per rank: DDP averages this part of the gradient over identical copies
        objective = objective + config.l2_conv * sum(w.pow(2).sum() for w in model.conv_kernels())
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    optimizer.step()
    return loss, losses, accs


@torch.no_grad()
def validate(
    model: torch.nn.Module, *, samplers: dict[str, ConceptSampler], config: TrainConfig, d: Dist
) -> dict[str, float]:
    """Validation loss and accuracy per concept, on the same batches every epoch (averaged over ranks)."""
    model.eval()
    sums: list[float] = []
    for c, sampler in samplers.items():
        loss = acc = 0.0
        for i in range(config.valid_batches):
            one = {c: sampler}
            b = make_batches(one, batch_size=config.batch_size, seed=config.seed, rank=d.rank, step=i)
            lab = batch_labels(one, batch_size=config.batch_size, seed=config.seed, rank=d.rank, step=i) \
                if config.in_batch_negatives else None
            _, ls, ac = step_losses(model, batches={c: torch.from_numpy(b[c])}, config=config, device=d.device, labels=lab)
            loss, acc = loss + float(ls[c]) / config.anchors_per_loss, acc + float(ac[c])
        sums += [loss, acc]
    sums = all_sum(sums, d=d)
    model.train()
    n = config.valid_batches * d.world
    out: dict[str, float] = {}
    for k, c in enumerate(samplers):
        out[f"valid_loss_{c}"], out[f"valid_acc_{c}"] = sums[2 * k] / n, sums[2 * k + 1] / n
    out["valid_loss"] = sum(out[f"valid_loss_{c}"] for c in samplers)
    out["valid_acc"] = sum(out[f"valid_acc_{c}"] for c in samplers) / len(samplers)
    return out


def train_epoch(net: torch.nn.Module, *, model: Encoder, optimizer: torch.optim.Optimizer,
                stream: Iterator[dict[str, torch.Tensor]], state: TrainState,
                config: TrainConfig, d: Dist, samplers: dict[str, ConceptSampler] | None = None, bar=None) -> dict:
    """``steps_per_epoch`` training steps; advances ``state`` and returns the epoch's training metrics.

    ``samplers`` (the training samplers the stream draws from) give the anchors'
    labels for in-batch negatives.

    Losses are reported per anchor whatever the reduction, so runs with other
    batch sizes or reductions can be compared.
    """
    per_anchor = config.anchors_per_loss
    sums = {c: [0.0, 0.0] for c in config.concepts}
    total = 0.0
    t0 = time.perf_counter()
    for _ in range(config.steps_per_epoch):
        labels = batch_labels(samplers, batch_size=config.batch_size, seed=config.seed, rank=d.rank,
                              step=state.step) if config.in_batch_negatives else None
        batches = augment_batches(next(stream), config=config, step=state.step, rank=d.rank)  # none by default
        loss, losses, accs = train_step(net, model=model, optimizer=optimizer, batches=batches, config=config,
                                        step=state.step, world=d.world, device=d.device, labels=labels)
        state.step += 1
        value = loss.item() / per_anchor
        total += value
        for c in config.concepts:
            sums[c][0] += losses[c].item() / per_anchor
            sums[c][1] += accs[c].item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    seconds = time.perf_counter() - t0
    state.epoch += 1
    # each rank saw its own batches: the epoch's metrics are the mean over ranks
    flat = all_sum([total] + [v for c in config.concepts for v in sums[c]], d=d)
    n = config.steps_per_epoch * d.world
    segments = config.batch_size * (2 + config.negatives) * len(config.concepts) * config.steps_per_epoch * d.world
    row = {"epoch": state.epoch, "step": state.step, "lr": optimizer.param_groups[0]["lr"], "train_loss": flat[0] / n,
           "seconds": round(seconds, 3), "segments_per_s": round(segments / seconds, 1)}
    for k, c in enumerate(config.concepts):
        row[f"train_loss_{c}"], row[f"train_acc_{c}"] = flat[1 + 2 * k] / n, flat[2 + 2 * k] / n
    return row

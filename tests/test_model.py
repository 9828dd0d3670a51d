"""The encoder: the authors' init and BatchNorm constants, and per-slot batch statistics."""

from __future__ import annotations

import math

import pytest
import torch

from musicrep.training.model import Encoder, SlotBatchNorm1d


def test_per_slot_batchnorm_equals_separate_passes():
    torch.manual_seed(0)
    together = Encoder(width=8, n_mels=16).train()
    apart = Encoder(width=8, n_mels=16).train()
    apart.load_state_dict(together.state_dict())
    slots = [torch.randn(5, 129, 16) * (1 + k) + k for k in range(3)]  # each slot its own statistics
    joint = together(torch.cat(slots), slots=3)
    separate = torch.cat([apart(x) for x in slots])  # three separate calls, as Keras inputs are
    assert torch.allclose(joint, separate, atol=1e-5)
    for (name, a), b in zip(together.state_dict().items(), apart.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name  # running stats updated slot by slot
    # one pooled batch is different: that is what per-slot statistics change
    pooled = Encoder(width=8, n_mels=16).train()
    pooled.load_state_dict(apart.state_dict())
    assert not torch.allclose(pooled(torch.cat(slots)), joint, atol=1e-3)
    with pytest.raises(ValueError, match="equal slots"):
        together(torch.randn(7, 129, 16), slots=3)


def test_eval_mode_ignores_slots():
    enc = Encoder(width=8, n_mels=16).eval()
    x = torch.randn(6, 129, 16)
    assert torch.equal(enc(x, slots=3), enc(x))


def test_authors_init_and_batchnorm_constants():
    torch.manual_seed(1)
    enc = Encoder(width=64, n_mels=128)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv1d)]
    first = convs[0]
    limit = math.sqrt(6 / (128 * 4))  # Keras he_uniform: fan_in = in_channels x kernel
    assert first.weight.abs().max() <= limit
    assert first.weight.abs().max() > 0.95 * limit  # uniform over the whole range, not PyTorch's smaller one
    assert all(c.bias is not None and torch.count_nonzero(c.bias) == 0 for c in convs)
    bns = [m for m in enc.modules() if isinstance(m, SlotBatchNorm1d)]
    assert len(bns) == 5 and all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)
    plain = Encoder(width=64, n_mels=128, init="torch", conv_bias=False, bn_eps=1e-5, bn_momentum=0.1)
    assert plain.features[0][1].bias is None and plain.features[0][1].weight.abs().max() < 0.6 * limit
    assert plain.model_config.conv_bias is False and plain.model_config.bn_eps == 1e-5


def test_legacy_checkpoints_still_load(tmp_path):
    """A checkpoint written before conv_bias/bn_eps were recorded had PyTorch's layers."""
    from musicrep.training.checkpoint import load_encoder, save_checkpoint
    from musicrep.config import FeatureConfig, to_dict

    old = Encoder(width=8, n_mels=128, conv_bias=False, bn_eps=1e-5, init="torch")
    save_checkpoint({"model": old.state_dict(), "model_config": {"width": 8, "n_mels": 128},
                     "feature_config": to_dict(FeatureConfig()), "concept": "artist"}, path=tmp_path / "best.pt")
    enc, info = load_encoder(tmp_path / "best.pt")
    assert info.model_config.conv_bias is False and enc.features[0][2].eps == 1e-5

"""ONNX export: same numbers as PyTorch, normalisation inside, segments in, a fixed frame axis."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from musicrep.training.checkpoint import save_checkpoint
from musicrep.cli import main
from musicrep.config import FeatureConfig, to_dict
from musicrep.inference.embed import load
from musicrep.inference.export import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from musicrep.training.model import Encoder

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(3)
    enc = Encoder(width=8)
    enc.set_normalization(0.7, 0.3)  # far from (0, 1): a graph without it would differ
    with torch.no_grad():
        for mod in enc.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.normal_(0.0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                     "feature_config": to_dict(FeatureConfig()), "step": 1, "epoch": 1, "best_metric": 0.5,
                     "config": {}, "concept": "album"}, path=run / "best.pt")
    return run


def test_onnx_matches_pytorch(run, tmp_path, rng):
    model = load(run)
    path = export_onnx(model_or_run=model, out=tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5, 2):  # the segment axis is dynamic
        x = rng.gamma(2.0, 0.5, size=(batch, 129, 128)).astype(np.float32)
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        with torch.inference_mode():
            want = model.encoder(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 16)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    # the frame axis is not: a whole song fed at once (which used to give another vector) is refused
    with pytest.raises(Exception, match="Expected: 129"):
        session.run([OUTPUT_NAME], {INPUT_NAME: rng.gamma(2.0, 0.5, size=(2, 400, 128)).astype(np.float32)})
    # normalisation is in the graph: standardising by hand and running an encoder
    # with identity normalisation gives the same numbers
    plain = Encoder(width=8)
    plain.load_state_dict(model.encoder.state_dict())
    plain.set_normalization(0.0, 1.0)
    plain.eval()
    x = rng.gamma(2.0, 0.5, size=(2, 129, 128)).astype(np.float32)
    with torch.inference_mode():
        by_hand = plain(torch.from_numpy((x - 0.7) / 0.3)).numpy()
    np.testing.assert_allclose(session.run(None, {INPUT_NAME: x})[0], by_hand, atol=1e-5, rtol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["musicrep.concept"] == "album" and meta["musicrep.embedding_dim"] == "16"
    assert json.loads(meta["musicrep.feature_config"])["n_mels"] == 128
    assert meta["musicrep.checkpoint_sha256"] == model.checkpoint_sha()


def test_parity_check_catches_a_different_model(run, tmp_path):
    model = load(run)
    path = export_onnx(model_or_run=model, out=tmp_path / "m.onnx", check=False)
    other = Encoder(width=8).eval()
    assert check_parity(onnx_path=path, encoder=model.encoder) < 1e-4
    assert check_parity(onnx_path=path, encoder=other) > 1e-3


def test_export_cli(run, tmp_path, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main(["-q", "export", "--run", str(run), "-o", str(out)]) == 0
    assert out.is_file() and "matches PyTorch" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))
    assert main(["-q", "export", "--run", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

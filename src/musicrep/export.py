"""Export a trained encoder to ONNX, normalisation included.

The exported graph takes raw log-mel frames exactly as :func:`musicrep.features.log_mel`
returns them (and as the feature store holds them) and returns segment embeddings::

    input  "logmel"    float32 [batch, frames, n_mels]   (frames >= segment_frames, e.g. 129)
    output "embedding" float32 [batch, 2 x width]

Both the batch and the frame axes are dynamic. The standardisation with the
training set's mean / std is part of the graph (the encoder's buffers), so a
consumer needs nothing but the log-mel front end, whose settings are stored in
the model's metadata (``musicrep.feature_config``, JSON) together with the
concept, the embedding size and the source checkpoint's SHA-256. For song
vectors, feed non-overlapping 129-frame segments and average the outputs.

We use the TorchScript exporter (``dynamo=False``): it needs no extra package
and handles this convolution-only graph exactly.

The output file is written under :func:`musicrep.locks.folder_lock` on its own
path (one writer per file); a model from an unfinished run is refused unless
``allow_unfinished``, and then marked ``musicrep.unfinished = "true"``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import to_dict
from .errors import MusicrepError
from .io import atomic_path
from .locks import folder_lock

log = logging.getLogger(__name__)

INPUT_NAME = "logmel"
OUTPUT_NAME = "embedding"


class ExportError(MusicrepError):
    """The model could not be exported or the export does not match PyTorch."""


def export_onnx(
    *,
    model_or_run,
    out: str | Path,
    opset: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    allow_unfinished: bool = False,
) -> Path:
    """Write an ONNX file of the encoder.

    Parameters
    ----------
    model_or_run : :class:`~musicrep.embed.EmbeddingModel`, or a run folder / checkpoint
    out : path of the ``.onnx`` file (written atomically)
    opset : ONNX opset version
    check : run :func:`check_parity` on random input before keeping the file
    atol : largest absolute difference accepted by the check
    allow_unfinished : with a run folder, export it even if its training did
        not finish (no ``DONE``); the file's metadata says so

    Returns
    -------
    Path of the written file.

    Raises
    ------
    FolderLockedError
        when another process is writing ``out``
    """
    from .embed import EmbeddingModel, load

    out = Path(out)
    with folder_lock(out):
        model = model_or_run if isinstance(model_or_run, EmbeddingModel) else load(
            model_or_run, allow_unfinished=allow_unfinished)
        encoder = model.encoder.to("cpu")
        was_training = encoder.training
        encoder.eval()
        try:
            return _export(model, encoder, out, opset=opset, check=check, atol=atol)
        finally:
            encoder.train(was_training)


def _export(model, encoder: torch.nn.Module, out: Path, *, opset: int, check: bool, atol: float) -> Path:
    example = torch.zeros(2, 2 * model.segment_frames, encoder.n_mels)
    with atomic_path(out, suffix=".onnx") as tmp:
        with warnings.catch_warnings():
            # The tracer warns about the input-shape check in Encoder.forward and
            # about constant folding of slices; neither changes the graph's output.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    encoder,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 1: "frames"}, OUTPUT_NAME: {0: "batch"}},
                    opset_version=opset,
                )
            except Exception as exc:  # torch raises many kinds here
                raise ExportError(f"{out}: torch.onnx.export failed ({exc})") from exc
        _add_metadata(tmp, model)
        if check:
            diff = check_parity(onnx_path=tmp, encoder=encoder, segment_frames=model.segment_frames)
            if diff > atol:
                raise ExportError(f"{out}: ONNX output differs from PyTorch by {diff:.3g} > {atol}")
            log.info("ONNX parity: max |onnx - torch| = %.3g", diff)
    log.info("wrote %s", out)
    return out


def _add_metadata(path: Path, model) -> None:
    import onnx

    proto = onnx.load(str(path))
    meta = {
        "musicrep.feature_config": json.dumps(to_dict(model.feature_config), sort_keys=True),
        "musicrep.concept": model.concept,
        "musicrep.embedding_dim": str(model.dim),
        "musicrep.segment_frames": str(model.segment_frames),
        "musicrep.input": "raw log-mel [batch, frames, n_mels]; standardisation is inside the graph",
    }
    if model.checkpoint is not None:
        meta["musicrep.checkpoint_sha256"] = model.checkpoint_sha()
    if getattr(model, "unfinished", False):
        meta["musicrep.unfinished"] = "true"  # the run had no DONE: a consumer must know
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def check_parity(
    *,
    onnx_path: str | Path,
    encoder: torch.nn.Module,
    segment_frames: int = 129,
    batch_sizes: tuple[int, ...] = (1, 3),
    frame_counts: tuple[int, ...] | None = None,
    seed: int = 0,
) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch outputs.

    Random log-mel-like input (non-negative, as ``log10(1 + 10 mel)`` is) for
    each batch size and frame count (default: one and two and a half segments),
    so both dynamic axes are exercised.
    """
    import onnxruntime as ort

    frame_counts = frame_counts or (segment_frames, int(2.5 * segment_frames))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    encoder = encoder.eval()
    for b in batch_sizes:
        for t in frame_counts:
            x = rng.gamma(2.0, 0.5, size=(b, t, encoder.n_mels)).astype(np.float32)
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
            with torch.inference_mode():
                want = encoder(torch.from_numpy(x)).numpy()
            if got.shape != want.shape:
                raise ExportError(f"{onnx_path}: ONNX output shape {got.shape} != PyTorch {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
    return worst

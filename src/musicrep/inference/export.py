"""Export a trained encoder to ONNX, normalisation included.

The exported graph embeds *segments*: non-overlapping 129-frame (about 3 s)
pieces of raw log-mel, exactly as :meth:`musicrep.inference.embed.EmbeddingModel.features`
returns them (and as the feature store holds them)::

    input  "logmel"    float32 [segments, 129, n_mels]   (the frame axis is fixed)
    output "embedding" float32 [segments, 2 x width]

A song's vector, the one ``musicrep embed`` writes, is the plain mean of its
segments' embeddings: cut the song's log-mel [T, n_mels] into T // 129
consecutive segments, drop the trailing partial one, run them through the graph
and average the rows (:func:`onnx_song_vector` does just that; nothing is
L2-normalised, as in ``musicrep embed``). The frame axis is fixed on purpose: an
earlier graph took any number of frames, and feeding it a whole song gave a
vector up to 0.84 away from ``musicrep embed``'s (the encoder's time pooling over
a whole song is not the mean over its segments). ONNX Runtime now refuses any
other frame count.

The standardisation with the training set's mean / std is part of the graph
(the encoder's buffers), so a consumer needs nothing but the log-mel front end,
whose settings are stored in the model's metadata (``musicrep.feature_config``,
JSON) with ``musicrep.input`` and ``musicrep.song_vector`` (the two rules above
in words), the concept, the embedding size and the source checkpoint's SHA-256.

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
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import SEGMENT_FRAMES, to_dict
from ..errors import ExportError
from ..io import atomic_path
from ..locks import folder_lock
from ..training.model import Encoder
from .embed import EmbeddingModel, as_model

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

INPUT_NAME = "logmel"
OUTPUT_NAME = "embedding"
#: ``musicrep.song_vector``: how a consumer gets the vector ``musicrep embed`` writes.
SONG_VECTOR_RULE = ("song vector = plain mean of the 'embedding' rows of all the song's segments (its log-mel "
                    "[T, n_mels] cut into T // segment_frames consecutive segments, the trailing partial one "
                    "dropped); not L2-normalised, as musicrep embed writes it (normalise it for cosine search)")


def export_onnx(
    *,
    model_or_run: EmbeddingModel | str | Path | None = None,
    out: str | Path,
    opset: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    allow_unfinished: bool = False,
) -> Path:
    """Write an ONNX file of the encoder.

    Parameters
    ----------
    model_or_run : :class:`~musicrep.inference.embed.EmbeddingModel`, or a run folder / checkpoint;
        None for the model shipped with musicrep
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
    out = Path(out)
    with folder_lock(out):
        model = as_model(model_or_run, allow_unfinished=allow_unfinished)
        encoder = model.encoder.to("cpu")
        was_training = encoder.training
        encoder.eval()
        try:
            return _export(model, encoder, out, opset=opset, check=check, atol=atol)
        finally:
            encoder.train(was_training)


def _export(model: EmbeddingModel, encoder: Encoder, out: Path, *, opset: int, check: bool, atol: float) -> Path:
    example = torch.zeros(2, model.segment_frames, encoder.n_mels)
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
                    dynamic_axes={INPUT_NAME: {0: "segments"}, OUTPUT_NAME: {0: "segments"}},
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


def _add_metadata(path: Path, model: EmbeddingModel) -> None:
    import onnx  # deferred: onnx is optional and slow to import; only writing a file needs it

    proto = onnx.load(str(path))
    meta = {
        "musicrep.feature_config": json.dumps(to_dict(model.feature_config), sort_keys=True),
        "musicrep.concept": model.concept,
        "musicrep.embedding_dim": str(model.dim),
        "musicrep.segment_frames": str(model.segment_frames),
        "musicrep.input": input_rule(model),
        "musicrep.song_vector": SONG_VECTOR_RULE,
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
    encoder: Encoder,
    segment_frames: int = SEGMENT_FRAMES,
    batch_sizes: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch outputs.

    Random log-mel-like segments (non-negative, as ``log10(1 + 10 mel)`` is)
    [b, segment_frames, n_mels] for each batch size, so the dynamic axis is exercised.
    """
    import onnxruntime as ort  # deferred: onnxruntime is optional and slow to import; only the check needs it

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    encoder = encoder.eval()
    for b in batch_sizes:
        x = rng.gamma(2.0, 0.5, size=(b, segment_frames, encoder.n_mels)).astype(np.float32)
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        with torch.inference_mode():
            want = encoder(torch.from_numpy(x)).numpy()
        if got.shape != want.shape:
            raise ExportError(f"{onnx_path}: ONNX output shape {got.shape} != PyTorch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def onnx_song_vector(*, session: ort.InferenceSession, frames: np.ndarray,
                     segment_frames: int = SEGMENT_FRAMES) -> np.ndarray:
    """A song's vector from an exported model, by the rule in its ``musicrep.song_vector``.

    Parameters
    ----------
    session : ``onnxruntime.InferenceSession`` of an exported model
    frames : np.ndarray [shape=(T, n_mels)]
        The song's raw log-mel (:meth:`musicrep.inference.embed.EmbeddingModel.features`),
        T >= segment_frames
    segment_frames : frames per segment (the model's ``musicrep.segment_frames``)

    Returns
    -------
    np.ndarray [shape=(D,), float32]
        The mean of the T // segment_frames segments' embeddings; equals ``musicrep embed``'s vector.
    """
    n = frames.shape[0] // segment_frames
    if n == 0:
        raise ExportError(f"{frames.shape[0]} frames is shorter than one segment of {segment_frames}")
    segments = np.ascontiguousarray(frames[: n * segment_frames], dtype=np.float32).reshape(n, segment_frames, -1)
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: segments})
    return out.mean(axis=0).astype(np.float32)


def input_rule(model: EmbeddingModel) -> str:
    """``musicrep.input``: what the graph takes, in words."""
    fc = model.feature_config
    return (f"raw log-mel float32 [segments, {model.segment_frames}, {fc.n_mels}]: non-overlapping "
            f"{model.segment_frames}-frame ({model.segment_seconds:.3f} s) segments of the song's log-mel "
            f"(settings in musicrep.feature_config; musicrep rounds the frames to float16 as its feature store "
            f"holds them); standardisation is inside the graph")

"""The HEAR 2021 common API over any musicrep model.

The HEAR eval kit (``hear-eval-kit``), its validator and other harnesses built on
the same API import a module and call three functions on it (docs/hear.md says how
to run them)::

    model = load_model(model_file_path)                       # a torch.nn.Module
    emb, ts = get_timestamp_embeddings(audio, model)          # [S, T, D], [S, T] in ms
    scene = get_scene_embeddings(audio, model)                # [S, D]

``audio`` is a float32 tensor [n_sounds, n_samples] of mono audio in [-1, 1] at
``model.sample_rate``; every output is float32 on ``audio``'s device. The
argument order is the API's, which is why these two take ``model`` positionally.

Sample rate. The API lets a model ask for 16000, 22050, 32000, 44100 or
48000 Hz (:data:`HEAR_SAMPLE_RATES`) and the eval kit reads each task from its
``<task>/<sample_rate>/`` folder. ``model.sample_rate`` is 48000 by default,
because the HEAR tasks released on Zenodo hold 48-kHz audio only;
``load_model(..., sample_rate=22050)`` (``--model-options '{"sample_rate": 22050}'``
in the eval kit) takes any other allowed rate, and the model's own rate (22,050 Hz
for the shipped model) skips resampling. Audio at a rate other than the model's
is resampled inside, with the soxr HQ resampler that decoding uses
(:func:`musicrep.data.audio.resample`).

Timestamp embeddings. The model's unit is a segment of 129 log-mel frames
(about 3 s), so the embedding at time ``t`` is the embedding of the segment
*centred* at ``t``. The log-mel frames are computed once per clip and the
segments read from them at a stride of ``hop_frames`` frames: the largest whole
number of frames that keeps the hop at or under HEAR's suggested 50 ms (2 frames,
46.4 ms, for the shipped model's 512-sample hop at 22,050 Hz). Timestamps run from
0 ms to within one hop of the end of the clip, computed from the frame index (no
drift over long clips). Outside the clip the signal is taken as silence: the waveform
is zero padded by half a segment on each side before the log-mel, so the first
and last embeddings see 1.5 s of silence and inside the clip the frames equal the
ones ``musicrep embed`` and the feature store compute.

Scene embeddings. The song vector musicrep defines everywhere
(:mod:`musicrep.inference.embed`): the mean of the embeddings of the clip's
non-overlapping segments, the trailing partial segment dropped. At the model's
rate it equals ``musicrep.load(...).embed(audio, sr).vector``. A clip shorter
than one segment (the validator uses 2.74 s; some HEAR tasks hold 1-s sounds)
is centred in one segment of silence (zero padded equally on both sides), i.e.
its scene embedding is that of the segment centred on the clip.
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction

import numpy as np
import torch

from .data.audio import resample, to_mono
from .errors import AudioError, ConfigError
from .inference.embed import EmbeddingModel, load
from .training.model import encode_segments, split_segments

log = logging.getLogger(__name__)

#: The sample rates the HEAR API lets a model ask for (the rates HEAR tasks are distributed at).
HEAR_SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 32000, 44100, 48000)
#: The rate of the HEAR tasks released on Zenodo (the only rate there).
DEFAULT_SAMPLE_RATE = 48000
#: HEAR's suggested largest hop between timestamp embeddings (its onset tolerance for transcription).
MAX_HOP_MS = 50.0
#: Names the input in error messages.
SOURCE = "<HEAR audio batch>"

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "HEAR_SAMPLE_RATES",
    "HearModel",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "hear_sample_rate",
    "load_model",
    "timestamps_ms",
]


class HearModel(torch.nn.Module):
    """A musicrep encoder with the attributes the HEAR API asks for.

    Parameters
    ----------
    embedder : the loaded model (:func:`musicrep.load`); its encoder becomes
        this module's child, so ``.to(device)`` moves it
    sample_rate : Hz of the audio the API functions take, one of
        :data:`HEAR_SAMPLE_RATES`; None for :data:`DEFAULT_SAMPLE_RATE` (48000)
    batch_size : segments per forward pass

    Attributes
    ----------
    sample_rate : int
        Hz of the audio the API functions take.
    scene_embedding_size, timestamp_embedding_size : int
        Both the encoder's embedding size D.
    hop_frames : int
        Log-mel frames between timestamp embeddings.
    """

    def __init__(self, embedder: EmbeddingModel, *, sample_rate: int | None = None, batch_size: int = 256):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a whole number >= 1")
        self.embedder = embedder
        self.encoder = embedder.encoder
        self.feature_config = embedder.feature_config
        self.sample_rate = hear_sample_rate(sample_rate)
        self.scene_embedding_size = int(embedder.dim)
        self.timestamp_embedding_size = int(embedder.dim)
        self.batch_size = batch_size
        fc = self.feature_config
        # The largest whole number of frames within 50 ms; a front end whose
        # hop alone exceeds 50 ms gets one frame per timestamp.
        self.hop_frames = max(1, int(MAX_HOP_MS * fc.sample_rate) // (1000 * fc.hop_length))
        if self.timestamp_hop_ms > MAX_HOP_MS:
            log.warning("timestamp hop %.1f ms is over HEAR's suggested %.0f ms (the front end's hop is %d samples "
                        "at %d Hz)", self.timestamp_hop_ms, MAX_HOP_MS, fc.hop_length, fc.sample_rate)

    @property
    def timestamp_hop_ms(self) -> float:
        """Milliseconds between timestamp embeddings."""
        fc = self.feature_config
        return 1000.0 * self.hop_frames * fc.hop_length / fc.sample_rate

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        """Encode raw log-mel segments in eval mode, ``batch_size`` at a time.

        Parameters
        ----------
        segments : torch.Tensor [shape=(B, segment_frames, n_mels)]
            Raw (not standardised) log-mel frames, any device.

        Returns
        -------
        torch.Tensor [shape=(B, D), float32], on the encoder's device
        """
        # eval mode for the call only: the eval kit moves the model to its device but never calls .eval()
        return encode_segments(self.encoder, segments=segments, batch_size=self.batch_size, device=self.encoder.mean.device)

    def _apply(self, fn, *args, **kwargs):
        # .to(device) moves the encoder; the embedder's own device must follow,
        # or model.embedder.embed(...) would feed the CPU to GPU weights
        out = super()._apply(fn, *args, **kwargs)
        self.embedder.device = self.encoder.mean.device
        return out

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, embedding_size={self.scene_embedding_size}, "
                f"hop={self.timestamp_hop_ms:.1f} ms, model={self.embedder.checkpoint or 'in memory'}")


def hear_sample_rate(requested: int | None = None) -> int:
    """The input rate the HEAR functions take: ``requested``, checked, or :data:`DEFAULT_SAMPLE_RATE`.

    Parameters
    ----------
    requested : Hz, one of :data:`HEAR_SAMPLE_RATES`, or None

    Returns
    -------
    int : Hz
    """
    if requested is None:
        return DEFAULT_SAMPLE_RATE
    if isinstance(requested, bool) or requested not in HEAR_SAMPLE_RATES:
        raise ConfigError(f"sample_rate={requested!r} is not one the HEAR API allows: {list(HEAR_SAMPLE_RATES)}")
    return int(requested)


def load_model(model_file_path: str | os.PathLike = "", *, sample_rate: int | None = None,
               batch_size: int = 256) -> HearModel:
    """Load a musicrep model for the HEAR API.

    Parameters
    ----------
    model_file_path : a run folder (its ``best.pt``) or a checkpoint file, as
        :func:`musicrep.load` takes; ``""`` (the eval kit's default when no
        ``--model`` is given) loads the model shipped inside the package
    sample_rate : Hz of the audio to be passed in, one of :data:`HEAR_SAMPLE_RATES`;
        None for 48000, the rate of the HEAR tasks on Zenodo; the model's own
        feature rate (``musicrep.load(path).sample_rate``) skips resampling
    batch_size : segments per forward pass (raise it on a GPU)

    Returns
    -------
    HearModel
        In eval mode, on the CPU (the eval kit moves it to its device).
    """
    path = os.fspath(model_file_path) if model_file_path is not None else ""
    embedder = load(path or None)
    model = HearModel(embedder, sample_rate=sample_rate, batch_size=batch_size).eval()
    log.info("HEAR model: %s at %d Hz (features at %d Hz), %d-d, timestamp hop %.1f ms", embedder.checkpoint,
             model.sample_rate, embedder.sample_rate, model.scene_embedding_size, model.timestamp_hop_ms)
    return model


# ---------------------------------------------------------------- helpers
def _check(audio, model) -> torch.Tensor:
    """``audio`` as a 2-D float tensor, or an error that says what the API expects."""
    if not isinstance(model, HearModel):
        raise ConfigError(f"model is a {type(model).__name__}; pass the model musicrep.hear.load_model returned")
    if not isinstance(audio, torch.Tensor):
        audio = torch.as_tensor(np.asarray(audio))
    if audio.ndim != 2:
        raise AudioError(SOURCE, f"expected a 2-D tensor [n_sounds, n_samples], got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise AudioError(SOURCE, f"expected float samples in [-1, 1], got dtype {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise AudioError(SOURCE, f"no audio: shape {tuple(audio.shape)}")
    return audio


def _at_feature_rate(audio: torch.Tensor, model: HearModel) -> list[np.ndarray]:
    """Each sound as mono float32 at the model's feature rate, all of one length.

    Returns
    -------
    list of np.ndarray [shape=(m,)], m = ceil(n_samples x native / sample_rate)
    """
    native = model.feature_config.sample_rate
    n = audio.shape[1]
    # The resampler's output length may differ from the exact ratio by a sample;
    # fix it so the clip's last timestamp always has frames to read.
    m = -(-n * native // model.sample_rate)
    rows = []
    for i, row in enumerate(audio.detach().to("cpu", torch.float32).numpy()):
        y = resample(to_mono(row, source=f"{SOURCE}[{i}]"), orig_sr=model.sample_rate, target_sr=native)
        rows.append(np.pad(y[:m], (0, max(0, m - len(y)))))
    return rows


def _frames(y: np.ndarray, model: HearModel, *, left: int, right: int, index: int) -> np.ndarray:
    """Log-mel frames [F, n_mels] of ``y`` zero padded by ``left`` / ``right`` samples.

    Through :meth:`EmbeddingModel.features`, the path every musicrep input takes
    (float16 rounding as the store holds frames, NaN checks).
    """
    padded = np.pad(y, (left, right))
    return model.embedder.features(padded, model.feature_config.sample_rate, source=f"{SOURCE}[{index}]")


def _finite(vectors: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``vectors`` unchanged when all finite, else :class:`NonFiniteEmbeddingError` naming the checkpoint."""
    if not bool(torch.isfinite(vectors).all()):  # checked on the device: no copy in the usual case
        model.embedder.check_finite(vectors.cpu().numpy(), source=SOURCE)
    return vectors


def timestamps_ms(n_samples: int, *, model: HearModel) -> np.ndarray:
    """Centres of the timestamp embeddings of a clip of ``n_samples`` at ``model.sample_rate``.

    Window ``j`` starts ``j x hop_frames - L`` frames into the clip, L = (W - 1) // 2
    for W = ``segment_frames``; its centre is ``j x hop_frames`` frames (plus half
    a frame when W is even). Windows are kept while their centre lies within the
    clip, so timestamps run from 0 to within one hop of the end; at least one.

    Returns
    -------
    np.ndarray [shape=(n_timestamps,), float64]
        Milliseconds from the start of the clip, evenly spaced by
        ``model.timestamp_hop_ms``.
    """
    fc, k = model.feature_config, model.hop_frames
    W = fc.segment_frames
    first = Fraction(W - 1, 2) - (W - 1) // 2  # 0, or 1/2 frame for an even W
    clip_frames = Fraction(n_samples * fc.sample_rate, model.sample_rate * fc.hop_length)  # exact: no drift
    count = max(1, math.floor((clip_frames - first) / k) + 1)
    return (np.arange(count) * k + float(first)) * (1000.0 * fc.hop_length / fc.sample_rate)


# ------------------------------------------------------------------- API
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of the segments centred at regular timestamps (HEAR API).

    Each clip's log-mel frames are computed once, on the clip zero padded by
    half a segment on each side (silence outside the clip), and the segment
    centred at each timestamp is read from them; the segments of all clips go
    through the encoder in batches of ``model.batch_size``.

    Parameters
    ----------
    audio : torch.Tensor [shape=(n_sounds, n_samples), float32]
        Mono audio in [-1, 1] at ``model.sample_rate``, any device.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    embeddings : torch.Tensor [shape=(n_sounds, n_timestamps, timestamp_embedding_size), float32]
    timestamps : torch.Tensor [shape=(n_sounds, n_timestamps), float32]
        Centre of each segment in milliseconds from the start of the clip,
        every ``model.timestamp_hop_ms`` (46.4 ms for the shipped model) from
        0 ms to within one hop of the end (:func:`timestamps_ms`); the same row
        for every sound. Both on ``audio``'s device.
    """
    audio = _check(audio, model)
    fc, k = model.feature_config, model.hop_frames
    W, hop = fc.segment_frames, fc.hop_length
    times = timestamps_ms(audio.shape[1], model=model)
    count = len(times)
    left = (W - 1) // 2  # frames before the first window's centre
    needed = (count - 1) * k + W  # padded frames that the last window reaches
    frames = []
    for i, y in enumerate(_at_feature_rate(audio, model)):
        # pad whole hops on the left, so the clip's frames are the unpadded ones;
        # and on the right as far as the last window reaches
        right = max(0, (needed - 1 - left) * hop - len(y))
        frames.append(_frames(y, model, left=left * hop, right=right, index=i)[:needed])
    device = model.encoder.mean.device
    # [S, count, n_mels, W]: a view, so only one batch of windows is ever copied
    windows = torch.from_numpy(np.stack(frames)).to(device).unfold(1, W, k)
    flat = torch.arange(len(frames) * count, device=device)
    out = torch.cat([
        model(windows[idx // count, idx % count].transpose(1, 2))
        for idx in flat.split(model.batch_size)
    ])
    embeddings = _finite(out, model).reshape(len(frames), count, -1).to(audio.device)
    stamps = torch.as_tensor(times, dtype=torch.float32, device=audio.device).expand(len(frames), count)
    return embeddings, stamps.contiguous()


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """One embedding per clip: the mean of its non-overlapping segments' embeddings (HEAR API).

    As :meth:`EmbeddingModel.embed` computes the song vector (the trailing
    partial segment is dropped); a clip shorter than one segment is centred in
    one segment of silence (zero padded equally on both sides).

    Parameters
    ----------
    audio : torch.Tensor [shape=(n_sounds, n_samples), float32]
        Mono audio in [-1, 1] at ``model.sample_rate``, any device.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    torch.Tensor [shape=(n_sounds, scene_embedding_size), float32]
        On ``audio``'s device; not L2-normalised.
    """
    audio = _check(audio, model)
    fc = model.feature_config
    segments = []
    for i, y in enumerate(_at_feature_rate(audio, model)):
        # one segment of W frames needs (W - 1) hops of samples (the STFT is centred)
        short = max(0, (fc.segment_frames - 1) * fc.hop_length - len(y))
        frames = _frames(y, model, left=short // 2, right=short - short // 2, index=i)
        segments.append(split_segments(frames, segment_frames=fc.segment_frames))
    per_clip = len(segments[0])  # equal lengths in, equal counts out
    out = model(torch.from_numpy(np.concatenate(segments)))
    vectors = _finite(out, model).reshape(len(segments), per_clip, -1).mean(dim=1)
    return vectors.to(audio.device)

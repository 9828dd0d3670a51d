"""The model API: :func:`load` a trained (or the shipped) model, embed arrays and files with it.

Three layers, as in OpenL3: :class:`EmbeddingModel` embeds arrays and log-mel
frames; its file methods decode, compute features and batch segments *across*
files (:mod:`musicrep.inference.frontend`, :mod:`musicrep.inference.batching`);
:func:`~musicrep.inference.store_embeddings.embed_store` embeds a whole
:class:`~musicrep.data.store.FeatureStore` once per (checkpoint, store) and caches
the vectors under the run folder. Finding the files of folders is
:mod:`musicrep.inference.discovery`; the ``musicrep embed`` job that writes files
is :mod:`musicrep.inference.embed_job`.

One code path for every input. A waveform is decoded / resampled to the model's
feature rate, turned into log-mel frames by :func:`musicrep.data.features.log_mel`
(streamed through ``log_mel_stream`` for files, exactly as the store is
prepared), rounded to float16 exactly as the store
holds them, cut into non-overlapping segments of 129 frames (the trailing
partial segment is dropped, as in training) and passed through the encoder,
which standardises with the mean / std buffers saved in the checkpoint. The
song vector is the plain mean of the segment vectors (Lee, Park & Nam 2019;
neither the segment vectors nor the mean are L2-normalised here: search
normalises when it indexes). So a file and its stored copy give the same vector
up to float rounding.

``musicrep.load()`` with no argument loads the model shipped inside the package
(:mod:`musicrep.inference.pretrained`): a small joint model trained on game soundtracks,
enough to try every tool without training.

Every vector that leaves this module is finite: a NaN or infinite embedding
(a damaged or diverged checkpoint) raises :class:`NonFiniteEmbeddingError`
naming the file or track, instead of being written or compared as a result.

>>> import musicrep
>>> model = musicrep.load()                           # doctest: +SKIP
>>> model = musicrep.load("runs/artist")             # doctest: +SKIP
>>> e = model.embed(y, 44100, segments=True)          # doctest: +SKIP
>>> e.vector.shape, e.segments.shape, e.times[:2]     # doctest: +SKIP
((512,), (20, 512), array([[0.   , 2.995], [2.995, 5.991]]))
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..config import FeatureConfig
from ..errors import AudioError, ConfigError, MusicrepError, NonFiniteEmbeddingError, TooShortAudioError
from ..training.checkpoint import CheckpointInfo, load_encoder
from ..training.model import Encoder, embed_segments, split_segments
from .batching import encode_chunk, segment_chunks, segmented_files, torch_threads
from .discovery import find_audio
from .frontend import file_frames, segment_seconds, waveform_frames
from .pretrained import MODEL_FILE, sha256, shipped_model

log = logging.getLogger(__name__)

ARRAY_SOURCE = "<array>"
#: Name of the shipped model (:mod:`musicrep.inference.pretrained`), as commands and indexes record it.
SHIPPED_NAME = Path(MODEL_FILE).stem
#: The one line every command logs when it falls back to the shipped model.
SHIPPED_NOTE = (f"using the shipped model {SHIPPED_NAME} (see musicrep/models/MODEL_CARD.md); "
                "pass --run RUN for your own")


@dataclasses.dataclass(frozen=True)
class Embedding:
    """The embedding of one song.

    Attributes
    ----------
    vector : np.ndarray [shape=(D,), float32]
        Song vector: mean of the segment vectors.
    segments : np.ndarray [shape=(S, D), float32] or None
        Per-segment vectors (only when asked for).
    times : np.ndarray [shape=(S, 2), float64] or None
        Start and end of each segment in seconds from the start of the audio.
    duration : float
        Seconds of audio at the model's sample rate.
    source : str
        File path, or ``"<array>"``.
    """

    vector: np.ndarray
    segments: np.ndarray | None
    times: np.ndarray | None
    duration: float
    source: str

    @property
    def n_segments(self) -> int:
        return 0 if self.segments is None else int(self.segments.shape[0])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(embedding)`` is the song vector [D]."""
        return self.vector if dtype is None else self.vector.astype(dtype)


class EmbeddingModel:
    """A trained encoder with its front end, loaded once and reused.

    Parameters
    ----------
    encoder : Encoder
        Carries the training set's normalisation in its ``mean`` / ``std`` buffers.
    feature_config : FeatureConfig
        The front end the encoder was trained on.
    checkpoint : path of the checkpoint, or None for an in-memory model
        (then :func:`~musicrep.inference.store_embeddings.embed_store` cannot cache).
    concept : the training concept ("artist", "album", "track", "joint"), if known
    batch_size : segments per forward pass; segments of several files share a batch
    device : torch device, "cpu" by default
    unfinished : the checkpoint is from a run whose training did not finish
        (loaded with ``allow_unfinished``); commands print a warning for it
    shipped : the model is the one shipped inside the package
        (:func:`musicrep.inference.pretrained.shipped_model`); it has no run folder to cache in
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        feature_config: FeatureConfig | None = None,
        checkpoint: str | Path | None = None,
        concept: str = "",
        batch_size: int = 128,
        device: str = "cpu",
        unfinished: bool = False,
        shipped: bool = False,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device)
        self.feature_config = feature_config or FeatureConfig()
        if self.feature_config.n_mels != encoder.n_mels:
            raise ConfigError(
                f"feature_config.n_mels={self.feature_config.n_mels} but the encoder takes {encoder.n_mels} bands"
            )
        self.checkpoint = Path(checkpoint).resolve() if checkpoint is not None else None
        self.concept = concept
        self.batch_size = batch_size
        self.unfinished = unfinished
        self.shipped = shipped
        #: seconds spent per stage since creation (decode, features, forward)
        self.timings: dict[str, float] = {"decode": 0.0, "features": 0.0, "forward": 0.0}
        self._sha: str | None = None

    # ------------------------------------------------------------------ basics
    @classmethod
    def from_checkpoint(cls, encoder: Encoder, info: CheckpointInfo, *, batch_size: int = 128, device: str = "cpu",
                        shipped: bool = False) -> "EmbeddingModel":
        """The model of a loaded checkpoint (:func:`musicrep.training.checkpoint.load_encoder`'s pair)."""
        fc = info.feature_config
        return cls(encoder, feature_config=FeatureConfig(**fc) if isinstance(fc, dict) else fc, checkpoint=info.path,
                   concept=str(getattr(info, "concept", "") or ""), batch_size=batch_size, device=device,
                   unfinished=bool(getattr(info, "unfinished", False)), shipped=shipped)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return self.encoder.embedding_dim

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def segment_frames(self) -> int:
        return self.feature_config.segment_frames

    @property
    def segment_seconds(self) -> float:
        """Length of one segment in seconds (129 frames x hop / sr, about 3 s)."""
        return segment_seconds(self.feature_config)

    @property
    def feature_hash(self) -> str:
        """Hash of the front-end settings (:meth:`FeatureConfig.hash`)."""
        return self.feature_config.hash()

    @property
    def run_dir(self) -> Path | None:
        """The folder holding the checkpoint (the run folder), or None."""
        return None if self.checkpoint is None else self.checkpoint.parent

    def checkpoint_sha(self) -> str:
        """SHA-256 of the checkpoint file (identifies the weights in caches)."""
        if self.checkpoint is None:
            raise MusicrepError("this model was built in memory and has no checkpoint file to identify it")
        if self._sha is None:
            self._sha = sha256(self.checkpoint)
        return self._sha

    def __repr__(self) -> str:
        where = self.checkpoint or "in memory"
        return f"EmbeddingModel({where}, concept={self.concept or '?'}, dim={self.dim})"

    # ------------------------------------------------------------ array layer
    def forward(self, segments: np.ndarray) -> np.ndarray:
        """Encode segments.

        Parameters
        ----------
        segments : np.ndarray [shape=(S, segment_frames, n_mels)]
            Raw (not standardised) log-mel.

        Returns
        -------
        np.ndarray [shape=(S, D), float32]
        """
        t0 = time.perf_counter()
        out = embed_segments(self.encoder, segments=segments, batch_size=self.batch_size, device=self.device)
        self.timings["forward"] += time.perf_counter() - t0
        return out

    def features(self, audio: np.ndarray, sr: int, *, source: str = ARRAY_SOURCE) -> np.ndarray:
        """Log-mel frames of a waveform at any sample rate.

        Parameters
        ----------
        audio : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        sr : sample rate of ``audio`` in Hz; resampled (soxr) to the model's rate

        Returns
        -------
        np.ndarray [shape=(T, n_mels), float32]
            Rounded to float16 precision, as the feature store holds them.
        """
        return waveform_frames(audio, sr=sr, config=self.feature_config, source=source, timings=self.timings)

    def embed_frames(
        self, frames: np.ndarray, *, segments: bool = False, source: str = ARRAY_SOURCE
    ) -> Embedding:
        """Embed raw log-mel frames [T, n_mels] (as the store holds them)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.encoder.n_mels:
            raise ConfigError(f"{source}: expected frames [T, {self.encoder.n_mels}], got {frames.shape}")
        if frames.shape[0] < self.segment_frames:
            raise TooShortAudioError(source, f"{frames.shape[0]} frames < {self.segment_frames}")
        segs = split_segments(frames, segment_frames=self.segment_frames)
        return self.song_embedding(self.forward(segs), n_frames=frames.shape[0], segments=segments, source=source)

    def embed(self, audio: np.ndarray, sr: int, *, segments: bool = False) -> Embedding:
        """Embed a waveform.

        Parameters
        ----------
        audio : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
            Float samples in [-1, 1] (integer PCM is scaled); stereo is mixed down.
        sr : int
            Sample rate of ``audio`` in Hz; any rate, resampled to the model's.
        segments : also return per-segment vectors and their times in seconds

        Returns
        -------
        Embedding
            ``vector`` [D]; with ``segments=True`` also ``segments`` [S, D] and
            ``times`` [S, 2]. Audio shorter than one segment (~3 s) raises
            :class:`~musicrep.errors.TooShortAudioError`.
        """
        return self.embed_frames(self.features(audio, sr), segments=segments)

    def check_finite(self, vectors: np.ndarray, *, source: str) -> np.ndarray:
        """``vectors`` unchanged when all finite; else :class:`NonFiniteEmbeddingError` naming ``source``."""
        if not np.isfinite(vectors).all():
            where = self.checkpoint or "this in-memory model"
            raise NonFiniteEmbeddingError(
                f"{source}: the model gave a NaN or infinite embedding; its checkpoint {where} is damaged "
                "or its training diverged: use another checkpoint"
            )
        return vectors

    def song_embedding(self, seg_vectors: np.ndarray, *, n_frames: int, segments: bool,
                       source: str) -> Embedding:
        """The :class:`Embedding` of a song from its segment vectors [S, D] (checked finite).

        ``n_frames``: the song's log-mel frames (its duration); ``segments``: keep the
        segment vectors and their times [S, 2] in seconds.
        """
        fc = self.feature_config
        duration = n_frames * fc.hop_length / fc.sample_rate
        self.check_finite(seg_vectors, source=source)
        vector = seg_vectors.mean(axis=0).astype(np.float32)
        if not segments:
            return Embedding(vector=vector, segments=None, times=None, duration=duration, source=source)
        starts = np.arange(len(seg_vectors)) * self.segment_seconds
        times = np.stack([starts, starts + self.segment_seconds], axis=1)
        return Embedding(vector=vector, segments=seg_vectors, times=times, duration=duration, source=source)

    # ------------------------------------------------------------- file layer
    def _load_frames(self, path: Path) -> np.ndarray:
        """Decode and featurise a file exactly as the store is prepared
        (:func:`~musicrep.inference.frontend.file_frames`)."""
        return file_frames(path, config=self.feature_config, timings=self.timings)

    def embed_file(self, path: str | Path, *, segments: bool = False) -> Embedding:
        """Embed one audio file; raises an :class:`~musicrep.errors.AudioError` naming it."""
        path = Path(path)
        return self.embed_frames(self._load_frames(path), segments=segments, source=str(path))

    def iter_files(
        self, paths: Iterable[str | Path], *, segments: bool = False, workers: int = 1, prefetch: int = 8
    ) -> Iterator[tuple[Path, Embedding | AudioError]]:
        """Embed many files, batching segments across files.

        Parameters
        ----------
        paths : audio files
        segments : also keep per-segment vectors and times
        workers : threads decoding and computing features ahead of the encoder
            (0 = all in the calling thread)
        prefetch : files decoded ahead per worker

        Yields
        ------
        (path, Embedding or AudioError)
            In input order. A file that cannot be used yields its error (which
            names it) instead of stopping the job.
        """
        items = segmented_files(self._load_frames, paths=[Path(p) for p in paths],
                                segment_frames=self.segment_frames, workers=workers, prefetch=prefetch)
        for (path, frames), vectors in self.encode_many(items, threads=torch_threads(workers)):
            if isinstance(vectors, AudioError):
                yield path, vectors
            else:
                yield path, self.song_embedding(vectors, n_frames=frames.shape[0], segments=segments, source=str(path))

    def encode_many(self, items: Iterable[tuple[Any, np.ndarray | AudioError]], *,
                    threads: int | None = None) -> Iterator[tuple[Any, np.ndarray | AudioError]]:
        """Encode the segments of many songs, several songs per forward pass.

        Parameters
        ----------
        items : (key, segments [S, T, n_mels] or the AudioError of a song that has none), in order
        threads : torch threads for the forward passes (None: as they are)

        Yields
        ------
        (key, float32 [S, D] segment vectors, or the item's AudioError), in input order;
        a forward pass runs once ``batch_size`` segments are waiting.
        """
        for chunk in segment_chunks(items, batch_size=self.batch_size):
            yield from self.encode_chunk(chunk, threads=threads)

    def encode_chunk(self, pending: Sequence[tuple[Any, np.ndarray | AudioError]], *,
                     threads: int | None = None) -> Iterator[tuple[Any, np.ndarray | AudioError]]:
        """One forward pass over a chunk of :func:`~musicrep.inference.batching.segment_chunks`; yields as
        :meth:`encode_many` (:func:`~musicrep.inference.batching.encode_chunk`)."""
        return encode_chunk(self.forward, pending=pending, threads=threads)

    def embed_files(
        self, paths: Iterable[str | Path], *, segments: bool = False, workers: int = 1
    ) -> tuple[dict[Path, Embedding], list[AudioError]]:
        """Embed files; returns ``({path: Embedding}, [errors of skipped files])``."""
        done: dict[Path, Embedding] = {}
        errors: list[AudioError] = []
        for path, result in self.iter_files(paths, segments=segments, workers=workers):
            if isinstance(result, AudioError):
                log.warning("skipped %s", result)
                errors.append(result)
            else:
                done[path] = result
        return done, errors

    def embed_folder(
        self, folder: str | Path, *, segments: bool = False, recursive: bool = True, workers: int = 1
    ) -> tuple[dict[Path, Embedding], list[AudioError]]:
        """Embed every audio file under ``folder`` (see :func:`~musicrep.inference.discovery.find_audio`)."""
        return self.embed_files(find_audio([folder], recursive=recursive), segments=segments, workers=workers)


def load(
    run_or_checkpoint: str | Path | None = None,
    *,
    which: str = "best",
    batch_size: int = 128,
    device: str = "cpu",
    allow_unfinished: bool = False,
) -> EmbeddingModel:
    """Load a trained model for embedding; the shipped model when none is given.

    Parameters
    ----------
    run_or_checkpoint : a run folder (``RUN/``, uses ``best.pt`` or ``last.pt``
        per ``which``) or a checkpoint file; None for the model shipped inside
        the package (:func:`musicrep.inference.pretrained.shipped_model`, checksum-checked),
        said so in one log line
    which : "best" or "last" when a run folder is given
    batch_size : segments per forward pass
    device : torch device
    allow_unfinished : use a run whose training did not finish (no ``DONE``);
        refused by default (:func:`musicrep.training.checkpoint.load_encoder`)

    Returns
    -------
    EmbeddingModel
        ``model.unfinished`` says whether the run was unfinished, ``model.shipped``
        whether it is the shipped model.
    """
    shipped = run_or_checkpoint is None
    if shipped:
        run_or_checkpoint = shipped_model()  # CheckpointError naming what to do when it is missing
        log.info("%s", SHIPPED_NOTE)
    encoder, info = load_encoder(run_or_checkpoint, which=which, allow_unfinished=allow_unfinished)
    model = EmbeddingModel.from_checkpoint(encoder, info, batch_size=batch_size, device=device, shipped=shipped)
    log.debug("loaded %r", model)
    return model


def as_model(model_or_run: EmbeddingModel | str | Path | None, *, allow_unfinished: bool = False) -> EmbeddingModel:
    """``model_or_run`` itself when it is a model; else :func:`load` of that run or checkpoint
    (None: the shipped model)."""
    if isinstance(model_or_run, EmbeddingModel):
        return model_or_run
    return load(model_or_run, allow_unfinished=allow_unfinished)

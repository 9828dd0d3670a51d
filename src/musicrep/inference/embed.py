"""Song embeddings for any audio: arrays, files, folders and feature stores.

Three layers, as in OpenL3: :class:`EmbeddingModel` embeds arrays and log-mel
frames; its file methods decode, compute features and batch segments *across*
files; :func:`embed_store` embeds a whole :class:`~musicrep.data.store.FeatureStore`
once per (checkpoint, store) and caches the vectors under the run folder. The
``musicrep embed`` job that writes files is :mod:`musicrep.inference.embed_job`.

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
import hashlib
import json
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..config import FeatureConfig, to_dict
from ..data.audio import AUDIO_EXTENSIONS, to_mono
from ..errors import (
    AudioError,
    ConfigError,
    MusicrepError,
    NonFiniteEmbeddingError,
    StoreError,
    TooShortAudioError,
)
from ..io import atomic_path, atomic_write_json
from ..training.model import Encoder, embed_segments, split_segments
from .pretrained import MODEL_FILE

log = logging.getLogger(__name__)

ARRAY_SOURCE = "<array>"
CACHE_VERSION = 1
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
        (then :func:`embed_store` cannot cache).
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
    def from_checkpoint(cls, encoder: Encoder, info, *, batch_size: int = 128, device: str = "cpu",
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
        fc = self.feature_config
        return fc.segment_frames * fc.hop_length / fc.sample_rate

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
            h = hashlib.sha256()
            with open(self.checkpoint, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._sha = h.hexdigest()
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
        from ..data.audio import resample

        if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
            raise ConfigError(f"sr={sr!r} must be a positive integer sample rate in Hz")
        t0 = time.perf_counter()
        y = to_mono(audio, source=source)
        y = resample(y, orig_sr=int(sr), target_sr=self.sample_rate)  # soxr HQ, as load_audio
        self.timings["decode"] += time.perf_counter() - t0
        return self._log_mel(y, source=source)

    def _log_mel(self, y: np.ndarray, *, source: str) -> np.ndarray:
        from ..data.features import log_mel

        t0 = time.perf_counter()
        frames = log_mel(y, sr=self.sample_rate, config=self.feature_config)
        self.timings["features"] += time.perf_counter() - t0
        return self._round(frames, source=source, seconds=y.size / self.sample_rate)

    def _round(self, frames: np.ndarray, *, source: str, seconds: float | None) -> np.ndarray:
        # The store keeps float16; round the same way so both paths feed equal input.
        frames = np.asarray(frames, dtype=np.float16).astype(np.float32)
        if frames.shape[0] < self.segment_frames:
            length = "" if seconds is None else f" ({seconds:.2f} s)"
            raise TooShortAudioError(
                source,
                f"{frames.shape[0]} frames{length}; needs at least {self.segment_frames} frames "
                f"({self.segment_seconds:.2f} s)",
            )
        return frames

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
        return self._finish(self.forward(segs), n_frames=frames.shape[0], segments=segments, source=source)

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

    def _finish(self, seg_vectors: np.ndarray, *, n_frames: int, segments: bool, source: str) -> Embedding:
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
        """Decode and featurise a file exactly as :func:`musicrep.data.store.compute_track` does."""
        from ..data.audio import stream_audio
        from ..data.features import log_mel_stream
        from ..data.store import min_samples_for

        fc = self.feature_config
        decode = 0.0
        blocks = stream_audio(path, sr=fc.sample_rate, min_samples=min_samples_for(fc))

        def timed():
            nonlocal decode
            while True:
                t0 = time.perf_counter()
                block = next(blocks, None)
                decode += time.perf_counter() - t0
                if block is None:
                    return
                yield block

        t0 = time.perf_counter()
        chunks = list(log_mel_stream(timed(), config=fc))
        total = time.perf_counter() - t0
        self.timings["decode"] += decode
        self.timings["features"] += total - decode
        frames = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return self._round(frames, source=str(path), seconds=None)

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
        paths = [Path(p) for p in paths]
        # The decode threads keep ``workers`` cores busy; torch gets the rest for
        # the forward pass. Measured on 2 cores: 1 decode thread + 1 torch thread
        # 1,320-1,410x real time, against 1,045-1,095x with torch on both cores.
        threads = max(1, (os.cpu_count() or 1) - workers) if workers > 0 else None
        items = (((path, frames), frames if isinstance(frames, AudioError) else split_segments(frames, segment_frames=self.segment_frames))
                 for path, frames in self._frames_ahead(paths, workers=workers, prefetch=prefetch))
        for (path, frames), vectors in self.encode_many(items, threads=threads):
            if isinstance(vectors, AudioError):
                yield path, vectors
            else:
                yield path, self._finish(vectors, n_frames=frames.shape[0], segments=segments, source=str(path))

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

    def _frames_ahead(
        self, paths: Sequence[Path], *, workers: int, prefetch: int
    ) -> Iterator[tuple[Path, np.ndarray | AudioError]]:
        def job(path: Path) -> np.ndarray | AudioError:
            try:
                return self._load_frames(path)
            except AudioError as exc:
                return exc

        if workers <= 0:
            for path in paths:
                yield path, job(path)
            return
        window: deque[tuple[Path, Future]] = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="musicrep-decode") as pool:
            it = iter(paths)
            for path in it:
                window.append((path, pool.submit(job, path)))
                if len(window) >= max(1, workers * prefetch):
                    break
            while window:
                path, fut = window.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(job, nxt)))
                yield path, fut.result()

    def encode_chunk(self, pending: Sequence[tuple[Any, np.ndarray | AudioError]], *,
                     threads: int | None = None) -> Iterator[tuple[Any, np.ndarray | AudioError]]:
        """One forward pass over a chunk of :func:`segment_chunks`; yields as :meth:`encode_many`."""
        good = [s for _, s in pending if not isinstance(s, AudioError)]
        if good:
            before = torch.get_num_threads()
            if threads is not None and threads < before:
                torch.set_num_threads(threads)
            try:
                vectors = self.forward(np.concatenate(good))
            finally:
                torch.set_num_threads(before)
        i = 0
        for key, segs in pending:
            if isinstance(segs, AudioError):
                yield key, segs
                continue
            yield key, vectors[i : i + len(segs)]
            i += len(segs)

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
        """Embed every audio file under ``folder`` (see :func:`find_audio`)."""
        return self.embed_files(find_audio([folder], recursive=recursive), segments=segments, workers=workers)


def segment_chunks(items: Iterable[tuple[Any, np.ndarray | AudioError]], *,
                   batch_size: int) -> Iterator[list[tuple[Any, np.ndarray | AudioError]]]:
    """The items (key, segments [S, T, n_mels] or an AudioError) in order, in chunks that
    each hold at least ``batch_size`` segments (the last one: what is left)."""
    pending: list[tuple[Any, np.ndarray | AudioError]] = []
    n_pending = 0
    for key, segs in items:
        pending.append((key, segs))
        n_pending += 0 if isinstance(segs, AudioError) else len(segs)
        if n_pending >= batch_size:
            yield pending
            pending, n_pending = [], 0
    if pending:
        yield pending


def find_audio(paths: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of audio files.

    Files given by name are kept whatever their ending; folders contribute the
    files whose ending is in :data:`AUDIO_EXTENSIONS` (hidden files skipped),
    broken links included so that the caller reports them.
    A path that does not exist raises :class:`~musicrep.errors.MusicrepError`.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = p.rglob("*") if recursive else p.glob("*")
            # A broken link is kept so that it is reported (UnreadableAudioError), not silently passed over.
            out.extend(
                sorted(
                    f for f in found
                    if (f.is_file() or (f.is_symlink() and not f.exists()))
                    and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")
                )
            )
        elif p.is_symlink():  # a broken link: the caller reports it as unreadable and goes on
            out.append(p)
        else:
            raise MusicrepError(f"{p}: no such file or folder")
    return out


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
    from ..training.checkpoint import load_encoder

    shipped = run_or_checkpoint is None
    if shipped:
        from .pretrained import shipped_model

        run_or_checkpoint = shipped_model()  # CheckpointError naming what to do when it is missing
        log.info("%s", SHIPPED_NOTE)
    encoder, info = load_encoder(run_or_checkpoint, which=which, allow_unfinished=allow_unfinished)
    model = EmbeddingModel.from_checkpoint(encoder, info, batch_size=batch_size, device=device, shipped=shipped)
    log.debug("loaded %r", model)
    return model


def _as_model(model_or_run, *, allow_unfinished: bool = False) -> EmbeddingModel:
    if isinstance(model_or_run, EmbeddingModel):
        return model_or_run
    return load(model_or_run, allow_unfinished=allow_unfinished)


def store_id(store) -> str:
    """Identity of a feature store's content: hash of ``store.json`` and ``index.csv``."""
    root = Path(store.path)
    h = hashlib.sha256()
    for name in ("store.json", "index.csv"):
        try:
            h.update((root / name).read_bytes())
        except OSError as exc:
            raise StoreError(f"{root / name}: cannot read ({exc.strerror})") from None
    return h.hexdigest()[:12]


def embed_store(
    model_or_run, *, store, track_ids: Sequence[str] | None = None, cache: bool = True, allow_unfinished: bool = False
) -> tuple[list[str], np.ndarray]:
    """Song embeddings of the tracks of a feature store (the training code path).

    Parameters
    ----------
    model_or_run : EmbeddingModel, or a run folder / checkpoint for :func:`load`
    store : FeatureStore or its folder
    track_ids : tracks to return, in this order; all of the store's by default
    cache : with a model loaded from a checkpoint, compute the whole store once
        and keep it in ``RUN/embeddings/<ckpt>-<sha>-<feature hash>-<store id>.npy``
        with a ``.json`` beside it written last (a rerun reuses it); never for the
        shipped model (the package folder is no place for caches)
    allow_unfinished : with a run folder, use it even if its training did not finish

    Returns
    -------
    track_ids : list[str] [n]
    vectors : np.ndarray [shape=(n, D), float32]
    """
    from ..data.store import open_store

    model = _as_model(model_or_run, allow_unfinished=allow_unfinished)
    store = open_store(store)
    if store.feature_config.hash() != model.feature_config.hash():
        raise StoreError(
            f"{store.path}: built with features {to_dict(store.feature_config)} but the model "
            f"{model.checkpoint or ''} was trained on {to_dict(model.feature_config)}; "
            "prepare a store with the model's feature settings"
        )
    wanted = list(store.track_ids) if track_ids is None else [str(t) for t in track_ids]
    known = set(store.track_ids)
    missing = [t for t in wanted if t not in known]
    if missing:
        raise StoreError(f"{store.path}: {len(missing)} track(s) not in the store, e.g. {missing[0]!r}")
    if not cache or model.checkpoint is None or model.shipped:
        return wanted, _embed_store_tracks(model, store, wanted)
    all_ids, vectors = _cached_store_embeddings(model, store)
    row = {t: i for i, t in enumerate(all_ids)}
    return wanted, vectors[[row[t] for t in wanted]] if wanted else np.zeros((0, model.dim), np.float32)


def _embed_store_tracks(model: EmbeddingModel, store, track_ids: Sequence[str]) -> np.ndarray:
    from .. import progress

    out = np.zeros((len(track_ids), model.dim), dtype=np.float32)
    items = ((row, split_segments(store.frames(tid), segment_frames=model.segment_frames))
             for row, tid in enumerate(progress.bar(track_ids, desc="embed store", unit="track", leave=False)))
    for row, seg_vectors in model.encode_many(items):
        model.check_finite(seg_vectors, source=f"{store.path}: track {track_ids[row]!r}")
        out[row] = seg_vectors.mean(axis=0)
    return out


def _cached_store_embeddings(model: EmbeddingModel, store) -> tuple[list[str], np.ndarray]:
    sha = model.checkpoint_sha()
    key = f"{model.checkpoint.stem}-{sha[:12]}-{store.feature_config.hash()}-{store_id(store)}"
    folder = model.run_dir / "embeddings"
    npy, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if meta_path.is_file() and npy.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            vectors = np.load(npy, allow_pickle=False)
            if (
                meta.get("version") == CACHE_VERSION
                and meta.get("checkpoint_sha256") == sha
                and vectors.shape == (len(meta["track_ids"]), model.dim)
                and np.isfinite(vectors).all()
            ):
                log.debug("reusing cached store embeddings %s", npy)
                return list(meta["track_ids"]), vectors
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring damaged embedding cache %s (%s); recomputing", npy, exc)
    ids = list(store.track_ids)
    t0 = time.perf_counter()
    vectors = _embed_store_tracks(model, store, ids)
    with atomic_path(npy, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
    atomic_write_json(
        meta_path,  # written last: the marker that the .npy beside it is complete
        obj={
            "version": CACHE_VERSION,
            "checkpoint": str(model.checkpoint),
            "checkpoint_sha256": sha,
            "store": str(Path(store.path).resolve()),
            "store_id": store_id(store),
            "feature_hash": store.feature_config.hash(),
            "shape": list(vectors.shape),
            "seconds": round(time.perf_counter() - t0, 3),
            "track_ids": ids,
        },
    )
    log.info("embedded %d stored tracks into %s", len(ids), npy)
    return ids, vectors

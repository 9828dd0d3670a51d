"""One exception family for everything musicrep reports to a user.

Every error names the file, key or value at fault and says what to do, so the
CLI can print ``error: <message>`` without a traceback.
"""

from __future__ import annotations

import errno


class MusicrepError(Exception):
    """Base class of every error musicrep raises on purpose."""


class ConfigError(MusicrepError, ValueError):
    """A setting is unknown, has the wrong type or is out of range."""


class AudioError(MusicrepError):
    """An audio file cannot be used. ``path`` names it, ``reason`` is a short tag."""

    reason = "unusable audio"

    def __init__(self, path, detail: str = ""):
        self.path = str(path)
        self.detail = detail
        msg = f"{self.path}: {self.reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class UnreadableAudioError(AudioError):
    reason = "cannot decode audio"


class EmptyAudioError(AudioError):
    reason = "no audio samples"


class SilentAudioError(AudioError):
    reason = "audio is silent"


class TooShortAudioError(AudioError):
    reason = "audio is shorter than one segment"


class InvalidAudioError(AudioError):
    reason = "audio contains NaN or infinite samples"


class CatalogError(MusicrepError):
    """A catalog or its source metadata is malformed."""


class StoreError(MusicrepError):
    """A feature store is missing, incomplete, or was built with other settings."""


class SplitError(MusicrepError):
    """A collection is too small for the requested split."""


class CheckpointError(MusicrepError):
    """A checkpoint or run directory is missing, truncated or tampered with."""


class CorpusError(MusicrepError):
    """The built-in corpus cannot be assembled (missing tool, package or file)."""


class FolderLockedError(MusicrepError):
    """Another process is writing the output folder this command would write."""


class TrainingError(MusicrepError):
    """Training ran but gave no usable model (e.g. validation was never finite)."""


class DiskFullError(MusicrepError):
    """The disk filled up while a job wrote its folder; freeing space and rerunning resumes."""


#: ``OSError.errno`` values that mean the disk (or the user's quota) is full.
DISK_FULL_ERRNOS: tuple[int, ...] = (errno.ENOSPC, errno.EDQUOT)


class EvaluationError(MusicrepError):
    """An evaluation cannot be run as asked (too few songs, mismatched inputs)."""


class TableError(MusicrepError):
    """An embedding table cannot be written in the format asked for, or read back."""


class ExportError(MusicrepError):
    """The model could not be exported or the export does not match PyTorch."""


class SearchIndexError(MusicrepError):
    """A search index is missing, incomplete, or asked for something it lacks."""


class NonFiniteEmbeddingError(MusicrepError):
    """The model gave a NaN or infinite embedding; the message names the file or track."""


class MixedModelsError(MusicrepError):
    """The output already holds vectors of another model (and ``overwrite`` was not given)."""


class InvalidArgumentError(MusicrepError, ValueError):
    """A public function was given an argument of the wrong shape or value (also a ``ValueError``)."""

"""Tags and duration of one audio file: mutagen first, then soundfile, then ffprobe.

Owns the mapping from every tag format's keys (ID3 frames, ASF attributes, Vorbis,
APEv2 and MP4 spellings) to the catalog's fields, and the chain of readers that
decides whether a file is audio at all.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mutagen
import soundfile as sf
from mutagen.asf import ASFTags
from mutagen.id3 import ID3

from ...errors import UnreadableAudioError
from ..audio import decoder_reason, log_decoder_output
from ..decoder_capture import capture_decoder_output
from ._common import clean_text

FIELDS: tuple[str, ...] = ("artist", "albumartist", "album", "title", "genre", "label", "composer", "date")
#: tags kept as extra catalog columns: any of them can be a training concept (``--concept label``)
EXTRA_FIELDS: tuple[str, ...] = ("label", "composer", "date")

# ID3 frames (MP3 read without easy=True, WAV, AIFF) and ASF/WMA attributes.
_ID3_FRAMES = {"artist": "TPE1", "albumartist": "TPE2", "album": "TALB", "title": "TIT2", "genre": "TCON",
               "label": "TPUB", "composer": "TCOM", "date": "TDRC"}
_ASF_KEYS = {"artist": "Author", "albumartist": "WM/AlbumArtist", "album": "WM/AlbumTitle", "title": "Title",
             "genre": "WM/Genre", "label": "WM/Publisher", "composer": "WM/Composer", "date": "WM/Year"}
# Other key spellings (APEv2, MP4 without easy, some Vorbis writers); a record
# label is LABEL, ORGANIZATION or PUBLISHER in Vorbis comments.
_ALIASES = {"albumartist": ("albumartist", "album artist", "album_artist", "aart"),
            "label": ("label", "organization", "publisher"), "date": ("date", "year")}


def _first(values) -> str:
    if values is None:
        return ""
    if isinstance(values, (str, bytes)):
        values = [values]
    try:
        items = list(values)
    except TypeError:
        items = [values]
    for v in items:
        v = getattr(v, "value", v)  # ASF attribute objects
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        text = clean_text(v)
        if text:
            return text
    return ""


def tag_fields(tags) -> dict[str, str]:
    """The :data:`FIELDS` of any mutagen tag object (ID3, ASF, Vorbis, APEv2, MP4); "" for each one missing."""
    out = dict.fromkeys(FIELDS, "")
    if tags is None:
        return out
    if isinstance(tags, ID3):
        for field, frame_id in _ID3_FRAMES.items():
            frames = tags.getall(frame_id)
            if not frames:
                continue
            frame = frames[0]
            values = frame.genres if frame_id == "TCON" else frame.text
            out[field] = _first(values)
        return out
    if isinstance(tags, ASFTags):
        for field, key in _ASF_KEYS.items():
            out[field] = _first(tags.get(key))
        return out
    try:
        lower = {str(k).lower(): k for k in tags.keys()}
    except Exception:  # tag types without keys(): nothing to read
        return out
    for field in FIELDS:
        for name in _ALIASES.get(field, (field,)):
            key = lower.get(name)
            if key is not None:
                out[field] = _first(tags[key])
                if out[field]:
                    break
    if not out["artist"] and "\xa9art" in lower:  # MP4 read without easy=True
        out["artist"] = _first(tags[lower["\xa9art"]])
    for field, atom in (("album", "\xa9alb"), ("title", "\xa9nam"), ("genre", "\xa9gen"), ("composer", "\xa9wrt"),
                        ("date", "\xa9day")):
        if not out[field] and atom in lower:
            out[field] = _first(tags[lower[atom]])
    return out


def _ffprobe_duration(path: Path) -> float | None:
    """Duration in seconds by ``ffprobe``; None when it is missing or cannot read the file."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        seconds = float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else None
    except ValueError:  # 'N/A'
        seconds = None
    return seconds if seconds and seconds > 0 else None


def probe_file(path: Path, *, read_tags: bool, with_duration: bool) -> tuple[dict[str, str], float | None]:
    """Tags and duration of one file.

    Parameters
    ----------
    path : the audio file
    read_tags : read the :data:`FIELDS` (else they are all "")
    with_duration : read the duration (else None is returned for it)

    Returns
    -------
    fields : :data:`FIELDS` -> text ("" where the tags lack it)
    duration : seconds, or None when not asked for or not known

    Raises
    ------
    UnreadableAudioError
        When none of mutagen, soundfile and ffprobe reads the file (``detail`` says why).
    """
    fields = dict.fromkeys(FIELDS, "")
    if not (read_tags or with_duration):
        return fields, None
    duration = None
    parsed, mutagen_error = _mutagen_file(path)
    if parsed is not None:
        if read_tags:
            fields = tag_fields(parsed.tags)
        length = getattr(getattr(parsed, "info", None), "length", None)
        if length and length > 0:
            duration = float(length)
    if parsed is None or (with_duration and duration is None):
        # mutagen does not know the format (or gave no length): soundfile decides
        duration = _fallback_duration(path, mutagen_error=mutagen_error, mutagen_read=parsed is not None,
                                      duration=duration)
    return fields, (duration if with_duration else None)


def _mutagen_file(path: Path):
    """``(mutagen.File(path, easy=True), "")``, or ``(None, why)`` when mutagen fails on it."""
    try:
        return mutagen.File(path, easy=True), ""
    except Exception as exc:  # mutagen raises many types for corrupt input
        return None, f"{type(exc).__name__}: {exc}"


def _fallback_duration(path: Path, *, mutagen_error: str, mutagen_read: bool, duration: float | None) -> float | None:
    """Duration by soundfile, else (for a file mutagen could not read) by ffprobe; ``duration`` when neither tells.

    Raises :class:`UnreadableAudioError` when mutagen could not read the file and neither can soundfile nor ffprobe.
    """
    said: list[str] = []  # what libsndfile's decoders print: a debug line, never the terminal
    try:
        if mutagen_error and path.suffix.lower() == ".mp3":
            # a broken MP3: libsndfile's mpg123 would only repeat it
            raise ValueError(mutagen_error)
        with capture_decoder_output(into=said):
            info = sf.info(str(path))
    except Exception as exc:
        if not mutagen_read:
            # last resort: what only ffmpeg decodes (tracker modules, some AAC/WebM)
            seconds = _ffprobe_duration(path)
            if seconds is None:
                why = mutagen_error or f"{type(exc).__name__}: {exc}"
                decoder = f"; decoder: {decoder_reason(said)}" if said else ""
                raise UnreadableAudioError(path, why + decoder) from None
            duration = seconds
    else:
        if info.frames > 0 and info.samplerate > 0:
            duration = info.frames / info.samplerate
    finally:
        log_decoder_output(path=path, said=said)
    return duration

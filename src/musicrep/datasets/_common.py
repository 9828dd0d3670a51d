"""Pieces shared by the catalog builders: skip records, text clean-up, ids, summaries."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from ..catalog import Catalog, slugify
from ..errors import CatalogError

log = logging.getLogger(__name__)

#: File name endings treated as audio (lower case). Everything that
#: :func:`musicrep.audio.load_audio` decodes through soundfile or ffmpeg.
AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac",
    ".aif", ".aiff", ".au", ".wma", ".wv", ".ape", ".mpc",
)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """One input a builder left out of the catalog.

    Attributes
    ----------
    item : the file path, or the source's own track id when there is no file
    reason : a short, fixed phrase (``"no audio file"``, ``"cannot read audio"``, ...)
    detail : free text, e.g. the decoder's message
    """

    item: str
    reason: str
    detail: str = ""


class SkipLog:
    """Collects :class:`Skipped` records and logs each one once.

    ``sink`` is the caller's list (the ``skipped=`` argument of every builder);
    records are appended to it as they happen.
    """

    def __init__(self, sink: list[Skipped] | None, *, logger: logging.Logger):
        self.records: list[Skipped] = sink if sink is not None else []
        self.logger = logger

    def add(self, item, reason: str, detail: str = "", *, level: int = logging.WARNING) -> None:
        rec = Skipped(str(item), reason, detail)
        self.records.append(rec)
        msg = f"skipped {rec.item}: {reason}" + (f" ({detail})" if detail else "")
        self.logger.log(level, msg)

    def counts(self) -> Counter:
        return Counter(r.reason for r in self.records)


_BREAKS = re.compile(r"[\s\u0000-\u001f\u007f-\u009f\u2028\u2029]+")


def clean_text(value) -> str:
    """One line of tag text: NULs, control characters and line breaks become spaces.

    Text that was stored as UTF-8 but decoded as Latin-1 (a common ID3v2.3
    mistake, e.g. ``'BjÃ¶rk'``) is repaired; right-to-left and other non-ASCII
    text is kept exactly.
    """
    if value is None:
        return ""
    text = str(value)
    if any("\u0080" <= ch <= "\u00ff" for ch in text) and all(ord(ch) < 256 for ch in text):
        try:
            text = text.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            pass
    text = unicodedata.normalize("NFC", text)
    return _BREAKS.sub(" ", text).strip()


def stable_ids(keys: Iterable[str], *, slug_of: Callable[[str], str] | None = None) -> list[str]:
    """Readable, unique ids for ``keys`` (e.g. relative paths), stable between runs.

    The id is the slug of ``slug_of(key)`` (of the key itself by default); keys
    whose slugs collide (``"a b.wav"`` and ``"a-b.flac"``, or names in a
    non-Latin script that slug to the same text) get the first 8 hex digits of
    the key's SHA-1 appended, so each id depends only on its own key and on
    which keys share its slug.
    """
    keys = list(keys)
    slugs = [slugify(slug_of(k) if slug_of else k, max_len=80) for k in keys]
    counts = Counter(slugs)
    out = []
    for key, slug in zip(keys, slugs):
        if counts[slug] > 1:
            slug = f"{slug}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"
        out.append(slug)
    if len(set(out)) != len(out):  # two identical keys; cannot happen for paths
        raise CatalogError("duplicate keys given to stable_ids: " + ", ".join(k for k, n in Counter(keys).items() if n > 1))
    return out


def check_not_empty(catalog: Catalog, skipped: SkipLog, *, where: str, what: str) -> Catalog:
    """Raise :class:`CatalogError` when a builder found nothing usable."""
    if len(catalog):
        return catalog
    reasons = ", ".join(f"{n} {r}" for r, n in skipped.counts().most_common())
    raise CatalogError(f"{where}: no usable tracks ({what})" + (f"; skipped: {reasons}" if reasons else ""))


def summary_line(catalog: Catalog, skipped: Iterable[Skipped] = ()) -> str:
    """One line for people: tracks, artists, albums, genres, hours, skipped by reason."""
    s = catalog.summary()
    counts = Counter(r.reason for r in skipped)
    line = (
        f"{s['tracks']} tracks, {len(s['artists'])} artists, {len(s['albums'])} albums, "
        f"{len(s['genres'])} genres, {s['hours']:.2f} h; skipped {sum(counts.values())}"
    )
    if counts:
        ordered = sorted(counts.items(), key=lambda rn: (-rn[1], rn[0]))
        line += " (" + ", ".join(f"{r}: {n}" for r, n in ordered) + ")"
    return line


def is_audio_name(name: str, extensions: Iterable[str]) -> bool:
    return Path(name).suffix.lower() in extensions


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    out = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not out:
        raise CatalogError("extensions is empty; give at least one, e.g. ('.wav', '.mp3')")
    return out

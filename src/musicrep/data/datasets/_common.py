"""Pieces shared by the catalog builders: skip records, file checks, text clean-up, ids, summaries."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ...errors import CatalogError
from ..audio import AUDIO_EXTENSIONS as _AUDIO_EXTENSIONS
from ..catalog import Catalog, Track, slugify

log = logging.getLogger(__name__)

#: File name endings taken as audio (lower case): those :mod:`musicrep.data.audio` decodes.
AUDIO_EXTENSIONS: tuple[str, ...] = _AUDIO_EXTENSIONS


@dataclasses.dataclass(frozen=True, slots=True)  # slots: the MSD can skip a million rows
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

    def add(self, item, *, reason: str, detail: str = "", level: int = logging.WARNING) -> None:
        rec = Skipped(str(item), reason, detail)
        self.records.append(rec)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "skipped %s: %s%s", rec.item, reason, f" ({detail})" if detail else "")

    def counts(self) -> Counter:
        return Counter(r.reason for r in self.records)


def check_audio_file(path: Path, *, skips: SkipLog, detail: str = "", missing_level: int = logging.WARNING) -> bool:
    """True when ``path`` is a non-empty file; else record ``"no audio file"`` or ``"empty file"`` in ``skips``.

    For builders whose source lists the tracks (a CSV, a database): a listed
    file that is missing is logged at ``missing_level`` (DEBUG where most
    listed tracks have no audio by design, as in FMA without a subset).
    """
    if not path.is_file():
        skips.add(path, reason="no audio file", detail=detail, level=missing_level)
        return False
    if path.stat().st_size == 0:  # no decoder reads it; preparing the store would fail on it later
        skips.add(path, reason="empty file", detail=detail)
        return False
    return True


def found_file_problem(path: Path) -> tuple[str, str] | None:
    """Why a file found by walking a folder cannot be used: ``(reason, detail)``, or None when it can.

    For builders that walk folders: a broken link, something that is not a
    regular file, a file whose size cannot be read, or an empty file.
    """
    if path.is_symlink() and not path.exists():
        return "broken link", os.readlink(path)
    if not path.is_file():
        return "not a regular file", ""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return "cannot read file", exc.strerror or str(exc)
    if size == 0:
        return "empty file", ""
    return None


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

    The id is the slug of ``slug_of(key)`` (of the key itself by default), in
    the key's own script (``"헤로즈/01 영웅"`` -> ``"헤로즈-01-영웅"``, see
    :func:`~musicrep.data.catalog.slugify`); keys whose slugs collide (``"a b.wav"``
    and ``"a-b.flac"``, or names of symbols only) get the first 8 hex digits of
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


def unique_album_names(tracks: Sequence[Track], *, owners: Sequence[str]) -> list[Track]:
    """Make each album name name one album: ``"Greatest Hits [Queen]"``.

    :mod:`musicrep.data.splits` groups songs into albums by the ``album`` column, so
    two artists' "Greatest Hits" must not share a name. Tracks are told apart
    by their ``album_id`` extra; where one album name has more than one
    ``album_id``, each such album gets its owner (album artist) appended, or
    its ``album_id`` where the owner does not tell them apart. Names used by
    one album only are left exactly as they are.
    """
    ids_of: dict[str, set[str]] = defaultdict(set)
    for t in tracks:
        if t.album:
            ids_of[t.album].add(t.extra.get("album_id", ""))
    clashing = {name for name, ids in ids_of.items() if len(ids) > 1}
    if not clashing:
        return list(tracks)
    owner_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t, owner in zip(tracks, owners):
        if t.album in clashing:
            owner_of[(t.album, owner)].add(t.extra.get("album_id", ""))
    out = []
    for t, owner in zip(tracks, owners):
        if t.album in clashing:
            key = t.extra.get("album_id", "")
            tag = owner if owner and len(owner_of[(t.album, owner)]) == 1 else key
            t = dataclasses.replace(t, album=f"{t.album} [{tag}]")
        out.append(t)
    log.info("%d album names are shared by several albums; the artist was appended to tell them apart: %s",
             len(clashing), ", ".join(sorted(clashing)[:5]))
    return out


def check_not_empty(catalog: Catalog, *, skipped: SkipLog, where: str, what: str) -> Catalog:
    """Raise :class:`CatalogError` when a builder found nothing usable."""
    if len(catalog):
        return catalog
    reasons = ", ".join(f"{n} {r}" for r, n in skipped.counts().most_common())
    raise CatalogError(f"{where}: no usable tracks ({what})" + (f"; skipped: {reasons}" if reasons else ""))


def summary_line(catalog: Catalog, *, skipped: Iterable[Skipped] = ()) -> str:
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


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    out = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not out:
        raise CatalogError("extensions is empty; give at least one, e.g. ('.wav', '.mp3')")
    return out

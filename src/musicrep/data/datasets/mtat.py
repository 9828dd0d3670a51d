"""Catalog of MagnaTagATune (MTAT): ``annotations_final.csv``, the top-N tags and the folder split.

MTAT's files, as unpacked from its three ``mp3.zip.00x`` parts and metadata:

- ``annotations_final.csv``: *tab*-separated despite its name, every field in
  double quotes; columns ``clip_id``, 188 tag columns holding 0 or 1, and
  ``mp3_path`` (``f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3``);
- ``clip_info_final.csv`` (optional here), also tab-separated: ``clip_id``,
  ``track_number``, ``title``, ``artist``, ``album``, ``url``, ``segmentStart``,
  ``segmentEnd``, ``original_url``, ``mp3_path``;
- the audio in 16 folders ``0`` .. ``9``, ``a`` .. ``f`` (the first part of ``mp3_path``).

The common 50-tag benchmark is built as in Won et al.'s preprocessing script,
``preprocessing/mtat/split.py`` of github.com/minzwon/data-driven-harmonic-filters
(commit 278ea78; its outputs are named like the lists ``split/mtat/{tags,train,valid,test}.npy``
of github.com/minzwon/sota-music-tagging-models), which uses the 12:1:3 folder split
that goes back to Dieleman & Schrauwen (ICASSP 2014):

- the top-N tags by number of clips carrying them, counted over every row of
  ``annotations_final.csv`` (all folders, with or without audio); ties, which the
  reference leaves to ``np.argsort``, go to the tag whose column comes first;
- split by the clip's folder: ``0``-``b`` train, ``c`` valid, ``d``-``f`` test;
- clips with none of the top-N tags are left out, as the reference does
  (``binary[i].sum() > 0``); ``keep_untagged=True`` keeps them as negatives for
  every tag (the unfiltered ``train.npy`` that the same script in
  github.com/minzwon/self-attention-music-tagging writes beside the filtered
  ``train_new.npy`` its loader reads);
- clips whose audio file is missing are left out (the reference keeps only clips
  whose decoded file exists).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ...errors import CatalogError, ConfigError
from ..catalog import Catalog, Track
from ._common import SkipLog, Skipped, check_audio_file, check_not_empty, clean_text

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations_final.csv"
CLIP_INFO = "clip_info_final.csv"
FOLDERS: tuple[str, ...] = tuple("0123456789abcdef")
#: folder -> part of the split (12:1:3)
SPLIT_OF_FOLDER: dict[str, str] = {f: "train" if f < "c" else "valid" if f == "c" else "test" for f in FOLDERS}
#: joins a clip's tags in the catalog's ``tags`` column; no MTAT tag contains it
TAG_SEPARATOR = ";"
#: the top-50 tags of the full ``annotations_final.csv``, most frequent first, as the
#: reference lists them (musicnn's ``MTT_LABELS``, sota-music-tagging-models' ``tags.npy``)
REFERENCE_TOP50: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)
#: number of tag columns in the full file; the reference check applies only to it
N_TAG_COLUMNS = 188


def _read_tsv(path: Path, *, encoding: str = "utf-8-sig") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows of a tab-separated file with quoted fields."""
    try:
        with open(path, newline="", encoding=encoding) as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        # names with accents in an old single-byte encoding: every byte is a Latin-1
        # character, and clean_text repairs UTF-8 that this misreads
        log.info("%s: not UTF-8 (%s at byte %d); read as Latin-1", path, exc.reason, exc.start)
        return _read_tsv(path, encoding="latin-1")
    except csv.Error as exc:
        raise CatalogError(f"{path}: malformed tab-separated file ({exc})") from None
    if len(header) == 1 and "," in header[0]:
        raise CatalogError(f"{path}: comma-separated, but MTAT's files are tab-separated; use the original file")
    return header, rows


def read_annotations(path: str | Path, *, skips: SkipLog) -> tuple[list[str], list[tuple[str, str, list[int]]]]:
    """Tag names and ``(clip_id, mp3_path, 0/1 per tag)`` rows of ``annotations_final.csv``.

    A row with the wrong number of fields or a tag value other than 0/1 is
    skipped (recorded in ``skips``); a file without ``clip_id`` and ``mp3_path``
    columns is a :class:`CatalogError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: MTAT {ANNOTATIONS} not found; give the folder that holds it")
    header, rows = _read_tsv(path)
    if not header or header[0] != "clip_id" or header[-1] != "mp3_path" or len(header) < 3:
        raise CatalogError(f"{path}: expected the columns clip_id, <tags ...>, mp3_path; found {header[:3]} ...")
    tags = header[1:-1]
    out = []
    for line, row in rows:
        if len(row) != len(header):
            skips.add(f"{path}:{line}", reason="malformed row",
                      detail=f"{len(row)} fields, the header has {len(header)}")
            continue
        try:
            values = [int(v) for v in row[1:-1]]
        except ValueError:
            values = []
        if len(values) != len(tags) or any(v not in (0, 1) for v in values):
            skips.add(f"{path}:{line}", reason="malformed row", detail="a tag value is not 0 or 1")
            continue
        out.append((row[0].strip(), row[-1].strip(), values))
    return tags, out


def top_tags(tags: list[str], *, rows: list[tuple[str, str, list[int]]], top: int) -> list[str]:
    """The ``top`` most frequent tags, most frequent first; ties by column order.

    Parameters
    ----------
    tags : tag names, [n_tags]
    rows : ``(clip_id, mp3_path, values)`` with ``values`` int 0/1 [n_tags]
    top : how many to keep (all when there are fewer tags)
    """
    if top < 1:
        raise ConfigError(f"top={top} must be at least 1")
    counts = [sum(r[2][i] for r in rows) for i in range(len(tags))]
    order = sorted(range(len(tags)), key=lambda i: (-counts[i], i))
    chosen = [tags[i] for i in order[:top]]
    if top == 50 and len(tags) == N_TAG_COLUMNS and set(chosen) != set(REFERENCE_TOP50):
        log.warning("the top-50 tags differ from the reference list (%s in ours only); is this the original %s?",
                    ", ".join(sorted(set(chosen) - set(REFERENCE_TOP50))), ANNOTATIONS)
    return chosen


def read_clip_info(path: Path) -> dict[str, dict[str, str]]:
    """``{clip_id: {column: value}}`` of ``clip_info_final.csv``; empty when the file is absent."""
    if not path.is_file():
        log.info("%s not found: artist and album come from the audio file names", path)
        return {}
    header, rows = _read_tsv(path)
    if "clip_id" not in header:
        raise CatalogError(f"{path}: no clip_id column; is this MTAT's {CLIP_INFO}?")
    key = header.index("clip_id")
    out = {row[key].strip(): dict(zip(header, row)) for _line, row in rows if len(row) == len(header)}
    if len(out) < len(rows):
        log.warning("%s: %d rows with the wrong number of fields ignored; those clips are named from their "
                    "file names", path, len(rows) - len(out))
    return out


def _names(mp3_path: str, info: dict[str, str]) -> tuple[str, str, str, float | None]:
    """Artist, album, title and seconds of one clip, from clip_info or else its file name.

    File names are ``artist-album-NN-title-start-end.mp3`` with ``_`` for spaces
    and punctuation, so the fallback gives those slugs.
    """
    if info:
        try:
            seconds = float(info.get("segmentEnd", "")) - float(info.get("segmentStart", ""))
        except ValueError:
            seconds = None
        return (clean_text(info.get("artist")), clean_text(info.get("album")), clean_text(info.get("title")),
                seconds if seconds is not None and seconds > 0 else None)
    parts = Path(mp3_path).stem.split("-")
    if len(parts) < 6:
        return "", "", "", None
    return parts[0], parts[1], "-".join(parts[3:-2]), None


def find_audio_dir(root: Path) -> Path:
    """The folder holding MTAT's 16 audio folders: ``root`` or ``root/mp3``."""
    for folder in (root, root / "mp3"):
        if any((folder / f).is_dir() for f in FOLDERS):
            return folder
    raise CatalogError(f"{root}: none of MTAT's audio folders 0 .. 9, a .. f found (here or in mp3/); "
                       "unzip mp3.zip.001-003 there, or give audio_dir")


def from_mtat(
    root: str | Path,
    *,
    top: int = 50,
    keep_untagged: bool = False,
    audio_dir: str | Path | None = None,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Build a catalog of MagnaTagATune with its top-N tags and folder split.

    Parameters
    ----------
    root : the folder holding ``annotations_final.csv`` (and ``clip_info_final.csv``,
        when present, for artist, album, title and duration)
    top : keep the ``top`` most frequent tags (see the module docstring)
    keep_untagged : keep clips with none of those tags (the reference leaves them out)
    audio_dir : the folder holding ``0/`` .. ``f/``; ``root`` or ``root/mp3`` by default
    skipped : if given, a list that receives one :class:`Skipped` per clip left out
        (``"no audio file"``, ``"empty file"``, ``"not in the 16 folders"``,
        ``"malformed row"``, ``"no top-N tag"``)

    Returns
    -------
    Catalog
        ``track_id`` = ``clip_id``; artist, album, title from ``clip_info_final.csv``
        (else the slugs of the file name); genre empty; duration =
        ``segmentEnd - segmentStart`` (seconds, else unknown). Extra columns:
        ``tags`` (the clip's top-N tags joined by ``;``, most frequent tag first),
        ``split`` (train/valid/test by folder), ``mp3_path``.

    Raises
    ------
    CatalogError
        If ``annotations_final.csv`` or the audio folders are missing or not MTAT's,
        or no clip is usable.
    """
    root = Path(root)
    audio = Path(audio_dir) if audio_dir is not None else find_audio_dir(root)
    skips = SkipLog(skipped, logger=log)
    tags, rows = read_annotations(root / ANNOTATIONS, skips=skips)
    chosen = top_tags(tags, rows=rows, top=top)
    columns = [tags.index(t) for t in chosen]
    info = read_clip_info(root / CLIP_INFO)
    tracks: list[Track] = []
    for clip_id, mp3_path, values in rows:
        clip_tags = [t for t, i in zip(chosen, columns) if values[i]]
        if not clip_tags and not keep_untagged:  # before the file checks: only clips in use are reported
            skips.add(audio / mp3_path, reason=f"no top-{top} tag", detail=f"clip {clip_id}", level=logging.DEBUG)
            continue
        track = _clip(clip_id, mp3_path, clip_tags, audio=audio, info=info.get(clip_id, {}), skips=skips)
        if track is not None:
            tracks.append(track)
    catalog = Catalog(tracks, source=str(root / ANNOTATIONS))
    counts = skips.counts()
    log.info("%s: %d of %d clips kept with %d tags (%s)", root / ANNOTATIONS, len(catalog), len(rows), len(chosen),
             ", ".join(f"{r}: {n}" for r, n in counts.most_common()) or "none skipped")
    return check_not_empty(catalog, skipped=skips, where=str(root), what=f"no listed clip has audio under {audio}")


def _clip(clip_id: str, mp3_path: str, clip_tags: list[str], *, audio: Path, info: dict[str, str],
          skips: SkipLog) -> Track | None:
    """One clip's Track, or None (recorded in ``skips``) when its file is unusable."""
    folder = mp3_path.replace("\\", "/").split("/", 1)[0]
    if folder not in SPLIT_OF_FOLDER or "/" not in mp3_path:
        skips.add(mp3_path or f"clip {clip_id}", reason="not in the 16 folders", detail=f"clip {clip_id}")
        return None
    path = audio / mp3_path
    if not check_audio_file(path, skips=skips, detail=f"clip {clip_id}"):
        return None
    artist, album, title, seconds = _names(mp3_path, info)
    return Track(track_id=clip_id, path=str(path.absolute()), artist=artist, album=album, title=title,
                 duration=seconds, extra={"tags": TAG_SEPARATOR.join(clip_tags), "split": SPLIT_OF_FOLDER[folder],
                                          "mp3_path": mp3_path})

"""Catalog from a catalog CSV written by hand or by another tool."""

from __future__ import annotations

import logging
from pathlib import Path

from ..catalog import Catalog, read_csv
from ._common import SkipLog, Skipped, check_audio_file, check_not_empty

log = logging.getLogger(__name__)


def from_csv(
    path: str | Path,
    *,
    resolve_paths: bool = True,
    check_files: bool = True,
    casefold_labels: bool = False,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Read a catalog CSV (see :func:`musicrep.data.catalog.read_csv`) and check its audio paths.

    Parameters
    ----------
    path : CSV with at least ``track_id`` and ``path`` columns; ``artist``,
        ``album``, ``title``, ``genre``, ``duration`` (seconds) and any extra
        columns are kept
    resolve_paths : resolve relative audio paths against the CSV's folder
        (they become absolute, so the catalog can be written anywhere)
    check_files : leave out (and report) rows whose audio file does not exist
        or is empty
    casefold_labels : fold the case of artist, album, title and genre
        (``"ABBA"`` and ``"Abba"`` become one artist); see
        :func:`musicrep.data.catalog.normalize_label`
    skipped : if given, a list that receives one :class:`Skipped` per row left out

    Raises
    ------
    CatalogError
        If the file is missing, not UTF-8, lacks or repeats a column, has a
        bad row, repeats a track id, or (with ``check_files``) no row has audio.
    """
    catalog = read_csv(path, resolve_paths=resolve_paths, casefold_labels=casefold_labels)
    if not check_files:
        return catalog
    skips = SkipLog(skipped, logger=log)
    keep = [t for t in catalog if check_audio_file(Path(t.path), skips=skips, detail=f"track {t.track_id}")]
    out = Catalog(keep, source=catalog.source)
    return check_not_empty(out, skipped=skips, where=str(path), what="no row's audio file exists")

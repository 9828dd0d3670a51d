"""The ``musicrep embed`` job: embed files and folders into ``.npz`` files or a table.

Outputs mirror the input tree (``OUT/<rel>/<name>.<ext>.npz``), are written
atomically, and are skipped when already there, so a killed job resumes; bad
files are reported by name and the rest is embedded. A table (``.npz``,
``.csv``, ``.npy`` or ``.parquet``, see :mod:`musicrep.inference.outputs`) holds one row
per file; with ``segments`` a second table beside it holds one row per segment
with its start and end in seconds. The model API itself is in
:mod:`musicrep.inference.embed`.

Every output (each ``.npz``, each table row) is stamped with the model that
made it: the checkpoint's SHA-256 and the front end's feature hash. A rerun
skips only outputs with this model's stamp; when the outputs of its files (or,
for a table, any row) come from another model, the job refuses before writing
anything, naming how many and both checkpoints, unless ``overwrite``: a resumed
job never leaves vectors of two models side by side.

One writer per output: the job holds :func:`musicrep.locks.folder_lock` on the
output folder (or the table file) from before it reads or writes anything.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import progress
from ..data.catalog import Catalog, Track
from ..errors import AudioError, ConfigError, MixedModelsError
from ..io import atomic_path, remove_stale_temps
from ..locks import folder_lock
from .discovery import find_audio, key_of
from .embed import Embedding, EmbeddingModel
from .outputs import (
    Table,
    check_table_path,
    read_table,
    remove_table,
    segments_path,
    write_table,
)

log = logging.getLogger(__name__)

#: Catalog columns copied into an embedding table when a catalog is given.
META_COLUMNS: tuple[str, ...] = ("track_id", "artist", "album", "title", "genre")
#: What every output records about the model that made it; the last two decide
#: whether a rerun may keep it.
STAMP_COLUMNS: tuple[str, ...] = ("checkpoint", "checkpoint_sha256", "feature_hash")


def model_stamp(model: EmbeddingModel) -> dict[str, str]:
    """``{"checkpoint", "checkpoint_sha256", "feature_hash"}`` of a model ("" sha: built in memory)."""
    has_file = model.checkpoint is not None
    return {"checkpoint": str(model.checkpoint) if has_file else "",
            "checkpoint_sha256": model.checkpoint_sha() if has_file else "",
            "feature_hash": model.feature_hash}


def same_model(stamp: dict[str, str], *, ours: dict[str, str]) -> bool:
    """Whether an output's stamp says ``ours`` made it.

    A model built in memory has no checkpoint to identify it, so nothing is
    ever its own. An output from before feature hashes were recorded counts by
    its checkpoint alone: a checkpoint holds its feature settings.
    """
    return (bool(ours["checkpoint_sha256"]) and stamp.get("checkpoint_sha256") == ours["checkpoint_sha256"]
            and stamp.get("feature_hash", ours["feature_hash"]) == ours["feature_hash"])


def _describe(stamp: dict[str, str]) -> str:
    sha = stamp.get("checkpoint_sha256") or ""
    return (f"checkpoint {stamp.get('checkpoint') or '(path not recorded)'}, sha256 {sha[:12] or '(none)'}, "
            f"features {stamp.get('feature_hash') or '(not recorded)'}")


def _npz_stamp(path: Path) -> dict[str, str] | None:
    """The stamp of an existing per-file output, or None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: str(z[k]) for k in STAMP_COLUMNS if k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a damaged file: ours to replace
        log.warning("%s is unreadable (%s); embedding its file again", path, exc)
        return None

@dataclasses.dataclass
class EmbedReport:
    """What :func:`embed_to_files` did."""

    embedded: list[Path] = dataclasses.field(default_factory=list)
    already_done: list[Path] = dataclasses.field(default_factory=list)
    errors: list[AudioError] = dataclasses.field(default_factory=list)
    outputs: list[Path] = dataclasses.field(default_factory=list)
    seconds_of_audio: float = 0.0


def output_paths(inputs: Sequence[str | Path], *, out: str | Path, recursive: bool = True) -> dict[Path, Path]:
    """Audio file -> its ``.npz`` under ``out``, mirroring each input folder's tree.

    ``music/a/b.flac`` given as ``music/`` lands in ``OUT/a/b.flac.npz``; a file
    given by name lands in ``OUT/b.flac.npz`` (the audio ending is kept, so
    ``b.flac`` and ``b.mp3`` never collide).
    """
    out = Path(out)
    mapping: dict[Path, Path] = {}
    for inp in inputs:
        inp = Path(inp)
        for f in find_audio([inp], recursive=recursive):
            rel = f.relative_to(inp) if inp.is_dir() else Path(f.name)
            mapping.setdefault(f, out / rel.parent / (rel.name + ".npz"))
    return mapping


def _refuse_other_models(where: Path, others: list[dict[str, str]], ours: dict[str, str]) -> None:
    if not others:
        return
    kinds = Counter(tuple(sorted(o.items())) for o in others)
    first = dict(kinds.most_common(1)[0][0])
    more = f" and {len(kinds) - 1} other model(s)" if len(kinds) > 1 else ""
    raise MixedModelsError(
        f"{where}: {len(others)} existing output(s) were made by another model ({_describe(first)}{more}), "
        f"not by this one ({_describe(ours)}); a rerun would mix the vectors of two models. Pass --overwrite "
        "to embed them again with this model, or write to another output"
    )


@dataclasses.dataclass
class _TableRow:
    """One file's row of an embedding table, and its segments when it has them."""

    columns: dict[str, str]  # path, id, catalog metadata, stamp
    vector: np.ndarray  # [D]
    segments: np.ndarray | None = None  # [S, D]
    times: np.ndarray | None = None  # [S, 2], seconds

    @property
    def stamp(self) -> dict[str, str]:
        return {k: self.columns[k] for k in STAMP_COLUMNS if k in self.columns}


def _existing_rows(table: Path) -> dict[str, _TableRow]:
    """An existing table's rows by resolved path, each with its segments if the segment table has them.

    A table from before stamps were written gives empty stamps (another model's, as far as
    a rerun can tell). Segments of another model than their file's row are left out.
    """
    songs = read_table(table)
    if songs is None:
        return {}
    rows = {}
    for i, path in enumerate(songs.columns.get("path", [])):
        rows[path] = _TableRow({k: str(v[i]) for k, v in songs.columns.items()}, songs.vectors[i])
    segs = read_table(segments_path(table))
    if segs is None:
        return rows
    by_path: dict[str, list[int]] = {}
    for i, path in enumerate(segs.columns.get("path", [])):
        by_path.setdefault(path, []).append(i)
    for path, idx in by_path.items():
        row = rows.get(path)
        if row is None or any(str(segs.columns[k][idx[0]]) != v for k, v in row.stamp.items() if k in segs.columns):
            continue
        idx = sorted(idx, key=lambda i: segs.columns["segment"][i])
        row.segments = segs.vectors[idx]
        row.times = np.array([[segs.columns["start"][i], segs.columns["end"][i]] for i in idx], dtype=np.float64)
    return rows


def _row_id(columns: dict[str, str]) -> str:
    """A row's id: its catalog track id, or its path when the file is in no catalog."""
    return columns.get("track_id") or columns["path"]


def _write_tables(table: Path, rows: dict[str, _TableRow], catalog: Catalog | None) -> list[Path]:
    """Write the song table (and the segment table of the rows that have segments); returns the files."""
    by_path = {key_of(t.path): t for t in catalog} if catalog is not None else {}
    paths = sorted(rows)
    for p in paths:  # the current catalog's metadata wins over what an earlier run wrote
        track = by_path.get(p)
        if track is not None:
            rows[p].columns.update({c: str(track.get(c) or "") for c in META_COLUMNS})
        rows[p].columns["path"] = p
        rows[p].columns["id"] = _row_id(rows[p].columns)
    meta = [c for c in META_COLUMNS if catalog is not None or any(c in rows[p].columns for p in paths)]
    names = ["id", "path", *meta, *STAMP_COLUMNS]
    written = []
    seg_rows = [p for p in paths if rows[p].segments is not None]
    if seg_rows:  # before the song table: the song table is what a rerun reads first
        seg_names = ["id", "path", "segment", "start", "end", *STAMP_COLUMNS]
        columns: dict[str, list] = {c: [] for c in seg_names}
        for p in seg_rows:
            r = rows[p]
            for j, (start, end) in enumerate(r.times):
                for c in ("id", "path", *STAMP_COLUMNS):
                    columns[c].append(r.columns.get(c, ""))
                columns["segment"].append(j)
                columns["start"].append(float(start))
                columns["end"].append(float(end))
        vectors = np.concatenate([rows[p].segments for p in seg_rows])
        written += write_table(segments_path(table), table=Table(columns, vectors))
    else:
        remove_table(segments_path(table))  # no row has segments: an old segment table would be stale
    columns = {c: [rows[p].columns.get(c, "") for p in paths] for c in names}
    written += write_table(table, table=Table(columns, np.stack([rows[p].vector for p in paths])))
    return written


def embed_to_files(
    *,
    model: EmbeddingModel,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    table: str | Path | None = None,
    catalog: Catalog | None = None,
    overwrite: bool = False,
    segments: bool = False,
    recursive: bool = True,
    workers: int = 1,
) -> EmbedReport:
    """Embed files and folders to one ``.npz`` per file, or to one table.

    Parameters
    ----------
    model : the loaded model
    inputs : audio files and folders (searched recursively by default)
    out : folder for one ``.npz`` per file (tree mirrored, see :func:`output_paths`);
        each holds ``vector`` [D], ``duration`` (s), ``source``, the model's stamp
        (``checkpoint``, ``checkpoint_sha256``, ``feature_hash``) and, with
        ``segments``, ``segments`` [S, D] and ``times`` [S, 2] (start, end in s)
    table : instead, one table for all files, in the format its ending names
        (:mod:`musicrep.inference.outputs`: ``.npz``, ``.csv``, ``.npy`` + ``.ids.txt`` +
        ``.json``, ``.parquet``); one row per file with ``id`` (the catalog's
        track id, else the path), ``path``, catalog metadata, the stamp and the
        vector [D]. With ``segments``, also ``TABLE.segments.EXT``: one row per
        segment with ``id``, ``path``, ``segment`` (0, 1, ...), ``start`` and
        ``end`` (s), the stamp and the segment's vector [D]
    catalog : Catalog whose rows (matched by resolved path) add ``track_id``,
        ``artist``, ``album``, ``title``, ``genre`` to the table or each ``.npz``
    overwrite : embed again files whose output exists (default: skip those this
        model made, and refuse when outputs of another model are there); a
        table is then written anew with this job's files only
    segments : also keep per-segment vectors and their times (see ``out`` and ``table``)
    workers : decoding threads

    Returns
    -------
    EmbedReport
        Unusable files are in ``errors`` (each names its file); the job goes on.

    Raises
    ------
    MixedModelsError
        when outputs made by another checkpoint or other feature settings exist
        and ``overwrite`` is not given (nothing is written then)
    FolderLockedError
        when another process is writing the same output
    ConfigError
        when the table's format is unknown, or ``.parquet`` without pyarrow (before any work)
    """
    if (out is None) == (table is None):
        raise ConfigError("give exactly one of an output folder (-o) or a table (--table)")
    if table is not None:
        check_table_path(table)
    with folder_lock(Path(out) if table is None else Path(table)):
        return _embed_locked(model=model, inputs=inputs, out=out, table=table, catalog=catalog, overwrite=overwrite,
                             segments=segments, recursive=recursive, workers=workers)


def _embed_locked(*, model: EmbeddingModel, inputs: Sequence[str | Path], out: str | Path | None,
                  table: str | Path | None, catalog: Catalog | None, overwrite: bool, segments: bool,
                  recursive: bool, workers: int) -> EmbedReport:
    started = time.time()  # temp files older than this were left by a killed run
    mapping = output_paths(inputs, out=out if out is not None else ".", recursive=recursive)
    report = EmbedReport()
    ours = model_stamp(model)
    rows = {} if (table is None or overwrite) else _existing_rows(Path(table))
    todo, others = _sort_inputs(mapping, report=report, rows=rows, table=table, ours=ours, overwrite=overwrite,
                                segments=segments)
    if table is not None:  # rows of files not in this job's inputs stay, and must be this model's too
        wanted = {key_of(src) for src in mapping}
        others += [r.stamp for key, r in rows.items() if key not in wanted and not same_model(r.stamp, ours=ours)]
        if Path(table).suffix == ".npy":
            _check_one_line_ids(Path(table), todo, catalog)
    _refuse_other_models(Path(table) if table is not None else Path(out), others, ours)
    if report.already_done:
        log.info("%d file(s) already embedded by this model; skipped (use --overwrite to redo)",
                 len(report.already_done))
    _embed_todo(model, todo=todo, mapping=mapping, report=report, rows=rows, table=table, catalog=catalog,
                ours=ours, segments=segments, workers=workers, started=started)
    if table is not None and rows:
        for written in _write_tables(Path(table), rows, catalog):
            remove_stale_temps(written, older_than=started)
            report.outputs.append(written)
    return report


def _sort_inputs(mapping: dict[Path, Path], *, report: EmbedReport, rows: dict[str, _TableRow],
                 table: str | Path | None, ours: dict[str, str], overwrite: bool,
                 segments: bool) -> tuple[list[Path], list[dict[str, str]]]:
    """The files to embed, and the stamps of outputs another model made; files this model already
    embedded (with the segments asked for) go to ``report.already_done``."""
    todo, others = [], []
    for src, dst in mapping.items():
        if overwrite:
            todo.append(src)
            continue
        if table is None:
            stamp = _npz_stamp(dst) if dst.is_file() else None
            has_segments = stamp is not None and _npz_has_segments(dst)
        else:
            row = rows.get(key_of(src))
            stamp, has_segments = (row.stamp, row.segments is not None) if row is not None else (None, False)
        if stamp is None or (same_model(stamp, ours=ours) and segments and not has_segments):
            todo.append(src)  # new, or ours but without the segments asked for now
        elif same_model(stamp, ours=ours):
            report.already_done.append(src)
        else:
            others.append(stamp)
    return todo, others


def _embed_todo(model: EmbeddingModel, *, todo: list[Path], mapping: dict[Path, Path], report: EmbedReport,
                rows: dict[str, _TableRow], table: str | Path | None, catalog: Catalog | None,
                ours: dict[str, str], segments: bool, workers: int, started: float) -> None:
    """Embed ``todo``: each result into its ``.npz`` at once, or into ``rows`` for the table."""
    by_path = {key_of(t.path): t for t in catalog} if catalog is not None else {}
    results = model.iter_files(todo, segments=segments, workers=workers)
    for src, res in progress.bar(results, total=len(todo), desc="embed", unit="file"):
        if isinstance(res, AudioError):
            log.debug("skipped %s", res)  # the caller reports report.errors
            report.errors.append(res)
            continue
        report.embedded.append(src)
        report.seconds_of_audio += res.duration
        if table is not None:
            rows[key_of(src)] = _TableRow({"path": key_of(src), **ours}, res.vector, res.segments, res.times)
            continue
        _write_npz(mapping[src], res, stamp=ours, track=by_path.get(key_of(src)), segments=segments)
        remove_stale_temps(mapping[src], older_than=started)
        report.outputs.append(mapping[src])


def _write_npz(dst: Path, res: Embedding, *, stamp: dict[str, str], track: Track | None, segments: bool) -> None:
    arrays = {"vector": res.vector, "duration": np.float64(res.duration), "source": np.array(res.source),
              **{k: np.array(v) for k, v in stamp.items()}}
    if segments:
        arrays.update(segments=res.segments, times=res.times)
    if track is not None:
        arrays.update({c: np.array(track.get(c)) for c in META_COLUMNS})
    with atomic_path(dst, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _npz_has_segments(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "segments" in z.files and "times" in z.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def _check_one_line_ids(table: Path, files: Sequence[Path], catalog: Catalog | None) -> None:
    """Refuse before any work an ``.npy`` table whose ids could not be one line each of ``.ids.txt``."""
    by_path = {key_of(t.path): t.track_id for t in catalog} if catalog is not None else {}
    for f in files:
        row_id = by_path.get(key_of(f)) or key_of(f)
        if "\n" in row_id or "\r" in row_id:
            raise ConfigError(f"{f}: its id {row_id!r} holds a line break and cannot be one line of "
                              f"{table.stem}.ids.txt; write a .npz, .csv or .parquet table instead")

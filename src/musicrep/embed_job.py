"""The ``musicrep embed`` job: embed files and folders into ``.npz`` files or a table.

Outputs mirror the input tree (``OUT/<rel>/<name>.<ext>.npz``), are written
atomically, and are skipped when already there, so a killed job resumes; bad
files are reported by name and the rest is embedded. The model API itself is in
:mod:`musicrep.embed`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .embed import EmbeddingModel, find_audio
from .errors import AudioError, ConfigError
from .io import atomic_path, remove_stale_temps

log = logging.getLogger(__name__)

#: Catalog columns copied into an embedding table when a catalog is given.
META_COLUMNS: tuple[str, ...] = ("track_id", "artist", "album", "title", "genre")

@dataclasses.dataclass
class EmbedReport:
    """What :func:`embed_to_files` did."""

    embedded: list[Path] = dataclasses.field(default_factory=list)
    already_done: list[Path] = dataclasses.field(default_factory=list)
    errors: list[AudioError] = dataclasses.field(default_factory=list)
    outputs: list[Path] = dataclasses.field(default_factory=list)
    seconds_of_audio: float = 0.0


def output_paths(inputs: Sequence[str | Path], out: str | Path, *, recursive: bool = True) -> dict[Path, Path]:
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


def _table_rows(path: Path) -> dict[str, np.ndarray]:
    """Existing table: source path -> vector (for resuming)."""
    if not path.is_file():
        return {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {str(p): v for p, v in zip(z["path"], z["vector"])}
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in (rows[0] if rows else {}) if c.startswith("e") and c[1:].isdigit()]
    return {r["path"]: np.array([float(r[c]) for c in cols], dtype=np.float32) for r in rows}


def key_of(path: str | Path) -> str:
    """How files are matched to catalog rows and table rows: the resolved path."""
    return str(Path(path).resolve())


def _write_table(path: Path, vectors: dict[str, np.ndarray], catalog) -> None:
    paths = sorted(vectors)
    by_path = {key_of(t.path): t for t in catalog} if catalog is not None else {}
    meta = {c: [by_path[p].get(c) if p in by_path else "" for p in paths] for c in META_COLUMNS} if catalog is not None else {}
    if path.suffix == ".npz":
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, path=np.array(paths, dtype=str), vector=np.stack([vectors[p] for p in paths]),
                         **{c: np.array(v, dtype=str) for c, v in meta.items()})
        return
    from .io import atomic_write_csv

    dim = len(next(iter(vectors.values())))
    ecols = [f"e{i}" for i in range(dim)]
    rows = []
    for i, p in enumerate(paths):
        row = {"path": p, **{c: meta[c][i] for c in meta}}
        row.update({c: f"{x:.7g}" for c, x in zip(ecols, vectors[p])})
        rows.append(row)
    atomic_write_csv(path, rows, ["path", *meta.keys(), *ecols])


def embed_to_files(
    *,
    model: EmbeddingModel,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    table: str | Path | None = None,
    catalog=None,
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
        each holds ``vector`` [D], ``duration`` (s), ``source``, ``checkpoint_sha256``
        and, with ``segments``, ``segments`` [S, D] and ``times`` [S, 2] (s)
    table : instead, one ``.npz`` (``path`` [n], ``vector`` [n, D], metadata
        columns) or ``.csv`` (``path``, metadata, ``e0`` .. ``e{D-1}``) for all files
    catalog : Catalog whose rows (matched by resolved path) add ``track_id``,
        ``artist``, ``album``, ``title``, ``genre`` to the table or each ``.npz``
    overwrite : embed again files whose output exists (default: skip them)
    workers : decoding threads

    Returns
    -------
    EmbedReport
        Unusable files are in ``errors`` (each names its file); the job goes on.
    """
    from . import progress

    if (out is None) == (table is None):
        raise ConfigError("give exactly one of an output folder (-o) or a table (--table)")
    if table is not None and Path(table).suffix not in (".npz", ".csv"):
        raise ConfigError(f"{table}: the table must end in .npz or .csv")
    started = time.time()  # temp files older than this were left by a killed run
    mapping = output_paths(inputs, out if out is not None else ".", recursive=recursive)
    report = EmbedReport()
    sha = model.checkpoint_sha() if model.checkpoint is not None else ""
    done_vectors = {} if (table is None or overwrite) else _table_rows(Path(table))
    todo = []
    for src, dst in mapping.items():
        key = key_of(src)
        done = (dst.is_file() if table is None else key in done_vectors) and not overwrite
        (report.already_done if done else todo).append(src)
    if report.already_done:
        log.info("%d file(s) already embedded; skipped (use --overwrite to redo)", len(report.already_done))
    vectors = dict(done_vectors)
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
            vectors[key_of(src)] = res.vector
            continue
        arrays = {"vector": res.vector, "duration": np.float64(res.duration), "source": np.array(str(src)),
                  "checkpoint_sha256": np.array(sha)}
        if segments:
            arrays.update(segments=res.segments, times=res.times)
        track = by_path.get(key_of(src))
        if track is not None:
            arrays.update({c: np.array(track.get(c)) for c in META_COLUMNS})
        dst = mapping[src]
        with atomic_path(dst, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        remove_stale_temps(dst, older_than=started)
        report.outputs.append(dst)
    if table is not None and vectors:
        _write_table(Path(table), vectors, catalog)
        remove_stale_temps(Path(table), older_than=started)
        report.outputs.append(Path(table))
    return report

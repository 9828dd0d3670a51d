"""The ``musicrep embed`` job: embed files and folders into ``.npz`` files or a table.

Outputs mirror the input tree (``OUT/<rel>/<name>.<ext>.npz``), are written
atomically, and are skipped when already there, so a killed job resumes; bad
files are reported by name and the rest is embedded. The model API itself is in
:mod:`musicrep.embed`.

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
import os
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .embed import EmbeddingModel, find_audio
from .errors import AudioError, ConfigError, MusicrepError
from .io import atomic_path, remove_stale_temps
from .locks import folder_lock

log = logging.getLogger(__name__)

#: Catalog columns copied into an embedding table when a catalog is given.
META_COLUMNS: tuple[str, ...] = ("track_id", "artist", "album", "title", "genre")
#: What every output records about the model that made it; the last two decide
#: whether a rerun may keep it.
STAMP_COLUMNS: tuple[str, ...] = ("checkpoint", "checkpoint_sha256", "feature_hash")


class MixedModelsError(MusicrepError):
    """The output already holds vectors of another model (and ``overwrite`` was not given)."""


def model_stamp(model: EmbeddingModel) -> dict[str, str]:
    """``{"checkpoint", "checkpoint_sha256", "feature_hash"}`` of a model ("" sha: built in memory)."""
    has_file = model.checkpoint is not None
    return {"checkpoint": str(model.checkpoint) if has_file else "",
            "checkpoint_sha256": model.checkpoint_sha() if has_file else "",
            "feature_hash": model.feature_hash}


def same_model(stamp: dict[str, str], ours: dict[str, str]) -> bool:
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


def _table_rows(path: Path) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
    """Existing table: source path -> (vector, stamp of the model that made it), for resuming.

    A table from before stamps were written gives empty stamps (another model's, as far as
    a rerun can tell).
    """
    if not path.is_file():
        return {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            stamps = {k: [str(x) for x in z[k]] for k in STAMP_COLUMNS if k in z.files}
            return {str(p): (v, {k: col[i] for k, col in stamps.items()})
                    for i, (p, v) in enumerate(zip(z["path"], z["vector"]))}
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in (rows[0] if rows else {}) if c.startswith("e") and c[1:].isdigit()]
    return {r["path"]: (np.array([float(r[c]) for c in cols], dtype=np.float32),
                        {k: r[k] for k in STAMP_COLUMNS if k in r}) for r in rows}


def key_of(path: str | Path) -> str:
    """How files are matched to catalog rows and table rows: the resolved path.

    A symbolic-link loop cannot be resolved (``Path.resolve`` raises
    ``RuntimeError``); its absolute path stands in, so the file reaches the
    decoder and is reported by name as unreadable, and the job goes on.
    """
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _write_table(path: Path, vectors: dict[str, np.ndarray], stamps: dict[str, dict[str, str]], catalog) -> None:
    paths = sorted(vectors)
    by_path = {key_of(t.path): t for t in catalog} if catalog is not None else {}
    meta = {c: [by_path[p].get(c) if p in by_path else "" for p in paths] for c in META_COLUMNS} if catalog is not None else {}
    meta.update({c: [stamps[p].get(c, "") for p in paths] for c in STAMP_COLUMNS})
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
        each holds ``vector`` [D], ``duration`` (s), ``source``, the model's stamp
        (``checkpoint``, ``checkpoint_sha256``, ``feature_hash``) and, with
        ``segments``, ``segments`` [S, D] and ``times`` [S, 2] (s)
    table : instead, one ``.npz`` (``path`` [n], ``vector`` [n, D], metadata and
        stamp columns [n]) or ``.csv`` (``path``, metadata, stamp, ``e0`` .. ``e{D-1}``)
        for all files
    catalog : Catalog whose rows (matched by resolved path) add ``track_id``,
        ``artist``, ``album``, ``title``, ``genre`` to the table or each ``.npz``
    overwrite : embed again files whose output exists (default: skip those this
        model made, and refuse when outputs of another model are there)
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
    """
    if (out is None) == (table is None):
        raise ConfigError("give exactly one of an output folder (-o) or a table (--table)")
    if table is not None and Path(table).suffix not in (".npz", ".csv"):
        raise ConfigError(f"{table}: the table must end in .npz or .csv")
    with folder_lock(Path(out) if table is None else Path(table)):
        return _embed_locked(model=model, inputs=inputs, out=out, table=table, catalog=catalog, overwrite=overwrite,
                             segments=segments, recursive=recursive, workers=workers)


def _embed_locked(*, model, inputs, out, table, catalog, overwrite, segments, recursive, workers) -> EmbedReport:
    from . import progress

    started = time.time()  # temp files older than this were left by a killed run
    mapping = output_paths(inputs, out if out is not None else ".", recursive=recursive)
    report = EmbedReport()
    ours = model_stamp(model)
    existing = {} if (table is None or overwrite) else _table_rows(Path(table))
    todo, others = [], []
    for src, dst in mapping.items():
        if overwrite:
            todo.append(src)
            continue
        if table is None:
            stamp = _npz_stamp(dst) if dst.is_file() else None
        else:
            stamp = existing[key_of(src)][1] if key_of(src) in existing else None
        if stamp is None:
            todo.append(src)
        elif same_model(stamp, ours):
            report.already_done.append(src)
        else:
            others.append(stamp)
    if table is not None:  # rows of files not in this job's inputs stay, and must be this model's too
        wanted = {key_of(src) for src in mapping}
        others += [stamp for key, (_v, stamp) in existing.items() if key not in wanted and not same_model(stamp, ours)]
    _refuse_other_models(Path(table) if table is not None else Path(out), others, ours)
    if report.already_done:
        log.info("%d file(s) already embedded by this model; skipped (use --overwrite to redo)",
                 len(report.already_done))
    vectors = {key: v for key, (v, _s) in existing.items()}
    stamps = {key: s for key, (_v, s) in existing.items()}
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
            vectors[key_of(src)], stamps[key_of(src)] = res.vector, ours
            continue
        arrays = {"vector": res.vector, "duration": np.float64(res.duration), "source": np.array(str(src)),
                  **{k: np.array(v) for k, v in ours.items()}}
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
        _write_table(Path(table), vectors, stamps, catalog)
        remove_stale_temps(Path(table), older_than=started)
        report.outputs.append(Path(table))
    return report

"""Embedding tables on disk: one row per file (or per segment), four formats.

A table is a matrix of vectors ``[N, D]`` (float32) with scalar columns beside
it (``id``, ``path``, catalog metadata, the stamp of the model that made it,
and for segment tables ``segment``, ``start``, ``end``). The format follows the
file name's ending:

``.npz``
    one array per column ([N], strings or numbers) and ``vector`` [N, D].
``.csv``
    one line per row: the columns, then ``e0`` .. ``e{D-1}`` (``%.9g``: float32 round-trips).
``.npy``
    ``NAME.npy``, the float32 matrix [N, D] alone (``np.load`` and go);
    ``NAME.ids.txt``, one id per line in the same order; ``NAME.json``, the
    other columns (``{"columns": {name: [N values]}, "shape": [N, D]}``),
    written last: a table without it was interrupted while being written.
``.parquet``
    the columns, and ``vector`` as a fixed-size list of D float32; needs the
    optional ``pyarrow`` (``pip install 'musicrep[parquet]'``).

Every file is written atomically (temp file + rename). Readers check what they
read and raise :class:`TableError` naming the file.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, TableError
from ..io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text

TABLE_SUFFIXES: tuple[str, ...] = (".npz", ".csv", ".npy", ".parquet")
#: Columns that hold numbers (the rest are strings), so every format reads back the same types.
INT_COLUMNS: tuple[str, ...] = ("segment",)
FLOAT_COLUMNS: tuple[str, ...] = ("start", "end")
PARQUET_HINT = "pip install 'musicrep[parquet]'"


@dataclasses.dataclass
class Table:
    """Rows of a table.

    Attributes
    ----------
    columns : name -> list of N scalars (str; int for ``segment``; float for ``start``, ``end``)
    vectors : np.ndarray [shape=(N, D), float32]
    """

    columns: dict[str, list]
    vectors: np.ndarray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def check_table_path(path: str | Path) -> Path:
    """``path`` when its ending names a format this machine can write; else a :class:`ConfigError`.

    Checked before any work, so a missing ``pyarrow`` is said at once, not after embedding.
    """
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"{path}: the table must end in {', '.join(TABLE_SUFFIXES)}")
    if path.suffix == ".parquet":
        _pyarrow(path)
    return path


def segments_path(path: str | Path) -> Path:
    """The per-segment table beside a song table: ``vectors.csv`` -> ``vectors.segments.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.segments{path.suffix}")


def table_files(path: str | Path) -> list[Path]:
    """The files a table is made of (one, or three for ``.npy``)."""
    path = Path(path)
    if path.suffix == ".npy":
        return [path, _ids_path(path), _meta_path(path)]
    return [path]


def remove_table(path: str | Path) -> None:
    """Delete a table's files (those present)."""
    for f in table_files(path):
        f.unlink(missing_ok=True)


def _ids_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.ids.txt")


def _meta_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.json")


def _pyarrow(path: Path):
    """pyarrow with its parquet submodule, or a :class:`ConfigError` saying how to install it."""
    try:  # deferred: pyarrow is optional and slow to import; only .parquet tables need it
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule is not imported with the package)
    except ImportError:
        raise ConfigError(f"{path}: writing or reading .parquet needs pyarrow: {PARQUET_HINT}") from None
    return pyarrow


# ------------------------------------------------------------------- writing
def write_table(path: str | Path, *, table: Table) -> list[Path]:
    """Write ``table`` in the format ``path``'s ending names; returns the files written."""
    path = check_table_path(path)
    vectors = np.ascontiguousarray(table.vectors, dtype=np.float32)
    if vectors.ndim != 2 or any(len(v) != len(vectors) for v in table.columns.values()):
        raise TableError(f"{path}: {vectors.shape} vectors do not match columns of "
                         f"{sorted({len(v) for v in table.columns.values()})} rows")
    writer = {".npz": _write_npz, ".csv": _write_csv, ".npy": _write_npy, ".parquet": _write_parquet}[path.suffix]
    writer(path, table.columns, vectors)
    return table_files(path)


def _write_npz(path: Path, columns: dict[str, list], vectors: np.ndarray) -> None:
    arrays = {name: _column_array(name, values) for name, values in columns.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, vector=vectors, **arrays)


def _column_array(name: str, values: list) -> np.ndarray:
    if name in INT_COLUMNS:
        return np.asarray(values, dtype=np.int64)
    if name in FLOAT_COLUMNS:
        return np.asarray(values, dtype=np.float64)
    return np.asarray([str(v) for v in values], dtype=str)


def _write_csv(path: Path, columns: dict[str, list], vectors: np.ndarray) -> None:
    ecols = [f"e{i}" for i in range(vectors.shape[1])]
    names = list(columns)
    rows = []
    for i, vector in enumerate(vectors):
        row = {name: columns[name][i] for name in names}
        row.update(zip(ecols, (f"{x:.9g}" for x in vector.tolist())))
        rows.append(row)
    atomic_write_csv(path, rows=rows, fieldnames=[*names, *ecols])


def _write_npy(path: Path, columns: dict[str, list], vectors: np.ndarray) -> None:
    ids = [str(v) for v in columns.get("id", [])]
    bad = next((i for i in ids if "\n" in i or "\r" in i), None)
    if bad is not None:
        raise TableError(f"{path}: the id {bad!r} holds a line break and cannot be one line of "
                         f"{_ids_path(path).name}; write a .npz, .csv or .parquet table instead")
    # The marker goes first and comes back last: a write killed half way leaves
    # no NAME.json, and the table is then known to be incomplete.
    _meta_path(path).unlink(missing_ok=True)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
    atomic_write_text(_ids_path(path), text="".join(f"{i}\n" for i in ids))
    atomic_write_json(_meta_path(path), obj={"format": "musicrep embedding table", "shape": list(vectors.shape),
                                         "vectors": path.name, "ids": _ids_path(path).name, "columns": columns})


def _write_parquet(path: Path, columns: dict[str, list], vectors: np.ndarray) -> None:
    pa = _pyarrow(path)
    import pyarrow.parquet as pq  # deferred (optional, slow): _pyarrow above checked it is there

    arrays = {name: pa.array(_column_array(name, values).tolist()) for name, values in columns.items()}
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    arrays["vector"] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(pa.table(arrays), str(tmp))


# ------------------------------------------------------------------- reading
def read_table(path: str | Path) -> Table | None:
    """A table written by :func:`write_table`, or None when there is none.

    Raises
    ------
    TableError
        when the table is there but cannot be read (damaged, or an ``.npy``
        table whose ``NAME.json`` is missing: a write was interrupted)
    """
    path = check_table_path(path)
    present = [f for f in table_files(path) if f.exists()]
    if not present:
        return None
    reader = {".npz": _read_npz, ".csv": _read_csv, ".npy": _read_npy, ".parquet": _read_parquet}[path.suffix]
    try:
        table = reader(path)
    except TableError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise TableError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); pass --overwrite to write it "
                         "anew, or choose another table") from None
    if any(len(v) != len(table) for v in table.columns.values()):
        raise TableError(f"{path}: its columns and its {len(table)} vectors disagree in length; pass --overwrite "
                         "to write it anew")
    return table


def _typed(name: str, values) -> list:
    if name in INT_COLUMNS:
        return [int(v) for v in values]
    if name in FLOAT_COLUMNS:
        return [float(v) for v in values]
    return [str(v) for v in values]


def _read_npz(path: Path) -> Table:
    with np.load(path, allow_pickle=False) as z:
        vectors = np.asarray(z["vector"], dtype=np.float32)
        columns = {name: _typed(name, z[name].tolist()) for name in z.files if name != "vector"}
    return Table(columns, vectors.reshape(len(vectors), -1))


def _read_csv(path: Path) -> Table:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        names = list(reader.fieldnames or [])
        rows = list(reader)
    ecols = [c for c in names if c.startswith("e") and c[1:].isdigit()]
    columns = {c: _typed(c, [r[c] for r in rows]) for c in names if c not in ecols}
    vectors = np.array([[float(r[c]) for c in ecols] for r in rows], dtype=np.float32).reshape(len(rows), len(ecols))
    return Table(columns, vectors)


def _read_npy(path: Path) -> Table:
    meta_path = _meta_path(path)
    if not meta_path.is_file() or not path.is_file():
        raise TableError(f"{path}: incomplete table (no {meta_path.name if path.is_file() else path.name}: a "
                         "write was interrupted); pass --overwrite to write it anew")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    vectors = np.load(path, allow_pickle=False)
    if list(vectors.shape) != meta.get("shape"):
        raise TableError(f"{path}: holds {list(vectors.shape)} vectors but {meta_path.name} says "
                         f"{meta.get('shape')}; pass --overwrite to write it anew")
    columns = {name: _typed(name, values) for name, values in meta["columns"].items()}
    return Table(columns, np.asarray(vectors, dtype=np.float32))


def _read_parquet(path: Path) -> Table:
    _pyarrow(path)
    import pyarrow.parquet as pq  # deferred (optional, slow): _pyarrow above checked it is there

    data = pq.read_table(str(path))
    vector = data.column("vector").combine_chunks()
    dim = vector.type.list_size
    vectors = np.asarray(vector.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    columns = {name: _typed(name, data.column(name).to_pylist()) for name in data.column_names if name != "vector"}
    return Table(columns, vectors)

""""More like this" search over song embeddings, by artist, album or track: the index folder and its queries.

An index folder holds one faiss index per concept over one track table. Vectors
are L2-normalised song embeddings, so inner product is the cosine similarity the
models were trained with. Small collections get an exact index; above
``exact_max`` an approximate one whose recall@10 is measured and tuned at build
time, with the exact index kept when the target is not met
(:mod:`musicrep.inference.faiss_index`, which :meth:`SearchIndex.load` sets up again
from the manifest).

Concept-aware search
--------------------
What "similar" means depends on the concept a model was trained on (Lee, Park &
Nam 2019): an artist model puts songs of one artist together, an album model
songs of one album (production, mix), a track model segments of one song (local
timbre and texture). The paper's joint model has no per-concept heads: its
three losses share one encoder and one embedding, so there is nothing inside
it to pick a concept with. An index may therefore hold one *sub-index per
concept*, each built from the song embeddings of the run trained on that
concept::

    musicrep index build --catalog C -o INDEX \\
        --run artist=RUN_A --run album=RUN_B --run track=RUN_C --run joint=RUN_J

``--by artist`` then searches the artist model's space, and so on. All
sub-indexes share one track table (row ``i`` is faiss id ``i`` in each), so a
query by track id works in every space; a query by audio file is embedded with
the run of the concept asked for. Without ``--by`` the joint space is used when
present (it blends the three notions, as the joint loss does), otherwise the
first concept given. A single ``--run RUN`` is named after the concept
recorded in its checkpoint; no ``--run`` at all indexes with the model shipped
inside the package, as "joint".

Queries
-------
``--query`` is an indexed track id, an audio file (embedded with the concept's
model; left out of its own answer when it is indexed), or a fragment of an
indexed path that matches one track only. ``exclude_same="artist"`` (or
``"album"``: same artist *and* album name) drops the hits that share the
query's artist or album, so "more like this" finds other artists; it needs the
query's row in the index.

On disk (``INDEX/``): ``<concept>.faiss`` per concept, ``tracks.csv`` (the
catalog rows in id order), ``skipped.csv`` (tracks that could not be
embedded, with the reason) and ``manifest.json``, written last. Every catalog
id is either in ``tracks.csv`` or named in ``skipped.csv`` with its reason
(two ids sharing one audio file are both indexed); ``n_tracks`` and
``n_skipped`` count ids. After ``musicrep index add`` the manifest names the
files of the newest generation (``tracks.N.csv``, ``<concept>.N.faiss``).
:meth:`SearchIndex.load` checks the manifest against the files (kind,
dimension, track count) before using either, and a query by file checks that
the recorded checkpoint still has its recorded SHA-256.

Writing indexes (:func:`~musicrep.inference.index_build.build_index`,
:func:`~musicrep.inference.index_build.build_from_runs`,
:func:`~musicrep.inference.index_build.add_to_index`) is :mod:`musicrep.inference.index_build`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from ..errors import SearchIndexError
from .discovery import key_of
from .faiss_index import check_kind, normalize, read_faiss, search_wider, set_search_params

if TYPE_CHECKING:
    import faiss

    from .embed import EmbeddingModel

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRACKS = "tracks.csv"
SKIPPED = "skipped.csv"
VERSION = 1
VALID_CONCEPTS = ("artist", "album", "track", "joint")
#: What ``exclude_same`` may name.
VALID_EXCLUDE = ("artist", "album")
#: Candidates an ambiguous path fragment lists.
SHOW_CANDIDATES = 5


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result: the track's row in the index and its cosine similarity."""

    rank: int
    track_id: str
    similarity: float
    row: dict

    @property
    def artist(self) -> str:
        return self.row.get("artist", "")

    @property
    def album(self) -> str:
        return self.row.get("album", "")

    @property
    def title(self) -> str:
        return self.row.get("title", "")


@dataclasses.dataclass(frozen=True)
class Query:
    """What a ``--query`` string named (see :meth:`SearchIndex.resolve`).

    Attributes
    ----------
    text : the string as given
    how : "track id", "audio file" or "path fragment"
    track_id : the indexed track it is, or None (a file that is not indexed)
    path : the audio file to embed, or None (an indexed track's stored vector is used)
    """

    text: str
    how: str
    track_id: str | None
    path: Path | None = None


class SearchIndex:
    """A built index: one faiss sub-index per concept over one track table.

    Load with :meth:`load`; build with :func:`~musicrep.inference.index_build.build_index`
    or :func:`~musicrep.inference.index_build.build_from_runs`.
    """

    def __init__(self, path: Path, manifest: dict, rows: list[dict], indexes: dict[str, faiss.Index]):
        self.path = path
        self.manifest = manifest
        self.rows = rows
        self.track_ids = [r["track_id"] for r in rows]
        self._row_of = {t: i for i, t in enumerate(self.track_ids)}
        self._indexes = indexes
        self._models: dict[str, EmbeddingModel] = {}
        self._by_path: dict[str, str] | None = None

    @property
    def concepts(self) -> list[str]:
        return list(self.manifest.get("order") or self.manifest["concepts"])

    @property
    def default_concept(self) -> str:
        return self.manifest["default_concept"]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"SearchIndex({self.path}, {len(self)} tracks, concepts={self.concepts})"

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        """Open an index folder; raises :class:`SearchIndexError` if it is incomplete."""
        path = Path(path)
        manifest = _read_manifest(path / MANIFEST)
        tracks, rows, concepts = _read_tables(path, manifest=manifest)
        indexes = {concept: _read_sub_index(fpath, meta=meta, n_rows=len(rows), tracks=tracks,
                                            where=f"{path / MANIFEST} (concept {concept!r}, file {fpath.name})")
                   for concept, (meta, fpath) in concepts.items()}
        return cls(path, manifest, rows, indexes)

    def _concept(self, by: str | None) -> str:
        by = by or self.default_concept
        if by not in self._indexes:
            raise SearchIndexError(
                f"{self.path}: no {by!r} sub-index (it has {', '.join(self.concepts)}); "
                f"build with --run {by}=RUN_TRAINED_ON_{by.upper()}"
            )
        return by

    def vector(self, track_id: str, *, by: str | None = None) -> np.ndarray:
        """Stored unit vector [D] of an indexed track in the ``by`` space."""
        if track_id not in self._row_of:
            raise SearchIndexError(f"{self.path}: no track with id {track_id!r}")
        return self._indexes[self._concept(by)].reconstruct(self._row_of[track_id])

    def all_vectors(self, *, by: str | None = None) -> np.ndarray:
        """Every stored unit vector of the ``by`` space, row order. [n, D] float32."""
        index = self._indexes[self._concept(by)]
        return index.reconstruct_n(0, index.ntotal)

    def search(self, queries: np.ndarray, *, k: int = 10, by: str | None = None,
               exclude: Sequence[str | None] | None = None,
               keep: Callable[[dict], bool] | None = None) -> list[list[Hit]]:
        """Nearest tracks by cosine similarity.

        Parameters
        ----------
        queries : np.ndarray [shape=(D,) or (Q, D)], normalised here
        k : neighbours per query
        by : concept sub-index ("artist", "album", "track", "joint"); default see module doc
        exclude : per query, a track id to leave out (the query itself)
        keep : a hit's row -> whether it may be answered; the search reaches
            further until ``k`` hits pass or the index is exhausted

        Returns
        -------
        list (Q) of lists of :class:`Hit`, most similar first
        """
        concept = self._concept(by)
        q = normalize(queries)
        index = self._indexes[concept]
        if q.shape[1] != index.d:
            raise SearchIndexError(f"{self.path}: query has {q.shape[1]} dimensions, the {concept} index {index.d}")
        fetch = min(k + (1 if exclude is not None else 0) + (3 * k if keep is not None else 0), len(self))
        sims, ids = index.search(q, fetch)
        out = []
        for qi in range(len(q)):
            skip = exclude[qi] if exclude is not None else None
            hits = self._hits(sims[qi], ids[qi], k=k, skip=skip, keep=keep)
            reach = fetch
            while keep is not None and len(hits) < k and reach < len(self):  # filtered out too many: look further
                reach = min(len(self), 4 * reach)
                more_sims, more_ids = search_wider(index, queries=q[qi : qi + 1], k=reach, widen=reach / fetch,
                                                    kind=self.manifest["concepts"][concept]["kind"])
                hits = self._hits(more_sims[0], more_ids[0], k=k, skip=skip, keep=keep)
            out.append(hits)
        return out

    def _hits(self, sims, ids, *, k: int, skip: str | None, keep) -> list[Hit]:
        hits = []
        for sim, i in zip(sims, ids):
            if i < 0 or self.track_ids[i] == skip or (keep is not None and not keep(self.rows[i])):
                continue
            hits.append(Hit(rank=len(hits) + 1, track_id=self.track_ids[i], similarity=float(sim), row=self.rows[i]))
            if len(hits) == k:
                break
        return hits

    def search_track(self, track_id: str, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an indexed track (itself excluded)."""
        return self.search(self.vector(track_id, by=by), k=k, by=by, exclude=[track_id])[0]

    def model(self, by: str | None = None) -> EmbeddingModel:
        """The :class:`~musicrep.inference.embed.EmbeddingModel` of a concept, loaded once.

        Raises :class:`SearchIndexError` when the recorded checkpoint is gone or
        no longer has the SHA-256 recorded at build time: its vectors would not
        be comparable with the indexed ones.
        """
        # deferred: torch is slow to import, and only a query by audio file needs a model
        from .embed import load

        concept = self._concept(by)
        if concept in self._models:
            return self._models[concept]
        meta = self.manifest["concepts"][concept]
        ckpt = meta.get("checkpoint")
        if meta.get("shipped"):
            model = load(None)
            was = f"the shipped model {meta['shipped']}"
        elif ckpt:
            # an index built from an unfinished run (said so in its manifest) queries with that run
            model = load(ckpt, allow_unfinished=bool(meta.get("unfinished")))
            was = ckpt
        else:
            raise SearchIndexError(f"{self.path}: the {concept} sub-index records no checkpoint to embed new audio")
        sha = meta.get("checkpoint_sha256")
        if sha and model.checkpoint_sha() != sha:
            raise SearchIndexError(
                f"{self.path}: the {concept} sub-index was built with {was} (sha256 {sha[:12]}), which is now "
                f"{model.checkpoint} with sha256 {model.checkpoint_sha()[:12]}: new vectors would not be comparable "
                "with the indexed ones; rebuild the index (`musicrep index build --overwrite`)")
        self._models[concept] = model
        return model

    def _indexed_path(self, path: str | Path) -> str | None:
        """The id of the indexed track whose audio is ``path`` (resolved), or None."""
        if self._by_path is None:
            self._by_path = {key_of(r["path"]): r["track_id"] for r in self.rows if r.get("path")}
        return self._by_path.get(key_of(path))

    def search_file(self, path: str | Path, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an audio file, embedded with the run of the concept asked for.

        When the file itself is indexed (same resolved path), it is left out.
        """
        vector = self.model(by).embed_file(path).vector
        return self.search(vector, k=k, by=by, exclude=[self._indexed_path(path)])[0]

    def resolve(self, query: str) -> Query:
        """What ``query`` names: an indexed track id, an audio file, or one indexed path containing it.

        Raises :class:`SearchIndexError` when it names none, or when a path
        fragment matches several tracks (the message lists some of them).
        """
        if query in self._row_of:
            return Query(query, "track id", query)
        if Path(query).is_file():
            return Query(query, "audio file", self._indexed_path(query), Path(query))
        matches = self.match_path(query)
        if len(matches) == 1:
            return Query(query, "path fragment", matches[0])
        if matches:
            shown = "; ".join(f"{t} ({self.rows[self._row_of[t]]['path']})" for t in matches[:SHOW_CANDIDATES])
            more = f" and {len(matches) - SHOW_CANDIDATES} more" if len(matches) > SHOW_CANDIDATES else ""
            raise SearchIndexError(f"{query!r} is part of {len(matches)} indexed paths: {shown}{more}; give more "
                                   "of the path, or a track id")
        raise SearchIndexError(f"{query!r} is neither a track id in {self.path}, an audio file, nor part of an "
                               "indexed path")

    def match_path(self, fragment: str) -> list[str]:
        """Ids of the tracks whose path contains ``fragment`` (ignoring case); an exact path wins alone."""
        if not fragment:
            return []
        exact = [r["track_id"] for r in self.rows if r.get("path") == fragment]
        if exact:
            return exact
        needle = fragment.casefold()
        return [r["track_id"] for r in self.rows if needle in (r.get("path") or "").casefold()]

    def query(self, query: str, *, k: int = 10, by: str | None = None,
              exclude_same: str | None = None) -> list[Hit]:
        """Neighbours of what ``query`` names (:meth:`resolve`), itself left out.

        Parameters
        ----------
        query : an indexed track id, an audio file, or a fragment of one indexed path
        k : neighbours
        by : concept sub-index
        exclude_same : "artist" or "album": leave out hits of the query's artist
            (or album: same artist and album name); needs the query's row in the index
        """
        q = self.resolve(query)
        keep = self._not_same(q, exclude_same) if exclude_same else None
        if q.path is not None:
            vector = self.model(by).embed_file(q.path).vector
        else:
            vector = self.vector(q.track_id, by=by)
        return self.search(vector, k=k, by=by, exclude=[q.track_id], keep=keep)[0]

    def _not_same(self, q: Query, what: str) -> Callable[[dict], bool]:
        if what not in VALID_EXCLUDE:
            raise SearchIndexError(f"exclude_same={what!r} is not one of {VALID_EXCLUDE}")
        if q.track_id is None:
            raise SearchIndexError(
                f"--exclude-same {what}: {q.text} is not an indexed track (no row of {self.path} has its path), so "
                f"its {what} is unknown; query by an indexed track id or path, add the file with `musicrep index "
                "add`, or leave out --exclude-same")
        row = self.rows[self._row_of[q.track_id]]
        if not row.get(what):
            raise SearchIndexError(f"--exclude-same {what}: track {q.track_id!r} has no {what} in {self.path}; "
                                   f"give the catalog an {what} column, or leave out --exclude-same")
        mine = _same_key(row, what)
        return lambda r: _same_key(r, what) != mine


def _read_manifest(mpath: Path) -> dict:
    """The manifest of an index folder, of this :data:`VERSION`; else :class:`SearchIndexError`."""
    if not mpath.is_file():
        raise SearchIndexError(f"{mpath.parent}: not a finished index (no {MANIFEST}); run `musicrep index build` again")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SearchIndexError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
        version = manifest.get("version") if isinstance(manifest, dict) else None
        raise SearchIndexError(f"{mpath}: index version {version} is not {VERSION}; rebuild it")
    return manifest


def _read_tables(path: Path, *, manifest: dict) -> tuple[str, list[dict], dict[str, tuple[dict, Path]]]:
    """``(tracks file name, its rows, concept -> (manifest entry, faiss file))``, checked against the manifest."""
    try:
        tracks = _own_file(manifest.get("tracks", TRACKS))
        with open(path / tracks, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and "track_id" not in rows[0]:
            raise ValueError("no track_id column")
        concepts = {c: (meta, path / _own_file(meta["file"])) for c, meta in manifest["concepts"].items()}
        if manifest.get("default_concept") not in concepts:
            raise KeyError("default_concept")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # also UnicodeDecodeError
        raise SearchIndexError(f"{path}: damaged index ({type(exc).__name__}: {exc}); "
                               "run `musicrep index build --overwrite` again") from None
    if manifest.get("n_tracks", len(rows)) != len(rows):
        raise SearchIndexError(f"{path / MANIFEST}: n_tracks is {manifest.get('n_tracks')!r} but {tracks} has "
                               f"{len(rows)} rows; the index is damaged: rebuild it with --overwrite")
    return tracks, rows, concepts


def _read_sub_index(fpath: Path, *, meta: Mapping, n_rows: int, tracks: str, where: str) -> faiss.Index:
    """One concept's faiss index, checked against the track table and its manifest entry, knob set."""
    index = read_faiss(fpath)
    if index.ntotal != n_rows:
        raise SearchIndexError(f"{fpath}: holds {index.ntotal} vectors but {tracks} has {n_rows} rows; rebuild")
    check_kind(index, meta=meta, where=where)
    set_search_params(index, kind=meta["kind"], params=meta["params"])
    return index


def _same_key(row: Mapping, what: str) -> tuple[str, ...]:
    # Two albums of one name by two artists ("Greatest Hits") are not the same album.
    return (row.get("artist", ""),) if what == "artist" else (row.get("artist", ""), row.get("album", ""))


def _own_file(name) -> str:
    """A file name from the manifest, refused when it would lead out of the index folder."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"file name {name!r} is not a plain name inside the index folder")
    return name

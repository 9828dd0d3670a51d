"""t-SNE maps of song embeddings: the 2-D coordinates, labels and split roles a report draws.

Computing a map is evaluation (a model embeds a store's songs, t-SNE places
them); :mod:`musicrep.report.figures` only plots an :class:`EmbeddingMap`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.splits import load_splits
from ..data.store import FeatureStore, open_store
from ..errors import InvalidArgumentError, SplitError
from ..inference.embed import EmbeddingModel
from .runs import load_run_model
from .song_vectors import song_embeddings

log = logging.getLogger(__name__)

#: What a song was to the run a map draws: trained on, held out (valid/test), or neither.
TRAIN, HELD_OUT, UNUSED = "train", "held out", ""


@dataclasses.dataclass
class EmbeddingMap:
    """A 2-D map of song embeddings.

    Attributes
    ----------
    name : names the model and the store
    xy : np.ndarray [shape=(n, 2), dtype=float]
    labels : column -> list[str] [n]
    roles : list[str] [n] of :data:`TRAIN`, :data:`HELD_OUT` or :data:`UNUSED`
        (the run's split files); None when the run's split does not cover these songs
    """

    name: str
    xy: np.ndarray
    labels: dict[str, list[str]]
    roles: list[str] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "xy": np.asarray(self.xy).tolist(), "labels": self.labels, "roles": self.roles}

    @classmethod
    def from_dict(cls, data: Mapping) -> "EmbeddingMap":
        roles = data.get("roles")
        return cls(name=data["name"], xy=np.asarray(data["xy"], dtype=np.float64),
                   labels={k: list(v) for k, v in data["labels"].items()},
                   roles=list(roles) if roles is not None else None)


def embedding_map(
    vectors: np.ndarray, *, labels: Mapping[str, Sequence[str]], name: str, max_points: int = 1500, seed: int = 0,
    roles: Sequence[str] | None = None,
) -> EmbeddingMap:
    """t-SNE (scikit-learn) of song embeddings [n, D] to 2-D, on at most ``max_points`` songs.

    ``roles`` (list[str] [n], see :func:`split_roles`) marks training and
    held-out songs in the map's figure.
    """
    # deferred: scikit-learn is slow to import and only the maps need t-SNE
    from sklearn.manifold import TSNE

    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 3:
        raise InvalidArgumentError(f"an embedding map needs at least 3 songs, got {n}")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(n)[:max_points])
    x = vectors[keep]
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return EmbeddingMap(name=name, xy=xy, labels={k: [str(v[i]) for i in keep] for k, v in labels.items()},
                        roles=[roles[i] for i in keep] if roles is not None else None)


def split_roles(run: str | Path, *, concept: str, track_ids: Sequence[str]) -> list[str] | None:
    """What each song was to ``run``, from its split files (``RUN/split/*.csv``).

    Parameters
    ----------
    run : a run folder
    concept : the run's concept (``joint`` trains on every concept's split)
    track_ids : the songs of a map

    Returns
    -------
    list[str] [len(track_ids)] or None
        :data:`HELD_OUT` for a valid or test song of any concept (the splits
        never train on a song another concept holds out), :data:`TRAIN` for a
        training song of the run's concept(s), else :data:`UNUSED`. None when
        the run has no split files or none of the songs is in them (another
        store's songs).
    """
    try:
        splits = load_splits(Path(run) / "split")
    except (SplitError, OSError) as exc:
        log.info("%s: no split files (%s); the maps do not mark held-out songs", run, exc)
        return None
    held_out = {tid for sp in splits.values() for tid, _, part in sp.rows if part != "train"}
    trained_on = [sp for c, sp in splits.items() if concept == "joint" or c == concept]
    trained = {tid for sp in trained_on for tid, _, part in sp.rows if part == "train"}
    roles = [HELD_OUT if t in held_out else TRAIN if t in trained else UNUSED for t in track_ids]
    return roles if any(roles) else None


def _map_columns(store: FeatureStore) -> dict[str, list]:
    """The store's artist and genre columns that have two or more values (what a map can colour by)."""
    cols = {c: [t.get(c) for t in store.catalog] for c in ("artist", "genre")}
    return {c: v for c, v in cols.items() if any(v) and len(set(v)) > 1}


def embedding_maps(runs: Sequence[str | Path], *, stores: Sequence[FeatureStore | str | Path], max_points: int = 1500,
                   seed: int = 0, allow_unfinished: bool = False) -> list[EmbeddingMap]:
    """t-SNE maps of the first joint run (else the first run) on each store, by artist and by genre.

    The run's split files mark its training and held-out songs (:func:`split_roles`).
    Every checkpoint is read through :func:`musicrep.evaluation.runs.load_run_model`.

    Parameters
    ----------
    runs : run folders
    stores : FeatureStores or paths; a store without an artist or genre column with
        two or more values gets no map
    allow_unfinished : draw runs whose training did not finish (no ``DONE``)
    """
    runs = [Path(r) for r in runs]
    concepts = {r: str(getattr(load_run_model(r, allow_unfinished=allow_unfinished)[1], "concept", ""))
                for r in runs}
    chosen = next((r for r in runs if concepts[r] == "joint"), runs[0])
    encoder, info = load_run_model(chosen, allow_unfinished=allow_unfinished)
    model = EmbeddingModel.from_checkpoint(encoder, info)
    maps = []
    for s in (open_store(x) for x in stores):
        cols = _map_columns(s)
        if not cols:
            continue
        vec = song_embeddings(model, store=s, track_ids=s.track_ids)
        roles = split_roles(chosen, concept=concepts[chosen], track_ids=s.track_ids)
        maps.append(embedding_map(vec, labels=cols, name=f"{chosen.name} on {Path(s.path).name}",
                                  max_points=max_points, seed=seed, roles=roles))
    return maps

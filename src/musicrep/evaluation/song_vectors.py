"""Song embeddings as the evaluation tests consume them: one vector per song of a store.

The transfer, tagging and retrieval tests (and the report's maps) all read a
model's song vectors here, so a run's vectors are embedded, cached and ordered
one way for all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.store import FeatureStore
from ..inference.embed import EmbeddingModel
from ..inference.store_embeddings import embed_store
from ..training.model import Encoder


def song_embeddings(model: EmbeddingModel | Encoder | str | Path, *, store: FeatureStore, track_ids: Sequence[str],
                    cache: bool = True, allow_unfinished: bool = False) -> np.ndarray:
    """Song embeddings float32 [n, D], in the order of ``track_ids``.

    Computed by :func:`musicrep.inference.store_embeddings.embed_store` (mean of the
    non-overlapping segments' embeddings); a run folder's vectors are cached under
    the run, an in-memory Encoder's are not.

    Parameters
    ----------
    model : a run folder, an :class:`~musicrep.inference.embed.EmbeddingModel`, or an
        in-memory :class:`~musicrep.training.model.Encoder` (wrapped with the store's
        feature settings, never cached)
    store : the store holding ``track_ids``
    track_ids : the songs, in the row order wanted
    cache : use (and make) the run's whole-store cache
    allow_unfinished : embed with a run whose training did not finish (no ``DONE``)
    """
    if not isinstance(model, (str, Path, EmbeddingModel)):
        model = EmbeddingModel(model, feature_config=store.feature_config)  # in memory: never cached
    ids, vectors = embed_store(model, store=store, track_ids=list(track_ids), cache=cache,
                               allow_unfinished=allow_unfinished)
    pos = {t: i for i, t in enumerate(ids)}
    return np.asarray(vectors, dtype=np.float32)[[pos[t] for t in track_ids]]

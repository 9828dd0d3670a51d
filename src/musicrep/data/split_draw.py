"""Drawing one concept's split: which groups (artists, albums, values) qualify and which songs go to which part.

The rule every split of :mod:`musicrep.data.splits` shares: groups with enough
songs are drawn at random, and each group's songs fill the train, valid and
test slots without a song crossing between training and held-out from the
part another concept's split gave it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..concepts import concept_label
from ..errors import SplitError
from .catalog import Track

log = logging.getLogger(__name__)


def _fits(ids: Sequence[str], need: dict[str, int], prior: Mapping[str, str]) -> bool:
    """Whether a group's songs can fill ``need`` (part -> count) without a song crossing
    between training and held-out (valid/test) from its ``prior`` part."""
    n_train = sum(1 for t in ids if prior.get(t) == "train")
    n_held = sum(1 for t in ids if prior.get(t) in ("valid", "test"))
    free = sum(1 for t in ids if t not in prior)
    held_need = need["valid"] + need["test"]
    return max(0, need["train"] - n_train) + max(0, held_need - n_held) <= free


def _pick(ids: list[str], need: dict[str, int], prior: Mapping[str, str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """``(track_id, part)`` for one group that :func:`_fits`.

    Training slots take the songs that train elsewhere, then free songs; valid and
    test slots take songs held out elsewhere (the same part first), then free songs.
    """
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    pool = {part: [t for t in shuffled if prior.get(t) == part] for part in need}
    free = [t for t in shuffled if t not in prior]
    chosen = {part: pool[part][:n] for part, n in need.items()}
    spare_held = pool["valid"][need["valid"]:] + pool["test"][need["test"]:]
    out: list[tuple[str, str]] = []
    for part, n in need.items():
        if part != "train":
            extra, spare_held = spare_held[: n - len(chosen[part])], spare_held[n - len(chosen[part]) :]
            chosen[part] += extra
        take, free = free[: n - len(chosen[part])], free[n - len(chosen[part]) :]
        out += [(t, part) for t in chosen[part] + take]
    return out


def draw_rows(
    *,
    groups: dict[str, list[str]],
    n_groups: int | None,
    songs_per_group: int,
    n_valid: int,
    n_test: int,
    seed: int,
    concept: str,
    what: str,
    total_candidates: int,
    prior: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str, str], ...]:
    """``(track_id, group name, part)`` rows of one concept's split: ``n_groups`` groups of ``songs_per_group`` songs.

    Groups (artists, albums, column values) with enough songs that :func:`_fits`
    ``prior`` qualify; ``n_groups`` of them (all when None) are drawn from
    ``np.random.default_rng(seed)``, and each gives ``n_valid`` valid, ``n_test``
    test and the rest training songs (:func:`_pick`). ``what`` names a group in
    messages; ``prior`` (track id -> part) holds the parts other concepts gave.
    Raises SplitError when the counts cannot be met.
    """
    n_train = songs_per_group - n_valid - n_test
    if n_train < 1 or n_valid < 1 or n_test < 1:
        raise SplitError(
            f"{concept} split: {songs_per_group} songs per {what} cannot give {n_valid} valid and "
            f"{n_test} test songs and at least one training song; raise songs_per_{what} or lower the others"
        )
    prior = prior or {}
    need = {"train": n_train, "valid": n_valid, "test": n_test}
    qualifying = sorted(name for name, ids in groups.items() if len(ids) >= songs_per_group and _fits(ids, need, prior))
    wanted = len(qualifying) if n_groups is None else n_groups
    if wanted < 2 or len(qualifying) < wanted:
        kept = " (keeping every song's part in the other concepts' splits)" if prior else ""
        raise SplitError(
            f"{concept} split needs {max(wanted, 2)} {what}s with >= {songs_per_group} songs each{kept}, but only "
            f"{len(qualifying)} of {total_candidates} {what}s in the collection qualify; lower n_{what}s "
            f"or songs_per_{what}, or add music"
        )
    rng = np.random.default_rng(seed)
    chosen = [qualifying[i] for i in rng.permutation(len(qualifying))[:wanted]]
    rows: list[tuple[str, str, str]] = []
    for name in sorted(chosen):
        rows.extend((tid, name, part) for tid, part in _pick(sorted(groups[name]), need, prior, rng))
    log.info("%s split: %d %ss x %d songs (%d/%d/%d)", concept, wanted, what, songs_per_group, n_train, n_valid, n_test)
    return tuple(rows)


def groups_by(tracks: Iterable[Track], *, concept: str) -> dict[str, list[str]]:
    """Group name (the track's ``concept`` label, e.g. its artist) -> track ids; tracks without one are left out."""
    out: dict[str, list[str]] = defaultdict(list)
    for t in tracks:
        key = concept_label(t, concept=concept)
        if key:
            out[key].append(t.track_id)
    return dict(out)

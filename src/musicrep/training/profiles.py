"""Named training settings, found by name: ``paper``, ``cpu``, ``small`` and ``auto``.

``TrainConfig``'s defaults are the paper's (5,000 artists x 20 songs, width 256,
100 x 500 steps on a GPU): on a laptop or a 50-song library they either stop ("needs 2
artists with >= 20 songs") or plan days of training. The profiles are YAML files in
``musicrep/configs/`` (``musicrep config show --profile P`` prints one); ``auto`` reads
the catalog and picks the split sizes, negatives, width and steps that the
collection can give, and says why.

Order of precedence everywhere: profile, then ``--config FILE``, then ``--set``.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from ..config import load_config
from ..data.splits import make_splits
from ..errors import ConfigError, SplitError

#: Profiles stored as YAML files beside this module.
FILE_PROFILES: tuple[str, ...] = ("paper", "cpu", "small")
PROFILES: tuple[str, ...] = FILE_PROFILES + ("auto",)


def profile_file(name: str) -> Path:
    """The YAML file of a named profile (``paper``, ``cpu``, ``small``)."""
    if name not in FILE_PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return Path(str(resources.files("musicrep") / "configs" / f"{name}.yaml"))


def profile_settings(name: str) -> dict:
    """The settings a file profile sets (``{}`` for ``paper``: the defaults are the paper's)."""
    return yaml.safe_load(profile_file(name).read_text(encoding="utf-8")) or {}


def resolve_config_file(value: str | Path) -> Path:
    """``--config`` accepts a YAML path or a profile name (``--config cpu``)."""
    path = Path(value)
    if path.is_file() or str(value) not in FILE_PROFILES:
        return path  # a missing file is reported by load_config, naming it
    return profile_file(str(value))


def _songs_per_group(counts: Counter, *, cap: int) -> tuple[int, int]:
    """(songs per group, groups) using the most songs with >= 2 groups; (0, 0) if none.

    At least 4 songs per group: 2 to train (an anchor and its positive), 1 valid, 1 test.
    """
    best = (0, 0)
    for songs in range(4, cap + 1):
        groups = sum(1 for c in counts.values() if c >= songs)
        if groups >= 2 and songs * groups >= best[0] * best[1]:
            best = (songs, groups)
    return best


def auto_settings(catalog: Sequence, *, concepts: Iterable[str] = ("artist", "album"),
                  seed: int = 0) -> tuple[dict, list[str]]:
    """Settings that fit a catalog, and one line per choice saying why.

    Split sizes: per concept, the songs per group that use the most songs with at least
    2 groups (capped at the paper's 20 per artist, 10 per album), a tenth of them (at
    least 1) held out for valid and for test as the paper's 2 of 20 and 1 of 10.
    Negatives: the paper's 4, or fewer when the splits as drawn (held-out songs are
    held out for every concept, so fewer albums may fit than have the songs) cannot
    give that many distinct validation negatives.

    Parameters
    ----------
    catalog : the tracks (:class:`~musicrep.data.catalog.Track`) the model will train on
    concepts : the concepts whose split sizes to choose (the track split follows
        the artist split)
    seed : the split seed the run will use

    Returns
    -------
    settings : TrainConfig keys -> values (apply on top of the ``cpu`` profile)
    why : human-readable reasons, one per decision
    """
    settings = dict(profile_settings("cpu"))
    sizes, chosen, qualifying, why = _split_sizes(catalog, concepts=concepts)
    settings.update(sizes)
    negatives, used, reasons = _negatives_and_use(catalog, settings=settings, chosen=chosen, qualifying=qualifying,
                                                  seed=seed)
    why += reasons
    settings["negatives"] = max(1, negatives)
    why.append(f"negatives: {settings['negatives']} (the paper's 4, or as many distinct validation songs of other "
               f"{'/'.join(c + 's' for c in chosen) or 'groups'} as the splits hold)")
    if used and used < 300:
        settings.update({"width": 64, "epochs": 10, "steps_per_epoch": 50, "valid_batches": 4, "patience": 4})
        why.append(f"width 64, 10 x 50 steps: a small collection ({used} songs in a split) trains in minutes "
                   "on a CPU and a wide model would only memorise it")
    else:
        why.append(f"width {settings['width']}, {settings['epochs']} x {settings['steps_per_epoch']} steps: "
                   "the cpu profile")
    return settings, why


def _split_sizes(catalog: Sequence, *, concepts: Iterable[str],
                 ) -> tuple[dict, dict[str, int], dict[str, int], list[str]]:
    """(split-size settings, concept -> songs held out per group, concept -> qualifying groups, why).

    A concept without 2 groups of 4 songs gets no settings, only a line in ``why``.
    """
    sizes: dict = {}
    why: list[str] = []
    chosen: dict[str, int] = {}
    qualifying: dict[str, int] = {}
    for concept, cap in (("artist", 20), ("album", 10)):
        if concept not in concepts:
            continue
        counts = Counter(getattr(t, concept) for t in catalog if getattr(t, concept))
        songs, groups = _songs_per_group(counts, cap=cap)
        if not groups:
            why.append(f"{concept}: fewer than 2 {concept}s have 4 songs, so no {concept} split is possible "
                       f"({len(counts)} {concept}s); train another concept or add music")
            continue
        held = max(1, round(songs / 10))
        sizes.update({f"songs_per_{concept}": songs, f"{concept}_valid": held, f"{concept}_test": held,
                      f"n_{concept}s": None})
        chosen[concept] = held
        qualifying[concept] = groups
    return sizes, chosen, qualifying, why


def _negatives_and_use(catalog: Sequence, *, settings: dict, chosen: dict[str, int], qualifying: dict[str, int],
                       seed: int) -> tuple[int, int, list[str]]:
    """(negatives, songs in the largest split, why): the splits drawn at the chosen sizes.

    Negatives: the paper's 4, or as many distinct validation songs of other groups
    as each split holds.
    """
    negatives = 4
    used = 0
    why: list[str] = []
    if not chosen:
        return negatives, used, why
    keys = ("songs_per_artist", "artist_valid", "artist_test", "songs_per_album", "album_valid", "album_test")
    try:
        splits = make_splits(catalog=catalog, concepts=tuple(chosen), seed=seed, **{k: settings[k] for k in keys})
    except SplitError as exc:
        why.append(f"the splits cannot be drawn at these sizes ({exc})")
        splits = {}
    for concept, held in chosen.items():
        if concept not in splits:
            continue
        split = splits[concept]
        groups, n = split.n_labels, len(split.rows)
        used = max(used, n)
        negatives = min(negatives, (groups - 1) * held)  # distinct validation negatives of other groups
        songs = settings[f"songs_per_{concept}"]
        fit = "" if groups == qualifying[concept] else (
            f" ({qualifying[concept]} have the songs; the others' songs are held out by another concept)")
        why.append(f"{concept}: {groups} {concept}s x {songs} songs ({songs - 2 * held}/{held}/{held}){fit}: the "
                   f"size that uses the most songs with >= 2 {concept}s (the paper's: "
                   f"{'20, 16/2/2' if concept == 'artist' else '10, 8/1/1'})")
    return negatives, used, why


def train_config(
    *,
    profile: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    catalog: Sequence | None = None,
):
    """The effective :class:`~musicrep.training.settings.TrainConfig`: profile, then file, then overrides.

    Returns ``(config, why)``; ``why`` explains ``auto``'s choices (empty otherwise).
    ``profile="auto"`` needs the ``catalog`` the model will train on.
    """
    # deferred: TrainConfig's module imports torch, and the CLI imports this module at start for PROFILES
    from .settings import TrainConfig

    why: list[str] = []
    base = None
    if profile is not None:
        if profile == "auto":
            if catalog is None:
                raise ConfigError("profile 'auto' reads the catalog: give the store (--store STORE)")
            concept = next((o.split("=", 1)[1] for o in overrides if o.startswith("concept=")), "artist")
            seed = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("seed=")), 0)
            settings, why = auto_settings(catalog, concepts=("artist", "album") if concept == "joint" else
                                          ("album",) if concept == "album" else ("artist",), seed=seed)
        else:
            settings = profile_settings(profile)
        base = load_config(TrainConfig, path=None, overrides=[f"{k}={json.dumps(v)}" for k, v in settings.items()])
    path = resolve_config_file(config_file) if config_file is not None else None
    return load_config(TrainConfig, path=path, overrides=list(overrides), base=base), why

"""Planning a sweep: what it varies, each point's training settings and its folder.

Everything here runs before anything trains, so a bad value (out of range, or two
values that would share a folder) stops the sweep at once; the sweep folder's
``sweep.json`` records the plan, and a rerun with other fixed settings is refused.
:mod:`musicrep.evaluation.sweep` runs the points.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ..config import load_config, to_dict
from ..errors import ConfigError
from ..io import atomic_write_json
from ..training.settings import TrainConfig

#: named sweep kinds (Tables 3 and 4, and the number of games) -> the TrainConfig field they vary, tried in order
KIND_FIELDS: dict[str, tuple[str, ...]] = {"negatives": ("negatives",), "artists": ("n_artists",),
                                           "games": ("n_games",)}
KINDS: tuple[str, ...] = tuple(KIND_FIELDS)
MARGIN_PREFIX = "margin_"
#: settings that change the validation task itself (the chance level or the
#: validation songs): a sweep over one of them selects nothing, its validation
#: accuracies are not on one scale
TASK_SETTINGS: frozenset[str] = frozenset({
    "negatives", "distinct_negatives", "in_batch_negatives", "loss", "temperature", "concept", "seed", "n_games", "game_column", "n_artists",
    "songs_per_artist", "artist_valid",
    "artist_test", "n_albums", "songs_per_album", "album_valid", "album_test",
})


def value_order(value: Any) -> tuple:
    """Sort key for swept values of any type: None, then numbers by size, then text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (bool, int, float)):
        return (1, float(value), "")
    if isinstance(value, str):
        return (2, 0.0, value)
    return (3, 0.0, json.dumps(value, sort_keys=True))


def format_value(value: Any) -> str:
    """How a value is written in tables, messages and ``--set`` overrides (``0.4``, ``true``, ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float: 0.4, 1e-05
    if isinstance(value, str):
        return value
    return json.dumps(value)


def point_name(kind: str, *, value: Any) -> str:
    """The point's folder name, ``{kind}-{value}``, with characters outside ``[A-Za-z0-9._+-]`` as ``_``."""
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9._+-]", "_", format_value(value))


def sweep_field(kind: str, *, config: TrainConfig) -> str:
    """The TrainConfig field a sweep of ``kind`` changes (a legacy kind or a field name)."""
    names = [f.name for f in dataclasses.fields(config)]
    if kind in KIND_FIELDS:
        for name in KIND_FIELDS[kind]:
            if name in names:
                return name
        raise ConfigError(f"{type(config).__name__} has no setting for the number of {kind} "
                          f"(looked for {KIND_FIELDS[kind]})")
    if kind in names:
        return kind
    raise ConfigError(f"cannot sweep {kind!r}: it is neither a legacy kind ({', '.join(KINDS)}) nor a training "
                      f"setting; training settings: {', '.join(names)}")


def sweep_concept(kind: str, *, base: TrainConfig, concept: str | None = None) -> str | None:
    """The concept a sweep trains: ``concept`` if given, else joint (legacy kinds),
    ``<c>`` (a ``margin_<c>`` sweep) or the base config's."""
    if kind == "concept":
        return None  # each point's value is its concept
    if concept is not None:
        return concept
    if kind in KIND_FIELDS:
        return "joint"
    if kind.startswith(MARGIN_PREFIX):
        return kind[len(MARGIN_PREFIX):]
    return getattr(base, "concept", None)


def point_config(kind: str, *, value: Any, base: TrainConfig, concept: str | None = None) -> TrainConfig:
    """``base`` with the swept setting set to ``value`` (parsed and range-checked like
    ``--set``), training the concept :func:`sweep_concept` names.

    (With ``n_albums`` unset, training uses twice as many albums as artists, as
    the paper's album split does.)
    """
    field = sweep_field(kind, config=base)
    overrides = []
    train_concept = sweep_concept(kind, base=base, concept=concept)
    if train_concept is not None and "concept" in {f.name for f in dataclasses.fields(base)}:
        overrides.append(f"concept={train_concept}")
    overrides.append(f"{field}={value if isinstance(value, str) else json.dumps(value)}")  # the field wins over concept
    config = load_config(type(base), path=None, overrides=overrides, base=base)
    if field.startswith(MARGIN_PREFIX) and hasattr(config, "concepts") \
            and field[len(MARGIN_PREFIX):] not in config.concepts:
        raise ConfigError(f"a {field} sweep changes nothing in a {config.concept} model; "
                          f"train concept={field[len(MARGIN_PREFIX):]} or concept=joint")
    return config


def explicit_settings(path: str | Path | None, *, overrides: Iterable[str]) -> set[str]:
    """Top-level setting names a YAML file and ``key=value`` overrides set (e.g. to tell a
    ``--set concept=...`` from the default concept)."""
    names = {item.split("=", 1)[0].strip().split(".")[0] for item in overrides if "=" in item}
    if path is not None and Path(path).is_file():
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        names |= set(loaded) if isinstance(loaded, dict) else set()
    return names


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What a sweep trains: the field it changes, the concept, and ``points``:
    ``{folder name: (value as JSON holds it, TrainConfig)}`` in the order of the values given."""

    kind: str
    field: str
    concept: str | None
    points: dict[str, tuple[Any, TrainConfig]]

    @property
    def values(self) -> list[Any]:
        """The points' values, in increasing order (as ``sweep.json`` lists them)."""
        return sorted((v for v, _ in self.points.values()), key=value_order)


def plan_sweep(kind: str, *, values: Sequence[Any], base: TrainConfig, concept: str | None = None) -> SweepPlan:
    """Every point's settings, all parsed and checked before anything trains.

    Raises
    ------
    ConfigError
        when a value is out of range or two values would share a folder.
    """
    field = sweep_field(kind, config=base)
    points: dict[str, tuple[Any, TrainConfig]] = {}
    for raw in values:
        config = point_config(kind, value=raw, base=base, concept=concept)
        value = to_dict(config)[field]  # the parsed value, as JSON holds it
        name = point_name(kind, value=value)
        if name in points and points[name][0] != value:
            raise ConfigError(f"{kind} values {format_value(points[name][0])!r} and {format_value(value)!r} "
                              f"would share the folder {name}; rename one")
        points[name] = (value, config)
    return SweepPlan(kind=kind, field=field, concept=sweep_concept(kind, base=base, concept=concept), points=points)


def write_manifest(out: Path, *, manifest: dict) -> None:
    """Write ``out/sweep.json``; an existing one must have the same fixed settings (its values are merged)."""
    path = out / "sweep.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("kind") in KIND_FIELDS:
            old.setdefault("concept", "joint")  # sweeps written before the concept was recorded
        if "transfer_stores" not in old:  # sweeps written with one transfer store
            store = old.get("transfer_store")
            old["transfer_stores"] = {Path(store).name: store} if store else {}
        fixed = {k: v for k, v in manifest.items() if k != "values"}
        old_fixed = {k: v for k, v in old.items() if k != "values"}
        if fixed != old_fixed:
            diff = sorted(k for k in set(fixed) | set(old_fixed) if fixed.get(k) != old_fixed.get(k))
            raise ConfigError(
                f"{out} holds a sweep with other settings ({', '.join(diff)} differ); "
                "use another output folder to keep both"
            )
        values = {json.dumps(v): v for v in old.get("values", []) + manifest["values"]}
        manifest = {**manifest, "values": sorted(values.values(), key=value_order)}
    atomic_write_json(path, obj=manifest)

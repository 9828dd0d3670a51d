"""Typed settings: frozen dataclasses loaded from YAML with ``key=value`` overrides.

Every setting class is a frozen dataclass. :func:`load_config` builds one from an
optional YAML file and a list of ``--set key=value`` strings (dotted keys reach
nested dataclasses). Unknown keys, wrong types and values outside a field's
declared range are rejected with the key's name.

A field declares its range with :func:`setting` (its ``metadata``)::

    lr: float = setting(0.1, min=0.0, min_exclusive=True)
    optimizer: str = setting("sgd", choices=("sgd", "adam"))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import yaml

from .errors import ConfigError
from .io import atomic_write_text

T = TypeVar("T")


def setting(default: Any, **meta: Any) -> Any:
    """A settings-dataclass field whose ``metadata`` (``min``, ``max``, ``min_exclusive``, ``choices``) :func:`load_config` checks."""
    return dataclasses.field(default=default, metadata=meta)


#: the paper's segment: 129 frames, about 3 s at 22,050 Hz and hop 512 (a store records its own)
SEGMENT_FRAMES = 129


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The log-mel front end of the paper (Lee, Park & Nam 2019, section 3)."""

    sample_rate: int = setting(22050, min=1, max=384000)
    n_fft: int = setting(1024, min=2, max=65536)
    hop_length: int = setting(512, min=1, max=65536)
    n_mels: int = setting(128, min=1, max=1024)
    fmin: float = setting(0.0, min=0.0)
    # None means sample_rate / 2
    fmax: float | None = setting(None, min=0.0, min_exclusive=True)
    # compression log10(1 + log_scale * mel)
    log_scale: float = setting(10.0, min=0.0, min_exclusive=True)
    # about 3 s at 22,050 Hz / hop 512
    segment_frames: int = setting(SEGMENT_FRAMES, min=1, max=100000)

    def hash(self) -> str:
        """Stable short hash of the settings that change the stored features."""
        return config_hash(self)


def _check_range(key: str, value: Any, meta: dict) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}={value!r} is not one of {list(meta['choices'])}")
    if value is None or isinstance(value, (str, bool)):
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
        op = ">" if meta.get("min_exclusive") else ">="
        raise ConfigError(f"{key}={value!r} is out of range: it must be {op} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}={value!r} is out of range: it must be <= {hi}")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(key, value, args)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return _from_dict(tp, value, prefix=f"{key}.")
    if tp is dict or origin is dict:
        # A free-form group (e.g. settings handed on to another dataclass, which
        # validates them itself).
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of settings, got {value!r}")
        return dict(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        inner = args[0] if args else str
        return tuple(_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value))
    if tp in _SCALARS:
        return _SCALARS[tp](key, value)
    raise ConfigError(f"{key}: unsupported setting type {tp!r}")


def _coerce_union(key: str, value: Any, args: tuple) -> Any:
    """``X | None`` (or another union): None for none/null, else the first member type that takes ``value``."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in args:
            return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(key, value, arg)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if errors else f"{key}: cannot be None")


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be an integer, got {value!r}")


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a number, got {value!r}")


def _to_str(key: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return str(value)


#: Field type -> its converter, for the scalar settings.
_SCALARS: dict[type, Callable[[str, Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]}; known settings: "
            + ", ".join(prefix + name for name in fields)
        )
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        coerced = _coerce(key, value, hints[name])
        _check_range(key, coerced, dict(fields[name].metadata))
        kwargs[name] = coerced
    obj = cls(**kwargs)
    # Defaults are validated too, so a class with a bad default fails loudly.
    for name, f in fields.items():
        if name not in kwargs:
            _check_range(prefix + name, getattr(obj, name), dict(f.metadata))
    return obj


def _set_dotted(tree: dict, key: str, value: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a group of settings")
        node = child
    node[parts[-1]] = value


def load_config(
    cls: type[T],
    *,
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    base: T | None = None,
) -> T:
    """Build a ``cls`` from defaults (or ``base``), a YAML file, then overrides.

    Parameters
    ----------
    cls : a frozen dataclass type
    path : YAML file whose top-level mapping holds the settings, or None
    overrides : strings ``key=value``; dotted keys reach nested settings
    base : start from these values instead of the class defaults
    """
    tree: dict = to_dict(base) if base is not None else {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        _merge(tree, loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        parsed = yaml.safe_load(value) if value.strip() else value
        _set_dotted(tree, key.strip(), parsed if not isinstance(parsed, dict) else value)
    return _from_dict(cls, tree)


def _merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def to_dict(obj: Any) -> dict:
    """Plain-dict view of a settings dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def settings_digest(settings: Any) -> str:
    """Short stable hash of JSON-able settings (key order ignored; other values by ``str``).

    What a stage marker, a results folder's ``.settings.json`` and a store's
    feature hash record, so a change of settings is seen as one.
    """
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_hash(obj: Any) -> str:
    """Short stable hash of a settings dataclass."""
    return settings_digest(to_dict(obj))


def save_config(obj: Any, *, path: str | Path) -> None:
    """Write settings as YAML, atomically."""
    atomic_write_text(Path(path), text=yaml.safe_dump(to_dict(obj), sort_keys=False))

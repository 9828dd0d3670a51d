"""One catalog prepared as N independent shards, and the shard stores joined into one.

A million tracks are more than one job should decode. ``musicrep prepare
CATALOG -o STORE --shard K/N`` stores only the tracks of shard K, so N jobs (a
Slurm job array, see docs/scale.md) prepare a catalog without talking to each
other, and ``musicrep store merge STORE... -o STORE`` joins their stores.

Assignment: a track is in shard ``1 + int.from_bytes(sha1(track_id).digest()[:8], "big") % N``
(:func:`shard_of`, the id encoded as UTF-8). It depends on the track id alone:
not on the catalog's row order, on the other shards, on the machine, or on
Python's per-process ``hash()`` seed, so a rerun picks the same tracks.

A shard store is a store (see :mod:`musicrep.data.store`) plus ``shard.json``,
written before any track is prepared::

    {"version": 1, "shard": K, "of": N, "assignment": "sha1-64 mod N",
     "catalog": {"source": "catalog.csv", "tracks": 1000000, "sha1": "..."},
     "positions": {"<track id>": <its row in the catalog>, ...}}

``catalog.sha1`` hashes the catalog's rows in order, paths left out (the same
catalog read under another mount point is the same catalog); ``positions``
holds every track of the shard, stored or not.

Joining the shard stores into one is :mod:`musicrep.data.merge`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from ..errors import ConfigError, StoreError
from ..io import atomic_write_json
from .catalog import Catalog

log = logging.getLogger(__name__)

SHARD_FILE = "shard.json"
MERGE_FILE = "merge.json"
ASSIGNMENT = "sha1-64 mod N"
VERSION = 1


def shard_of(track_id: str, *, n: int) -> int:
    """The shard (1..n) of ``track_id``: the first 8 bytes of its UTF-8 SHA-1, big-endian, mod n, plus 1."""
    digest = hashlib.sha1(track_id.encode("utf-8", "surrogatepass")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (as ``--shard`` takes it) -> ``(K, N)``, checked."""
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if not match:
        raise ConfigError(f"--shard {text!r} is not K/N (shard K of N, e.g. 3/8)")
    return check_shard((int(match[1]), int(match[2])))


def check_shard(shard) -> tuple[int, int]:
    """``shard`` as ``(K, N)`` with ``1 <= K <= N``; a ConfigError naming it otherwise."""
    try:
        k, n = shard
    except (TypeError, ValueError):
        raise ConfigError(f"shard {shard!r} is not a pair (K, N)") from None
    if type(k) is not int or type(n) is not int or not 1 <= k <= n:
        raise ConfigError(f"shard {k!r}/{n!r} is not K/N with whole numbers 1 <= K <= N")
    return k, n


def catalog_sha1(catalog: Catalog) -> str:
    """A hash of ``catalog``'s rows in order, every column but ``path``."""
    digest = hashlib.sha1()
    for track in catalog:
        row = track.as_row()
        row.pop("path")
        digest.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def shard_record(catalog: Catalog, *, shard: tuple[int, int]) -> dict:
    """The ``shard.json`` of shard ``shard = (K, N)`` of ``catalog``."""
    k, n = check_shard(shard)
    positions = {t.track_id: row for row, t in enumerate(catalog) if shard_of(t.track_id, n=n) == k}
    return {"version": VERSION, "shard": k, "of": n, "assignment": ASSIGNMENT, "positions": positions,
            "catalog": {"source": catalog.source, "tracks": len(catalog), "sha1": catalog_sha1(catalog)}}


def read_record(store: Path) -> dict | None:
    """``store``'s ``shard.json``, checked; None when the store holds a whole catalog."""
    where = Path(store) / SHARD_FILE
    if not where.exists():
        return None
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
        ok = (record.get("version") == VERSION and record.get("assignment") == ASSIGNMENT
              and type(record["of"]) is int and type(record["shard"]) is int and 1 <= record["shard"] <= record["of"]
              and isinstance(record["catalog"]["sha1"], str) and isinstance(record["positions"], dict)
              and all(type(v) is int for v in record["positions"].values()))
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise StoreError(f"{where} is unreadable ({type(exc).__name__}: {exc}); prepare the shard again") from None
    if not ok:
        raise StoreError(f"{where} is not a shard record of this musicrep; prepare the shard again")
    return record


def describe_shard(record: dict) -> str:
    """``shard K/N of SOURCE``: how messages name the shard of ``record`` (a ``shard.json``)."""
    return f"shard {record['shard']}/{record['of']} of {record['catalog'].get('source', 'a catalog')}"


def claim_shard(store: Path, *, catalog: Catalog, shard: tuple[int, int] | None) -> Catalog:
    """The tracks :func:`~musicrep.data.prepare.prepare` stores in ``store``: ``catalog``'s shard, or all of it.

    Writes ``shard.json`` into a new shard store and checks it on a rerun, so
    a store never mixes two shards, two catalogs, or a shard and a whole catalog.
    """
    if (store / MERGE_FILE).exists() and not (store / "DONE").exists():
        raise StoreError(f"{store} holds an unfinished merge; rerun `musicrep store merge ... -o {store}` to "
                         "finish it, or pass --overwrite")
    old = read_record(store)
    if shard is None:
        if old is not None:
            raise StoreError(f"{store} holds {describe_shard(old)}; prepare it with --shard {old['shard']}/{old['of']}, "
                             "or use another folder")
        return catalog
    record = shard_record(catalog, shard=shard)
    if old is None:
        if (store / "store.json").exists():
            raise StoreError(f"{store} holds a store of a whole catalog, not a shard; prepare shard "
                             f"{record['shard']}/{record['of']} into another folder, or pass --overwrite")
        atomic_write_json(store / SHARD_FILE, obj=record)
    elif [old[k] for k in ("shard", "of")] + [old["catalog"]["sha1"]] != \
            [record[k] for k in ("shard", "of")] + [record["catalog"]["sha1"]]:
        same = old["catalog"]["sha1"] == record["catalog"]["sha1"]
        raise StoreError(f"{store} holds {describe_shard(old)}" + ("" if same else " (other rows than this catalog's)")
                         + f", not shard {record['shard']}/{record['of']} of {catalog.source}; "
                         "use another folder or pass --overwrite")
    members = record["positions"]
    log.info("%s: %d of %d tracks", describe_shard(record), len(members), len(catalog))
    return Catalog([t for t in catalog if t.track_id in members], source=catalog.source)


__all__ = ["shard_of", "parse_shard", "check_shard", "shard_record", "read_record", "claim_shard",
           "catalog_sha1", "describe_shard"]

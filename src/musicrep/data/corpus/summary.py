"""``summary.json`` and a readable ``summary.md`` beside a corpus catalog."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ...io import atomic_write_json, atomic_write_text
from ..catalog import Catalog


def summarize(catalog: Catalog, *, skipped: list[dict], info: dict) -> dict:
    """Counts per artist/album/label (and split), hours, and skipped files by reason."""
    out = catalog.summary()
    out["tracks_without_artist"] = sum(1 for t in catalog if not t.artist)
    for column in ("split", "artist_source", "package"):
        if column in catalog.extra_columns:
            out[f"{column}s"] = dict(Counter(t.get(column) for t in catalog).most_common())
    if "package" in catalog.extra_columns:
        out["package_table"] = package_table(catalog)
    if "split" in catalog.extra_columns:
        by = Counter((t.get("split"), t.genre) for t in catalog)
        out["genres_by_split"] = {s: {g: n for (s2, g), n in sorted(by.items()) if s2 == s}
                                  for s in ("train", "valid", "test")}
    reasons: Counter = Counter()
    for s in skipped:
        reason = s["reason"] or s["source"]
        reasons[reason.split(":")[0] if reason.startswith("error") else reason] += int(s.get("count", 1))
    out["skipped"] = dict(reasons.most_common())
    out["skipped_files"] = [s for s in skipped if "count" not in s]
    out["build"] = info
    return out


def package_table(catalog: Catalog) -> dict[str, dict]:
    """Per package (sorted by name): ``tracks``, ``hours``, ``composers`` (distinct
    non-empty artists) and ``artist_sources`` (tracks per attribution source)."""
    rows: dict[str, dict] = {}
    for t in catalog:
        row = rows.setdefault(t.get("package"), {"tracks": 0, "seconds": 0.0, "artists": set(), "sources": Counter()})
        row["tracks"] += 1
        row["seconds"] += t.duration or 0.0
        if t.artist:
            row["artists"].add(t.artist)
        row["sources"][t.get("artist_source") or "unknown"] += 1
    return {p: {"tracks": r["tracks"], "hours": round(r["seconds"] / 3600, 3), "composers": len(r["artists"]),
                "artist_sources": dict(r["sources"].most_common())} for p, r in sorted(rows.items())}


def write_summary(summary: dict, *, out_dir: Path, name: str) -> None:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "summary.json", obj=summary)
    lines = [f"# Corpus `{name}`", "",
             f"{summary['tracks']} tracks, {summary['hours']:.2f} h; "
             f"{len(summary['artists'])} artists, {len(summary['albums'])} albums, "
             f"{summary['tracks_without_artist']} tracks without an artist.", ""]
    build = summary.get("build", {})
    if build.get("wall_s") is not None:
        lines += [f"Built in {build['wall_s']:.0f} s.", ""]
    for key, title in (("genres", "Labels (genre column)"), ("splits", "Splits"), ("artists", "Artists"),
                       ("albums", "Albums"), ("artist_sources", "Artist attribution source"),
                       ("skipped", "Skipped (reason: count)")):
        table = summary.get(key)
        if not table:
            continue
        lines += [f"## {title}", "", "| name | count |", "| --- | ---: |"]
        lines += [f"| {k.replace('|', '/')} | {v} |" for k, v in table.items()]
        lines.append("")
    if summary.get("package_table"):
        lines += ["## Packages", "", "| package | tracks | hours | composers | tracks per attribution source |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for package, row in summary["package_table"].items():
            sources = ", ".join(f"{k} {v}" for k, v in row["artist_sources"].items())
            lines.append(f"| {package} | {row['tracks']} | {row['hours']:.2f} | {row['composers']} | {sources} |")
        lines.append("")
    if summary.get("genres_by_split"):
        genres = sorted(summary["genres"])
        lines += ["## Labels by split", "", "| label | " + " | ".join(summary["genres_by_split"]) + " |",
                  "| --- |" + " ---: |" * len(summary["genres_by_split"])]
        for g in genres:
            lines.append(f"| {g} | " + " | ".join(str(summary["genres_by_split"][s].get(g, 0))
                                                  for s in summary["genres_by_split"]) + " |")
        lines.append("")
    atomic_write_text(out_dir / "summary.md", text="\n".join(lines))

"""The report: the paper's Tables 1-4 as markdown, ``results.json`` and PNG figures.

:func:`write_report` takes results already computed (a pipeline calls it
directly); :func:`build_report` computes what is missing from run folders and
stores, then calls it. Published numbers (Lee, Park & Nam 2019, as quoted in
shared/DESIGN.md) are shown beside ours only as clearly labelled references: they
come from models trained on the Million Song Dataset, not on our collection.

A report that includes a run whose training did not finish (no ``DONE``; only
with ``allow_unfinished``) says so in a note right under its title, naming the
runs, and lists them in ``results.json`` under ``unfinished_runs``. Writing holds
:func:`musicrep.locks.folder_lock` on the report folder.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..concepts import JOINT, ordered
from ..concepts import PAPER_CONCEPTS as CONCEPTS
from ..data.catalog import slugify
from ..errors import ConfigError
from ..evaluation.holdout import HoldoutResult
from ..evaluation.retrieval import RetrievalResult
from ..evaluation.sweep import SweepResult, format_value, value_order
from ..evaluation.transfer import DISPLAY, TransferResult
from ..io import atomic_path, atomic_write_json, atomic_write_text
from ..locks import folder_lock

log = logging.getLogger(__name__)

PUBLISHED: dict[str, Any] = {
    "source": "Lee, Park & Nam 2019, published; MSD-trained, 5000 artists, 4 negatives",
    "holdout": {"joint": {"artist": 0.686, "album": 0.763, "track": 0.945}},
    "transfer": {"gtzan": {"joint": 0.745}, "fma_small": {"joint": 0.593}},
}
MODEL_ORDER: tuple[str, ...] = (*CONCEPTS, JOINT)
TABLE2_BASELINES: tuple[str, ...] = ("genres", "random", "mfcc", "logmel")


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
    from sklearn.manifold import TSNE

    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 3:
        raise ConfigError(f"an embedding map needs at least 3 songs, got {n}")
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
    from ..data.splits import load_splits
    from ..errors import SplitError

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


# --------------------------------------------------------------------------- tables


def _fmt(x: float | None, std: float | None = None) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.3f}" if std is None else f"{x:.3f} ± {std:.3f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ordered(names: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in names]
    return known + [m for m in names if m not in known]


def table1(holdout: HoldoutResult) -> str:
    """Table 1: rows = models (artist/album/track/joint), columns = concepts, with song-bootstrap intervals."""
    concepts = ordered(holdout.concepts)  # the paper's first, then column concepts
    rows = [[f"{m}"] + [holdout.cell(m, c) if c in holdout.accuracy[m] else "–" for c in concepts]
            for m in _ordered(holdout.models)]
    rows.append(["chance (random guess)"] + [_fmt(holdout.chance) for _ in concepts])
    if holdout.n_songs:
        rows.append(["test songs (labels)"] + [holdout.songs_cell(c) for c in concepts])
    pub = PUBLISHED["holdout"]
    for m, vals in pub.items():
        rows.append([f"*{m}: {PUBLISHED['source']}*"] + [f"*{_fmt(vals.get(c))}*" for c in concepts])
    text = _md_table(["model \\ concept"] + concepts, rows)
    note = (f"\n\n{holdout.n_trials} fixed trials per concept (seed {holdout.seed}), the same for every model; "
            f"{holdout.n_negatives} negatives per trial, so chance is {holdout.chance:.3f}. In brackets: the 95% "
            "interval of a bootstrap over the test songs (all of a song's trials resampled together), which is "
            "what the number of distinct test songs allows, not the trial count.")
    for c, why in holdout.skipped.items():
        note += f" The {c} concept was not evaluated: {why}."
    if holdout.n_negatives != 4:
        note += " The published row used 4 negatives: not the same setting."
    for w in holdout.warnings:
        note += f"\n\n**Warning:** {w}"
    return text + note


def _published_transfer(dataset: str) -> dict | None:
    """The paper's number for a transfer dataset named like the paper's (``gtzan``, ``fma_small``, ``fma-small``,
    ``fma small``); None for any other (``fma_large``, ``my_fma_subset``: not the paper's data)."""
    key = dataset.lower().replace("-", "_").replace(" ", "_")
    if key == "gtzan" or key.startswith("gtzan_"):  # gtzan_fault_filtered, gtzan_splits, ...
        return PUBLISHED["transfer"]["gtzan"]
    if key in ("fma_small", "fmasmall"):
        return PUBLISHED["transfer"]["fma_small"]
    return None


def table2(results: Sequence[TransferResult]) -> str:
    """Table 2: rows = datasets, columns = models then baselines (accuracy mean ± std)."""
    models = _ordered([m for r in results for m in r.methods if m not in TABLE2_BASELINES])
    models = list(dict.fromkeys(models))
    bases = [b for b in TABLE2_BASELINES if any(b in r.methods for r in results)]
    header = ["dataset"] + models + [DISPLAY[b] for b in bases] + ["majority class"]
    rows = []
    for r in results:
        cells = [f"{r.dataset} ({len(r.classes)} classes, test {r.counts.get('test', 0)})"]
        for m in models + bases:
            res = r.methods.get(m)
            cells.append(_probe_cell(res) if res else "–")
        cells.append(_fmt(r.majority))
        rows.append(cells)
        pub = _published_transfer(r.dataset)
        if pub:
            rows.append([f"*{r.dataset}: {PUBLISHED['source']}*"] + [f"*{_fmt(pub.get(m))}*" if m in pub else "–" for m in models + bases] + ["–"])
    return _md_table(header, rows)


def _probe_cell(res: Any) -> str:
    """``mean ± std [95% interval]`` of a probe's trials (``mean (1 trial)`` for one)."""
    if len(getattr(res, "accuracies", [])) == 1:
        return f"{_fmt(res.accuracy_mean)} (1 trial)"
    text = _fmt(res.accuracy_mean, res.accuracy_std)
    low, high = getattr(res, "ci95_low", None), getattr(res, "ci95_high", None)
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def _sweep_label(result: SweepResult) -> str:
    return {"negatives": "negatives N", "artists": "artists"}.get(result.kind, result.field or result.kind)


def table_sweep(result: SweepResult) -> str:
    """Tables 3/4 and grids: one row per value: validation accuracy (which selects), then test figures."""
    concepts = ordered({c for p in result.points for c in p.holdout})
    with_transfer = any(p.transfer for p in result.points)
    header = ["", _sweep_label(result), "valid acc (selects)" if result.selectable else "valid acc"]
    header += [f"transfer ({result.dataset})"] if with_transfer else []
    header += [f"hold-out {c}" for c in concepts]
    rows = []
    chosen = result.selected_point
    for p in sorted(result.points, key=lambda p: value_order(p.value)):
        mark = "**→**" if p is chosen else ""
        if p.status != "done":
            rows.append([mark, format_value(p.value), f"failed: {p.error}"] + ["–"] * (len(header) - 3))
            continue
        row = [mark, format_value(p.value), _fmt(p.validation.get("valid_acc"))]
        if with_transfer:
            row.append(_fmt(p.transfer.get("mean"), p.transfer.get("std")) if p.transfer else "–")
        rows.append(row + [_fmt(p.holdout.get(c)) for c in concepts])
    text = _md_table(header, rows)
    if chosen is not None:
        text += (f"\n\nSelected by validation accuracy (never by test): {_sweep_label(result)} = "
                 f"{format_value(chosen.value)}.")
        if concepts or with_transfer:
            text += " The hold-out and transfer columns are test figures: shown, never used to select."
    if not result.selectable:
        text += (f"\n\nNothing is selected: {_sweep_label(result)} changes the validation task (chance level or "
                 "validation songs), so the validation accuracies are not comparable across rows.")
    for w in result.warnings():
        text += f"\n\n**Warning:** {w}"
    return text


def table_retrieval(result: RetrievalResult) -> str:
    """Retrieval on held-out songs: rows = embedding spaces, columns = artist / album x mAP / P@k."""
    cols = result.columns()
    rows = [[s] + [result.cell(s, t, m) for t, m, _h in cols] for s in _ordered(result.spaces)]
    rows.append(["chance (random order)"] + [_fmt(result.chance[t][m]) for t, m, _h in cols])
    rows.append(["perfect ranking"] + [_fmt(1.0 if m == "map" else result.ceiling[t]) for t, m, _h in cols])
    rows.append(["queries (labels; skipped)"]
                + [f"{result.n_queries[t]} ({result.n_labels[t]}; {result.n_skipped[t]})" for t, _m, _h in cols])
    text = _md_table(["space"] + [h for _t, _m, h in cols], rows)
    k = result.k
    note = (f"\n\nEach {' and '.join(result.parts)} song of the artist (album) split, held out by every model, is a "
            "query against the split's other such songs; relevant = same artist (album); ranked by cosine "
            f"similarity of L2-normalised song embeddings. mAP is over the full ranking; P@{k} is divided by {k}, so "
            f"when a label has fewer than {k} other songs a perfect ranking scores less than 1 (its row). Tied "
            "similarities count as their expectation over random orders, which is what the chance row is. 'concat' "
            "joins the single-concept models' L2-normalised embeddings (re-normalised); the baselines are Table 2's, "
            "the log-mel and MFCC statistics standardised per dimension over the pool. In brackets: the 95% interval "
            "of a bootstrap over the queries.")
    for t, why in result.skipped.items():
        note += f" Same-{t} retrieval was not measured: {why}."
    for w in result.warnings:
        note += f"\n\n**Warning:** {w}"
    return text + note


# --------------------------------------------------------------------------- figures


#: Fonts drawn from where DejaVu Sans (matplotlib's own) has no glyph, by family name, in order:
#: they cover Hangul, kana and CJK ideographs.
FALLBACK_FONTS: tuple[str, ...] = (
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK KR", "Noto Sans CJK JP", "Noto Sans CJK SC",
    "Noto Sans CJK TC", "Source Han Sans", "Droid Sans Fallback", "NanumGothic",
)
#: The Debian/Ubuntu package named when no fallback font is installed (scripts/system-deps.sh installs it).
FONT_PACKAGE = "fonts-wqy-microhei"
_GLYPH_MISSING = re.compile(r"Glyph \d+ .*missing from")


@functools.lru_cache(maxsize=1)
def figure_fonts() -> tuple[str, ...]:
    """Font families of the figures: DejaVu Sans, then the installed :data:`FALLBACK_FONTS`.

    matplotlib (3.6+) draws each character with the first family that has it,
    so Korean, Japanese and Chinese names show as letters, not boxes. Fonts
    are found by family name; matplotlib's font list is written once, so a
    font installed after it is looked for again among the system's font files.
    """
    from matplotlib import font_manager

    def installed() -> list[str]:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return [name for name in FALLBACK_FONTS if name in names]

    found = installed()
    if not found:
        known = {f.fname for f in font_manager.fontManager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known:
                with contextlib.suppress(Exception):  # an unreadable font file is simply not used
                    font_manager.fontManager.addfont(path)
        found = installed()
    return ("DejaVu Sans", *found)


def _figure(plot: Callable[..., Path | None]) -> Callable[..., Path | None]:
    """Draw and save ``plot``'s figure with :func:`figure_fonts`, without touching the caller's settings."""

    @functools.wraps(plot)
    def drawn(*args, **kwargs):
        plt = _plt()
        with plt.rc_context({"font.family": list(figure_fonts())}):
            return plot(*args, **kwargs)

    return drawn


def _savefig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    # matplotlib warns once per missing glyph (a Korean name: a dozen lines);
    # one line naming the font to install says it better.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    missing = [w for w in caught if _GLYPH_MISSING.search(str(w.message))]
    for w in caught:
        if w not in missing:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        _warn_missing_glyphs(str(missing[0].message))
    return path


_font_warning_given = False


def _warn_missing_glyphs(example: str) -> None:
    """Log, once per process, that the figures show boxes for some letters and which package fixes it."""
    global _font_warning_given
    if _font_warning_given:
        return
    _font_warning_given = True
    log.warning("the figures show boxes for letters no installed font has (%s); install a font with CJK and "
                "Hangul glyphs, e.g. Debian/Ubuntu's %s (apt-get install %s) or Noto Sans CJK",
                example.rstrip("."), FONT_PACKAGE, FONT_PACKAGE)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """Numeric columns of a ``metrics.csv`` (non-numeric cells become NaN)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols: dict[str, np.ndarray] = {}
    for key in (rows[0].keys() if rows else []):
        vals = []
        for r in rows:
            try:
                vals.append(float(r[key]))
            except (TypeError, ValueError):
                vals.append(np.nan)
        arr = np.asarray(vals)
        if np.isfinite(arr).any():
            cols[key] = arr
    return cols


def _concept_of(column: str) -> str | None:
    """The concept a metrics column is about (``train_loss_album`` -> ``album``), None for totals."""
    return next((c for c in CONCEPTS if column.endswith("_" + c)), None)


def _concepts_in(cols: Mapping[str, np.ndarray]) -> set[str]:
    return {c for c in map(_concept_of, cols) if c is not None}


def _curve_groups(cols: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """The columns each panel draws: ``{"loss": [...], "accuracy": [...]}``.

    A single-concept run logs ``train_loss_artist`` equal to ``train_loss``:
    per-concept columns are drawn only for several concepts, or where no
    total column holds the same numbers (``train_acc_artist``).
    """
    several = len(_concepts_in(cols)) > 1
    groups: dict[str, list[str]] = {}
    for k in cols:
        kind = "accuracy" if "acc" in k else "loss" if "loss" in k else None
        concept = _concept_of(k)
        if kind is None or (concept is not None and not several and k[: -len(concept) - 1] in cols):
            continue
        groups.setdefault(kind, []).append(k)
    return groups


@_figure
def plot_curves(run: str | Path, *, path: Path) -> Path | None:
    """Training / validation curves of a run's ``metrics.csv`` (one panel per kind of metric)."""
    mfile = Path(run) / "metrics.csv"
    if not mfile.is_file():
        log.warning("%s has no metrics.csv; no training curves", run)
        return None
    cols = read_metrics(mfile)
    xkey = next((k for k in ("step", "epoch") if k in cols), None)
    groups = _curve_groups(cols) if xkey is not None else {}
    if not groups:
        return None
    several = len(_concepts_in(cols)) > 1
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.6), squeeze=False)
    for ax, (kind, keys) in zip(axes[0], groups.items()):
        for k in keys:
            ok = np.isfinite(cols[k])
            # one colour per concept (or the total; one colour in all for one concept),
            # solid for training, dashed for validation
            suffix = (_concept_of(k) or "all") if several else "all"
            color = f"C{(['all', *CONCEPTS]).index(suffix)}"
            style = "--" if k.startswith("valid") else "-"
            ax.plot(cols[xkey][ok], cols[k][ok], style, color=color, marker="." if ok.sum() < 30 else None, label=k)
        ax.set_xlabel(xkey)
        ax.set_title(kind)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"training curves: {Path(run).name}")
    return _savefig(fig, path)


@_figure
def plot_map(m: EmbeddingMap, *, column: str, path: Path, max_legend: int = 12) -> Path:
    """The t-SNE map coloured by one label column (the most frequent labels get colours).

    With ``m.roles``, training songs are filled dots, held-out (valid/test)
    songs hollow rings and songs the run did not use small dots.
    """
    plt = _plt()
    labels = np.asarray(m.labels[column])
    roles = np.asarray(m.roles if m.roles is not None else [TRAIN] * len(labels))
    known = labels[labels != ""]
    names, counts = np.unique(known, return_counts=True)
    top = list(names[np.argsort(-counts, kind="stable")][:max_legend])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))

    def draw(sel: np.ndarray, color: Any, label: str, marker: str = "o", **style: Any) -> None:
        """One legend entry: its training, held-out and unused songs drawn apart."""
        hollow = dict(facecolors="none", edgecolors=color) if marker == "o" else dict(color=color)  # "x" has no face
        for role, kw in ((TRAIN, dict(s=10, color=color)), (HELD_OUT, dict(s=22, linewidths=0.9, **hollow)),
                         (UNUSED, dict(s=3, color=color))):
            part = sel & (roles == role)
            if part.any():
                ax.scatter(m.xy[part, 0], m.xy[part, 1], marker=marker, **kw, **style)
        ax.scatter([], [], s=10, color=color, marker=marker, label=label, **style)  # the legend entry, once

    unknown = labels == ""
    if unknown.any():
        draw(unknown, "black", f"unknown {column}", alpha=0.4, marker="x")
    other = ~np.isin(labels, top) & ~unknown
    if other.any():
        draw(other, "lightgrey", f"other ({len(names) - len(top)})")
    cmap = plt.get_cmap("tab20" if len(top) > 10 else "tab10")
    for i, name in enumerate(top):
        draw(labels == name, cmap(i % cmap.N), name)
    handles, texts = ax.get_legend_handles_labels()
    if m.roles is not None:
        from matplotlib.lines import Line2D

        n = {r: int((roles == r).sum()) for r in (TRAIN, HELD_OUT, UNUSED)}
        marks = [(TRAIN, "o", "dimgrey", f"training song ({n[TRAIN]})"),
                 (HELD_OUT, "o", "none", f"held out, valid/test ({n[HELD_OUT]})"),
                 (UNUSED, ".", "dimgrey", f"not in the run's split ({n[UNUSED]})")]
        for role, marker, face, text in marks:
            if n[role]:
                handles.append(Line2D([], [], linestyle="", marker=marker, markersize=3.5 if marker == "o" else 5,
                                      markerfacecolor=face, markeredgecolor="dimgrey"))
                texts.append(text)
    ax.legend(handles, texts, fontsize=6, markerscale=1.5, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of song embeddings: {m.name}, by {column}")
    return _savefig(fig, path)


@_figure
def plot_confusion(result: TransferResult, *, method: str, path: Path) -> Path:
    """Confusion matrix of one method, summed over the probe's trials.

    Each cell prints its count of test predictions; its colour is that count's
    share of the row. A row's label gives its total. Classes without test
    songs have no row (a row of zeros would read as "never right"); the
    figure names them under the matrix.
    """
    plt = _plt()
    res = result.methods[method]
    cm = np.asarray(res.confusion, dtype=np.int64)
    totals = cm.sum(1)
    rows = np.flatnonzero(totals > 0)
    norm = cm[rows] / totals[rows, None]
    k = len(res.classes)
    fig, ax = plt.subplots(figsize=(1.6 + 0.6 * k, 1.2 + 0.5 * max(len(rows), 1)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(k), res.classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{res.classes[i]} ({totals[i]})" for i in rows], fontsize=7)
    for r, i in enumerate(rows):
        for j in range(k):
            ax.text(j, r, str(cm[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if norm[r, j] > 0.5 else "black")
    trials = getattr(res, "n_trials", 0) or len(res.accuracies)
    xlabel = f"predicted (counts over {trials} trial{'s' if trials != 1 else ''})"
    empty = [res.classes[i] for i in np.flatnonzero(totals == 0)]
    if empty:
        xlabel += "\nno test songs: " + ", ".join(empty)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("true (row total)", fontsize=8)
    ax.set_title(f"{result.dataset}: {DISPLAY.get(method, method)} ({res.accuracy_mean:.3f})", fontsize=9)
    return _savefig(fig, path)


@_figure
def plot_sweep(result: SweepResult, *, path: Path) -> Path:
    """Transfer accuracy (± std) and hold-out accuracies against the swept value (log x)."""
    plt = _plt()
    pts = sorted((p for p in result.points if p.status == "done"), key=lambda p: value_order(p.value))
    fig, ax = plt.subplots(figsize=(6, 4))
    numeric = all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in pts)
    if pts:
        x = [p.value for p in pts] if numeric else list(range(len(pts)))
        if any(p.transfer for p in pts):
            tp = [(xi, p) for xi, p in zip(x, pts) if p.transfer]
            ax.errorbar([xi for xi, _ in tp], [p.transfer["mean"] for _, p in tp],
                        yerr=[p.transfer.get("std", 0.0) for _, p in tp], marker="o", capsize=3,
                        label=f"transfer ({result.dataset})")
        if any("valid_acc" in p.validation for p in pts):
            ax.plot(x, [p.validation.get("valid_acc", np.nan) for p in pts], marker="s", label="validation (selects)")
        for c in CONCEPTS:
            if all(c in p.holdout for p in pts):
                ax.plot(x, [p.holdout[c] for p in pts], marker=".", linestyle="--", label=f"hold-out {c} (test)")
        # counts (negatives, artists) on a log2 axis; settings like margins on a linear one
        if numeric and result.kind in ("negatives", "artists") and len(set(x)) > 1 and min(x) > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(x, [format_value(p.value) for p in pts])
    ax.set_xlabel(_sweep_label(result))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"sweep: {_sweep_label(result)} ({result.concept or 'joint'} model)")
    return _savefig(fig, path)


# --------------------------------------------------------------------------- report


def write_report(
    out_dir: str | Path,
    *,
    holdout: HoldoutResult | None = None,
    transfer: Sequence[TransferResult] | TransferResult | None = None,
    sweeps: Sequence[SweepResult] = (),
    runs: Sequence[str | Path] = (),
    maps: Sequence[EmbeddingMap] = (),
    title: str = "musicrep report",
    notes: Sequence[str] = (),
    retrieval: RetrievalResult | None = None,
) -> Path:
    """Write ``report.md``, ``results.json`` and ``figures/*.png`` from computed results.

    Parameters
    ----------
    out_dir : the report folder (created)
    holdout : Table 1 (:func:`musicrep.evaluation.holdout.holdout_runs`)
    transfer : Table 2, one result per dataset (:func:`musicrep.evaluation.transfer.transfer_runs`)
    sweeps : Tables 3 and 4 (:func:`musicrep.evaluation.sweep.run_sweep` / ``load_sweep``)
    runs : run folders whose ``metrics.csv`` give the training curves
    maps : 2-D embedding maps (:func:`embedding_map`), drawn once per label column
    notes : extra paragraphs for the end of the report
    retrieval : same-artist / same-album retrieval (:func:`musicrep.evaluation.retrieval.retrieval_runs`); None: no section

    Returns
    -------
    Path of ``report.md``

    Raises
    ------
    FolderLockedError
        when another process is writing ``out_dir``
    """
    with folder_lock(out_dir):
        return _write_report_locked(Path(out_dir), holdout=holdout, transfer=transfer, sweeps=sweeps, runs=runs,
                                    maps=maps, title=title, notes=notes, retrieval=retrieval)


def unfinished_runs(runs: Sequence[str | Path], *, holdout: HoldoutResult | None = None,
                    transfers: Sequence[TransferResult] = ()) -> list[str]:
    """The run folders among those a report shows whose training did not finish (no ``DONE``).

    Parameters
    ----------
    runs : run folders (training curves, or the runs of a ``musicrep report``)
    holdout, transfers : results whose ``runs`` name more run folders
    """
    from ..training.checkpoint import unfinished_run

    named = [*runs, *(holdout.runs.values() if holdout is not None else ())]
    named += [r for t in transfers for r in getattr(t, "runs", {}).values()]
    found = (unfinished_run(r) for r in named if Path(r).exists())
    return list(dict.fromkeys(str(r) for r in found if r is not None))


def _write_report_locked(out: Path, *, holdout, transfer, sweeps, runs, maps, title, notes, retrieval) -> Path:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    transfers = [transfer] if isinstance(transfer, TransferResult) else list(transfer or [])
    md = [f"# {title}", ""]
    unfinished = unfinished_runs(runs, holdout=holdout, transfers=transfers)
    if unfinished:
        md += ["**Unfinished runs:** the training of " + ", ".join(f"`{r}`" for r in unfinished)
               + " did not finish (no DONE); their numbers come from the best checkpoint so far, not from a "
               "finished run.", ""]
    md.append(f"Published numbers appear in *italic* rows, labelled “{PUBLISHED['source']}”: they are "
              "references from a different training collection, not results of this code.")
    figures: dict[str, str] = {}

    def fig(key: str, path: Path | None) -> None:
        if path is not None:
            figures[key] = str(path.relative_to(out))

    if holdout is not None:
        md += ["", "## Table 1: hold-out positive/negative prediction", "", table1(holdout)]
    if transfers:
        columns = sorted({getattr(r, "label_column", "") or "genre" for r in transfers})
        md += ["", f"## Table 2: transfer to {' / '.join(columns)} classification (linear probe, test accuracy)",
               "", table2(transfers)]
        md.append("\nmean ± std over the probe's trials [95% interval of the mean, Student t].")
        for r in transfers:
            md.append(f"\n{r.dataset}: label column `{getattr(r, 'label_column', '') or 'genre'}`; split "
                      f"{r.split_source}; " + ", ".join(f"{k} {v}" for k, v in r.counts.items())
                      + f"; classes {', '.join(r.classes)}.")
            for w in getattr(r, "warnings", []):
                md.append(f"\n**Warning ({r.dataset}):** {w}")
            models = [m for m in _ordered(list(r.methods)) if m not in TABLE2_BASELINES]
            for method in ([models[-1]] if models else []) + [b for b in ("genres",) if b in r.methods]:
                name = f"confusion-{slugify(r.dataset)}-{slugify(method)}"
                fig(name, plot_confusion(r, method=method, path=figs / f"{name}.png"))
        md.append("\nMFCCs here are the type-II DCT of the stored log-mel (log10(1 + 10·mel)), first coefficients; "
                  "'random encoder' is the same CNN with untrained weights and the same probe.")
    for s in sweeps:
        number = {"negatives": 3, "artists": 4}.get(s.kind)
        head = f"Table {number}: " if number else ""
        md += ["", f"## {head}sweep over {_sweep_label(s)} ({s.concept or 'joint'} model)", "", table_sweep(s)]
        fig(f"sweep-{s.kind}", plot_sweep(s, path=figs / f"sweep-{slugify(s.kind)}.png"))
    if retrieval is not None:
        md += ["", "## Retrieval: same-artist / same-album songs among nearest neighbours (held-out songs)", "",
               table_retrieval(retrieval)]
    for run in runs:
        fig(f"curves-{Path(run).name}", plot_curves(run, path=figs / f"curves-{slugify(Path(run).name)}.png"))
    for m in maps:
        for column in m.labels:
            fig(f"map-{m.name}-{column}", plot_map(m, column=column, path=figs / f"map-{slugify(m.name)}-{slugify(column)}.png"))
    if figures:
        md += ["", "## Figures", ""]
        if any(m.roles is not None for m in maps):
            md += ["In the t-SNE maps, filled dots are the run's training songs, hollow rings its held-out "
                   "(validation and test) songs, small dots songs its split does not use.", ""]
        md += [f"![{key}]({rel})" for key, rel in figures.items()]
    if notes:
        md += ["", "## Notes", ""] + list(notes)
    atomic_write_text(out / "report.md", text="\n".join(md) + "\n")
    atomic_write_json(out / "results.json", obj={
        "holdout": holdout.to_dict() if holdout is not None else None,
        "transfer": [r.to_dict() for r in transfers],
        "sweeps": [s.to_dict() for s in sweeps],
        "retrieval": retrieval.to_dict() if retrieval is not None else None,
        "runs": [str(r) for r in runs],
        "unfinished_runs": unfinished,
        "figures": figures,
        "published": PUBLISHED,
    })
    log.info("report written to %s", out / "report.md")
    return out / "report.md"


def build_report(
    runs: Sequence[str | Path],
    *,
    out_dir: str | Path,
    store: str | Path | None = None,
    transfer_stores: Sequence[str | Path] = (),
    sweep_dirs: Sequence[str | Path] = (),
    n_trials: int = 1000,
    n_negatives: int = 4,
    transfer_config: Any = None,
    baselines: Sequence[str] | None = None,
    map_points: int = 1500,
    seed: int = 0,
    notes: Sequence[str] = (),
    title: str = "musicrep report",
    allow_overlap: bool = False,
    allow_unfinished: bool = False,
) -> Path:
    """Compute hold-out, transfer and maps for ``runs`` and write the report.

    Parameters
    ----------
    runs : run folders; the first joint run (else the first run) draws the maps
    store : the store the runs trained on (for hold-out and the artist map); by
        default the one named in the first run's config
    transfer_stores : genre-labelled stores for Table 2
    sweep_dirs : sweep folders for Tables 3 and 4 (finished points only)
    n_trials, n_negatives : hold-out settings
    baselines : Table 2 baselines (all by default)
    map_points : songs in each t-SNE map (0: no maps)
    seed : seed of the hold-out trials and the maps
    notes, title : passed on to :func:`write_report`
    allow_overlap : see :func:`musicrep.evaluation.holdout.holdout_runs`
    allow_unfinished : report runs whose training did not finish (no ``DONE``);
        the report names them in a note under its title

    Raises
    ------
    FolderLockedError
        at once, before anything is computed, when another process writes ``out_dir``
    """
    with folder_lock(out_dir):
        return _build_report_locked(
            runs, out_dir=out_dir, store=store, transfer_stores=transfer_stores, sweep_dirs=sweep_dirs,
            n_trials=n_trials, n_negatives=n_negatives, transfer_config=transfer_config, baselines=baselines,
            map_points=map_points, seed=seed, notes=notes, title=title, allow_overlap=allow_overlap,
            allow_unfinished=allow_unfinished)


def _build_report_locked(runs, *, out_dir, store, transfer_stores, sweep_dirs, n_trials, n_negatives,
                         transfer_config, baselines, map_points, seed, notes, title, allow_overlap,
                         allow_unfinished) -> Path:
    from ..data.store import open_store
    from ..errors import CheckpointError
    from ..evaluation.holdout import holdout_runs
    from ..evaluation.runs import run_store_path
    from ..evaluation.sweep import load_sweep
    from ..evaluation.transfer import BASELINES, TransferConfig, transfer_runs
    from ..training.checkpoint import unfinished_message, unfinished_run

    runs = [Path(r) for r in runs]
    unfinished = [r for r in runs if unfinished_run(r) is not None]
    if unfinished and not allow_unfinished:  # before minutes of hold-out trials, not after
        raise CheckpointError(unfinished_message(unfinished_run(unfinished[0])))
    if store is None and runs:
        store = run_store_path(runs[0])
    holdout = None
    fs = None
    if runs:
        if store is None:
            raise ConfigError(f"{runs[0]}: its config names no store; pass --store STORE")
        fs = open_store(store)
        holdout = holdout_runs(runs, store=fs, n_trials=n_trials, n_negatives=n_negatives, seed=seed,
                               allow_overlap=allow_overlap, allow_unfinished=allow_unfinished)
    tcfg = transfer_config or TransferConfig()
    transfers = [
        transfer_runs(runs, store=t, config=tcfg, baselines=BASELINES if baselines is None else baselines,
                      allow_unfinished=allow_unfinished)
        for t in transfer_stores
    ]
    sweeps = [load_sweep(d) for d in sweep_dirs]
    maps = embedding_maps(runs, stores=([fs] if fs is not None else []) + list(transfer_stores),
                          max_points=map_points, seed=seed, allow_unfinished=allow_unfinished) \
        if runs and map_points > 0 else []
    return write_report(out_dir, holdout=holdout, transfer=transfers, sweeps=sweeps, runs=runs, maps=maps,
                        notes=notes, title=title)


def embedding_maps(runs: Sequence[str | Path], *, stores: Sequence[Any], max_points: int = 1500,
                   seed: int = 0, allow_unfinished: bool = False) -> list[EmbeddingMap]:
    """t-SNE maps of the first joint run (else the first run) on each store, by artist and by genre.

    The run's split files mark its training and held-out songs (:func:`split_roles`).

    Parameters
    ----------
    runs : run folders
    stores : FeatureStores or paths; a store without an artist or genre column with
        two or more values gets no map
    allow_unfinished : draw runs whose training did not finish (no ``DONE``)
    """
    from ..data.store import open_store
    from ..evaluation.runs import load_run_model
    from ..evaluation.transfer import song_embeddings
    from ..inference.embed import load

    runs = [Path(r) for r in runs]
    concepts = {r: str(getattr(load_run_model(r, allow_unfinished=allow_unfinished)[1], "concept", ""))
                for r in runs}
    chosen = next((r for r in runs if concepts[r] == "joint"), runs[0])
    model = load(chosen, allow_unfinished=allow_unfinished)
    maps = []
    for s in (open_store(x) for x in stores):
        cols = {c: [t.get(c) for t in s.catalog] for c in ("artist", "genre")}
        cols = {c: v for c, v in cols.items() if any(v) and len(set(v)) > 1}
        if not cols:
            continue
        vec = song_embeddings(model, store=s, track_ids=s.track_ids)
        roles = split_roles(chosen, concept=concepts[chosen], track_ids=s.track_ids)
        maps.append(embedding_map(vec, labels=cols, name=f"{chosen.name} on {Path(s.path).name}",
                                  max_points=max_points, seed=seed, roles=roles))
    return maps

"""The report's figures (PNG, matplotlib): training curves, t-SNE maps, confusion matrices and sweep plots.

Each ``plot_*`` draws one figure from results already computed and saves it
atomically; :func:`figure_fonts` makes Korean, Japanese and Chinese labels
show as letters. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..concepts import PAPER_CONCEPTS as CONCEPTS
from ..evaluation.probe import trial_summary
from ..evaluation.maps import HELD_OUT, TRAIN, UNUSED, EmbeddingMap
from ..evaluation.sweep import SweepResult
from ..evaluation.sweep_plan import KINDS, format_value, value_order
from ..evaluation.baselines import DISPLAY
from ..evaluation.transfer import TransferResult
from ..io import atomic_path
from .tables import seed_axes, seed_values, sweep_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


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
    # deferred: matplotlib is slow to import and only figures need it
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


def _savefig(fig: Figure, path: Path) -> Path:
    # deferred: matplotlib is slow to import and only figures need it
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


def _plt() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    # deferred: matplotlib is slow to import and only figures need it
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


def _role_legend(roles: np.ndarray) -> tuple[list[Any], list[str]]:
    """Legend entries (handles, texts) for the roles present among a map's songs, with their counts."""
    # deferred: matplotlib is slow to import and only figures need it
    from matplotlib.lines import Line2D

    n = {r: int((roles == r).sum()) for r in (TRAIN, HELD_OUT, UNUSED)}
    marks = [(TRAIN, "o", "dimgrey", f"training song ({n[TRAIN]})"),
             (HELD_OUT, "o", "none", f"held out, valid/test ({n[HELD_OUT]})"),
             (UNUSED, ".", "dimgrey", f"not in the run's split ({n[UNUSED]})")]
    handles, texts = [], []
    for role, marker, face, text in marks:
        if n[role]:
            handles.append(Line2D([], [], linestyle="", marker=marker, markersize=3.5 if marker == "o" else 5,
                                  markerfacecolor=face, markeredgecolor="dimgrey"))
            texts.append(text)
    return handles, texts


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
        role_handles, role_texts = _role_legend(roles)
        handles, texts = handles + role_handles, texts + role_texts
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
        for d in result.datasets:
            tp = [(xi, p.transfers[d]) for xi, p in zip(x, pts) if d in p.transfers]
            ax.errorbar([xi for xi, _ in tp], [t["mean"] for _, t in tp], yerr=[t.get("std", 0.0) for _, t in tp],
                        marker="o", capsize=3, label=f"transfer ({d})")
        if any("valid_acc" in p.validation for p in pts):
            ax.plot(x, [p.validation.get("valid_acc", np.nan) for p in pts], marker="s", label="validation (selects)")
        for c in CONCEPTS:
            if all(c in p.holdout for p in pts):
                ax.plot(x, [p.holdout[c] for p in pts], marker=".", linestyle="--", label=f"hold-out {c} (test)")
        # the named kinds are counts (negatives, artists, games): a log2 axis; settings like margins: linear
        if numeric and result.kind in KINDS and len(set(x)) > 1 and min(x) > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(x, [format_value(p.value) for p in pts])
    _label_sweep(ax, result, ylabel="accuracy", title=f"({result.concept or 'joint'} model)")
    return _savefig(fig, path)


def _label_sweep(ax, result: SweepResult, *, ylabel: str, title: str) -> None:
    """A sweep figure's axis labels, grid, legend and title (``sweep: <what> <title>``)."""
    ax.set_xlabel(sweep_label(result))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"sweep: {sweep_label(result)} {title}")


@_figure
def plot_sweep_seeds(results: Sequence[SweepResult], *, path: Path) -> Path:
    """A sweep run with several seeds: each test figure's mean over seeds against the swept
    value, with its 95% interval (Student t over seeds) as the error bar; hold-out dashed."""
    plt = _plt()
    first = results[0]
    values, concepts, datasets = seed_axes(results)  # the rows and columns of its table
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    curves = [("holdout", c, f"hold-out {c} (test)", "--") for c in concepts]
    curves += [("transfer", d, f"transfer ({d})", "-") for d in datasets]
    for figure, name, label, style in curves:
        xs, means, lows, highs = [], [], [], []
        for v in values:
            vals = seed_values(results, value=v, figure=figure, name=name)
            if not vals:
                continue
            mean, _std, low, high = trial_summary(vals)
            xs.append(v)
            means.append(mean)
            lows.append(mean - (low if low is not None else mean))
            highs.append((high if high is not None else mean) - mean)
        if xs:
            ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, linestyle=style, label=label)
    if values and all(isinstance(v, (int, float)) and v > 0 for v in values) and len(values) > 1:
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [format_value(v) for v in values])
    _label_sweep(ax, first, ylabel="accuracy (mean over seeds, 95% interval)",
                 title=f"({first.concept or 'joint'} model, {len(results)} seeds)")
    return _savefig(fig, path)

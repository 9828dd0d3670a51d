"""The report's markdown: the paper's Tables 1-4, the retrieval table and the published numbers beside them.

Published numbers (Lee, Park & Nam 2019, as quoted in shared/DESIGN.md) are
shown beside ours only as clearly labelled references: they come from models
trained on the Million Song Dataset, not on our collection.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from ..concepts import JOINT, ordered
from ..concepts import PAPER_CONCEPTS as CONCEPTS
from ..evaluation.holdout import HoldoutResult
from ..evaluation.probe import ProbeResult, trial_summary
from ..evaluation.retrieval import RetrievalResult
from ..evaluation.sweep import SweepResult
from ..evaluation.sweep_plan import format_value, value_order
from ..evaluation.baselines import DISPLAY
from ..evaluation.transfer import TransferResult

PUBLISHED: dict[str, Any] = {
    "source": "Lee, Park & Nam 2019, published; MSD-trained, 5000 artists, 4 negatives",
    "holdout": {"joint": {"artist": 0.686, "album": 0.763, "track": 0.945}},
    "transfer": {"gtzan": {"joint": 0.745}, "fma_small": {"joint": 0.593}},
}
MODEL_ORDER: tuple[str, ...] = (*CONCEPTS, JOINT)
TABLE2_BASELINES: tuple[str, ...] = ("genres", "random", "mfcc", "logmel")


def _fmt(x: float | None, std: float | None = None) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.3f}" if std is None else f"{x:.3f} ± {std:.3f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def model_order(names: Sequence[str]) -> list[str]:
    """``names`` with the paper's models first (artist, album, track, joint), then the others as given."""
    known = [m for m in MODEL_ORDER if m in names]
    return known + [m for m in names if m not in known]


def table1(holdout: HoldoutResult) -> str:
    """Table 1: rows = models (artist/album/track/joint), columns = concepts, with song-bootstrap intervals."""
    concepts = ordered(holdout.concepts)  # the paper's first, then column concepts
    rows = [[f"{m}"] + [holdout.cell(m, c) if c in holdout.accuracy[m] else "–" for c in concepts]
            for m in model_order(holdout.models)]
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
    models = model_order([m for r in results for m in r.methods if m not in TABLE2_BASELINES])
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


def _probe_cell(res: ProbeResult) -> str:
    """``mean ± std [95% interval]`` of a probe's trials (``mean (1 trial)`` for one)."""
    if len(getattr(res, "accuracies", [])) == 1:
        return f"{_fmt(res.accuracy_mean)} (1 trial)"
    text = _fmt(res.accuracy_mean, res.accuracy_std)
    low, high = getattr(res, "ci95_low", None), getattr(res, "ci95_high", None)
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def sweep_label(result: SweepResult) -> str:
    """What a sweep varies, as its table and figure name it (``negatives N``, ``artists``, ``games``, a setting)."""
    return {"negatives": "negatives N", "artists": "artists", "games": "games"}.get(
        result.kind, result.field or result.kind)


def table_sweep(result: SweepResult) -> str:
    """Tables 3/4 and grids: one row per value: validation accuracy (which selects), then test figures."""
    concepts = ordered({c for p in result.points for c in p.holdout})
    datasets = result.datasets
    header = ["", sweep_label(result), "valid acc (selects)" if result.selectable else "valid acc"]
    header += [f"transfer ({d})" for d in datasets]
    header += [f"hold-out {c}" for c in concepts]
    rows = []
    chosen = result.selected_point
    for p in sorted(result.points, key=lambda p: value_order(p.value)):
        mark = "**→**" if p is chosen else ""
        if p.status != "done":
            rows.append([mark, format_value(p.value), f"failed: {p.error}"] + ["–"] * (len(header) - 3))
            continue
        row = [mark, format_value(p.value), _fmt(p.validation.get("valid_acc"))]
        row += [_fmt(p.transfers[d].get("mean"), p.transfers[d].get("std")) if d in p.transfers else "–"
                for d in datasets]
        rows.append(row + [_fmt(p.holdout.get(c)) for c in concepts])
    text = _md_table(header, rows)
    if chosen is not None:
        text += (f"\n\nSelected by validation accuracy (never by test): {sweep_label(result)} = "
                 f"{format_value(chosen.value)}.")
        if concepts or datasets:
            text += " The hold-out and transfer columns are test figures: shown, never used to select."
    if not result.selectable:
        text += (f"\n\nNothing is selected: {sweep_label(result)} changes the validation task (chance level or "
                 "validation songs), so the validation accuracies are not comparable across rows.")
    for w in result.warnings():
        text += f"\n\n**Warning:** {w}"
    return text


def sweep_groups(sweeps: Sequence[SweepResult]) -> list[list[SweepResult]]:
    """Sweeps of one setting and model run with different seeds, together (first seen first)."""
    groups: dict[tuple, list[SweepResult]] = {}
    for s in sweeps:
        groups.setdefault((s.kind, s.field, s.concept), []).append(s)
    return list(groups.values())


def seed_summary(values: Sequence[float]) -> str:
    """``mean [95% interval]`` over seeds (Student t), ``mean (1 seed)`` for one value."""
    if not values:
        return "–"
    mean, _std, low, high = trial_summary(values)
    return f"{mean:.3f} (1 seed)" if low is None else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def seed_values(results: Sequence[SweepResult], *, value: Any, figure: str, name: str) -> list[float]:
    """One figure per seed at ``value``: ``figure`` "holdout" (concept ``name``) or "transfer" (dataset ``name``)."""
    out = []
    for r in results:
        for p in r.points:
            if p.status != "done" or p.value != value:
                continue
            x = p.holdout.get(name) if figure == "holdout" else p.transfers.get(name, {}).get("mean")
            if x is not None and np.isfinite(x):
                out.append(float(x))
    return out


def seed_axes(results: Sequence[SweepResult]) -> tuple[list[Any], list[str], list[str]]:
    """What a sweep run over seeds shows: (values some seed finished, in value order; hold-out
    concepts, paper's first; transfer datasets, first seen first)."""
    values = sorted({p.value for r in results for p in r.points if p.status == "done"}, key=value_order)
    concepts = ordered({c for r in results for p in r.points for c in p.holdout})
    datasets = list(dict.fromkeys(d for r in results for d in r.datasets))
    return values, concepts, datasets


def _drawn(result: SweepResult) -> str:
    """What a seed draws below the sweep's largest value: ``games`` for a games sweep, else ``artists``."""
    return "games" if result.kind == "games" else "artists"


def table_sweep_seeds(results: Sequence[SweepResult]) -> str:
    """One sweep over several seeds: per value, each test figure's mean over seeds and its 95% interval.

    The seeds draw different splits (and, below all artists, different artists), so
    the interval says how much the figure depends on which songs and artists
    trained, on top of the probe's own trials.
    """
    values, concepts, datasets = seed_axes(results)
    header = [sweep_label(results[0]), "seeds"] + [f"hold-out {c}" for c in concepts] \
        + [f"transfer ({d})" for d in datasets]
    rows = []
    for v in values:
        n = sum(1 for r in results for p in r.points if p.value == v and p.status == "done")
        rows.append([format_value(v), str(n)]
                    + [seed_summary(seed_values(results, value=v, figure="holdout", name=c)) for c in concepts]
                    + [seed_summary(seed_values(results, value=v, figure="transfer", name=d)) for d in datasets])
    text = _md_table(header, rows)
    seeds = ", ".join(str(r.seed) for r in results)
    t = float(stats.t.ppf(0.975, df=max(len(results) - 1, 1)))
    text += (f"\n\nEach cell: the mean over the training seeds ({seeds}) of the point's test figure, and the "
             f"Student-t 95% interval of that mean (with {len(results)} seeds the interval is wide: t = {t:.2f}). "
             "Each seed draws "
             f"its own split and, below all {_drawn(results[0])}, its own {_drawn(results[0])}; a transfer figure "
             "is itself the mean of the probe's trials. Test figures only: nothing is selected from this table.")
    failed = [f"seed {r.seed}, {sweep_label(r)} = {format_value(p.value)}: {p.error}"
              for r in results for p in r.failed]
    if failed:
        text += "\n\n**Failed points:** " + "; ".join(failed)
    for r in results:
        for w in r.warnings():
            text += f"\n\n**Warning (seed {r.seed}):** {w}"
    return text


def table_retrieval(result: RetrievalResult) -> str:
    """Retrieval on held-out songs: rows = embedding spaces, columns = artist / album x mAP / P@k."""
    cols = result.columns()
    rows = [[s] + [result.cell(s, t, m) for t, m, _h in cols] for s in model_order(result.spaces)]
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


# --------------------------------------------------------------------------- report.md sections
# Each returns the lines it adds to report.md (joined with newlines), in the order the report shows them.


def title_lines(title: str, *, unfinished: Sequence[str]) -> list[str]:
    """The title, the unfinished-runs note (when any) and the note on published rows."""
    md = [f"# {title}", ""]
    if unfinished:
        md += ["**Unfinished runs:** the training of " + ", ".join(f"`{r}`" for r in unfinished)
               + " did not finish (no DONE); their numbers come from the best checkpoint so far, not from a "
               "finished run.", ""]
    md.append(f"Published numbers appear in *italic* rows, labelled “{PUBLISHED['source']}”: they are "
              "references from a different training collection, not results of this code.")
    return md


def holdout_section(holdout: HoldoutResult) -> list[str]:
    """Table 1 under its heading."""
    return ["", "## Table 1: hold-out positive/negative prediction", "", table1(holdout)]


def transfer_section(transfers: Sequence[TransferResult]) -> list[str]:
    """Table 2 under its heading, then one note per dataset (label column, split, counts, classes, warnings)."""
    columns = sorted({getattr(r, "label_column", "") or "genre" for r in transfers})
    label = " / ".join(columns)
    what = f"{label} classification" if len(transfers) == 1 else f"each dataset's classes (column {label})"
    md = ["", f"## Table 2: transfer to {what} (linear probe, test accuracy)",
          "", table2(transfers)]
    md.append("\nmean ± std over the probe's trials [95% interval of the mean, Student t].")
    for r in transfers:
        md.append(f"\n{r.dataset}: label column `{getattr(r, 'label_column', '') or 'genre'}`; split "
                  f"{r.split_source}; " + ", ".join(f"{k} {v}" for k, v in r.counts.items())
                  + f"; classes {', '.join(r.classes)}.")
        for w in getattr(r, "warnings", []):
            md.append(f"\n**Warning ({r.dataset}):** {w}")
        for c in getattr(r, "caveats", []):
            md.append(f"\n**Small test set ({r.dataset}):** {c}")
    md.append("\nMFCCs here are the type-II DCT of the stored log-mel (log10(1 + 10·mel)), first coefficients; "
              "'random encoder' is the same CNN with untrained weights and the same probe.")
    return md


def sweep_section(sweep: SweepResult | Sequence[SweepResult]) -> list[str]:
    """One sweep's table under its heading (Table 3 for negatives, Table 4 for artists, "Table 4,
    by games" for the number of training games); a sweep run with several seeds (a list) gets
    the table over seeds."""
    group = [sweep] if isinstance(sweep, SweepResult) else list(sweep)
    first = group[0]
    number = {"negatives": "3", "artists": "4", "games": "4, by games"}.get(first.kind)
    head = f"Table {number}: " if number else ""
    seeds = f", {len(group)} seeds" if len(group) > 1 else ""
    table = table_sweep(first) if len(group) == 1 else table_sweep_seeds(group)
    return ["", f"## {head}sweep over {sweep_label(first)} ({first.concept or 'joint'} model{seeds})", "", table]


def retrieval_section(retrieval: RetrievalResult) -> list[str]:
    """The retrieval table under its heading."""
    return ["", "## Retrieval: same-artist / same-album songs among nearest neighbours (held-out songs)", "",
            table_retrieval(retrieval)]


def figure_section(figures: Mapping[str, str], *, roles_marked: bool) -> list[str]:
    """Links to the figures (``key -> path relative to report.md``); none without figures.

    ``roles_marked``: some t-SNE map marks the run's training and held-out songs (a legend line says how).
    """
    if not figures:
        return []
    md = ["", "## Figures", ""]
    if roles_marked:
        md += ["In the t-SNE maps, filled dots are the run's training songs, hollow rings its held-out "
               "(validation and test) songs, small dots songs its split does not use.", ""]
    return md + [f"![{key}]({rel})" for key, rel in figures.items()]


def notes_section(notes: Sequence[str]) -> list[str]:
    """The extra paragraphs at the end of the report; none without notes."""
    return ["", "## Notes", ""] + list(notes) if notes else []

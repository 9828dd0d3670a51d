"""The report folder: ``report.md``, ``results.json`` and ``figures/*.png``, written under the folder's lock.

:func:`render_results` reads the result files (:mod:`musicrep.evaluation.results`)
and renders them; the main job's report stage and ``musicrep report`` both go
through it. :func:`write_report` renders results already in memory.

A report that includes a run whose training did not finish (no ``DONE``; only
with ``allow_unfinished``) says so in a note right under its title, naming the
runs, and lists them in ``results.json`` under ``unfinished_runs``. Writing holds
:func:`musicrep.locks.folder_lock` on the report folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ..data.catalog import slugify
from ..evaluation.holdout import HoldoutResult
from ..evaluation.maps import EmbeddingMap
from ..evaluation.results import read_results
from ..evaluation.retrieval import RetrievalResult
from ..evaluation.sweep import SweepResult
from ..evaluation.transfer import TransferResult
from ..io import atomic_write_json, atomic_write_text
from ..locks import folder_lock
from ..training.checkpoint import unfinished_run
from .figures import plot_confusion, plot_curves, plot_map, plot_sweep, plot_sweep_seeds
from .tables import (
    PUBLISHED,
    TABLE2_BASELINES,
    figure_section,
    holdout_section,
    model_order,
    notes_section,
    retrieval_section,
    sweep_groups,
    sweep_section,
    title_lines,
    transfer_section,
)

log = logging.getLogger(__name__)


def render_results(
    out_dir: str | Path,
    *,
    results_dir: str | Path,
    transfer_files: Sequence[str | Path] = (),
    sweep_dirs: Sequence[str | Path] = (),
    runs: Sequence[str | Path] = (),
    title: str = "musicrep report",
    notes: Sequence[str] = (),
) -> Path:
    """Read the result files (:func:`musicrep.evaluation.results.read_results`) and write the report.

    Parameters
    ----------
    out_dir : the report folder (created)
    results_dir : the folder of ``holdout.json``, ``maps.json`` and ``retrieval.json`` (each optional)
    transfer_files : ``transfer-<name>.json`` files, one Table 2 row each
    sweep_dirs : sweep folders for Tables 3 and 4
    runs : run folders whose ``metrics.csv`` give the training curves
    title, notes : see :func:`write_report`

    Returns
    -------
    Path of ``report.md``
    """
    results = read_results(results_dir, transfer_files=transfer_files, sweep_dirs=sweep_dirs)
    return write_report(out_dir, holdout=results.holdout, transfer=results.transfers, sweeps=results.sweeps,
                        runs=runs, maps=results.maps, notes=notes, title=title, retrieval=results.retrieval)


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
    maps : 2-D embedding maps (:func:`musicrep.evaluation.maps.embedding_map`), drawn once per label column
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
    transfers = [transfer] if isinstance(transfer, TransferResult) else list(transfer or [])
    with folder_lock(out_dir):
        return _write_report_locked(Path(out_dir), holdout=holdout, transfers=transfers, sweeps=sweeps, runs=runs,
                                    maps=maps, title=title, notes=notes, retrieval=retrieval)


def unfinished_runs(runs: Sequence[str | Path], *, holdout: HoldoutResult | None = None,
                    transfers: Sequence[TransferResult] = ()) -> list[str]:
    """The run folders among those a report shows whose training did not finish (no ``DONE``).

    Parameters
    ----------
    runs : run folders (training curves, or the runs of a ``musicrep report``)
    holdout, transfers : results whose ``runs`` name more run folders
    """
    named = [*runs, *(holdout.runs.values() if holdout is not None else ())]
    named += [r for t in transfers for r in getattr(t, "runs", {}).values()]
    found = (unfinished_run(r) for r in named if Path(r).exists())
    return list(dict.fromkeys(str(r) for r in found if r is not None))


class _Figures:
    """The figures a report draws into ``REPORT/figures/``: key -> path relative to the report, in drawing order."""

    def __init__(self, out: Path):
        self.out = out
        self.folder = out / "figures"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, str] = {}

    def png(self, name: str) -> Path:
        return self.folder / f"{name}.png"

    def add(self, key: str, path: Path | None) -> None:
        """Record a drawn figure (None: the plot had nothing to draw)."""
        if path is not None:
            self.paths[key] = str(path.relative_to(self.out))


def _confusion_methods(result: TransferResult) -> list[str]:
    """Whose confusion matrix a Table 2 row shows: its last model (joint when there is one) and the genres baseline."""
    models = [m for m in model_order(list(result.methods)) if m not in TABLE2_BASELINES]
    return ([models[-1]] if models else []) + [b for b in ("genres",) if b in result.methods]


def _draw_confusions(transfers: Sequence[TransferResult], figures: _Figures) -> None:
    for r in transfers:
        for method in _confusion_methods(r):
            name = f"confusion-{slugify(r.dataset)}-{slugify(method)}"
            figures.add(name, plot_confusion(r, method=method, path=figures.png(name)))


def _draw_runs_and_maps(runs: Sequence[str | Path], maps: Sequence[EmbeddingMap], figures: _Figures) -> None:
    """Each run's training curves, then each map once per label column."""
    for run in runs:
        name = Path(run).name
        figures.add(f"curves-{name}", plot_curves(run, path=figures.png(f"curves-{slugify(name)}")))
    for m in maps:
        for column in m.labels:
            figures.add(f"map-{m.name}-{column}",
                        plot_map(m, column=column, path=figures.png(f"map-{slugify(m.name)}-{slugify(column)}")))


def _write_report_locked(out: Path, *, holdout: HoldoutResult | None, transfers: list[TransferResult],
                         sweeps: Sequence[SweepResult], runs: Sequence[str | Path], maps: Sequence[EmbeddingMap],
                         title: str, notes: Sequence[str], retrieval: RetrievalResult | None) -> Path:
    figures = _Figures(out)
    unfinished = unfinished_runs(runs, holdout=holdout, transfers=transfers)
    md = title_lines(title, unfinished=unfinished)
    if holdout is not None:
        md += holdout_section(holdout)
    if transfers:
        md += transfer_section(transfers)
        _draw_confusions(transfers, figures)
    for group in sweep_groups(sweeps):
        md += sweep_section(group)
        kind = group[0].kind
        figures.add(f"sweep-{kind}", plot_sweep(group[0], path=figures.png(f"sweep-{slugify(kind)}"))
                    if len(group) == 1 else plot_sweep_seeds(group, path=figures.png(f"sweep-{slugify(kind)}")))
    if retrieval is not None:
        md += retrieval_section(retrieval)
    _draw_runs_and_maps(runs, maps, figures)
    md += figure_section(figures.paths, roles_marked=any(m.roles is not None for m in maps))
    md += notes_section(notes)
    atomic_write_text(out / "report.md", text="\n".join(md) + "\n")
    atomic_write_json(out / "results.json", obj={
        "holdout": holdout.to_dict() if holdout is not None else None,
        "transfer": [r.to_dict() for r in transfers],
        "sweeps": [s.to_dict() for s in sweeps],
        "retrieval": retrieval.to_dict() if retrieval is not None else None,
        "runs": [str(r) for r in runs],
        "unfinished_runs": unfinished,
        "figures": figures.paths,
        "published": PUBLISHED,
    })
    log.info("report written to %s", out / "report.md")
    return out / "report.md"

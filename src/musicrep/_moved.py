"""Old import paths of modules that moved into the stage packages (0.1 -> 0.2).

Until 0.1 every module sat at the top of the package (``musicrep.audio``,
``musicrep.store``, ...). Those paths still import, with a ``DeprecationWarning``
that names the new home: an old module whose names all live in one module now is
that module (the same object); one whose names were spread over several (e.g.
``musicrep.store``: reading in ``data.store``, preparing in ``data.prepare``) is
a read-only view that looks each name up in its new modules in order. Old
subpackages (``musicrep.datasets``, ``musicrep.corpus``) map with their
submodules. Gone: ``musicrep.report`` is now the report package (``build_report``
became ``evaluation.results.produce_results`` + ``report.write.render_results``),
and ``transfer.transfer_store`` is ``data.prepare.open_or_prepare``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old subpackages: their submodules moved with them.
MOVED_PACKAGES: dict[str, str] = {
    "musicrep.datasets": "musicrep.data.datasets",
    "musicrep.corpus": "musicrep.data.corpus",
}

#: Old module -> the modules that now hold its public names, searched in order
#: (generated from the 0.1 tree by listing where each public name is defined now).
MOVED: dict[str, tuple[str, ...]] = {
    "musicrep.audio": ("musicrep.data.audio", "musicrep.data.decoder_capture"),
    "musicrep.baselines": ("musicrep.evaluation.baselines",),
    "musicrep.catalog": ("musicrep.data.catalog",),
    "musicrep.checkpoint": ("musicrep.training.checkpoint",),
    "musicrep.embed": (
        "musicrep.inference.embed",
        "musicrep.inference.store_embeddings",
        "musicrep.errors",
        "musicrep.inference.discovery",
        "musicrep.inference.batching",
    ),
    "musicrep.embed_catalog": ("musicrep.inference.embed_catalog",),
    "musicrep.embed_job": ("musicrep.inference.embed_job", "musicrep.errors", "musicrep.inference.discovery"),
    "musicrep.evaluate": (
        "musicrep.evaluation.holdout",
        "musicrep.evaluation.trials",
        "musicrep.evaluation.probe",
        "musicrep.concepts",
        "musicrep.evaluation.provenance",
    ),
    "musicrep.export": ("musicrep.inference.export", "musicrep.errors"),
    "musicrep.features": ("musicrep.data.features",),
    "musicrep.index": (
        "musicrep.inference.index",
        "musicrep.inference.faiss_index",
        "musicrep.errors",
        "musicrep.inference.index_build",
    ),
    "musicrep.index_build": ("musicrep.inference.index_build",),
    "musicrep.losses": ("musicrep.training.losses",),
    "musicrep.model": ("musicrep.training.model",),
    "musicrep.outputs": ("musicrep.inference.outputs", "musicrep.errors"),
    "musicrep.pretrained": ("musicrep.inference.pretrained",),
    "musicrep.probe": ("musicrep.evaluation.probe", "musicrep.evaluation.probe_fit"),
    "musicrep.profiles": ("musicrep.training.profiles",),
    "musicrep.provenance": ("musicrep.evaluation.provenance",),
    "musicrep.resident": ("musicrep.training.resident",),
    "musicrep.retrieval": (
        "musicrep.evaluation.retrieval",
        "musicrep.evaluation.ranking",
        "musicrep.evaluation.baselines",
        "musicrep.evaluation.retrieval_settings",
        "musicrep.evaluation.tagging",
        "musicrep.evaluation.tag_metrics",
    ),
    "musicrep.runs": ("musicrep.evaluation.runs",),
    "musicrep.sampling": ("musicrep.training.sampling", "musicrep.training.loader"),
    "musicrep.shards": ("musicrep.data.shards", "musicrep.data.merge"),
    "musicrep.splits": ("musicrep.data.splits",),
    "musicrep.store": (
        "musicrep.data.store",
        "musicrep.data.store_files",
        "musicrep.data.prepare",
        "musicrep.data.shards",
        "musicrep.data.prepare_workers",
        "musicrep.data.features",
    ),
    "musicrep.sweep": ("musicrep.evaluation.sweep", "musicrep.evaluation.sweep_plan"),
    "musicrep.tagging": ("musicrep.evaluation.tagging", "musicrep.evaluation.tag_metrics"),
    "musicrep.train": (
        "musicrep.training.train",
        "musicrep.training.settings",
        "musicrep.training.resume",
        "musicrep.training.steps",
    ),
    "musicrep.transfer": (
        "musicrep.evaluation.transfer",
        "musicrep.evaluation.provenance",
        "musicrep.evaluation.song_vectors",
    ),
}


class MovedModule(ModuleType):
    """An old module whose names now live in several modules: each looked up in order."""

    def __init__(self, name: str, homes: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved: the names of {name} now live in {', '.join(homes)}.")
        self.__homes = tuple(importlib.import_module(h) for h in homes)

    def __getattr__(self, name: str) -> object:
        for home in self.__homes:
            if hasattr(home, name):
                return getattr(home, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (it moved: see musicrep._moved)")

    def __dir__(self) -> list[str]:
        return sorted({n for home in self.__homes for n in dir(home)})


def new_home(fullname: str) -> str | tuple[str, ...] | None:
    """Where an old module path points now: one module name, several, or None if it did not move."""
    if fullname in MOVED:
        homes = MOVED[fullname]
        return homes[0] if len(homes) == 1 else homes
    for old, new in MOVED_PACKAGES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old module path to the module(s) at its new home."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if new_home(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        home = new_home(spec.name)
        named = home if isinstance(home, str) else ", ".join(home)
        warnings.warn(f"{spec.name} moved to {named}; import it from there", DeprecationWarning, stacklevel=2)
        if isinstance(home, str):
            # The import system keeps an existing module's own __name__ and __spec__,
            # so the old path is an alias of the one module object, not a copy.
            return importlib.import_module(home)
        return MovedModule(spec.name, home)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: :meth:`create_module` returned the module."""


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once.

    First, so that ``musicrep.corpus.games`` resolves to the one
    ``musicrep.data.corpus.games`` instead of the path finder loading a second
    copy through the aliased package's ``__path__``; it claims only old paths.
    """
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())

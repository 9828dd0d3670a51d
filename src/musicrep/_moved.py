"""Old import paths of modules that moved into the stage packages (0.1 -> 0.2).

Until 0.1 every module sat at the top of the package (``musicrep.audio``,
``musicrep.store``, ...). ``import musicrep.store`` still works: it returns the
module at its new home (``musicrep.data.store``) and warns once with a
``DeprecationWarning`` that names it. Only the modules that existed then are
mapped; names inside a module are where they were unless the map below says
otherwise.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old module -> the module that now holds what users imported from it.
MOVED: dict[str, str] = {
    "musicrep.audio": "musicrep.data.audio",
    "musicrep.features": "musicrep.data.features",
    "musicrep.catalog": "musicrep.data.catalog",
    "musicrep.store": "musicrep.data.store",
    "musicrep.shards": "musicrep.data.shards",
    "musicrep.splits": "musicrep.data.splits",
    "musicrep.datasets": "musicrep.data.datasets",
    "musicrep.corpus": "musicrep.data.corpus",
    "musicrep.model": "musicrep.training.model",
    "musicrep.losses": "musicrep.training.losses",
    "musicrep.sampling": "musicrep.training.sampling",
    "musicrep.resident": "musicrep.training.resident",
    "musicrep.checkpoint": "musicrep.training.checkpoint",
    "musicrep.train": "musicrep.training.train",
    "musicrep.profiles": "musicrep.training.profiles",
    "musicrep.runs": "musicrep.evaluation.runs",
    "musicrep.evaluate": "musicrep.evaluation.holdout",
    "musicrep.transfer": "musicrep.evaluation.transfer",
    "musicrep.probe": "musicrep.evaluation.probe",
    "musicrep.baselines": "musicrep.evaluation.baselines",
    "musicrep.retrieval": "musicrep.evaluation.retrieval",
    "musicrep.tagging": "musicrep.evaluation.tagging",
    "musicrep.sweep": "musicrep.evaluation.sweep",
    "musicrep.provenance": "musicrep.evaluation.provenance",
    "musicrep.embed": "musicrep.inference.embed",
    "musicrep.embed_job": "musicrep.inference.embed_job",
    "musicrep.embed_catalog": "musicrep.inference.embed_catalog",
    "musicrep.outputs": "musicrep.inference.outputs",
    "musicrep.index": "musicrep.inference.index",
    "musicrep.index_build": "musicrep.inference.index_build",
    "musicrep.export": "musicrep.inference.export",
    "musicrep.pretrained": "musicrep.inference.pretrained",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old module path to the module at its new home."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED or MOVED[fullname] == fullname:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        # The import system keeps an existing module's own __name__ and __spec__,
        # so the old path is an alias of the one module object, not a copy.
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: :meth:`create_module` returned the imported module."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the normal finders)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())

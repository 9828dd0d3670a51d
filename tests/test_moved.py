"""Old module paths (before the stage packages) still import, as the same module, with a warning."""

import importlib
import sys

import pytest

from musicrep import _moved


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_path_is_the_module_at_its_new_home(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {_moved.MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(_moved.MOVED[old])


def test_the_readme_imports_of_0_1_still_work():
    for old in ("musicrep.audio", "musicrep.features", "musicrep.index", "musicrep.store"):
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        from musicrep.audio import load_audio
        from musicrep.features import log_mel
        from musicrep.index import SearchIndex
        from musicrep.store import FeatureStore
    assert callable(load_audio) and callable(log_mel) and SearchIndex.__name__ == "SearchIndex"
    assert FeatureStore.__module__.startswith("musicrep.data.")


def test_a_module_that_never_existed_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("musicrep.no_such_module")

"""Old module paths (before the stage packages) still import, with a warning naming the new home."""

import importlib
import sys

import pytest

from musicrep import _moved


def _fresh(name):
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_path_gives_its_names_from_their_new_homes(old):
    _fresh(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to "):
        module = importlib.import_module(old)
    homes = [importlib.import_module(h) for h in _moved.MOVED[old]]
    if len(homes) == 1:
        assert module is homes[0]
    else:
        public = [n for n in dir(homes[0]) if not n.startswith("_")]
        assert public and all(getattr(module, n) is getattr(homes[0], n) for n in public)
        assert set(public) <= set(dir(module))


def test_names_that_moved_to_another_module_are_still_found():
    _fresh("musicrep.store")
    _fresh("musicrep.index")
    _fresh("musicrep.embed")
    with pytest.warns(DeprecationWarning):
        from musicrep.embed import embed_store, find_audio
        from musicrep.index import build_faiss
        from musicrep.store import FeatureStore, prepare
    from musicrep.data.prepare import prepare as new_prepare
    from musicrep.data.store import FeatureStore as NewFeatureStore
    from musicrep.inference.discovery import find_audio as new_find_audio
    from musicrep.inference.faiss_index import build_faiss as new_build_faiss
    from musicrep.inference.store_embeddings import embed_store as new_embed_store
    assert (prepare, FeatureStore, find_audio, build_faiss, embed_store) == (
        new_prepare, NewFeatureStore, new_find_audio, new_build_faiss, new_embed_store)


def test_the_readme_imports_of_0_1_still_work():
    for old in ("musicrep.audio", "musicrep.features", "musicrep.index", "musicrep.store"):
        _fresh(old)
    with pytest.warns(DeprecationWarning):
        from musicrep.audio import load_audio
        from musicrep.features import log_mel
        from musicrep.index import SearchIndex
        from musicrep.store import FeatureStore
    assert callable(load_audio) and callable(log_mel) and SearchIndex.__name__ == "SearchIndex"
    assert FeatureStore.__module__ == "musicrep.data.store"


def test_an_old_subpackage_maps_with_its_submodules_to_one_copy():
    _fresh("musicrep.corpus")
    with pytest.warns(DeprecationWarning) as caught:
        old = importlib.import_module("musicrep.corpus.games")
    assert "musicrep.corpus.games moved to musicrep.data.corpus.games" in {str(w.message).split(";")[0] for w in caught}
    assert old is importlib.import_module("musicrep.data.corpus.games")


def test_a_name_that_never_existed_is_an_attribute_error_and_a_module_an_import_error():
    _fresh("musicrep.store")
    with pytest.warns(DeprecationWarning):
        store = importlib.import_module("musicrep.store")
    with pytest.raises(AttributeError, match="no_such_name"):
        store.no_such_name
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("musicrep.no_such_module")

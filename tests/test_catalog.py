import pytest

from musicrep.data.catalog import Catalog, Track, read_csv, slugify
from musicrep.errors import CatalogError


def test_csv_round_trip_keeps_extras_and_resolves_paths(tmp_path):
    cat = Catalog([
        Track("a", "music/a b.flac", artist="Ünïcode", album="X, Y", title="T\"q\"", genre="folk", duration=31.5, extra={"split": "train"}),
        Track("b", "/abs/b.wav", artist="עברית", extra={"split": "test"}),
    ])
    path = cat.write_csv(tmp_path / "cat.csv")
    back = read_csv(path)
    assert back.track_ids == ["a", "b"]
    assert back[0].path == str(tmp_path / "music/a b.flac")
    assert back[1].path == "/abs/b.wav"
    assert (back[0].album, back[0].title, back[0].duration) == ("X, Y", 'T"q"', 31.5)
    assert back[1].artist == "עברית" and back[1].duration is None
    assert back[0].extra == {"split": "train"}
    assert back.summary()["artists"] == {"Ünïcode": 1, "עברית": 1}


@pytest.mark.parametrize(
    "text,message",
    [
        ("path,artist\nx.wav,A\n", "missing column.*track_id"),
        ("track_id,path\na,x.wav\na,y.wav\n", "duplicate track_id 'a'"),
        ("track_id,path\na,x.wav,extra\n", "3 fields but the header has 2"),
        ("track_id,path,duration\na,x.wav,long\n", "duration 'long'"),
        ("track_id,path\n,x.wav\n", "empty track_id"),
        ("track_id,path\na,\n", "empty path"),
    ],
)
def test_malformed_csv(tmp_path, text, message):
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(CatalogError, match=message):
        read_csv(path)


def test_missing_and_non_utf8(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        read_csv(tmp_path / "none.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes("track_id,path,artist\na,x.wav,Bj\xf6rk\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        read_csv(path)


def test_slugify():
    assert slugify("Joseph Toscano / Zhaytee!") == "joseph-toscano-zhaytee"
    assert slugify("Ólafur Arnalds") == "ólafur-arnalds"  # accents are letters, kept
    assert slugify("헤로즈/01 영웅") == "헤로즈-01-영웅"
    assert slugify("???") == "x"

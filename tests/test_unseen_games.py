"""Games held out of metadata training become transfer targets (label = game; unseen composers)."""

from __future__ import annotations

import pytest

from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.data.corpus.unseen import TARGET_FILES, TRAIN_FILE, split_off_games, write_unseen
from musicrep.errors import CorpusError


def _catalog(composer_songs: int = 5) -> list[Track]:
    rows = []
    layout = {  # package -> [(artist, songs)]
        "heroes-sound-tracks": [("Alexandre Liverneaux", composer_songs), ("", 3)],
        "drascula-music": [("", 6)],
        "pekka-kana-2-data": [("Pekka Composer", composer_songs), ("Shared Composer", 2)],
        "ufoai-music": [("Simon Green", 8), ("Shared Composer", 5)],
    }
    for package, parts in layout.items():
        for artist, n in parts:
            for k in range(n):
                tid = f"{package}--{artist or 'unknown'}-{k}"
                rows.append(Track(track_id=tid, path=f"audio/{package}/{tid}.flac", artist=artist, album=package,
                                  extra={"package": package}))
    return rows


def test_held_out_games_leave_training_and_are_labelled_by_game_and_unseen_composer():
    cat = _catalog()
    out = split_off_games(cat, packages=["heroes-sound-tracks", "drascula-music", "pekka-kana-2-data"])
    assert {t.get("package") for t in out.train} == {"ufoai-music"}
    assert len(out.train) + len(out.targets["soundtracks"]) == len(cat)
    games = {t.genre for t in out.targets["soundtracks"]}
    assert games == {"Heroes", "Drascula: The Vampire Strikes Back", "Pekka Kana 2"}
    # the composer who also wrote for a game left in training is not unseen
    composers = {t.genre for t in out.targets["composers"]}
    assert composers == {"Alexandre Liverneaux", "Pekka Composer"}
    assert all(t.artist == t.genre for t in out.targets["composers"])


def test_no_composer_target_without_two_composers_with_enough_songs():
    out = split_off_games(_catalog(composer_songs=4), packages=["heroes-sound-tracks", "pekka-kana-2-data"])
    assert set(out.targets) == {"soundtracks"}
    assert any("no unseen-composer target" in n and "Shared Composer" in n for n in out.notes)


@pytest.mark.parametrize("packages,message", [(["nope", "drascula-music"], "nope not in the corpus"),
                                              (["drascula-music"], "at least two games")])
def test_bad_package_lists_are_refused(packages, message):
    with pytest.raises(CorpusError, match=message):
        split_off_games(_catalog(), packages=packages)


def test_write_unseen_keeps_relative_paths_and_removes_a_stale_target(tmp_path):
    Catalog(_catalog()).write_csv(tmp_path / "catalog.csv")
    paths = write_unseen(tmp_path, packages=["heroes-sound-tracks", "pekka-kana-2-data"])
    assert set(paths) == {"train", "soundtracks", "composers"}
    assert paths["train"] == tmp_path / TRAIN_FILE
    raw = read_csv(paths["soundtracks"], resolve_paths=False)
    assert all(t.path.startswith("audio/") for t in raw)
    first = read_csv(paths["train"])[0]  # resolved against the corpus folder, as its own catalog is
    assert first.path == str(tmp_path / "audio" / first.get("package") / f"{first.track_id}.flac")
    again = write_unseen(tmp_path, packages=["heroes-sound-tracks", "drascula-music"])  # one composer only
    assert "composers" not in again and not (tmp_path / TARGET_FILES["composers"]).exists()

"""Any catalog column as a concept: a record-label model, and a joint model over four concepts."""

from __future__ import annotations

import dataclasses

import pytest

from musicrep.data.catalog import Catalog, read_csv
from musicrep.cli.train import _joint_overrides
from musicrep.concepts import COLUMN_MARGIN, concept_key, concept_label, ordered
from musicrep.config import load_config
from musicrep.errors import ConfigError, SplitError
from musicrep.evaluation.holdout import holdout_runs
from musicrep.data.splits import held_out_overlap, make_splits
from musicrep.data.prepare import prepare
from musicrep.data.store import FeatureStore
from musicrep.testing import synth_collection
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

# 6 artists x 2 albums x 5 songs; a record label signs two neighbouring artists, so
# labels are audible through their artists' timbres (3 labels, 20 songs each)
SMALL = ["songs_per_artist=6", "songs_per_album=5", "negatives=4", "batch_size=16", "valid_batches=4",
         "tensorboard=false", "seed=0", "threads=1", "songs_per_value=12", "value_valid=2", "value_test=3",
         "width=32", "steps_per_epoch=15"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    catalog = read_csv(synth_collection(root / "audio", n_artists=6, albums_per_artist=2, songs_per_album=5,
                                        seconds=8.0, seed=0))
    tracks = [dataclasses.replace(t, extra={**t.extra, "label": f"Label {int(t.artist[-2:]) // 2}"}) for t in catalog]
    csv_path = Catalog(tracks, source="synth").write_csv(root / "audio" / "labelled.csv")
    return FeatureStore(prepare(read_csv(csv_path), out_dir=root / "store", workers=2).path)


def _config(*more: str) -> TrainConfig:
    return load_config(TrainConfig, path=None, overrides=SMALL + list(more))


def test_a_column_label_is_read_from_the_catalog_and_keys_are_stable(labelled):
    track = labelled.catalog[0]
    assert concept_label(track, concept="label") == "Label 0" and concept_label(track, concept="track") == track.track_id
    assert concept_key("artist") == 0 and concept_key("track") == 2
    assert concept_key("label") == concept_key("label") > 2 and concept_key("label") != concept_key("year")
    assert ordered({"label", "track", "artist", "composer"}) == ["artist", "track", "composer", "label"]


def test_a_column_split_keeps_every_part_the_paper_splits_gave(labelled):
    c = _config("concept=label")
    paper = make_splits(catalog=labelled.catalog, concepts=("artist",), songs_per_artist=6, songs_per_album=5, seed=0)
    splits = make_splits(catalog=labelled.catalog, concepts=("label",), songs_per_artist=6, songs_per_album=5, seed=0,
                         songs_per_value=c.songs_per_value, value_valid=2, value_test=3)
    assert {k: v.rows for k, v in paper.items()} == {k: v.rows for k, v in splits.items() if k != "label"}
    assert splits["label"].n_labels == 3
    assert held_out_overlap(splits) == {}  # nothing one concept holds out is another's training song
    with pytest.raises(SplitError, match="no track has a 'year' value"):
        make_splits(catalog=labelled.catalog, concepts=("year",), songs_per_artist=6, songs_per_album=5)


def test_a_label_model_predicts_held_out_labels_well_above_chance(labelled, tmp_path):
    run = train(labelled.path, out_dir=tmp_path / "label", config=_config("concept=label", "epochs=3"))
    assert (run / "split" / "label.csv").is_file()
    result = holdout_runs([run], store=labelled, n_trials=200)
    assert "label" in result.concepts
    assert result.accuracy["label"]["label"] >= 0.45, result.table()  # chance with 4 negatives: 0.2


def test_a_joint_model_over_four_concepts_has_four_holdout_columns(labelled, tmp_path):
    settings = _joint_overrides("artist,album,label,track", "0.4,0.25,0.3,0.1")
    config = _config(*settings, "epochs=1")
    assert config.concepts == ("artist", "album", "label", "track")
    assert config.margin("label") == 0.3 and config.margin("artist") == 0.4 and config.margin("track") == 0.1
    run = train(labelled.path, out_dir=tmp_path / "joint", config=config)
    result = holdout_runs([run], store=labelled, n_trials=50)
    assert result.concepts == ["artist", "album", "track", "label"]
    assert all(c in result.table() for c in ("artist", "album", "track", "label"))


def test_concept_settings_are_checked():
    assert _config("concept=composer").margin("composer") == COLUMN_MARGIN
    for bad, message in [("concept=path", "concept 'path'"), ("concept=joint", None),
                         ("column_margins=label", "COLUMN=MARGIN"), ("column_margins=artist=0.3", "margin_artist"),
                         ("joint=artist", "at least two")]:
        if message is None:
            assert _config(bad).concepts == ("artist", "album", "track")  # the paper's joint model
            continue
        with pytest.raises(ConfigError, match=message):
            _config(*(["concept=joint"] if bad.startswith("joint") else []), bad)
    with pytest.raises(SystemExit, match="2 value"):
        _joint_overrides("artist,label,track", "0.4,0.3")


def test_a_tagged_folder_keeps_label_composer_and_date_as_columns(tmp_path):
    from mutagen.id3 import TCOM, TDRC, TPE1, TPUB
    from test_datasets import tag_id3, write_audio

    from musicrep.data.datasets import from_folder
    from musicrep.testing import tag_file

    root = tmp_path / "lib"
    tag_file(write_audio(root / "a.flac"), artist="Nils Frahm", organization="Erased Tapes", composer="Nils Frahm",
             date="2013")
    tag_file(write_audio(root / "b.ogg"), artist="Ólafur Arnalds", label="Erased Tapes", year="2010")
    tag_id3(write_audio(root / "c.mp3"), [TPE1(encoding=3, text="Burial"), TPUB(encoding=3, text="Hyperdub"),
                                          TCOM(encoding=3, text="William Bevan"), TDRC(encoding=3, text="2007")])
    rows = {t.artist: t for t in from_folder(root)}
    assert {a: (t.get("label"), t.get("composer"), t.get("date")) for a, t in rows.items()} == {
        "Nils Frahm": ("Erased Tapes", "Nils Frahm", "2013"),
        "Ólafur Arnalds": ("Erased Tapes", "", "2010"),
        "Burial": ("Hyperdub", "William Bevan", "2007"),
    }
    assert concept_label(rows["Burial"], concept="label") == "Hyperdub"


def test_fma_keeps_label_and_year_as_columns(tmp_path):
    from test_datasets import fma_row, write_audio, write_fma_tracks_csv

    from musicrep.data.datasets import from_fma

    rows = [fma_row(2, "AWOL", "A Way Of Life", "Food", "Hip-Hop", "small", "training", album_id=1, artist_id=1,
                    **{"artist.associated_labels": "Fat Beats", "album.date_released": "2009-01-05 00:00:00"}),
            fma_row(3, "AWOL", "A Way Of Life", "Ave", "Hip-Hop", "small", "training", album_id=1, artist_id=1,
                    **{"track.publisher": "Stones Throw", "track.date_recorded": "11/26/2008"}),
            fma_row(5, "Nobody", "None", "Gone", "Rock", "small", "test", album_id=4, artist_id=4)]
    tracks_csv = write_fma_tracks_csv(tmp_path / "fma_metadata" / "tracks.csv", rows)
    for tid in (2, 3, 5):
        write_audio(tmp_path / "audio" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3", seconds=0.2)
    got = {t.track_id: (t.get("label"), t.get("year")) for t in from_fma(tracks_csv, audio_dir=tmp_path / "audio")}
    assert got == {"2": ("Fat Beats", "2009"), "3": ("Stones Throw", "2008"), "5": ("", "")}

"""Synthetic music collections whose artists, albums and songs differ audibly.

Used by the test suite and the benchmarks; never by the main job. Each artist
has its own timbre (harmonic roll-off and attack) and register, each album its
own tempo and brightness, each song its own melody and noise colour, so every
concept can in principle be learned from the audio alone.
"""

from __future__ import annotations

from pathlib import Path

import mutagen
import numpy as np
import soundfile as sf

from .data.catalog import Catalog, Track


def synth_song(
    *,
    artist: int, album: int, song: int, seconds: float = 8.0, sr: int = 22050, seed: int = 0
) -> np.ndarray:
    """One synthetic song, float32 mono in [-1, 1].

    Artist ``a`` sets the register (base pitch) and the harmonic roll-off;
    album ``b`` sets the tempo and a brightness tilt; song ``s`` draws the melody.
    """
    rng = np.random.default_rng([seed, artist, album, song])
    a_rng = np.random.default_rng([seed, artist, 10_000])
    b_rng = np.random.default_rng([seed, artist, album, 20_000])
    base = 110.0 * 2 ** (a_rng.integers(0, 24) / 12.0)
    rolloff = 0.35 + 0.6 * a_rng.random()
    n_harm = int(a_rng.integers(2, 9))
    attack = 0.005 + 0.08 * a_rng.random()
    tempo = 70 + 110 * b_rng.random()  # notes per minute
    bright = b_rng.random()
    scale = np.array([0, 2, 3, 5, 7, 8, 10, 12, 14, 15])
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n, dtype=np.float64)
    note_len = 60.0 / tempo
    n_notes = int(np.ceil(seconds / note_len))
    melody = rng.choice(scale, size=n_notes)
    for k in range(n_notes):
        start = int(k * note_len * sr)
        stop = min(n, int((k + 1) * note_len * sr))
        if start >= n:
            break
        seg_t = t[start:stop] - t[start]
        f0 = base * 2 ** (melody[k] / 12.0)
        env = np.minimum(seg_t / attack, 1.0) * np.exp(-seg_t * (1.5 + 3 * rolloff))
        tone = np.zeros_like(seg_t)
        for h in range(1, n_harm + 1):
            if f0 * h >= sr / 2:
                break
            tone += (rolloff ** (h - 1)) * (1 + bright * (h > 3)) * np.sin(2 * np.pi * f0 * h * seg_t)
        y[start:stop] += env * tone
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(1 + int(8 * (1 - bright))) / (1 + int(8 * (1 - bright))), mode="same")
    y += 0.02 * noise
    y /= np.max(np.abs(y)) + 1e-9
    return (0.8 * y).astype(np.float32)


def synth_collection(
    out_dir: str | Path,
    *,
    n_artists: int = 6,
    albums_per_artist: int = 2,
    songs_per_album: int = 5,
    seconds: float = 8.0,
    sr: int = 22050,
    seed: int = 0,
    genres: tuple[str, ...] = ("rock", "jazz", "folk"),
    fmt: str = "flac",
) -> Path:
    """Write a tagged-by-catalog synthetic collection and return its ``catalog.csv``.

    Folder layout ``Artist NN/Album NN/NN Song.<fmt>``; genre = artist index
    modulo ``len(genres)``, so genre is learnable through the artist's timbre.
    """
    out = Path(out_dir)
    tracks = []
    for a in range(n_artists):
        for b in range(albums_per_artist):
            folder = out / f"Artist {a:02d}" / f"Album {a:02d}-{b:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for s in range(songs_per_album):
                path = folder / f"{s + 1:02d} Song {s + 1}.{fmt}"
                if not path.exists():
                    y = synth_song(artist=a, album=b, song=s, seconds=seconds, sr=sr, seed=seed)
                    sf.write(path, y, sr)
                tracks.append(
                    Track(
                        track_id=f"a{a:02d}-b{b:02d}-s{s:02d}",
                        path=str(path.relative_to(out)),
                        artist=f"Artist {a:02d}",
                        album=f"Album {a:02d}-{b:02d}",
                        title=f"Song {s + 1}",
                        genre=genres[a % len(genres)] if genres else "",
                        duration=seconds,
                    )
                )
    return Catalog(tracks, source="synth").write_csv(out / "catalog.csv")


def tag_file(path: str | Path, **tags: str) -> None:
    """Write tags into an audio file with mutagen (Vorbis comments, ID3, ...).

    ``tag_file("a.flac", artist="X", album="Y")``; a file without a tag block
    gets one first.
    """
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    for key, value in tags.items():
        f.tags[key] = value
    f.save()

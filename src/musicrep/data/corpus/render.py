"""MIDI -> FluidSynth -> FLAC rendering shared by the symbolic corpora (folk tunes, classical scores).

Owns the per-piece instrument and tempo choice, the one-synthesizer-per-piece
renderer (run in worker processes), the pool that drives it, and the skip record
for a piece that failed or came out too short.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile

from ...errors import CorpusError
from ...io import atomic_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050

#: Melodic GM programs (0-based) a tune may be rendered with: keyboards, mallets,
#: organs, guitars, strings, brass, reeds, pipes. No drums, pads or effects.
PROGRAMS: tuple[int, ...] = (
    0, 1, 4, 6, 8, 11, 12, 13, 16, 19, 21, 22, 24, 25, 40, 41, 42, 46, 48, 56, 60,
    64, 65, 68, 69, 71, 73, 74, 75, 78, 105, 109, 110,
)
def render_choice(item_id: str, *, seed: int, tempo_jitter: float) -> tuple[int, float]:
    """(GM program, tempo factor) for a tune or piece, from its own generator seeded by ``seed`` and its id.

    The same piece renders the same way whichever subset of the corpus is built.
    """
    rng = np.random.default_rng([seed, zlib.crc32(item_id.encode())])
    return int(rng.choice(PROGRAMS)), float(rng.uniform(1 - tempo_jitter, 1 + tempo_jitter))


_SOUNDFONT: str | None = None


def _init_worker(soundfont: str) -> None:
    """Check once per process that FluidSynth loads the soundfont; remember its path."""
    global _SOUNDFONT
    synth, _ = _new_synth(soundfont)
    synth.delete()
    _SOUNDFONT = soundfont


def _new_synth(soundfont: str):
    """A fresh synthesizer with the soundfont loaded: ``(synth, soundfont id)``.

    Samples load on first use (``synth.dynamic-sample-loading``), so a synthesizer
    costs ~20 ms instead of ~130 ms for reading the whole 141 MB FluidR3 soundfont.
    """
    import fluidsynth  # deferred: optional (musicrep[corpus]) and loads libfluidsynth; only rendering needs it

    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
    synth.setting("synth.dynamic-sample-loading", 1)
    sfid = synth.sfload(soundfont)
    if sfid < 0:
        synth.delete()
        raise CorpusError(f"{soundfont}: FluidSynth cannot load this soundfont")
    return synth, sfid


# FluidSynth keeps state between calls: reverb and chorus buffers, the phase of its
# 64-sample blocks (note events land on block boundaries), the 16-bit writer's dither
# position and the filter state of recycled voices. So a tune rendered after another
# one differs from the same tune rendered first (measured: by up to 1.3 of a 0.9
# peak), and in a process pool which tune follows which is scheduling. Every tune
# therefore gets a fresh synthesizer and float output, and a corpus build gives the
# same audio on any number of workers.


def _write_float(synth, n: int) -> np.ndarray:
    """``n`` stereo frames as float32 ``[n, 2]``, without the 16-bit writer's dither."""
    import fluidsynth  # deferred: optional (musicrep[corpus]) and loads libfluidsynth; only rendering needs it

    left = (ctypes.c_float * n)()
    right = (ctypes.c_float * n)()
    fluidsynth._fl.fluid_synth_write_float(ctypes.c_void_p(synth.synth), n, left, 0, 1, right, 0, 1)
    return np.stack([np.frombuffer(left, np.float32), np.frombuffer(right, np.float32)], axis=1)


def synthesize(midi_path: Path, *, program: int, tempo: float, tail_s: float = 1.0) -> np.ndarray:
    """Render a MIDI file with the worker's synthesizer: float32 mono, peak 0.9.

    Deterministic: each call renders on its own fresh synthesizer, so the result does
    not depend on what was rendered before it in the same process.
    """
    import pretty_midi  # deferred: optional (musicrep[corpus]); only rendering needs it

    # music21 writes long scores at a fine resolution that trips pretty_midi's
    # "likely corrupt" check (1e7 ticks); such files are fine, so allow more.
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, 1e9)
    pm = pretty_midi.PrettyMIDI(str(midi_path))
    events = []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for note in inst.notes:
            events.append((note.start / tempo, 1, note.pitch, int(note.velocity)))
            events.append((note.end / tempo, 0, note.pitch, 0))
    if not events:
        raise CorpusError("the MIDI file holds no notes")
    events.sort(key=lambda e: (e[0], e[1]))
    synth, sfid = _new_synth(_SOUNDFONT)
    try:
        synth.program_select(0, sfid, 0, program)
        chunks, now = [], 0
        for time, on, pitch, vel in events:
            target = int(round(time * SAMPLE_RATE))
            if target > now:
                chunks.append(_write_float(synth, target - now))
                now = target
            synth.noteon(0, pitch, vel) if on else synth.noteoff(0, pitch)
        chunks.append(_write_float(synth, int(tail_s * SAMPLE_RATE)))
    finally:
        synth.delete()
    y = np.concatenate(chunks).mean(axis=1)
    peak = float(np.abs(y).max())
    if peak <= 0:
        raise CorpusError("the rendering is silent")
    return (0.9 * y / peak).astype(np.float32)


def render_to_flac(
    item_id: str, *, dest: Path, write_midi: Callable[[Path], None], program: int, tempo: float
) -> tuple[str, float | None, str]:
    """Render one piece to ``dest`` (22,050 Hz FLAC), unless it is already there.

    ``write_midi(path)`` writes the piece's MIDI file. Returns ``(item_id,
    duration in s or None, error)``: one bad piece is reported, never fatal.
    """
    try:
        if not dest.is_file():
            with tempfile.TemporaryDirectory(prefix="musicrep-midi-") as tmp:
                midi = Path(tmp) / "piece.mid"
                write_midi(midi)
                y = synthesize(midi, program=program, tempo=tempo)
            with atomic_path(dest, suffix=".flac") as tmp_out:
                soundfile.write(str(tmp_out), y, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        info = soundfile.info(str(dest))
        return item_id, info.frames / info.samplerate, ""
    except Exception as exc:  # one bad piece is logged and skipped, never fatal
        return item_id, None, str(exc) or type(exc).__name__


@contextlib.contextmanager
def render_pool(
    render: Callable[[tuple], tuple[str, float | None, str]], *, jobs: list, soundfont: Path, workers: int, chunksize: int
) -> Iterator[Iterator[tuple[str, float | None, str]]]:
    """``render(job)`` for each job, in order, each process with one synthesizer.

    ``workers > 1`` renders on that many processes; otherwise in this process.
    """
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(str(soundfont),))
        try:
            yield pool.map(render, jobs, chunksize=chunksize)
        finally:
            pool.shutdown()
    else:
        _init_worker(str(soundfont))
        yield map(render, jobs)


def rendered_skip(source: str, *, duration: float | None, error: str, min_seconds: float) -> dict | None:
    """The skip record of a rendered piece: its error, or that it is shorter than ``min_seconds``; None when usable.

    Parameters
    ----------
    source : the piece's provenance, written to the record
    duration : seconds of the rendering, None when it failed
    error : why it failed ("" when it did not)
    min_seconds : shorter renderings are left out
    """
    if duration is None:
        log.warning("%s: skipped (%s)", source, error)
        return {"source": source, "reason": f"error: {error}"}
    if duration < min_seconds:
        return {"source": source, "reason": f"shorter than {min_seconds:g} s"}
    return None

"""External tools the corpus needs, found or reported with what to install.

Every check raises :class:`~musicrep.errors.CorpusError` naming the Debian package
(and ``scripts/system-deps.sh``) when a tool is missing, so a user is never left
with a bare ``FileNotFoundError`` from deep inside a subprocess call.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from ...errors import CorpusError

log = logging.getLogger(__name__)

#: Where Debian's fluid-soundfont-gm and friends put a General MIDI soundfont.
SOUNDFONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)

_HINT = "run scripts/system-deps.sh (as root) or install it with apt-get"


def require_tool(name: str, *, package: str) -> str:
    """Return the full path of command ``name``; raise naming ``package`` if missing."""
    path = shutil.which(name)
    if path is None:
        raise CorpusError(
            f"the command {name!r} is not installed; the corpus needs the Debian package "
            f"{package!r} ({_HINT}: apt-get install -y {package})"
        )
    return path


def ffmpeg() -> str:
    """Path of ``ffmpeg`` (decodes every soundtrack format, tracker modules included)."""
    return require_tool("ffmpeg", package="ffmpeg")


def ffprobe() -> str:
    return require_tool("ffprobe", package="ffmpeg")


def abc2midi() -> str:
    """Path of ``abc2midi`` (Debian ``abcmidi``)."""
    return require_tool("abc2midi", package="abcmidi")


def find_soundfont(soundfont: str | Path | None = None) -> Path:
    """A General MIDI ``.sf2``: ``soundfont`` if given, ``$MUSICREP_SOUNDFONT``, the
    Debian locations, then the small TimGM6mb.sf2 bundled with pretty_midi."""
    candidates: list[str | Path] = []
    if soundfont:
        candidates.append(soundfont)
    if os.environ.get("MUSICREP_SOUNDFONT"):
        candidates.append(os.environ["MUSICREP_SOUNDFONT"])
    candidates.extend(SOUNDFONT_CANDIDATES)
    try:
        import pretty_midi  # deferred: optional (musicrep[corpus]); only its bundled soundfont is wanted here

        candidates.append(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    except ImportError:
        pass
    for cand in candidates:
        if Path(cand).is_file():
            return Path(cand)
    if soundfont:
        raise CorpusError(f"{soundfont}: soundfont file not found; pass an existing .sf2 file")
    raise CorpusError(
        "no General MIDI soundfont found; install the Debian package 'fluid-soundfont-gm' "
        f"({_HINT}) or set MUSICREP_SOUNDFONT to an .sf2 file"
    )


def require_fluidsynth() -> None:
    """Check that pyfluidsynth and the libfluidsynth it wraps can be loaded."""
    try:
        import fluidsynth  # noqa: F401  (deferred on purpose: importing it is the check)
    except ImportError as exc:  # ImportError also covers a missing libfluidsynth.so
        raise CorpusError(
            f"cannot load pyfluidsynth ({exc}); install the Python package with "
            "`pip install 'musicrep[corpus]'` and the Debian package 'libfluidsynth3' "
            f"({_HINT})"
        ) from None


def require_pretty_midi() -> None:
    """Check that pretty_midi (MIDI parsing for the renderer) is installed."""
    try:
        import pretty_midi  # noqa: F401  (deferred on purpose: importing it is the check)
    except ImportError as exc:
        raise CorpusError(f"cannot import pretty_midi ({exc}); install it with `pip install 'musicrep[corpus]'`") from None


def run(cmd: list[str], *, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run a command, capturing output; raise :class:`CorpusError` on failure."""
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CorpusError(f"{Path(cmd[0]).name} took longer than {timeout:.0f} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise CorpusError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc

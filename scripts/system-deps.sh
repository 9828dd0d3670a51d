#!/bin/sh
# Install the Debian packages musicrep's built-in corpus needs, never prompting.
#
#   ffmpeg             decodes the game soundtracks (tracker modules via libopenmpt)
#   abcmidi            abc2midi: folk tunes (ABC) -> MIDI
#   fluid-soundfont-gm a General MIDI soundfont for FluidSynth
#   libfluidsynth3     the synthesizer pyfluidsynth loads
#   fonts-wqy-microhei a font with CJK and Hangul glyphs for the report's figures (labels in any script)
#
# As root: installs what is missing (apt-get update only when apt has no package
# lists or cannot find a package). Not root: if something is missing, prints the
# exact command to run and exits 1. Exits 0 when everything is present.
# Usage: scripts/system-deps.sh [--check]   (--check: report only, install nothing)
set -eu

PACKAGES="${MUSICREP_SYSTEM_PACKAGES:-ffmpeg abcmidi fluid-soundfont-gm libfluidsynth3 fonts-wqy-microhei}"
CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: this is not a Debian/Ubuntu system (no dpkg/apt-get)." >&2
    echo "system-deps: install by hand: ffmpeg, abc2midi (abcmidi), a General MIDI .sf2 soundfont, libfluidsynth, a CJK font (WenQuanYi Micro Hei or Noto CJK)" >&2
    exit 1
fi

MISSING=""
for pkg in $PACKAGES; do
    installed "$pkg" || MISSING="$MISSING $pkg"
done
MISSING="${MISSING# }"

if [ -z "$MISSING" ]; then
    echo "system-deps: all present ($PACKAGES)"
    exit 0
fi

if [ "$CHECK_ONLY" = 1 ] || [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing Debian packages: $MISSING" >&2
    echo "system-deps: install them with:" >&2
    echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $MISSING" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need_update=0
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
    need_update=1
else
    for pkg in $MISSING; do
        apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
    done
fi
if [ "$need_update" = 1 ]; then
    echo "system-deps: apt-get update"
    apt-get update -q
fi
echo "system-deps: installing $MISSING"
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $MISSING
echo "system-deps: done"

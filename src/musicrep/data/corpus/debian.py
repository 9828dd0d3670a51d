"""Fetch and unpack Debian packages without installing them.

``apt-get download`` puts a ``.deb`` in a cache folder (the only network step);
``dpkg-deb -x`` unpacks it into a tree of its own. Both are skipped when their
result is already there, so a rerun costs nothing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from ...errors import CorpusError
from ...io import atomic_write_text
from . import tools

log = logging.getLogger(__name__)


def cached_deb(package: str, *, cache_dir: Path) -> Path | None:
    """The newest cached ``.deb`` of ``package`` in ``cache_dir``, if any."""
    hits = sorted(Path(cache_dir).glob(f"{package}_*.deb"))
    return hits[-1] if hits else None


def download(packages: list[str], *, cache_dir: Path) -> dict[str, Path]:
    """``apt-get download`` the packages not yet in ``cache_dir``; package -> .deb path."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if cached_deb(p, cache_dir=cache_dir) is None]
    if missing:
        apt = tools.require_tool("apt-get", package="apt")
        log.info("downloading %d Debian package(s) into %s: %s", len(missing), cache_dir, " ".join(missing))
        # apt-get writes the .deb into the current directory; partial files end in
        # .deb only once complete, so an interrupted download is simply retried.
        proc = subprocess.run([apt, "download", *missing], cwd=cache_dir, capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-2:]
            raise CorpusError(
                f"apt-get download failed for {' '.join(missing)}: {' | '.join(err)}; check the "
                "network and that Debian 'main' is in the apt sources (run apt-get update), or "
                f"copy the .deb files into {cache_dir}"
            )
    out = {}
    for p in packages:
        deb = cached_deb(p, cache_dir=cache_dir)
        if deb is None:
            raise CorpusError(f"{p}: no .deb in {cache_dir} after apt-get download")
        out[p] = deb
    return out


def extract(deb: Path, *, dest: Path) -> Path:
    """Unpack ``deb`` into ``dest`` (marker ``dest/.extracted`` written last)."""
    dest = Path(dest)
    marker = dest / ".extracted"
    if marker.is_file() and marker.read_text().strip() == Path(deb).name:
        return dest
    dpkg_deb = tools.require_tool("dpkg-deb", package="dpkg")
    if dest.exists():
        shutil.rmtree(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tools.run([dpkg_deb, "-x", str(deb), str(tmp)])
    tmp.rename(dest)
    atomic_write_text(marker, text=Path(deb).name + "\n")
    return dest


def copyright_text(root: Path, *, package: str) -> str:
    """The package's ``debian/copyright`` as installed (``usr/share/doc/PKG/copyright``)."""
    path = Path(root) / "usr/share/doc" / package / "copyright"
    if not path.is_file():
        hits = sorted(Path(root).glob("usr/share/doc/*/copyright"))
        path = hits[0] if hits else path
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

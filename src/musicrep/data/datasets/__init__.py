"""Catalog builders: one module per source, each returning a :class:`musicrep.data.catalog.Catalog`.

=================  ==================================================================
:func:`from_folder`  any folder of tagged audio (``Artist/Album/NN Title.ext`` fallback)
:func:`from_csv`     a catalog CSV (``track_id, path, ...``)
:func:`from_fma`     FMA's ``tracks.csv`` + ``fma_small/000/000002.mp3``
:func:`from_gtzan`   GTZAN's ``genres/<genre>/<genre>.000NN.wav`` + split lists
:func:`from_msd`     the MSD's ``track_metadata.db`` + audio named by track id
:func:`from_mtat`    MagnaTagATune's ``annotations_final.csv`` + ``0/`` .. ``f/``: top-N tags, folder split
=================  ==================================================================

Every builder takes ``skipped=`` (a list that receives a :class:`Skipped` per input
left out), logs what it skips, and raises :class:`~musicrep.errors.CatalogError`
when nothing usable is found.
"""

from ._common import AUDIO_EXTENSIONS, Skipped, summary_line
from .csvfile import from_csv
from .fma import from_fma
from .folder import from_folder
from .gtzan import from_gtzan
from .msd import from_msd
from .mtat import from_mtat

__all__ = [
    "AUDIO_EXTENSIONS",
    "Skipped",
    "from_csv",
    "from_fma",
    "from_folder",
    "from_gtzan",
    "from_msd",
    "from_mtat",
    "summary_line",
]

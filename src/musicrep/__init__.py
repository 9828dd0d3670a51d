"""musicrep: music representations learned from artist, album and track metadata.

Implements Lee, Park & Nam, "Representation Learning of Music Using Artist, Album,
and Track Information" (2019), on top of Park et al. (ISMIR 2018).
"""

import os
from typing import TYPE_CHECKING

from . import _moved
from .errors import MusicrepError

_moved.install()  # old module paths (musicrep.store, ...) still import, with a warning

if TYPE_CHECKING:
    from .inference.embed import EmbeddingModel

__version__ = "0.2.0"

__all__ = ["MusicrepError", "__version__", "load"]


def load(run_or_checkpoint: "str | os.PathLike | None" = None, **kwargs) -> "EmbeddingModel":
    """Load a trained run or checkpoint as an :class:`~musicrep.inference.embed.EmbeddingModel`.

    With no argument, the model shipped inside the package (a small joint model
    trained on game soundtracks; see ``musicrep/models/MODEL_CARD.md``).
    Imported lazily so that ``import musicrep`` stays light; see
    :func:`musicrep.inference.embed.load` for the keyword arguments.
    """
    from .inference.embed import load as _load

    return _load(run_or_checkpoint, **kwargs)

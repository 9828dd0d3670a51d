"""musicrep: music representations learned from artist, album and track metadata.

Implements Lee, Park & Nam, "Representation Learning of Music Using Artist, Album,
and Track Information" (2019), on top of Park et al. (ISMIR 2018).
"""

from .errors import MusicrepError

__version__ = "0.1.0"

__all__ = ["MusicrepError", "__version__"]

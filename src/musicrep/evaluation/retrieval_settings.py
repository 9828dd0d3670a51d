"""The retrieval test's choices: its tasks, pool parts, cut-off and baselines.

Kept apart from :mod:`musicrep.evaluation.retrieval` (which imports torch) so that the
command-line parser can offer them as defaults without importing torch.
"""

from __future__ import annotations

#: the retrieval tasks: same-artist songs (artist split), same-album songs (album split)
TASKS: tuple[str, ...] = ("artist", "album")
#: the split parts whose songs form the pool (see :mod:`musicrep.evaluation.retrieval` for why valid is in)
PARTS: tuple[str, ...] = ("valid", "test")
#: the cut-off of precision@k
K = 10
#: baselines measured by default: all cheap (no training)
BASELINES: tuple[str, ...] = ("random", "logmel", "mfcc")

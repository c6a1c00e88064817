"""Comparing: the compare session (no Qt) and the pair-source interface every strategy answers.

``source``: :class:`Pair` and the :class:`PairSource` protocol. ``sources``: the adapters
(the live Bayesian head, the OpenSkill selector) and :data:`SOURCES`, the registry by name.
``session``: :class:`CompareSession`, the click loop over one project. ``stats``: the figures
it shows (predict-then-update, held-out, self-agreement) and the one "how many more" rule.
"""

from .session import CompareSession
from .source import HELDOUT, REPEAT, Pair, PairSource
from .sources import SOURCE_META_KEY, SOURCES, SourceContext, SourceUnavailable
from .stats import CompareStats, more_clicks, more_clicks_sentence

__all__ = [
    "HELDOUT",
    "REPEAT",
    "SOURCES",
    "SOURCE_META_KEY",
    "CompareSession",
    "CompareStats",
    "Pair",
    "PairSource",
    "SourceContext",
    "SourceUnavailable",
    "more_clicks",
    "more_clicks_sentence",
]

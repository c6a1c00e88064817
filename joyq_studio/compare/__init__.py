"""Comparing: the compare session (no Qt) and the pair-source interface every strategy answers."""

from .source import HELDOUT, REPEAT, Pair, PairSource

__all__ = ["HELDOUT", "REPEAT", "Pair", "PairSource"]

"""The Bayesian personal head: a live model of one user's taste on frozen embeddings, and
the pairs it learns most from.

``head``: the maths (MAP by Newton/IRLS, Laplace posterior, alpha by the evidence, primal
and dual), usable on its own as a quick head training (``fit_head``). ``acquisition``: how
much one answer would teach the head (BALD, GURO). ``model``: :class:`TasteModel`, the live
model of one pool of images with its pair choice, held-out test set and undo.
"""

from .acquisition import bald, guro
from .head import HeadFit, default_alpha, fit_head
from .model import KINDS, Accuracy, HeldoutAccuracy, TasteMix, TasteModel, wilson_interval

__all__ = [
    "KINDS",
    "Accuracy",
    "HeadFit",
    "HeldoutAccuracy",
    "TasteMix",
    "TasteModel",
    "bald",
    "default_alpha",
    "fit_head",
    "guro",
    "wilson_interval",
]

"""The Bayesian personal head: a live model of one user's taste on frozen embeddings, and
the pairs it learns most from.

``head``: the maths (MAP by Newton/IRLS, Laplace posterior, alpha by the evidence, primal
and dual), usable on its own as a quick head training (``fit_head``). ``acquisition``: how
much one answer would teach the head (BALD, GURO). ``model``: :class:`TasteModel`, the live
model of one pool of images with its pair choice, held-out test set and undo. ``pacing``:
the held-out schedule (``heldout_share``, ``clicks_for_heldout``) and the image repetition
limit, shared with ``pairing.PairSelector``.
"""

from .acquisition import bald, guro
from .head import ALPHA_PRIOR_SD, DEFAULT_LAPSE, HeadFit, default_alpha, fit_head
from .model import KINDS, STRATEGIES, Accuracy, HeldoutAccuracy, TasteMix, TasteModel, wilson_interval
from .pacing import RecentShows, clicks_for_heldout, heldout_share, heldout_target

__all__ = [
    "ALPHA_PRIOR_SD",
    "DEFAULT_LAPSE",
    "KINDS",
    "STRATEGIES",
    "RecentShows",
    "clicks_for_heldout",
    "heldout_share",
    "heldout_target",
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

"""Which two images to show next, from per-image OpenSkill beliefs seeded by the model.

``beliefs``: the maths on Gaussian beliefs in logit units (win probability, information
gain, temperature fit, agreement). ``selector``: :class:`PairSelector`, the candidate
search over those beliefs. The model-driven choice of the Bayesian personal head is
:mod:`joyq_studio.taste`.
"""

from .beliefs import (
    expected_info_gain,
    fit_temperature,
    model_agreement,
    prior_from_scores,
    self_agreement,
    win_probability,
)
from .selector import KINDS, PairMix, PairSelector

__all__ = [
    "KINDS",
    "PairMix",
    "PairSelector",
    "expected_info_gain",
    "fit_temperature",
    "model_agreement",
    "prior_from_scores",
    "self_agreement",
    "win_probability",
]

"""What the parts of the live head share: its state, its constants and its undo record.

``TasteModel`` (``model.py``) is put together from one part per idea over this state: its
``ledger`` (``ledger.PairLedger``, shared with the OpenSkill selector: the pairs shown,
pending, recorded and skipped, and the rules they impose), ``Posterior`` (``posterior.py``:
the Laplace posterior, its per-click updates and refits) and ``PairChooser``
(``chooser.py``: which pair next). Nothing here imports Qt, the CLI or the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .head import HeadFit
from .ledger import PairLedger

COINFLIP_BAND = 0.05
"""A pair is a coin flip when the model's predicted win probability is within 0.5 +- this."""

FULL_RESCORE_MACS = 2_000_000
"""Up to n d = this, the score cache is recomputed whole (E w) when the head has changed."""

ROLL_MACS = 2_000_000
"""Above it, each ``next_pair`` refreshes this many multiply-adds' worth of rows (about 1.7k
rows at d = 1152, well under a millisecond), and the score order is re-sorted once per full
cycle. The choice re-scores its shortlist exactly, so only the windows see stale scores."""

NEWTON_STEPS = 3
NEWTON_TOL = 1e-5
"""Per click: Newton steps until the decrement (relative to the objective) is below this."""

REFIT_TOL = 1e-6
REFIT_ALPHA_TOL = 1e-2
"""Live refits stop a little earlier than ``fit_head``'s defaults (alpha to 1%): the Newton
steps after every click keep refining the mean, and a refit is the slowest click."""

DENSE_MAX = 512
"""Up to this many images, pair counts also live in an (n, n) matrix (vectorised checks and
an exhaustive fallback search)."""

TEST_CRITERIA = ("vopt", "eer")
"""Criteria on the test distribution (uniform pairs of the whole pool): ``vopt`` = expected
drop of the summed test-pair logit variance; ``eer`` = the vopt shortlist, then the pair that
minimises the expected share of misordered test pairs after its answer (one-step lookahead,
expected ordering-error reduction)."""

EER_PAIRS = 1024
"""Test pairs sampled for the ``eer`` lookahead."""


@dataclass
class _Undo:
    """What ``record`` changed, to take it back exactly."""

    pending: dict[int, str]
    rng_state: dict
    fitted: bool
    m: int
    w: np.ndarray
    alpha: float
    fit: HeadFit
    f: np.ndarray
    post: tuple
    next_refit: int
    c_eff: tuple = ()


class TasteState:
    """The attributes ``TasteModel.__init__`` sets (declared once for the type checker)."""

    E: np.ndarray
    w: np.ndarray
    alpha: float
    ledger: PairLedger
    available: np.ndarray
    _undo: list[_Undo]
    _m: int
    _X: np.ndarray
    _y: np.ndarray
    _c: np.ndarray
    _f: np.ndarray
    _gram: np.ndarray | None
    _fit: HeadFit
    _next_refit: int
    _s: np.ndarray | None
    _pos: np.ndarray
    _order: np.ndarray
    _roll: int
    _s_dirty: bool
    _V: np.ndarray
    _r: int
    _zmean: np.ndarray
    _Z: np.ndarray
    _nrm2: np.ndarray
    _q: np.ndarray
    _S0: np.ndarray | None
    _S0r: np.ndarray
    _Sr: np.ndarray
    _tr_s0: float
    _tr_u: float
    _U: np.ndarray
    _Ur: np.ndarray
    _k: int
    _ct_cache: tuple[np.ndarray, float] | None
    _jitter: np.ndarray
    # set by TasteModel.__init__
    n: int
    d: int
    d_in: int
    rng: np.random.Generator
    mix: Any
    criterion: str
    _crit: Any
    lapse: float
    alpha_prior_sd: float | None
    strategy: str | None
    explore: float
    coinflip_max: float
    repetition_limit: bool
    heldout_schedule: bool
    forget_half_life: float | None
    n_info_issued: int
    n_coinflip_issued: int
    w0: np.ndarray
    b0: float
    _fixed_alpha: float | None
    max_shows: int | None
    repeat_gap: int
    pair_reuse: float
    n_anchors: int
    window: int
    anchor_sample: int
    shortlist: int
    refit_small: int
    refit_growth: float
    undo_depth: int
    mean_e: np.ndarray
    _alpha_ref: float
    last_kind: str | None
    _tired: np.ndarray
    _last_coinflip: bool
    _limit_coinflips: bool
    _c_eff: np.ndarray
    _c_eff_m: int
    _base_dir: np.ndarray | None
    _base_c: float
    _ref0: float

    def _scores_changed(self) -> None:
        self._s_dirty = True

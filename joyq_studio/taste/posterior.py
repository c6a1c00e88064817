"""The posterior of the live head: the Laplace posterior in factored form, the online
rank-one update and Newton steps after each click, and the full refits (maths:
``head.py``; the per-click scheme: ``model.py``'s module docstring)."""

from __future__ import annotations

import math

import numpy as np

from .head import HeadFit, fit_head, link_terms, pair_loss
from .state import NEWTON_STEPS, NEWTON_TOL, REFIT_ALPHA_TOL, REFIT_TOL, TasteState


class Posterior(TasteState):
    """The posterior (``TasteModel``'s second part)."""

    def refit(self, live: bool = False) -> HeadFit:
        """Full refit: exact MAP, fresh Laplace covariance and alpha by the evidence
        (warm-started from the current head and alpha). Returns the fit. ``live``: the
        automatic refits between clicks, which stop at REFIT_TOL / REFIT_ALPHA_TOL."""
        m = self._m
        tol, alpha_tol = (REFIT_TOL, REFIT_ALPHA_TOL) if live else (1e-7, 1e-3)
        gram = self._gram[:m, :m] if (self._gram is not None and m < self.d) else None
        if self.forget_half_life is not None:  # new recency weights (a new array: undo keeps the old)
            self._c_eff, self._c_eff_m = self._decayed(m), m
        fit = fit_head(
            self._X[:m],
            self._y[:m],
            self._weights(m),
            self.w0,
            alpha=self._fixed_alpha,
            alpha_init=self.alpha,
            w_init=self.w,
            gram=gram,
            alpha_ref=self._alpha_ref,
            tol=tol,
            alpha_tol=alpha_tol,
            lapse=self.lapse,
            alpha_prior_sd=self.alpha_prior_sd,
        )
        self._fit, self.w, self.alpha = fit, fit.w, fit.alpha
        self._f[:m] = (self._X[:m] @ self.w.astype(np.float32)).astype(np.float64)
        self._after_refit()
        self._next_refit = m + 1 if m < self.refit_small else max(m + 1, int(math.ceil(m * self.refit_growth)))
        if self.forget_half_life is not None:  # the recency weights move: refit often
            self._next_refit = min(self._next_refit, m + max(1, int(self.forget_half_life / 10)))
        self._scores_changed()
        return fit

    def _after_refit(self) -> None:
        """Reset the rank-one terms and the reduced-space covariance after a (re)fit."""
        fit = self._fit
        qv = fit.basis.T @ self._V  # (r', r)
        self._S0r = np.eye(self._r) / fit.alpha + (qv.T * fit.shrink()) @ qv
        self._tr_s0 = self.d / fit.alpha + float(np.sum(fit.shrink()))
        # with many directions learned, one dense float32 pass beats two through the basis
        self._S0 = fit.covariance().astype(np.float32) if fit.lam.size > self.d // 2 else None
        self._U = np.zeros((16, self.d))
        self._Ur = np.zeros((16, self._r))
        self._k = 0
        self._Sr = self._S0r.copy()
        self._tr_u = 0.0

    def _post_state(self) -> tuple:
        return (self._S0r, self._tr_s0, self._U, self._Ur, self._k, self._tr_u, self._S0)

    def _set_post_state(self, s: tuple) -> None:
        self._S0r, self._tr_s0, self._U, self._Ur, self._k, self._tr_u, self._S0 = s
        k = self._k
        self._Sr = self._S0r - self._Ur[:k].T @ self._Ur[:k]

    def _cov_matvec(self, v: np.ndarray) -> np.ndarray:
        """Sigma_t v = Sigma_0 v - U (U^T v), for v of shape (d,) or (d, k)."""
        if self._S0 is not None:
            out = (self._S0 @ np.asarray(v, dtype=np.float32)).astype(np.float64)
        else:
            out = self._fit.cov_matvec(v)
        if self._k:
            U = self._U[: self._k]
            out -= U.T @ (U @ v)
        return out

    def _quad_exact(self, x: np.ndarray) -> np.ndarray:
        """x_k^T Sigma_t x_k for every row of x (k, d)."""
        x = np.atleast_2d(x)
        if self._S0 is not None:
            x32 = x.astype(np.float32)
            out = np.einsum("ij,ij->i", x32 @ self._S0, x32, dtype=np.float64)
        else:
            out = self._fit.quad(x)
        if self._k:
            ux = x @ self._U[: self._k].T
            out = out - np.einsum("ij,ij->i", ux, ux)
        return np.maximum(out, 0.0)

    def _sigma_perp2(self) -> float:
        """Mean posterior variance outside the PCA subspace."""
        if self._r >= self.d:
            return 0.0
        return max((self._tr_s0 - self._tr_u - float(np.trace(self._Sr))) / (self.d - self._r), 0.0)

    def _var_reduced(self, idx: np.ndarray) -> np.ndarray:
        """Approximate score variance of images idx: z^T Sigma_r z + sigma_perp^2 q."""
        z = self._Z[idx]
        quad = np.einsum("ij,ij->i", z @ self._Sr.astype(np.float32), z, dtype=np.float64)
        return np.maximum(quad + self._sigma_perp2() * self._q[idx], 0.0)

    def _grow(self) -> None:
        cap = len(self._y)
        if self._m < cap:
            return
        new = 2 * cap
        X = np.zeros((new, self.d), dtype=np.float32)
        X[:cap] = self._X
        self._X = X
        for name in ("_y", "_c", "_f"):
            a = np.zeros(new)
            a[:cap] = getattr(self, name)
            setattr(self, name, a)
        if self._gram is not None:
            if cap >= self.d:  # the dual is not used beyond m = d
                self._gram = None
            else:
                g = np.zeros((new, new))
                g[:cap, :cap] = self._gram
                self._gram = g

    def _append_fitted(self, i: int, j: int, o: float, weight: float) -> np.ndarray:
        self._grow()
        m = self._m
        x = self.E[i] - self.E[j]
        self._X[m] = x
        self._y[m], self._c[m] = o, weight
        self._f[m] = float(x.astype(np.float64) @ self.w)
        if self._gram is not None:
            row = (self._X[: m + 1] @ x).astype(np.float64)
            self._gram[m, : m + 1] = row
            self._gram[: m + 1, m] = row
        self._m = m + 1
        return x

    def _add_fitted(self, i: int, j: int, o: float, weight: float) -> None:
        """Add one fitted comparison: online Laplace update, then a Newton step or a refit."""
        x = self._append_fitted(i, j, o, weight).astype(np.float64)
        if self._m >= self._next_refit:
            self.refit(live=True)
            return
        # 1. rank-one covariance update at the current mean
        u = self._cov_matvec(x)
        v = float(x @ u)
        m1 = self._m - 1
        r = float(link_terms(self._f[m1 : m1 + 1], self._y[m1 : m1 + 1], self._weights(self._m)[m1:], self.lapse)[1][0])
        ut = u * math.sqrt(r / (1.0 + r * v))
        if self._k == len(self._U):  # (undo snapshots keep the old arrays; rows < k never change)
            self._U = np.concatenate([self._U, np.zeros_like(self._U)])
            self._Ur = np.concatenate([self._Ur, np.zeros_like(self._Ur)])
        ur = self._V.T @ ut
        self._U[self._k] = ut
        self._Ur[self._k] = ur
        self._k += 1
        self._Sr = self._Sr - np.outer(ur, ur)
        self._tr_u += float(ut @ ut)
        # 2. Newton steps on the mean, Sigma_t as the inverse Hessian: one, or up to
        #    NEWTON_STEPS while a surprising answer keeps moving the mean
        for _ in range(NEWTON_STEPS):
            if self._newton_step() < NEWTON_TOL:
                break

    def _decayed(self, m: int) -> np.ndarray:
        """The user's weights of the first m fitted clicks times the recency weight
        0.5 ** (age / half-life), age counted in fitted clicks (forgetting on)."""
        assert self.forget_half_life is not None
        age = np.arange(m - 1, -1, -1, dtype=np.float64)
        return self._c[:m] * np.power(0.5, age / self.forget_half_life)

    def _weights(self, m: int) -> np.ndarray:
        """The weights the posterior uses for the first m fitted clicks: the user's weights,
        or with forgetting on, the recency weights of the last refit (clicks since weigh 1:
        the weights change only at refits, so the per-click updates stay consistent)."""
        if self.forget_half_life is None:
            return self._c[:m]
        out = self._c[:m].copy()
        k = min(self._c_eff_m, m)
        out[:k] = self._c_eff[:k]
        return out

    def _newton_step(self) -> float:
        """One quasi-Newton step on the mean (Sigma_t as the inverse Hessian), halved until
        the objective drops. Returns the decrement -g . step relative to the objective."""
        m = self._m
        X, y, c, f = self._X[:m], self._y[:m], self._weights(m), self._f[:m]
        gf, _ = link_terms(f, y, c, self.lapse)
        delta = self.w - self.w0
        g = (X.T @ gf.astype(np.float32)).astype(np.float64) + self.alpha * delta
        step = -self._cov_matvec(g)
        xs = (X @ step.astype(np.float32)).astype(np.float64)
        l0 = pair_loss(f, y, c, self.lapse) + 0.5 * self.alpha * float(delta @ delta)
        gd = float(g @ step)
        s = 1.0
        for _ in range(30):
            dn = delta + s * step
            l1 = pair_loss(f + s * xs, y, c, self.lapse) + 0.5 * self.alpha * float(dn @ dn)
            if l1 <= l0 + 1e-4 * s * gd or l1 <= l0:
                break
            s *= 0.5
        else:
            return 0.0
        self.w = self.w + s * step
        self._f[:m] = f + s * xs
        self._scores_changed()
        return -gd * s / (1.0 + abs(l0))

"""PyDESeq2's per-gene fits done for all genes at once: a drop-in :class:`Inference` for it.

PyDESeq2 (Muzellec et al. 2023) fits every gene on its own through joblib, calling scipy's
L-BFGS-B or scikit-learn once per gene: on a pseudobulk of 8 donors and 14,000 tested genes the
per-gene Python overhead is almost the whole cost (one cell type's fit took 241 s on the 2-core
development machine, 89 s of it in scikit-learn's ``LinearRegression``, 125 s in the dispersion
fits). PyDESeq2 asks for other inference routines through its ``Inference`` interface
("inherit this class or its parent to write custom inference routines"); :class:`BatchedInference`
is one. It keeps PyDESeq2's pipeline, objectives, bounds and starting points and solves the
same problems for all genes together with numpy:

- ``lin_reg_mu``: least squares on the normalised counts, every gene in one ``lstsq`` (the
  same minimum-norm solution scikit-learn's ``LinearRegression(fit_intercept=False)`` gives).
- ``irls``: PyDESeq2's IRLS iteration, step for step, with each gene stopped by its own
  deviance criterion; genes where IRLS diverges (a coefficient beyond ``max_beta``) or reaches
  ``maxiter`` go to PyDESeq2's own per-gene solver (its L-BFGS-B and grid-search fallback).
- ``alpha_mle``: the Cox-Reid-adjusted (and, for MAP dispersions, prior-penalised) negative
  binomial likelihood in log dispersion, minimised within the same bounds from the same
  starting value by bracketing the root of its derivative downhill from the start and then
  bisecting it to 1e-10; as in L-BFGS-B, a start where the derivative is below 1e-5 is kept.
  Genes whose derivative is not finite, and genes whose dispersion comes out below 1e-4
  (where the likelihood is flat and L-BFGS-B's stopping point depends on its path), go to
  PyDESeq2's per-gene fit.
- ``wald_test``: the same Wald statistic and two-sided p-value (other alternative hypotheses
  use PyDESeq2's routine).
- ``lfc_shrink_nbinom_glm``: the apeGLM-prior (Zhu et al. 2019) objective minimised by damped
  Newton steps with a backtracking line search, from PyDESeq2's starting point, from the
  optimum without the Cauchy prior and from that optimum with the shrunk coefficient at zero;
  the posterior can have a mode near zero and one near the likelihood's, and the lowest is
  kept (the MAP), where L-BFGS-B keeps whichever mode it reaches first. Where the starts
  reach different modes, or none converges,
  PyDESeq2's per-gene fit runs as well and the lowest objective of all is kept, so no gene's
  shrunk estimate is worse than PyDESeq2's. The
  inverse Hessian is PyDESeq2's (see :meth:`_ShrinkProblem.pydeseq2_hessian`).

Results agree with PyDESeq2's ``DefaultInference`` to optimiser tolerance (every function's
objective value at least as good; ``tests/unit/test_batched_inference.py``). The numbers of
that comparison and the time saved are in docs/performance.md.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydeseq2 import utils
from pydeseq2.default_inference import DefaultInference
from scipy.special import digamma, gammaln
from scipy.stats import norm

__all__ = ["BatchedInference"]

#: Width in log dispersion below which the bisection of the derivative stops.
ALPHA_TOL = 1e-10
#: scipy's L-BFGS-B default projected-gradient tolerance: PyDESeq2's dispersion fit keeps its
#: starting value where the derivative there is smaller (e.g. a start at the lower bound, where
#: the likelihood is flat in log dispersion), and so does this one.
PGTOL = 1e-5
#: Dispersions below this lie where the likelihood is flat in log dispersion (the counts are
#: Poisson to within 1e-4 x the mean); where L-BFGS-B stops there depends on its path, not on the
#: data, and the dispersion trend uses such values (PyDESeq2 drops only those under 10 x
#: min_disp), so these genes are fitted by PyDESeq2's own per-gene routine.
FLAT_DISPERSION = 1e-4
#: Shrinkage optima whose shrunk coefficients (natural log) differ by more than this are
#: different posterior modes: PyDESeq2's per-gene fit is then run too and the lowest kept.
MODE_GAP = 1e-3
#: Newton steps allowed per gene in the shrinkage fit before PyDESeq2's own fit takes it over.
SHRINK_MAX_STEPS = 100


def _weighted_gram(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """X' diag(W[:, g]) X for every gene g: (genes, p, p)."""
    return np.einsum("ni,ng,nj->gij", X, W, X, optimize=True)


def _nb_nll(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """PyDESeq2's negative binomial negative log-likelihood (``utils.nb_nll``), per column."""
    inv = 1.0 / alpha
    logbinom = gammaln(y + inv) - gammaln(y + 1.0) - gammaln(inv)
    n = y.shape[0]
    return n * inv * np.log(alpha) + (
        -logbinom + (y + inv) * np.log(inv + mu) - y * np.log(mu)
    ).sum(axis=0)


class BatchedInference(DefaultInference):
    """:class:`pydeseq2.default_inference.DefaultInference` with the per-gene loops vectorised.

    Parameters are DefaultInference's (``n_cpus`` is used only by the per-gene fallbacks).
    """

    def lin_reg_mu(  # noqa: D102
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        min_mu: float,
    ) -> np.ndarray:
        sf = np.asarray(size_factors, dtype=float)[:, None]
        coef = np.linalg.lstsq(design_matrix, counts / sf, rcond=None)[0]
        return np.maximum(sf * (design_matrix @ coef), min_mu)

    def irls(  # noqa: D102
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        min_mu: float,
        beta_tol: float,
        min_beta: float = -30,
        max_beta: float = 30,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
        maxiter: int = 250,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        X = np.asarray(design_matrix, dtype=float)
        y = np.asarray(counts, dtype=float)
        sf = np.asarray(size_factors, dtype=float)[:, None]
        disp = np.asarray(disp, dtype=float)
        n_vars, n_genes = X.shape[1], y.shape[1]
        ridge = np.diag(np.repeat(1e-6, n_vars))
        if np.linalg.matrix_rank(X) == n_vars:
            Q, R = np.linalg.qr(X)
            beta = np.linalg.solve(R, Q.T @ np.log(y / sf + 0.1)).T
        else:  # as PyDESeq2: the intercept at the log mean of the normalised counts
            beta = np.zeros((n_genes, n_vars))
            with np.errstate(divide="ignore"):
                beta[:, 0] = np.log(y / sf).mean(axis=0)
        mu = np.maximum(sf * np.exp(X @ beta.T), min_mu)
        dev = np.full(n_genes, 1000.0)
        active = np.ones(n_genes, dtype=bool)
        per_gene = np.zeros(n_genes, dtype=bool)  # left to PyDESeq2's solver
        steps = 0
        while active.any():
            a = np.flatnonzero(active)
            m = mu[:, a]
            W = m / (1.0 + m * disp[a])
            z = np.log(m / sf) + (y[:, a] - m) / m
            H = _weighted_gram(X, W) + ridge
            beta_hat = np.linalg.solve(H, np.einsum("ni,ng->gi", X, W * z)[..., None])[..., 0]
            steps += 1
            diverged = (np.abs(beta_hat) > max_beta).any(axis=1) | (steps >= maxiter)
            per_gene[a[diverged]] = True
            active[a[diverged]] = False
            ok = a[~diverged]
            beta[ok] = beta_hat[~diverged]
            mu[:, ok] = np.maximum(sf * np.exp(X @ beta[ok].T), min_mu)
            old = dev[ok]
            dev[ok] = -2.0 * _nb_nll(y[:, ok], mu[:, ok], disp[ok])
            ratio = np.abs(dev[ok] - old) / (np.abs(dev[ok]) + 0.1)
            active[ok[ratio <= beta_tol]] = False
        W = mu / (1.0 + mu * disp)
        inverse = np.linalg.inv(_weighted_gram(X, W) + ridge)
        hat = np.einsum("ni,gij,nj->ng", X, inverse, X, optimize=True) * W
        mu = sf * np.exp(X @ beta.T)  # unthresholded, as PyDESeq2 returns it
        converged = np.ones(n_genes, dtype=bool)
        for g in np.flatnonzero(per_gene):
            beta[g], mu[:, g], hat[:, g], converged[g] = utils.irls_solver(
                counts=y[:, g], size_factors=sf[:, 0], design_matrix=X, disp=disp[g],
                min_mu=min_mu, beta_tol=beta_tol, min_beta=min_beta, max_beta=max_beta,
                optimizer=optimizer, maxiter=maxiter,
            )  # fmt: skip
        return beta, mu, hat, converged

    def alpha_mle(  # noqa: D102
        self,
        counts: np.ndarray,
        design_matrix: np.ndarray,
        mu: np.ndarray,
        alpha_hat: np.ndarray,
        min_disp: float,
        max_disp: float,
        prior_disp_var: float | None = None,
        cr_reg: bool = True,
        prior_reg: bool = False,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        if prior_reg and prior_disp_var is None:
            raise ValueError("Sigma_prior is required for prior regularization")
        X = np.asarray(design_matrix, dtype=float)
        y = np.asarray(counts, dtype=float)
        mu = np.asarray(mu, dtype=float)
        log_hat = np.log(np.asarray(alpha_hat, dtype=float))
        lower, upper = np.log(min_disp), np.log(max_disp)

        def gradient(log_alpha: np.ndarray, g: np.ndarray) -> np.ndarray:
            """d loss / d log(alpha) of PyDESeq2's ``fit_alpha_mle`` for genes `g`."""
            alpha = np.exp(log_alpha)
            inv = 1.0 / alpha
            yy, mm = y[:, g], mu[:, g]
            dnll = -(inv**2) * (
                digamma(inv) - digamma(yy + inv) + np.log1p(mm * alpha) + (yy - mm) / (mm + inv)
            ).sum(axis=0)
            out = alpha * dnll
            if cr_reg:
                W = mm / (1.0 + mm * alpha)
                gram = _weighted_gram(X, W)
                d_gram = _weighted_gram(X, -(W**2))
                out = out + 0.5 * (np.linalg.inv(gram) * d_gram).sum(axis=(1, 2)) * alpha
            if prior_reg:
                out = out + (log_alpha - log_hat[g]) / prior_disp_var
            return out

        n_genes = y.shape[1]
        genes = np.arange(n_genes)
        start = np.clip(log_hat, lower, upper)
        with np.errstate(all="ignore"):
            g0 = gradient(start, genes)
        fallback = ~np.isfinite(g0)
        result = start.copy()
        # downhill from the start: find where the derivative changes sign (or a bound)
        down = np.where(g0 > 0, -1.0, 1.0)
        near, far = start.copy(), start.copy()
        bracketed = np.zeros(n_genes, dtype=bool)
        at_bound = (
            (np.abs(g0) <= PGTOL) | ((g0 > 0) & (start <= lower)) | ((g0 < 0) & (start >= upper))
        )
        searching = ~(fallback | at_bound)
        step = 0.5
        while searching.any():
            s = np.flatnonzero(searching)
            bound = np.where(down[s] > 0, upper, lower)
            trial = np.clip(near[s] + down[s] * step, lower, upper)
            with np.errstate(all="ignore"):
                g_trial = gradient(trial, s)
            bad = ~np.isfinite(g_trial)
            fallback[s[bad]] = True
            turned = ~bad & (np.sign(g_trial) != np.sign(g0[s])) & (g_trial != 0)
            exact = ~bad & (g_trial == 0)
            stuck = ~bad & ~turned & ~exact & (trial == bound)
            far[s[turned]] = trial[turned]
            bracketed[s[turned]] = True
            result[s[exact | stuck]] = trial[exact | stuck]
            near[s[~turned]] = trial[~turned]
            searching[s[bad | turned | exact | stuck]] = False
            step *= 2.0
        # bisect the bracket [near, far]: the derivative has g0's sign at near, the other at far
        b = np.flatnonzero(bracketed)
        lo, hi, sign_lo = near[b], far[b], np.sign(g0[b])
        while b.size and np.max(np.abs(hi - lo)) > ALPHA_TOL:
            mid = 0.5 * (lo + hi)
            with np.errstate(all="ignore"):
                g_mid = gradient(mid, b)
            same = np.sign(g_mid) == sign_lo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
        result[b] = 0.5 * (lo + hi)
        dispersions = np.exp(result)
        fallback |= dispersions < FLAT_DISPERSION
        converged = np.ones(n_genes, dtype=bool)
        for g in np.flatnonzero(fallback):
            dispersions[g], converged[g] = utils.fit_alpha_mle(
                counts=y[:, g], design_matrix=X, mu=mu[:, g], alpha_hat=float(alpha_hat[g]),
                min_disp=min_disp, max_disp=max_disp, prior_disp_var=prior_disp_var,
                cr_reg=cr_reg, prior_reg=prior_reg, optimizer=optimizer,
            )  # fmt: skip
        return dispersions, converged

    def wald_test(  # noqa: D102
        self,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        lfc: np.ndarray,
        mu: np.ndarray,
        ridge_factor: np.ndarray,
        contrast: np.ndarray,
        lfc_null: np.ndarray,
        alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if alt_hypothesis is not None:
            return super().wald_test(
                design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis
            )
        X = np.asarray(design_matrix, dtype=float)
        mu = np.asarray(mu, dtype=float)
        disp = np.asarray(disp, dtype=float)
        W = mu / (1.0 + mu * disp)
        gram = _weighted_gram(X, W)
        Hc = np.linalg.inv(gram + ridge_factor) @ np.asarray(contrast, dtype=float)
        se = np.sqrt(np.einsum("gi,gij,gj->g", Hc, gram, Hc))
        stat = (np.asarray(lfc, dtype=float) - lfc_null) @ contrast / se
        return 2.0 * norm.sf(np.abs(stat)), stat, se

    def lfc_shrink_nbinom_glm(  # noqa: D102
        self,
        design_matrix: np.ndarray,
        counts: np.ndarray,
        size: np.ndarray,
        offset: np.ndarray,
        prior_no_shrink_scale: float,
        prior_scale: float,
        optimizer: str,
        shrink_index: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        problem = _ShrinkProblem(
            X=np.asarray(design_matrix, dtype=float),
            y=np.asarray(counts, dtype=float),
            size=np.asarray(size, dtype=float),
            offset=np.asarray(offset, dtype=float),
            no_shrink_scale=prior_no_shrink_scale,
            scale=prior_scale,
            index=shrink_index,
        )
        n_genes, n_vars = problem.y.shape[1], problem.X.shape[1]
        genes = np.arange(n_genes)
        # three starts: PyDESeq2's, the optimum without the Cauchy prior (near the likelihood's
        # mode), and that optimum with the shrunk coefficient at zero (near the prior's mode);
        # the posterior can have a mode near each, and the MAP is the lowest
        first, ok_first = problem.newton(np.tile(0.1 * (-1.0) ** np.arange(n_vars), (n_genes, 1)))
        mle, _ = problem.newton(first, cauchy=False)
        at_zero = mle.copy()
        at_zero[:, shrink_index] = 0.0
        fits = [(first, ok_first), problem.newton(mle), problem.newton(at_zero)]
        objectives = np.array([np.where(ok, problem.objective(b, genes), np.inf) for b, ok in fits])
        best = np.argmin(objectives, axis=0)
        beta = np.stack([b for b, _ in fits])[best, genes]
        converged = np.isfinite(objectives.min(axis=0))
        objective = objectives.min(axis=0)
        shrunk = np.stack([b[:, shrink_index] for b, _ in fits])
        modes_differ = np.ptp(shrunk, axis=0) > MODE_GAP
        inv_hessian = np.linalg.inv(problem.pydeseq2_hessian(beta))
        # where no start converged, or the starts reached different modes (so there may be one
        # more), PyDESeq2's own fit runs too and the lowest objective is kept
        for g in np.flatnonzero(~converged | modes_differ):
            b, inv, ok = utils.nbinomGLM(
                design_matrix=problem.X, counts=problem.y[:, g], size=problem.size[g],
                offset=problem.offset, prior_no_shrink_scale=prior_no_shrink_scale,
                prior_scale=prior_scale, optimizer=optimizer, shrink_index=shrink_index,
            )  # fmt: skip
            if not converged[g] or problem.objective(b[None], np.array([g]))[0] < objective[g]:
                beta[g], inv_hessian[g], converged[g] = b, inv, ok
        return beta, inv_hessian, converged


class _ShrinkProblem:
    """PyDESeq2's apeGLM-prior objective (``utils.nbinomFn``) for all genes, and its Newton fit."""

    def __init__(self, *, X, y, size, offset, no_shrink_scale, scale, index) -> None:
        self.X, self.y, self.size, self.offset = X, y, size, offset
        self.no_shrink_scale, self.scale, self.index = no_shrink_scale, scale, index
        self.shrink = np.zeros(X.shape[1], dtype=bool)
        self.shrink[index] = True
        self.log_size = np.log(size)

    def objective(self, beta: np.ndarray, g: np.ndarray, cauchy: bool = True) -> np.ndarray:
        """``nbinomFn`` for genes `g` (beta: genes x coefficients); without the Cauchy term
        when `cauchy` is False."""
        eta = self.X @ beta.T
        prior = (beta[:, ~self.shrink] ** 2).sum(axis=1) / (2 * self.no_shrink_scale**2)
        if cauchy:
            prior = prior + np.log1p((beta[:, self.index] / self.scale) ** 2)
        y, size = self.y[:, g], self.size[g]
        nll = (
            y * eta - (y + size) * np.logaddexp(eta + self.offset[:, None], self.log_size[g])
        ).sum(axis=0)
        return prior - nll

    def _nll_parts(self, beta: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The likelihood's gradient (genes x p) and curvature weights (samples x genes)."""
        eta = self.X @ beta.T + self.offset[:, None]
        y, size = self.y[:, g], self.size[g]
        d_nll = (y - (y + size) / (1.0 + size * np.exp(-eta))).T @ self.X
        e = np.exp(eta)
        return d_nll, (y + size) * size * e / (size + e) ** 2

    def _prior_parts(self, beta: np.ndarray, cauchy: bool) -> tuple[np.ndarray, np.ndarray]:
        """The prior's gradient and Hessian diagonal (genes x p)."""
        b = beta[:, self.index]
        grad = np.where(self.shrink, 0.0, beta / self.no_shrink_scale**2)
        diag = np.where(self.shrink, 0.0, np.full_like(beta, 1.0 / self.no_shrink_scale**2))
        if cauchy:
            grad[:, self.index] = 2 * b / (self.scale**2 + b**2)
            diag[:, self.index] = 2 * (self.scale**2 - b**2) / (self.scale**2 + b**2) ** 2
        return grad, diag

    def pydeseq2_hessian(self, beta: np.ndarray) -> np.ndarray:
        """The Hessian as PyDESeq2 0.5's ``nbinomGLM`` inverts it for the standard error: its
        ``ddf`` adds the prior's diagonal to every row (``M + np.diag(np.diag(h))``), kept so the
        returned inverse (and the shrunk lfcSE) are PyDESeq2's."""
        g = np.arange(beta.shape[0])
        _, weights = self._nll_parts(beta, g)
        _, diag = self._prior_parts(beta, cauchy=True)
        return _weighted_gram(self.X, weights) + diag[:, None, :]

    def newton(self, start: np.ndarray, cauchy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Damped Newton with Armijo backtracking from `start`; the optimum and whether each
        gene met PyDESeq2's gradient tolerance (1e-8 x the objective at zero, at least 1e-8)."""
        n_genes, n_vars = start.shape
        genes = np.arange(n_genes)
        beta = start.copy()
        tol = 1e-8 * np.maximum(self.objective(np.zeros_like(beta), genes), 1.0)
        active = np.ones(n_genes, dtype=bool)
        converged = np.zeros(n_genes, dtype=bool)
        eye = np.eye(n_vars)
        with np.errstate(all="ignore"):
            for _ in range(SHRINK_MAX_STEPS):
                a = np.flatnonzero(active)
                if a.size == 0:
                    break
                d_nll, weights = self._nll_parts(beta[a], a)
                d_prior, diag = self._prior_parts(beta[a], cauchy)
                grad = d_prior - d_nll
                done = np.abs(grad).max(axis=1) <= tol[a]
                converged[a[done]] = True
                active[a[done]] = False
                keep = ~done
                a, grad = a[keep], grad[keep]
                if a.size == 0:
                    break
                hess = _weighted_gram(self.X, weights[:, keep]) + diag[keep][:, None, :] * eye
                # where the Hessian is not positive definite (the Cauchy prior's curvature is
                # negative beyond its scale), its eigenvalues are taken in absolute value
                # (floored): a descent direction that keeps the curvature's scale, where a
                # shift to barely positive made steps that the line search had to halve
                # dozens of times (eigenvalue modification; Nocedal & Wright 2006, Numerical
                # Optimization, section 3.4)
                values, vectors = np.linalg.eigh(hess)
                floor = np.maximum(1e-8 * np.abs(values).max(axis=1, keepdims=True), 1e-10)
                values = np.maximum(np.abs(values), floor)
                along = np.einsum("gji,gj->gi", vectors, grad) / values
                step = -np.einsum("gij,gj->gi", vectors, along)
                current = self.objective(beta[a], a, cauchy)
                slope = (grad * step).sum(axis=1)
                t = np.ones(a.size)
                moved = np.zeros(a.size, dtype=bool)
                pending = np.arange(a.size)
                for _ in range(40):  # backtracking (Armijo), on the genes not yet moved
                    trial = beta[a[pending]] + t[pending, None] * step[pending]
                    accept = self.objective(trial, a[pending], cauchy) <= (
                        current[pending] + 1e-4 * t[pending] * slope[pending]
                    )
                    beta[a[pending[accept]]] = trial[accept]
                    moved[pending[accept]] = True
                    pending = pending[~accept]
                    if pending.size == 0:
                        break
                    t[pending] /= 2
                # no decrease left: at the optimum to rounding if the gradient is small
                stalled = a[~moved]
                converged[stalled] = np.abs(grad[~moved]).max(axis=1) <= 1e3 * tol[stalled]
                active[stalled] = False
        return beta, converged

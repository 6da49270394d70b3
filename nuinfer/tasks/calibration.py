"""Toy-calibrated (Neyman) critical values, calibrated limits and coverage.

The asymptotic thresholds ``chi2.ppf(cl, ndof)`` are not exact: Eq. (26) evaluates the variance at
the SM for every hypothesis and is a Gaussian approximation in low-count bins, so its joint 2-d
region under-covers (``docs/coverage.md``).  This module replaces the threshold by the ``cl``
quantile of the statistic's distribution under the tested hypothesis, estimated with toys.

Test statistic at a tested point (m, g) for data D
--------------------------------------------------
``s(g', m'; D)`` is the statistic profiled over the normalisation nuisance ``a``; then

* raster (1-d): ``t = s(g, m) - min[s(g, m), s(0), min_{g' in grid} s(g', m)]``
* joint (2-d):  ``t = s(g, m) - min[s(g, m), s(0), min_{(m', g') in grid} s(g', m')]``

where the grid is the reference coupling grid ``g_grid`` times the templates' masses.  The tested
point itself is part of the minimum, so ``t >= 0`` also off the grid.

Statistics (all on the chi2 scale)
----------------------------------
* ``"eq26"``: the paper's chi2, variance ``(1 + sigma_bg) R_SM`` (closed-form profile,
  :func:`~nuinfer.likelihood.single.profile_eq26`).  The minimum over the grid is located for all toys
  at once from template Gram matrices (``s = d.d + c - (d.v + c)^2 / (v.v + c)``, ``c =
  1/sigma_sys^2``; O(1) per toy and grid point), and the located minimum is then re-evaluated
  exactly with ``profile_eq26`` (a sum of non-negative terms).
* ``"gauss_hyp"``: Gaussian chi2 with the variance at the hypothesis,
  ``sum_i (D_i - (1+a) R_i)^2 / ((1+a) R_i + R_bg,i) + (a/sigma_sys)^2``.  The profiled ``a``
  enters the variance, so there is no closed form: it is started from the closed form with the
  variance at ``a = 0`` and refined by vectorised Newton steps on the exact, convex function
  (``f'' = 2 sum R^2 n^2 / mu^3``), until the step is below 1e-10.
* ``"poisson"``: Poisson ``twice_nll`` (:func:`~nuinfer.likelihood.single.profile_poisson`).

Toys
----
``n_i ~ Poisson((1 + a_true) R_i(g, m) + R_bg,i)``, ``D = n - R_bg`` (background subtracted, as
:func:`~nuinfer.tasks.template_scan.scan` takes data), with ``a_true = 0`` (``nuisances="fixed"``, Asimov
nuisances) or ``a_true ~ N(0, sigma_sys)`` (``nuisances="sampled"``, the unconditional ensemble;
the default).  Bins with ``R_SM <= min_expected`` are dropped, as in ``scan``.

Randomness goes through :func:`nuinfer.engine.run_chunks`: results depend on ``(seed,
chunk_size)`` only, never on the scheduler or the number of workers.
"""

from __future__ import annotations

import functools
import json
import math
import numbers

import numpy as np
import xarray as xr
from scipy import optimize, stats

from nuinfer.engine import check_seed, run_chunks
from nuinfer.exceptions import InvalidConfig, NumericalError, UnphysicalInput
from nuinfer.likelihood.costs import _check_sigma, _constraint, _inv_sigma_sys2
from nuinfer.likelihood.single import _profile_eq26_scaled, profile_eq26, profile_poisson
from nuinfer.tasks.model_scan import chi2_threshold
from nuinfer.tasks.template_scan import (
    DEFAULT_MIN_EXPECTED,
    _check_cl,
    _check_data,
    _check_g,
    _check_min_expected,
    _check_templates,
)

__all__ = [
    "MODES",
    "NUISANCES",
    "TOY_STATISTICS",
    "calibrated_limits",
    "coverage",
    "critical_values",
    "toy_statistic",
]

#: Statistics that can be calibrated with toys.
TOY_STATISTICS = {"eq26": "chi2", "gauss_hyp": "chi2", "poisson": "twice_nll"}
#: Scan modes: raster (1 dof per mass) or joint (2-d region).
MODES = {"raster": 1, "joint": 2}
#: How the true nuisance of the toys is set.
NUISANCES = ("fixed", "sampled")

_LONG = {
    "eq26": "Eq. (26) chi2, variance (1 + sigma_bg) R_SM",
    "gauss_hyp": "Gaussian chi2, variance (1 + a) R_X + R_bg at the hypothesis",
    "poisson": "Poisson -2 ln(L/L_saturated)",
}
#: Budget of one toy chunk's (toy, grid point) temporaries.
_BUDGET_BYTES = 16 * 2**20
#: Probability mass of a 1-sigma interval (order-statistics MC error of the quantile).
_ONE_SIGMA = 0.6826894921370859
_ERROR_METHOD = ("binomial order-statistics interval: [t_(r), t_(s)] with r, s the "
                 "0.1587/0.8413 quantiles of Binomial(n_toys, cl); t_crit_err = (t_(s) - t_(r))/2")
_QUANTILE_METHOD = ("t_crit = ceil(cl n_toys)-th smallest toy t; a point is excluded when "
                    "t >= t_crit and t > 0 (a best-fitting point is never excluded)")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_choice(value, allowed, key):
    if not isinstance(value, str) or value not in allowed:
        raise InvalidConfig(f"must be one of {', '.join(map(repr, allowed))}; got {value!r}",
                            key=key)
    return value


def _check_n(value, key, minimum=1):
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise InvalidConfig(f"must be an integer >= {minimum}; got {value!r}", key=key)
    return int(value)


def _check_coupling(g, key="g_X"):
    try:
        g = float(g)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number; got {g!r}", key=key) from None
    if not (math.isfinite(g) and g >= 0):
        raise UnphysicalInput(f"must be a finite coupling >= 0; got {g!r}", key=key)
    return g


# --------------------------------------------------------------------------------------------
# the prepared problem (picklable: shipped once to dask workers)
# --------------------------------------------------------------------------------------------
class _Problem:
    """Templates restricted to the used bins, reference grid and precomputed Gram quantities."""

    def __init__(self, templates, g_grid, statistic, sigma_sys, sigma_bg, min_expected):
        self.statistic = _check_choice(statistic, tuple(TOY_STATISTICS), "statistic")
        self.sigma_sys = _check_sigma(sigma_sys, "sigma_sys", allow_inf=True)
        self.sigma_bg = _check_sigma(sigma_bg, "sigma_bg", allow_inf=False)
        self.min_expected = _check_min_expected(min_expected)
        self.g = _check_g(g_grid, strict=True)
        T, r_sm, m = _check_templates(templates)
        used = r_sm > self.min_expected
        if not np.any(used):
            raise InvalidConfig(f"every bin has R_SM <= min_expected = {self.min_expected:g}",
                                key="min_expected")
        self.used, self.r_sm_all, self.m = used, r_sm, m
        self.T = np.ascontiguousarray(T[:, :, used])
        self.r_sm = r_sm[used]
        self.B = self.sigma_bg * self.r_sm
        self.c = _inv_sigma_sys2(self.sigma_sys) if self.sigma_sys > 0 else None
        g2 = self.g * self.g
        self.gp = np.stack([np.ones_like(g2), g2, g2 * g2])  # (3, G)
        if self.statistic == "eq26":
            self.inv_sigma = 1.0 / np.sqrt((1.0 + self.sigma_bg) * self.r_sm)
            self.Ts = self.T * self.inv_sigma  # (3, M, n)
            self.Gm = np.einsum("kmi,lmi->mkl", self.Ts, self.Ts)  # (M, 3, 3)
            vv = np.einsum("mkl,kg,lg->mg", self.Gm, self.gp, self.gp)  # (M, G)
            self.vv = vv
            self.inv_den = None if self.c is None else 1.0 / (vv + self.c)

    # predictions --------------------------------------------------------------------------
    def counts(self, i, g):
        g2 = g * g
        R = self.T[0, i] + g2 * self.T[1, i] + g2 * g2 * self.T[2, i]
        return np.maximum(R, 0.0)

    # toys ---------------------------------------------------------------------------------
    def draw(self, R, n_toys, rng, nuisances):
        """Background-subtracted toy data D (n_toys, bin) from the prediction R (bin,)."""
        if nuisances == "sampled" and self.sigma_sys > 0:
            if math.isinf(self.sigma_sys):
                raise InvalidConfig("nuisances='sampled' needs a finite sigma_sys", key="nuisances")
            a = rng.normal(0.0, self.sigma_sys, n_toys)
            bad = a <= -1.0
            while np.any(bad):  # pragma: no cover - 10 sigma for sigma_sys = 0.1
                a[bad] = rng.normal(0.0, self.sigma_sys, int(bad.sum()))
                bad = a <= -1.0
            mu = (1.0 + a)[:, None] * R[None, :] + self.B
        else:
            mu = np.broadcast_to(R + self.B, (n_toys, R.size))
        return rng.poisson(mu) - self.B

    # statistic at given predictions -------------------------------------------------------
    def stat(self, R, D):
        """Profiled statistic for predictions R (..., bin) and data D (..., bin), broadcast."""
        if self.statistic == "eq26":
            return profile_eq26(R, self.r_sm, data=D, sigma_sys=self.sigma_sys,
                                sigma_bg=self.sigma_bg).minimum, 0
        if self.statistic == "poisson":
            res = profile_poisson(R, self.r_sm, data=D, sigma_sys=self.sigma_sys,
                                  sigma_bg=self.sigma_bg)
            return res.minimum, int((~res.converged).sum())
        val, _, conv = _profile_gauss_hyp(R, D, self.B, self.sigma_sys)
        return val, int((~conv).sum())

    def grid_rows(self, masses):
        """Predictions (len(masses) * G, bin) on the reference grid at the given mass indices."""
        T = self.T[:, masses]  # (3, Mr, n)
        R = np.einsum("kmi,kg->mgi", T, self.gp).reshape(-1, self.T.shape[2])
        return np.maximum(R, 0.0)

    # the test statistic t for many data sets ----------------------------------------------
    def t_values(self, i, g, D, mode):
        """t at (m index i, g) for every data set in D (K, bin); returns (t, n_not_converged)."""
        masses = [i] if mode == "raster" else list(range(self.m.size))
        R_true = self.counts(i, g)
        s_true, nc = self.stat(R_true, D)
        K = D.shape[0]
        if self.statistic == "eq26":
            s_min = self._eq26_min(masses, i, g, D)
        else:
            R_grid = np.concatenate([self.grid_rows(masses), self.r_sm[None, :]])
            P = R_grid.shape[0]
            per_toy = P * self.T.shape[2] * 8 * 12
            kc = max(1, min(K, _BUDGET_BYTES // per_toy))
            s_min = np.empty(K)
            for s in range(0, K, kc):
                sl = slice(s, min(s + kc, K))
                val, nci = self.stat(R_grid[None, :, :], D[sl, None, :])
                s_min[sl] = val.min(axis=1)
                nc += nci
        return s_true - np.minimum(s_true, s_min), nc

    def _eq26_min(self, masses, i, g, D):
        """Minimum of Eq. (26) over grid, SM and tested point: located by Gram, exact value."""
        K, n = D.shape
        d = D * self.inv_sigma
        Ts = self.Ts[:, masses]  # (3, Mr, n)
        A = np.einsum("kmi,ti->tmk", Ts, d)  # (K, Mr, 3)
        A0 = d @ self.Ts[0, 0]  # SM: t0 . d
        vv_sm = self.Gm[0, 0, 0]
        g2 = g * g
        gt = np.array([1.0, g2, g2 * g2])
        At = np.einsum("ki,ti->tk", self.Ts[:, i], d) @ gt  # tested point: v.d
        vv_t = gt @ self.Gm[i] @ gt
        Mr, G = len(masses), self.g.size
        kc = max(1, min(K, _BUDGET_BYTES // (Mr * G * 8 * 2)))
        best_score = np.empty(K)
        best_idx = np.empty(K, dtype=np.int64)
        c = self.c
        for s in range(0, K, kc):
            sl = slice(s, min(s + kc, K))
            dv = A[sl] @ self.gp  # (k, Mr, G)
            if c is None:  # a fixed: chi2 = dd - 2 dv + vv -> maximise 2 dv - vv
                dv *= 2.0
                dv -= self.vv[masses][None]
            else:  # chi2 = dd + c - (dv + c)^2 / (vv + c) -> maximise (dv + c)^2 / (vv + c)
                dv += c
                np.square(dv, out=dv)
                dv *= self.inv_den[masses][None]
            flat = dv.reshape(dv.shape[0], -1)
            best_idx[sl] = flat.argmax(axis=1)
            best_score[sl] = flat[np.arange(flat.shape[0]), best_idx[sl]]
        if c is None:
            sc_sm, sc_t = 2.0 * A0 - vv_sm, 2.0 * At - vv_t
        else:
            sc_sm = (A0 + c) ** 2 / (vv_sm + c)
            sc_t = (At + c) ** 2 / (vv_t + c)
        # prediction of each toy's best candidate, then the exact profiled value there
        mi = np.asarray(masses)[best_idx // G]
        g2b = (self.g * self.g)[best_idx % G]
        g2b = np.where(sc_sm > best_score, 0.0, g2b)
        best_score = np.maximum(best_score, sc_sm)
        use_t = sc_t > best_score
        mi = np.where(use_t, i, mi)
        g2b = np.where(use_t, g2, g2b)
        R_best = self.T[0, 0] + g2b[:, None] * self.T[1, mi] + (g2b * g2b)[:, None] * self.T[2, mi]
        return self.stat(np.maximum(R_best, 0.0), D)[0]


def _profile_gauss_hyp(R, D, B, sigma_sys, *, rtol=1e-10, max_iter=50):
    """Profile ``a`` out of the Gaussian chi2 with the variance at the hypothesis.

    ``f(b) = sum_i (D_i - b R_i)^2 / (b R_i + B_i) + ((b - 1)/sigma_sys)^2`` with ``b = 1 + a``
    (convex for ``b R + B > 0``: ``f'' = 2 sum R^2 n^2 / mu^3 + 2/sigma_sys^2``, ``n = D + B``,
    ``mu = b R + B``).  Start: the closed form of Eq. (26) with the variance at ``b = 1``
    (:func:`~nuinfer.likelihood.single._profile_eq26_scaled`); then Newton steps (halving towards 0
    if a step would leave ``b > 0``).  Returns ``(value, b, converged)`` over the broadcast
    leading dimensions.
    """
    R, D = np.asarray(R, float), np.asarray(D, float)
    mu0 = R + B
    pos0 = mu0 > 0
    w = np.where(pos0, 1.0 / np.sqrt(np.where(pos0, mu0, 1.0)), 0.0)
    n = D + B
    lead = np.broadcast_shapes(R.shape[:-1], D.shape[:-1])
    if sigma_sys == 0.0:
        b = np.ones(lead)
        conv = np.ones(lead, dtype=bool)
    else:
        _, b = _profile_eq26_scaled(R * w, D * w, sigma_sys)
        b = np.broadcast_to(np.maximum(b, 1e-3), lead).copy()
        c = _inv_sigma_sys2(sigma_sys)
        conv = np.zeros(lead, dtype=bool)
        for _ in range(max_iter):
            mu = b[..., None] * R + B
            pos = mu > 0
            inv = np.where(pos, 1.0 / np.where(pos, mu, 1.0), 0.0)
            r = D - b[..., None] * R
            grad = -np.einsum("...i,...i->...", R * r * inv * inv, mu + n) + 2.0 * c * (b - 1.0)
            curv = 2.0 * np.einsum("...i,...i->...", (R * n * inv) ** 2, inv) + 2.0 * c
            step = np.where(curv > 0, grad / np.where(curv > 0, curv, 1.0), 0.0)
            conv = np.abs(step) <= rtol * np.maximum(b, 1e-300)
            b_new = b - step
            b = np.where(b_new > 0, b_new, 0.5 * b)
            if np.all(conv):
                break
    mu = b[..., None] * R + B
    pos = mu > 0
    r = D - b[..., None] * R
    terms = np.where(pos, r * r / np.where(pos, mu, 1.0), np.where(r == 0, 0.0, np.inf))
    val = terms.sum(axis=-1) + _constraint(b - 1.0, sigma_sys)
    return val, b, conv


# --------------------------------------------------------------------------------------------
# quantiles with MC errors
# --------------------------------------------------------------------------------------------
def _quantile_with_error(t, cl):
    """(t_crit, lo, hi): the ceil(cl N)-th order statistic and its 1-sigma binomial interval."""
    N = t.size
    ts = np.sort(t)
    k = min(N, max(1, math.ceil(cl * N)))
    a = (1.0 - _ONE_SIGMA) / 2.0
    r = int(stats.binom.ppf(a, N, cl))
    s = int(stats.binom.ppf(1.0 - a, N, cl)) + 1
    r, s = min(N, max(1, r)), min(N, max(1, s))
    return ts[k - 1], ts[r - 1], ts[s - 1]


def _excluded(t, t_crit):
    """Exclusion rule: ``t >= t_crit`` and ``t > 0``.

    ``t`` has an atom at 0 (the tested point is the best fit); when more than ``1 - cl`` of the
    toys sit there the quantile is ``t_crit = 0``, and ``t >= 0`` would exclude every toy.  A
    best-fitting point is never excluded.
    """
    t = np.asarray(t, float)
    return (t >= t_crit) & (t > 0)


def _binomial_error(k, n):
    f = k / n
    return math.sqrt(max(f * (1.0 - f), 1.0 / n) / n)


# --------------------------------------------------------------------------------------------
# public: the toy distribution of t at one point
# --------------------------------------------------------------------------------------------
def toy_statistic(
    templates: xr.Dataset,
    m_index: int,
    g_true: float,
    *,
    g_grid,
    n_toys: int,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    statistic: str = "eq26",
    mode: str = "raster",
    nuisances: str = "sampled",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    min_expected: float = DEFAULT_MIN_EXPECTED,
) -> np.ndarray:
    """Toy distribution of the test statistic ``t`` at the tested point ``(m_X[m_index], g_true)``.

    Parameters
    ----------
    templates : xarray.Dataset
        Forward-model templates ``T(power, m_X, bin)``, ``R_SM(bin)`` (see :mod:`.scan`).
    m_index : int
        Index of the tested mass in ``templates.m_X``.
    g_true : float
        Tested coupling (>= 0; need not be on ``g_grid``).
    g_grid : array_like
        Reference coupling grid (> 0, increasing) of the minimum (the SM point is added).
    n_toys : int
        Number of toys (>= 1).
    seed, rng : int or numpy.random.Generator
        Exactly one of them.
    statistic : {"eq26", "gauss_hyp", "poisson"}
    mode : {"raster", "joint"}
        Minimum over g at this mass (1-d) or over the whole (m_X, g_X) grid (2-d).
    nuisances : {"sampled", "fixed"}
        True nuisance of the toys: drawn from N(0, sigma_sys) (default) or 0 (Asimov).
    sigma_sys, sigma_bg, min_expected
        As in :func:`~nuinfer.tasks.template_scan.scan`.

    Returns
    -------
    numpy.ndarray, shape (n_toys,)
        ``t >= 0`` for every toy (see the module docstring).
    """
    if (seed is None) == (rng is None):
        raise InvalidConfig("give exactly one of seed= and rng=", key="seed")
    if rng is None:
        rng = np.random.default_rng(check_seed(seed))
    prob = _Problem(templates, g_grid, statistic, sigma_sys, sigma_bg, min_expected)
    mode = _check_choice(mode, tuple(MODES), "mode")
    nuisances = _check_choice(nuisances, NUISANCES, "nuisances")
    n_toys = _check_n(n_toys, "n_toys")
    i = _check_m_index(m_index, prob.m.size)
    g = _check_coupling(g_true, "g_true")
    D = prob.draw(prob.counts(i, g), n_toys, rng, nuisances)
    return prob.t_values(i, g, D, mode)[0]


def _check_m_index(i, M):
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral) or not 0 <= i < M:
        raise InvalidConfig(f"must be an integer index in [0, {M}); got {i!r}", key="m_index")
    return int(i)


def _mass_indices(prob, masses):
    if masses is None:
        return np.arange(prob.m.size)
    mv = np.atleast_1d(np.asarray(masses, dtype=float))
    out = []
    for x in mv:
        j = int(np.argmin(np.abs(prob.m - x)))
        if not np.isclose(prob.m[j], x, rtol=1e-9, atol=0.0):
            raise InvalidConfig(
                f"mass {x} MeV is not among the templates' m_X; compute templates at it "
                "(ForwardModel.templates) or pick one of templates.m_X", key="masses")
        out.append(j)
    return np.asarray(out, dtype=int)


def _common(prob, statistic, mode, n_toys, cl, seed, nuisances, chunk_size):
    mode = _check_choice(mode, tuple(MODES), "mode")
    nuisances = _check_choice(nuisances, NUISANCES, "nuisances")
    if nuisances == "sampled" and math.isinf(prob.sigma_sys):
        raise InvalidConfig("nuisances='sampled' needs a finite sigma_sys", key="nuisances")
    n_toys = _check_n(n_toys, "n_toys")
    cl = _check_cl(cl)
    seed = check_seed(seed)
    chunk_size = _check_n(chunk_size, "chunk_size")
    return mode, nuisances, n_toys, cl, seed, chunk_size


def _attrs(prob, *, statistic, mode, nuisances, n_toys, cl, seed, chunk_size):
    ndof = MODES[mode]
    return dict(
        calibration="toys",
        statistic=statistic,
        statistic_scale=TOY_STATISTICS[statistic],
        statistic_long_name=_LONG[statistic],
        mode=mode,
        scan_mode="raster_1d" if mode == "raster" else "joint_2d",
        ndof=ndof,
        cl=cl,
        threshold_asymptotic=chi2_threshold(cl, ndof),
        threshold_rule=f"scipy.stats.chi2.ppf({cl}, {ndof})",
        n_toys=n_toys,
        seed=seed,
        chunk_size=chunk_size,
        nuisances=nuisances,
        nuisances_rule=("a_true = 0 (Asimov nuisances)" if nuisances == "fixed"
                        else "a_true ~ N(0, sigma_sys) per toy"),
        toy_model="n ~ Poisson((1 + a_true) R_X + R_bg), D = n - R_bg, R_bg = sigma_bg R_SM",
        quantile_method=_QUANTILE_METHOD,
        error_method=_ERROR_METHOD,
        sigma_sys=prob.sigma_sys,
        sigma_bg=prob.sigma_bg,
        min_expected=prob.min_expected,
        dropped_bins=json.dumps([int(k) for k in np.flatnonzero(~prob.used)]),
        n_bins_used=int(prob.used.sum()),
        reference_grid=(f"{prob.m.size} m_X x {prob.g.size} g_X "
                        f"({prob.g[0]:.6g}-{prob.g[-1]:.6g}) plus g_X = 0"),
    )


# --------------------------------------------------------------------------------------------
# public: critical values on a set of tested points
# --------------------------------------------------------------------------------------------
def _cv_chunk(prob, points, mode, nuisances, n_toys, cl, chunk, rng):
    out = []
    for k in chunk:
        i, g = points[k]
        D = prob.draw(prob.counts(i, g), n_toys, rng, nuisances)
        t, nc = prob.t_values(i, g, D, mode)
        tc, lo, hi = _quantile_with_error(t, cl)
        thr = chi2_threshold(cl, MODES[mode])
        out.append((tc, lo, hi, int(np.sum(t >= thr)), nc))
    return out


def critical_values(
    templates: xr.Dataset,
    g_grid,
    masses=None,
    *,
    g_test=None,
    statistic: str = "eq26",
    mode: str = "raster",
    n_toys: int = 1000,
    cl: float = 0.9,
    seed: int,
    nuisances: str = "sampled",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    min_expected: float = DEFAULT_MIN_EXPECTED,
    scheduler=None,
    n_workers: int | None = None,
    chunk_size: int = 1,
    progress=None,
) -> xr.Dataset:
    """Toy-calibrated critical values ``t_crit(m_X, g_X)`` (Neyman construction).

    Parameters
    ----------
    templates : xarray.Dataset
        Forward-model templates.
    g_grid : array_like
        Reference coupling grid of the minimum (> 0, increasing; the SM point is added).
    masses : array_like, optional
        Tested masses [MeV], each one of ``templates.m_X``. Default: all.
    g_test : array_like, optional
        Tested couplings (>= 0). Default ``g_grid``.
    statistic : {"eq26", "gauss_hyp", "poisson"}
    mode : {"raster", "joint"}
    n_toys : int
        Toys per tested point. Default 1000.
    cl : float
        Confidence level. Default 0.9.
    seed : int
        In [0, 2**63); with ``chunk_size`` it fixes every toy.
    nuisances : {"sampled", "fixed"}
    sigma_sys, sigma_bg, min_expected
        As in :func:`~nuinfer.tasks.template_scan.scan`.
    scheduler, n_workers, progress
        See :func:`nuinfer.engine.run_chunks`.
    chunk_size : int
        Tested points per chunk (one random stream each). Default 1.

    Returns
    -------
    xarray.Dataset
        Dims (m_X, g_X): ``t_crit``, ``t_crit_lo``, ``t_crit_hi``, ``t_crit_err`` (MC error, see
        ``error_method``), ``fraction_above_asymptotic`` and its ``_err`` (the fraction of toys
        with ``t >= chi2.ppf(cl, ndof)``: the asymptotic miss rate at that point, nominal
        ``1 - cl``), ``n_not_converged``; scalar ``t_asymptotic``.  Attrs: calibration="toys",
        statistic, mode, ndof, cl, n_toys, seed, chunk_size, nuisances, ...
    """
    prob = _Problem(templates, g_grid, statistic, sigma_sys, sigma_bg, min_expected)
    mode, nuisances, n_toys, cl, seed, chunk_size = _common(
        prob, statistic, mode, n_toys, cl, seed, nuisances, chunk_size)
    mi = _mass_indices(prob, masses)
    gt = prob.g if g_test is None else _check_g(g_test, strict=False)
    points = [(int(i), float(g)) for i in mi for g in gt]
    fn = functools.partial(_cv_chunk, prob, points, mode, nuisances, n_toys, cl)
    res = run_chunks(fn, len(points), seed=seed, chunk_size=chunk_size, scheduler=scheduler,
                     n_workers=n_workers, progress=progress)
    flat = np.array([r for chunk in res for r in chunk], dtype=float)
    shape = (mi.size, gt.size)
    tc, lo, hi, k_above, nc = (flat[:, j].reshape(shape) for j in range(5))
    frac = k_above / n_toys
    frac_err = np.sqrt(np.maximum(frac * (1 - frac), 1.0 / n_toys) / n_toys)
    dims = ("m_X", "g_X")
    one = {"units": "1"}
    attrs = _attrs(prob, statistic=statistic, mode=mode, nuisances=nuisances, n_toys=n_toys,
                   cl=cl, seed=seed, chunk_size=chunk_size)
    return xr.Dataset(
        {
            "t_crit": (dims, tc, {**one, "long_name": f"toy {cl} quantile of t (critical value)"}),
            "t_crit_lo": (dims, lo, {**one, "long_name": "t_crit 1-sigma interval, lower end"}),
            "t_crit_hi": (dims, hi, {**one, "long_name": "t_crit 1-sigma interval, upper end"}),
            "t_crit_err": (dims, 0.5 * (hi - lo), {
                **one, "long_name": "MC error of t_crit (half width of the 1-sigma interval)"}),
            "fraction_above_asymptotic": (dims, frac, {
                **one, "long_name": "fraction of toys with t >= chi2.ppf(cl, ndof)"}),
            "fraction_above_asymptotic_err": (dims, frac_err, {
                **one, "long_name": "binomial error of fraction_above_asymptotic"}),
            "n_not_converged": (dims, nc.astype(np.int64), {
                **one, "long_name": "profiles not converged among the toys' fits"}),
            "t_asymptotic": ((), attrs["threshold_asymptotic"], {
                **one, "long_name": f"asymptotic threshold chi2.ppf({cl}, {MODES[mode]})"}),
        },
        coords={
            "m_X": ("m_X", prob.m[mi], {"units": "MeV", "long_name": "mediator mass m_X"}),
            "g_X": ("g_X", gt, {"units": "1", "long_name": "tested coupling g_X"}),
        },
        attrs=attrs,
    )


# --------------------------------------------------------------------------------------------
# public: calibrated limits
# --------------------------------------------------------------------------------------------
def _t_obs(prob, i, g, D, mode, s_ref):
    s = prob.stat(prob.counts(i, g), D)[0]
    return float(s - min(s, s_ref))


def _limit_one(prob, i, D_obs, mode, nuisances, n_toys, cl, n_bisect, rng):
    thr = chi2_threshold(cl, MODES[mode])
    masses = [i] if mode == "raster" else list(range(prob.m.size))
    s_grid = prob.stat(prob.grid_rows(masses), D_obs)[0]
    s_sm = float(prob.stat(prob.r_sm, D_obs)[0])
    s_ref = min(float(s_grid.min()), s_sm)
    t_line = prob.stat(prob.grid_rows([i]), D_obs)[0] - s_ref  # t on the grid at this mass
    out = dict(g90_asymptotic=np.nan, g90_calibrated=np.nan, g_allowed=np.nan,
               g_excluded=np.nan, t_crit=np.nan, t_crit_err=np.nan, t_obs=np.nan,
               n_evaluations=0, status=1, n_not_converged=0)
    j_best = int(np.argmin(t_line))
    above = np.flatnonzero((t_line >= thr) & (np.arange(t_line.size) > j_best))
    if t_line[0] >= thr and j_best == 0:
        above = np.array([0])
    if above.size == 0:
        return out  # status 1: nothing excluded above the best fit within the grid
    j = int(above[0])
    lg = np.log10(prob.g)
    if j == 0:
        out.update(g90_asymptotic=prob.g[0], status=2)
        g_a = prob.g[0]
    else:
        f = lambda x: _t_obs(prob, i, 10.0**x, D_obs, mode, s_ref) - thr  # noqa: E731
        g_a = 10.0 ** optimize.brentq(f, lg[j - 1], lg[j], xtol=1e-8)
        out.update(g90_asymptotic=g_a, status=0)
    # calibrated boundary: h(g) = t_obs(g) - t_crit(g) with common random numbers per mass
    crn = int(rng.integers(2**63))
    nc_total = 0

    def h(g):
        nonlocal nc_total
        D = prob.draw(prob.counts(i, g), n_toys, np.random.default_rng(crn), nuisances)
        t, nc = prob.t_values(i, g, D, mode)
        nc_total += nc
        tc, lo, hi = _quantile_with_error(t, cl)
        t_o = _t_obs(prob, i, g, D_obs, mode, s_ref)
        # excluded iff t_obs >= t_crit and t_obs > 0 (see _excluded): negative when not
        val = t_o - tc if t_o > 0 else min(t_o - tc, -1e-12)
        return val, tc, 0.5 * (hi - lo)

    n_eval = 1
    h_a, tc_a, err_a = h(g_a)
    ev = {g_a: (h_a, tc_a, err_a)}
    step = 0.05
    if h_a >= 0:
        g_out, g_in = g_a, None
        for _ in range(10):
            g_try = g_out * 10.0 ** (-step)
            ev[g_try] = h(g_try)
            n_eval += 1
            if ev[g_try][0] < 0:
                g_in = g_try
                break
            g_out, step = g_try, 2 * step
    else:
        g_in, g_out = g_a, None
        for _ in range(10):
            g_try = g_in * 10.0**step
            ev[g_try] = h(g_try)
            n_eval += 1
            if ev[g_try][0] >= 0:
                g_out = g_try
                break
            g_in, step = g_try, 2 * step
    if g_in is None or g_out is None:
        out.update(n_evaluations=n_eval, status=3, n_not_converged=nc_total)
        return out  # status 3: calibrated boundary not bracketed within 10 steps
    for _ in range(n_bisect):
        g_mid = math.sqrt(g_in * g_out)
        ev[g_mid] = h(g_mid)
        n_eval += 1
        if ev[g_mid][0] >= 0:
            g_out = g_mid
        else:
            g_in = g_mid
    (h0, tc0, e0), (h1, tc1, e1) = ev[g_in], ev[g_out]
    w = h0 / (h0 - h1) if h1 != h0 else 0.5  # linear interpolation of h in log g
    w = min(max(w, 0.0), 1.0)
    g_c = 10.0 ** ((1 - w) * math.log10(g_in) + w * math.log10(g_out))
    out.update(g90_calibrated=g_c, g_allowed=g_in, g_excluded=g_out,
               t_crit=(1 - w) * tc0 + w * tc1, t_crit_err=max(e0, e1),
               t_obs=_t_obs(prob, i, g_c, D_obs, mode, s_ref), n_evaluations=n_eval,
               n_not_converged=nc_total)
    return out


def _limit_chunk(prob, mi, D_obs, mode, nuisances, n_toys, cl, n_bisect, chunk, rng):
    return [_limit_one(prob, int(mi[k]), D_obs, mode, nuisances, n_toys, cl, n_bisect, rng)
            for k in chunk]


#: Meaning of the per-mass ``status`` codes of :func:`calibrated_limits`.
LIMIT_STATUS = {
    0: "ok",
    1: "none_excluded (no asymptotic crossing above the best fit within g_grid)",
    2: "excluded_at_grid_min (asymptotic g90 = min(g_grid) is an upper bound)",
    3: "calibrated boundary not bracketed within 10 geometric steps",
}


def calibrated_limits(
    templates: xr.Dataset,
    g_grid,
    masses=None,
    *,
    data=None,
    statistic: str = "eq26",
    mode: str = "raster",
    n_toys: int = 1000,
    cl: float = 0.9,
    seed: int,
    nuisances: str = "sampled",
    n_bisect: int = 5,
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    min_expected: float = DEFAULT_MIN_EXPECTED,
    scheduler=None,
    n_workers: int | None = None,
    chunk_size: int = 1,
    progress=None,
) -> xr.Dataset:
    """Upper limit g90(m_X) with toy-calibrated critical values, calibrating only near the boundary.

    Per mass: the asymptotic limit ``g_a`` is the first crossing of ``t_obs(g) =
    chi2.ppf(cl, ndof)`` above the best fit (grid search, then brentq in log g); the calibrated
    boundary ``t_obs(g) = t_crit(g)`` is bracketed from ``g_a`` by geometric steps (0.05, 0.1,
    0.2, ... decades) and refined by ``n_bisect`` bisections in log g, then interpolated linearly
    in log g.  Every evaluation runs ``n_toys`` toys at that (m, g) with the same random numbers
    (common random numbers: ``t_crit(g)`` is smooth in g).  Typical cost: 2 + n_bisect toy
    calibrations per mass instead of a whole grid.

    Parameters
    ----------
    templates, g_grid, masses, statistic, mode, n_toys, cl, seed, nuisances, sigma_sys, sigma_bg,
    min_expected, scheduler, n_workers, progress
        As in :func:`critical_values`; ``chunk_size`` counts masses.
    data : array_like, shape (bin,), optional
        Observed background-subtracted counts ``D = n - R_bg`` over all template bins. Default
        ``None``: Asimov SM data (expected limits).
    n_bisect : int
        Bisection steps in log g after bracketing. Default 5.

    Returns
    -------
    xarray.Dataset
        Dim m_X: ``g90_calibrated``, ``g90_asymptotic``, the final bracket ``g_allowed`` /
        ``g_excluded``, ``t_crit`` at the calibrated limit and ``t_crit_err`` (MC error),
        ``t_obs``, ``n_evaluations``, ``status`` (:data:`LIMIT_STATUS`), ``n_not_converged``.
        NaN where there is no limit (status 1, 3).  Attrs as :func:`critical_values` plus
        ``n_bisect``, ``data_source``, ``status_meanings``.
    """
    prob = _Problem(templates, g_grid, statistic, sigma_sys, sigma_bg, min_expected)
    mode, nuisances, n_toys, cl, seed, chunk_size = _common(
        prob, statistic, mode, n_toys, cl, seed, nuisances, chunk_size)
    n_bisect = _check_n(n_bisect, "n_bisect", minimum=0)
    D_all, source = _check_data(data, prob.r_sm_all, prob.sigma_bg)
    D_obs = np.asarray(D_all, float)[prob.used]
    mi = _mass_indices(prob, masses)
    fn = functools.partial(_limit_chunk, prob, mi, D_obs, mode, nuisances, n_toys, cl, n_bisect)
    res = run_chunks(fn, mi.size, seed=seed, chunk_size=chunk_size, scheduler=scheduler,
                     n_workers=n_workers, progress=progress)
    rows = [r for chunk in res for r in chunk]
    one = {"units": "1"}
    spec = {
        "g90_calibrated": f"{cl} CL limit with toy critical values",
        "g90_asymptotic": f"{cl} CL limit with chi2.ppf({cl}, {MODES[mode]})",
        "g_allowed": "calibrated bracket: largest allowed coupling evaluated",
        "g_excluded": "calibrated bracket: smallest excluded coupling evaluated",
        "t_crit": "toy critical value at g90_calibrated (interpolated)",
        "t_crit_err": "MC error of t_crit (binomial order statistics, larger bracket end)",
        "t_obs": "observed t at g90_calibrated",
    }
    data_vars = {k: ("m_X", np.array([r[k] for r in rows], float), {**one, "long_name": v})
                 for k, v in spec.items()}
    for k, v in (("n_evaluations", "toy calibrations run at this mass"),
                 ("status", "limit status code (see attrs status_meanings)"),
                 ("n_not_converged", "profiles not converged among the toys' fits")):
        data_vars[k] = ("m_X", np.array([r[k] for r in rows], np.int64), {**one, "long_name": v})
    attrs = _attrs(prob, statistic=statistic, mode=mode, nuisances=nuisances, n_toys=n_toys,
                   cl=cl, seed=seed, chunk_size=chunk_size)
    attrs.update(n_bisect=n_bisect, data_source=source,
                 status_meanings=json.dumps({str(k): v for k, v in LIMIT_STATUS.items()}),
                 boundary_rule=("first crossing above the best fit of t_obs(g) = t_crit(g), "
                                "searched from the asymptotic g90 only"))
    return xr.Dataset(
        data_vars,
        coords={"m_X": ("m_X", prob.m[mi], {"units": "MeV", "long_name": "mediator mass m_X"})},
        attrs=attrs,
    )


# --------------------------------------------------------------------------------------------
# public: coverage
# --------------------------------------------------------------------------------------------
def _cov_chunk(prob, pts, mode, nuisances, n_toys, n_cal, cl, calibrate, chunk, rng):
    thr = chi2_threshold(cl, MODES[mode])
    out = []
    for k in chunk:
        i, g = pts[k]
        R = prob.counts(i, g)
        t, nc = prob.t_values(i, g, prob.draw(R, n_toys, rng, nuisances), mode)
        row = dict(k_asym=int(np.sum(t >= thr)), q=_quantile_with_error(t, cl)[0], nc=nc,
                   tc=np.nan, tc_err=np.nan, k_cal=-1)
        if calibrate:
            tcal, nc2 = prob.t_values(i, g, prob.draw(R, n_cal, rng, nuisances), mode)
            tc, lo, hi = _quantile_with_error(tcal, cl)
            row.update(tc=tc, tc_err=0.5 * (hi - lo), k_cal=int(np.sum(_excluded(t, tc))),
                       nc=nc + nc2)
        out.append(row)
    return out


def coverage(
    templates: xr.Dataset,
    g_grid,
    truths,
    *,
    statistic: str = "eq26",
    mode: str = "raster",
    n_toys: int = 1000,
    n_toys_calibration: int | None = None,
    calibrate: bool = True,
    cl: float = 0.9,
    seed: int,
    nuisances: str = "sampled",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    min_expected: float = DEFAULT_MIN_EXPECTED,
    scheduler=None,
    n_workers: int | None = None,
    chunk_size: int = 1,
    progress=None,
) -> xr.Dataset:
    """Fraction of toys that exclude their own truth, with asymptotic and calibrated thresholds.

    Parameters
    ----------
    truths : sequence of (m_X_MeV, g_X)
        True points; each mass one of ``templates.m_X``; ``g_X >= 0``.
    n_toys : int
        Toys per truth for the coverage. Default 1000.
    n_toys_calibration : int, optional
        Independent toys per truth for the calibrated critical value. Default ``n_toys``.
    calibrate : bool
        Also measure the calibrated threshold's coverage. Default True.
    others
        As in :func:`critical_values`.

    Returns
    -------
    xarray.Dataset
        Dim ``truth``: ``m_X``, ``g_X``, ``fraction_excluded_asymptotic`` (t >= chi2.ppf) and
        ``_err`` (binomial), ``t_quantile`` (the cl quantile of t over the coverage toys: the
        threshold that would give exact coverage), and if calibrated ``t_crit``, ``t_crit_err``,
        ``fraction_excluded_calibrated`` and ``_err`` (t >= t_crit from independent toys; its
        spread also contains the MC error of t_crit).  Nominal fraction ``1 - cl``.
    """
    prob = _Problem(templates, g_grid, statistic, sigma_sys, sigma_bg, min_expected)
    mode, nuisances, n_toys, cl, seed, chunk_size = _common(
        prob, statistic, mode, n_toys, cl, seed, nuisances, chunk_size)
    n_cal = n_toys if n_toys_calibration is None else _check_n(n_toys_calibration,
                                                                "n_toys_calibration")
    try:
        tr = [(float(m), _check_coupling(g)) for m, g in truths]
    except (TypeError, ValueError):
        raise InvalidConfig("must be a sequence of (m_X_MeV, g_X) pairs", key="truths") from None
    if not tr:
        raise InvalidConfig("must contain at least one (m_X_MeV, g_X) pair", key="truths")
    mi = _mass_indices(prob, [m for m, _ in tr])
    pts = [(int(i), g) for i, (_, g) in zip(mi, tr)]
    fn = functools.partial(_cov_chunk, prob, pts, mode, nuisances, n_toys, n_cal, cl,
                           bool(calibrate))
    res = run_chunks(fn, len(pts), seed=seed, chunk_size=chunk_size, scheduler=scheduler,
                     n_workers=n_workers, progress=progress)
    rows = [r for chunk in res for r in chunk]
    if any(r["nc"] for r in rows):
        bad = sum(r["nc"] for r in rows)
        raise NumericalError(f"{bad} toy profiles did not converge; the coverage would be wrong")
    one = {"units": "1"}
    fa = np.array([r["k_asym"] for r in rows]) / n_toys
    dv = {
        "fraction_excluded_asymptotic": (
            "truth", fa, {**one, "long_name": "fraction of toys with t >= chi2.ppf(cl, ndof)"}),
        "fraction_excluded_asymptotic_err": (
            "truth", np.array([_binomial_error(r["k_asym"], n_toys) for r in rows]),
            {**one, "long_name": "binomial error"}),
        "t_quantile": ("truth", np.array([r["q"] for r in rows]),
                       {**one, "long_name": "cl quantile of t over the coverage toys"}),
    }
    if calibrate:
        dv.update({
            "t_crit": ("truth", np.array([r["tc"] for r in rows]),
                       {**one, "long_name": "calibrated critical value (independent toys)"}),
            "t_crit_err": ("truth", np.array([r["tc_err"] for r in rows]),
                           {**one, "long_name": "MC error of t_crit"}),
            "fraction_excluded_calibrated": (
                "truth", np.array([r["k_cal"] for r in rows]) / n_toys,
                {**one, "long_name": "fraction of toys with t >= t_crit"}),
            "fraction_excluded_calibrated_err": (
                "truth", np.array([_binomial_error(r["k_cal"], n_toys) for r in rows]),
                {**one, "long_name": "binomial error (toys of the coverage only)"}),
        })
    attrs = _attrs(prob, statistic=statistic, mode=mode, nuisances=nuisances, n_toys=n_toys,
                   cl=cl, seed=seed, chunk_size=chunk_size)
    attrs.update(n_toys_calibration=n_cal if calibrate else 0, nominal_fraction=1.0 - cl)
    return xr.Dataset(
        dv,
        coords={
            "truth": ("truth", np.arange(len(pts)), {**one, "long_name": "true point index"}),
            "m_X": ("truth", [m for m, _ in tr], {"units": "MeV", "long_name": "true m_X"}),
            "g_X": ("truth", [g for _, g in tr], {**one, "long_name": "true g_X"}),
        },
        attrs=attrs,
    )

"""Bayesian posteriors over (log10 m_X, log10 g_X, a) with emcee: likelihood, sampler, storage.

What is sampled
---------------
``theta = (log10(m_X / MeV), log10(g_X), a)`` with priors described by :class:`Parameter`:
uniform in each log10 parameter inside a box, and a Gaussian of width ``sigma_a`` on the
normalisation nuisance ``a`` (truncated to ``a > -1``, i.e. a non-negative prediction).  When
``sigma_a = 0`` the nuisance is fixed to 0 and not sampled.

Likelihood
----------
The same statistics as the frequentist scans (:mod:`nuinfer.likelihood.costs`), *without* the
Gaussian constraint on ``a`` (it is the prior here) and without minimising over ``a`` (it is
sampled)::

    log L = -chi2_data / 2,   chi2_data = sum_i ((D_i - (1 + a) R_i) / sigma_i)^2        (eq26)
    log L = -twice_nll_data / 2 = -sum_i [mu_i - n_i + n_i ln(n_i / mu_i)]               (poisson)

with ``R = T0 + g^2 T1(m) + g^4 T2(m)``.  Observed data are read as the scans read them:
background subtracted, ``D = n - R_bg`` (negative where ``n < R_bg``; only ``n >= 0`` is
required), and the Poisson terms come from :func:`nuinfer.likelihood.costs._poisson_terms`
(``n = D + R_bg``, ``mu = (1 + a) R + R_bg``, with ``0 ln 0 = 0``: a bin with ``n = 0``
contributes ``mu``).  With ``sigma_a = sigma_sys`` the log posterior is
``-chi2_Eq26 / 2`` plus a constant: the paper's Eq. (26) read as a likelihood.  Bins with
``R_SM <= min_expected`` are dropped, as in :func:`nuinfer.tasks.template_scan.scan`.

Interpolation in the mass
-------------------------
``T1`` and ``T2`` are known exactly on a grid of masses uniform in ``log10 m`` spanning the
prior box; in between they are interpolated with a cubic spline (not-a-knot) of the *values*
``T_p`` as functions of ``x = log10 m`` (:class:`TemplateInterpolator`).  Interpolating the
values, not ``log|T_p|``, keeps the scheme linear in the templates, so sign changes of the
interference template (B-L, L_mu - L_tau) are harmless.  Each template is a sum of propagator
powers ``(q^2 + 10^(2x))^(-p)``, a smooth step in ``x`` whose k-th derivative is of order
``(2 p ln 10)^k`` times the template, so the spline error scales as ``h^4`` (``h`` = grid step
in decades); the not-a-knot estimate ``(5/384) h^4 (4 ln 10)^4 ~ 94 h^4`` gives the order of
magnitude.  Measured on the EvES universal vector (max over 120 midpoints, 71 couplings
1e-8..0.1 and all bins, relative error of the counts ``R``): 2.7e-4 for ``h = 1/30`` decade and
1.6e-5 for ``h = 1/60``; the default grid (241 points on 6 decades, ``h = 1/40``) stays below
1e-4.  :func:`interpolation_error` measures it against exact templates at the grid midpoints,
where it is largest; ``nuinfer sample`` does so for every run and records the result.

Sampling, storage and resume
----------------------------
:func:`run_sampler` runs emcee's ensemble sampler (``vectorize=True``) with its default stretch move.  One seed controls everything: the
initial walkers come from ``numpy.random.default_rng(seed)`` (prior draws) and emcee's legacy
``RandomState`` is ``RandomState(seed)``.  A run can be continued to a
*total* number of steps from its last positions, log-probabilities and ``RandomState`` state;
the continued chain is bit-for-bit the chain of an uninterrupted run.  :func:`to_datatree`
writes the ArviZ layout: ``posterior``, ``sample_stats`` and ``log_likelihood`` hold the
draws after the burn-in only, ``warmup_posterior`` and ``warmup_sample_stats`` the burn-in,
plus ``observed_data``, ``constant_data`` and ``sampler_state`` (the emcee ``RandomState`` and
the per-walker acceptance counts); :func:`run_from_datatree` joins the two parts back into the
whole run for resuming.

Monte Carlo standard errors
---------------------------
Every reported summary carries its MCSE, from numpy alone (:func:`integrated_time`,
:func:`mean_mcse`, :func:`quantile_mcse`, :func:`summarize`): the integrated autocorrelation
time over the ensemble gives the effective sample size, the mean's MCSE is
``sd sqrt(tau / N)``, and a quantile's MCSE is the binomial error of its indicator (with the
indicator's own autocorrelation time) mapped back through the empirical quantile function.
:func:`prior_dominance` flags marginals whose Kolmogorov-Smirnov distance to the prior is below
:data:`PRIOR_KS_THRESHOLD`.

The hook for other likelihoods
------------------------------
:class:`Posterior` takes any vectorised ``log_likelihood(theta) -> (n,)`` callable, so toy
likelihoods (e.g. a Gaussian with a known answer) go through exactly the same prior, sampler,
diagnostics and storage code as the physics likelihood.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xarray as xr

from nuinfer.exceptions import DataFileError, InvalidConfig, NumericalError, UnphysicalInput
from nuinfer.likelihood.costs import _check_data, _poisson_terms
from nuinfer.progress import Progress

__all__ = [
    "PRIOR_KS_THRESHOLD",
    "TAU_RELIABLE",
    "Diagnostics",
    "Parameter",
    "Posterior",
    "SamplerRun",
    "TemplateInterpolator",
    "TemplateLikelihood",
    "autocorr_time",
    "burn_in",
    "chains_from_tree",
    "corner_annotations",
    "diagnostics",
    "effective_sample_size",
    "integrated_time",
    "interpolation_error",
    "ks_distance_to_prior",
    "log_prob_throughput",
    "mean_mcse",
    "mediator_parameters",
    "prior_dominance",
    "quantile_mcse",
    "run_from_datatree",
    "run_sampler",
    "stacked_samples",
    "summarize",
    "to_datatree",
]

#: Chains shorter than this many integrated autocorrelation times are flagged (emcee's ``tol``).
TAU_RELIABLE = 50.0

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# parameters and priors
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """A sampled parameter with its prior and metadata (after bilby's ``Prior``).

    Parameters
    ----------
    name : str
        Variable name in the output (``log10_m_X``, ``log10_g_X``, ``a``).
    latex_label : str
        Axis label (LaTeX, with the unit where there is one).
    unit : str
        Unit of the sampled value (``"1"`` for dimensionless; for ``log10_m_X`` the unit of the
        argument of the log, ``"MeV"``).
    lo, hi : float
        Support of the prior (``hi`` may be ``inf`` for a Gaussian prior).
    prior : {"uniform", "normal"}
        Uniform on ``[lo, hi]``, or a Gaussian ``N(mu, sigma)`` truncated to ``(lo, hi)``.
    mu, sigma : float
        Centre and width of a Gaussian prior (ignored for uniform).
    scale : {"log10", "linear"}
        Whether the sampled value is the log10 of a physical quantity.
    """

    name: str
    latex_label: str
    unit: str
    lo: float
    hi: float
    prior: str = "uniform"
    mu: float = 0.0
    sigma: float = 1.0
    scale: str = "linear"

    def __post_init__(self):
        if self.prior not in ("uniform", "normal"):
            raise InvalidConfig(f"prior must be 'uniform' or 'normal'; got {self.prior!r}",
                                key=f"posterior.{self.name}")
        if self.scale not in ("log10", "linear"):
            raise InvalidConfig(f"scale must be 'log10' or 'linear'; got {self.scale!r}",
                                key=f"posterior.{self.name}")
        if not (self.lo < self.hi) or math.isnan(self.lo) or math.isnan(self.hi):
            raise UnphysicalInput(f"lo ({self.lo}) must be below hi ({self.hi})",
                                  key=f"posterior.{self.name}.lo")
        if self.prior == "uniform" and not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise UnphysicalInput("a uniform prior needs finite bounds",
                                  key=f"posterior.{self.name}")
        if self.prior == "normal" and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise UnphysicalInput(f"a Gaussian prior needs a finite sigma > 0; got {self.sigma}",
                                  key=f"posterior.{self.name}.sigma")

    def log_prior(self, x) -> np.ndarray:
        """Log prior density at ``x`` (``-inf`` outside the support; truncation not normalised)."""
        x = np.asarray(x, dtype=float)
        inside = (x > self.lo) & (x < self.hi) if self.prior == "normal" else (
            (x >= self.lo) & (x <= self.hi))
        if self.prior == "uniform":
            val = np.full(x.shape, -math.log(self.hi - self.lo))
        else:
            z = (x - self.mu) / self.sigma
            val = -0.5 * z * z - math.log(self.sigma) - 0.5 * _LOG_2PI
        return np.where(inside, val, -np.inf)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent prior draws (rejection for the truncated Gaussian)."""
        if self.prior == "uniform":
            return rng.uniform(self.lo, self.hi, n)
        out = rng.normal(self.mu, self.sigma, n)
        bad = ~((out > self.lo) & (out < self.hi))
        for _ in range(1000):
            if not bad.any():
                break
            out[bad] = rng.normal(self.mu, self.sigma, int(bad.sum()))
            bad = ~((out > self.lo) & (out < self.hi))
        if bad.any():
            raise UnphysicalInput("the Gaussian prior has almost no mass inside its bounds",
                                  key=f"posterior.{self.name}")
        return out

    def _normal_bounds(self):
        from scipy.special import ndtr
        return (float(ndtr((self.lo - self.mu) / self.sigma)),
                float(ndtr((self.hi - self.mu) / self.sigma)))

    def cdf(self, x) -> np.ndarray:
        """Prior cumulative distribution at ``x`` (the truncation normalised)."""
        x = np.asarray(x, dtype=float)
        if self.prior == "uniform":
            return np.clip((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        from scipy.special import ndtr
        a, b = self._normal_bounds()
        return np.clip((ndtr((x - self.mu) / self.sigma) - a) / (b - a), 0.0, 1.0)

    def prior_std(self) -> float:
        """Standard deviation of the (truncated) prior."""
        if self.prior == "uniform":
            return (self.hi - self.lo) / math.sqrt(12.0)
        a, b = (self.lo - self.mu) / self.sigma, (self.hi - self.mu) / self.sigma
        return self.sigma * truncated_normal_std(a, b)

    def describe(self) -> str:
        """One-line description of the prior, for attrs and logs."""
        if self.prior == "uniform":
            return f"uniform on [{self.lo:g}, {self.hi:g}]"
        return f"normal(mu={self.mu:g}, sigma={self.sigma:g}) truncated to ({self.lo:g}, {self.hi:g})"

    def attrs(self) -> dict:
        """NetCDF attributes of the sampled variable (str / numbers only)."""
        long = {"log10_m_X": "log10 of the mediator mass in MeV",
                "log10_g_X": "log10 of the mediator coupling",
                "a": "normalisation nuisance (prediction x (1 + a))"}.get(self.name, self.name)
        units = "1" if self.scale == "log10" else self.unit
        out = {"units": units, "long_name": long, "latex_label": self.latex_label,
               "prior": self.describe(), "scale": self.scale, "prior_lo": self.lo,
               "prior_hi": self.hi}
        if self.scale == "log10":
            out["log10_of_units"] = self.unit
        return out


def mediator_parameters(log10_m=(-2.0, 4.0), log10_g=(-8.0, -1.0), sigma_a: float = 0.1,
                        *, m_label: str | None = None, g_label: str | None = None) -> tuple:
    """The standard parameter set ``(log10_m_X, log10_g_X[, a])``.

    Parameters
    ----------
    log10_m, log10_g : (float, float)
        Prior boxes in ``log10(m_X / MeV)`` and ``log10(g_X)``.
    sigma_a : float
        Width of the Gaussian prior on ``a``; 0 fixes ``a = 0`` (not sampled).
    m_label, g_label : str, optional
        LaTeX labels (defaults with units).

    Returns
    -------
    tuple of Parameter
    """
    pars = [
        Parameter("log10_m_X", m_label or r"$\log_{10}(m_X/\mathrm{MeV})$", "MeV",
                  float(log10_m[0]), float(log10_m[1]), scale="log10"),
        Parameter("log10_g_X", g_label or r"$\log_{10} g_X$", "1",
                  float(log10_g[0]), float(log10_g[1]), scale="log10"),
    ]
    sigma_a = float(sigma_a)
    if not (math.isfinite(sigma_a) and sigma_a >= 0):
        raise UnphysicalInput(f"must be finite and >= 0; got {sigma_a}", key="posterior.a.sigma")
    if sigma_a > 0:
        pars.append(Parameter("a", r"$a$", "1", -1.0, math.inf, prior="normal", mu=0.0,
                              sigma=sigma_a))
    return tuple(pars)


# --------------------------------------------------------------------------------------------
# template interpolation in log10 m
# --------------------------------------------------------------------------------------------
class TemplateInterpolator:
    """Cubic spline (not-a-knot) of ``T1(m)``, ``T2(m)`` per bin in ``x = log10(m / MeV)``.

    Parameters
    ----------
    log10_m : array_like, shape (M,)
        Strictly increasing grid, ``M >= 4``.
    T1, T2 : array_like, shape (M, bin)
        Templates on the grid [events].
    scale : array_like, shape (bin,), optional
        Per-bin factor applied to the interpolated values (e.g. ``1/sigma_i``).

    Notes
    -----
    Evaluation is vectorised: for ``n`` masses it gathers the ``(4, 2, bin)`` spline coefficients
    of each point's interval and runs one Horner scheme, ``O(n bin)`` with no Python loop.
    Outside the grid the end polynomials are extrapolated (callers keep points inside the prior
    box, which the grid spans).
    """

    def __init__(self, log10_m, T1, T2, scale=None):
        from nuinfer.physics.interp import not_a_knot  # scipy's CubicSpline, without importing scipy.interpolate

        x = np.asarray(log10_m, dtype=float)
        T1 = np.asarray(T1, dtype=float)
        T2 = np.asarray(T2, dtype=float)
        if x.ndim != 1 or x.size < 4 or np.any(~np.isfinite(x)) or np.any(np.diff(x) <= 0):
            raise InvalidConfig("the template mass grid must be finite, strictly increasing "
                                "and have at least 4 points", key="posterior.mass_grid_n")
        if T1.shape != T2.shape or T1.ndim != 2 or T1.shape[0] != x.size:
            raise InvalidConfig(f"T1 and T2 must have shape (mass, bin) = ({x.size}, n); got "
                                f"{T1.shape} and {T2.shape}", key="templates")
        if not (np.all(np.isfinite(T1)) and np.all(np.isfinite(T2))):
            raise NumericalError("templates contain NaN or inf; check the forward model")
        s = np.ones(T1.shape[1]) if scale is None else np.asarray(scale, dtype=float)
        y = np.concatenate([T1 * s, T2 * s], axis=1)  # (M, 2 bin)
        c = not_a_knot(x, y)  # (4, M-1, 2 bin)
        nb = T1.shape[1]
        self.x = x
        self.n_bins = nb
        # (M-1, 4, 2, bin): one contiguous block per interval for a single gather
        self._c = np.ascontiguousarray(c.reshape(4, x.size - 1, 2, nb).transpose(1, 0, 2, 3))

    def __call__(self, log10_m):
        """Interpolated ``(T1, T2)``, each of shape ``(n, bin)``, at ``log10_m`` of shape (n,)."""
        val = self._eval(np.atleast_1d(np.asarray(log10_m, dtype=float)))
        return val[:, 0], val[:, 1]

    def _eval(self, xq: np.ndarray) -> np.ndarray:
        """``(T1, T2)`` stacked, shape ``(n, 2, bin)`` (a new array), at the 1-D float array ``xq``.

        The Horner scheme ``((c0 t + c1) t + c2) t + c3`` runs in place on one buffer: the same
        floating-point operations in the same order as the expression, without its temporaries.
        """
        k = np.searchsorted(self.x, xq, side="right")
        k -= 1
        np.maximum(k, 0, out=k)
        np.minimum(k, self.x.size - 2, out=k)
        t = (xq - self.x[k])[:, None, None]
        c = self._c[k]  # (n, 4, 2, bin)
        val = c[:, 0] * t
        val += c[:, 1]
        val *= t
        val += c[:, 2]
        val *= t
        val += c[:, 3]
        return val


# --------------------------------------------------------------------------------------------
# likelihood from templates
# --------------------------------------------------------------------------------------------
class TemplateLikelihood:
    """Vectorised log-likelihood of ``(log10 m_X, log10 g_X, a)`` from g-polynomial templates.

    Parameters
    ----------
    log10_m_grid : array_like, shape (M,)
        Template mass grid, ``log10(m_X / MeV)``, strictly increasing; it must span the prior box.
    T1, T2 : array_like, shape (M, bin)
        Templates on the grid [events]; ``R = R_SM + g^2 T1 + g^4 T2``.
    r_sm : array_like, shape (bin,)
        SM expectation ``T0`` [events].
    data : array_like, shape (bin,), optional
        Observed counts; default ``None`` is the Asimov data set ``R_SM``.
    statistic : {"eq26", "poisson"}
        Eq. (26) chi2 or the Poisson ``twice_nll`` (both on the chi2 scale, see the module).
    sigma_bg : float
        Background fraction: Eq. (26) variance ``(1 + sigma_bg) R_SM``; Poisson background
        ``sigma_bg R_SM`` added to data and prediction.
    min_expected : float
        Bins with ``R_SM <= min_expected`` are dropped (recorded in :attr:`bin_used`).

    Notes
    -----
    ``log L = -stat_data / 2`` where ``stat_data`` is the statistic of
    :func:`~nuinfer.likelihood.costs.eq26_chi2` / :func:`~nuinfer.likelihood.costs.poisson_twice_nll`
    without the constraint term (``sigma_sys = inf``); the constraint is the prior on ``a``.
    """

    def __init__(self, log10_m_grid, T1, T2, r_sm, *, data=None, statistic: str = "eq26",
                 sigma_bg: float = 0.1, min_expected: float = 1e-9):
        from nuinfer.likelihood.costs import _check_counts, _check_sigma, _check_statistic

        self.statistic = _check_statistic(statistic)
        self.sigma_bg = _check_sigma(sigma_bg, "statistics.sigma_bg", allow_inf=False)
        self.min_expected = _check_sigma(min_expected, "statistics.min_expected", allow_inf=False)
        r_sm = _check_counts(r_sm, "R_SM")
        if r_sm.ndim != 1:
            raise InvalidConfig(f"must have shape (bin,); got {r_sm.shape}", key="R_SM")
        # observed data are background subtracted, D = n - R_bg (may be negative where n < R_bg),
        # exactly as the frequentist scan reads them (nuinfer.tasks.xenon.observed_signal)
        D = r_sm.copy() if data is None else _check_data(data, r_sm, self.sigma_bg,
                                                            "statistics.data")
        if D.ndim != 1:
            raise InvalidConfig(f"observed counts must have shape ({r_sm.size},); got {D.shape}",
                                key="statistics.data")
        self.data_source = "asimov_sm" if data is None else "user"
        T1 = np.asarray(T1, dtype=float)
        T2 = np.asarray(T2, dtype=float)
        if T1.ndim != 2 or T1.shape[1] != r_sm.size:
            raise InvalidConfig(f"templates must have shape (mass, {r_sm.size}); got {T1.shape}",
                                key="templates")
        used = r_sm > self.min_expected
        if not used.any():
            from nuinfer.exceptions import EmptyWindow
            raise EmptyWindow(f"every bin has R_SM <= min_expected = {self.min_expected:g} "
                              "events; lower min_expected or widen the window / exposure",
                              key="statistics.min_expected")
        self.log10_m_grid = np.asarray(log10_m_grid, dtype=float)
        self.T1, self.T2, self.r_sm, self.data = T1, T2, r_sm, D
        self.bin_used = used
        self.n_bins = int(used.sum())
        R0, Du = r_sm[used], D[used]
        if self.statistic == "eq26":
            # scaled quantities v = R / sigma_i, d = D / sigma_i (sigma_i^2 = (1 + sigma_bg) R_SM)
            scale = 1.0 / np.sqrt((1.0 + self.sigma_bg) * R0)
            self._t0 = R0 * scale
            self._d = Du * scale
            self._B = None
            self.sigma = 1.0 / scale
        else:
            scale = np.ones(self.n_bins)
            self._t0 = R0
            self._d = Du
            self._B = self.sigma_bg * R0
            self.sigma = None
        self.interp = TemplateInterpolator(self.log10_m_grid, T1[:, used], T2[:, used], scale)

    # ---------------------------------------------------------------------------------------
    def _prediction(self, log10_m, log10_g):
        """Prediction in the statistic's internal scale, (n, used bins), a new C-ordered array.

        ``t0 + g2 (t1 + g2 t2)`` evaluated in place on one buffer (the same operations: IEEE
        addition and multiplication are commutative, so ``(g2 t2) + t1`` is ``t1 + g2 t2`` bit
        for bit).
        """
        val = self.interp._eval(np.atleast_1d(np.asarray(log10_m, dtype=float)))
        g2 = (10.0 ** (2.0 * np.asarray(log10_g, dtype=float)))[:, None]
        R = g2 * val[:, 1]
        R += val[:, 0]
        R *= g2
        R += self._t0
        return R

    def expected(self, log10_m, log10_g) -> np.ndarray:
        """Interpolated expected counts ``R`` in the used bins [events], shape (n, used bins)."""
        R = self._prediction(np.atleast_1d(log10_m), np.atleast_1d(log10_g))
        return R * self.sigma if self.statistic == "eq26" else R

    def _residual(self, log10_m, log10_g, a) -> np.ndarray:
        """Eq. (26) scaled residuals ``d - (1 + a) R``, (n, used bins), a new C-ordered array."""
        b = 1.0 + np.atleast_1d(np.asarray(a, dtype=float))
        r = self._prediction(log10_m, np.atleast_1d(log10_g))
        r *= b[:, None]
        np.subtract(self._d, r, out=r)
        return r

    def pointwise(self, log10_m, log10_g, a) -> np.ndarray:
        """Per-bin log-likelihood ``-term_i / 2`` (used bins), shape (n, used bins)."""
        if self.statistic == "eq26":
            r = self._residual(log10_m, log10_g, a)
            out = -0.5 * r
            out *= r
            return out
        b = (1.0 + np.atleast_1d(np.asarray(a, dtype=float)))[:, None]
        R = self._prediction(log10_m, np.atleast_1d(log10_g))
        # the costs' kernel: n = D + R_bg may be 0 (term = mu, i.e. 0 log 0 = 0)
        return -0.5 * _poisson_terms(self._d, b * np.maximum(R, 0.0), self._B)

    def __call__(self, log10_m, log10_g, a) -> np.ndarray:
        """Log-likelihood, shape (n,)."""
        if self.statistic == "eq26":
            r = self._residual(log10_m, log10_g, a)
            return -0.5 * np.einsum("ij,ij->i", r, r)
        b = 1.0 + np.atleast_1d(np.asarray(a, dtype=float))
        R = self._prediction(log10_m, np.atleast_1d(log10_g))
        terms = _poisson_terms(self._d, b[:, None] * np.maximum(R, 0.0), self._B)
        return -0.5 * terms.sum(axis=1)

    # ---------------------------------------------------------------------------------------
    def constant_data(self) -> xr.Dataset:
        """Everything needed to rebuild this likelihood, as a dataset (``constant_data``)."""
        m = 10.0 ** self.log10_m_grid
        ev = {"units": "events"}
        ds = xr.Dataset(
            {
                "R_SM": ("bin", self.r_sm, {**ev, "long_name": "SM expected counts (T0)"}),
                "background": ("bin", self.sigma_bg * self.r_sm, {
                    **ev, "long_name": "known background counts sigma_bg * R_SM"}),
                "bin_used": ("bin", self.bin_used.astype(np.int8), {
                    "units": "1",
                    "long_name": f"bin used (1) or dropped (0): R_SM > {self.min_expected:g}"}),
                "template_T1": (("m_X", "bin"), self.T1, {
                    **ev, "long_name": "template T1 (coefficient of g_X^2) on the mass grid"}),
                "template_T2": (("m_X", "bin"), self.T2, {
                    **ev, "long_name": "template T2 (coefficient of g_X^4) on the mass grid"}),
                "sigma_bg": ((), self.sigma_bg, {"units": "1",
                                                  "long_name": "background fraction of R_SM"}),
                "min_expected": ((), self.min_expected, {
                    **ev, "long_name": "bins with R_SM at or below this are dropped"}),
            },
            coords={
                "m_X": ("m_X", m, {"units": "MeV", "long_name": "template mass grid"}),
                "template_log10_m_X": ("m_X", self.log10_m_grid, {
                    "units": "1", "long_name": "log10(m_X / MeV) of the template grid (exact)"}),
            },
            attrs={"statistic": self.statistic, "data_source": self.data_source,
                   "interpolation": "cubic spline (not-a-knot) of T1, T2 in log10 m_X"},
        )
        if self.statistic == "eq26":
            sig = np.where(self.bin_used, np.sqrt((1.0 + self.sigma_bg) * self.r_sm), np.nan)
            ds["sigma_eq26"] = ("bin", sig, {**ev, "long_name": "Eq. (26) sigma_i = sqrt(R_SM + R_bg)"})
        return ds

    @classmethod
    def from_constant_data(cls, const: xr.Dataset, observed: xr.Dataset) -> "TemplateLikelihood":
        """Rebuild the likelihood stored by :meth:`constant_data` (bit-for-bit the same)."""
        try:
            data = np.asarray(observed["counts"].values, dtype=float)
            asimov = const.attrs.get("data_source", "asimov_sm") == "asimov_sm"
            return cls(const["template_log10_m_X"].values, const["template_T1"].values,
                       const["template_T2"].values, const["R_SM"].values,
                       data=None if asimov else data, statistic=str(const.attrs["statistic"]),
                       sigma_bg=float(const["sigma_bg"].values),
                       min_expected=float(const["min_expected"].values))
        except KeyError as err:
            raise DataFileError(f"the posterior file lacks {err} in constant_data/observed_data; "
                                "it was not written by nuinfer sample", key="resume") from None


def interpolation_error(likelihood: TemplateLikelihood, log10_m, T1_exact, T2_exact,
                        log10_g) -> dict:
    """Relative error of the interpolated counts against exact templates.

    Parameters
    ----------
    likelihood : TemplateLikelihood
    log10_m : array_like, shape (K,)
        Masses (off the grid, e.g. the midpoints) where exact templates are known.
    T1_exact, T2_exact : array_like, shape (K, bin)
        Exact templates there (all bins).
    log10_g : array_like, shape (G,)
        Couplings at which the counts are compared.

    Returns
    -------
    dict
        ``max_rel_counts`` = max over masses, couplings and used bins of
        ``|R_interp - R_exact| / R_exact``; ``max_rel_T1``/``max_rel_T2`` = template errors
        relative to the largest ``|T_p|`` of each bin on the grid.
    """
    lm = np.asarray(log10_m, dtype=float)
    lg = np.asarray(log10_g, dtype=float)
    used = likelihood.bin_used
    E1 = np.asarray(T1_exact, dtype=float)[:, used]
    E2 = np.asarray(T2_exact, dtype=float)[:, used]
    s = 1.0 / likelihood.sigma if likelihood.statistic == "eq26" else 1.0
    i1, i2 = likelihood.interp(lm)
    i1, i2 = i1 / s, i2 / s
    r0 = likelihood.r_sm[used]
    g2 = (10.0 ** (2.0 * lg))[None, :, None]
    g4 = g2 * g2
    # R = r0 + g2 T1 + g2 g2 T2 for the exact and the interpolated templates, in place (the same
    # operations as the expression: IEEE addition is commutative)
    R_ex = g2 * E1[:, None]
    R_ex += r0
    term = g4 * E2[:, None]
    R_ex += term
    R_in = g2 * i1[:, None]
    R_in += r0
    np.multiply(g4, i2[:, None], out=term)
    R_in += term
    diff = np.subtract(R_in, R_ex, out=R_in)
    np.abs(diff, out=diff)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        positive = R_ex > 0
        if positive.all():
            rel = np.divide(diff, R_ex, out=diff)
        else:
            rel = np.where(positive, diff / R_ex, np.where(diff > 0, np.inf, 0.0))
    n1 = np.max(np.abs(likelihood.T1[:, used]), axis=0)
    n2 = np.max(np.abs(likelihood.T2[:, used]), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(n1 > 0, np.abs(i1 - E1) / n1, 0.0)
        e2 = np.where(n2 > 0, np.abs(i2 - E2) / n2, 0.0)
    return {"max_rel_counts": float(rel.max()), "max_rel_T1": float(e1.max()),
            "max_rel_T2": float(e2.max()), "n_masses": int(lm.size), "n_couplings": int(lg.size)}


# --------------------------------------------------------------------------------------------
# posterior
# --------------------------------------------------------------------------------------------
class Posterior:
    """Vectorised log posterior ``log prior + log L`` over ``theta`` of shape (n, ndim).

    Parameters
    ----------
    parameters : sequence of Parameter
        The sampled parameters, in the column order of ``theta``.
    log_likelihood : callable
        ``log_likelihood(theta) -> (n,)`` for ``theta`` of shape (n, ndim), only called on
        points inside the prior support.  This is the documented hook for toy likelihoods.
    pointwise : callable, optional
        ``pointwise(theta) -> (n, bin)`` per-bin log-likelihoods (for the ``log_likelihood``
        group); omitted when ``None``.
    fixed : dict, optional
        Values of parameters that are not sampled (e.g. ``{"a": 0.0}``), recorded in outputs.

    Examples
    --------
    >>> import numpy as np
    >>> p = (Parameter("x", "$x$", "1", -5.0, 5.0),)
    >>> post = Posterior(p, lambda th: -0.5 * th[:, 0] ** 2)
    >>> post(np.array([[0.0], [6.0]])).round(4).tolist()
    [-2.3026, -inf]
    """

    def __init__(self, parameters, log_likelihood: Callable, *, pointwise: Callable | None = None,
                 fixed: dict | None = None):
        self.parameters = tuple(parameters)
        if not self.parameters:
            raise InvalidConfig("at least one parameter is needed", key="parameters")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise InvalidConfig(f"parameter names must be unique; got {names}", key="parameters")
        self.log_likelihood = log_likelihood
        self.pointwise = pointwise
        self.fixed = dict(fixed or {})
        #: the TemplateLikelihood behind a physics posterior (see :meth:`from_likelihood`)
        self.likelihood: TemplateLikelihood | None = None
        self.n_calls = 0
        self.n_evaluations = 0
        self._prior_plan = _prior_plan(self.parameters)

    @property
    def ndim(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def log_prior(self, theta) -> np.ndarray:
        """Sum of the parameters' log priors, shape (n,).

        Bit for bit ``sum_j parameters[j].log_prior(theta[:, j])`` accumulated in parameter order
        from 0, evaluated with one support test for all parameters (:func:`_prior_plan`).
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self._prior_plan is None:
            out = np.zeros(theta.shape[0])
            for j, p in enumerate(self.parameters):
                out += p.log_prior(theta[:, j])
            return out
        lo, hi, terms = self._prior_plan
        inside = (theta >= lo) & (theta <= hi)
        acc = 0.0  # the running sum, a float while every term so far is a constant
        for j, term in terms:
            if j is None:  # uniform: a constant inside the support
                acc = acc + term
                continue
            mu, sigma, log_sigma, half_log_2pi = term
            z = (theta[:, j] - mu) / sigma
            acc = acc + (-0.5 * z * z - log_sigma - half_log_2pi)
        return np.where(inside.all(axis=1), acc, -np.inf)

    def log_prob(self, theta) -> np.ndarray:
        """Log posterior (unnormalised), shape (n,); ``-inf`` outside the prior support."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        lp = self.log_prior(theta)
        ok = np.isfinite(lp)
        if ok.all():
            lp += np.asarray(self.log_likelihood(theta), dtype=float)
            self.n_evaluations += theta.shape[0]
        elif ok.any():
            inside = theta[ok]
            ll = np.asarray(self.log_likelihood(inside), dtype=float)
            lp[ok] += ll
            self.n_evaluations += inside.shape[0]
        self.n_calls += 1
        if np.isnan(lp).any():
            bad = theta[np.isnan(lp)][0]
            raise NumericalError(f"the log posterior is NaN at {dict(zip(self.names, bad.tolist()))}; "
                                 "check the likelihood and its inputs")
        return lp

    __call__ = log_prob

    def draw_prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` prior draws, shape (n, ndim), one parameter after the other from ``rng``."""
        return np.column_stack([p.draw(rng, n) for p in self.parameters])

    @classmethod
    def from_likelihood(cls, parameters, likelihood: TemplateLikelihood) -> "Posterior":
        """Posterior over the standard parameters with a :class:`TemplateLikelihood`."""
        names = [p.name for p in parameters]
        if names[:2] != ["log10_m_X", "log10_g_X"] or names[2:] not in ([], ["a"]):
            raise InvalidConfig(f"expected parameters (log10_m_X, log10_g_X[, a]); got {names}",
                                key="parameters")
        lo, hi = parameters[0].lo, parameters[0].hi
        grid = likelihood.log10_m_grid
        tol = 1e-9 * max(1.0, hi - lo)
        if grid[0] > lo + tol or grid[-1] < hi - tol:
            raise InvalidConfig(f"the template mass grid [{grid[0]:g}, {grid[-1]:g}] must span "
                                f"the prior box [{lo:g}, {hi:g}] in log10 m_X", key="templates")
        has_a = "a" in names

        def loglike(theta):
            a = theta[:, 2] if has_a else np.zeros(theta.shape[0])
            return likelihood(theta[:, 0], theta[:, 1], a)

        def pointwise(theta):
            a = theta[:, 2] if has_a else np.zeros(theta.shape[0])
            return likelihood.pointwise(theta[:, 0], theta[:, 1], a)

        post = cls(parameters, loglike, pointwise=pointwise, fixed=None if has_a else {"a": 0.0})
        post.likelihood = likelihood
        return post


def _prior_plan(parameters) -> tuple:
    """What :meth:`Posterior.log_prior` needs: per-column support bounds and the terms in order.

    ``Parameter.log_prior`` tests ``lo <= x <= hi`` (uniform) or ``lo < x < hi`` (normal); for
    floats ``x > lo`` is ``x >= nextafter(lo, +inf)``, so one pair of comparisons over all columns
    tests every support.  A term is ``(None, -log(hi - lo))`` (uniform) or ``(j, (mu, sigma,
    log sigma, log(2 pi) / 2))`` (normal), the constants of ``Parameter.log_prior``.  ``None``
    when a parameter overrides ``log_prior`` (then each one's own is called).
    """
    if any(type(p).log_prior is not Parameter.log_prior for p in parameters):
        return None  # a parameter with its own prior: Posterior.log_prior calls it
    lo, hi, terms = [], [], []
    for j, p in enumerate(parameters):
        if p.prior == "uniform":
            lo.append(p.lo)
            hi.append(p.hi)
            terms.append((None, -math.log(p.hi - p.lo)))
        else:
            lo.append(float(np.nextafter(p.lo, np.inf)))
            hi.append(float(np.nextafter(p.hi, -np.inf)))
            terms.append((j, (p.mu, p.sigma, math.log(p.sigma), 0.5 * _LOG_2PI)))
    return np.array(lo, dtype=float), np.array(hi, dtype=float), tuple(terms)


def log_prob_throughput(posterior: Posterior, *, n: int = 4096, repeat: int = 5,
                        seed: int = 0) -> float:
    """Measured log-probability evaluations per second for batches of ``n`` prior draws."""
    theta = posterior.draw_prior(np.random.default_rng(seed), n)
    posterior.log_prob(theta)  # warm up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        posterior.log_prob(theta)
        best = min(best, time.perf_counter() - t0)
    return n / best


# --------------------------------------------------------------------------------------------
# sampler
# --------------------------------------------------------------------------------------------
@dataclass
class SamplerRun:
    """Chains of an emcee run and everything needed to continue it.

    Attributes
    ----------
    names : list of str
        Parameter names (last axis of ``chain``).
    chain : numpy.ndarray, shape (nwalkers, nsteps, ndim)
        Walker positions (walker = ArviZ ``chain``, step = ``draw``).
    log_prob : numpy.ndarray, shape (nwalkers, nsteps)
        Log posterior at each position.
    accepted : numpy.ndarray of int, shape (nwalkers,)
        Accepted proposals per walker.
    random_state : tuple
        emcee's legacy ``RandomState`` state after the last step.
    seed : int
        The seed of the run.
    wall_time_s : float
        Sampling time of this call (not cumulative).
    """

    names: list
    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    random_state: tuple
    seed: int
    wall_time_s: float = 0.0
    steps_run: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def nwalkers(self) -> int:
        return int(self.chain.shape[0])

    @property
    def nsteps(self) -> int:
        return int(self.chain.shape[1])

    @property
    def acceptance_fraction(self) -> np.ndarray:
        return self.accepted / max(self.nsteps, 1)


def _check_int(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidConfig(f"must be an integer; got {value!r}", key=key)
    if value < minimum:
        raise UnphysicalInput(f"must be >= {minimum}; got {value}", key=key)
    return int(value)


def run_sampler(posterior: Posterior, *, nwalkers: int, nsteps: int, seed: int,
                previous: SamplerRun | None = None, progress: bool = False) -> SamplerRun:
    """Run (or continue) emcee's stretch-move ensemble sampler on a vectorised posterior.

    Parameters
    ----------
    posterior : Posterior
        Vectorised log posterior (``emcee.EnsembleSampler(..., vectorize=True)``).
    nwalkers : int
        Number of walkers, ``>= 2 ndim``.
    nsteps : int
        *Total* number of steps of the returned chain (with ``previous``: ``nsteps -
        previous.nsteps`` more steps are run).
    seed : int
        Seeds the initial positions (``numpy.random.default_rng(seed)``, prior draws) and
        emcee's ``RandomState(seed)``.  With ``previous`` it must equal ``previous.seed``.
    previous : SamplerRun, optional
        A run to continue from its last positions, log-probabilities and random state.
    progress : bool
        Print a progress line on stderr.
    Returns
    -------
    SamplerRun

    Raises
    ------
    InvalidConfig
        Too few walkers, or ``previous`` incompatible with the arguments.
    UnphysicalInput
        ``nsteps < 1`` or fewer than already run.
    NumericalError
        No initial walker has a finite log posterior.
    """
    import emcee

    ndim = posterior.ndim
    nwalkers = _check_int(nwalkers, "posterior.walkers", 1)
    nsteps = _check_int(nsteps, "posterior.steps", 1)
    seed = _check_int(seed, "posterior.seed", 0)
    if nwalkers < 2 * ndim:
        raise InvalidConfig(f"emcee's stretch move needs at least 2 x ndim = {2 * ndim} walkers "
                            f"for {ndim} parameters; got {nwalkers} (32 is a good default)",
                            key="posterior.walkers")
    if previous is not None:
        if previous.names != posterior.names:
            raise InvalidConfig(f"the stored run samples {previous.names}, this posterior "
                                f"{posterior.names}", key="resume")
        if previous.nwalkers != nwalkers:
            raise InvalidConfig(f"the stored run has {previous.nwalkers} walkers; resume with "
                                f"the same number (got {nwalkers})", key="posterior.walkers")
        if previous.seed != seed:
            raise InvalidConfig(f"the stored run used seed {previous.seed}; resume with the "
                                f"same seed (got {seed})", key="posterior.seed")
        if nsteps < previous.nsteps:
            raise UnphysicalInput(f"the stored run already has {previous.nsteps} steps; ask for "
                                  f"a total of at least that many (got {nsteps})",
                                  key="posterior.steps")

    if previous is None:
        rng = np.random.default_rng(seed)
        p0 = posterior.draw_prior(rng, nwalkers)
        lp0 = posterior.log_prob(p0)
        if not np.any(np.isfinite(lp0)):
            raise NumericalError("no initial walker has a finite log posterior; check the "
                                 "prior box and the likelihood")
        state = emcee.State(p0, log_prob=lp0,
                            random_state=np.random.mtrand.RandomState(seed).get_state())
        n_new = nsteps
        old_chain = np.empty((nwalkers, 0, ndim))
        old_lp = np.empty((nwalkers, 0))
        old_acc = np.zeros(nwalkers, dtype=np.int64)
    else:
        state = emcee.State(previous.chain[:, -1, :].copy(), log_prob=previous.log_prob[:, -1].copy(),
                            random_state=previous.random_state)
        n_new = nsteps - previous.nsteps
        old_chain, old_lp = previous.chain, previous.log_prob
        old_acc = np.asarray(previous.accepted, dtype=np.int64)

    t0 = time.perf_counter()
    bar = Progress(nsteps, "[nuinfer] sample", unit=" steps", enabled=bool(progress) and n_new > 0,
                   start=nsteps - n_new, rate=True)
    try:
        if n_new <= 0:
            new_chain = np.empty((nwalkers, 0, ndim))
            new_lp = np.empty((nwalkers, 0))
            rstate = state.random_state
            acc = old_acc
        else:
            sampler = emcee.EnsembleSampler(nwalkers, ndim, posterior.log_prob, vectorize=True)
            sampler.random_state = state.random_state
            for i, _ in enumerate(sampler.sample(state, iterations=n_new,
                                                 skip_initial_state_check=previous is not None)):
                if bar.enabled:
                    acc = (old_acc.sum() + sampler.backend.accepted.sum()) / (
                        nwalkers * (nsteps - n_new + i + 1))
                    bar.update(info=f", acceptance {acc:.2f}")
            new_chain = np.swapaxes(sampler.get_chain(), 0, 1)
            new_lp = sampler.get_log_prob().T
            rstate = sampler.random_state
            acc = old_acc + sampler.backend.accepted.astype(np.int64)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    return SamplerRun(names=posterior.names,
                      chain=np.ascontiguousarray(np.concatenate([old_chain, new_chain], axis=1)),
                      log_prob=np.ascontiguousarray(np.concatenate([old_lp, new_lp], axis=1)),
                      accepted=acc, random_state=rstate, seed=seed, wall_time_s=wall,
                      steps_run=n_new)


def truncated_normal_std(a: float, b: float) -> float:
    """Standard deviation of a unit normal truncated to ``(a, b)`` (bounds in units of sigma).

    ``var = 1 + (a phi(a) - b phi(b)) / Z - ((phi(a) - phi(b)) / Z)^2`` with ``Z = Phi(b) - Phi(a)``
    (the moments of the truncated normal), evaluated on the side of the lower tail (the
    distribution is mirrored when ``a > 0``) so that ``Z`` carries no cancellation.  Equals
    ``scipy.stats.truncnorm.std(a, b)`` (tests/test_posterior_speed.py) without importing scipy.stats
    (0.6 s).
    """
    from scipy.special import ndtr
    a, b = float(a), float(b)
    if a > 0.0:
        a, b = -b, -a

    def phi(x):
        return 0.0 if math.isinf(x) else math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    def xphi(x):
        return 0.0 if math.isinf(x) else x * phi(x)

    z = float(ndtr(b) - ndtr(a))
    d = (phi(a) - phi(b)) / z
    var = 1.0 + (xphi(a) - xphi(b)) / z - d * d
    if not var > 1e-4:  # narrow truncation: the closed form cancels; scipy's careful moments
        from scipy.stats import truncnorm
        return float(truncnorm.std(a, b))
    return math.sqrt(var)


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------
@dataclass
class Diagnostics:
    """Convergence diagnostics of a run.

    Attributes
    ----------
    tau : numpy.ndarray, shape (ndim,)
        Integrated autocorrelation time per parameter [steps] (emcee's estimator, ``c = 5``),
        over the whole chain.
    n_over_tau : numpy.ndarray
        ``nsteps / tau``; below :data:`TAU_RELIABLE` (50) tau itself is unreliable.
    acceptance_mean : float
        Mean acceptance fraction over walkers (0.2-0.5 is healthy for the stretch move).
    burn, thin : int
        Steps discarded and thinning used for summaries and plots.
    burn_rule : str
        How ``burn`` was chosen.
    reliable : bool
        ``n_over_tau >= 50`` for every parameter.
    messages : list of str
        Human-readable summary and warnings.
    ess : numpy.ndarray, shape (ndim,)
        Effective sample size of the post-burn-in (thinned) draws per parameter,
        ``draws / tau_post`` (:func:`effective_sample_size`).
    tau_post : numpy.ndarray, shape (ndim,)
        Integrated autocorrelation time of the post-burn-in (thinned) draws [thinned steps].
    """

    names: list
    tau: np.ndarray
    n_over_tau: np.ndarray
    acceptance_mean: float
    burn: int
    thin: int
    burn_rule: str
    reliable: bool
    messages: list
    ess: np.ndarray | None = None
    tau_post: np.ndarray | None = None

    def to_dict(self) -> dict:
        ess = self.ess if self.ess is not None else np.full(len(self.names), np.nan)
        return {
            "ess": {n: _finite_or_none(e) for n, e in zip(self.names, ess)},
            "tau": {n: _finite_or_none(t) for n, t in zip(self.names, self.tau)},
            "n_over_tau_min": _finite_or_none(np.min(self.n_over_tau)),
            "acceptance_fraction_mean": round(float(self.acceptance_mean), 4),
            "burn": int(self.burn), "thin": int(self.thin), "burn_rule": self.burn_rule,
            "tau_reliable": bool(self.reliable),
        }


def _finite_or_none(x):
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def autocorr_time(chain) -> np.ndarray:
    """Integrated autocorrelation time per parameter of a (nwalkers, nsteps, ndim) chain.

    emcee's estimator (``emcee.autocorr.integrated_time`` with ``c = 5``) without its
    reliability check (``tol = 0``, so it neither raises nor logs); compare ``nsteps / tau``
    with :data:`TAU_RELIABLE` yourself.  A parameter that never moved gets ``inf``.
    """
    from emcee.autocorr import integrated_time

    x = np.swapaxes(np.asarray(chain, dtype=float), 0, 1)  # (nsteps, nwalkers, ndim)
    out = np.empty(x.shape[2])
    for d in range(x.shape[2]):
        xd = x[:, :, d]
        if x.shape[0] < 2 or np.all(xd == xd[0]):
            out[d] = np.inf
            continue
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            out[d] = float(integrated_time(xd[:, :, None], c=5, tol=0, quiet=True)[0])
    return out


def burn_in(nsteps: int, tau, *, burn: int | None = None) -> tuple[int, str]:
    """Burn-in: ``burn`` if given, else bilby's ``3 max(tau)`` when tau is reliable, else 25%."""
    if burn is not None:
        burn = _check_int(burn, "posterior.burn", 0)
        if burn >= nsteps:
            raise UnphysicalInput(f"burn-in ({burn}) must be below the number of steps "
                                  f"({nsteps})", key="posterior.burn")
        return burn, "configured ([posterior].burn)"
    tmax = float(np.max(tau)) if np.size(tau) else math.inf
    if math.isfinite(tmax) and nsteps >= TAU_RELIABLE * tmax:
        return int(math.ceil(3.0 * tmax)), "3 x max(tau)"
    return nsteps // 4, "25% of the run (tau not reliable)"


# --------------------------------------------------------------------------------------------
# effective sample size and Monte Carlo standard errors (numpy only)
# --------------------------------------------------------------------------------------------
#: Sokal's window constant of the autocorrelation-time estimator (as emcee's ``c``).
TAU_WINDOW_C = 5.0
#: Kolmogorov-Smirnov distance to the prior below which a marginal is called prior-dominated.
PRIOR_KS_THRESHOLD = 0.1
#: A credible limit within this many MCSE of a prior bound is called prior-dominated.
PRIOR_BOUND_MCSE = 2.0
#: E[sup |Brownian bridge|] = sqrt(pi/2) ln 2: the typical KS distance of n_eff prior draws is
#: this over sqrt(n_eff).
_KS_NULL_MEAN = math.sqrt(math.pi / 2.0) * math.log(2.0)


def integrated_time(x, *, c: float = TAU_WINDOW_C) -> float:
    """Integrated autocorrelation time of an ensemble series, shape (nwalkers, nsteps) or (n,).

    The autocovariance is computed per walker by FFT around the *ensemble* mean, averaged over
    walkers and normalised at lag 0; ``tau(M) = 1 + 2 sum_{t=1}^{M} rho(t)`` is summed up to
    Sokal's automatic window, the first ``M >= c tau(M)`` (Goodman & Weare 2010; emcee's
    ``integrated_time`` uses the same window).  Centring on the ensemble mean rather than on
    each walker's own mean keeps differences between walkers that have not mixed in the
    estimate, which makes it err on the long side.  A series with no variance gives ``nan``.

    Returns
    -------
    float
        ``tau`` in steps; the effective sample size is ``nwalkers * nsteps / tau``.
    """
    x = np.asarray(x, dtype=float)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2:
        raise InvalidConfig(f"expected shape (nwalkers, nsteps); got {x.shape}", key="x")
    n = x.shape[1]
    d = x - x.mean()
    if n < 2 or not np.any(d):
        return math.nan
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(d, n=nfft, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=nfft, axis=1)[:, :n].mean(axis=0)
    rho = acov / acov[0]
    taus = 2.0 * np.cumsum(rho) - 1.0
    past = np.arange(n) >= c * taus
    m = int(np.argmax(past)) if past.any() else n - 1
    return float(max(taus[m], 1.0 / n))


def effective_sample_size(x) -> float:
    """``nwalkers * nsteps / tau`` of an ensemble series (see :func:`integrated_time`)."""
    x = np.asarray(x, dtype=float)
    tau = integrated_time(x)
    return x.size / tau if math.isfinite(tau) else math.nan


def mean_mcse(x) -> tuple[float, float, float]:
    """Mean of an ensemble series with its Monte Carlo standard error ``sd sqrt(tau / N)``.

    Returns
    -------
    (mean, mcse, ess)
    """
    return _mean_mcse_tau(np.asarray(x, dtype=float))[:3]


def _mean_mcse_tau(x: np.ndarray) -> tuple[float, float, float, float]:
    """:func:`mean_mcse` and the integrated time behind it: ``(mean, mcse, ess, tau)``."""
    tau = integrated_time(x)
    ess = x.size / tau if math.isfinite(tau) else math.nan
    sd = float(x.std())
    mcse = sd / math.sqrt(ess) if ess > 0 else math.nan
    return float(x.mean()), (0.0 if sd == 0 else mcse), ess, tau


def quantile_mcse(x, prob: float, *, where=None) -> tuple[float, float, float]:
    """Quantile of an ensemble series with its Monte Carlo standard error.

    Parameters
    ----------
    x : array_like, shape (nwalkers, nsteps) or (n,)
        Draws in chain order (a 1-D array is one chain; a shuffled or stacked array loses the
        autocorrelation and understates the error).
    prob : float
        Probability level in (0, 1).
    where : array_like of bool, optional
        Draws to condition on (e.g. a mass slice): the quantile is that of ``x[where]``, with
        the chain order of the whole ensemble kept for the error.

    Returns
    -------
    (quantile, mcse, ess)
        ``ess`` is the effective number of draws behind this quantile.

    Notes
    -----
    The CDF value at the estimated quantile ``q`` is the mean of the indicator
    ``I(x <= q)`` over the selected draws, a ratio estimator
    ``sum_t w_t (I(x_t <= q) - p) / sum_t w_t = 0``.  Its standard error is
    ``se_F = sqrt(var(h) tau_h / N) / pi`` with ``h_t = w_t (I(x_t <= q) - p)``, ``tau_h`` the
    integrated autocorrelation time of ``h`` over the ensemble, ``N`` the number of draws and
    ``pi`` the selected fraction (for ``where=None``: ``se_F = sqrt(p (1 - p) / ESS)``, the
    binomial error with the indicator's effective sample size).  The interval ``p -+ se_F`` is
    mapped back through the empirical quantile function of the selected draws and the MCSE is
    half its width: no density estimate is needed.  ``ess = p (1 - p) / se_F^2``.
    """
    p = float(prob)
    if not 0.0 < p < 1.0:
        raise UnphysicalInput(f"must be in (0, 1); got {prob}", key="prob")
    x = np.asarray(x, dtype=float)
    x = x[None, :] if x.ndim == 1 else x
    w = np.ones(x.shape, dtype=bool) if where is None else np.broadcast_to(
        np.asarray(where, dtype=bool), x.shape)
    sel = x[w]
    if sel.size == 0:
        return math.nan, math.nan, 0.0
    q = float(np.quantile(sel, p))
    h = np.where(w, (x <= q).astype(float) - p, 0.0)
    var_h = float(h.var())
    tau = integrated_time(h)
    if not (var_h > 0 and math.isfinite(tau)):
        return q, math.nan, math.nan
    se_f = math.sqrt(var_h * tau / x.size) * x.size / sel.size
    lo, hi = np.quantile(sel, [max(p - se_f, 0.0), min(p + se_f, 1.0)])
    return q, 0.5 * float(hi - lo), p * (1.0 - p) / se_f**2


def _qkey(prob: float) -> str:
    return f"q{100.0 * prob:g}".replace(".", "_")


def summarize(chains: dict, probs=(0.05, 0.5, 0.95)) -> dict:
    """Mean, sd and quantiles of each parameter, every one with its MCSE, plus ESS and tau.

    Parameters
    ----------
    chains : dict of name -> array, shape (nwalkers, nsteps)
        Post-burn-in draws in chain order.
    probs : sequence of float
        Quantile levels (keys ``q5``, ``q50``, ``q95`` and ``q5_mcse``, ... for the defaults).

    Returns
    -------
    dict
        ``{name: {"mean", "mean_mcse", "sd", "ess", "tau", "q5", "q5_mcse", ...}}`` (floats;
        the MCSEs are in the units of the parameter).
    """
    out = {}
    for name, x in chains.items():
        x = np.asarray(x, dtype=float)
        m, m_err, ess, tau = _mean_mcse_tau(x)
        row = {"mean": m, "mean_mcse": m_err, "sd": float(x.std()), "ess": ess, "tau": tau}
        for p in probs:
            q, err, _ = quantile_mcse(x, p)
            row[_qkey(p)] = q
            row[_qkey(p) + "_mcse"] = err
        out[name] = row
    return out


def corner_annotations(summary: dict, dominance: dict, labels=None,
                       probs=(0.05, 0.5, 0.95)) -> dict:
    """What the corner plot may say about each parameter: quantile lines and title.

    The decision for :func:`nuinfer.tasks.bayes.run_plot`: a prior-dominated parameter
    (:func:`prior_dominance`) gets NO quantile lines and NO "median +- error" title (the numbers
    would describe the prior); the others get the ``probs`` quantiles and a title with the
    median, the 5-95% range and the median's MCSE.

    Parameters
    ----------
    summary : dict
        :func:`summarize` output (with the ``probs`` quantiles).
    dominance : dict
        :func:`prior_dominance` output (parameters missing there count as data-dominated).
    labels : dict, optional
        ``{name: label}`` for the titles. Default: the names.
    probs : tuple of float
        Quantile levels of the lines (default 5/50/95%).

    Returns
    -------
    dict
        ``{name: {"quantiles": tuple (empty when prior-dominated), "quantile_values": tuple,
        "title": str, "prior_dominated": bool}}``.
    """
    labels = labels or {}
    out = {}
    for name, r in summary.items():
        lab = labels.get(name, name)
        d = dominance.get(name)
        if d is not None and d.get("prior_dominated"):
            out[name] = {"quantiles": (), "quantile_values": (), "prior_dominated": True,
                         "title": f"{lab}: prior-dominated (KS to prior {d['ks_distance']:.2f})"}
            continue
        qv = tuple(float(r[_qkey(p)]) for p in probs)
        mid = 0.5 if 0.5 in probs else probs[len(probs) // 2]
        lo, med, hi = qv[0], float(r[_qkey(mid)]), qv[-1]
        err = r.get(_qkey(mid) + "_mcse", math.nan)
        out[name] = {"quantiles": tuple(probs), "quantile_values": qv, "prior_dominated": False,
                     "title": (f"{lab} = ${med:.2g}^{{+{hi - med:.2g}}}_{{-{med - lo:.2g}}}$ "
                               f"(MCSE {err:.1g})")}
    return out


def _ks_cut(threshold: float, noise: float) -> float:
    return max(threshold, 2.0 * noise) if math.isfinite(noise) else math.inf


def ks_distance_to_prior(x, parameter: Parameter) -> float:
    """Kolmogorov-Smirnov distance ``sup |F_post - F_prior|`` of draws ``x`` to a prior."""
    s = np.sort(np.asarray(x, dtype=float).ravel())
    if s.size == 0:
        return math.nan
    F0 = parameter.cdf(s)
    i = np.arange(1, s.size + 1) / s.size
    return float(max(np.max(i - F0), np.max(F0 - (i - 1.0 / s.size))))


def prior_dominance(chains: dict, parameters, *, threshold: float = PRIOR_KS_THRESHOLD,
                    ess: dict | None = None) -> dict:
    """Which marginal posteriors are dominated by their prior.

    A parameter is *prior-dominated* when the Kolmogorov-Smirnov distance between its marginal
    posterior and its prior is below ``max(threshold, 2 ks_noise)``: no quantile of the
    posterior differs from the prior's by more than ``threshold`` (default 0.1) in probability,
    or the draws cannot tell them apart.  ``ks_noise = 0.87 / sqrt(ESS)`` is the typical
    distance of ESS independent prior draws (``E sup|Brownian bridge| = sqrt(pi/2) ln 2``).
    Also reported: the contraction ``1 - var_post / var_prior`` (Schad, Betancourt & Vasishth
    2021; near 0: the data taught little).

    ``ess`` may give the effective sample sizes of (some of) the chains when they are known
    (e.g. ``summarize(chains)[name]["ess"]``), to skip recomputing them.

    Returns
    -------
    dict
        ``{name: {"ks_distance", "ks_noise", "contraction", "prior_dominated"}}``.
    """
    out = {}
    known = ess or {}
    for p in parameters:
        if p.name not in chains:
            continue
        x = np.asarray(chains[p.name], dtype=float)
        ks = ks_distance_to_prior(x, p)
        n_eff = known[p.name] if p.name in known else effective_sample_size(x)
        noise = _KS_NULL_MEAN / math.sqrt(n_eff) if n_eff > 0 else math.nan
        contraction = 1.0 - float(x.var()) / p.prior_std() ** 2
        out[p.name] = {"ks_distance": ks, "ks_noise": noise, "contraction": contraction,
                       "prior_dominated": bool(ks < _ks_cut(threshold, noise))}
    return out


def diagnostics(run: SamplerRun, *, burn: int | None = None, thin: int = 1) -> Diagnostics:
    """Autocorrelation times, acceptance, burn-in and warnings for a run."""
    thin = _check_int(thin, "posterior.thin", 1)
    tau = autocorr_time(run.chain)
    n_over = run.nsteps / tau
    acc = float(np.mean(run.acceptance_fraction))
    b, rule = burn_in(run.nsteps, tau, burn=burn)
    reliable = bool(np.all(n_over >= TAU_RELIABLE))
    msgs = [f"{run.nwalkers} walkers x {run.nsteps} steps; mean acceptance fraction {acc:.3f}"]
    msgs += [f"  tau[{n}] = {t:.1f} steps, N/tau = {r:.0f}" for n, t, r in zip(run.names, tau, n_over)]
    msgs.append(f"  burn-in {b} steps ({rule}), thin {thin}")
    kept = run.chain[:, b::thin]
    tau_post = np.array([integrated_time(kept[:, :, j]) for j in range(kept.shape[2])])
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = kept.shape[0] * kept.shape[1] / tau_post
    msgs.append("  effective sample size after burn-in: " + ", ".join(
        f"{n} {e:.0f}" for n, e in zip(run.names, ess)))
    if not reliable:
        worst = run.names[int(np.argmin(n_over))]
        need = int(math.ceil(TAU_RELIABLE * float(np.max(tau[np.isfinite(tau)], initial=1.0))))
        msgs.append(f"WARNING: the chain is only {float(np.min(n_over)):.0f} autocorrelation times "
                    f"long for {worst} (need >= {TAU_RELIABLE:.0f}); tau and the credible "
                    f"intervals are unreliable. Run longer, e.g. --resume --steps {max(need, 2 * run.nsteps)}")
    if not 0.15 <= acc <= 0.7:
        msgs.append(f"WARNING: mean acceptance fraction {acc:.2f} is outside 0.15-0.7; check "
                    "the prior box and the likelihood")
    return Diagnostics(list(run.names), tau, n_over, acc, b, thin, rule, reliable, msgs,
                       ess=ess, tau_post=tau_post)


# --------------------------------------------------------------------------------------------
# storage (ArviZ layout) and reading back
# --------------------------------------------------------------------------------------------
#: Compression of the draws: zlib level 1 with the shuffle filter.  The draws are full-precision
#: noise to zlib; level 1 writes them about twice as fast as level 4 (the ``log_likelihood``
#: group, ~10^7 float32 values, dominates the write) for files ~2% larger.
_ZLIB = {"zlib": True, "complevel": 1, "shuffle": True}


def _with_encoding(ds: xr.Dataset, names) -> xr.Dataset:
    for n in names:
        ds[n].encoding = dict(_ZLIB)
    return ds


def to_datatree(run: SamplerRun, posterior: Posterior, diag: Diagnostics, *,
                observed: xr.Dataset | None = None, constant: xr.Dataset | None = None,
                extra_groups: dict | None = None, attrs: dict | None = None,
                pointwise: bool = True, chunk: int = 512) -> xr.DataTree:
    """Assemble the ArviZ-layout data tree of a run.

    Parameters
    ----------
    run : SamplerRun
    posterior : Posterior
        Supplies the parameter metadata and (optionally) per-bin log-likelihoods.
    diag : Diagnostics
    observed : xarray.Dataset, optional
        ``observed_data`` group (``counts(bin)``).
    constant : xarray.Dataset, optional
        ``constant_data`` group.
    extra_groups : dict, optional
        Further groups (name -> Dataset), e.g. the frequentist scan.
    attrs : dict, optional
        Root attributes (provenance); ``nwalkers``, ``nsteps``, ``seed``, emcee versions and the
        sampled variables are added.
    pointwise : bool
        Write the ``log_likelihood`` group (per-bin log-likelihood of every draw) when the
        posterior provides it and ``observed`` has a ``counts`` variable.
    chunk : int
        Draws per batch when evaluating pointwise log-likelihoods (each draw's values depend on
        that draw only; small batches keep the work in cache).

    Returns
    -------
    xarray.DataTree
    """
    import emcee

    nw, ns = run.nwalkers, run.nsteps
    burn = int(diag.burn)
    if not 0 <= burn < ns:
        raise UnphysicalInput(f"burn-in ({burn}) must be in [0, {ns})", key="posterior.burn")
    chain_c = ("chain", np.arange(nw), {"units": "1", "long_name": "walker (emcee) = chain"})

    def draw_c(steps):
        return ("draw", steps, {"units": "1", "long_name": "step (emcee iteration index)"})

    coords = {"chain": chain_c, "draw": draw_c(np.arange(burn, ns))}
    warm_coords = {"chain": chain_c, "draw": draw_c(np.arange(burn))}

    def posterior_group(sl, crd, what):
        pv = {}
        for j, p in enumerate(posterior.parameters):
            pv[p.name] = (("chain", "draw"), run.chain[:, sl, j], p.attrs())
        for p in posterior.parameters:
            if p.scale == "log10" and p.name.startswith("log10_"):
                lin = p.name[len("log10_"):]
                pv[lin] = (("chain", "draw"), 10.0 ** pv[p.name][1], {
                    "units": p.unit, "long_name": f"{lin} (derived: 10**{p.name})"})
        return _with_encoding(xr.Dataset(pv, coords=crd, attrs={
            "sampled_variables": json.dumps(posterior.names),
            "fixed_variables": json.dumps(posterior.fixed), "draws": what}), list(pv))

    post = posterior_group(slice(burn, ns), coords,
                           f"after burn-in: steps {burn}..{ns - 1} (burn-in in warmup_posterior)")
    lp_attrs = {"units": "1", "long_name": "log posterior (unnormalised)"}

    par = ("parameter", np.array(posterior.names, dtype=object), {"long_name": "sampled parameter"})
    nd = len(posterior.names)
    ess = diag.ess if diag.ess is not None else np.full(nd, np.nan)
    tau_post = diag.tau_post if diag.tau_post is not None else np.full(nd, np.nan)
    ss = xr.Dataset(
        {
            "lp": (("chain", "draw"), run.log_prob[:, burn:], lp_attrs),
            "acceptance_fraction": (("chain",), run.acceptance_fraction, {
                "units": "1", "long_name": "fraction of accepted proposals per walker"}),
            "accepted": (("chain",), run.accepted.astype(np.int64), {
                "units": "1", "long_name": "accepted proposals per walker"}),
            "tau": (("parameter",), diag.tau, {
                "units": "steps", "long_name": "integrated autocorrelation time (emcee, c=5), "
                                               "whole run"}),
            "n_over_tau": (("parameter",), diag.n_over_tau, {
                "units": "1", "long_name": f"steps / tau (reliable above {TAU_RELIABLE:g})"}),
            "tau_post": (("parameter",), tau_post, {
                "units": "steps", "long_name": "integrated autocorrelation time of the "
                                               "post-burn-in (thinned) draws, ensemble estimator"}),
            "ess": (("parameter",), ess, {
                "units": "1", "long_name": "effective sample size of the post-burn-in (thinned) "
                                           "draws = draws / tau_post"}),
        },
        coords={"chain": chain_c, "draw": coords["draw"], "parameter": par},
        attrs={"burn": burn, "thin": diag.thin, "burn_rule": diag.burn_rule,
               "tau_reliable": int(diag.reliable), "acceptance_fraction_mean": diag.acceptance_mean,
               "tau_tol": TAU_RELIABLE},
    )
    ss = _with_encoding(ss, ["lp"])
    warm = {}
    if burn > 0:
        warm["warmup_posterior"] = posterior_group(slice(0, burn), warm_coords,
                                                   f"burn-in: steps 0..{burn - 1}")
        warm["warmup_sample_stats"] = _with_encoding(xr.Dataset(
            {"lp": (("chain", "draw"), run.log_prob[:, :burn], lp_attrs)}, coords=warm_coords,
            attrs={"burn_rule": diag.burn_rule}), ["lp"])

    rs = run.random_state
    state = xr.Dataset(
        {
            "mt19937_key": (("mt19937_word",), np.asarray(rs[1], dtype=np.int64), {
                "units": "1", "long_name": "emcee RandomState MT19937 key (uint32 values)"}),
            "mt19937_pos": ((), int(rs[2]), {"units": "1", "long_name": "MT19937 position"}),
            "has_gauss": ((), int(rs[3]), {"units": "1", "long_name": "cached Gaussian present"}),
            "cached_gaussian": ((), float(rs[4]), {"units": "1", "long_name": "cached Gaussian"}),
        },
        attrs={"bit_generator": str(rs[0]), "seed": run.seed,
               "description": "state of emcee's legacy RandomState after the last step; the "
                              "last positions and log-probabilities are the last draw of "
                              "posterior / sample_stats.lp"},
    )

    groups = {"posterior": post, "sample_stats": ss, **warm, "sampler_state": state}
    if observed is not None:
        groups["observed_data"] = observed
    if constant is not None:
        groups["constant_data"] = constant
    if (pointwise and posterior.pointwise is not None and observed is not None
            and "counts" in observed):
        groups["log_likelihood"] = _pointwise_group(run, posterior, observed, coords, chunk,
                                                    burn)
    for name, ds in (extra_groups or {}).items():
        groups[name] = ds

    root_attrs = dict(attrs or {})
    root_attrs.update(
        inference_library="emcee",
        inference_library_version=emcee.__version__,
        emcee_version=emcee.__version__,
        creation_library_language="Python",
        nwalkers=nw, nsteps=ns, seed=run.seed, warmup_draws=burn, posterior_draws=ns - burn,
        sampled_variables=json.dumps(posterior.names),
        sample_dims=json.dumps(["chain", "draw"]),
        chain_meaning="emcee walker (walkers are not independent chains: do not trust ArviZ's "
                      "R-hat/ESS across them; sample_stats.ess is the ensemble estimate)",
    )
    root_attrs.setdefault("creation_library", "nuinfer")
    root = xr.Dataset(attrs=root_attrs)
    return xr.DataTree.from_dict({"/": root, **{f"/{k}": v for k, v in groups.items()}})


def _pointwise_group(run, posterior, observed, coords, chunk, burn) -> xr.Dataset:
    nb_all = observed["counts"].sizes["bin"]
    kept = run.chain[:, burn:]
    theta = kept.reshape(-1, kept.shape[2])
    like = getattr(posterior, "likelihood", None)
    used = like.bin_used if like is not None else np.ones(nb_all, dtype=bool)
    out = np.zeros((theta.shape[0], nb_all), dtype=np.float32)
    every = bool(np.all(used))
    for s in range(0, theta.shape[0], chunk):
        if every:
            out[s:s + chunk] = posterior.pointwise(theta[s:s + chunk])
        else:
            out[s:s + chunk, used] = posterior.pointwise(theta[s:s + chunk])
    ll = out.reshape(kept.shape[0], kept.shape[1], nb_all)
    bin_coords = {k: v for k, v in observed.coords.items() if v.dims == ("bin",)}
    ds = xr.Dataset(
        {"counts": (("chain", "draw", "bin"), ll, {
            "units": "1",
            "long_name": "per-bin log-likelihood -term_i/2 (chi2 scale, constants dropped; "
                         "0 in dropped bins; float32)"})},
        coords={**coords, **bin_coords},
    )
    return _with_encoding(ds, ["counts"])


def _full_draws(tree: xr.DataTree, group: str, var: str) -> np.ndarray:
    """``var`` of ``group`` over the whole run, shape (chain, step): the ``warmup_<group>``
    draws followed by the ``<group>`` draws (files before the split hold every step in
    ``<group>``)."""
    a = tree[group][var].transpose("chain", "draw").values
    warm = f"warmup_{group}"
    if warm in tree.children and var in tree[warm].data_vars:
        a = np.concatenate([tree[warm][var].transpose("chain", "draw").values, a], axis=1)
    return a


def _stored_burn(tree: xr.DataTree) -> int:
    return int(tree["sample_stats"].attrs.get("burn", 0))


def run_from_datatree(tree: xr.DataTree) -> SamplerRun:
    """Read a run (chains, lp, acceptance counts, random state) back from a posterior tree.

    The burn-in (``warmup_posterior`` / ``warmup_sample_stats``) and the post-burn-in draws
    (``posterior`` / ``sample_stats``) are joined into the whole chain.

    Raises
    ------
    DataFileError
        Missing groups or variables (not a nuinfer posterior file).
    """
    try:
        ss = tree["sample_stats"].to_dataset()
        st = tree["sampler_state"].to_dataset()
        names = json.loads(tree.attrs["sampled_variables"])
        chain = np.stack([_full_draws(tree, "posterior", n) for n in names], axis=-1)
        lp = _full_draws(tree, "sample_stats", "lp")
        accepted = ss["accepted"].values.astype(np.int64)
        rs = (str(st.attrs["bit_generator"]), st["mt19937_key"].values.astype(np.uint32),
              int(st["mt19937_pos"].values), int(st["has_gauss"].values),
              float(st["cached_gaussian"].values))
        seed = int(tree.attrs["seed"])
    except (KeyError, ValueError, TypeError) as err:
        raise DataFileError(f"not a resumable nuinfer posterior file (missing {err}); start a "
                            "new run without --resume", key="resume") from None
    if chain.shape[:2] != lp.shape:
        raise DataFileError("posterior and sample_stats.lp have different draws; the file is "
                            "damaged: start a new run without --resume", key="resume")
    return SamplerRun(names=list(names), chain=np.ascontiguousarray(chain, dtype=float),
                      log_prob=np.ascontiguousarray(lp, dtype=float), accepted=accepted,
                      random_state=rs, seed=seed)


def chains_from_tree(tree: xr.DataTree, names=None, *, burn: int | None = None,
                     thin: int | None = None) -> dict:
    """Post-burn-in draws per parameter in chain order, ``{name: array (walker, step)}``.

    ``burn`` counts steps from the start of the run and ``thin`` thins; both default to the
    ``sample_stats`` attrs written at sampling time (then the draws are the ``posterior``
    group).  Use these, not stacked samples, for Monte Carlo standard errors.
    """
    ss = tree["sample_stats"].to_dataset()
    names = list(names) if names is not None else json.loads(tree.attrs["sampled_variables"])
    burn = _stored_burn(tree) if burn is None else int(burn)
    thin = int(ss.attrs.get("thin", 1)) if thin is None else int(thin)
    return {n: _full_draws(tree, "posterior", n)[:, burn::thin] for n in names}


def stacked_samples(tree: xr.DataTree, names=None, *, burn: int | None = None,
                    thin: int | None = None) -> tuple[np.ndarray, list]:
    """Post-burn-in samples, shape (n, len(names)), chain and draw stacked.

    ``burn``/``thin`` default to the ``sample_stats`` attrs written at sampling time.
    """
    names = list(names) if names is not None else json.loads(tree.attrs["sampled_variables"])
    ch = chains_from_tree(tree, names, burn=burn, thin=thin)
    return np.column_stack([ch[n].reshape(-1) for n in names]), names

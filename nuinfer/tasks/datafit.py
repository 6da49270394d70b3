"""Data-driven binned fits: observed counts, background, and several nuisance parameters.

This is the counterpart of :mod:`nuinfer.tasks.template_scan` for *real data* (COHERENT CsI, Dresden-II
like reactor data, or any user counts): the same conventions (chi2 scale, names ``chi2`` /
``twice_nll`` / ``delta_*``, thresholds from ``scipy.stats.chi2.ppf`` recorded with ``cl``,
``ndof``, ``scan_mode``), the same template contract, and outputs that
:func:`nuinfer.tasks.contours.contour` reads directly.

Prediction
----------
For bins i, with a signal ``S_i(x; q)`` (the forward model, x the physics parameters, q the
quenching-factor scale) and a background ``B_i``::

    mu_i = (1 + a_flux) (1 + a_eff) S_i(x; 1 + a_qf) + (1 + a_bg) B_i

* ``a_flux`` -- neutrino-flux normalisation, Gaussian constraint ``sigma_flux``;
* ``a_eff`` -- detection-efficiency normalisation, ``sigma_eff``;
* ``a_qf`` -- quenching-factor normalisation: Q_f -> (1 + a_qf) Q_f.  It changes the *shape*
  of the spectrum (events move between keVee bins), so the signal is computed by the forward
  model at ``K`` nodes ``a_qf = sigma_qf * (-3, ..., 3)`` and interpolated between them with a
  cubic spline per bin (template morphing; :func:`qf_nodes`).  Outside the nodes ``a_qf`` is
  clamped to the node range (more than 3 sigma away, where the constraint dominates anyway);
* ``a_bg`` -- background normalisation, ``sigma_bg``.

A width 0 fixes the parameter at 0; ``inf`` leaves it unconstrained (free).

Statistics (chi2 scale, ``errordef = 1``)
-----------------------------------------
``"gauss"`` -> ``chi2 = sum_i ((n_i - mu_i) / sigma_i)^2 + sum_k (a_k / sigma_k)^2`` with
per-bin uncertainties ``sigma_i`` from the data (e.g. the COHERENT error bars; the data may be
background-subtracted residuals and negative), or, when not given, ``sigma_i^2 = S_i^ref + B_i``
(the reference prediction, as in the paper's Eq. 26).

``"poisson"`` -> ``twice_nll = 2 sum_i [mu_i - n_i + n_i ln(n_i / mu_i)] + sum_k (a_k/sigma_k)^2``
(Baker-Cousins; integer-valued counts not required, n_i >= 0).

Profiling
---------
:func:`profile_nuisances` minimises over the active nuisances at many hypotheses at once: a
vectorised Levenberg-Marquardt iteration (Gauss-Newton / Fisher-scoring Hessian, exact
gradient, per-point step acceptance), with a per-point ``converged`` flag.  :func:`profile_minuit`
fits one hypothesis with iminuit (the reference; the two agree to 1e-6 in the tests).

Scans and posteriors
--------------------
* :func:`scan_polynomial` -- signals that are quadratic polynomials in one variable x per mass
  (``S = T0 + x T1 + x^2 T2``): the weak mixing angle (x = sin^2 theta_W, one "mass"), light
  mediators (x = g^2, masses m_X), the dipole portal (x = mu^2, masses m4);
* :func:`scan_parameter` -- 1-D profile (e.g. sin^2 theta_W), best fit, 1 sigma and CL intervals;
* :func:`scan_mass_coupling` -- (m_X, g_X) surface in the scan contract (``delta_chi2`` or
  ``delta_twice_nll``, ``threshold``, ``statistic_variable``), for contours and limits;
* :class:`DataFitLikelihood` -- vectorised log-likelihood for
  :class:`nuinfer.tasks.posterior.Posterior` (emcee), with the nuisances sampled under their
  Gaussian priors; any signal callable (polynomial, mass-coupling interpolation, exact NGI).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from nuinfer.exceptions import (
    InvalidConfig,
    NumericalError,
    UnphysicalInput,
)
from nuinfer.likelihood.data import BinnedData, Nuisances, qf_nodes  # noqa: F401  (part of this task's API)
from nuinfer.likelihood.model import NodeSpline
from nuinfer.likelihood.result import FitResult

__all__ = [
    "NUISANCES",
    "STATISTICS",
    "BinnedData",
    "DataFitLikelihood",
    "FitResult",
    "Nuisances",
    "mass_coupling_signal",
    "nuisance_parameters",
    "polynomial_signal",
    "profile_minuit",
    "profile_nuisances",
    "qf_nodes",
    "scan_mass_coupling",
    "scan_parameter",
    "scan_polynomial",
    "sigma_threshold",
]

#: nuisance parameters, in the order of every ``theta`` array
NUISANCES = ("a_flux", "a_eff", "a_qf", "a_bg")
#: statistic name -> name of the quantity (the chi2 scale is in the name)
STATISTICS = {"gauss": "chi2", "poisson": "twice_nll"}
_LONG = {"a_flux": "flux normalisation nuisance (signal x (1 + a_flux))",
         "a_eff": "efficiency normalisation nuisance (signal x (1 + a_eff))",
         "a_qf": "quenching-factor normalisation nuisance (Q_f x (1 + a_qf))",
         "a_bg": "background normalisation nuisance (background x (1 + a_bg))"}
_A_MIN = -0.99  # normalisations stay positive


# --------------------------------------------------------------------------------------------
# morphing in a_qf
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# the objective and its profile
# --------------------------------------------------------------------------------------------
def _check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise InvalidConfig(f"unknown statistic {statistic!r}; use 'gauss' (chi2 with per-bin sigma) or "
                            "'poisson' (twice_nll)", key="statistics.statistic")
    return statistic


@dataclass
class _Setup:
    n: np.ndarray
    B: np.ndarray
    inv_var: np.ndarray | None
    statistic: str
    sig: np.ndarray
    active: np.ndarray


def _setup(data: BinnedData, nuisances: Nuisances, statistic: str, s_ref=None) -> _Setup:
    statistic = _check_statistic(statistic)
    n = data.observed
    inv_var = None
    if statistic == "gauss":
        if data.sigma is not None:
            inv_var = 1.0 / data.sigma**2
        else:
            if s_ref is None:
                raise InvalidConfig("the gauss statistic needs per-bin sigma or a reference prediction",
                                    key="data.sigma")
            var = np.asarray(s_ref, float) + data.background
            if np.any(var <= 0):
                raise UnphysicalInput("reference prediction + background is zero in some bins; give sigma or "
                                      "drop those bins", key="data.sigma")
            inv_var = 1.0 / var
    else:
        if np.any(n < 0):
            raise UnphysicalInput("the poisson statistic needs counts >= 0 (use 'gauss' for background-"
                                  "subtracted residuals)", key="data.observed")
    return _Setup(n, data.background, inv_var, statistic, nuisances.sigmas, nuisances.active)


def _bin_terms(mu, su: _Setup):
    """Per-bin statistic terms (P, n), non-negative (:func:`nuinfer.likelihood.bin_cost`)."""
    from nuinfer.likelihood import bin_cost
    if su.statistic == "gauss":
        return bin_cost("gauss", su.n, mu, 1.0 / su.inv_var)
    return bin_cost("poisson", su.n, mu)


def _mu(theta, S, B):
    return (1.0 + theta[:, 0:1]) * (1.0 + theta[:, 1:2]) * S + (1.0 + theta[:, 3:4]) * B


def datafit_model(nuisances: Nuisances, eta_nodes):
    """The data-fit prediction as a :class:`~nuinfer.likelihood.BinnedModel`.

    ``mu = F_flux F_eff S(a_qf) + F_bg B`` with multipliers ``F = 1 + a`` (kept >= 0.01) and the
    signal morphed by a cubic spline in ``a_qf`` between the quenching nodes.
    """
    from nuinfer.likelihood import BinnedModel, Component, Morph, Parameter

    sig = nuisances.sigmas
    nodes = np.asarray(eta_nodes, float)
    morph = Morph("spline", ("qf",), (nodes,)) if nodes.size > 1 else None
    qlo, qhi = (float(nodes[0]), float(nodes[-1])) if nodes.size > 1 else (-math.inf, math.inf)
    lo = 1.0 + _A_MIN
    pars = (Parameter("flux", sig[0], 1.0, lo, long_name=_LONG["a_flux"]),
            Parameter("eff", sig[1], 1.0, lo, long_name=_LONG["a_eff"]),
            Parameter("qf", sig[2], 0.0, qlo, qhi, long_name=_LONG["a_qf"]),
            Parameter("bg", sig[3], 1.0, lo, long_name=_LONG["a_bg"]))
    return BinnedModel(components=(Component("signal", norms=("flux", "eff"), morph=morph),
                                   Component("background", norms=("bg",))), parameters=pars)


def _profile(signal_nodes, data, nuisances, eta_nodes, statistic, s_ref, method, **kw) -> FitResult:
    su = _setup(data, nuisances, statistic, s_ref)
    S = np.asarray(signal_nodes, float)
    if S.ndim == 2:
        S = S[None]
    nodes = qf_nodes(nuisances.quenching) if eta_nodes is None else np.asarray(eta_nodes, float)
    if S.shape[0] != nodes.size or S.shape[-1] != data.n_bins:
        raise InvalidConfig(f"signal must have shape (K={nodes.size}, P, bin={data.n_bins}); got {S.shape}",
                            key="signal")
    if nodes.size > 1 and not su.active[2]:
        raise InvalidConfig("morphing nodes given but the quenching nuisance is fixed", key="nuisances.quenching")
    from nuinfer.likelihood import profile

    model = datafit_model(nuisances, nodes)
    T = {"signal": S if nodes.size > 1 else S[0], "background": data.background}
    var = None if su.inv_var is None else 1.0 / su.inv_var
    r = profile(model, T, data.observed, cost="gauss" if statistic == "gauss" else "poisson", variance=var,
                method=method, **kw)
    theta = r.theta - np.array([1.0, 1.0, 0.0, 1.0])  # multipliers -> the a_k of NUISANCES
    return FitResult(STATISTICS[su.statistic], r.minimum, theta, r.converged, method, list(NUISANCES), r.n_iter)


def profile_nuisances(signal_nodes, data: BinnedData, nuisances: Nuisances, *, eta_nodes=None,
                      statistic: str = "gauss", s_ref=None, max_iter: int = 200,
                      tol: float = 1e-10) -> FitResult:
    """Minimise the statistic over the nuisances for P hypotheses at once.

    Parameters
    ----------
    signal_nodes : array_like, shape (K, P, bin) or (P, bin)
        Signal of each hypothesis at the quenching nodes ``eta_nodes`` (or at nominal quenching).
    data : BinnedData
    nuisances : Nuisances
    eta_nodes : array_like, shape (K,), optional
        Default :func:`qf_nodes` of ``nuisances.quenching`` (must have the K of ``signal_nodes``).
    statistic : {"gauss", "poisson"}
    s_ref : array_like, shape (bin,), optional
        Reference signal for the default gauss variance ``S_ref + B``.
    max_iter, tol : int, float
        Iteration limit and convergence tolerance (Newton decrement, relative).

    Returns
    -------
    FitResult
        The vectorised Newton profiler of :func:`nuinfer.likelihood.profile`.
    """
    return _profile(signal_nodes, data, nuisances, eta_nodes, statistic, s_ref, "newton",
                    max_iter=max_iter, rtol=tol)


def profile_minuit(signal_nodes, data: BinnedData, nuisances: Nuisances, *, eta_nodes=None,
                   statistic: str = "gauss", s_ref=None) -> FitResult:
    """Reference profile with one iminuit MIGRAD fit per hypothesis (slow; for checks)."""
    return _profile(signal_nodes, data, nuisances, eta_nodes, statistic, s_ref, "minuit")


# --------------------------------------------------------------------------------------------
# scans
# --------------------------------------------------------------------------------------------
def _poly_templates(T) -> np.ndarray:
    """Templates as (K, 3, M, bin): accepts (3, M, bin) [K = 1], (K, 3, M, bin), datasets or lists."""
    if isinstance(T, xr.Dataset):
        T = T["T"].transpose("power", "m_X", "bin").values
    elif isinstance(T, (list, tuple)) and T and isinstance(T[0], xr.Dataset):
        T = np.stack([t["T"].transpose("power", "m_X", "bin").values for t in T])
    T = np.asarray(T, float)
    if T.ndim == 3:
        T = T[None]
    if T.ndim != 4 or T.shape[1] != 3:
        raise InvalidConfig(f"templates must have shape (K, power=3, m_X, bin); got {T.shape}", key="templates")
    if not np.all(np.isfinite(T)):
        raise NumericalError("templates contain NaN or inf; check the forward model")
    return T


def scan_polynomial(templates, x, data: BinnedData, nuisances: Nuisances, *, statistic: str = "gauss",
                    eta_nodes=None, max_points: int = 20000) -> tuple[FitResult, np.ndarray]:
    """Profile over nuisances on a grid of (mass index, x) for signals ``T0 + x T1 + x^2 T2``.

    Parameters
    ----------
    templates : array_like or Dataset or list of Datasets
        (K, 3, M, bin) templates at the quenching nodes (a single (3, M, bin) set when K = 1).
    x : array_like, shape (G,)
        Values of the polynomial variable (g^2, sin^2 theta_W, mu^2, ...).
    data, nuisances, statistic, eta_nodes
        As in :func:`profile_nuisances`.
    max_points : int
        Hypotheses per vectorised batch.

    Returns
    -------
    (FitResult, numpy.ndarray)
        Results flattened over (M, G) and the reference signal (SM at the nominal quenching node,
        ``T0`` of the first mass) used for the default gauss variance.
    """
    T = _poly_templates(templates)
    x = np.atleast_1d(np.asarray(x, float))
    K, _, M, n = T.shape
    if n != data.n_bins:
        raise InvalidConfig(f"templates have {n} bins, data {data.n_bins}", key="data")
    nodes = qf_nodes(nuisances.quenching) if eta_nodes is None else np.asarray(eta_nodes, float)
    if nodes.size != K:
        raise InvalidConfig(f"templates have {K} quenching nodes, expected {nodes.size} (qf_nodes)",
                            key="templates")
    k0 = int(np.argmin(np.abs(nodes)))
    s_ref = T[k0, 0, 0]
    xp = np.stack([np.ones_like(x), x, x * x])  # (3, G)
    G = x.size
    per = max(1, max_points // max(G, 1))
    mins, thetas, convs = [], [], []
    for i in range(0, M, per):
        sl = slice(i, min(i + per, M))
        S = np.einsum("kpmn,pg->kmgn", T[:, :, sl], xp).reshape(K, -1, n)
        S = np.maximum(S, 0.0)
        r = profile_nuisances(S, data, nuisances, eta_nodes=nodes, statistic=statistic, s_ref=s_ref)
        mins.append(r.minimum)
        thetas.append(r.theta)
        convs.append(r.converged)
    res = FitResult(STATISTICS[_check_statistic(statistic)], np.concatenate(mins), np.concatenate(thetas),
                    np.concatenate(convs), "newton", list(NUISANCES))
    return res, s_ref


def sigma_threshold(n_sigma: float, ndof: int) -> float:
    """Delta chi2 threshold of an ``n_sigma`` Gaussian-equivalent region with ``ndof`` parameters.

    ``chi2.ppf(erf(n/sqrt2), ndof)``: 1, 4, 9 for one parameter; 2.30, 6.18, 11.83 for two.
    """
    from nuinfer.tasks.model_scan import chi2_threshold
    return chi2_threshold(math.erf(n_sigma / math.sqrt(2.0)), ndof)


def _theta_vars(dims, theta, shape) -> dict:
    return {k: (dims, theta[:, i].reshape(shape), {"units": "1", "long_name": f"profiled {_LONG[k]}"})
            for i, k in enumerate(NUISANCES)}


def _common_attrs(statistic, nuisances, data, cl, ndof, scan_mode):
    from nuinfer.tasks.model_scan import chi2_threshold
    thr = chi2_threshold(cl, ndof)
    return dict(
        statistic=statistic, statistic_scale=STATISTICS[statistic],
        statistic_variable=f"delta_{STATISTICS[statistic]}", cl=float(cl), ndof=int(ndof), threshold=thr,
        threshold_rule=f"scipy.stats.chi2.ppf({cl}, {ndof})", scan_mode=scan_mode, sidedness="two_sided",
        data_source=data.label, nuisances=json.dumps(list(NUISANCES)), **nuisances.to_attrs(),
        thresholds_1_2_3_sigma=json.dumps([sigma_threshold(k, ndof) for k in (1, 2, 3)]),
    )


def _data_vars(data: BinnedData, s_ref) -> dict:
    out = {"observed_counts": (("bin",), data.observed, {"units": "events", "long_name": "observed counts"}),
           "background": (("bin",), data.background, {"units": "events", "long_name": "expected background"}),
           "R_SM": (("bin",), np.asarray(s_ref, float), {"units": "events",
                                                          "long_name": "reference (SM) signal prediction"})}
    if data.sigma is not None:
        out["sigma_obs"] = (("bin",), data.sigma, {"units": "events", "long_name": "per-bin uncertainty"})
    return out


def scan_parameter(templates, values, data: BinnedData, nuisances: Nuisances, *, name: str = "sin2_theta_W",
                   long_name: str = "weak mixing angle sin^2 theta_W", statistic: str = "gauss",
                   cl: float = 0.9, eta_nodes=None, reference: float | None = None) -> xr.Dataset:
    """1-D profile of one physics parameter x with a polynomial signal ``T0 + x T1 + x^2 T2``.

    Parameters
    ----------
    templates : array_like
        (K, 3, 1, bin) or (K, 3, bin) or (3, bin) polynomial coefficients in x (K morphing nodes).
    values : array_like
        Grid of x (increasing).
    data, nuisances, statistic, eta_nodes
        See :func:`profile_nuisances`.
    name, long_name : str
        Coordinate name and description.
    cl : float
        Confidence level of the recorded interval (``ndof = 1``).
    reference : float, optional
        A reference value of x (e.g. the SM sin^2 theta_W); its Delta is recorded.

    Returns
    -------
    xarray.Dataset
        ``chi2``/``twice_nll`` and ``delta_*`` along ``name``, profiled nuisances, ``converged``;
        attrs ``best_fit``, ``interval_1sigma_lo/hi`` (Delta = 1), ``interval_cl_lo/hi``
        (Delta = chi2.ppf(cl, 1)), ``threshold``, and the conventions of :mod:`nuinfer.tasks`.
        Interval ends are refined by root finding on the exact profile; an end beyond the grid is
        recorded as NaN-free ``-inf``/``inf`` flagged by ``interval_*_open``.
    """
    statistic = _check_statistic(statistic)
    T = np.asarray(templates, float)
    if T.ndim == 2:
        T = T[None, :, None, :]
    elif T.ndim == 3:
        T = T[:, :, None, :]
    x = np.asarray(values, float)
    if x.ndim != 1 or x.size < 3 or np.any(np.diff(x) <= 0):
        raise InvalidConfig("the parameter grid must be >= 3 increasing values", key=f"scan.{name}")
    res, s_ref = scan_polynomial(T, x, data, nuisances, statistic=statistic, eta_nodes=eta_nodes)
    prof = res.minimum

    def profile_at(v):
        r, _ = scan_polynomial(T, np.atleast_1d(float(v)), data, nuisances, statistic=statistic, eta_nodes=eta_nodes)
        return float(r.minimum[0])

    from scipy.optimize import brentq, minimize_scalar
    j = int(np.argmin(prof))
    lo, hi = x[max(j - 1, 0)], x[min(j + 1, x.size - 1)]
    best, fbest = x[j], prof[j]
    if lo < hi:
        opt = minimize_scalar(profile_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
        if opt.fun < fbest:
            best, fbest = float(opt.x), float(opt.fun)
    delta = prof - fbest

    def interval(level):
        out = []
        for side in (-1, 1):
            idx = np.arange(j, -1, -1) if side < 0 else np.arange(j, x.size)
            cross = [i for i in idx if delta[i] >= level]
            if not cross:
                out.append((float(x[0] if side < 0 else x[-1]), 1))
                continue
            i = cross[0]
            a, b = (x[i], best) if side < 0 else (best, x[i])
            try:
                v = brentq(lambda t: profile_at(t) - fbest - level, a, b, xtol=1e-8)
            except ValueError:
                v = x[i]
            out.append((float(v), 0))
        return out

    (l1, o1l), (h1, o1h) = interval(1.0)
    from nuinfer.tasks.model_scan import chi2_threshold
    thr = chi2_threshold(cl, 1)
    (lc, ocl), (hc, och) = interval(thr)
    stat = STATISTICS[statistic]
    coord = {name: (name, x, {"units": "1", "long_name": long_name}), **data.coords()}
    ds = xr.Dataset(
        {f"delta_{stat}": ((name,), delta, {"units": "1", "long_name": f"{stat} minus its minimum"}),
         stat: ((name,), prof, {"units": "1", "long_name": f"{stat} minimised over the nuisances"}),
         **_theta_vars((name,), res.theta, x.shape),
         "converged": ((name,), res.converged.astype(np.int8), {"units": "1", "long_name": "profile converged"}),
         **_data_vars(data, s_ref)},
        coords=coord,
        attrs=_common_attrs(statistic, nuisances, data, cl, 1, "profile_1d"),
    )
    ds.attrs.update(parameter=name, best_fit=float(best), statistic_min=float(fbest),
                    interval_1sigma_lo=l1, interval_1sigma_hi=h1, interval_1sigma_lo_open=o1l,
                    interval_1sigma_hi_open=o1h, interval_cl_lo=lc, interval_cl_hi=hc,
                    interval_cl_lo_open=ocl, interval_cl_hi_open=och,
                    n_not_converged=int((~res.converged).sum()))
    if reference is not None:
        ds.attrs.update(reference_value=float(reference),
                        delta_at_reference=float(profile_at(reference) - fbest))
    return ds


def scan_mass_coupling(templates, g_X, data: BinnedData, nuisances: Nuisances, *, statistic: str = "gauss",
                       cl: float = 0.9, ndof: int = 2, eta_nodes=None, m_X=None,
                       coupling_power: int = 2, attrs: dict | None = None) -> xr.Dataset:
    """Profiled Delta surface over (m_X, g_X) in the scan contract of :mod:`nuinfer.tasks.template_scan`.

    Parameters
    ----------
    templates : list of Dataset, Dataset or array
        Forward-model templates ``T(power, m_X, bin)`` (``R = T0 + g^2 T1 + g^4 T2``), one per
        quenching node (list) or one set (no quenching nuisance).
    g_X : array_like
        Couplings, > 0 and increasing; the SM point g = 0 is evaluated in addition.
    data, nuisances, statistic, eta_nodes
        See :func:`profile_nuisances`.
    cl, ndof : float, int
        Recorded threshold ``chi2.ppf(cl, ndof)`` (2: joint region, 1: raster per mass).
    m_X : array_like, optional
        Masses (default: the templates' ``m_X`` coordinate).
    coupling_power : int
        2 when the templates are polynomials in g^2 (mediators); also 2 for the dipole portal
        written with ``g = mu`` (T2 = 0).
    attrs : dict, optional
        Extra attrs (model name, ...).

    Returns
    -------
    xarray.Dataset
        ``delta_chi2``/``delta_twice_nll`` (m_X, g_X) and the statistic, profiled nuisances,
        ``converged``; attrs ``threshold``, ``statistic_variable``, best fit, SM value.  Reads
        directly into :func:`nuinfer.tasks.contours.contour`.
    """
    statistic = _check_statistic(statistic)
    if m_X is None:
        ref = templates[0] if isinstance(templates, (list, tuple)) else templates
        if not isinstance(ref, xr.Dataset):
            raise InvalidConfig("pass m_X when the templates are plain arrays", key="m_X")
        m_X = ref["m_X"].values
    T = _poly_templates(templates)
    m = np.asarray(m_X, float)
    g = np.asarray(g_X, float)
    if g.ndim != 1 or np.any(g <= 0) or np.any(np.diff(g) <= 0):
        raise InvalidConfig("g_X must be > 0 and strictly increasing (g = 0 is added by the scan)", key="scan.g_X")
    if m.shape != (T.shape[2],):
        raise InvalidConfig(f"m_X has {m.size} values, the templates {T.shape[2]}", key="m_X")
    x = g ** coupling_power
    res, s_ref = scan_polynomial(T, x, data, nuisances, statistic=statistic, eta_nodes=eta_nodes)
    sm, _ = scan_polynomial(T[:, :, :1], np.zeros(1), data, nuisances, statistic=statistic, eta_nodes=eta_nodes)
    M, G = m.size, g.size
    val = res.minimum.reshape(M, G)
    if np.any(np.isnan(val)):
        raise NumericalError("the profiled statistic is NaN somewhere on the grid; check the templates")
    sm_value = float(sm.minimum[0])
    i, j = np.unravel_index(np.argmin(val), val.shape)
    best_is_sm = sm_value <= val[i, j]
    gmin = min(sm_value, float(val[i, j]))
    stat = STATISTICS[statistic]
    dims = ("m_X", "g_X")
    ds = xr.Dataset(
        {f"delta_{stat}": (dims, val - gmin, {"units": "1", "long_name": f"{stat} minus its minimum over the grid and g_X = 0"}),
         stat: (dims, val, {"units": "1", "long_name": f"{stat} minimised over the nuisances"}),
         **_theta_vars(dims, res.theta, (M, G)),
         "converged": (dims, res.converged.reshape(M, G).astype(np.int8), {"units": "1", "long_name": "profile converged"}),
         **_data_vars(data, s_ref)},
        coords={"m_X": ("m_X", m, {"units": "MeV", "long_name": "mediator mass m_X"}),
                "g_X": ("g_X", g, {"units": "1", "long_name": "coupling g_X"}), **data.coords()},
        attrs=_common_attrs(statistic, nuisances, data, cl, ndof, "joint_2d" if ndof == 2 else "raster_1d"),
    )
    ds.attrs.update(statistic_min=gmin, statistic_sm=sm_value, best_fit_is_sm=int(best_is_sm),
                    best_fit_m_X_MeV=0.0 if best_is_sm else float(m[i]),
                    best_fit_g_X=0.0 if best_is_sm else float(g[j]),
                    delta_reference="global", n_not_converged=int((~res.converged).sum()))
    if attrs:
        ds.attrs.update(attrs)
    return ds


# --------------------------------------------------------------------------------------------
# posteriors
# --------------------------------------------------------------------------------------------
def nuisance_parameters(nuisances: Nuisances) -> tuple:
    """Sampled nuisance :class:`~nuinfer.tasks.posterior.Parameter` objects (Gaussian priors).

    Fixed nuisances (width 0) are not sampled; free ones (inf) get a uniform prior on [-0.99, 3].
    ``a_qf`` is truncated to the morphing-node range.
    """
    from nuinfer.tasks.posterior import Parameter

    out = []
    lo_qf, hi_qf = qf_nodes(nuisances.quenching)[[0, -1]] if nuisances.quenching > 0 else (0.0, 0.0)
    for k, s in zip(NUISANCES, nuisances.sigmas):
        if s == 0:
            continue
        lo, hi = (float(lo_qf), float(hi_qf)) if k == "a_qf" else (_A_MIN, math.inf)
        if math.isinf(s):
            out.append(Parameter(k, f"${k}$", "1", lo, 3.0 if math.isinf(hi) else hi))
        else:
            out.append(Parameter(k, rf"$a_\mathrm{{{k[2:]}}}$", "1", lo, hi, prior="normal", mu=0.0, sigma=float(s)))
    return tuple(out)


class DataFitLikelihood:
    """Vectorised log-likelihood ``-stat/2`` (no constraint terms: they are the priors).

    Parameters
    ----------
    signal : callable
        ``signal(phys) -> (K, P, bin)`` signal at the quenching nodes for physics parameters
        ``phys`` of shape (P, n_phys) (see :func:`polynomial_signal`, :func:`mass_coupling_signal`,
        or wrap :class:`nuinfer.physics.ngi.NGIModel`).
    n_phys : int
        Number of physics columns at the start of ``theta``.
    data : BinnedData
    nuisances : Nuisances
        Which nuisances are sampled (non-zero width), in the order of :data:`NUISANCES`, after the
        physics columns.
    statistic : {"gauss", "poisson"}
    s_ref : array_like, optional
        Reference signal for the default gauss variance.
    eta_nodes : array_like, optional
        Quenching nodes (default :func:`qf_nodes`).
    """

    def __init__(self, signal: Callable, n_phys: int, data: BinnedData, nuisances: Nuisances, *,
                 statistic: str = "gauss", s_ref=None, eta_nodes=None):
        self.signal = signal
        self.n_phys = int(n_phys)
        self.data = data
        self.nuisances = nuisances
        self.su = _setup(data, nuisances, statistic, s_ref)
        self.su.sig = np.where(self.su.sig > 0, np.inf, 0.0)  # constraints off: priors carry them
        self.nodes = qf_nodes(nuisances.quenching) if eta_nodes is None else np.asarray(eta_nodes, float)
        self.sampled = [i for i, s in enumerate(nuisances.sigmas) if s > 0]
        self.bin_used = np.ones(data.n_bins, dtype=bool)

    def _mu(self, theta):
        theta = np.atleast_2d(np.asarray(theta, float))
        P = theta.shape[0]
        nu = np.zeros((P, 4))
        for j, i in enumerate(self.sampled):
            nu[:, i] = theta[:, self.n_phys + j]
        S = np.asarray(self.signal(theta[:, :self.n_phys]), float)
        if S.ndim == 2:
            S = S[None]
        sp = NodeSpline(self.nodes, S)
        Sv = sp(nu[:, 2])
        return _mu(nu, np.maximum(Sv, 0.0), self.su.B)

    def pointwise(self, theta) -> np.ndarray:
        """Per-bin log-likelihood terms ``-term_i / 2``, shape (P, bin)."""
        return -0.5 * _bin_terms(self._mu(theta), self.su)

    def __call__(self, theta) -> np.ndarray:
        return self.pointwise(theta).sum(axis=-1)


def polynomial_signal(templates) -> Callable:
    """Signal callable for :class:`DataFitLikelihood` from (K, 3, bin) coefficients in one variable x."""
    T = np.asarray(templates, float)
    if T.ndim == 2:
        T = T[None]

    def signal(phys):
        x = np.asarray(phys, float)[:, 0]
        return T[:, 0][:, None, :] + x[None, :, None] * T[:, 1][:, None, :] + (x * x)[None, :, None] * T[:, 2][:, None, :]

    return signal


def mass_coupling_signal(templates, m_X=None) -> Callable:
    """Signal callable over ``(log10 m_X, log10 g_X)`` from mass-grid templates (cubic in log10 m).

    Uses :class:`nuinfer.tasks.posterior.TemplateInterpolator` per quenching node.
    """
    from nuinfer.tasks.posterior import TemplateInterpolator

    if m_X is None:
        ref = templates[0] if isinstance(templates, (list, tuple)) else templates
        m_X = ref["m_X"].values
    T = _poly_templates(templates)
    lm = np.log10(np.asarray(m_X, float))
    interps = [TemplateInterpolator(lm, T[k, 1], T[k, 2]) for k in range(T.shape[0])]
    T0 = T[:, 0, 0]

    def signal(phys):
        phys = np.asarray(phys, float)
        g2 = (10.0 ** (2.0 * phys[:, 1]))[:, None]
        out = []
        for k, ip in enumerate(interps):
            t1, t2 = ip(phys[:, 0])
            out.append(T0[k][None, :] + g2 * t1 + g2 * g2 * t2)
        return np.stack(out)

    return signal

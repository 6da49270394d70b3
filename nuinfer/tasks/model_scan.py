"""Profile-likelihood scans of any :class:`~nuinfer.likelihood.BinnedModel` over parameters of interest.

* :func:`mass_coupling_scan` -- the (m_X, g_X) surface: for every mass the signal templates are
  a polynomial in g^2 (given by a callable), every other parameter is profiled with
  :func:`nuinfer.likelihood.profile` (all couplings of one mass in one vectorised batch, warm-started
  from the neighbouring mass).  The dataset follows the scan contract read by
  :func:`nuinfer.tasks.contours.exclusion` (``delta_*``, ``threshold``, ``statistic_variable``).
* :func:`parameter_profile` -- a one-parameter profile (a normalisation such as the 8B flux, or a
  coupling entering the templates): best fit, 1 sigma interval (Delta = 1), CL interval, and the
  significance of the null value ``sqrt(Delta(null))``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy.optimize import brentq, minimize_scalar
from scipy.special import chdtri

from nuinfer.exceptions import InvalidConfig, NumericalError
from nuinfer.likelihood import BinnedModel, profile, statistic_name

__all__ = ["chi2_threshold", "mass_coupling_scan", "parameter_profile"]


def chi2_threshold(cl: float, ndof: int) -> float:
    """``chi2.ppf(cl, ndof)`` (via scipy.special, cheap to import)."""
    return float(chdtri(ndof, 1.0 - cl))


def _nuisance_vars(model: BinnedModel, dims, theta, shape):
    out = {}
    for j, name in enumerate(model.parameter_names):
        p = model.parameters[j] if j < model.n_global else None
        out[f"theta_{name}"] = (dims, theta[..., j].reshape(shape),
                                {"units": p.units if p else "1",
                                 "long_name": f"profiled {p.long_name or name}" if p else f"profiled {name}"})
    return out


def mass_coupling_scan(model: BinnedModel, templates: Callable, data, masses, g_X, *, cost: str = "poisson",
                       variance=None, cl: float = 0.9, ndof: int = 2, fix=(), attrs: dict | None = None,
                       progress: Callable | None = None) -> xr.Dataset:
    """Profiled statistic over (m_X, g_X) and its Delta to the best point (grid or SM).

    Parameters
    ----------
    model : BinnedModel
    templates : callable
        ``templates(i_mass, g2)`` -> component templates (dict, see :meth:`BinnedModel.prepare`)
        for the couplings squared ``g2`` (array, one hypothesis each) at mass index ``i_mass``;
        ``templates(None, [0.0])`` is the SM.
    data : array_like, shape (bin,)
        Observed counts (or the event/total columns of the unbinned cost).
    masses, g_X : array_like
        Mass grid [MeV] and couplings (> 0, increasing); g = 0 is evaluated in addition.
    cost, variance, fix
        As in :func:`nuinfer.likelihood.profile`.
    cl, ndof : float, int
        Recorded threshold ``chi2.ppf(cl, ndof)``: 2 joint region, 1 raster.
    """
    stat = statistic_name(cost)
    m = np.asarray(masses, float)
    g = np.asarray(g_X, float)
    if g.ndim != 1 or g.size < 2 or np.any(g <= 0) or np.any(np.diff(g) <= 0):
        raise InvalidConfig("g_X must be >= 2 values > 0, strictly increasing (g = 0 is added)", key="signal.scan.g_X")
    t0 = time.perf_counter()
    sm = profile(model, templates(None, np.zeros(1)), data, cost=cost, variance=variance, fix=fix)
    M, G, P = m.size, g.size, model.n_par
    val = np.empty((M, G))
    theta = np.empty((M, G, P))
    conv = np.zeros((M, G), bool)
    start = np.broadcast_to(sm.theta[0], (G, P)).copy()
    # a point with a statistic 1e4 above the SM fit is excluded beyond any threshold: it is not
    # iterated further (flagged not converged, counted apart from the points near the threshold)
    stop = float(sm.minimum[0]) + 1e4
    for i in range(M):
        r = profile(model, templates(i, g * g), data, cost=cost, variance=variance, fix=fix, start=start,
                    stop_above=stop)
        # a failed warm start (from a very different neighbour) is retried from the SM fit
        bad = ~r.converged & (r.minimum < stop)
        if np.any(bad):
            r2 = profile(model, templates(i, g * g), data, cost=cost, variance=variance, fix=fix,
                         start=np.broadcast_to(sm.theta[0], (G, P)), stop_above=stop)
            better = r2.converged | (r2.minimum < r.minimum)
            r.minimum = np.where(better, r2.minimum, r.minimum)
            r.theta = np.where(better[:, None], r2.theta, r.theta)
            r.converged = np.where(better, r2.converged, r.converged)
        val[i], theta[i], conv[i] = r.minimum, r.theta, r.converged
        start = r.theta
        if progress is not None:
            progress(i + 1, M, time.perf_counter() - t0)
    # a point whose profile fails (non-finite statistic) is flagged, not raised: converged = 0, NaN
    # statistic, counted in n_failed; only a failed SM fit or a grid where every point failed raise
    failed = ~np.isfinite(val)
    conv &= ~failed
    val = np.where(failed, np.nan, val)
    if not np.isfinite(sm.minimum[0]) or failed.all():
        raise NumericalError("the profiled statistic is not finite at the SM point or anywhere on the grid; "
                             "check the templates")
    sm_value = float(sm.minimum[0])
    i, j = np.unravel_index(np.nanargmin(val), val.shape)
    best_is_sm = sm_value <= val[i, j]
    gmin = min(sm_value, float(val[i, j]))
    dims = ("m_X", "g_X")
    thr = chi2_threshold(cl, ndof)
    ds = xr.Dataset(
        {f"delta_{stat}": (dims, val - gmin, {"units": "1", "long_name": f"{stat} minus its minimum over the grid and g_X = 0"}),
         stat: (dims, val, {"units": "1", "long_name": f"{stat} minimised over the nuisance parameters"}),
         **_nuisance_vars(model, dims, theta, (M, G)),
         "converged": (dims, conv.astype(np.int8), {"units": "1", "long_name": "profile converged (Newton decrement)"})},
        coords={"m_X": ("m_X", m, {"units": "MeV", "long_name": "mediator mass m_X"}),
                "g_X": ("g_X", g, {"units": "1", "long_name": "coupling g_X"})},
        attrs=dict(statistic=cost, statistic_scale=stat, statistic_variable=f"delta_{stat}", cl=float(cl),
                   ndof=int(ndof), threshold=thr, threshold_rule=f"chi2.ppf({cl}, {ndof})",
                   scan_mode="joint_2d" if ndof == 2 else "raster_1d", calibration="asymptotic",
                   statistic_min=gmin, statistic_sm=sm_value, best_fit_is_sm=int(best_is_sm),
                   best_fit_m_X_MeV=0.0 if best_is_sm else float(m[i]),
                   best_fit_g_X=0.0 if best_is_sm else float(g[j]), delta_reference="global",
                   n_not_converged=int((~conv).sum()), n_failed=int(failed.sum()),
                   n_not_converged_near_threshold=int((~conv & ~(val - gmin >= 10.0 * thr)).sum()),
                   nuisances=json.dumps(model.parameter_names),
                   profiler="newton", wall_time_s=round(time.perf_counter() - t0, 3)),
    )
    if attrs:
        ds.attrs.update(attrs)
    return ds


def parameter_profile(fit_at: Callable, grid, *, name: str, null: float | None = None, cl: float = 0.9,
                      long_name: str = "", units: str = "1", lo_bound: float = -math.inf,
                      statistic: str = "twice_nll") -> xr.Dataset:
    """One-parameter profile from ``fit_at(values) -> FitResult`` (other parameters profiled).

    The best fit is refined by bounded minimisation between the grid neighbours of the grid
    minimum, interval ends by root finding on the exact profile.  ``null``: the value whose
    Delta gives the significance ``sqrt(Delta)`` (e.g. flux 0, coupling 0).
    """
    x = np.asarray(grid, float)
    if x.ndim != 1 or x.size < 3 or np.any(np.diff(x) <= 0):
        raise InvalidConfig("the parameter grid must be >= 3 increasing values", key=f"signal.scan.{name}")
    r = fit_at(x)
    prof = r.minimum

    def at(v):
        return float(fit_at(np.atleast_1d(float(v))).minimum[0])

    j = int(np.argmin(prof))
    best, fbest = float(x[j]), float(prof[j])
    lo_b, hi_b = x[max(j - 1, 0)], x[min(j + 1, x.size - 1)]
    if lo_b < hi_b:
        opt = minimize_scalar(at, bounds=(lo_b, hi_b), method="bounded", options={"xatol": 1e-9 * max(abs(best), 1e-12)})
        if opt.fun < fbest:
            best, fbest = float(opt.x), float(opt.fun)
    delta = prof - fbest

    def crossing(level, side):
        idx = np.arange(j, -1, -1) if side < 0 else np.arange(j, x.size)
        cross = [k for k in idx if delta[k] >= level]
        if not cross:
            return (float(x[0] if side < 0 else x[-1]), 1)
        k = cross[0]
        a, b = (x[k], best) if side < 0 else (best, x[k])
        try:
            return (float(brentq(lambda t: at(t) - fbest - level, a, b, xtol=1e-10 * max(abs(b), 1e-30))), 0)
        except ValueError:
            return (float(x[k]), 0)

    (l1, o1l), (h1, o1h) = crossing(1.0, -1), crossing(1.0, 1)
    thr = chi2_threshold(cl, 1)
    (lc, ocl), (hc, och) = crossing(thr, -1), crossing(thr, 1)
    ds = xr.Dataset(
        {f"delta_{statistic}": ((name,), delta, {"units": "1", "long_name": f"{statistic} minus its minimum"}),
         statistic: ((name,), prof, {"units": "1", "long_name": f"{statistic} minimised over the other parameters"}),
         "converged": ((name,), r.converged.astype(np.int8), {"units": "1", "long_name": "profile converged"})},
        coords={name: (name, x, {"units": units, "long_name": long_name or name})},
        attrs=dict(parameter=name, best_fit=best, statistic_min=fbest, cl=float(cl), ndof=1, threshold=thr,
                   scan_mode="profile_1d", calibration="asymptotic",
                   interval_1sigma_lo=l1, interval_1sigma_hi=h1, interval_1sigma_lo_open=o1l,
                   interval_1sigma_hi_open=o1h, interval_cl_lo=lc, interval_cl_hi=hc,
                   interval_cl_lo_open=ocl, interval_cl_hi_open=och,
                   n_not_converged=int((~r.converged).sum())),
    )
    if null is not None:
        d0 = max(at(null) - fbest, 0.0)
        ds.attrs.update(null_value=float(null), delta_at_null=d0, significance_sigma=math.sqrt(d0))
    return ds

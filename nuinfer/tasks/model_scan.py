"""Profile-likelihood scans of any :class:`~nuinfer.likelihood.BinnedModel` over parameters of interest.

* :func:`mass_coupling_scan` -- the (m_X, g_X) surface: for every mass the signal templates are
  a polynomial in g^2 (given by a callable), every other parameter is profiled with
  :func:`nuinfer.likelihood.profile` (all couplings of one mass in one vectorised batch, warm-started
  from the neighbouring mass; with blocked templates, many masses per batch).  The dataset follows
  the scan contract read by :func:`nuinfer.tasks.contours.exclusion` (``delta_*``, ``threshold``,
  ``statistic_variable``).
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
from scipy.special import chdtri

from nuinfer.exceptions import InvalidConfig, NumericalError
from nuinfer.likelihood import BinnedModel, profile, statistic_name

__all__ = ["BATCH_BYTES", "chi2_threshold", "mass_coupling_scan", "parameter_profile"]


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


#: memory budget [bytes] of one batched profile call of :func:`mass_coupling_scan`
BATCH_BYTES = 100e6


def _bytes_per_hypothesis(model: BinnedModel, n_bins: int) -> float:
    """Rough peak memory of one hypothesis in a profile call: the Jacobian and its free-parameter copy
    (bins x global parameters each) plus some 30 per-bin work arrays (counts, cost derivatives,
    component templates and their morph derivatives, the line search's candidates)."""
    return 8.0 * n_bins * (2 * model.n_global + model.n_shape + 30)


def mass_coupling_scan(model: BinnedModel, templates: Callable, data, masses, g_X, *, cost: str = "poisson",
                       variance=None, cl: float = 0.9, ndof: int = 2, fix=(), attrs: dict | None = None,
                       progress: Callable | None = None, templates_block: Callable | None = None,
                       max_batch_bytes: float = BATCH_BYTES) -> xr.Dataset:
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
    attrs : dict, optional
        Added to the dataset's attributes.
    progress : callable, optional
        ``progress(masses_done, n_masses, seconds)`` after every mass (per mass) or every level of
        masses (batched).
    templates_block : callable, optional
        ``templates_block(i_mass, g2)`` -> component templates of ``R`` hypotheses, hypothesis ``r``
        at mass index ``i_mass[r]`` with coupling squared ``g2[r]`` (both arrays of shape (R,)),
        e.g. a blocked :class:`~nuinfer.likelihood.PolyTemplate`.  When given, the hypotheses of
        many masses are profiled in one call (see Notes); otherwise one call per mass.
    max_batch_bytes : float
        Memory budget of one batched call (:data:`BATCH_BYTES`; whole masses per call, at least one).

    Returns
    -------
    xarray.Dataset
        ``delta_<statistic>``, ``<statistic>``, ``theta_<parameter>`` and ``converged`` on
        (m_X, g_X), with the threshold, the SM and best-fit values and convergence counts as attrs.

    Notes
    -----
    *Per mass* (no ``templates_block``): the couplings of one mass per call, masses in order, each
    warm-started from the previous mass.  *Batched*: the masses in the levels of
    :func:`_mass_levels` -- a few from the SM fit, then by bisection every 8th mass, then the
    masses between those as runs advancing in parallel, each mass warm-started from the one below
    it as in the per-mass scan -- every level one call for all its masses and couplings (split to
    stay within ``max_batch_bytes``).  A Newton iteration has a fixed cost (Python, the spline
    weights of the yield morph) besides its cost per point, and a batch iterates until its slowest
    point converges: on a 40 x 60 grid the batched scan makes ~10 profile calls and half as many
    Newton iterations as the per-mass one (~1.3x faster); on 200 x 200 the cost per point
    dominates and both take about as long.

    Both: points that fail (not converged, statistic below the cut-off) are retried from the SM fit;
    a retry replaces a point when it converges or reaches a lower statistic.  A point whose statistic
    stays 1e4 above the SM fit is not iterated further (``stop_above`` of :func:`profile`: excluded
    beyond any threshold, flagged not converged), except where it borders in g_X a point that may
    be allowed (statistic below SM + threshold): the contour interpolates the crossing between
    the two, so such a point is re-fitted from its neighbour's parameters without the cut-off
    (:func:`_refit_stopped_edges`).  Both paths reach the same minima where they converge; where a
    warm start ends on a different local minimum, or a point is stopped in one path only, they
    can differ (``tests/test_scan_batched.py``).
    """
    stat = statistic_name(cost)
    m = np.asarray(masses, float)
    g = np.asarray(g_X, float)
    if g.ndim != 1 or g.size < 2 or np.any(g <= 0) or np.any(np.diff(g) <= 0):
        raise InvalidConfig("g_X must be >= 2 values > 0, strictly increasing (g = 0 is added)", key="signal.scan.g_X")
    t0 = time.perf_counter()
    sm = profile(model, templates(None, np.zeros(1)), data, cost=cost, variance=variance, fix=fix)
    M, G = m.size, g.size
    # a point with a statistic 1e4 above the SM fit is excluded beyond any threshold: it is not
    # iterated further (flagged not converged, counted apart from the points near the threshold)
    stop = float(sm.minimum[0]) + 1e4
    per_call = G
    if templates_block is not None:
        per_call = max(1, int(max_batch_bytes // _bytes_per_hypothesis(model, np.shape(data)[-1])))
    fitter = _PointFits(model, templates, templates_block, data, g * g, per_call,
                        dict(cost=cost, variance=variance, fix=fix, stop_above=stop))
    if templates_block is None:
        val, theta, conv = _scan_per_mass(fitter, M, G, sm.theta[0], progress, t0)
    else:
        val, theta, conv = _scan_batched(fitter, M, G, sm.theta[0], progress, t0)
    _refit_stopped_edges(fitter, val, theta, conv, float(sm.minimum[0]) + chi2_threshold(cl, ndof), stop)
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


class _PointFits:
    """Profile fits of arbitrary sets of scan points ``(i_mass, j_coupling)``: through
    ``templates_block`` in calls of at most ``per_call`` points, or through ``templates`` one call
    per mass."""

    def __init__(self, model, templates, templates_block, data, g2, per_call, fit):
        self.model, self.templates, self.block = model, templates, templates_block
        self.data, self.g2, self.per_call, self.fit = data, g2, per_call, fit

    def __call__(self, ii, jj, start, **kw):
        """Minimum, parameters and flags of the points, from ``start`` ((P,) or (R, P))."""
        ii, jj = np.asarray(ii), np.asarray(jj)
        R, P = ii.size, self.model.n_par
        start = np.broadcast_to(start, (R, P))
        val, theta, conv = np.empty(R), np.empty((R, P)), np.zeros(R, bool)
        fit = {**self.fit, **kw}
        if self.block is not None:
            parts = [np.arange(k, min(k + self.per_call, R)) for k in range(0, R, self.per_call)]
        else:
            parts = [np.flatnonzero(ii == i) for i in np.unique(ii)]
        for sel in parts:
            T = (self.block(ii[sel], self.g2[jj[sel]]) if self.block is not None
                 else self.templates(int(ii[sel[0]]), self.g2[jj[sel]]))
            r = profile(self.model, T, self.data, start=start[sel], **fit)
            val[sel], theta[sel], conv[sel] = r.minimum, r.theta, r.converged
        return val, theta, conv

    def retry(self, val, theta, conv, ii, jj, start, **kw):
        """Re-fit points from ``start``; keep a retry that converges or reaches a lower statistic."""
        if ii.size == 0:
            return
        v, t, c = self(ii, jj, start, **kw)
        better = c | (v < val[ii, jj])
        val[ii, jj] = np.where(better, v, val[ii, jj])
        theta[ii, jj] = np.where(better[:, None], t, theta[ii, jj])
        conv[ii, jj] = np.where(better, c, conv[ii, jj])


def _scan_per_mass(fits: _PointFits, M, G, sm_theta, progress, t0):
    """The (M, G) statistic, parameters and flags, one profile call per mass (warm start from the
    previous mass, failures retried from the SM fit)."""
    val = np.empty((M, G))
    theta = np.empty((M, G, fits.model.n_par))
    conv = np.zeros((M, G), bool)
    jj = np.arange(G)
    start = sm_theta
    for i in range(M):
        ii = np.full(G, i)
        val[i], theta[i], conv[i] = fits(ii, jj, start)
        # a failed warm start (from a very different neighbour) is retried from the SM fit
        bad = np.flatnonzero(~conv[i] & (val[i] < fits.fit["stop_above"]))
        fits.retry(val, theta, conv, ii[bad], bad, sm_theta)
        start = theta[i]
        if progress is not None:
            progress(i + 1, M, time.perf_counter() - t0)
    return val, theta, conv


def _mass_levels(M: int, stride: int, chain: int = 8):
    """Masses in warm-start order: ``(indices, step)`` per level, each mass warm-started from the
    solved mass ``step`` below it (step 0: from the SM fit).  Level 0 is every ``stride``-th mass;
    then bisection: the masses midway between solved ones, the distance halving from level to level,
    down to every ``chain``-th mass; then ``chain - 1`` levels of parallel chains, each mass from the
    one just below (step 1, as in the per-mass scan).  ``stride`` and ``chain`` are powers of two."""
    levels = [(np.arange(0, M, stride), 0)]
    step = stride // 2
    while step >= chain:
        idx = np.arange(step, M, 2 * step)
        if idx.size:
            levels.append((idx, step))
        step //= 2
    L = min(chain, stride)
    for k in range(1, L):
        idx = np.arange(k, M, L)
        if idx.size:
            levels.append((idx, 1))
    return levels


def _scan_batched(fits: _PointFits, M, G, sm_theta, progress, t0, stride: int | None = None, chain: int = 8):
    """The (M, G) statistic, parameters and flags, one call (or a few, to stay within the memory
    budget) per level of :func:`_mass_levels`; failures retried from the SM fit after each level.

    ``stride`` (level-0 spacing; default the largest power of two <= M/2) and ``chain`` (spacing
    of the masses that start the runs from the next mass): fewer starts from the SM fit and more
    warm starts from the next mass cost fewer Newton iterations, more levels cost more calls; the
    defaults were the fastest of the powers of two on the XENONnT scans (40 x 60 and 200 x 200).
    """
    if stride is None:
        stride = 1 << max(0, int(math.log2(max(M // 2, 1))))
    val = np.empty((M, G))
    theta = np.empty((M, G, fits.model.n_par))
    conv = np.zeros((M, G), bool)
    done = 0
    for idx, step in _mass_levels(M, stride, chain):
        ii, jj = np.repeat(idx, G), np.tile(np.arange(G), idx.size)
        val[ii, jj], theta[ii, jj], conv[ii, jj] = fits(ii, jj, sm_theta if step == 0 else theta[ii - step, jj])
        # a failed warm start is retried from the SM fit
        bad = ~conv[ii, jj] & (val[ii, jj] < fits.fit["stop_above"])
        fits.retry(val, theta, conv, ii[bad], jj[bad], sm_theta)
        done += idx.size
        if progress is not None:
            progress(done, M, time.perf_counter() - t0)
    return val, theta, conv


def _refit_stopped_edges(fits: _PointFits, val, theta, conv, allowed_below: float, stop: float):
    """Points left above the cut-off ``stop`` next (in g_X, same mass) to a point with a statistic
    below ``allowed_below`` (possibly allowed): the contour interpolates the crossing between the two,
    so the statistic there must be the minimum.  Re-fitted from the neighbour's parameters without
    the cut-off (in place), repeatedly while re-fitted points turn out possibly allowed themselves."""
    tried = np.zeros(val.shape, bool)
    while True:
        stopped = ~conv & (val >= stop) & ~tried
        low = val < allowed_below
        from_below = np.zeros_like(low)
        from_below[:, 1:] = low[:, :-1]
        from_above = np.zeros_like(low)
        from_above[:, :-1] = low[:, 1:]
        ii, jj = np.nonzero(stopped & (from_below | from_above))
        if ii.size == 0:
            return
        tried[ii, jj] = True
        src = np.where(from_below[ii, jj], jj - 1, jj + 1)
        fits.retry(val, theta, conv, ii, jj, theta[ii, src], stop_above=np.inf)


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

    from scipy.optimize import brentq, minimize_scalar  # on first use (~0.2 s import)

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

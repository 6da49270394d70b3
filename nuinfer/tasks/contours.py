"""Excluded regions, region boundaries and per-mass limits from a Delta-statistic surface.

A point (m_X, g_X) is excluded when ``Delta >= threshold`` (the scan's ``threshold`` attr,
``chi2.ppf(cl, ndof)``).  Everything here is derived from the *full* surface, never from one
root per mass: vector-type mediators interfere destructively with the SM, so at fixed m_X the
excluded set in g_X can have holes -- thin *allowed bands* around the coupling g_c where the
new-physics amplitude cancels part of the SM (``PHYSICS.md`` section 7).

Per mass (one grid column) the primary result is the list of excluded g_X intervals:

* crossings of ``Delta - threshold`` between neighbouring grid points are interpolated linearly
  in log10 g_X (edge kind 0) or, when a ``refine`` callable giving the exact profiled Delta at
  arbitrary g_X is passed, located by root finding in log10 g_X (``brentq``, edge kind 1; when
  ``refine`` also evaluates (mass, coupling) pairs elementwise, like :class:`TemplateRefiner`,
  the same Brent iteration runs vectorised over the crossings of all masses at once);
* with ``refine``, allowed bands the grid misses entirely are found too: at every interior grid
  local minimum of Delta that is above the threshold, Delta is minimised (bounded Brent in
  log10 g_X between the two neighbouring grid points; minima shallower than 1e-7 relative,
  i.e. rounding noise, are skipped); if the refined minimum is below the
  threshold, the band's two edges are located by root finding and the excluded interval is
  split (edge kind 1);
* intervals reaching an end of the grid are cut there (edge kind 2, "open": the true boundary
  lies outside the grid).

From the intervals:

* ``g90`` -- the lowest excluded g_X per mass (lower end of the first excluded interval; the
  usual exclusion curve).  The name follows the paper's 90% CL; the level actually used is the
  scan's ``cl``.  ``g90_status`` says how it was obtained (:data:`G90_STATUS`);
  ``g90_upper_bound`` flags masses where g90 equals the smallest grid coupling (excluded already
  there: g90 is only an upper bound on the limit) and ``excluded_to_grid_top`` masses whose last
  excluded interval reaches the largest grid coupling (the region continues above the grid);
* ``lines`` -- the region boundary as polylines in (m_X [MeV], g_X), built by joining the
  interval ends of neighbouring masses (straight in log-log); an allowed band that opens or
  closes between two masses ends in a tip at the log-midpoint of the two masses.  Segments along
  the grid edge (between open ends) are not boundary and are left out.  Unlike contour lines
  traced on the grid (``grid_lines``, contourpy), a band thinner than the grid spacing stays one
  band instead of breaking into dozens of closed fragments;
* :meth:`ContourResult.polygons` -- non-overlapping quadrilaterals/triangles covering the
  excluded region, for filling.

:func:`contour` returns a typed :class:`ContourResult`; :func:`exclusion` returns the same as one
NetCDF-ready ``xr.Dataset`` (no NaN/inf anywhere: ragged parts are stored flat with indices).
:func:`template_refiner` builds the ``refine`` callable (a :class:`TemplateRefiner`) from the
forward-model templates of a polynomial-in-g^2 model and the scan made from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import contourpy
import numpy as np
import xarray as xr

from nuinfer.exceptions import InvalidConfig, NumericalError


def brentq(*args, **kwargs):
    """``scipy.optimize.brentq``, imported on first use (scipy.optimize costs ~0.2 s to import)."""
    from scipy.optimize import brentq as _brentq
    return _brentq(*args, **kwargs)


def minimize_scalar(*args, **kwargs):
    """``scipy.optimize.minimize_scalar``, imported on first use."""
    from scipy.optimize import minimize_scalar as _minimize_scalar
    return _minimize_scalar(*args, **kwargs)


__all__ = [
    "EDGE_KIND",
    "G90_STATUS",
    "ContourResult",
    "TemplateRefiner",
    "contour",
    "excluded_intervals",
    "exclusion",
    "template_refiner",
]

#: Meaning of the per-mass ``g90_status`` codes.
G90_STATUS = {
    0: "crossing",  # g90 at a crossing between an allowed and an excluded grid point
    1: "none_excluded",  # nothing excluded at this mass within the grid (g90: NaN / 0 in files)
    2: "excluded_at_grid_min",  # excluded already at the smallest g_X: g90 = min(g_X) is
    #                             only an upper bound on the true limit (extend the grid down)
    3: "profile_failed",  # the scan's profile failed (NaN, converged = 0) at some g_X of this
    #                       mass: no intervals there (g90: NaN / 0 in files)
}

#: Meaning of the interval-edge kinds.
EDGE_KIND = {
    0: "interpolated",  # linear interpolation of Delta in log10 g_X between grid points
    1: "refined",  # root of the exact Delta - threshold (refine callable), |error| < 1e-10 dex
    2: "grid_edge",  # interval cut at an end of the g_X grid (open: true edge is outside)
}

#: Grid local minima shallower than this (relative to Delta) are rounding noise (e.g. on the
#: plateau of Delta at large g_X, where the profiled normalisation goes to 0) and are not refined.
_MIN_DIP = 1e-7

#: Absolute tolerance in log10 g_X of the root finding and of the bounded minimisation.
_XTOL = 1e-11

#: Relative tolerance of the root finding (``brentq``'s smallest allowed value).
_RTOL = 4 * np.finfo(float).eps


def _crossing(lg0, lg1, d0, d1, threshold):
    """log10 g where the linear interpolation of Delta between two grid points hits threshold."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (threshold - d0) / (d1 - d0)
    t = float(np.clip(t, 0.0, 1.0)) if np.isfinite(t) else 0.5
    return lg0 + t * (lg1 - lg0)


def _check_row(g_X, delta):
    g = np.asarray(g_X, dtype=float)
    d = np.asarray(delta, dtype=float)
    if g.ndim != 1 or d.shape != g.shape:
        raise InvalidConfig(f"delta must have the shape of g_X {g.shape}; got {d.shape}",
                            key="delta")
    if np.any(np.isnan(d)):
        raise NumericalError("the Delta surface contains NaN; the scan did not produce a "
                             "valid statistic there (see its 'converged' variable)")
    return g, d


def _excluded_runs(d, threshold):
    """Excluded runs of one mass column and the grid cells where they start or end.

    Returns ``(ex, starts, ends, cells)``: the mask ``d >= threshold``, the first and the last
    grid index of each excluded run, and the cells ``(j, j + 1)`` (by ``j``) across which Delta -
    threshold changes sign on the grid: the crossings to locate (below each run start, then above
    each run end).  One column of :func:`_excluded_runs_rows`.
    """
    return _excluded_runs_rows(np.asarray(d)[None, :] >= threshold)[0]


def _split_rows(rows, values, M):
    """``values`` grouped by their (non-decreasing) ``rows`` into a list of M arrays."""
    return np.split(values, np.cumsum(np.bincount(rows, minlength=M))[:-1])


def _excluded_runs_rows(EX):
    """:func:`_excluded_runs` of every mass column at once, from the excluded mask ``EX`` (M, G)
    (``Delta >= threshold``): a list of M tuples ``(ex, starts, ends, cells)``."""
    M, G = EX.shape
    pad = np.zeros((M, 1), np.int8)
    step = np.diff(np.concatenate([pad, EX.view(np.int8), pad], axis=1), axis=1)  # (M, G + 1)
    si, starts = np.nonzero(step == 1)  # first excluded index of each run
    ei, ends = np.nonzero(step == -1)
    ends = ends - 1  # last excluded index of each run
    # crossing cells: below each start that is not the first point, then above each end that is
    # not the last one (the order of _excluded_runs)
    cs, ce = starts > 0, ends < G - 1
    rows = np.concatenate([si[cs], ei[ce]])
    order = np.argsort(rows, kind="stable")
    cells = np.concatenate([starts[cs] - 1, ends[ce]])[order]
    S, E, C = _split_rows(si, starts, M), _split_rows(ei, ends, M), _split_rows(rows[order], cells, M)
    return [(EX[i], S[i], E[i], C[i]) for i in range(M)]


def _band_candidates_rows(delta, EX):
    """:func:`_band_candidates` of every mass column at once (``EX``: the excluded masks, (M, G)):
    grid points inside an excluded run where Delta has a local minimum deeper than ``_MIN_DIP``."""
    M, G = delta.shape
    if G < 3:
        return [np.empty(0, dtype=np.intp)] * M
    dm, d0, dp = delta[:, 1:-1], delta[:, :-2], delta[:, 2:]
    with np.errstate(invalid="ignore"):  # inf - inf in rows of failed or forbidden points
        mask = (EX[:, 1:-1] & EX[:, :-2] & EX[:, 2:] & (dm <= d0) & (dm <= dp)
                & (np.maximum(d0, dp) - dm > _MIN_DIP * np.abs(dm)) & np.isfinite(dm))
    ri, k = np.nonzero(mask)
    return _split_rows(ri, k + 1, M)


def _classify_crossings(fa, fb, stats):
    """Which crossing cells the exact statistic can refine, from its values at the cell ends.

    ``fa``, ``fb`` are Delta - threshold at the lower and upper grid point of each cell.  A cell
    is refined when both are finite and of opposite sign (counted in ``stats["refined"]``);
    otherwise the exact statistic disagrees with the grid and the linear interpolation is kept
    (``stats["fallback"]``).  Returns boolean masks ``(solve, at_a, at_b)``: a root strictly
    inside the cell, and an exact zero at the lower / upper end.
    """
    fa = np.asarray(fa, dtype=float)
    fb = np.asarray(fb, dtype=float)
    ok = np.isfinite(fa) & np.isfinite(fb) & ((fa >= 0) != (fb >= 0))
    at_a = ok & (fa == 0.0)
    at_b = ok & ~at_a & (fb == 0.0)
    stats["refined"] += int(ok.sum())
    stats["fallback"] += int((~ok).sum())
    return ok & ~at_a & ~at_b, at_a, at_b


def _row_intervals(lg, d, threshold, f=None, stats=None, runs=None):
    """Excluded intervals of one mass column in log10 g_X.

    ``f(lg_array) -> Delta`` is the exact statistic (or None).  Returns ``(edges, kinds)``: edges
    (2k,) = [lo_0, hi_0, lo_1, hi_1, ...] in log10 g_X, kinds (2k,) int8 of :data:`EDGE_KIND`.
    ``stats`` (dict) accumulates refinement counters.  Crossings are located one at a time
    (``brentq``); :func:`contour` solves all crossings of all masses at once instead when its
    ``refine`` has a ``pairs`` method (:func:`_refine_crossings`).  ``runs``: the column's
    :func:`_excluded_runs`, if known.
    """
    ex, starts, ends, cells = _excluded_runs(d, threshold) if runs is None else runs
    if not ex.any():
        return np.empty(0), np.empty(0, dtype=np.int8)
    g = _scalar(f, threshold)
    roots = {}
    if f is not None and cells.size:
        fa = np.asarray(f(lg[cells]), dtype=float) - threshold
        fb = np.asarray(f(lg[cells + 1]), dtype=float) - threshold
        solve, at_a, at_b = _classify_crossings(fa, fb, stats)
        for j in cells[at_a]:
            roots[j] = lg[j]
        for j in cells[at_b]:
            roots[j] = lg[j + 1]
        for j in cells[solve]:
            roots[j] = brentq(g, lg[j], lg[j + 1], xtol=_XTOL, rtol=_RTOL)
    return _assemble_row(lg, d, ex, starts, ends, roots, threshold, g, stats)


def _scalar(f, threshold):
    """``x -> f([x])[0] - threshold`` as a float (None without ``f``)."""
    if f is None:
        return None

    def g(x):
        return float(np.asarray(f(np.atleast_1d(x)), dtype=float)[0]) - threshold
    return g


def _band_candidates(d, ex):
    """Interior local minima of Delta above the threshold (where a band between grid points may hide):
    one column of :func:`_band_candidates_rows`."""
    return _band_candidates_rows(np.asarray(d)[None, :], np.asarray(ex)[None, :])[0]


def _assemble_row(lg, d, ex, starts, ends, roots, threshold, g, stats, bands=None, cands=None):
    """Interval edges of one mass column from its excluded runs and the refined crossings.

    ``roots`` maps a crossing cell ``j`` to its root in log10 g_X (edge kind 1); the other
    crossings are interpolated linearly (kind 0) and runs reaching an end of the grid are cut
    there (kind 2).  With ``g(x) = Delta(x) - threshold`` (scalar, log10 g_X in; or None),
    allowed bands between grid points are searched for at interior local minima of Delta above
    the threshold (module docstring).  Returns ``(edges, kinds)`` as :func:`_row_intervals`.
    """
    G = lg.size

    def edge(j):
        if j in roots:
            return roots[j], 1
        return _crossing(lg[j], lg[j + 1], d[j], d[j + 1], threshold), 0

    edges, kinds = [], []
    for s, e in zip(starts, ends):
        lo, klo = (lg[0], 2) if s == 0 else edge(s - 1)
        hi, khi = (lg[-1], 2) if e == G - 1 else edge(e)
        edges += [lo, hi]
        kinds += [klo, khi]

    # allowed bands missed by the grid: interior local minima above threshold
    if (g is not None or bands is not None) and G >= 3:
        for c in (_band_candidates(d, ex) if cands is None else cands):
            stats["minima_checked"] += 1
            if bands is not None:  # located already, all masses at once (_refine_bands)
                found = bands.get(int(c))
                if found is None:
                    continue
                if found == "fallback":
                    stats["fallback"] += 1
                    continue
                xm, r0, r1 = found
            else:
                res = minimize_scalar(lambda x: g(x), bounds=(lg[c - 1], lg[c + 1]),
                                      method="bounded", options={"xatol": _XTOL})
                xm, fm = float(res.x), float(res.fun)
                if not fm < 0.0:
                    continue
                if not (g(lg[c - 1]) >= 0.0 and g(lg[c + 1]) >= 0.0):
                    stats["fallback"] += 1
                    continue
                r0 = brentq(g, lg[c - 1], xm, xtol=_XTOL, rtol=_RTOL)
                r1 = brentq(g, xm, lg[c + 1], xtol=_XTOL, rtol=_RTOL)
            # split the interval containing the band: ... lo, [hi=r0], [lo=r1], hi ...
            pos = int(np.searchsorted(np.asarray(edges), xm))
            if pos % 2 != 1:  # not inside an excluded interval (cannot happen: ex[c] holds)
                stats["fallback"] += 1
                continue
            edges[pos:pos] = [r0, r1]
            kinds[pos:pos] = [1, 1]
            stats["bands_found"] += 1
    return np.asarray(edges, dtype=float), np.asarray(kinds, dtype=np.int8)


def _bracketed_roots(f, a, b, fa, fb, *, xtol=_XTOL, rtol=_RTOL, max_iter=100):
    """Roots of many bracketed scalar functions at once: ``brentq``, vectorised.

    An elementwise transcription of scipy's ``brentq`` (Brent's method as in
    ``scipy/optimize/Zeros/brentq.c``: inverse quadratic extrapolation or secant steps, a
    bisection whenever a step would not shrink fast enough, and a step of at least the tolerance
    near convergence, which closes the bracket).  Every bracket follows the same iterates as
    ``brentq(g_k, a_k, b_k, xtol=xtol, rtol=rtol)`` would for the same function values; each
    iteration makes one call of ``f`` for all brackets still open.

    Parameters
    ----------
    f : callable
        ``f(index, x) -> values``: function number ``index[k]`` at ``x[k]`` (1-D integer and
        float arrays in, same-shape float array out).
    a, b : array_like, shape (n,)
        Bracket ends.
    fa, fb : array_like, shape (n,)
        ``f`` at ``a`` and ``b``: finite, non-zero and of opposite signs.
    xtol, rtol : float, optional
        A bracket is closed when its width is below ``xtol + rtol * |x|`` or ``f(x) == 0``
        (``brentq``'s criterion; ``x``, the end with the smaller ``|f|``, is returned).
    max_iter : int, optional
        Iteration limit (``brentq``'s default).

    Returns
    -------
    numpy.ndarray, shape (n,)
        The roots.

    Raises
    ------
    NumericalError
        If ``f`` returns NaN or a bracket does not close within ``max_iter`` iterations.
    """
    xpre, xcur, fpre, fcur = (np.array(v, dtype=float).ravel() for v in (a, b, fa, fb))
    n = xpre.size
    root = np.full(n, np.nan)
    xblk, fblk, spre, scur = (np.zeros(n) for _ in range(4))
    idx = np.arange(n)
    for _ in range(max_iter):
        # the previous step crossed the root: the old point becomes the bracket's other end
        cross = fpre * fcur < 0
        xblk, fblk = np.where(cross, xpre, xblk), np.where(cross, fpre, fblk)
        step = xcur - xpre
        spre, scur = np.where(cross, step, spre), np.where(cross, step, scur)
        # keep the best point (smallest |f|) in xcur
        swap = np.abs(fblk) < np.abs(fcur)
        xpre, xcur, xblk = np.where(swap, xcur, xpre), np.where(swap, xblk, xcur), np.where(
            swap, xcur, xblk)
        fpre, fcur, fblk = np.where(swap, fcur, fpre), np.where(swap, fblk, fcur), np.where(
            swap, fcur, fblk)
        delta = (xtol + rtol * np.abs(xcur)) / 2
        sbis = (xblk - xcur) / 2
        done = (fcur == 0) | (np.abs(sbis) < delta)
        if done.any():
            root[idx[done]] = xcur[done]
            keep = ~done
            idx, xpre, xcur, xblk, fpre, fcur, fblk, spre, scur, delta, sbis = (
                v[keep] for v in (idx, xpre, xcur, xblk, fpre, fcur, fblk, spre, scur, delta,
                                  sbis))
            if idx.size == 0:
                return root
        # trial step: secant (xpre == xblk) or inverse quadratic extrapolation
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            secant = -fcur * (xcur - xpre) / (fcur - fpre)
            dpre = (fpre - fcur) / (xpre - xcur)
            dblk = (fblk - fcur) / (xblk - xcur)
            quad = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            stry = np.where(xpre == xblk, secant, quad)
            good = ((np.abs(spre) > delta) & (np.abs(fcur) < np.abs(fpre))
                    & (2 * np.abs(stry) < np.minimum(np.abs(spre), 3 * np.abs(sbis) - delta)))
        spre, scur = np.where(good, scur, sbis), np.where(good, stry, sbis)  # else bisect
        xpre, fpre = xcur, fcur
        xcur = xcur + np.where(np.abs(scur) > delta, scur, np.where(sbis > 0, delta, -delta))
        fcur = np.asarray(f(idx, xcur), dtype=float)
        if np.isnan(fcur).any():
            k = int(np.argmax(np.isnan(fcur)))
            raise NumericalError(f"the exact statistic is NaN at x = {xcur[k]!r} (bracket "
                                 f"{int(idx[k])}); cannot locate its root")
    raise NumericalError(f"root finding did not converge within {max_iter} iterations for "
                         f"{idx.size} of {n} brackets")


def _refine_crossings(pairs, lg, cells, threshold, stats):
    """Roots of Delta - threshold in the crossing cells of many masses, all at once.

    Parameters
    ----------
    pairs : callable
        ``pairs(m_indices, g_values) -> delta values``, elementwise (e.g.
        :meth:`TemplateRefiner.pairs`).
    lg : numpy.ndarray, shape (G,)
        log10 of the coupling grid.
    cells : dict
        Mass index -> crossing cells ``j`` (cells ``(j, j + 1)``) of that mass
        (:func:`_excluded_runs`).
    threshold : float
        Threshold on Delta.
    stats : dict
        Refinement counters, updated as by :func:`_row_intervals`.

    Returns
    -------
    dict
        Mass index -> ``{j: root in log10 g_X}`` for the refined cells (the same cells and, to
        the root-finding tolerance, the same roots as :func:`_row_intervals`).
    """
    out = {i: {} for i in cells}
    if not cells:
        return out
    rows = np.concatenate([np.full(len(c), i, dtype=np.intp) for i, c in cells.items()])
    js = np.concatenate([np.asarray(c, dtype=np.intp) for c in cells.values()])
    if js.size == 0:
        return out

    def f(k, x):
        return np.asarray(pairs(rows[k], 10.0**x), dtype=float) - threshold

    x0, x1 = lg[js], lg[js + 1]
    both = f(np.r_[np.arange(js.size), np.arange(js.size)], np.r_[x0, x1])
    fa, fb = both[:js.size], both[js.size:]
    solve, at_a, at_b = _classify_crossings(fa, fb, stats)
    root = np.full(js.size, np.nan)
    root[at_a], root[at_b] = x0[at_a], x1[at_b]
    k = np.flatnonzero(solve)
    if k.size:
        root[k] = _bracketed_roots(lambda sub, x: f(k[sub], x), x0[k], x1[k], fa[k], fb[k])
    for n in np.flatnonzero(solve | at_a | at_b):
        out[int(rows[n])][js[n]] = float(root[n])
    return out


def _bounded_minima(f, a, b, *, xatol=_XTOL, max_iter=500):
    """Minima of many scalar functions on bounded intervals at once: scipy's bounded Brent
    method (``minimize_scalar(method="bounded")``), vectorised.

    An elementwise transcription of ``scipy.optimize._optimize._minimize_scalar_bounded``
    (golden-section and parabolic steps, the same tolerances and update rules): for the same
    function values it takes the same steps and returns the same ``(x, f(x))`` as one scalar call
    per interval.  ``f(idx, x)`` evaluates functions ``idx`` at points ``x`` (arrays).
    """
    a = np.asarray(a, dtype=float).copy()
    b = np.asarray(b, dtype=float).copy()
    n = a.size
    sqrt_eps = np.sqrt(2.2e-16)
    golden_mean = 0.5 * (3.0 - np.sqrt(5.0))
    fulc = a + golden_mean * (b - a)
    nfc, xf = fulc.copy(), fulc.copy()
    rat, e = np.zeros(n), np.zeros(n)
    fx = np.asarray(f(np.arange(n), xf), dtype=float)
    ffulc, fnfc = fx.copy(), fx.copy()
    xm = 0.5 * (a + b)
    tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    num = 1
    act = np.abs(xf - xm) > (tol2 - 0.5 * (b - a))
    while act.any() and num < max_iter:
        i = np.flatnonzero(act)
        A, B, XF, XM, T1, T2 = a[i], b[i], xf[i], xm[i], tol1[i], tol2[i]
        E, RAT = e[i], rat[i]
        golden = np.ones(i.size, bool)
        par = np.abs(E) > T1
        r = (XF - nfc[i]) * (fx[i] - ffulc[i])
        q = (XF - fulc[i]) * (fx[i] - fnfc[i])
        p = (XF - fulc[i]) * q - (XF - nfc[i]) * r
        q = 2.0 * (q - r)
        p = np.where(q > 0.0, -p, p)
        q = np.abs(q)
        r_old = E
        E = np.where(par, RAT, E)
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = par & (np.abs(p) < np.abs(0.5 * q * r_old)) & (p > q * (A - XF)) & (p < q * (B - XF))
            rat_p = (p + 0.0) / q
        x_p = XF + rat_p
        near = ((x_p - A) < T2) | ((B - x_p) < T2)
        si_p = np.sign(XM - XF) + ((XM - XF) == 0)
        RAT = np.where(ok, np.where(near, T1 * si_p, rat_p), RAT)
        golden = ~ok
        E = np.where(golden, np.where(XF >= XM, A - XF, B - XF), E)
        RAT = np.where(golden, golden_mean * E, RAT)
        si = np.sign(RAT) + (RAT == 0)
        x = XF + si * np.maximum(np.abs(RAT), T1)
        fu = np.asarray(f(i, x), dtype=float)
        num += 1
        better = fu <= fx[i]
        # accepted: the new point becomes the best
        a[i] = np.where(better, np.where(x >= XF, XF, A), np.where(x < XF, x, A))
        b[i] = np.where(better, np.where(x >= XF, B, XF), np.where(x < XF, B, x))
        NFC, FNFC, FULC, FFULC = nfc[i], fnfc[i], fulc[i], ffulc[i]
        up1 = ~better & ((fu <= FNFC) | (NFC == XF))
        up2 = ~better & ~up1 & ((fu <= FFULC) | (FULC == XF) | (FULC == NFC))
        fulc[i] = np.where(better | up1, NFC, np.where(up2, x, FULC))
        ffulc[i] = np.where(better | up1, FNFC, np.where(up2, fu, FFULC))
        nfc[i] = np.where(better, XF, np.where(up1, x, NFC))
        fnfc[i] = np.where(better, fx[i], np.where(up1, fu, FNFC))
        xf[i] = np.where(better, x, XF)
        fx[i] = np.where(better, fu, fx[i])
        e[i], rat[i] = E, RAT
        xm[i] = 0.5 * (a[i] + b[i])
        tol1[i] = sqrt_eps * np.abs(xf[i]) + xatol / 3.0
        tol2[i] = 2.0 * tol1[i]
        act[i] = np.abs(xf[i] - xm[i]) > (tol2[i] - 0.5 * (b[i] - a[i]))
    return xf, fx


def _refine_bands(pairs, lg, cands, threshold):
    """Allowed bands between grid points at the candidate minima of many masses, all at once.

    ``cands``: mass index -> candidate grid indices ``c`` (:func:`_band_candidates`).  Returns
    mass index -> ``{c: (x_min, r0, r1)}`` for a band found in ``(lg[c-1], lg[c+1])``,
    ``"fallback"`` where the exact statistic disagrees with the grid at the bracket ends, and no
    entry where the minimum stays above the threshold -- what :func:`_assemble_row` finds with
    one scalar minimisation and two brentq calls per candidate.
    """
    out = {i: {} for i in cands}
    rows = np.concatenate([np.full(len(c), i, dtype=np.intp) for i, c in cands.items()] or [np.empty(0, np.intp)])
    cs = np.concatenate([np.asarray(c, dtype=np.intp) for c in cands.values()] or [np.empty(0, np.intp)])
    if cs.size == 0:
        return out

    def f(k, x):
        return np.asarray(pairs(rows[k], 10.0**x), dtype=float) - threshold

    lo, hi = lg[cs - 1], lg[cs + 1]
    xm, fm = _bounded_minima(f, lo, hi)
    dip = np.flatnonzero(fm < 0.0)
    if dip.size == 0:
        return out
    ends = f(np.r_[dip, dip], np.r_[lo[dip], hi[dip]])
    flo, fhi = ends[:dip.size], ends[dip.size:]
    good = (flo >= 0.0) & (fhi >= 0.0)
    for n in dip[~good]:
        out[int(rows[n])][int(cs[n])] = "fallback"
    k = dip[good]
    if k.size:
        r0 = _bracketed_roots(lambda sub, x: f(k[sub], x), lo[k], xm[k], flo[good], fm[k])
        r1 = _bracketed_roots(lambda sub, x: f(k[sub], x), xm[k], hi[k], fm[k], fhi[good])
        for n, x0, a0, a1 in zip(k, xm[k], r0, r1):
            out[int(rows[n])][int(cs[n])] = (float(x0), float(a0), float(a1))
    return out


def _new_stats():
    return {"refined": 0, "fallback": 0, "minima_checked": 0, "bands_found": 0}


def excluded_intervals(g_X, delta, threshold: float, *, refine=None,
                       return_kinds: bool = False):
    """Excluded intervals in g_X at one mass.

    Parameters
    ----------
    g_X : array_like, shape (G,)
        Coupling grid, > 0 and increasing.
    delta : array_like, shape (G,)
        Delta statistic along the grid (NaN not allowed; +inf counts as excluded).
    threshold : float
        Excluded where ``delta >= threshold``.
    refine : callable, optional
        ``refine(g_values) -> delta values`` (1-D array in, same-shape array out): the exact
        profiled Delta at this mass at arbitrary couplings, equal to ``delta`` on the grid.
        With it, crossings are located by root finding in log10 g_X and allowed bands that fall
        between grid points are found (see the module docstring).  Without it, crossings are
        interpolated linearly in log10 g_X.
    return_kinds : bool, optional
        Also return the (k, 2) int8 array of edge kinds (:data:`EDGE_KIND`).

    Returns
    -------
    numpy.ndarray, shape (k, 2)
        Rows ``[g_lo, g_hi]`` in increasing order, one per excluded interval. Intervals that
        reach an end of the grid are cut at ``g_X[0]`` or ``g_X[-1]``.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.logspace(0, 4, 5)  # 1, 10, ..., 1e4
    >>> excluded_intervals(g, [0.0, 10.0, 0.0, 5.0, 10.0], 5.0).round(6).tolist()
    [[3.162278, 31.622777], [1000.0, 10000.0]]
    """
    g, d = _check_row(g_X, delta)
    f = None if refine is None else (lambda lg_: refine(10.0**np.asarray(lg_, dtype=float)))
    edges, kinds = _row_intervals(np.log10(g), d, float(threshold), f, _new_stats())
    out, kinds = _to_g(edges, kinds, g)
    return (out, kinds) if return_kinds else out


def _to_g(edges, kinds, g):
    """log10 edges -> (k, 2) g intervals with exact grid ends."""
    out = (10.0**edges).reshape(-1, 2)
    kinds = kinds.reshape(-1, 2)
    out[:, 0][kinds[:, 0] == 2] = g[0]
    out[:, 1][kinds[:, 1] == 2] = g[-1]
    return out, kinds


# --------------------------------------------------------------------------------------------
# geometry: joining the intervals of neighbouring masses
# --------------------------------------------------------------------------------------------
def _align(a: tuple, b: tuple):
    """Order-preserving matching of edge sequences ``a`` and ``b`` (alternating lo/hi).

    The longer sequence loses adjacent pairs (an interval or a gap that ends between the two
    masses); among those choices the one with the smallest total |shift| of matched edges wins.
    Returns ``(pairs, drop_a, drop_b)``: matched index pairs and the first index of each dropped
    adjacent pair.
    """
    p, q = len(a), len(b)
    long_, short, swap = (a, b, False) if p >= q else (b, a, True)
    n_l, n_s = len(long_), len(short)
    inf = float("inf")
    # cost[i][j]: best cost aligning long_[i:] with short[j:]
    cost = [[inf] * (n_s + 1) for _ in range(n_l + 2)]
    choice = [[None] * (n_s + 1) for _ in range(n_l + 2)]
    cost[n_l][n_s] = 0.0
    for i in range(n_l, -1, -1):
        for j in range(n_s, -1, -1):
            if (i - j) % 2 or (i == n_l and j == n_s):
                continue
            best, how = inf, None
            if i < n_l and j < n_s and cost[i + 1][j + 1] < inf:
                best, how = abs(long_[i] - short[j]) + cost[i + 1][j + 1], "m"
            if i + 1 < n_l and cost[i + 2][j] < best:
                best, how = cost[i + 2][j], "d"
            cost[i][j], choice[i][j] = best, how
    pairs, drops = [], []
    i = j = 0
    while (i, j) != (n_l, n_s):
        if choice[i][j] == "m":
            pairs.append((i, j))
            i, j = i + 1, j + 1
        else:
            drops.append(i)
            i += 2
    if swap:
        return tuple((j, i) for i, j in pairs), (), tuple(drops)
    return tuple(pairs), tuple(drops), ()


def _geometry(lm, edges, kinds):
    """Boundary polylines and fill polygons in (log10 m, log10 g) from per-column edges.

    Returns ``(lines, closed, polygons)``: lists of (k, 2) arrays (closed lines repeat their first
    vertex), closed flags, and polygons (quadrilaterals / triangles, counter-clockwise).
    """
    M = lm.size
    nodes = []  # (x, y, open)
    col_ids = []
    for i in range(M):
        ids = []
        for e, k in zip(edges[i], kinds[i]):
            ids.append(len(nodes))
            nodes.append((lm[i], float(e), k == 2))
        col_ids.append(ids)
    segs = []
    polys = []

    def tip(x, e0, o0, e1, o1):
        if o0 or o1:  # an end on the grid edge: the tip sits there
            y = e0 if o0 else e1
        else:
            y = 0.5 * (e0 + e1)
        nodes.append((x, y, bool(o0 or o1)))
        return len(nodes) - 1, y

    for i in range(M - 1):
        A, B = edges[i], edges[i + 1]
        if A.size == 0 and B.size == 0:
            continue
        pairs, drop_a, drop_b = _align(tuple(A.tolist()), tuple(B.tolist()))
        xm = 0.5 * (lm[i] + lm[i + 1])
        mid_a = np.empty(A.size)
        mid_b = np.empty(B.size)
        for a, b in pairs:
            segs.append((col_ids[i][a], col_ids[i + 1][b]))
            mid_a[a] = mid_b[b] = 0.5 * (A[a] + B[b])
        for side, drops, E, K, ids, mid in ((0, drop_a, A, kinds[i], col_ids[i], mid_a),
                                             (1, drop_b, B, kinds[i + 1], col_ids[i + 1], mid_b)):
            for a in drops:
                t, y = tip(xm, E[a], K[a] == 2, E[a + 1], K[a + 1] == 2)
                segs.append((ids[a], t))
                segs.append((ids[a + 1], t))
                mid[a] = mid[a + 1] = y
        # fill: half-strips [lm_i, xm] from the intervals of A and [xm, lm_i+1] from those of B
        for k in range(0, A.size, 2):
            polys.append(np.array([[lm[i], A[k]], [xm, mid_a[k]], [xm, mid_a[k + 1]],
                                   [lm[i], A[k + 1]]]))
        for k in range(0, B.size, 2):
            polys.append(np.array([[xm, mid_b[k]], [lm[i + 1], B[k]], [lm[i + 1], B[k + 1]],
                                   [xm, mid_b[k + 1]]]))

    # boundary: drop segments along the grid edge, then chain (every node has degree <= 2)
    adj = {}
    for u, v in segs:
        if nodes[u][2] and nodes[v][2]:
            continue
        adj.setdefault(u, []).append(v)
        adj.setdefault(v, []).append(u)
    seen = set()
    lines, closed = [], []

    def walk(start):
        path, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = next((w for w in adj[cur] if w != prev), None)
            if nxt is None:  # open end
                return path
            path.append(nxt)
            if nxt == start or nxt in seen:  # closed
                return path
            seen.add(nxt)
            prev, cur = cur, nxt

    for u in sorted(adj, key=lambda n: (len(adj[n]) != 1, n)):  # open chains first
        if u in seen:
            continue
        path = walk(u)
        xy = np.array([nodes[n][:2] for n in path], dtype=float)
        lines.append(xy)
        closed.append(len(path) > 2 and path[0] == path[-1])
    return lines, closed, polys


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContourResult:
    """Exclusion derived from a scan (see :func:`contour`).

    Attributes
    ----------
    excluded : xarray.DataArray of bool, dims (m_X, g_X)
        ``Delta >= threshold`` on the grid.
    lines : tuple of numpy.ndarray
        Region boundary polylines built from the per-mass intervals (module docstring), each of
        shape (k, 2) with columns (m_X [MeV], g_X); a closed line repeats its first vertex.
    lines_closed : tuple of bool
        Whether each line of ``lines`` is closed.
    intervals : tuple of numpy.ndarray
        One (k, 2) array of excluded ``[g_lo, g_hi]`` intervals per mass.
    interval_kinds : tuple of numpy.ndarray
        One (k, 2) int8 array per mass: how each interval end was obtained (:data:`EDGE_KIND`).
    g90 : xarray.DataArray, dims (m_X,)
        Lowest excluded g_X per mass at the scan's CL (NaN where nothing is excluded; 0 in
        :meth:`to_dataset`).
    g90_status : xarray.DataArray of int8, dims (m_X,)
        Codes of :data:`G90_STATUS`.
    g90_upper_bound : xarray.DataArray of int8, dims (m_X,)
        1 where g90 equals the smallest grid coupling (only an upper bound on the limit).
    excluded_to_grid_top : xarray.DataArray of int8, dims (m_X,)
        1 where the last excluded interval reaches the largest grid coupling.
    threshold, cl : float
        Threshold on the Delta statistic and its confidence level.
    ndof : int
        Degrees of freedom of the threshold.
    variable : str
        Name of the Delta variable used (``delta_chi2`` or ``delta_twice_nll``).
    attrs : dict
        Scan attrs carried over (str / numbers) plus the refinement counters
        (``refined``, ``refine_crossings``, ``refine_fallbacks``, ``refine_minima_checked``,
        ``refine_bands_found``).
    grid_lines : tuple of numpy.ndarray
        Threshold contour lines traced on the grid by contourpy (diagnostic only: thin allowed
        bands come out as chains of closed fragments there).
    """

    excluded: xr.DataArray
    lines: tuple
    intervals: tuple
    g90: xr.DataArray
    g90_status: xr.DataArray
    threshold: float
    cl: float
    ndof: int
    variable: str
    attrs: dict = field(default_factory=dict)
    interval_kinds: tuple = ()
    lines_closed: tuple = ()
    g90_upper_bound: xr.DataArray | None = None
    excluded_to_grid_top: xr.DataArray | None = None
    grid_lines: tuple = ()

    def polygons(self) -> list:
        """Non-overlapping polygons covering the excluded region, in (m_X [MeV], g_X).

        Returns
        -------
        list of numpy.ndarray
            (k, 2) vertex arrays (quadrilaterals and triangles, counter-clockwise in log-log,
            not closed), built from the per-mass intervals like :attr:`lines`: each excluded
            interval spreads half-way to the neighbouring masses, where it meets the matched
            interval; bands and intervals that end between two masses end in a tip there.
        """
        _, _, polys = self._geometry()
        return [10.0**p for p in polys]

    def _geometry(self):
        lm = np.log10(np.asarray(self.g90["m_X"].values, dtype=float))
        edges = [np.log10(iv).ravel() for iv in self.intervals]
        kinds = [np.asarray(k).ravel() for k in self.interval_kinds] or \
            [np.zeros(e.size, np.int8) for e in edges]
        return _geometry(lm, edges, kinds)

    def to_dataset(self) -> xr.Dataset:
        """Everything as one NetCDF-ready dataset; no NaN or inf is written.

        Returns
        -------
        xarray.Dataset
            Per grid point: ``excluded`` (int8; m_X, g_X).

            Per mass (m_X): ``g90`` (0 where nothing is excluded, i.e. ``g90_status == 1``;
            otherwise > 0), ``g90_status`` (:data:`G90_STATUS`), ``g90_upper_bound`` and
            ``excluded_to_grid_top`` (int8 flags), ``n_intervals`` (int32) and
            ``interval_start`` (int32, index of the mass's first interval in the flat list).

            Flat list of excluded intervals (dim ``interval``, ordered by mass then g_X; the
            intervals of mass ``i`` are ``interval_start[i] : interval_start[i] + n_intervals[i]``):
            ``interval_m_index`` (int32), ``interval_m_X``, ``interval_g_lo``, ``interval_g_hi``,
            ``interval_lo_kind``/``interval_hi_kind`` (int8, :data:`EDGE_KIND`).

            Region boundary lines as vertices (dim ``vertex``): ``contour_m_X``,
            ``contour_g_X``, ``contour_line`` (int32 line index of each vertex); per line
            (dim ``line``): ``contour_line_closed`` (int8; a closed line repeats its first
            vertex).
        """
        data, coords, attrs = self._columns()
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def _columns(self) -> tuple[dict, dict, dict]:
        """What :meth:`to_dataset` holds as plain parts: ``{name: (dims, values, attrs)}``, the
        coordinates and the dataset attrs (the stacked form of several results,
        :func:`nuinfer.tasks.xenon.exclusion_dataset`, is built from these)."""
        m = self.g90["m_X"]
        n_int = np.array([len(iv) for iv in self.intervals], dtype=np.int32)
        start = np.r_[0, np.cumsum(n_int)[:-1]].astype(np.int32)
        if n_int.sum():
            ivs = np.concatenate([np.asarray(iv, dtype=float).reshape(-1, 2)
                                  for iv in self.intervals])
            knd = np.concatenate([np.asarray(k, dtype=np.int8).reshape(-1, 2) for k in
                                  self._kinds()])
        else:
            ivs, knd = np.empty((0, 2)), np.empty((0, 2), dtype=np.int8)
        m_idx = np.repeat(np.arange(m.size, dtype=np.int32), n_int)
        lines = self.lines
        verts = np.concatenate(lines) if lines else np.empty((0, 2))
        line_id = np.concatenate(
            [np.full(len(ln), i, dtype=np.int32) for i, ln in enumerate(lines)]
        ) if lines else np.empty(0, dtype=np.int32)
        closed = np.asarray(self.lines_closed or [False] * len(lines), dtype=np.int8)
        rule = f"{self.variable} >= {self.threshold:.6g}"
        cl_txt = f"{100 * self.cl:g}% CL" if np.isfinite(self.cl) else rule
        kind_attrs = {"units": "1", "flag_values": np.array(sorted(EDGE_KIND), dtype=np.int8),
                      "flag_meanings": " ".join(EDGE_KIND[k] for k in sorted(EDGE_KIND))}
        g90 = self.g90.fillna(0.0)
        ub, top = self._flags()
        data = {
            "excluded": (self.excluded.dims, self.excluded.values.astype(np.int8), {
                "units": "1", "long_name": f"excluded ({rule})"}),
            "g90": (g90.dims, g90.values, {**self.g90.attrs, "sentinel": 0.0,
                                           "comment": "0 where nothing is excluded (g90_status == 1)"}),
            **{name: (da.dims, da.values, dict(da.attrs))
               for name, da in (("g90_status", self.g90_status), ("g90_upper_bound", ub),
                                ("excluded_to_grid_top", top))},
            "n_intervals": (("m_X",), n_int, {
                "units": "1", "long_name": "number of excluded g_X intervals"}),
            "interval_start": (("m_X",), start, {
                "units": "1", "long_name": "index of the first interval of this mass in "
                                           "the flat interval list"}),
            "interval_m_index": (("interval",), m_idx, {
                "units": "1", "long_name": "m_X index of the excluded interval"}),
            "interval_m_X": (("interval",), np.asarray(m.values, float)[m_idx], {
                "units": "MeV", "long_name": "m_X of the excluded interval"}),
            "interval_g_lo": (("interval",), ivs[:, 0], {
                "units": "1", "long_name": f"lower end of excluded g_X interval ({cl_txt})"}),
            "interval_g_hi": (("interval",), ivs[:, 1], {
                "units": "1", "long_name": f"upper end of excluded g_X interval ({cl_txt})"}),
            "interval_lo_kind": (("interval",), knd[:, 0], {
                **kind_attrs, "long_name": "how the lower end was obtained"}),
            "interval_hi_kind": (("interval",), knd[:, 1], {
                **kind_attrs, "long_name": "how the upper end was obtained"}),
            "contour_m_X": (("vertex",), verts[:, 0], {
                "units": "MeV", "long_name": "m_X of region boundary vertex"}),
            "contour_g_X": (("vertex",), verts[:, 1], {
                "units": "1", "long_name": "g_X of region boundary vertex"}),
            "contour_line": (("vertex",), line_id, {
                "units": "1", "long_name": "index of the boundary line of each vertex"}),
            "contour_line_closed": (("line",), closed, {
                "units": "1", "long_name": "boundary line is closed (1) or open (0)"}),
        }
        return data, {"m_X": m, "g_X": self.excluded["g_X"]}, {
            **self.attrs,
            # the threshold used here is the scan's (asymptotic) one unless stated otherwise
            "calibration": str(self.attrs.get("calibration", "asymptotic")),
            "threshold": self.threshold,
            "cl": self.cl,
            "ndof": self.ndof,
            "statistic_variable": self.variable,
            "interval_rule": ("crossings interpolated linearly in log10 g_X, or roots of the "
                              "exact statistic where refined (interval_*_kind); intervals "
                              "reaching an end of the grid are cut there"),
            "contour_rule": ("region boundary joining the interval ends of neighbouring "
                             "masses, straight in log-log; bands/intervals ending between "
                             "two masses end in a tip at their log-midpoint; segments "
                             "along the grid edge are omitted"),
        }

    def _kinds(self):
        if self.interval_kinds:
            return self.interval_kinds
        return tuple(np.zeros((len(iv), 2), dtype=np.int8) for iv in self.intervals)

    def _flags(self):
        if self.g90_upper_bound is not None and self.excluded_to_grid_top is not None:
            return self.g90_upper_bound, self.excluded_to_grid_top
        return _flag_arrays(self.g90["m_X"], self._kinds())


def _flag_arrays(m_coord, kinds):
    ub = np.array([len(k) > 0 and k[0, 0] == 2 for k in kinds], dtype=np.int8)
    top = np.array([len(k) > 0 and k[-1, 1] == 2 for k in kinds], dtype=np.int8)
    mk = {"coords": {"m_X": m_coord}, "dims": ("m_X",)}
    return (
        xr.DataArray(ub, name="g90_upper_bound", attrs={
            "units": "1", "long_name": "g90 equals the smallest grid g_X: only an upper bound "
                                      "on the limit (1) or a crossing (0)"}, **mk),
        xr.DataArray(top, name="excluded_to_grid_top", attrs={
            "units": "1", "long_name": "excluded up to the largest grid g_X: the region "
                                      "continues above the grid (1) or not (0)"}, **mk),
    )


def _surface(scan: xr.Dataset, variable: str | None) -> tuple[str, xr.DataArray]:
    if not isinstance(scan, xr.Dataset):
        raise InvalidConfig(f"must be the xarray.Dataset returned by scan(); got "
                            f"{type(scan).__name__}", key="scan")
    name = variable or scan.attrs.get("statistic_variable")
    if name is None:
        raise InvalidConfig("the dataset has no 'statistic_variable' attr; pass "
                            "variable='delta_chi2' (or the Delta variable's name)", key="variable")
    if name not in scan:
        raise InvalidConfig(f"no variable {name!r} in the scan; have {sorted(scan.data_vars)}",
                            key="variable")
    da = scan[name]
    if set(da.dims) != {"m_X", "g_X"}:
        raise InvalidConfig(f"{name} must have dims (m_X, g_X); got {da.dims}", key="variable")
    da = da.transpose("m_X", "g_X")
    for c in ("m_X", "g_X"):
        x = np.asarray(da[c].values, dtype=float)
        if np.any(~np.isfinite(x)) or np.any(x <= 0) or np.any(np.diff(x) <= 0):
            raise InvalidConfig(f"coordinate {c} must be finite, > 0 and strictly increasing "
                                "(contours are traced in log space)", key=f"scan.{c}")
    return name, da


def contour(scan: xr.Dataset, *, threshold: float | None = None,
            variable: str | None = None, refine=None) -> ContourResult:
    """Excluded region, its boundary and per-mass limits from a scan.

    Parameters
    ----------
    scan : xarray.Dataset
        Output of :func:`~nuinfer.tasks.template_scan.scan` (or any dataset with a Delta variable on
        (m_X, g_X) and, unless given here, the attrs ``threshold`` and ``statistic_variable``).
    threshold : float, optional
        Threshold on Delta. Default: the scan's ``threshold`` attr.
    variable : str, optional
        Name of the Delta variable. Default: the scan's ``statistic_variable`` attr.
    refine : callable, optional
        ``refine(m_index, g_values) -> delta values``: the exact Delta (same variable and
        reference as the scan) at mass ``m_X[m_index]`` and arbitrary couplings (1-D array in,
        same-shape array out), e.g. :func:`template_refiner`.  It is called only at masses with
        crossings or interior local minima of Delta above the threshold.  Without it, crossings
        are interpolated linearly in log10 g_X and bands between grid points are not seen.
        If it has a method ``pairs(m_indices, g_values) -> delta values`` evaluating elementwise
        (mass, coupling) pairs (:class:`TemplateRefiner`), the crossings of all masses are
        located at once by a vectorised bracketing root finder (same cells, counters and
        tolerance as the per-mass ``brentq``); the search for bands between grid points still
        calls ``refine`` per mass.

    Returns
    -------
    ContourResult
        With ``.to_dataset()`` for NetCDF output and ``.polygons()`` for filling.

    Notes
    -----
    The boundary (``lines``) joins interval ends of neighbouring masses; regions touching the
    grid edge are open there (lines end, intervals are cut).  The raw contourpy lines of the
    grid are kept in ``grid_lines`` for comparison.
    """
    name, da = _surface(scan, variable)
    attrs = dict(scan.attrs)
    if threshold is None:
        if "threshold" not in attrs:
            raise InvalidConfig("the scan has no 'threshold' attr; pass threshold=... "
                                "(e.g. scipy.stats.chi2.ppf(0.9, 2))", key="threshold")
        threshold = attrs["threshold"]
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold <= 0:
        raise InvalidConfig(f"must be a finite positive Delta; got {threshold!r}", key="threshold")
    if refine is not None and not callable(refine):
        raise InvalidConfig("must be a callable refine(m_index, g_values) -> delta values",
                            key="refine")
    cl = float(attrs.get("cl", np.nan))
    ndof = int(attrs.get("ndof", -1))

    delta = np.asarray(da.values, dtype=float)
    failed_rows = np.isnan(delta).any(axis=1)
    if failed_rows.all():
        raise NumericalError(f"{name} contains NaN at every mass; rerun the scan (see its "
                             "'converged' variable) before extracting contours")
    m = np.asarray(da["m_X"].values, dtype=float)
    g = np.asarray(da["g_X"].values, dtype=float)
    lg = np.log10(g)

    EX = delta >= threshold  # failed (NaN) points are not excluded
    excluded = xr.DataArray(EX, coords={"m_X": da["m_X"], "g_X": da["g_X"]},
                            dims=("m_X", "g_X"), name="excluded")
    stats = _new_stats()
    batched = refine is not None and callable(getattr(refine, "pairs", None))
    all_runs = _excluded_runs_rows(EX)
    if batched:  # all crossings of all masses located in one vectorised root finding
        runs = {i: r for i, r in enumerate(all_runs) if not failed_rows[i]}
        cands = _band_candidates_rows(delta, EX)
        roots = _refine_crossings(refine.pairs, lg, {i: r[3] for i, r in runs.items()},
                                  threshold, stats)
        bands = _refine_bands(refine.pairs, lg, {i: cands[i] for i, r in runs.items() if r[0].any()},
                              threshold)
    edges, kinds = [], []
    for i, row in enumerate(delta):
        f = None if refine is None else (
            lambda x, i=i: np.asarray(refine(i, 10.0**np.asarray(x, dtype=float)), dtype=float))
        if failed_rows[i]:  # a failed profile at this mass (scan: converged = 0): no intervals
            e, k = np.empty(0), np.empty(0, dtype=np.int8)
        elif batched:
            ex, starts, ends, _ = runs[i]
            e, k = _assemble_row(lg, row, ex, starts, ends, roots[i], threshold,
                                 _scalar(f, threshold), stats, bands=bands.get(i, {}), cands=cands[i])
        else:
            e, k = _row_intervals(lg, row, threshold, f, stats, runs=all_runs[i])
        edges.append(e)
        kinds.append(k)
    pairs = [_to_g(e, k, g) for e, k in zip(edges, kinds)]
    intervals = tuple(p[0] for p in pairs)
    interval_kinds = tuple(p[1] for p in pairs)
    g90_values = np.array([iv[0, 0] if len(iv) else np.nan for iv in intervals])
    status = np.array([3 if bad else 1 if len(iv) == 0 else (2 if row[0] >= threshold else 0)
                       for iv, row, bad in zip(intervals, delta, failed_rows)], dtype=np.int8)
    cl_txt = f"{100 * cl:g}% CL" if np.isfinite(cl) else f"{name} >= {threshold:.6g}"
    g90 = xr.DataArray(g90_values, coords={"m_X": da["m_X"]}, dims=("m_X",), name="g90",
                       attrs={"units": "1", "long_name": f"lowest excluded g_X ({cl_txt})"})
    g90_status = xr.DataArray(
        status, coords={"m_X": da["m_X"]}, dims=("m_X",), name="g90_status",
        attrs={"units": "1", "long_name": "status of g90",
               "flag_values": np.array(sorted(G90_STATUS), dtype=np.int8),
               "flag_meanings": " ".join(G90_STATUS[k] for k in sorted(G90_STATUS))})
    ub, top = _flag_arrays(da["m_X"], interval_kinds)

    # boundary from the intervals: edges in log10 g with exact grid ends
    lines_log, closed, _ = _geometry(np.log10(m), [np.log10(iv).ravel() for iv in intervals],
                                     [k.ravel() for k in interval_kinds])
    lines = tuple(10.0**ln for ln in lines_log)

    grid_lines: tuple = ()
    if m.size >= 2 and g.size >= 2:
        z = delta.T.copy()  # contourpy wants z[y, x] = z[g, m]
        z[np.isnan(z)] = 0.0  # failed points (g90_status 3): drawn as allowed in the diagnostic
        inf = np.isinf(z)
        if inf.any():
            finite_max = np.max(z[~inf], initial=threshold)
            z[inf] = 10.0 * max(finite_max, threshold)
        gen = contourpy.contour_generator(np.log10(m), lg, z, line_type="Separate")
        grid_lines = tuple(10.0 ** np.asarray(ln, dtype=float) for ln in gen.lines(threshold))
    attrs.update(refined=int(refine is not None), refine_crossings=stats["refined"],
                 refine_fallbacks=stats["fallback"],
                 refine_minima_checked=stats["minima_checked"],
                 refine_bands_found=stats["bands_found"])
    return ContourResult(excluded=excluded, lines=lines, intervals=intervals, g90=g90,
                         g90_status=g90_status, threshold=threshold, cl=cl, ndof=ndof,
                         variable=name, attrs=attrs, interval_kinds=interval_kinds,
                         lines_closed=tuple(closed), g90_upper_bound=ub,
                         excluded_to_grid_top=top, grid_lines=grid_lines)


def exclusion(scan: xr.Dataset, *, threshold: float | None = None,
              variable: str | None = None, refine=None) -> xr.Dataset:
    """:func:`contour` as one dataset: ``contour(scan, ...).to_dataset()``.

    Parameters
    ----------
    scan : xarray.Dataset
        Output of :func:`~nuinfer.tasks.template_scan.scan`.
    threshold : float, optional
        Threshold on Delta. Default: the scan's ``threshold`` attr.
    variable : str, optional
        Name of the Delta variable. Default: the scan's ``statistic_variable`` attr.
    refine : callable, optional
        ``refine(m_index, g_values) -> delta values`` (see :func:`contour`).

    Returns
    -------
    xarray.Dataset
        See :meth:`ContourResult.to_dataset` (``excluded``, ``g90`` (0 = nothing excluded),
        ``g90_status``, flags, the flat interval list and the boundary vertices).
    """
    return contour(scan, threshold=threshold, variable=variable, refine=refine).to_dataset()


# --------------------------------------------------------------------------------------------
# exact Delta from templates
# --------------------------------------------------------------------------------------------
class TemplateRefiner:
    """The exact profiled Delta of a template scan at arbitrary couplings (see
    :func:`template_refiner`, which builds it).

    ``refine(m_index, g_values)`` evaluates one mass at many couplings (the ``refine`` callable of
    :func:`contour`); :meth:`pairs` evaluates elementwise (mass, coupling) pairs in one
    vectorised call, which :func:`contour` uses to locate the crossings of all masses at once.
    Both give the profiled statistic minus the scan's reference at that mass (closed form for
    ``eq26``, Newton for ``poisson``).

    Parameters
    ----------
    statistic : {"eq26", "poisson"}
        The scan's statistic.
    T : numpy.ndarray, shape (3, M, n)
        Templates of the powers g^0, g^2, g^4 in the used bins [events].
    D : numpy.ndarray, shape (n,)
        Observed (background-subtracted) counts in the used bins.
    r_sm : numpy.ndarray, shape (n,)
        SM expectation in the used bins (variance of Eq. 26 / Poisson background).
    sigma_sys, sigma_bg : float
        Normalisation constraint width and background fraction.
    offset : numpy.ndarray, shape (M,)
        The scan's reference per mass (statistic - Delta).
    """

    def __init__(self, statistic, T, D, r_sm, sigma_sys, sigma_bg, offset):
        from nuinfer.likelihood.costs import background_counts, eq26_variance

        if statistic not in ("eq26", "poisson"):
            raise InvalidConfig(f"no refiner for statistic {statistic!r}", key="statistic")
        self.statistic = statistic
        self.sigma_sys = float(sigma_sys)
        self.offset = np.asarray(offset, dtype=float)
        self._T = np.asarray(T, dtype=float)
        if statistic == "eq26":
            inv = 1.0 / np.sqrt(eq26_variance(r_sm, sigma_bg))
            self._Ts, self._d = self._T * inv, np.asarray(D, dtype=float) * inv
            # per-mass Gram quantities of the closed form (the einsums of
            # _profile_eq26_templates: chunk-independent sums)
            self._A = np.einsum("kmi,i->km", self._Ts, self._d)  # (3, M): t_k . d
            self._gram = np.einsum("kmi,lmi->mkl", self._Ts, self._Ts)  # (M, 3, 3): t_k . t_l
        else:
            self._D = np.asarray(D, dtype=float)
            self._B = background_counts(r_sm, sigma_bg)

    def __call__(self, m_index, g_values):
        """Delta at mass ``m_X[m_index]`` and the couplings ``g_values`` (1-D array out)."""
        from nuinfer.likelihood.costs import _poisson_kernel
        from nuinfer.likelihood.single import _newton_poisson, _profile_eq26_templates

        i = int(m_index)
        g = np.atleast_1d(np.asarray(g_values, dtype=float))
        if self.statistic == "eq26":
            stat = _profile_eq26_templates(self._Ts[:, [i]], g * g, self._d, self.sigma_sys)[0][0]
        else:
            g2 = g * g
            T = self._T
            R = T[0, i] + g2[:, None] * T[1, i] + (g2 * g2)[:, None] * T[2, i]
            R = np.maximum(R, 0.0)
            b, _ = _newton_poisson(R, self._D, self._B, self.sigma_sys, rtol=1e-12, max_iter=200)
            stat = _poisson_kernel(b, R, self._D, self._B, self.sigma_sys)
        return stat - self.offset[i]

    def pairs(self, m_indices, g_values):
        """Delta at the elementwise pairs (``m_X[m_indices[k]]``, ``g_values[k]``).

        Parameters
        ----------
        m_indices : array_like of int
            Mass indices.
        g_values : array_like of float
            Couplings, broadcast against ``m_indices``.

        Returns
        -------
        numpy.ndarray
            Delta per pair (the broadcast shape), equal to ``self(m_indices[k], [g_values[k]])``
            up to rounding: one vectorised evaluation instead of one call per mass.
        """
        from nuinfer.likelihood.costs import _constraint, _inv_sigma_sys2, _poisson_kernel
        from nuinfer.likelihood.single import _newton_poisson

        i, g = np.broadcast_arrays(np.asarray(m_indices, dtype=np.intp),
                                   np.asarray(g_values, dtype=float))
        shape = i.shape
        i, g = i.ravel(), g.ravel()
        g2 = g * g
        g4 = g2 * g2
        if self.statistic == "eq26":
            # elementwise _profile_eq26_templates: b from the Gram quantities of mass i_k, chi2
            # as the sum of the non-negative residual squares plus the constraint
            Ts, d, s = self._Ts, self._d, self.sigma_sys
            if s == 0.0:
                b = np.ones(i.size)
            else:
                inv_s2 = _inv_sigma_sys2(s)
                gp = np.stack([np.ones_like(g2), g2, g4])  # (3, P)
                dv = np.einsum("kp,kp->p", self._A[:, i], gp)
                vv = np.einsum("pkl,kp,lp->p", self._gram[i], gp, gp)
                den = vv + inv_s2
                with np.errstate(divide="ignore", invalid="ignore"):
                    b = np.where(den > 0, (dv + inv_s2) / np.where(den > 0, den, 1.0), 1.0)
            r = b[:, None] * Ts[0, i]
            r += (b * g2)[:, None] * Ts[1, i]
            r += (b * g4)[:, None] * Ts[2, i]
            np.subtract(d[None, :], r, out=r)
            stat = np.einsum("pi,pi->p", r, r) + _constraint(b - 1.0, s)
        else:
            T = self._T
            R = np.maximum(T[0, i] + g2[:, None] * T[1, i] + g4[:, None] * T[2, i], 0.0)
            b, _ = _newton_poisson(R, self._D, self._B, self.sigma_sys, rtol=1e-12, max_iter=200)
            stat = _poisson_kernel(b, R, self._D, self._B, self.sigma_sys)
        return (stat - self.offset[i]).reshape(shape)


def template_refiner(templates: xr.Dataset, scan: xr.Dataset) -> TemplateRefiner:
    """``refine(m_index, g_values)`` for :func:`contour` from the templates a scan was made of.

    Parameters
    ----------
    templates : xarray.Dataset
        The forward-model templates passed to :func:`~nuinfer.tasks.template_scan.scan`
        (``T(power, m_X, bin)``; ``R = T0 + g^2 T1 + g^4 T2``).
    scan : xarray.Dataset
        The scan made from them (its ``bin_used``, ``observed_counts``, ``sigma_sys``,
        ``sigma_bg``, ``statistic`` and Delta reference are reused).

    Returns
    -------
    TemplateRefiner
        Callable ``refine(m_index, g_values) -> delta values``: the profiled statistic at those
        couplings (closed form for ``eq26``, Newton for ``poisson``) minus the scan's reference
        at that mass, so that it reproduces the scan's Delta on the grid.  Its method
        ``refine.pairs(m_indices, g_values)`` evaluates elementwise (mass, coupling) pairs in
        one call; :func:`contour` uses it to locate all crossings at once.
    """
    used = np.asarray(scan["bin_used"].values, dtype=bool)
    T = templates["T"].transpose("power", "m_X", "bin").sel(power=[0, 1, 2]).values
    T = np.asarray(T, dtype=float)[:, :, used]
    if T.shape[1] != scan.sizes["m_X"]:
        raise InvalidConfig(f"templates have {T.shape[1]} masses, the scan "
                            f"{scan.sizes['m_X']}", key="templates")
    r_sm = np.asarray(scan["R_SM"].values, dtype=float)[used]
    D = np.asarray(scan["observed_counts"].values, dtype=float)[used]
    sigma_sys = float(scan.attrs["sigma_sys"])
    sigma_bg = float(scan.attrs["sigma_bg"])
    statistic = scan.attrs.get("statistic", "eq26")
    name = scan.attrs["statistic_variable"]
    raw = scan.attrs.get("statistic_scale", name.removeprefix("delta_"))
    # reference per mass: stat - delta on the grid (constant along g_X)
    off = np.asarray((scan[raw] - scan[name]).transpose("m_X", "g_X").values)
    nan_rows = np.isnan(off).any(axis=1)  # failed points (converged = 0)
    offset = np.median(np.where(nan_rows[:, None], 0.0, off), axis=1)
    for i in np.flatnonzero(nan_rows):
        ok = off[i][~np.isnan(off[i])]
        offset[i] = np.median(ok) if ok.size else np.nan
    return TemplateRefiner(statistic, T, D, r_sm, sigma_sys, sigma_bg, offset)

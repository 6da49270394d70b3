"""The batched crossing refinement of ``contour`` equals the per-mass ``brentq`` path.

``template_refiner`` returns a :class:`~nuinfer.tasks.contours.TemplateRefiner` whose ``pairs``
method evaluates (mass, coupling) pairs elementwise; with it ``contour`` locates the crossings of
all masses at once (``_refine_crossings`` / ``_bracketed_roots``, a vectorised transcription of
scipy's ``brentq``).  A plain ``lambda i, g: refine(i, g)`` has no ``pairs`` and takes the
per-mass path, which is the reference here.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose
from scipy.optimize import brentq

import nuinfer.tasks.contours as contours_mod
from nuinfer.exceptions import NumericalError
from nuinfer.tasks.contours import (
    TemplateRefiner,
    _RTOL,
    _XTOL,
    _bracketed_roots,
    _excluded_runs,
    _new_stats,
    _refine_crossings,
    contour,
)

THR = 4.605170185988091

#: real template scans, 60 x 60: (preset, model, statistic).  cevns V has allowed bands (the
#: destructive interference of the universal vector); the others are single intervals per mass.
CASES = [
    ("fig2_cevns", "V", "eq26"),
    ("fig2_cevns", "V", "poisson"),
    ("fig2_eves", "S", "eq26"),
    ("fig2_eves", "A", "poisson"),
]
_SCANS: dict = {}


def real_scan(name, model, statistic):
    """(scan, refiner) of one preset model on a 60 x 60 grid (cached per module)."""
    key = (name, model, statistic)
    if key not in _SCANS:
        from nuinfer.tasks.xenon import preset, refiner, scan_model

        ana = preset(name, {"scan.m_X_MeV.n": 60, "scan.g_X.n": 60,
                            "statistics.statistic": statistic})
        sc, templates = scan_model(ana, model, return_templates=True)
        assert sc.attrs["statistic"] == statistic
        ref = refiner(templates, sc)
        assert isinstance(ref, TemplateRefiner) and callable(ref.pairs)
        _SCANS[key] = (sc, ref)
    return _SCANS[key]


def scalar_path(ref):
    """The same refiner without ``pairs``: ``contour`` then refines mass by mass (brentq)."""
    return lambda i, g: ref(i, g)


def assert_same_contour(batched, scalar, *, atol_log=1e-9, rtol_g90=1e-10):
    """Same intervals (count per mass, kinds, ends in log10 g), g90, status and counters."""
    assert len(batched.intervals) == len(scalar.intervals)
    for i, (a, b) in enumerate(zip(batched.intervals, scalar.intervals)):
        assert a.shape == b.shape, f"mass {i}: {a.shape} vs {b.shape} intervals"
        assert np.array_equal(batched.interval_kinds[i], scalar.interval_kinds[i]), f"mass {i}"
        if a.size:
            assert_allclose(np.log10(a), np.log10(b), rtol=0, atol=atol_log, err_msg=f"mass {i}")
    assert_allclose(batched.g90.values, scalar.g90.values, rtol=rtol_g90, atol=0)
    assert np.array_equal(batched.g90_status.values, scalar.g90_status.values)
    for k in ("refined", "refine_crossings", "refine_fallbacks", "refine_minima_checked",
              "refine_bands_found"):
        assert batched.attrs[k] == scalar.attrs[k], k


class CountingBrentq:
    """Stand-in for ``contours.brentq`` counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return brentq(*args, **kwargs)


# ---------------------------------------------------------------------- real template scans
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_pairs_equal_per_mass_calls(case):
    sc, ref = real_scan(*case)
    M, g = sc.sizes["m_X"], sc["g_X"].values
    rng = np.random.default_rng(7)
    i = rng.integers(0, M, 400)
    gg = 10.0 ** rng.uniform(np.log10(g[0]), np.log10(g[-1]), 400)
    gg[:60] = g  # on the grid too
    want = np.array([ref(ik, [gk])[0] for ik, gk in zip(i, gg)])
    got = ref.pairs(i, gg)
    assert got.shape == want.shape
    assert_allclose(got, want, rtol=1e-12, atol=0)
    # broadcasting: one mass, many couplings = the per-mass call
    assert_allclose(ref.pairs(3, g), ref(3, g), rtol=1e-12, atol=0)
    assert ref.pairs(np.array([[1, 2]]), np.array([[g[5]], [g[9]]])).shape == (2, 2)
    # and the pairs reproduce the scan's Delta on the grid
    I, G = np.meshgrid(np.arange(M), g, indexing="ij")
    delta = sc[sc.attrs["statistic_variable"]].transpose("m_X", "g_X").values
    assert_allclose(ref.pairs(I, G), delta, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_batched_contour_equals_per_mass_brentq(case, monkeypatch):
    sc, ref = real_scan(*case)
    spy = CountingBrentq()
    monkeypatch.setattr(contours_mod, "brentq", spy)
    scalar = contour(sc, refine=scalar_path(ref))
    n_scalar = spy.calls
    spy.calls = 0
    batched = contour(sc, refine=ref)
    assert_same_contour(batched, scalar)
    assert batched.attrs["refine_crossings"] > 0
    # the per-mass path calls brentq once per crossing (no exact zeros at grid points here) and
    # twice per band found between grid points; the batched path never (crossings and bands are
    # located for all masses at once)
    assert n_scalar == batched.attrs["refine_crossings"] + 2 * batched.attrs["refine_bands_found"]
    assert spy.calls == 0


def test_vector_case_has_allowed_bands_in_both_paths():
    for stat in ("eq26", "poisson"):
        sc, ref = real_scan("fig2_cevns", "V", stat)
        res = contour(sc, refine=ref)
        multi = [i for i, iv in enumerate(res.intervals) if len(iv) >= 2]
        assert len(multi) >= 5, stat
        assert res.attrs["refine_bands_found"] > 0 and res.attrs["refine_minima_checked"] > 0
        # band edges are refined roots (kind 1) and agree with the per-mass path
        for i in multi:
            assert np.all(res.interval_kinds[i][1:, 0] == 1) and np.all(
                res.interval_kinds[i][:-1, 1] == 1)
        assert_same_contour(res, contour(sc, refine=scalar_path(ref)))


def test_failed_rows_are_skipped_by_both_paths():
    sc, ref = real_scan("fig2_cevns", "V", "eq26")
    name = sc.attrs["statistic_variable"]
    bad = sc.copy(deep=True)
    d = bad[name].transpose("m_X", "g_X").values.copy()
    crossing_rows = [i for i in range(d.shape[0]) if 0 < (d[i] >= THR).sum() < d.shape[1]]
    rows = crossing_rows[:2] + crossing_rows[-1:]
    d[rows, 7] = np.nan
    bad[name] = (("m_X", "g_X"), d, bad[name].attrs)
    batched, scalar = contour(bad, refine=ref), contour(bad, refine=scalar_path(ref))
    assert_same_contour(batched, scalar)
    assert np.all(batched.g90_status.values[rows] == 3)
    assert all(len(batched.intervals[i]) == 0 for i in rows)
    good = contour(sc, refine=ref)
    assert batched.attrs["refine_crossings"] < good.attrs["refine_crossings"]


# ---------------------------------------------------------------------- analytic refiners
LM = np.linspace(-1.0, 2.0, 31)
LG = np.linspace(-4.0, 0.0, 81)  # step 0.05


class ToyRefiner:
    """``delta(lm, lg)`` as a refine callable with a ``pairs`` method."""

    def __init__(self, delta):
        self.delta = delta

    def __call__(self, i, g):
        return self.delta(LM[i], np.log10(np.asarray(g, dtype=float)))

    def pairs(self, i, g):
        return self.delta(LM[np.asarray(i)], np.log10(np.asarray(g, dtype=float)))


def toy_scan(delta, lg=LG):
    d = delta(LM[:, None], lg[None, :])
    return xr.Dataset(
        {"delta_chi2": (("m_X", "g_X"), d, {"units": "1"})},
        coords={"m_X": 10**LM, "g_X": 10**LG},
        attrs={"threshold": THR, "cl": 0.9, "ndof": 2, "statistic_variable": "delta_chi2"})


def band_delta(lm, lg):
    """Smooth rise from the threshold at L1 = -3 + 0.5 lm and a thin allowed band (0.01 dex,
    between grid points, from lm = 0.5 on) centred at -1.2 + 0.5 lm + 0.013."""
    lm, lg = np.broadcast_arrays(np.asarray(lm, float), np.asarray(lg, float))
    rise = THR * np.exp(5.0 * (lg - (-3.0 + 0.5 * lm)))
    c, h = -1.2 + 0.5 * lm + 0.013, np.where(lm >= 0.5, 0.005, 0.0)
    with np.errstate(divide="ignore"):
        dip = np.where(h > 0, THR * ((lg - c) / np.where(h > 0, h, 1.0)) ** 2, np.inf)
    return np.minimum(rise, dip)


def test_toy_band_batched_equals_scalar_and_truth():
    ref = ToyRefiner(band_delta)
    ds = toy_scan(band_delta)
    batched, scalar = contour(ds, refine=ref), contour(ds, refine=scalar_path(ref))
    assert_same_contour(batched, scalar, atol_log=1e-12, rtol_g90=1e-12)
    assert batched.attrs["refine_bands_found"] == int((LM >= 0.5).sum())
    for i, lm in enumerate(LM):
        c = -1.2 + 0.5 * lm + 0.013
        want = [[-3.0 + 0.5 * lm, c - 0.005], [c + 0.005, LG[-1]]] if lm >= 0.5 else [
            [-3.0 + 0.5 * lm, LG[-1]]]
        assert_allclose(np.log10(batched.intervals[i]), want, atol=1e-10)


def test_toy_exact_zeros_at_grid_points():
    # piecewise linear in log10 g, crossing exactly on a grid point at every other mass: there
    # Delta - threshold is exactly 0 at a cell end and the root is that grid point (kind 1)
    lg = np.log10(10.0**LG)  # the grid as contour sees it (and as the refiner gets it back)
    on = np.arange(LM.size) % 2 == 0
    L1 = np.where(on, np.log10(10.0 ** lg[20 + np.arange(LM.size)]), -3.0 + 0.5 * LM + 0.013)

    def delta(lm, lgv):
        k = np.searchsorted(LM, np.asarray(lm) - 1e-12)
        return np.maximum(0.0, THR + 10.0 * (lgv - L1[k]))

    ref = ToyRefiner(delta)
    ds = toy_scan(delta, lg)
    assert np.all(ds["delta_chi2"].values[on, 20 + np.flatnonzero(on)] == THR)
    batched, scalar = contour(ds, refine=ref), contour(ds, refine=scalar_path(ref))
    assert_same_contour(batched, scalar, atol_log=1e-12, rtol_g90=1e-12)
    for i in np.flatnonzero(on):
        assert_allclose(batched.intervals[i][0, 0], 10.0 ** lg[20 + i], rtol=1e-15)
        assert batched.interval_kinds[i][0, 0] == 1
    # the roots themselves are the grid points, exactly (no root finding there)
    d = ds["delta_chi2"].values
    stats = _new_stats()
    cells = {i: _excluded_runs(d[i], THR)[3] for i in range(LM.size)}
    roots = _refine_crossings(ref.pairs, lg, cells, THR, stats)
    for i in np.flatnonzero(on):
        assert roots[i] == {19 + i: lg[20 + i]}
    assert stats["refined"] == LM.size and stats["fallback"] == 0
    assert batched.attrs["refine_crossings"] == LM.size and batched.attrs["refine_fallbacks"] == 0
    assert_allclose(np.log10(batched.g90.values), L1, atol=1e-10)


# ---------------------------------------------------------------------- the root finder
def test_bracketed_roots_follow_brentq():
    rng = np.random.default_rng(3)
    n = 300
    c = rng.uniform(-0.9, 0.9, n)
    p = rng.uniform(0.3, 5.0, n)
    kind = rng.integers(0, 4, n)

    def fun(k, x):
        d = x - c[k]
        return np.select([kind[k] == 0, kind[k] == 1, kind[k] == 2, kind[k] == 3],
                         [np.tanh(p[k] * d), p[k] * d**3 + 0.01 * d,
                          d / (1.0 + p[k] * d * d) + 0.3 * d**5,
                          np.exp(p[k] * x) - np.exp(p[k] * c[k])])

    k = np.arange(n)
    a, b = np.full(n, -1.0), np.full(n, 1.0)
    got = _bracketed_roots(fun, a, b, fun(k, a), fun(k, b))
    want = np.array([brentq(lambda x, j=j: float(fun(np.array([j]), np.array([x]))[0]), -1.0, 1.0,
                            xtol=_XTOL, rtol=_RTOL) for j in range(n)])
    # the same iterates as scipy's brentq (bitwise equal with scipy 1.17)
    assert np.max(np.abs(got - want)) <= 1e-13
    assert np.max(np.abs(got - c)) < _XTOL


def test_bracketed_roots_exact_zero_and_nan():
    # f(x) == 0 exactly at an iterate: returned as is
    got = _bracketed_roots(lambda k, x: x - 0.5, [0.0], [1.0], [-0.5], [0.5])
    assert got.tolist() == [0.5]
    with pytest.raises(NumericalError, match="NaN"):
        _bracketed_roots(lambda k, x: np.where(x > 0.3, np.nan, x - 0.5), [0.0], [1.0],
                         [-0.5], [0.5])


def test_bounded_minima_follow_scipy_bounded_brent():
    """The vectorised bounded minimisation takes scipy's steps: same minimiser and value."""
    from scipy.optimize import minimize_scalar

    from nuinfer.tasks.contours import _XTOL, _bounded_minima
    rng = np.random.default_rng(3)
    n = 400
    c = rng.uniform(-1.0, 1.0, n)
    w = rng.uniform(0.5, 5.0, n)
    kind = rng.integers(0, 3, n)
    lo = c - rng.uniform(0.01, 0.5, n)
    hi = c + rng.uniform(0.01, 0.5, n)
    lo[::7], hi[::7] = c[::7] + 0.1, c[::7] + 0.6  # minimum outside the interval: ends at a bound

    def fun(k, x):
        k = np.asarray(k)
        d = x - c[k]
        return np.where(kind[k] == 0, w[k] * d * d - 1.0,
                        np.where(kind[k] == 1, np.cosh(w[k] * d) - 2.0, np.abs(d) ** 1.5 * w[k] - 0.3))

    xm, fm = _bounded_minima(fun, lo, hi)
    for k in range(n):
        ref = minimize_scalar(lambda x: float(fun(np.array([k]), np.array([x]))[0]), bounds=(lo[k], hi[k]),
                              method="bounded", options={"xatol": _XTOL})
        assert xm[k] == pytest.approx(ref.x, abs=1e-13)
        assert fm[k] == pytest.approx(ref.fun, abs=1e-14)


def _runs_reference(d, thr):
    """Excluded runs of one column by a plain loop: (starts, ends, crossing cells)."""
    ex = [bool(v >= thr) for v in d]
    starts = [j for j in range(len(d)) if ex[j] and (j == 0 or not ex[j - 1])]
    ends = [j for j in range(len(d)) if ex[j] and (j == len(d) - 1 or not ex[j + 1])]
    cells = [s - 1 for s in starts if s > 0] + [e for e in ends if e < len(d) - 1]
    return np.array(ex), starts, ends, cells


def _minima_reference(d, ex):
    """Interior grid points inside a run where Delta dips (both neighbours excluded and not lower)."""
    out = []
    for k in range(1, len(d) - 1):
        lo, hi = d[k], max(d[k - 1], d[k + 1])
        if (ex[k - 1] and ex[k] and ex[k + 1] and lo <= d[k - 1] and lo <= d[k + 1] and np.isfinite(lo)
                and hi - lo > contours_mod._MIN_DIP * abs(lo)):
            out.append(k)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_helpers_equal_a_plain_loop(seed):
    """``_excluded_runs_rows`` / ``_band_candidates_rows`` (all masses at once, and one column
    through ``_excluded_runs`` / ``_band_candidates``) against a plain loop per column: runs touching
    either grid end, single points, nothing excluded, everything excluded, NaN and inf."""
    from nuinfer.tasks.contours import _band_candidates, _band_candidates_rows, _excluded_runs_rows
    rng = np.random.default_rng(seed)
    M, G = 40, 23
    d = rng.uniform(0.0, 2.0 * THR, (M, G))
    d[rng.random((M, G)) < 0.05] = np.inf
    d[rng.random((M, G)) < 0.03] = np.nan
    d[0] = 0.0  # nothing excluded
    d[1] = 10.0 * THR  # everything excluded
    d[2, ::2] = 10.0 * THR  # runs of one point, starting at the first grid point
    d[3] = np.linspace(20.0, 0.0, G)  # one run from the first point
    d[3, G // 2] = 2.0 * THR + 1.0  # ... and an isolated one
    d[4] = 3.0 * THR
    d[4, 5:9] = [2.9 * THR, 2.0 * THR, 2.5 * THR, 2.95 * THR]  # a dip inside a run
    with np.errstate(invalid="ignore"):
        rows = _excluded_runs_rows(d >= THR)
        cands = _band_candidates_rows(d, d >= THR)
        for i in range(M):
            ex, starts, ends, cells = _runs_reference(d[i], THR)
            for got in (rows[i], _excluded_runs(d[i], THR)):
                np.testing.assert_array_equal(got[0], ex)
                for a, b in zip(got[1:], (starts, ends, cells)):
                    assert a.dtype == np.intp and a.tolist() == b
            want = _minima_reference(d[i], ex)
            assert cands[i].tolist() == want and _band_candidates(d[i], ex).tolist() == want
    assert sum(r[3].size for r in rows) > M  # the draw has crossings to compare
    assert 6 in cands[4].tolist()

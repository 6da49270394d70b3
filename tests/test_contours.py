"""Contours, excluded intervals and g90 on analytic surfaces with islands, and on scans."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose
from scipy.optimize import brentq

from nuinfer.exceptions import InvalidConfig, NumericalError
from nuinfer.infer import (
    contour,
    excluded_intervals,
    exclusion,
    expected_counts,
    profile_eq26,
    scan,
)
from nuinfer.io import read_netcdf, write_netcdf

THR = 4.605170185988091
LM = np.linspace(-1.0, 2.0, 31)  # log10 m_X grid
LG = np.linspace(-4.0, 0.0, 81)  # log10 g_X grid, step 0.05


def bounds(lm):
    """Analytic boundaries: excluded for lg >= L1 except the hole (L2, L3) where w > 0."""
    L1 = -3.5 + 1.8 * lm
    L2 = L1 + 0.6
    w = 0.8 - 1.2 * (lm - 0.5) ** 2
    return L1, L2, L2 + w, w


def phi(lm, lg):
    """>= 0 exactly on the excluded set; piecewise linear in lg with kinks away from crossings."""
    L1, L2, L3, _ = bounds(lm)
    return np.minimum(lg - L1, np.maximum(L2 - lg, lg - L3))


@pytest.fixture
def surface():
    delta = np.maximum(0.0, THR + 10.0 * phi(LM[:, None], LG[None, :]))
    return xr.Dataset(
        {"delta_chi2": (("m_X", "g_X"), delta, {"units": "1", "long_name": "toy"})},
        coords={"m_X": ("m_X", 10**LM, {"units": "MeV"}), "g_X": ("g_X", 10**LG, {"units": "1"})},
        attrs={"threshold": THR, "cl": 0.9, "ndof": 2, "statistic_variable": "delta_chi2"},
    )


def expected_intervals(lm):
    L1, L2, L3, w = bounds(lm)
    if L1 > LG[-1]:
        return np.empty((0, 2))
    lo = max(L1, LG[0])
    if w > 0:
        return np.array([[lo, L2], [L3, LG[-1]]])
    return np.array([[lo, LG[-1]]])


def test_simple_rows():
    g = np.logspace(0, 4, 5)
    assert excluded_intervals(g, np.zeros(5), 1.0).shape == (0, 2)
    assert excluded_intervals(g, np.full(5, 2.0), 1.0).tolist() == [[1.0, 1e4]]
    # crossing halfway between 10 and 100 in log g -> 10**1.5
    assert_allclose(excluded_intervals(g, [0, 0, 2.0, 2.0, 2.0], 1.0), [[10**1.5, 1e4]])
    # a grid point exactly at the threshold counts as excluded (a degenerate interval)
    assert_allclose(excluded_intervals(g, [0, 1.0, 0, 0, 0], 1.0), [[10.0, 10.0]])
    assert_allclose(excluded_intervals(g, [0, 0, 0, 2.0, 0], 1.0), [[10**2.5, 10**3.5]])
    with pytest.raises(NumericalError):
        excluded_intervals(g, [0, np.nan, 0, 0, 0], 1.0)


def test_intervals_and_g90_respect_islands(surface):
    res = contour(surface)
    assert res.threshold == THR and res.variable == "delta_chi2"
    n_holes = 0
    for i, lm in enumerate(LM):
        want = expected_intervals(lm)
        got = np.log10(res.intervals[i])
        w = bounds(lm)[3]
        if w > 0.15 or w < -0.1:  # crossings fall on linear pieces: interpolation is exact
            assert got.shape == want.shape, lm
            assert_allclose(got, want, atol=1e-9)
        n_holes += got.shape[0] == 2
        # g90 is the lower end of the *first* interval, never a hole boundary
        if want.size:
            assert np.log10(float(res.g90[i])) == pytest.approx(want[0, 0], abs=1e-9)
        else:
            assert np.isnan(res.g90[i])
    assert n_holes >= 10
    L1 = bounds(LM)[0]
    status = res.g90_status.values
    assert_allclose(status, np.where(L1 > LG[-1], 1, np.where(L1 <= LG[0], 2, 0)))
    assert res.excluded.dtype == bool
    assert_allclose(res.excluded.values, surface["delta_chi2"].values >= THR)


def test_contour_lines_match_intervals_and_enclose_the_island(surface):
    res = contour(surface)
    closed = [ln for ln in res.lines if np.allclose(ln[0], ln[-1])]
    assert len(closed) == 1  # the hole is an island of allowed couplings
    lm_loop = np.log10(closed[0][:, 0])
    w_roots = 0.5 + np.sqrt(0.8 / 1.2) * np.array([-1, 1])
    assert lm_loop.min() > w_roots[0] - 0.1 and lm_loop.max() < w_roots[1] + 0.1
    # vertices on grid masses are exactly the interval ends away from the grid boundary
    verts = np.log10(np.concatenate(res.lines))
    for i, lm in enumerate(LM):
        on = np.abs(verts[:, 0] - lm) < 1e-12
        ends = np.log10(res.intervals[i]).ravel()
        ends = ends[(ends > LG[0] + 1e-12) & (ends < LG[-1] - 1e-12)]
        v = np.unique(np.round(verts[on, 1], 10))
        assert_allclose(np.sort(ends), v, atol=1e-9)


def test_to_dataset_round_trip(surface, tmp_path):
    res = contour(surface)
    ds = res.to_dataset()
    xr.testing.assert_identical(ds, exclusion(surface))
    assert ds["g90_status"].attrs["flag_meanings"].split()[0] == "crossing"
    assert int(ds["n_intervals"].max()) == 2 and ds.sizes["interval"] == 2
    assert ds["contour_m_X"].size == sum(len(ln) for ln in res.lines)
    for name, var in ds.variables.items():
        assert "units" in var.attrs, name
    back = read_netcdf(write_netcdf(ds, tmp_path / "contour.nc"))
    xr.testing.assert_identical(back, ds)


def test_errors(surface):
    with pytest.raises(InvalidConfig, match="threshold"):
        contour(surface.drop_attrs(), variable="delta_chi2")  # no threshold attr
    with pytest.raises(InvalidConfig, match="variable"):
        contour(surface, variable="delta_twice_nll")
    bad = surface.copy(deep=True)
    bad["delta_chi2"][3, 3] = np.nan
    with pytest.raises(NumericalError, match="NaN"):
        contour(bad)


def test_g90_from_scan_agrees_with_root_finding(make_templates):
    """Cross-method check: grid + interpolation vs brentq on the profiled chi2 at fixed m."""
    t = make_templates(m_X=np.logspace(-1, 2, 7), n_bins=40)
    g = np.logspace(-3, 1.5, 200)
    res = contour(scan(t, g))
    r_sm = t["R_SM"].values
    fine = np.linspace(-3, 1.5, 2000)
    for i in range(t.sizes["m_X"]):
        T_m = t["T"].isel(m_X=[i]).values

        def f(lg):
            R = expected_counts(T_m, np.atleast_1d(10.0**lg))[0]
            return profile_eq26(R, r_sm).minimum - THR

        vals = f(fine)
        k = np.flatnonzero((vals[:-1] < 0) & (vals[1:] >= 0))[0]
        root = brentq(lambda x: float(f(x)[0]), fine[k], fine[k + 1], xtol=1e-12)
        assert res.g90_status[i] == 0
        assert np.log10(float(res.g90[i])) == pytest.approx(root, abs=5e-3)

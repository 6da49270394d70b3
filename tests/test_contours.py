"""Contours, excluded intervals and g90 on analytic surfaces with islands, and on scans."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose
from scipy.optimize import brentq

from nuinfer.exceptions import InvalidConfig, NumericalError
from nuinfer.tasks import (
    contour,
    excluded_intervals,
    exclusion,
    expected_counts,
    profile_eq26,
    scan,
)
from nuinfer.tasks.contours import template_refiner
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
        v = v[(v > LG[0] + 1e-9) & (v < LG[-1] - 1e-9)]  # line ends on the grid edge
        assert_allclose(np.sort(ends), v, atol=1e-9)


def test_to_dataset_round_trip(surface, tmp_path):
    res = contour(surface)
    ds = res.to_dataset()
    xr.testing.assert_identical(ds, exclusion(surface))
    assert ds["g90_status"].attrs["flag_meanings"].split()[0] == "crossing"
    assert int(ds["n_intervals"].max()) == 2
    assert ds.sizes["interval"] == int(ds["n_intervals"].sum()) == sum(map(len, res.intervals))
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
    bad["delta_chi2"][:] = np.nan
    with pytest.raises(NumericalError, match="NaN"):
        contour(bad)


def test_failed_profile_points_are_flagged_not_raised(surface):
    """A NaN (failed profile, scan converged = 0) removes only that mass: g90_status 3."""
    bad = surface.copy(deep=True)
    bad["delta_chi2"][3, 3] = np.nan
    res, ref = contour(bad), contour(surface)
    assert int(res.g90_status[3]) == 3 and np.isnan(float(res.g90[3]))
    assert len(res.intervals[3]) == 0
    keep = np.arange(surface.sizes["m_X"]) != 3
    np.testing.assert_array_equal(res.g90.values[keep], ref.g90.values[keep])
    ds = res.to_dataset()
    assert float(ds["g90"][3]) == 0.0 and ds.attrs["calibration"] == "asymptotic"


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


# ------------------------------------------------------------------ thin allowed bands (refine)
STEP = LG[1] - LG[0]  # 0.05 dex


def band_delta(lm, lg, centre, half):
    """Delta rising from the threshold at L1 = -3 + 0.5 lm, with an allowed band (centre +- half).

    ``min(THR exp(5 (lg - L1)), THR ((lg - c) / h)^2)``: crossings exactly at L1, c - h and c + h
    (where ``half > 0``); smooth, so linear interpolation of the crossings is inexact.
    """
    lm, lg = np.broadcast_arrays(np.asarray(lm, float), np.asarray(lg, float))
    L1 = -3.0 + 0.5 * lm
    rise = THR * np.exp(5.0 * (lg - L1))
    with np.errstate(divide="ignore"):
        dip = np.where(half > 0, THR * ((lg - centre) / np.where(half > 0, half, 1.0)) ** 2, np.inf)
    return np.minimum(rise, dip)


def band_scan(centre_fn, half_fn):
    lm = LM[:, None]
    d = band_delta(lm, LG[None, :], centre_fn(lm), half_fn(lm))
    ds = xr.Dataset(
        {"delta_chi2": (("m_X", "g_X"), d, {"units": "1", "long_name": "toy"})},
        coords={"m_X": ("m_X", 10**LM, {"units": "MeV"}), "g_X": ("g_X", 10**LG, {"units": "1"})},
        attrs={"threshold": THR, "cl": 0.9, "ndof": 2, "statistic_variable": "delta_chi2"})

    def refine(i, g):
        return band_delta(LM[i], np.log10(g), centre_fn(LM[i]), half_fn(LM[i]))
    return ds, refine


def test_thin_band_with_grid_sign_changes_refined_to_1e_6():
    # band 0.04 dex wide (< grid step 0.05) centred on a grid point: one allowed grid point
    centre = lambda lm: LG[np.argmin(np.abs(LG - (-1.5)))] + 0.0 * lm  # noqa: E731
    half = lambda lm: 0.02 + 0.0 * lm  # noqa: E731
    ds, refine = band_scan(centre, half)
    plain, ref = contour(ds), contour(ds, refine=refine)
    for i, lm in enumerate(LM):
        L1 = -3.0 + 0.5 * lm
        want = [[L1, centre(lm) - 0.02], [centre(lm) + 0.02, LG[-1]]]
        assert_allclose(np.log10(ref.intervals[i]), want, atol=1e-6)
        assert ref.interval_kinds[i].tolist() == [[1, 1], [1, 2]]
        # linear interpolation gets the count right but not the edges
        assert plain.intervals[i].shape == (2, 2)
        assert np.max(np.abs(np.log10(plain.intervals[i]) - want)) > 1e-3
    assert ref.attrs["refine_fallbacks"] == 0 and ref.attrs["refine_bands_found"] == 0


def test_band_missed_by_the_grid_is_found():
    # band 0.01 dex wide, centre between grid points and tilted across masses: on the grid every
    # point is excluded; it opens at lm = 0.5 and reaches the right edge of the mass grid
    centre = lambda lm: -1.2 + 0.5 * lm + 0.013  # noqa: E731
    half = lambda lm: np.where(lm >= 0.5, 0.005, 0.0)  # noqa: E731
    ds, refine = band_scan(centre, half)
    assert np.all(ds["delta_chi2"].values[:, LG > -1.9] >= THR)
    plain, ref = contour(ds), contour(ds, refine=refine)
    n_band = 0
    for i, lm in enumerate(LM):
        L1 = -3.0 + 0.5 * lm
        assert plain.intervals[i].shape == (1, 2)
        if lm >= 0.5:
            n_band += 1
            want = [[L1, centre(lm) - 0.005], [centre(lm) + 0.005, LG[-1]]]
        else:
            want = [[L1, LG[-1]]]
        assert_allclose(np.log10(ref.intervals[i]), want, atol=1e-6)
    assert ref.attrs["refine_bands_found"] == n_band == int((LM >= 0.5).sum())
    # one boundary line for the lower edge, one for the band (a U ending at the right mass edge)
    assert len(plain.lines) == 1 and not any(plain.lines_closed)
    assert len(ref.lines) == 2 and not any(ref.lines_closed)
    lines = [np.log10(ln) for ln in ref.lines]
    band = lines[1] if lines[0][:, 0].min() == pytest.approx(LM[0]) else lines[0]
    assert band[:, 0].max() == pytest.approx(LM[-1])
    assert LM[LM < 0.5][-1] < band[:, 0].min() < 0.5  # the tip lies between two masses
    # fill polygons cover the excluded region: none inside the band
    polys = ref.polygons()
    assert all(np.all(np.isfinite(p)) for p in polys)
    i = int(np.argmax(LM >= 0.8))
    c = centre(LM[i])
    for p in polys:
        lp = np.log10(p)
        if np.allclose(lp[:, 0].min(), LM[i]) or np.allclose(lp[:, 0].max(), LM[i]):
            on = lp[np.isclose(lp[:, 0], LM[i])][:, 1]
            assert not (on.min() < c < on.max())


def test_monotone_intervals_equal_exclusion_g90():
    # piecewise linear in log g (exact for interpolation), one interval per mass
    L1 = -3.5 + 1.8 * LM
    d = np.maximum(0.0, THR + 10.0 * (LG[None, :] - L1[:, None]))
    ds = xr.Dataset({"delta_chi2": (("m_X", "g_X"), d, {"units": "1"})},
                    coords={"m_X": 10**LM, "g_X": 10**LG},
                    attrs={"threshold": THR, "cl": 0.9, "ndof": 2,
                           "statistic_variable": "delta_chi2"})

    def refine(i, g):
        return np.maximum(0.0, THR + 10.0 * (np.log10(g) - L1[i]))

    ex = exclusion(ds)
    for res in (contour(ds), contour(ds, refine=refine)):
        for i in range(LM.size):
            iv = res.intervals[i]
            if L1[i] > LG[-1]:
                assert iv.shape == (0, 2) and ex["g90"][i] == 0 and ex["g90_status"][i] == 1
                continue
            assert iv.shape == (1, 2) and iv[0, 1] == 10**LG[-1]
            assert iv[0, 0] == pytest.approx(float(ex["g90"][i]), rel=1e-9)
            assert float(res.g90[i]) == pytest.approx(float(ex["g90"][i]), rel=1e-9)


def test_dataset_has_no_nan_or_inf_and_round_trips(surface, tmp_path):
    centre = lambda lm: -1.2 + 0.5 * lm + 0.013  # noqa: E731
    half = lambda lm: np.where(lm >= 0.5, 0.005, 0.0)  # noqa: E731
    ds, refine = band_scan(centre, half)
    ds["delta_chi2"][-3:] = 0.0  # nothing excluded at the last masses
    for res in (contour(surface), contour(ds, refine=refine)):
        out = res.to_dataset()
        for name, var in out.variables.items():
            if var.dtype.kind == "f":
                assert np.all(np.isfinite(var.values)), name
        # ragged intervals: flat list indexed by mass
        for i, iv in enumerate(res.intervals):
            s0, n = int(out["interval_start"][i]), int(out["n_intervals"][i])
            assert n == len(iv)
            sel = slice(s0, s0 + n)
            assert_allclose(out["interval_g_lo"][sel], iv[:, 0])
            assert_allclose(out["interval_g_hi"][sel], iv[:, 1])
            assert np.all(out["interval_m_index"][sel] == i)
        assert np.all((out["g90"] == 0) == (out["g90_status"] == 1))
        assert out["contour_line_closed"].size == len(res.lines)
        back = read_netcdf(write_netcdf(out, tmp_path / "c.nc"))
        xr.testing.assert_identical(back, out)


def test_g90_at_grid_edge_is_flagged_as_upper_bound(surface):
    res = contour(surface)
    L1 = bounds(LM)[0]
    at_min = L1 <= LG[0]
    assert at_min.any() and (~at_min).any()
    ds = res.to_dataset()
    assert_allclose(ds["g90_upper_bound"], at_min.astype(int))
    assert_allclose(ds["g90"].values[at_min], 10**LG[0])
    assert np.all(ds["g90_status"].values[at_min] == 2)
    assert np.all(ds["interval_lo_kind"].values[ds["interval_start"].values[at_min]] == 2)
    # every excluded mass of this surface is excluded up to the top of the grid
    assert_allclose(ds["excluded_to_grid_top"], (L1 <= LG[-1]).astype(int))


def test_template_refiner_reproduces_the_scan_and_refines_g90(make_templates):
    t = make_templates(m_X=np.logspace(-1, 2, 7), n_bins=40)
    g = np.logspace(-3, 1.5, 60)
    sc = scan(t, g)
    ref = template_refiner(t, sc)
    for i in range(sc.sizes["m_X"]):
        assert_allclose(ref(i, g), sc["delta_chi2"].values[i], rtol=1e-9, atol=1e-9)
    res = contour(sc, refine=ref)
    r_sm = t["R_SM"].values
    for i in range(t.sizes["m_X"]):
        T_m = t["T"].isel(m_X=[i]).values

        def f(lg):
            R = expected_counts(T_m, np.atleast_1d(10.0**lg))[0]
            return profile_eq26(R, r_sm).minimum - THR

        lo = np.log10(float(res.g90[i]))
        assert res.interval_kinds[i][0, 0] == 1
        assert abs(float(f(lo - 1e-7)[0])) < abs(float(f(lo - 1e-3)[0]))
        assert float(f(lo - 1e-7)[0]) < 0 <= float(f(lo + 1e-7)[0])


def test_plot_contours_draws_bands_not_fragments():
    from nuinfer.plotting import plot_contours
    import matplotlib.pyplot as plt

    centre = lambda lm: -1.2 + 0.5 * lm + 0.013  # noqa: E731
    half = lambda lm: np.where(lm >= 0.5, 0.005, 0.0)  # noqa: E731
    ds, refine = band_scan(centre, half)
    fig = plot_contours({"V": ds, "S": ds}, refine={"V": refine})
    ax = fig.axes[0]
    assert len(ax.get_legend().get_texts()) == 2
    assert len(ax.patches) == 2  # one filled region per model
    assert len(ax.lines) == 2 + 1  # V: lower edge + band; S (not refined): lower edge
    assert ax.get_xlim() == pytest.approx((10**LM[0], 10**LM[-1]))
    assert ax.get_ylim() == pytest.approx((10**LG[0], 10**LG[-1]))
    plt.close(fig)


def test_stacked_results_hold_each_label_as_its_own_dataset(surface, tmp_path):
    """exclusion_dataset: per label, the per-mass variables, the flat interval list and the
    boundary lines are those of that label's own to_dataset; other grids are refused."""
    from nuinfer.tasks.xenon import exclusion_dataset
    other = surface.copy()
    other["delta_chi2"] = surface["delta_chi2"].shift(g_X=7, fill_value=0.0)  # region moved up the grid
    res = {"a": contour(surface), "b": contour(other)}
    st = exclusion_dataset(res, dim="scenario")
    assert list(st["scenario"].values) == ["a", "b"]
    for k, (lab, r) in enumerate(res.items()):
        own = r.to_dataset()
        for v in ("excluded", "g90", "g90_status", "g90_upper_bound", "excluded_to_grid_top", "n_intervals"):
            np.testing.assert_array_equal(st[v].sel(scenario=lab).values, own[v].values, err_msg=v)
        sel = st["interval_scenario_index"].values == k
        start = st["interval_start"].sel(scenario=lab).values
        np.testing.assert_array_equal(np.flatnonzero(sel)[own["interval_start"].values[own["n_intervals"] > 0]],
                                      start[own["n_intervals"].values > 0])
        for v in ("interval_m_index", "interval_m_X", "interval_g_lo", "interval_g_hi", "interval_lo_kind",
                  "interval_hi_kind"):
            np.testing.assert_array_equal(st[v].values[sel], own[v].values, err_msg=v)
        lines = st["line_scenario_index"].values == k
        verts = np.isin(st["contour_line"].values, np.flatnonzero(lines))
        np.testing.assert_array_equal(st["contour_m_X"].values[verts], own["contour_m_X"].values)
        np.testing.assert_array_equal(st["contour_line_closed"].values[lines], own["contour_line_closed"].values)
    assert not np.array_equal(st["g90"].values[0], st["g90"].values[1])
    assert st["interval_lo_kind"].attrs["flag_values"] == "0 1 2"  # CF flags as text
    back = read_netcdf(write_netcdf(st, tmp_path / "stacked.nc"))
    xr.testing.assert_identical(back, st)
    coarse = surface.isel(g_X=slice(None, None, 2))
    with pytest.raises(InvalidConfig, match="g_X grid of 'c'"):
        exclusion_dataset({"a": res["a"], "c": contour(coarse)})

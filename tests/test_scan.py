"""Grid scans: thresholds, Asimov properties, injected signals, bins, validation, speed."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose

from nuinfer.exceptions import EmptyWindow, InvalidConfig, NumericalError, UnphysicalInput
from nuinfer.tasks import delta_chi2_threshold, expected_counts, profile_eq26, scan
from nuinfer.io import read_netcdf, write_netcdf

scan_module = importlib.import_module("nuinfer.tasks.template_scan")

G = np.logspace(-3, 1.5, 40)


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------
def test_thresholds_are_pinned():
    assert delta_chi2_threshold(0.9, 2) == pytest.approx(4.605170, abs=1e-6)
    assert delta_chi2_threshold(0.9, 1) == pytest.approx(2.705543, abs=1e-6)
    assert delta_chi2_threshold(0.9, 2) == pytest.approx(-2 * np.log(0.1), rel=1e-12)


@pytest.mark.parametrize("kw, match", [({"cl": 1.0}, "cl"), ({"cl": 0}, "cl"),
                                       ({"ndof": 3}, "ndof"), ({"ndof": True}, "ndof")])
def test_threshold_validation(kw, match):
    with pytest.raises(InvalidConfig, match=match):
        delta_chi2_threshold(**{"cl": 0.9, "ndof": 2, **kw})


# --------------------------------------------------------------------------------------------
# expected counts
# --------------------------------------------------------------------------------------------
def test_expected_counts_matches_pointwise_polynomial(templates):
    g = np.array([0.0, 1e-2, 0.3, 2.0])
    R = expected_counts(templates, g)
    assert isinstance(R, xr.DataArray) and R.dims == ("m_X", "g_X", "bin")
    assert R.attrs["units"] == "events"
    T = templates["T"]
    for i in (0, 5, 11):
        for j, gj in enumerate(g):
            want = T.sel(power=0)[i] + gj**2 * T.sel(power=1)[i] + gj**4 * T.sel(power=2)[i]
            assert_allclose(R[i, j].values, want.values, rtol=1e-14)
    assert_allclose(R.sel(g_X=0.0).values, np.broadcast_to(templates["R_SM"], R[:, 0].shape))
    raw = expected_counts(templates["T"].values, g)
    assert isinstance(raw, np.ndarray)
    assert_allclose(raw, R.values)
    assert_allclose(expected_counts(templates["T"], g).values, R.values)


# --------------------------------------------------------------------------------------------
# SM Asimov data
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_sm_asimov_minimum_is_zero_at_sm(templates, statistic):
    ds = scan(templates, G, statistic=statistic)
    stat = "chi2" if statistic == "eq26" else "twice_nll"
    delta = ds[f"delta_{stat}"]
    assert ds.attrs["statistic_variable"] == f"delta_{stat}"
    assert abs(ds.attrs["statistic_sm"]) < 1e-12
    assert ds.attrs["statistic_min"] == ds.attrs["statistic_sm"]
    assert ds.attrs["best_fit_is_sm"] == 1 and ds.attrs["best_fit_g_X"] == 0.0
    assert np.all(delta >= 0)
    assert_allclose(delta, ds[stat] - ds.attrs["statistic_sm"], rtol=0, atol=1e-15)
    assert ds["converged"].dtype == np.int8 and ds["converged"].all()
    # the smallest couplings are indistinguishable from the SM; the largest are excluded
    assert float(delta.isel(g_X=0).max()) < 1e-3
    assert float(delta.isel(g_X=-1).min()) > ds.attrs["threshold"]


def test_attrs_and_metadata(templates):
    ds = scan(templates, G, cl=0.95, ndof=1)
    a = ds.attrs
    assert a["threshold"] == pytest.approx(delta_chi2_threshold(0.95, 1), rel=1e-15)
    assert (a["cl"], a["ndof"], a["scan_mode"], a["sidedness"]) == (0.95, 1, "raster_1d",
                                                                     "two_sided")
    assert (a["statistic"], a["profiler"], a["sigma_sys"], a["sigma_bg"]) == ("eq26", "analytic",
                                                                              0.1, 0.1)
    assert json.loads(a["dropped_bins"]) == [] and "min_expected" in a["drop_rule"]
    for k, v in templates.attrs.items():  # carried over
        assert a[k] == v
    assert scan(templates, G).attrs["scan_mode"] == "joint_2d"
    for name, var in ds.variables.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    for v in a.values():
        assert isinstance(v, (str, int, float)), v
    assert ds["delta_chi2"].dims == ("m_X", "g_X")
    assert ds["E_center"].attrs["units"] == "keVee"


# --------------------------------------------------------------------------------------------
# injected signal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_injected_signal_is_recovered(templates, statistic):
    i0, j0 = 4, 25
    m0, g0 = float(templates["m_X"][i0]), float(G[j0])
    data = expected_counts(templates, [g0]).isel(m_X=i0, g_X=0)
    ds = scan(templates, G, data=data, statistic=statistic)
    delta = ds[ds.attrs["statistic_variable"]].values
    assert delta[i0, j0] < 1e-9
    assert np.unravel_index(np.argmin(delta), delta.shape) == (i0, j0)
    assert ds.attrs["best_fit_is_sm"] == 0
    assert (ds.attrs["best_fit_m_X_MeV"], ds.attrs["best_fit_g_X"]) == (m0, g0)
    assert abs(ds["a_hat"].values[i0, j0]) < 1e-7
    assert ds.attrs["statistic_sm"] > ds.attrs["threshold"]  # the signal is significant
    assert ds.attrs["data_source"] == "user"
    assert_allclose(ds["observed_counts"], data.values)


def test_per_mass_reference(templates):
    i0, j0 = 4, 25
    data = expected_counts(templates, [G[j0]]).isel(m_X=i0, g_X=0).values
    glob = scan(templates, G, data=data, ndof=1)
    per = scan(templates, G, data=data, ndof=1, reference="per_mass")
    assert per.attrs["delta_reference"] == "per_mass"
    row_min = per["chi2"].min("g_X").values
    want = np.maximum(0.0, row_min - per.attrs["statistic_sm"])  # reference: row and g_X = 0
    assert_allclose(per["delta_chi2"].min("g_X"), want, atol=1e-12)
    assert np.sum(want == 0) >= 2  # rows near the injected mass find their own zero
    assert np.all(per["delta_chi2"] <= glob["delta_chi2"] + 1e-12)
    asimov = scan(templates, G, reference="per_mass")
    assert_allclose(asimov["delta_chi2"], scan(templates, G)["delta_chi2"], atol=1e-12)


# --------------------------------------------------------------------------------------------
# profilers agree inside the scan
# --------------------------------------------------------------------------------------------
def test_scan_analytic_vs_minuit(make_templates):
    t = make_templates(m_X=[0.3, 3.0, 30.0], n_bins=20)
    g = np.logspace(-2, 1, 6)
    data = np.random.default_rng(3).poisson(t["R_SM"].values).astype(float)
    for statistic, rtol in (("eq26", 1e-8), ("poisson", 1e-8)):
        an = scan(t, g, data=data, statistic=statistic)
        mn = scan(t, g, data=data, statistic=statistic, profiler="minuit")
        name = an.attrs["statistic_variable"].removeprefix("delta_")
        assert mn.attrs["profile_method"] == "minuit" and mn["converged"].all()
        assert_allclose(an[name], mn[name], rtol=rtol, atol=1e-8)


# --------------------------------------------------------------------------------------------
# bins, chunking, progress
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_empty_bins_are_dropped_and_recorded(make_templates, statistic):
    full = make_templates(n_bins=20, empty_bins=3)
    ds = scan(full, G, statistic=statistic)
    assert json.loads(ds.attrs["dropped_bins"]) == [20, 21, 22]
    assert ds["bin_used"].values.tolist() == [1] * 20 + [0] * 3
    ref = scan(make_templates(n_bins=20), G, statistic=statistic)
    var = ds.attrs["statistic_variable"]
    assert_allclose(ds[var], ref[var], rtol=1e-12, atol=1e-14)
    with pytest.raises(EmptyWindow, match="min_expected"):
        scan(full, G, min_expected=1e9)


def test_min_expected_drops_low_count_bins(templates):
    r_sm = templates["R_SM"].values
    cut = float(np.quantile(r_sm, 0.25))
    ds = scan(templates, G, min_expected=cut)
    assert json.loads(ds.attrs["dropped_bins"]) == np.flatnonzero(r_sm <= cut).tolist()
    assert ds.attrs["dropped_sm_counts"] == pytest.approx(r_sm[r_sm <= cut].sum())


@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_chunking_gives_identical_results(templates, statistic, monkeypatch):
    whole = scan(templates, G, statistic=statistic)
    monkeypatch.setattr(scan_module, "_MAX_CHUNK_BYTES", 1)  # one mass per chunk
    chunked = scan(templates, G, statistic=statistic)
    xr.testing.assert_allclose(whole.drop_attrs(), chunked.drop_attrs(), rtol=1e-13, atol=0)


def test_progress_line_only_when_asked(templates, capsys):
    scan(templates, G)
    assert capsys.readouterr().err == ""
    scan(templates, G, progress=True)
    err = capsys.readouterr().err
    assert "12/12 m_X" in err and err.endswith("\n") and "100.0%" in err


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _bad_templates(templates, what):
    t = templates.copy(deep=True)
    if what == "nan":
        t["T"][2, 3, 4] = np.nan
    elif what == "sm_mismatch":
        t["T"][0, 2, 1] *= 1.01
    elif what == "negative":
        t["T"][1] *= 3.0  # interference too strong: T1^2 > 4 T0 T2
    elif what == "decreasing_mass":
        t = t.isel(m_X=slice(None, None, -1))
    return t


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"g_X": np.r_[0.0, G]}, UnphysicalInput, "g_X.*> 0"),
        ({"g_X": G[::-1]}, InvalidConfig, "g_X.*increasing"),
        ({"g_X": np.r_[G, np.nan]}, InvalidConfig, "g_X"),
        ({"cl": 90}, InvalidConfig, "cl"),
        ({"ndof": 3}, InvalidConfig, "ndof"),
        ({"statistic": "gauss"}, InvalidConfig, "statistic"),
        ({"profiler": "scipy"}, InvalidConfig, "profiler"),
        ({"reference": "local"}, InvalidConfig, "reference"),
        ({"sigma_sys": -0.1}, UnphysicalInput, "sigma_sys"),
        ({"min_expected": -1.0}, UnphysicalInput, "min_expected"),
        ({"data": np.ones(29)}, InvalidConfig, "data.*30"),
        ({"data": -np.ones(30)}, UnphysicalInput, "data.*negative"),
        ({"data": np.ones((2, 30))}, InvalidConfig, "data"),
    ],
)
def test_argument_validation(templates, kw, exc, match):
    kw = {"g_X": G, **kw}
    with pytest.raises(exc, match=match):
        scan(templates, **kw)


@pytest.mark.parametrize(
    "what, exc, match",
    [
        ("nan", NumericalError, "NaN"),
        ("sm_mismatch", InvalidConfig, "R_SM"),
        ("negative", UnphysicalInput, "negative"),
        ("decreasing_mass", InvalidConfig, "m_X"),
    ],
)
def test_template_validation(templates, what, exc, match):
    with pytest.raises(exc, match=match):
        scan(_bad_templates(templates, what), G)


def test_templates_must_be_a_dataset(templates):
    with pytest.raises(InvalidConfig, match="templates"):
        scan(templates["T"], G)


# --------------------------------------------------------------------------------------------
# I/O and speed
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_netcdf_round_trip(templates, tmp_path, statistic):
    ds = scan(templates, G, statistic=statistic)
    path = write_netcdf(ds, tmp_path / "scan.nc")
    back = read_netcdf(path)
    xr.testing.assert_identical(back, ds)


def test_closed_form_scan_matches_profile_eq26(templates):
    ds = scan(templates, G[::5])
    R = expected_counts(templates, G[::5]).values
    ref = profile_eq26(R, templates["R_SM"].values)
    assert_allclose(ds["chi2"], ref.minimum, rtol=1e-12, atol=1e-15)
    assert_allclose(ds["a_hat"], ref["a"], rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# `converged` is a real check for every profiler; failures are flagged, not raised or silent NaN
# --------------------------------------------------------------------------------------------
def test_eq26_closed_form_is_exact_and_flagged_converged(templates):
    """Closed form: the exact minimum over a (checked against a 1-d numerical minimisation)."""
    from scipy.optimize import minimize_scalar

    g = G[::8]
    ds = scan(templates, g)
    assert ds["converged"].values.all() and ds.attrs["n_not_converged"] == 0
    assert ds.attrs["calibration"] == "asymptotic" and "closed form" in ds.attrs["converged_rule"]
    R = expected_counts(templates, g).values
    r_sm = templates["R_SM"].values
    var = 1.1 * r_sm
    for i, j in [(0, 0), (5, 2), (11, 4)]:
        f = lambda a: float(np.sum((r_sm - (1 + a) * R[i, j]) ** 2 / var) + (a / 0.1) ** 2)  # noqa
        best = minimize_scalar(f, bounds=(-0.9, 2.0), method="bounded",
                               options={"xatol": 1e-12})
        assert float(ds["chi2"][i, j]) <= best.fun + 1e-9 * max(1.0, best.fun)
        assert_allclose(float(ds["a_hat"][i, j]), best.x, atol=1e-6)


@pytest.mark.parametrize("statistic", ["eq26"])
def test_failed_points_are_flagged_not_raised(templates, statistic):
    """Overflow at one mass (T2 ~ 1e300): that mass is flagged, the rest of the grid is intact.

    (The Poisson Newton handles the same overflow: the bracket keeps b finite; its
    non-convergence flag is tested below.)"""
    bad = templates.copy(deep=True)
    bad["T"].loc[dict(power=2)] = bad["T"].sel(power=2).where(
        bad["m_X"] != bad["m_X"][3], 1e300)
    with np.errstate(all="ignore"):
        ds = scan(bad, G, statistic=statistic)
        ref = scan(templates, G, statistic=statistic)
    var = ds.attrs["statistic_variable"]
    conv = ds["converged"].values.astype(bool)
    assert not conv[3].all() and conv[np.arange(conv.shape[0]) != 3].all()
    assert ds.attrs["n_not_converged"] == int((~conv).sum())
    failed = np.isnan(ds[var].values)
    assert np.all(~conv[failed]) and ds.attrs["n_failed"] == int(failed.sum())
    keep = np.arange(conv.shape[0]) != 3
    assert_allclose(ds[var].values[keep], ref[var].values[keep], rtol=1e-9, atol=1e-9)


def test_poisson_newton_nonconvergence_is_flagged(templates, monkeypatch):
    """A Newton that stops early (max_iter=1) gives finite values flagged converged = 0."""
    orig = scan_module._newton_poisson

    def short(R, D, B, sigma_sys, *, rtol, max_iter):
        return orig(R, D, B, sigma_sys, rtol=1e-300, max_iter=1)

    monkeypatch.setattr(scan_module, "_newton_poisson", short)
    ds = scan(templates, G, statistic="poisson", data=templates["R_SM"].values * 1.3)
    conv = ds["converged"].values.astype(bool)
    assert (~conv).sum() > 0 and ds.attrs["n_not_converged"] == int((~conv).sum())
    assert np.isfinite(ds["twice_nll"].values).all()


def test_datafit_profiler_flags_nonconvergence():
    """datafit (nuinfer.likelihood.profile, Newton decrement): max_iter=1 -> flagged, finite."""
    from nuinfer.tasks import datafit as df

    rng = np.random.default_rng(3)
    n = 12
    base = np.linspace(40.0, 4.0, n)
    S = base[None, :] * np.linspace(0.6, 1.4, 6)[:, None]
    data = df.BinnedData(np.round(rng.poisson(base * 1.5 + 2.0)).astype(float), np.full(n, 2.0))
    nu = df.Nuisances(flux=0.1, efficiency=0.05, background=0.25)
    good = df.profile_nuisances(S, data, nu, statistic="poisson")
    assert good.converged.all()
    short = df.profile_nuisances(S, data, nu, statistic="poisson", max_iter=1)
    assert (~short.converged).any()
    assert np.isfinite(short.minimum).all()
    assert np.all(short.minimum >= good.minimum - 1e-9 * np.abs(good.minimum))


def test_discovery_fit_flags_nonconvergence():
    """discovery.fit (Newton decrement): max_iter=1 -> flagged, finite, never below the optimum."""
    from nuinfer.tasks.discovery import BackgroundModel, fit

    rng = np.random.default_rng(0)
    E = np.geomspace(1, 100, 25)
    B0 = 200 * np.stack([np.exp(-E / 5), np.exp(-E / 30), 1.0 / E]) * rng.uniform(0.5, 1.5, (3, 25))
    bg = BackgroundModel(B0, np.array([0.02, 0.1, 0.3]))
    S = 30 * np.exp(-E / 12)
    n = rng.poisson(B0.sum(0) * 1.2 + 2 * S).astype(float)
    good = fit(n, bg, signal=S)
    assert np.all(good.converged)
    short = fit(n, bg, signal=S, max_iter=1)
    assert not np.all(short.converged)
    assert np.all(np.isfinite(short.minimum)) and np.all(short.minimum >= good.minimum - 1e-9)

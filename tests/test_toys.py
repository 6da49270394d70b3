"""Execution engine and toy-calibrated critical values (nuinfer.engine, nuinfer.tasks.calibration).

Statistical tolerances: with N toys a fraction f has binomial standard deviation
sqrt(p (1 - p) / N); checks allow 3-4 of them.  Seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nuinfer.engine import chunk_slices, run_chunks
from nuinfer.exceptions import ConfigError, InvalidConfig
from nuinfer.tasks.calibration import (
    _Problem,
    _profile_gauss_hyp,
    _quantile_with_error,
    calibrated_limits,
    coverage,
    critical_values,
    toy_statistic,
)

# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(request):
    """Synthetic scalar-like templates: 4 masses, 12 bins (conftest.build_templates)."""
    from conftest import build_templates

    tp = build_templates(np.array([0.3, 1.0, 3.0, 10.0]), n_bins=12, interference="none")
    return tp, np.geomspace(0.02, 5.0, 30)


@pytest.fixture(scope="module")
def eves():
    """Real EvES scalar templates, 5 masses, 20 coarse bins (low-count tail included)."""
    from nuinfer.physics.detector import Binning
    from nuinfer.forward import ForwardModel

    fm = ForwardModel("eves", binning=Binning(0.1, 1e4, 20))
    return fm.templates("S", np.geomspace(0.01, 1.0, 5))


@pytest.fixture(scope="module")
def client():
    """One in-process dask cluster (threads) for the module, closed cleanly."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0", scheduler_kwargs={"dashboard": False}) as cl, \
            Client(cl) as c:
        yield c


G_HIGH = 0.1


def _draws(chunk, rng):
    return rng.random(3 * len(chunk))


# --------------------------------------------------------------------------------------------
# engine
# --------------------------------------------------------------------------------------------
def test_chunks_fixed_by_chunk_size():
    assert [list(c) for c in chunk_slices(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_chunk_streams_independent_and_reproducible():
    a = run_chunks(_draws, 40, seed=11, chunk_size=4)
    b = run_chunks(_draws, 40, seed=11, chunk_size=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # streams of different chunks are distinct and uncorrelated (SeedSequence children)
    x = np.concatenate(a).reshape(len(a), -1)
    assert len({tuple(r) for r in x}) == len(a)
    big = run_chunks(lambda c, rng: rng.standard_normal(2000), 2, seed=5, chunk_size=1)
    r = np.corrcoef(big[0], big[1])[0, 1]
    assert abs(r) < 4 / np.sqrt(2000)
    # a different seed gives different numbers
    c = run_chunks(_draws, 40, seed=12, chunk_size=4)
    assert not np.array_equal(a[0], c[0])


def test_same_seed_any_workers(client):
    a = run_chunks(_draws, 10, seed=3, chunk_size=3)
    b = run_chunks(_draws, 10, seed=3, chunk_size=3, scheduler=client)
    c = run_chunks(_draws, 10, seed=3, chunk_size=3, scheduler="local-threads", n_workers=1)
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(a, b, c))


def test_progress_callback_and_lines(capsys):
    seen = []
    run_chunks(_draws, 5, seed=1, chunk_size=2, progress=lambda k, n, s: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    run_chunks(_draws, 5, seed=1, chunk_size=2, progress=True)
    err = capsys.readouterr().err
    assert "done 3/3 chunks, elapsed" in err and "\r" not in err


@pytest.mark.parametrize("kw, key", [
    (dict(seed=-1), "seed"), (dict(seed=2**63), "seed"), (dict(seed=True), "seed"),
    (dict(seed=1.0), "seed"), (dict(chunk_size=0), "chunk_size"),
    (dict(scheduler="spark"), "scheduler"), (dict(n_workers=2), "n_workers"),
    (dict(scheduler="local", n_workers=0), "n_workers"),
])
def test_engine_rejects_bad_input(kw, key):
    args = dict(seed=1, chunk_size=2)
    args.update(kw)
    calls = []
    with pytest.raises(ConfigError, match=key):  # InvalidConfig or UnphysicalInput: exit 2 either way
        run_chunks(lambda c, rng: calls.append(c), 4, **args)
    assert calls == []  # validated before any work


def test_missing_dask_is_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert run_chunks(_draws, 2, seed=1, chunk_size=1)  # in-process needs no dask
    with pytest.raises(InvalidConfig, match=r'pip install "nuinfer\[dask\]"'):
        run_chunks(_draws, 2, seed=1, chunk_size=1, scheduler="local")


def test_engine_rejects_zero_items():
    with pytest.raises(InvalidConfig, match="n_items"):
        run_chunks(_draws, 0, seed=1, chunk_size=1)


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
def test_eq26_grid_minimum_matches_brute_force(small):
    tp, g = small
    for mode in ("raster", "joint"):
        prob = _Problem(tp, g, "eq26", 0.1, 0.1, 1e-9)
        D = prob.draw(prob.counts(1, 0.4), 40, np.random.default_rng(0), "sampled")
        t, _ = prob.t_values(1, 0.4, D, mode)
        masses = [1] if mode == "raster" else list(range(4))
        R = np.concatenate([prob.grid_rows(masses), prob.r_sm[None], prob.counts(1, 0.4)[None]])
        s = prob.stat(R[None], D[:, None, :])[0]
        np.testing.assert_allclose(t, s[:, -1] - s.min(axis=1), rtol=1e-9, atol=1e-9)


def test_gauss_hyp_profile_is_the_minimum(small):
    from scipy.optimize import minimize_scalar

    tp, g = small
    prob = _Problem(tp, g, "gauss_hyp", 0.1, 0.1, 1e-9)
    R = prob.counts(2, 0.5)
    D = prob.draw(R, 4, np.random.default_rng(1), "sampled")
    val, b, conv = _profile_gauss_hyp(R, D, prob.B, 0.1)
    assert conv.all()
    for k in range(4):
        f = lambda x: np.sum((D[k] - x * R) ** 2 / (x * R + prob.B)) + ((x - 1) / 0.1) ** 2  # noqa
        ref = minimize_scalar(f, bounds=(0.05, 5), method="bounded", options={"xatol": 1e-12})
        assert val[k] == pytest.approx(ref.fun, rel=1e-9, abs=1e-9)


def test_quantile_error_interval():
    t = np.arange(1, 1001, dtype=float)
    tc, lo, hi = _quantile_with_error(t, 0.9)
    assert tc == 900.0 and lo < tc < hi
    # the 1-sigma rank interval is about +- sqrt(N p (1-p)) = 9.5 ranks
    assert 8 <= tc - lo <= 11 and 8 <= hi - tc <= 11


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------
def test_critical_values_identical_for_any_workers(small, client):
    pytest.importorskip("distributed")
    tp, g = small
    kw = dict(g_test=[0.3, 1.0], masses=[1.0, 3.0], statistic="eq26", mode="joint", n_toys=200,
              seed=99, chunk_size=1)
    a = critical_values(tp, g, **kw)
    b = critical_values(tp, g, **kw, scheduler="local-threads", n_workers=1)
    c = critical_values(tp, g, **kw, scheduler=client)
    for v in ("t_crit", "t_crit_err", "fraction_above_asymptotic"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
        np.testing.assert_array_equal(a[v].values, c[v].values)
    assert a.attrs["calibration"] == "toys" and a.attrs["seed"] == 99
    assert a.attrs["nuisances"] == "sampled" and a.attrs["ndof"] == 2
    assert float(a.t_asymptotic) == pytest.approx(stats.chi2.ppf(0.9, 2))


def test_poisson_critical_value_approaches_asymptotic(small):
    """High counts (10^3-10^4 events per bin), signal well inside the sensitive region: Wilks
    holds for the Poisson statistic and the toy 90% quantile is chi2.ppf(0.9, 1) = 2.706 within
    3 MC errors plus 0.15 (residual non-asymptotic and grid effects)."""
    tp, g = small
    hi = tp.copy()
    hi["T"] = tp["T"] * 1e3
    hi["R_SM"] = tp["R_SM"] * 1e3
    g = np.geomspace(0.05, 0.2, 300)  # fine: the grid minimum is the continuous one
    ds = critical_values(hi, g, masses=[1.0], g_test=[G_HIGH], statistic="poisson", n_toys=400,
                         seed=7, mode="raster", nuisances="fixed", min_expected=1e3)
    tc, err = float(ds.t_crit[0, 0]), float(ds.t_crit_err[0, 0])
    assert ds.attrs["n_bins_used"] >= 5
    assert abs(tc - stats.chi2.ppf(0.9, 1)) < 3 * err + 0.15, (tc, err)
    assert int(ds.n_not_converged.sum()) == 0


def test_eq26_raster_under_coverage_detected(eves):
    """EvES scalar, 20 coarse bins (7 with R_SM < 2 events), a clearly detectable signal at
    m = 0.1 MeV (Asimov Delta chi2 about 16): Eq. (26) evaluates the variance at the SM, so the
    true point is excluded more often than 10%.  Measured 0.155 +- 0.007 (3000 toys, two seeds);
    here 2000 toys and the check f > 0.10 + 3 sigma (sigma = sqrt(0.09/2000) = 0.0067).  The
    toy-calibrated threshold is above 2.706 and restores 10% within 4 combined sigma."""
    g = np.geomspace(1e-7, 1e-4, 240)
    prob = _Problem(eves, g, "eq26", 0.1, 0.1, 1e-9)
    s = prob.stat(prob.grid_rows([2]), prob.r_sm)[0]  # Asimov Delta chi2 along g at 0.1 MeV
    j0 = int(np.flatnonzero(s >= stats.chi2.ppf(0.9, 1))[0])
    g_true = float(g[j0 + 8])
    assert 10 < s[j0 + 8] < 25
    n = 2000
    ds = coverage(eves, g, [(0.1, g_true)], statistic="eq26", mode="raster", n_toys=n,
                  seed=2024, calibrate=True)
    f = float(ds.fraction_excluded_asymptotic[0])
    assert f > 0.10 + 3 * np.sqrt(0.1 * 0.9 / n), f
    assert float(ds.t_crit[0]) > stats.chi2.ppf(0.9, 1) + 2 * float(ds.t_crit_err[0])
    fc = float(ds.fraction_excluded_calibrated[0])
    assert abs(fc - 0.10) < 4 * np.sqrt(0.09 * 2 / n), fc


def test_toy_statistic_reproducible_and_nonnegative(small):
    tp, g = small
    a = toy_statistic(tp, 2, 0.5, g_grid=g, n_toys=50, seed=4, statistic="gauss_hyp")
    b = toy_statistic(tp, 2, 0.5, g_grid=g, n_toys=50, seed=4, statistic="gauss_hyp")
    assert np.array_equal(a, b) and a.shape == (50,) and np.all(a >= 0)


def test_calibrated_limits_bracket_and_attrs(small):
    tp, g = small
    ds = calibrated_limits(tp, g, [1.0, 3.0], statistic="eq26", mode="raster", n_toys=200,
                           seed=8, n_bisect=3)
    assert (ds.status.values == 0).all()
    assert np.all(ds.g_allowed <= ds.g90_calibrated) and np.all(ds.g90_calibrated <= ds.g_excluded)
    # the calibrated boundary is within a factor 1.5 of the asymptotic one in this Gaussian regime
    r = (ds.g90_calibrated / ds.g90_asymptotic).values
    assert np.all((r > 1 / 1.5) & (r < 1.5)), r
    for k in ("calibration", "n_toys", "seed", "nuisances", "statistic", "cl", "mode"):
        assert k in ds.attrs
    assert ds.attrs["calibration"] == "toys" and ds.attrs["mode"] == "raster"


@pytest.mark.parametrize("kw, key", [
    (dict(n_toys=0), "n_toys"), (dict(seed=2**63), "seed"), (dict(seed=-3), "seed"),
    (dict(scheduler="yarn://x"), "scheduler"), (dict(statistic="gauss"), "statistic"),
    (dict(mode="both"), "mode"), (dict(nuisances="profiled"), "nuisances"),
    (dict(masses=[0.5]), "masses"), (dict(cl=1.0), "cl"),
])
def test_calibration_rejects_bad_input(small, kw, key):
    tp, g = small
    args = dict(n_toys=10, seed=1, masses=[1.0], g_test=[0.5])
    args.update(kw)
    with pytest.raises(ConfigError, match=key):
        critical_values(tp, g, **args)


# --------------------------------------------------------------------------------------------
# engine.map_tasks (compare sweeps, floor maps)
# --------------------------------------------------------------------------------------------
def test_map_tasks_in_order_inprocess_and_dask(client):
    from nuinfer.engine import map_tasks

    items = [3.0, -1.0, 2.5, -7.0]
    assert map_tasks(abs, items) == [3.0, 1.0, 2.5, 7.0]
    assert map_tasks(abs, items, scheduler=client) == [3.0, 1.0, 2.5, 7.0]
    with pytest.raises(InvalidConfig, match="items"):
        map_tasks(abs, [])


def test_check_scheduler_names_the_key():
    from nuinfer.engine import check_scheduler

    assert check_scheduler(None) is None and check_scheduler("inprocess") is None
    assert check_scheduler("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    with pytest.raises(InvalidConfig, match=r"^statistics\.scheduler: unknown scheduler"):
        check_scheduler("dask", key="statistics.scheduler")


def test_best_fit_point_is_never_excluded():
    from nuinfer.tasks.calibration import _excluded

    t = np.array([0.0, 0.0, 0.0, 0.5, 3.0])
    assert _excluded(t, 0.0).tolist() == [False, False, False, True, True]
    assert _excluded(t, 1.0).tolist() == [False, False, False, False, True]


# --------------------------------------------------------------------------------------------
# the calibrated-contour task (one NetCDF, calibration attrs)
# --------------------------------------------------------------------------------------------
def test_run_calibrated_contour_file(tmp_path, client):
    import json

    import xarray as xr

    from nuinfer.tasks.calibrated import run_calibrated_contour

    ov = {"scan.m_X_MeV.n": 6, "scan.m_X_MeV.lo": 0.01, "scan.m_X_MeV.hi": 10.0,
          "scan.g_X.n": 40, "binning.n": 20}
    out = tmp_path / "cal.nc"
    s = run_calibrated_contour("models/fig2_eves.toml", out, model="S", n_toys=100, seed=3,
                               overrides=ov, coverage=True, coverage_masses=2, quiet=True)
    json.dumps(s)  # JSON-able
    assert s["calibration"] == "toys" and s["n_toys"] == 100 and s["mode"] == "raster"
    with xr.open_dataset(out) as ds:
        ds.load()
    for k, v in dict(calibration="toys", n_toys=100, seed=3, chunk_size=1, nuisances="sampled",
                     statistic="eq26", mode="raster", asymptotic_scan_mode="raster_1d").items():
        assert ds.attrs[k] == v, k
    assert ds["delta_chi2"].attrs["calibration"] == "asymptotic"
    for v in ("g90_calibrated", "g90_asymptotic", "t_crit", "t_crit_err", "interval_g_lo",
              "interval_g_hi", "interval_g_lo_calibrated", "fraction_excluded_asymptotic",
              "fraction_excluded_calibrated_err", "calibration_status"):
        assert v in ds, v
    ok = ds["calibration_status"].values == 0
    assert ok.sum() >= 4
    # asymptotic g90 of the toy rule = the refined scan's lowest excluded coupling (Asimov SM)
    np.testing.assert_allclose(ds["g90_asymptotic"].values[ok],
                               ds["g90_asymptotic_scan"].values[ok], rtol=1e-4)
    assert np.all(ds["t_crit_err"].values[ok] > 0)
    assert ds["fraction_excluded_asymptotic"].shape == (2, 3)
    # the calibrated interval replaces exactly one lower end per calibrated mass
    assert int(ds["interval_calibrated"].sum()) == int(ok.sum())
    # same file from a dask cluster (scheduler-independent random numbers)
    out2 = tmp_path / "cal2.nc"
    run_calibrated_contour("models/fig2_eves.toml", out2, model="S", n_toys=100, seed=3,
                           overrides=ov, scheduler=client, quiet=True)
    with xr.open_dataset(out2) as d2:
        np.testing.assert_array_equal(d2["g90_calibrated"].values, ds["g90_calibrated"].values)


@pytest.mark.parametrize("kw, key", [({"mode": "2d"}, "mode"), ({"n_toys": 0}, "n_toys"),
                                     ({"model": "Q"}, "model"), ({"scheduler": "dask"},
                                                                "scheduler"),
                                     ({"statistic": "gauss_hyp"}, "statistic")])
def test_run_calibrated_contour_rejects_bad_input(tmp_path, kw, key):
    from nuinfer.tasks.calibrated import run_calibrated_contour

    with pytest.raises(InvalidConfig, match=key):
        run_calibrated_contour("models/fig2_eves.toml", tmp_path / "x.nc", quiet=True, **kw)
    assert not (tmp_path / "x.nc").exists()


def test_run_calibrated_contour_joint_mode(tmp_path):
    import xarray as xr

    from nuinfer.tasks.calibrated import run_calibrated_contour

    ov = {"scan.m_X_MeV.n": 5, "scan.m_X_MeV.lo": 0.01, "scan.m_X_MeV.hi": 10.0,
          "scan.g_X.n": 30, "binning.n": 20}
    s = run_calibrated_contour("models/fig2_eves.toml", tmp_path / "j.nc", model="S", n_toys=50,
                               mode="joint", nuisances="fixed", seed=5, overrides=ov, quiet=True)
    assert s["mode"] == "joint" and s["nuisances"] == "fixed"
    with xr.open_dataset(tmp_path / "j.nc") as ds:
        assert ds.attrs["ndof"] == 2 and ds.attrs["asymptotic_scan_mode"] == "joint_2d"
        assert ds.attrs["calibration"] == "toys" and ds.attrs["nuisances"] == "fixed"
        assert np.isfinite(ds["g90_calibrated"].values).sum() >= 3

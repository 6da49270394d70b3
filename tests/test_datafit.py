"""Data-driven fits: costs, vectorised profiling against iminuit, scans, thresholds, posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.likelihood.model import NodeSpline
from nuinfer.tasks import contour
from nuinfer.tasks import datafit as df
from nuinfer.tasks.posterior import Parameter, Posterior, run_sampler


def _toy(K_sigma=0.2, n=12, P=20, seed=3):
    """Signals at quenching nodes: the QF scale shifts the spectrum (a shape change)."""
    rng = np.random.default_rng(seed)
    nodes = df.qf_nodes(K_sigma)
    base = np.linspace(40.0, 4.0, n)
    S = np.stack([base * np.exp(-0.08 * np.arange(n) * a) * (1 + a) for a in nodes])
    scale = np.linspace(0.6, 1.4, P)
    return nodes, S[:, None, :] * scale[None, :, None], base, rng


@pytest.mark.parametrize("statistic", ["gauss", "poisson"])
def test_lm_profile_agrees_with_minuit(statistic):
    _nodes, S, base, rng = _toy()
    n = base.size
    if statistic == "gauss":
        data = df.BinnedData(base * 1.1 + rng.normal(0, 3, n), np.full(n, 2.0), np.full(n, 4.0))
    else:
        data = df.BinnedData(np.round(rng.poisson(base * 1.05 + 2.0)).astype(float), np.full(n, 2.0))
    nu = df.Nuisances(flux=0.1, efficiency=0.05, quenching=0.2, background=0.25)
    lm = df.profile_nuisances(S, data, nu, statistic=statistic)
    ref = df.profile_minuit(S[:, :8], data, nu, statistic=statistic)
    assert lm.converged.all() and ref.converged.all()
    assert lm.minimum[:8] == pytest.approx(ref.minimum, abs=1e-6, rel=1e-7)
    assert lm.theta[:8] == pytest.approx(ref.theta, abs=2e-4)
    assert lm.statistic == df.STATISTICS[statistic]


def test_fixed_and_free_nuisances():
    _nodes, S, base, _rng = _toy(K_sigma=0.0)
    data = df.BinnedData(base * 1.3, None, np.sqrt(base))
    fixed = df.profile_nuisances(S[:, :3], data, df.Nuisances(flux=0.0))
    # nothing to fit: chi2 at the nominal prediction
    expect = np.sum(((base * 1.3 - S[0, :3]) / np.sqrt(base)) ** 2, axis=-1)
    assert fixed.minimum == pytest.approx(expect, rel=1e-12)
    free = df.profile_nuisances(S[:, :3], data, df.Nuisances(flux=math.inf))
    # a free normalisation absorbs any overall scale: chi2 -> 0 and 1 + a = 1.3 / scale
    assert free.minimum == pytest.approx(0.0, abs=1e-8)
    scale = np.linspace(0.6, 1.4, 20)[:3]
    assert 1 + free.theta[:, 0] == pytest.approx(1.3 / scale, rel=1e-6)


def test_eta_spline_exact_at_nodes_and_clamped():
    nodes, S, _, _ = _toy()
    sp = NodeSpline(nodes, S)
    for k, a in enumerate(nodes):
        assert sp(np.full(S.shape[1], a)) == pytest.approx(S[k], rel=1e-12)
    assert sp(np.full(S.shape[1], 10.0)) == pytest.approx(S[-1], rel=1e-12)
    with pytest.raises(InvalidConfig):
        NodeSpline(nodes[:3], S[:3])


def test_validation_errors():
    with pytest.raises(UnphysicalInput):
        df.Nuisances(flux=-0.1)
    with pytest.raises(UnphysicalInput):
        df.Nuisances(quenching=math.inf)
    with pytest.raises(InvalidConfig):
        df.BinnedData([1.0, np.nan])
    with pytest.raises(InvalidConfig):
        df.BinnedData([1.0, 2.0], background=[-1.0, 0.0])
    with pytest.raises(InvalidConfig):
        df.BinnedData([1.0, 2.0], sigma=[0.0, 1.0])
    d = df.BinnedData([-3.0, 5.0])
    with pytest.raises(UnphysicalInput, match="poisson"):
        df.profile_nuisances(np.ones((1, 2)), d, df.Nuisances(), statistic="poisson")
    with pytest.raises(InvalidConfig, match="statistic"):
        df.profile_nuisances(np.ones((1, 2)), d, df.Nuisances(), statistic="chi2")


def test_thresholds_computed_from_chi2_ppf():
    assert df.sigma_threshold(1, 1) == pytest.approx(1.0)
    assert df.sigma_threshold(2, 1) == pytest.approx(4.0)
    assert df.sigma_threshold(3, 1) == pytest.approx(9.0)
    assert df.sigma_threshold(1, 2) == pytest.approx(2.2957, abs=1e-4)
    assert df.sigma_threshold(3, 2) == pytest.approx(11.829, abs=1e-3)


def _poly_sin2w_templates():
    """Exact quadratic-in-s signal from a real forward model (reactor on Ge, 3 QF nodes unused)."""
    from dataclasses import replace

    from nuinfer.physics.detector import Binning, Detector, Quenching
    from nuinfer.forward import ForwardModel
    from nuinfer.physics import terrestrial as ter
    src = ter.reactor_sources(2.96, 10.39)
    fm = ForwardModel("cevns", target="Ge", sources=tuple(src), user_tables=src,
                      binning=Binning(0.2, 0.8, 12, "linear"),
                      detector=Detector(Quenching("lindhard", k=0.157, Z=32)), exposure_tonne_year=0.01)
    s = np.array([0.0, 0.25, 0.5])
    R = np.stack([replace(fm, sin2w=float(v)).sm_spectrum()["total"].values for v in s])
    U = np.linalg.solve(np.vander(s, 3, increasing=True), R)
    return fm, U


def test_sin2w_fit_recovers_injected_value_on_asimov():
    from dataclasses import replace
    fm, U = _poly_sin2w_templates()
    # the polynomial is exact: a third sin^2 theta_W reproduces the forward model
    s_test = 0.31
    direct = replace(fm, sin2w=s_test).sm_spectrum()["total"].values
    assert U[0] + s_test * U[1] + s_test**2 * U[2] == pytest.approx(direct, rel=1e-9)
    for injected, stat in ((0.2387, "poisson"), (0.27, "gauss")):
        sig = U[0] + injected * U[1] + injected**2 * U[2]
        bg = np.full(sig.size, 5.0)
        data = df.BinnedData(sig + bg, bg)  # Asimov
        ds = df.scan_parameter(U, np.linspace(0.1, 0.4, 61), data, df.Nuisances(flux=0.05, background=0.05),
                               statistic=stat, reference=0.2387)
        assert ds.attrs["best_fit"] == pytest.approx(injected, abs=1e-4)
        assert ds.attrs["statistic_min"] == pytest.approx(0.0, abs=1e-8)
        assert ds.attrs["interval_1sigma_lo"] < injected < ds.attrs["interval_1sigma_hi"]
        assert ds.attrs["threshold"] == pytest.approx(stats.chi2.ppf(0.9, 1))
        assert ds.attrs["ndof"] == 1 and ds.attrs["statistic_variable"] == f"delta_{df.STATISTICS[stat]}"
        # the 1 sigma interval is where Delta = 1 on the profile
        var = ds.attrs["statistic_variable"]
        x = ds["sin2_theta_W"].values
        inside = (x > ds.attrs["interval_1sigma_lo"]) & (x < ds.attrs["interval_1sigma_hi"])
        assert np.all(ds[var].values[inside] <= 1.0 + 1e-9)
        assert np.all(ds[var].values[~inside] >= 1.0 - 1e-9)


def test_mass_coupling_scan_reads_into_contours(make_templates):
    T = make_templates(m_X=np.logspace(-1, 2, 8), n_bins=15)
    nodes = df.qf_nodes(0.1)
    # quenching morphing: a mild shape change per node
    tilt = np.linspace(-1, 1, 15)
    Tk = [T.copy(data={"T": T["T"].values * (1 + a * tilt)[None, None, :], "R_SM": T["R_SM"].values})
          for a in nodes]
    sm = Tk[3]["T"].values[0, 0]
    data = df.BinnedData(sm + 1.0, np.full(sm.size, 1.0))
    g = np.geomspace(1e-3, 1.0, 25)
    ds = df.scan_mass_coupling(Tk, g, data, df.Nuisances(flux=0.1, quenching=0.1, background=0.1),
                               statistic="poisson")
    assert ds.attrs["statistic_variable"] == "delta_twice_nll"
    assert ds.attrs["threshold"] == pytest.approx(4.605170, abs=1e-6)
    assert ds.attrs["best_fit_is_sm"] == 1
    assert int(ds["converged"].sum()) == ds["converged"].size
    res = contour(ds)
    g90 = res.g90.values
    assert np.isfinite(g90[:5]).all() and np.all(np.diff(g90[:5]) > 0)  # heavier -> weaker
    # agreement with the existing scan when the nuisances reduce to Eq. 26's single normalisation
    from nuinfer.tasks import scan
    nom = Tk[3]
    d2 = df.BinnedData(nom["R_SM"].values, np.zeros(15), np.sqrt(1.1 * nom["R_SM"].values))
    a = df.scan_mass_coupling(nom, g, d2, df.Nuisances(flux=0.1), statistic="gauss")
    b = scan(nom, g, sigma_sys=0.1, sigma_bg=0.1)
    # datafit keeps every normalisation above 1 + a = 0.01; Eq. 26's closed form does not
    ok = b["a_hat"].values > -0.98
    assert ok.mean() > 0.9
    assert a["delta_chi2"].values[ok] == pytest.approx(b["delta_chi2"].values[ok], rel=1e-6, abs=1e-8)


def test_posterior_with_sampled_nuisances():
    _fm, U = _poly_sin2w_templates()
    inj = 0.2387
    sig = U[0] + inj * U[1] + inj**2 * U[2]
    data = df.BinnedData(sig, None)
    nu = df.Nuisances(flux=0.05)
    like = df.DataFitLikelihood(df.polynomial_signal(U), 1, data, nu, statistic="poisson")
    pars = (Parameter("sin2_theta_W", "s", "1", 0.1, 0.4),) + df.nuisance_parameters(nu)
    assert [p.name for p in pars] == ["sin2_theta_W", "a_flux"]
    post = Posterior(pars, like, pointwise=like.pointwise)
    lp = post(np.array([[inj, 0.0], [inj + 0.05, 0.0], [0.5, 0.0]]))
    assert lp[0] > lp[1] and lp[2] == -np.inf
    # the likelihood without constraints + Gaussian prior = the profiled statistic's ingredients
    assert like(np.array([[inj, 0.0]]))[0] == pytest.approx(0.0, abs=1e-9)
    run = run_sampler(post, nwalkers=8, nsteps=150, seed=2)
    s = run.chain[:, 50:, 0].ravel()
    assert abs(np.median(s) - inj) < 0.05

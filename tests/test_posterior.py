"""Bayesian posterior: sampler on known targets, storage, resume, interpolation, physics preset.

Tolerances: Gaussian toy mean within 0.05 sigma and std within 5% (seeded, emcee's own
integration-test criterion); kernels against nuinfer.likelihood.costs rtol 1e-10; template
interpolation < 1e-3 relative on counts at off-grid masses; credible vs frequentist g90 at a light
mass within a factor 3.  Monte Carlo standard errors: the MCSE of a 90% quantile (and of a mean)
agrees with the spread over 300 independent repetitions within 30% (iid, AR(1) ensembles and a
conditional slice; the spread itself is known to ~4%), and with ArviZ's within 10%; the
autocorrelation time of an AR(1) ensemble within 10% of (1 + rho) / (1 - rho).  Toy Poisson data
(with empty bins and bins below the background): credible limit within a factor 3 of the
Asimov one.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import xarray as xr

from nuinfer.tasks import bayes as bayes
from nuinfer.spec import xenon as config
from nuinfer.tasks import xenon as workflows
from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput
from nuinfer.likelihood.costs import eq26_chi2, poisson_twice_nll
from nuinfer.likelihood.costs import background_counts
from nuinfer.tasks.posterior import (
    Parameter,
    Posterior,
    TemplateLikelihood,
    chains_from_tree,
    diagnostics,
    effective_sample_size,
    integrated_time,
    interpolation_error,
    mean_mcse,
    mediator_parameters,
    prior_dominance,
    quantile_mcse,
    run_from_datatree,
    run_sampler,
    stacked_samples,
    summarize,
    to_datatree,
)
from nuinfer.io import write_netcdf

#: A small EvES universal-vector analysis (30 bins) that builds its templates in a fraction of a second.
SMALL = {
    "name": "test_eves_v",
    "process": "eves",
    "models": ["V"],
    "binning": {"lo": 0.1, "hi": 1e4, "n": 30},
    "posterior": {"walkers": 8, "steps": 60, "seed": 11, "mass_grid_n": 61,
                  "log10_m_X": {"lo": -2.0, "hi": 2.0}, "log10_g_X": {"lo": -8.0, "hi": -4.0}},
}


def _cfg(**posterior):
    cfg = json.loads(json.dumps(SMALL))
    cfg["posterior"].update(posterior)
    return cfg


def _tree(path) -> xr.DataTree:
    with xr.open_datatree(path) as t:
        return t.load().copy()


def _assert_same_file(p1, p2, ignore_attrs=("created_at",)):
    t1, t2 = _tree(p1), _tree(p2)
    assert sorted(n.path for n in t1.subtree) == sorted(n.path for n in t2.subtree)
    for node in t1.subtree:
        a = node.to_dataset(inherit=False)
        b = t2[node.path].to_dataset(inherit=False)
        for k in ignore_attrs:
            a.attrs.pop(k, None)
            b.attrs.pop(k, None)
        xr.testing.assert_identical(a, b)


# ------------------------------------------------------------------------------ sampler on toys
def test_gaussian_toy_recovered_through_sampler_and_storage(tmp_path):
    """A correlated 3-D Gaussian through the Posterior hook, the sampler and the file format."""
    mu = np.array([1.0, -2.0, 0.5])
    sd = np.array([0.5, 1.0, 2.0])
    corr = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 1.0]])
    icov = np.linalg.inv(corr * np.outer(sd, sd))
    pars = [Parameter(n, f"${n}$", "1", m - 12 * s, m + 12 * s) for n, m, s in zip("xyz", mu, sd)]

    def loglike(theta):
        r = theta - mu
        return -0.5 * np.einsum("ni,ij,nj->n", r, icov, r)

    post = Posterior(pars, loglike)
    run = run_sampler(post, nwalkers=32, nsteps=4000, seed=7)
    diag = diagnostics(run, burn=500)
    assert 0.2 < diag.acceptance_mean < 0.8
    assert diag.reliable
    path = tmp_path / "toy.nc"
    write_netcdf(to_datatree(run, post, diag, attrs={"seed": 7}), path)
    samples, names = stacked_samples(_tree(path))
    assert names == ["x", "y", "z"]
    assert samples.shape == (32 * 3500, 3)
    mean, std = samples.mean(axis=0), samples.std(axis=0)
    np.testing.assert_array_less(np.abs(mean - mu) / sd, 0.05)
    np.testing.assert_array_less(np.abs(std / sd - 1.0), 0.05)
    rho = np.corrcoef(samples.T)
    assert abs(rho[0, 1] - 0.6) < 0.05 and abs(rho[1, 2] + 0.3) < 0.05


def test_template_toy_analytic_posterior():
    """T1 = T2 = 0: the template likelihood gives a Gaussian in a, uniform in log10 m, log10 g."""
    x = np.linspace(-1.0, 2.0, 31)
    r_sm = np.full(10, 10.0)
    zero = np.zeros((x.size, 10))
    like = TemplateLikelihood(x, zero, zero, r_sm, statistic="eq26", sigma_bg=0.1)
    pars = mediator_parameters((-1.0, 2.0), (-6.0, -2.0), sigma_a=0.1)
    post = Posterior.from_likelihood(pars, like)
    run = run_sampler(post, nwalkers=32, nsteps=3000, seed=3)
    s = np.swapaxes(run.chain[:, 500:], 0, 1).reshape(-1, 3)
    # a: precision sum_i R_i^2 / ((1 + sigma_bg) R_i) + 1 / sigma_a^2
    sd_a = 1.0 / math.sqrt(r_sm.sum() / 1.1 + 1.0 / 0.1**2)
    exp_mean = np.array([0.5, -4.0, 0.0])
    exp_sd = np.array([3.0 / math.sqrt(12), 4.0 / math.sqrt(12), sd_a])
    np.testing.assert_array_less(np.abs(s.mean(axis=0) - exp_mean) / exp_sd, 0.05)
    np.testing.assert_array_less(np.abs(s.std(axis=0) / exp_sd - 1.0), 0.05)


@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_likelihood_matches_costs_at_grid_masses(make_templates, statistic):
    """At grid masses (no interpolation) -2 log L equals the public statistic without constraint."""
    x = np.linspace(-1.0, 2.0, 13)
    t = make_templates(10.0**x, n_bins=25)
    T, r_sm = t["T"].values, t["R_SM"].values
    data = np.random.default_rng(0).poisson(r_sm).astype(float)
    like = TemplateLikelihood(x, T[1], T[2], r_sm, data=data, statistic=statistic, sigma_bg=0.1)
    k = np.array([0, 3, 7, 12])
    lg = np.array([-3.0, -1.0, 0.0, -0.5])
    a = np.array([0.0, 0.05, -0.1, 0.2])
    g2 = 10.0 ** (2 * lg)
    R = T[0, k] + g2[:, None] * T[1, k] + g2[:, None] ** 2 * T[2, k]
    ref = (eq26_chi2 if statistic == "eq26" else poisson_twice_nll)(
        a, R, r_sm, data=data, sigma_sys=math.inf, sigma_bg=0.1)
    np.testing.assert_allclose(-2.0 * like(x[k], lg, a), ref, rtol=1e-10)
    np.testing.assert_allclose(like.pointwise(x[k], lg, a).sum(axis=1), like(x[k], lg, a),
                               rtol=1e-12)
    # with sigma_a = sigma_sys the log posterior is -chi2_Eq26 / 2 + const
    if statistic == "eq26":
        post = Posterior.from_likelihood(mediator_parameters((-1, 2), (-4, 0), 0.1), like)
        lp = post.log_prob(np.column_stack([x[k], lg, a]))
        full = eq26_chi2(a, R, r_sm, data=data, sigma_sys=0.1, sigma_bg=0.1)
        np.testing.assert_allclose(lp - lp[0], -0.5 * (full - full[0]), rtol=1e-9, atol=1e-9)


def test_prior_support_and_parameters():
    p = Parameter("a", "$a$", "1", -1.0, math.inf, prior="normal", sigma=0.1)
    assert np.isneginf(p.log_prior(-1.5)) and np.isfinite(p.log_prior(0.3))
    with pytest.raises(UnphysicalInput):
        Parameter("x", "$x$", "1", 2.0, 1.0)
    with pytest.raises(UnphysicalInput):
        Parameter("x", "$x$", "1", 0.0, math.inf)  # uniform needs finite bounds
    assert [q.name for q in mediator_parameters(sigma_a=0.0)] == ["log10_m_X", "log10_g_X"]


# ------------------------------------------------------------------------------ physics templates
@pytest.fixture(scope="module")
def eves_v():
    ana = config.load(SMALL)
    fm = ana.forward_model()
    return ana, fm, ana.interaction("V")


def test_interpolation_error_against_exact_templates(eves_v):
    """Cubic spline in log10 m on 121 masses over 4 decades: < 1e-3 relative on counts off-grid."""
    ana, fm, inter = eves_v
    x = np.linspace(-2.0, 2.0, 121)
    t = fm.templates(inter, 10.0**x)
    T = t["T"].values
    like = TemplateLikelihood(x, T[1], T[2], t["R_SM"].values, min_expected=1e-6)
    xm = 0.5 * (x[1:] + x[:-1])  # midpoints: the worst case for a spline
    E = fm.templates(inter, 10.0**xm)["T"].values
    err = interpolation_error(like, xm, E[1], E[2], np.linspace(-8.0, -2.0, 61))
    assert err["max_rel_counts"] < 1e-3, err
    # random off-grid masses through the public expected() path
    rng = np.random.default_rng(5)
    xr_ = rng.uniform(-2.0, 2.0, 40)
    lg = rng.uniform(-8.0, -4.0, 40)
    ex = fm.templates(inter, 10.0**xr_)["T"].values[:, :, like.bin_used]
    g2 = 10.0 ** (2 * lg)[:, None]
    R_exact = ex[0] + g2 * ex[1] + g2**2 * ex[2]
    np.testing.assert_allclose(like.expected(xr_, lg), R_exact, rtol=1e-3)
    # the error shrinks like h^4: halving the step gains > 8x
    x2 = np.linspace(-2.0, 2.0, 61)
    t2 = fm.templates(inter, 10.0**x2)["T"].values
    like2 = TemplateLikelihood(x2, t2[1], t2[2], t["R_SM"].values, min_expected=1e-6)
    xm2 = 0.5 * (x2[1:] + x2[:-1])
    E2 = fm.templates(inter, 10.0**xm2)["T"].values
    err2 = interpolation_error(like2, xm2, E2[1], E2[2], np.linspace(-8.0, -2.0, 61))
    assert err2["max_rel_counts"] > 8 * err["max_rel_counts"]


# ------------------------------------------------------------------------------ files, seeds, resume
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("post")
    path = d / "small.nc"
    res = bayes.run_sample(_cfg(), path, progress=False)
    return path, res


def test_file_layout_readable_by_xarray(small_run):
    path, res = small_run
    assert res["steps"] == 60 and res["walkers"] == 8 and res["seed"] == 11
    tree = _tree(path)
    groups = {c for c in tree.children}
    assert {"posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood",
            "sampler_state", "frequentist"} <= groups
    # the frequentist counterpart holds g90 and the excluded intervals, as every result file
    freq = tree["frequentist"].to_dataset()
    assert {"delta_chi2", "g90", "g90_status", "interval_g_lo", "interval_g_hi", "contour_m_X"} <= set(freq.data_vars)
    hit = freq["g90_status"].values != 1
    assert hit.any() and np.all(freq["g90"].values[hit] > 0) and np.all(freq["g90"].values[~hit] == 0)
    np.testing.assert_array_equal(freq["interval_g_lo"].values[freq["interval_start"].values[hit]],
                                  freq["g90"].values[hit])
    post = tree["posterior"]
    burn = tree["sample_stats"].attrs["burn"]
    assert burn == 15  # 25% of 60 steps (tau unreliable)
    assert {"warmup_posterior", "warmup_sample_stats"} <= groups
    warm = tree["warmup_posterior"]
    for v in ("log10_m_X", "log10_g_X", "a", "m_X", "g_X"):
        assert post[v].dims == ("chain", "draw") and post[v].shape == (8, 60 - burn)
        assert warm[v].shape == (8, burn)
        assert "units" in post[v].attrs and "long_name" in post[v].attrs
    assert post["draw"].values[0] == burn and warm["draw"].values[-1] == burn - 1
    assert tree["warmup_sample_stats"]["lp"].shape == (8, burn)
    assert tree.attrs["warmup_draws"] == burn and tree.attrs["posterior_draws"] == 60 - burn
    # the whole run joins back: the burn-in is the start of the chain
    full = run_from_datatree(tree)
    assert full.chain.shape == (8, 60, 3)
    np.testing.assert_array_equal(full.chain[:, burn:, 1], post["log10_g_X"].values)
    np.testing.assert_array_equal(full.chain[:, :burn, 1], warm["log10_g_X"].values)
    # summaries with MCSE and the prior-dominance record
    assert set(res["summary"]["log10_g_X"]) >= {"q5", "q5_mcse", "q50_mcse", "q95_mcse",
                                                 "mean_mcse", "ess"}
    assert all(e is not None and e > 0 for e in res["quantiles_mcse_5_50_95"]["a"])
    assert json.loads(tree.attrs["prior_dominated"]) == res["prior_dominated"]
    assert "Kolmogorov-Smirnov" in tree.attrs["prior_dominance_rule"]
    assert set(json.loads(tree.attrs["prior_dominance"])) == {"log10_m_X", "log10_g_X", "a"}
    assert len(res["g90_by_mass"]) == 20 and "g90_credible_mcse" in res["g90_by_mass"][0]
    assert tree["sample_stats"]["ess"].dims == ("parameter",)
    np.testing.assert_allclose(post["g_X"].values, 10.0 ** post["log10_g_X"].values)
    lo, hi = post["log10_m_X"].attrs["prior_lo"], post["log10_m_X"].attrs["prior_hi"]
    assert lo <= post["log10_m_X"].values.min() and post["log10_m_X"].values.max() <= hi
    ss = tree["sample_stats"]
    assert ss["lp"].dims == ("chain", "draw")
    assert ss["acceptance_fraction"].dims == ("chain",)
    assert list(ss["tau"]["parameter"].values) == ["log10_m_X", "log10_g_X", "a"]
    assert tree["log_likelihood"]["counts"].dims == ("chain", "draw", "bin")
    assert tree["observed_data"]["counts"].dims == ("bin",)
    for k in ("R_SM", "background", "exposure_tonne_year", "sigma_sys", "template_T1"):
        assert k in tree["constant_data"]
    a = tree.attrs
    for k in ("seed", "config_json", "created_at", "nuinfer_version", "numpy_version",
              "emcee_version", "nwalkers", "nsteps", "model", "statistic"):
        assert k in a, k
    assert a["creation_library"] == "nuinfer" and a["inference_library"] == "emcee"
    assert json.loads(a["config_json"])["posterior"]["seed"] == 11
    assert a["interpolation_max_rel_error"] < 1e-3
    for node in tree.subtree:
        for v in node.attrs.values():
            assert isinstance(v, (str, int, float, np.integer, np.floating, np.ndarray))
    # the sum of the per-bin log-likelihoods plus the log prior is lp
    ll = tree["log_likelihood"]["counts"].values.astype(float).sum(axis=-1)
    pars = bayes.parameters_from_config(config.load(_cfg()))
    theta = np.stack([post[n].values for n in ("log10_m_X", "log10_g_X", "a")], axis=-1)
    lprior = sum(p.log_prior(theta[..., i]) for i, p in enumerate(pars))
    assert tree["log_likelihood"]["counts"].shape[:2] == (8, 60 - burn)
    np.testing.assert_allclose(ll + lprior, ss["lp"].values, rtol=1e-5, atol=1e-3)


def test_plot_of_the_file_checks_the_prior_of_every_sampled_parameter(small_run, tmp_path):
    """The file's stored analysis loads back (its unset posterior.a.sigma is stored as null), so
    run_plot judges the prior dominance of a with its normal prior, as run_sample did."""
    path, res = small_run
    bayes._PLOT_MEMO.clear()  # from the file, not from run_sample's memory
    tree = _tree(path)
    names = json.loads(tree.attrs["sampled_variables"])
    assert json.loads(tree.attrs["config_json"])["posterior"]["a"]["sigma"] is None
    assert bayes._stored_parameters(tree, names) == bayes.parameters_from_config(config.load(_cfg()))
    summ = bayes.run_plot(path, outdir=tmp_path)["summary"]
    assert list(summ["prior_dominance"]) == names == ["log10_m_X", "log10_g_X", "a"]
    assert summ["prior_dominance"] == json.loads(tree.attrs["prior_dominance"])


def test_arviz_reads_the_file(small_run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz 0.x announces its 1.0 refactor
        az = pytest.importorskip("arviz")
    path, _ = small_run
    idata = az.from_netcdf(str(path))
    assert {"posterior", "warmup_posterior", "warmup_sample_stats"} <= set(idata.groups())
    burn = int(idata.sample_stats.attrs["burn"])
    assert idata.posterior.sizes["draw"] == 60 - burn
    assert idata.warmup_posterior.sizes["draw"] == burn
    summ = az.summary(idata, var_names=["log10_m_X", "log10_g_X", "a"], kind="stats")
    assert list(summ.index) == ["log10_m_X", "log10_g_X", "a"]
    assert np.all(np.isfinite(summ["mean"].values))
    # the summary is of the post-burn-in draws only
    np.testing.assert_allclose(summ.loc["a", "mean"],
                               float(idata.posterior["a"].values.mean()), rtol=1e-3, atol=1e-3)


def test_same_seed_same_file_different_seed_different_chains(small_run, tmp_path):
    path, _ = small_run
    again = tmp_path / "again.nc"
    bayes.run_sample(_cfg(), again, progress=False)
    _assert_same_file(path, again)
    other = tmp_path / "other.nc"
    bayes.run_sample(_cfg(), other, seed=12, progress=False)
    a = _tree(path)["posterior"]["log10_g_X"].values
    b = _tree(other)["posterior"]["log10_g_X"].values
    assert not np.allclose(a, b)


def test_resume_is_bit_for_bit(small_run, tmp_path):
    """N steps resumed to 2N == 2N steps in one go (chains, lp, acceptance, RNG state, file)."""
    path, _ = small_run
    full = tmp_path / "full.nc"
    bayes.run_sample(_cfg(), full, steps=120, progress=False)
    part = tmp_path / "part.nc"
    bayes.run_sample(_cfg(), part, steps=60, progress=False)
    res = bayes.run_sample(_cfg(), part, steps=120, resume=True, progress=False)
    assert res["steps"] == 120 and res["steps_run"] == 60 and res["resumed"]
    r1, r2 = run_from_datatree(_tree(full)), run_from_datatree(_tree(part))
    assert np.array_equal(r1.chain, r2.chain)
    assert np.array_equal(r1.log_prob, r2.log_prob)
    assert np.array_equal(r1.accepted, r2.accepted)
    assert np.array_equal(r1.random_state[1], r2.random_state[1])
    assert r1.random_state[2:] == r2.random_state[2:]
    _assert_same_file(full, part)
    # resuming to the stored total is a no-op run
    res = bayes.run_sample(_cfg(), part, steps=120, resume=True, progress=False)
    assert res["steps_run"] == 0


def test_bad_inputs(small_run, tmp_path):
    path, _ = small_run
    with pytest.raises(InvalidConfig, match="walkers"):
        bayes.run_sample(_cfg(), tmp_path / "x.nc", walkers=5, progress=False)
    with pytest.raises(UnphysicalInput, match="steps"):
        bayes.run_sample(_cfg(), tmp_path / "x.nc", steps=0, progress=False)
    with pytest.raises(DataFileError):
        bayes.run_sample(_cfg(), tmp_path / "missing.nc", resume=True, progress=False)
    other = _cfg()
    other["statistics"] = {"sigma_sys": 0.2}
    with pytest.raises(InvalidConfig, match="statistics.sigma_sys"):
        bayes.run_sample(other, path, steps=120, resume=True, progress=False)
    with pytest.raises(InvalidConfig, match="walkers"):
        bayes.run_sample(_cfg(), path, steps=120, walkers=10, resume=True, progress=False)
    with pytest.raises(UnphysicalInput, match="already has 60 steps"):
        bayes.run_sample(_cfg(), path, steps=30, resume=True, progress=False)
    with pytest.raises(InvalidConfig, match="model"):
        bayes.run_sample(_cfg(), tmp_path / "x.nc", model="S", progress=False)
    foreign = tmp_path / "foreign.nc"
    write_netcdf(xr.Dataset({"x": ("i", [1.0])}), foreign)
    with pytest.raises(DataFileError):
        bayes.run_sample(_cfg(), foreign, resume=True, progress=False)
    assert not (tmp_path / "x.nc").exists()


def test_diagnostics_warn_on_short_chains(small_run, capsys):
    """A 60-step chain is far below 50 tau: the warning is printed (stderr), not raised."""
    path, _ = small_run
    out = path.parent / "warn.nc"
    bayes.run_sample(_cfg(), out, progress=True)
    err = capsys.readouterr().err
    assert "WARNING: the chain is only" in err and "tau[log10_g_X]" in err
    assert _tree(out)["sample_stats"].attrs["tau_reliable"] == 0
    bayes.run_sample(_cfg(), out, progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------ physics preset
def test_credible_limit_close_to_frequentist_at_light_mass(tmp_path):
    """EvES universal vector: 90% credible upper limit on g at m_X ~ 0.02 MeV vs frequentist g90."""
    cfg = _cfg(walkers=32, steps=1500, seed=2, mass_grid_n=61,
               log10_m_X={"lo": -2.0, "hi": 0.0}, log10_g_X={"lo": -8.0, "hi": -5.0})
    path = tmp_path / "light.nc"
    bayes.run_sample(cfg, path, progress=False, log_likelihood=False)
    plots = bayes.run_plot(path)
    for k in ("corner", "mass_coupling", "table_csv", "table_md"):
        assert (tmp_path / plots[k].split("/")[-1]).exists()
    samples, names = stacked_samples(_tree(path), ["log10_m_X", "log10_g_X"])
    lim = bayes.credible_upper_limits(samples[:, 0], samples[:, 1], box=(-2.0, 0.0), n_slices=10)
    m_light, g_cred = lim["m_center"][0], lim["g_upper"][0]
    assert lim["n_samples"][0] > 500
    # frequentist counterpart of the same analysis, computed independently of the sampler
    ana = config.load({**cfg, "scan": {"m_X_MeV": {"lo": 0.01, "hi": 1.0, "n": 21},
                                       "g_X": {"lo": 1e-8, "hi": 1e-5, "n": 121}}})
    scan = workflows.scan_model(ana, "V")
    g_freq = workflows.g90_table(scan, masses=(float(m_light),))[f"{float(m_light):g}"]
    ratio = g_cred / g_freq
    print(f"m_X = {m_light:.3g} MeV: credible g90 = {g_cred:.3g}, frequentist g90 = {g_freq:.3g} "
          f"(ratio {ratio:.2f})")
    assert 1 / 3 < ratio < 3
    # the table written by run_plot agrees with the stored frequentist scan
    text = (tmp_path / "light_g90.csv").read_text()
    rows = [ln.split(",") for ln in text.splitlines() if ln[:1].isdigit()]
    assert len(rows) == 20
    head = next(ln for ln in text.splitlines() if ln.startswith("m_lo_MeV")).split(",")
    assert head[7:] == ["g90_credible_mcse", "ess", "prior_dominated"]
    # each credible limit carries its MCSE (a few % to tens of % of the limit here)
    err = float(rows[0][7])
    assert 0 < err < 0.5 * float(rows[0][4])
    assert float(rows[0][5]) == pytest.approx(
        workflows.g90_table(scan, masses=(float(rows[0][2]),))[rows[0][2]], rel=0.05)


# ------------------------------------------------------------------------------ Monte Carlo errors
def _ar1(rng, nwalkers, nsteps, rho):
    """Stationary AR(1) ensemble: unit variance, tau = (1 + rho) / (1 - rho)."""
    x = np.empty((nwalkers, nsteps))
    x[:, 0] = rng.normal(size=nwalkers)
    e = rng.normal(size=(nwalkers, nsteps)) * math.sqrt(1.0 - rho**2)
    for t in range(1, nsteps):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


def test_integrated_time_of_ar1_ensemble():
    from emcee.autocorr import integrated_time as emcee_tau

    x = _ar1(np.random.default_rng(1), 32, 4000, 0.9)
    tau = integrated_time(x)
    assert tau == pytest.approx(19.0, rel=0.1)
    assert tau == pytest.approx(float(emcee_tau(x.T[:, :, None], c=5, tol=0)[0]), rel=0.1)
    assert effective_sample_size(x) == pytest.approx(x.size / tau)
    assert math.isnan(integrated_time(np.ones((4, 50))))


@pytest.mark.parametrize("case", ["iid", "ar1", "slice"])
def test_quantile_mcse_matches_spread_over_repeated_runs(case):
    """MCSE of the 90% quantile vs the standard deviation over 300 independent runs (~30%)."""
    qs, errs, ess = [], [], []
    for k in range(300):
        rng = np.random.default_rng(1000 + k)
        where = None
        if case == "iid":  # exponential: skewed, known quantile ln 10
            x = rng.standard_exponential((1, 4000))
        elif case == "ar1":  # log-normal AR(1) ensemble, tau = 9
            x = np.exp(_ar1(rng, 16, 500, 0.8))
        else:  # quantile of g conditional on a slice of m, as the credible limits
            m = rng.uniform(size=(16, 500))
            x = rng.normal(size=(16, 500)) + m
            where = m < 0.25
        q, e, n_eff = quantile_mcse(x, 0.9, where=where)
        qs.append(q)
        errs.append(e)
        ess.append(n_eff)
    spread = float(np.std(qs, ddof=1))
    ratio = float(np.mean(errs)) / spread
    print(f"{case}: spread {spread:.4g}, mean MCSE {np.mean(errs):.4g}, ratio {ratio:.3f}, "
          f"ESS {np.mean(ess):.0f}")
    assert 0.7 < ratio < 1.3
    if case == "iid":
        assert np.mean(qs) == pytest.approx(math.log(10.0), abs=3 * spread / math.sqrt(300))
        assert np.mean(ess) == pytest.approx(4000, rel=0.15)
    if case == "slice":
        assert np.mean(ess) == pytest.approx(16 * 500 * 0.25, rel=0.15)


def test_mean_mcse_and_arviz_agree():
    means, errs = [], []
    for k in range(300):
        m, e, _ = mean_mcse(_ar1(np.random.default_rng(5000 + k), 16, 500, 0.8))
        means.append(m)
        errs.append(e)
    assert 0.7 < np.mean(errs) / np.std(means, ddof=1) < 1.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        az = pytest.importorskip("arviz")
        x = _ar1(np.random.default_rng(3), 16, 2000, 0.8)
        ref_q = float(az.mcse(x, method="quantile", prob=0.9))
        ref_m = float(az.mcse(x))
        ref_ess = float(az.ess(x))
    assert quantile_mcse(x, 0.9)[1] == pytest.approx(ref_q, rel=0.1)
    assert mean_mcse(x)[1] == pytest.approx(ref_m, rel=0.1)
    assert effective_sample_size(x) == pytest.approx(ref_ess, rel=0.1)
    s = summarize({"x": x})["x"]
    assert s["q95"] == pytest.approx(float(np.quantile(x, 0.95)))
    assert s["q95_mcse"] > 0 and s["mean_mcse"] == pytest.approx(mean_mcse(x)[1])


def test_prior_dominance_measure():
    rng = np.random.default_rng(2)
    pars = (Parameter("u", "$u$", "1", -8.0, -4.0),
            Parameter("a", "$a$", "1", -1.0, math.inf, prior="normal", sigma=0.1))
    flat = {"u": rng.uniform(-8.0, -4.0, (8, 2000)), "a": rng.normal(0.0, 0.1, (8, 2000))}
    dom = prior_dominance(flat, pars)
    assert dom["u"]["prior_dominated"] and dom["a"]["prior_dominated"]
    assert dom["u"]["ks_distance"] < 3 * dom["u"]["ks_noise"] < 0.1
    assert abs(dom["a"]["contraction"]) < 0.05
    informed = {"u": rng.uniform(-8.0, -7.0, (8, 2000)), "a": rng.normal(0.0, 0.04, (8, 2000))}
    dom = prior_dominance(informed, pars)
    assert not dom["u"]["prior_dominated"] and dom["u"]["ks_distance"] == pytest.approx(0.75,
                                                                                      abs=0.02)
    assert not dom["a"]["prior_dominated"] and dom["a"]["contraction"] > 0.8


def test_prior_dominated_run_is_flagged_and_corner_quotes_no_titles(tmp_path):
    """Couplings far below any sensitivity: the data cannot tell; the file, the summary, the
    tables and the corner titles say so (as text and attributes, not Python warnings)."""
    cfg = _cfg(walkers=32, steps=800, seed=4, mass_grid_n=41,
               log10_m_X={"lo": -1.0, "hi": 1.0}, log10_g_X={"lo": -14.0, "hi": -12.0})
    path = tmp_path / "flat.nc"
    res = bayes.run_sample(cfg, path, progress=False, log_likelihood=False)
    assert {"log10_m_X", "log10_g_X"} <= set(res["prior_dominated"])
    assert "a" not in res["prior_dominated"]  # the SM event count narrows a
    assert any("prior-dominated" in w for w in res["warnings"])
    tree = _tree(path)
    assert {"log10_m_X", "log10_g_X"} <= set(json.loads(tree.attrs["prior_dominated"]))
    assert len(json.loads(tree.attrs["g90_prior_dominated_slices_MeV"])) == 20
    plots = bayes.run_plot(path, n_slices=5)
    titles = plots["summary"]["corner_titles"]
    assert "prior-dominated" in titles["log10_g_X"] and "prior-dominated" in titles["log10_m_X"]
    assert "^{+" in titles["a"] and "prior-dominated" not in titles["a"]
    assert all(r["prior_dominated"] for r in plots["summary"]["g90_by_mass"])
    md = (tmp_path / "flat_g90.md").read_text()
    assert "Kolmogorov-Smirnov" in md and "| yes |" in md


def test_prior_check_moves_prior_dominated_limits(tmp_path):
    """Heavy mediators (25-100 MeV): the exclusion edge leaves the g box, so moving the upper
    g bound up by 0.5 dex moves the limits up by ~0.45 dex (x 2.8), far beyond their MCSE."""
    cfg = _cfg(walkers=16, steps=1000, seed=5, mass_grid_n=21,
               log10_m_X={"lo": 1.4, "hi": 2.0}, log10_g_X={"lo": -8.0, "hi": -4.0})
    res = bayes.prior_check(cfg, 0.5, bounds=("log10_g_X.hi",), directions=(1, -1), n_slices=3,
                            outdir=tmp_path)
    assert [v["name"] for v in res["variants"]] == ["log10_g_X.hi+0.5", "log10_g_X.hi-0.5"]
    print("baseline", res["baseline"])
    assert len(res["m_center_MeV"]) == 3 and all(res["baseline"]["prior_dominated"])
    up, down = res["variants"]
    print("rel shifts up", up["rel_shift"], "+-", up["rel_shift_mcse"])
    print("rel shifts down", down["rel_shift"], "+-", down["rel_shift_mcse"])
    # lowering the top of a flat posterior by 0.5 dex lowers its 90% quantile by ~0.5 dex
    expected = 10.0**-0.5 - 1.0
    for r, e in zip(down["rel_shift"], down["rel_shift_mcse"]):
        assert abs(r - expected) < 3 * e + 0.05 and e < 0.3
    assert down["n_slices_moved"] == 3
    # raising it moves the limits up (less where the exclusion edge enters the wider box)
    assert np.mean(up["rel_shift"]) > 0.3
    assert all(0 < e < 2.0 for e in up["rel_shift_mcse"])
    assert (tmp_path / "prior_check_base.nc").exists() and up["file"].endswith(".nc")
    json.dumps(res)  # JSON-able for the CLI
    with pytest.raises(InvalidConfig, match="bound"):
        bayes.prior_check(cfg, 0.5, bounds=("log10_g_X.mid",))
    with pytest.raises(UnphysicalInput):
        bayes.prior_check(cfg, -1.0)


# ------------------------------------------------------------------------------ runs on data
def test_poisson_likelihood_finite_with_empty_bins_and_negative_subtracted_data():
    """n = 0 bins (0 log 0 = 0) and D = n - R_bg < 0 agree with the public costs."""
    x = np.linspace(-1.0, 1.0, 9)
    r_sm = np.array([0.05, 0.2, 1.0, 5.0, 30.0])
    T1 = np.outer(10.0 ** (-2 * x), r_sm)
    T2 = np.zeros_like(T1)
    n = np.array([0.0, 0.0, 1.0, 3.0, 35.0])
    D = n - background_counts(r_sm, 0.1)
    assert np.any(D < 0)
    for statistic, ref_fn in (("poisson", poisson_twice_nll), ("eq26", eq26_chi2)):
        like = TemplateLikelihood(x, T1, T2, r_sm, data=D, statistic=statistic, sigma_bg=0.1)
        lg = np.array([-3.0, -1.0, 0.0])
        a = np.array([0.0, 0.1, -0.2])
        ll = like(x[[0, 4, 8]], lg, a)
        assert np.all(np.isfinite(ll))
        g2 = 10.0 ** (2 * lg)
        R = r_sm + g2[:, None] * T1[[0, 4, 8]]
        ref = ref_fn(a, R, r_sm, data=D, sigma_sys=math.inf, sigma_bg=0.1)
        np.testing.assert_allclose(-2.0 * ll, ref, rtol=1e-10)
        assert np.all(np.isfinite(like.pointwise(x[[0, 4, 8]], lg, a)))


@pytest.fixture(scope="module")
def toy_counts(tmp_path_factory, eves_v):
    """Poisson toy: observed events (neutrinos + background) drawn from the SM expectation."""
    ana, fm, inter = eves_v
    r_sm = fm.templates(inter, np.array([1.0]))["R_SM"].values
    n = np.random.default_rng(2024).poisson(r_sm + background_counts(r_sm, 0.1)).astype(float)
    assert np.any(n == 0) and np.any(n < background_counts(r_sm, 0.1))
    path = tmp_path_factory.mktemp("data") / "toy_counts.txt"
    np.savetxt(path, n, fmt="%d", header="observed events per bin (toy, seed 2024)")
    return path, n


@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_sample_on_toy_counts_file(toy_counts, tmp_path, statistic):
    """A counts file is read as contour reads it; the posterior is finite and sensible."""
    path, n = toy_counts
    cfg = _cfg(walkers=16, steps=800, seed=6, mass_grid_n=31,
               log10_m_X={"lo": -2.0, "hi": 0.0}, log10_g_X={"lo": -8.0, "hi": -5.0})
    cfg["statistics"] = {"statistic": statistic}
    res = bayes.run_sample(cfg, tmp_path / "data.nc", data=path, progress=False)
    bayes.run_sample(cfg, tmp_path / "asimov.nc", progress=False, log_likelihood=False)
    tree = _tree(tmp_path / "data.nc")
    assert tree.attrs["data_source"] == "user" and res["statistic"] == statistic
    assert np.all(np.isfinite(tree["sample_stats"]["lp"].values))
    assert np.all(np.isfinite(tree["warmup_sample_stats"]["lp"].values))
    assert np.all(np.isfinite(tree["log_likelihood"]["counts"].values))
    # observed_data holds D = n - R_bg (negative where n < R_bg), rebuilding the likelihood
    D = tree["observed_data"]["counts"].values
    np.testing.assert_allclose(D + tree["constant_data"]["background"].values, n, atol=1e-9)
    assert np.any(D < 0)
    # the credible limit at light masses is within a factor 3 of the Asimov one
    lim = [bayes.credible_upper_limits(
        *(lambda c: (c["log10_m_X"], c["log10_g_X"]))(chains_from_tree(_tree(p))),
        box=(-2.0, 0.0), n_slices=4) for p in (tmp_path / "data.nc", tmp_path / "asimov.nc")]
    ratio = lim[0]["g_upper"] / lim[1]["g_upper"]
    print(f"{statistic}: g90 data / Asimov per slice {np.round(ratio, 2)}")
    assert np.all((ratio > 1 / 3) & (ratio < 3))
    # the resumed run reads the stored data back
    again = bayes.run_sample(cfg, tmp_path / "data.nc", data=path, steps=900, resume=True,
                             progress=False)
    assert again["steps_run"] == 100


# --------------------------------------------------------------------------------------------
# corner-plot decision and terrestrial summaries with MCSE (issue 14, item 4)
# --------------------------------------------------------------------------------------------
def test_corner_annotations_hide_quantiles_of_prior_dominated_parameters():
    from nuinfer.tasks.posterior import corner_annotations, summarize

    rng = np.random.default_rng(1)
    chains = {"a": rng.normal(0.3, 0.05, (8, 400)), "b": rng.uniform(-1, 1, (8, 400))}
    summ = summarize(chains)
    dom = {"a": {"prior_dominated": False, "ks_distance": 0.8},
           "b": {"prior_dominated": True, "ks_distance": 0.02}}
    ann = corner_annotations(summ, dom, labels={"a": "$a$"})
    assert ann["b"]["quantiles"] == () and ann["b"]["quantile_values"] == ()
    assert "prior-dominated" in ann["b"]["title"] and "^" not in ann["b"]["title"]
    assert ann["a"]["quantiles"] == (0.05, 0.5, 0.95)
    assert ann["a"]["quantile_values"][1] == pytest.approx(summ["a"]["q50"])
    assert ann["a"]["title"].startswith("$a$ = ") and "MCSE" in ann["a"]["title"]


def test_terrestrial_posterior_summary_has_mcse(tmp_path):
    from nuinfer.tasks import terrestrial as tw
    from nuinfer.tasks.xenon import models_dir

    res = tw.run_posterior(models_dir() / "coherent_csi2017.toml", tmp_path / "p.nc", walkers=16,
                           steps=60, seed=2, quiet=True)
    for name, r in res["summary"].items():
        for k in ("median", "q16", "q84", "q5", "q95"):
            assert np.isfinite(r[k]) and np.isfinite(r[f"{k}_mcse"]) and r[f"{k}_mcse"] > 0, (name, k)
        assert r["ess"] > 0 and r["q16"] <= r["median"] <= r["q84"]


@pytest.mark.parametrize("n", [4, 5, 41, 241, 3000])
def test_not_a_knot_spline_equals_scipy_cubicspline(n):
    """The template interpolator's numpy spline (no scipy.interpolate import on the sampling path)
    has the coefficients of scipy's CubicSpline(bc_type="not-a-knot") on uneven knots, and
    TemplateInterpolator reproduces scipy's spline values between the knots."""
    from scipy.interpolate import CubicSpline

    from nuinfer.physics.interp import not_a_knot
    from nuinfer.tasks.posterior import TemplateInterpolator
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.uniform(0.05, 1.0, n))
    y = rng.normal(size=(n, 2, 5)) * np.exp(rng.normal(size=(1, 2, 5)))
    want = CubicSpline(x, y, axis=0, bc_type="not-a-knot").c
    got = not_a_knot(x, y)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * np.abs(want).max())
    T1, T2 = np.abs(y[:, 0]), np.abs(y[:, 1])
    xq = rng.uniform(x[0], x[-1], 50)
    a, b = TemplateInterpolator(x, T1, T2)(xq)
    np.testing.assert_allclose(a, CubicSpline(x, T1, axis=0)(xq), rtol=1e-10, atol=1e-12 * T1.max())
    np.testing.assert_allclose(b, CubicSpline(x, T2, axis=0)(xq), rtol=1e-10, atol=1e-12 * T2.max())
    with pytest.raises(ValueError, match="4 knots"):
        not_a_knot(x[:3], y[:3])


def test_prior_dominance_warnings_say_dominated_or_not_told_apart_never_both():
    """One warning per flagged parameter: 'prior-dominated' when the draws resolve the prior
    (small KS noise), 'cannot be told apart ... run longer' when they are too few; none for a
    parameter whose posterior is clearly not its prior, however few the draws."""
    from nuinfer.tasks.posterior import mediator_parameters
    pars = mediator_parameters((-2.0, 2.0), (-8.0, -4.0), 0.1)
    rng = np.random.default_rng(5)

    def report(steps):
        chains = {"log10_m_X": rng.uniform(-2.0, 2.0, (8, steps)),  # the prior itself
                  "log10_g_X": rng.uniform(-8.0, -7.0, (8, steps)),  # a quarter of the box: the data speak
                  "a": rng.normal(0.0, 0.1, (8, steps))}  # the prior itself
        rep = bayes.posterior_report(chains, pars)
        return rep, {n: [m for m in rep["messages"] if f"posterior of {n} " in m] for n in chains}

    many, msg = report(4000)  # KS noise ~0.005
    assert many["prior_dominated"] == ["log10_m_X", "a"]
    assert all(len(msg[n]) == 1 and "is prior-dominated" in msg[n][0] for n in ("log10_m_X", "a"))
    assert msg["log10_g_X"] == []
    few, msg = report(10)  # KS noise ~0.1: the uniform draws cannot be told from the prior
    assert set(few["prior_dominated"]) == {"log10_m_X", "a"}
    for n in ("log10_m_X", "a"):
        assert len(msg[n]) == 1 and "cannot be told apart from its prior" in msg[n][0] and "run longer" in msg[n][0]
    assert msg["log10_g_X"] == [] and not any("log10_g_X" in m for m in few["messages"] if "dominated" in m)

"""Discovery statistics (issue 9, item 2): q0, Asimov, discovery limits, fog index, toys.

References: G. Cowan, K. Cranmer, E. Gross, O. Vitells, EPJC 71 (2011) 1554 (arXiv:1007.1727):
q0 Eq. (12), Z0 = sqrt(q0) Eq. (53), one-bin Asimov significance Eq. (97); O'Hare, PRL 127 (2021)
251802 for the fog index.
"""

from __future__ import annotations

import numpy as np
import pytest
from iminuit import Minuit
from scipy.stats import norm

from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.tasks.discovery import (
    BackgroundModel,
    asimov_q0,
    discovery_fraction,
    discovery_limit,
    fit,
    floor_from_fog,
    fog_index,
    q0,
    required_q0,
    toy_q0,
)


def test_required_q0_is_the_shifted_gaussian_quantile():
    assert required_q0(3.0, 0.5) == pytest.approx(9.0, rel=1e-15)
    assert required_q0(3.0, 0.9) == pytest.approx((3.0 + 1.2815515655446004) ** 2, rel=1e-14)
    assert required_q0(5.0, 0.9) == pytest.approx((5.0 + norm.ppf(0.9)) ** 2, rel=1e-14)
    with pytest.raises(UnphysicalInput, match="discovery.fraction"):
        required_q0(3.0, 1.0)


@pytest.mark.parametrize("s,b", [(1.0, 100.0), (5.0, 10.0), (50.0, 1.0), (1e-3, 1e3)])
def test_asimov_q0_one_bin_is_cowan_eq97(s, b):
    bg = BackgroundModel(np.array([[b]]), [0.0])
    ref = 2.0 * ((s + b) * np.log1p(s / b) - s)
    assert float(asimov_q0(np.array([s]), bg)) == pytest.approx(ref, rel=1e-10)


def _toy_problem(seed=0, n_bins=25, with_t=True):
    rng = np.random.default_rng(seed)
    E = np.geomspace(1, 100, n_bins)
    shapes = np.stack([np.exp(-E / 5), np.exp(-E / 30), 1.0 / E, np.exp(-((np.log(E) - 2.5) ** 2)),
                       np.full(n_bins, 0.02)])
    B0 = 200 * shapes * rng.uniform(0.5, 1.5, shapes.shape)
    sig = np.array([0.02, 0.1, 0.3, 0.05, 0.5])
    if with_t:  # a quadratic shape nuisance, like sin^2 theta_W
        B1 = 0.1 * B0 * (1 + 0.3 * np.log(E))
        B2 = 0.01 * B0
        bg = BackgroundModel(np.stack([B0, B1, B2], axis=1), sig, sigma_t=1.0)
    else:
        bg = BackgroundModel(B0, sig)
    S = 30 * np.exp(-E / 12)
    return bg, S


def _minuit_min(n, bg, S=None, mu_fixed=None):
    K = bg.n_comp
    keep = bg.used_bins

    def cost(*p):
        p = np.asarray(p)
        mu = p[0] if mu_fixed is None else mu_fixed
        phi = p[1:1 + K] if mu_fixed is None else p[:K]
        t = p[-1] if bg.has_t else 0.0
        lam = bg.expected(phi, t) + (mu * S if S is not None else 0.0)
        lam, nn = lam[keep], n[keep]
        if np.any(lam <= 0):
            return 1e30
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(nn > 0, nn * np.log(nn / lam), 0.0)
        val = 2 * np.sum(lam - nn + terms) + np.sum(((phi - 1) / bg.sigma) ** 2)
        return val + (t / bg.sigma_t) ** 2 if bg.has_t else val

    start = ([1.0] if mu_fixed is None else []) + [1.0] * K + ([0.0] if bg.has_t else [])
    m = Minuit(cost, *start)
    m.errordef = 1.0
    m.strategy = 2
    m.tol = 1e-8
    m.migrad()
    m.migrad()
    assert m.valid
    return m.fval, np.asarray(m.values)


@pytest.mark.parametrize("with_t", [False, True])
def test_vectorised_newton_matches_iminuit(with_t):
    """Closed-loop check of the all-nuisance Newton profile against MIGRAD (strategy 2)."""
    bg, S = _toy_problem(with_t=with_t)
    rng = np.random.default_rng(7)
    n = rng.poisson(bg.nominal + 1.3 * S).astype(float)
    f1 = fit(n, bg, signal=S)
    f0 = fit(n, bg, signal=S, mu=0.0)
    assert bool(f1.converged) and bool(f0.converged)
    m1, p1 = _minuit_min(n, bg, S)
    m0, _ = _minuit_min(n, bg, S, mu_fixed=0.0)
    assert float(f1.minimum) == pytest.approx(m1, abs=1e-6)
    assert float(f0.minimum) == pytest.approx(m0, abs=1e-6)
    assert float(f1["mu"]) == pytest.approx(p1[0], abs=2e-4)
    np.testing.assert_allclose(f1.block("phi["), p1[1:1 + bg.n_comp], atol=2e-4)
    # and the statistic is the difference of the two
    assert float(q0(n, S, bg)) == pytest.approx(m0 - m1, abs=2e-6)


def test_batched_fit_equals_one_at_a_time():
    bg, S = _toy_problem()
    rng = np.random.default_rng(3)
    n = rng.poisson(bg.nominal + S, size=(6, bg.n_bins)).astype(float)
    batch = fit(n, bg, signal=S)
    for i in range(6):
        one = fit(n[i], bg, signal=S)
        assert float(one.minimum) == pytest.approx(batch.minimum[i], abs=1e-9)


def test_asimov_unconditional_fit_is_the_truth():
    bg, S = _toy_problem()
    nA = bg.nominal + S
    f1 = fit(nA, bg, signal=S)
    assert float(f1.minimum) == pytest.approx(0.0, abs=1e-9)
    assert float(f1["mu"]) == pytest.approx(1.0, abs=1e-6)
    assert float(asimov_q0(S, bg)) == pytest.approx(float(q0(nA, S, bg)), rel=1e-7)


def test_discovery_limit_solves_the_asimov_condition():
    bg, S = _toy_problem()
    ex = np.geomspace(0.01, 1e4, 13)
    W = np.stack([S, np.roll(S, 5)])
    dl = discovery_limit(W, bg, ex)
    assert dl.converged.all()
    qa = asimov_q0(dl.scale[..., None] * W[:, None, :], bg, exposure=ex[None, :])
    np.testing.assert_allclose(qa, dl.q_required, rtol=1e-7)
    assert np.all(np.diff(dl.scale, axis=1) < 0)  # more exposure, smaller discoverable signal


def test_limit_regimes_background_free_poisson_and_saturation():
    """One bin: Poisson-limited n -> 2; with a background identical in shape to the signal and a 10 %
    normalisation uncertainty, the limit saturates at sqrt(q_req) * 0.1 * b / s."""
    b, s = 10.0, 1.0
    ex = np.geomspace(1e-2, 1e9, 45)
    free = discovery_limit(np.array([s]), BackgroundModel(np.array([[b]]), [0.0]), ex)
    n_free = fog_index(ex, free.scale)
    assert n_free[-1] == pytest.approx(2.0, abs=1e-3)
    assert np.all(n_free < 2.0 + 1e-6)
    syst = discovery_limit(np.array([s]), BackgroundModel(np.array([[b]]), [0.1]), ex)
    assert syst.scale[-1] == pytest.approx(np.sqrt(syst.q_required) * 0.1 * b / s, rel=1e-3)
    n_syst = fog_index(ex, syst.scale)
    assert n_syst[-5:].min() > 50  # deep in the fog: the limit no longer improves
    fl, fe = floor_from_fog(ex, syst.scale, n_syst)
    assert np.isfinite(fl) and 1e-2 < fe < 1e9


def test_fog_index_of_power_laws():
    ex = np.geomspace(1, 1e6, 20)
    assert np.allclose(fog_index(ex, ex**-1.0), 1.0)
    assert np.allclose(fog_index(ex, 3e-45 * ex**-0.5), 2.0)
    assert np.allclose(fog_index(ex, ex**-0.2), 5.0)


def test_ninety_percent_rule_against_toys():
    """At the asymptotic discovery limit (sqrt(q0_A) = 3 + 1.2816) a fraction 0.9 of pseudo-experiments
    reach Z0 = sqrt(q0) >= 3; a point at 0.7 x the limit follows P = Phi(sqrt(q0_A) - 3).

    Point: 6 GeV WIMP, 1 t yr of xenon, all neutrino sources (about 150 signal and 13000 background
    events, the regime of the floor).  1500 toys each, fluctuating counts and the auxiliary flux
    measurements.  Tolerance: 4 binomial standard errors (sqrt(0.09/1500) = 0.0077 -> 0.031), a
    4-sigma band for the statistical error of the toy estimate; the Wald approximation itself is
    expected to be good to O(1/sqrt(N)) ~ 1 % here.
    """
    from nuinfer.physics.detector import Binning
    from nuinfer.tasks.floor import DEFAULT_UNCERTAINTIES
    from nuinfer.forward import ForwardModel
    from nuinfer.physics.wimp import binned_counts

    fm = ForwardModel("cevns", binning=Binning(1e-4, 100.0, 40))
    sm = fm.sm_spectrum()
    names = [str(s) for s in sm["source"].values]
    bg = BackgroundModel(sm["counts"].values, [DEFAULT_UNCERTAINTIES[s] for s in names], names)
    W = binned_counts(6.0, fm.binning, fm.detector)
    x = float(discovery_limit(W, bg, [1.0]).scale[0])
    n_toys = 1500
    q = toy_q0(x * W, bg, n_toys=n_toys, seed=11)
    p, err = discovery_fraction(q, 3.0)
    tol = 4 * np.sqrt(0.9 * 0.1 / n_toys)
    assert abs(p - 0.9) < tol, (p, err)
    # below the limit: the asymptotic prediction of the whole distribution
    qa = float(asimov_q0(0.7 * x * W, bg))
    pred = norm.cdf(np.sqrt(qa) - 3.0)
    q2 = toy_q0(0.7 * x * W, bg, n_toys=n_toys, seed=12)
    p2, _ = discovery_fraction(q2, 3.0)
    assert abs(p2 - pred) < 4 * np.sqrt(pred * (1 - pred) / n_toys), (p2, pred)
    assert p2 < 0.8


def test_background_model_validation():
    with pytest.raises(UnphysicalInput, match="background.sigma"):
        BackgroundModel(np.ones((2, 3)), [0.1, -0.1])
    with pytest.raises(InvalidConfig, match="background.sigma_t"):
        BackgroundModel(np.ones((2, 3)), [0.1, 0.1], sigma_t=1.0)
    with pytest.raises(UnphysicalInput, match="background.counts"):
        BackgroundModel(np.array([[1.0, np.nan]]), [0.1])
    bg = BackgroundModel(np.array([[1.0, 0.0, 2.0]]), [0.1])
    assert bg.used_bins.tolist() == [True, False, True]
    with pytest.raises(InvalidConfig, match="signal"):
        discovery_limit(np.ones(5), bg, [1.0])
    # a signal only where there is no background: no asymptotic statement, limit reported as inf
    dl = discovery_limit(np.array([0.0, 1.0, 0.0]), bg, [1.0, 2.0])
    assert np.all(np.isinf(dl.scale)) and dl.n_bins_used == 2


# --------------------------------------------------------------------------------------------
# bin-dependent CEvNS cross-section nuisances (review Eq. 5, the n_sigma terms of Fig. 5)
# --------------------------------------------------------------------------------------------
def _xsec_problem(xs, with_t=False, group=None):
    bg, S = _toy_problem(with_t=with_t)
    sig = np.where(np.arange(bg.n_bins) % 3 == 0, 0.0, xs * np.linspace(0.5, 1.5, bg.n_bins))
    if group is not None:
        sig = np.full(bg.n_bins, xs)
    comps = [True, True, True, False, True]  # component 3 is not CEvNS
    return BackgroundModel(bg.counts, bg.sigma, sigma_t=bg.sigma_t, xsec_sigma=sig, xsec_group=group,
                           xsec_components=comps), S


def _minuit_min_xsec(n, bg, S, mu_fixed=None):
    K, nx = bg.n_comp, bg.n_xsec
    keep = bg.used_bins
    sx = bg.xsec_widths

    def cost(p):
        p = np.asarray(p)
        j = 0
        if mu_fixed is None:
            mu, j = p[0], 1
        else:
            mu = mu_fixed
        phi = p[j:j + K]
        j += K
        t = 0.0
        if bg.has_t:
            t, j = p[j], j + 1
        x = p[j:j + nx]
        lam = (bg.expected(phi, t, x) + mu * S)[keep]
        nn = n[keep]
        if np.any(lam <= 0):
            return 1e30
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(nn > 0, nn * np.log(nn / lam), 0.0)
        val = 2 * np.sum(lam - nn + terms) + np.sum(((phi - 1) / bg.sigma) ** 2) + np.sum((x / sx) ** 2)
        return val + (t / bg.sigma_t) ** 2 if bg.has_t else val

    start = ([1.0] if mu_fixed is None else []) + [1.0] * K + ([0.0] if bg.has_t else []) + [0.0] * nx
    m = Minuit(cost, start)
    m.errordef = 1.0
    m.strategy = 2
    m.tol = 1e-8
    m.migrad()
    m.migrad()
    assert m.valid
    return m.fval, np.asarray(m.values)


@pytest.mark.parametrize("with_t,group", [(False, None), (True, None), (False, "pairs")])
def test_newton_with_xsec_nuisances_matches_iminuit(with_t, group):
    """Flux + (optional sin^2 theta_W) + bin-dependent cross-section nuisances, profiled by the
    Schur-complement Newton iteration, against MIGRAD on the same objective."""
    grp = None if group is None else np.arange(25) // 2
    bg, S = _xsec_problem(0.2, with_t=with_t, group=grp)
    assert bg.n_xsec == (16 if group is None else 13)
    rng = np.random.default_rng(5)
    n = rng.poisson(bg.nominal * (1 + 0.1 * np.sin(np.arange(bg.n_bins))) + 1.3 * S).astype(float)
    f1 = fit(n, bg, signal=S)
    f0 = fit(n, bg, signal=S, mu=0.0)
    assert bool(f1.converged) and bool(f0.converged) and f1.block("xsec[").shape == (bg.n_xsec,)
    m1, p1 = _minuit_min_xsec(n, bg, S)
    m0, _ = _minuit_min_xsec(n, bg, S, mu_fixed=0.0)
    assert float(f1.minimum) == pytest.approx(m1, abs=1e-6)
    assert float(f0.minimum) == pytest.approx(m0, abs=1e-6)
    assert float(f1["mu"]) == pytest.approx(p1[0], abs=2e-4)
    np.testing.assert_allclose(f1.block("xsec["), p1[-bg.n_xsec:], atol=2e-4)
    assert float(q0(n, S, bg)) == pytest.approx(m0 - m1, abs=2e-6)


def test_xsec_nuisances_vanishing_width_and_monotonicity():
    """s_i -> 0 reproduces the flux-only limits; a larger s_i never improves a limit; the asymptotic
    limit still solves q0_A = 18.33 with the extra nuisances."""
    bg0, S = _toy_problem(with_t=False)
    W = np.stack([S, np.roll(S, 5), 30 * np.exp(-((np.arange(25) - 12) / 3.0) ** 2)])
    ex = np.geomspace(0.01, 1e5, 9)
    ref = discovery_limit(W, bg0, ex).scale
    prev = None
    for xs in (1e-7, 0.01, 0.05, 0.2, 1.0):
        bg = BackgroundModel(bg0.counts, bg0.sigma, xsec_sigma=xs)
        dl = discovery_limit(W, bg, ex)
        assert dl.converged.all()
        if xs == 1e-7:
            np.testing.assert_allclose(dl.scale, ref, rtol=1e-6)
        else:
            assert np.all(dl.scale >= prev * (1 - 1e-9))
        prev = dl.scale
    # at large exposure per-bin cross-section freedom matters: 20 % per bin is visibly worse
    assert np.all(prev[:, -1] > 1.5 * ref[:, -1])
    qa, res = asimov_q0(prev[..., None] * W[:, None, :], bg, exposure=ex[None, :], return_fit=True)
    np.testing.assert_allclose(qa, dl.q_required, rtol=1e-7)
    # expected() with the fitted x reproduces the per-bin factors
    lam = bg.expected(res.block("phi["), res["t"], res.block("xsec["))
    assert lam.shape == (3, 9, 25) and np.all(lam > 0)


def test_xsec_toys_draw_the_auxiliary_measurements():
    bg0, S = _toy_problem(with_t=False)
    bg = BackgroundModel(bg0.counts, bg0.sigma, xsec_sigma=0.1)
    q = toy_q0(3 * S, bg, n_toys=50, seed=2)
    assert q.shape == (50,) and np.all(np.isfinite(q)) and np.median(q) > 0


def test_xsec_nuisance_validation():
    B = np.ones((2, 4))
    with pytest.raises(UnphysicalInput, match="background.xsec_sigma"):
        BackgroundModel(B, [0.1, 0.1], xsec_sigma=-0.1)
    with pytest.raises(InvalidConfig, match="background.xsec_sigma"):
        BackgroundModel(B, [0.1, 0.1], xsec_sigma=[0.1, 0.2])
    with pytest.raises(InvalidConfig, match="background.xsec_group"):
        BackgroundModel(B, [0.1, 0.1], xsec_sigma=[0.1, 0.2, 0.1, 0.1], xsec_group=[0, 0, 1, 1])
    with pytest.raises(InvalidConfig, match="background.xsec_components"):
        BackgroundModel(B, [0.1, 0.1], xsec_sigma=0.1, xsec_components=[True])
    bg = BackgroundModel(np.array([[1.0, 0.0, 2.0, 3.0]]), [0.1], xsec_sigma=[0.1, 0.1, 0.0, 0.3])
    assert bg.n_xsec == 2 and bg.xsec_widths.tolist() == [0.1, 0.3]  # empty and s = 0 bins get none
    np.testing.assert_allclose(bg.expected([1.0], 0.0, [0.5, -0.5]), [1.5, 0.0, 2.0, 1.5])

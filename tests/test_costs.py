"""Costs and profilers: definitions, the iminuit protocol, closed form vs Minuit, numerics."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from iminuit import Minuit
from iminuit.cost import LeastSquares, NormalConstraint
from numpy.testing import assert_allclose

from nuinfer.exceptions import InvalidConfig, NumericalError, UnphysicalInput
from nuinfer.tasks import (
    Eq26Chi2,
    PoissonTwiceNLL,
    eq26_chi2,
    poisson_twice_nll,
    profile_eq26,
    profile_grid,
    profile_minuit,
    profile_poisson,
)
from nuinfer.likelihood.costs import _inv_sigma_sys2, _x_minus_log1p


@pytest.fixture
def spectrum():
    """A generic falling SM spectrum with a few-event tail, and interference-shaped templates."""
    n = 40
    x = np.linspace(0.0, 5.0, n)
    r_sm = 200.0 * np.exp(-x) + 0.5
    t1 = -0.6 * r_sm * np.exp(-0.7 * x)
    t2 = 0.1 * r_sm * (1.0 + x)
    return r_sm, t1, t2


def predictions(spectrum, g):
    r_sm, t1, t2 = spectrum
    g = np.asarray(g, dtype=float)[..., None]
    return r_sm + g**2 * t1 + g**4 * t2


# --------------------------------------------------------------------------------------------
# definitions
# --------------------------------------------------------------------------------------------
def test_eq26_matches_definition(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, [0.3, 1.0, 2.0])
    data = r_sm * np.linspace(0.9, 1.1, r_sm.size)
    a = np.array([-0.2, 0.05, 0.3])
    got = eq26_chi2(a, R, r_sm, data=data, sigma_sys=0.07, sigma_bg=0.2)
    sigma2 = r_sm + 0.2 * r_sm
    want = [np.sum((data - (1 + ai) * Ri) ** 2 / sigma2) + (ai / 0.07) ** 2 for ai, Ri in zip(a, R)]
    assert_allclose(got, want, rtol=1e-13)


def test_eq26_is_least_squares_plus_normal_constraint(spectrum):
    """STYLE 2.2: Eq. (26) == LeastSquares + NormalConstraint with errordef 1."""
    r_sm = spectrum[0]
    R = predictions(spectrum, 0.8)
    x = np.arange(r_sm.size, dtype=float)
    ref = LeastSquares(x, r_sm, np.sqrt(1.1 * r_sm), lambda x, a: (1 + a) * R) + NormalConstraint(
        "a", 0.0, 0.1
    )
    cost = Eq26Chi2(R, r_sm)
    for a in (-0.5, -0.1, 0.0, 0.2):
        assert cost(a) == pytest.approx(ref(a), rel=1e-12)
    assert cost.errordef == ref.errordef == 1.0
    assert cost.ndata == r_sm.size and cost.npar == 1


def test_poisson_matches_definition_and_vanishes_at_asimov(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, [0.0, 0.5, 1.5])
    data = np.round(r_sm * np.linspace(0.8, 1.2, r_sm.size))
    data[3] = 0.0  # an empty bin: contributes mu
    a = np.array([0.0, -0.1, 0.2])
    got = poisson_twice_nll(a, R, r_sm, data=data, sigma_sys=0.1, sigma_bg=0.1)
    B = 0.1 * r_sm
    want = []
    for ai, Ri in zip(a, R):
        mu, n = (1 + ai) * Ri + B, data + B
        want.append(2 * np.sum(mu - n + n * np.log(n / mu)) + (ai / 0.1) ** 2)
    assert_allclose(got, want, rtol=1e-11)
    assert poisson_twice_nll(0.0, r_sm, r_sm) == 0.0
    assert np.all(poisson_twice_nll(np.linspace(-0.9, 1, 7), R[1], r_sm) > 0)


def test_poisson_tends_to_gaussian_at_large_counts(spectrum):
    """The Poisson statistic is Eq. (26)'s counterpart: same residual, variance mu_i."""
    r_sm = 1e6 * spectrum[0]
    R = r_sm * (1 + 1e-3 * np.sin(np.arange(r_sm.size)))
    a = 2e-3
    mu = (1 + a) * R + 0.1 * r_sm
    gauss = np.sum((r_sm - (1 + a) * R) ** 2 / mu) + (a / 0.1) ** 2
    assert poisson_twice_nll(a, R, r_sm) == pytest.approx(gauss, rel=2e-3)


def test_x_minus_log1p_is_accurate_for_tiny_and_large_x():
    for x in (1e-14, -3e-9, 2e-5, -0.0099, 0.0099):
        fx = Fraction(x)
        ref = sum((-1) ** k * fx**k / k for k in range(2, 40))  # exact series to ~1e-70
        assert float(_x_minus_log1p(x)) == pytest.approx(float(ref), rel=1e-14)
    for x in (-0.9, 0.02, 3.0, 1e6):
        assert float(_x_minus_log1p(x)) == pytest.approx(x - np.log1p(x), rel=1e-14)


@pytest.mark.parametrize("cls", [Eq26Chi2, PoissonTwiceNLL])
def test_cost_gradient_matches_finite_difference(spectrum, cls):
    r_sm = spectrum[0]
    cost = cls(predictions(spectrum, 0.7), r_sm, data=1.05 * r_sm)
    for a in (-0.3, 0.0, 0.15):
        h = 1e-6
        num = (cost(a + h) - cost(a - h)) / (2 * h)
        assert cost.grad(a)[0] == pytest.approx(num, rel=1e-6)


@pytest.mark.parametrize("cls", [Eq26Chi2, PoissonTwiceNLL])
def test_minuit_reads_errordef_and_limits(spectrum, cls):
    cost = cls(predictions(spectrum, 0.7), spectrum[0])
    m = Minuit(cost, a=0.0)  # no errordef set by hand; filterwarnings=error catches any warning
    m.migrad()
    assert m.valid
    assert m.errordef == 1.0
    if cls is PoissonTwiceNLL:
        assert m.limits["a"] == (-1.0, np.inf)


# --------------------------------------------------------------------------------------------
# profiles: closed form / Newton vs Minuit
# --------------------------------------------------------------------------------------------
def test_closed_form_agrees_with_minuit_at_random_points(spectrum):
    """DESIGN tier 'exact algebra': rtol 1e-8 on the profiled chi2 (Minuit strategy 2)."""
    rng = np.random.default_rng(20220613)
    r_sm = spectrum[0]
    g = 10 ** rng.uniform(-2, 1.5, 25)
    data = rng.poisson(r_sm).astype(float)
    for d in (None, data):
        R = predictions(spectrum, g)
        cf = profile_eq26(R, r_sm, data=d)
        mn = profile_minuit(R, r_sm, data=d, statistic="eq26")
        assert mn.converged.all() and cf.converged.all()
        assert_allclose(cf.minimum, mn.minimum, rtol=1e-8, atol=1e-10)
        assert_allclose(cf["a"], mn["a"], rtol=1e-6, atol=1e-8)


def test_newton_agrees_with_minuit_for_poisson(spectrum):
    """Newton vs Minuit: |difference| <= 1e-8 max(1, value); Newton is never worse than Minuit."""
    rng = np.random.default_rng(7)
    r_sm = spectrum[0]
    g = 10 ** rng.uniform(-2, 1.5, 25)
    data = rng.poisson(r_sm).astype(float)
    for d in (None, data):
        R = predictions(spectrum, g)
        nt = profile_poisson(R, r_sm, data=d)
        mn = profile_minuit(R, r_sm, data=d, statistic="poisson")
        assert nt.converged.all() and mn.converged.all()
        tol = 1e-8 * np.maximum(1.0, np.abs(mn.minimum))
        assert np.all(np.abs(nt.minimum - mn.minimum) <= tol)
        assert np.all(nt.minimum <= mn.minimum + 1e-12 * np.maximum(1.0, mn.minimum))
        assert_allclose(nt["a"], mn["a"], atol=1e-5)


def test_newton_is_a_minimum_and_handles_extremes(spectrum):
    r_sm = spectrum[0]
    g = np.array([0.0, 1e-3, 0.5, 3.0, 1e2, 1e4])  # up to predictions ~1e15 x SM
    R = predictions(spectrum, g)
    data = r_sm.copy()
    data[:5] = 0.0
    res = profile_poisson(R, r_sm, data=data)
    assert res.converged.all()
    assert np.all(res["a"] > -1)
    for i in range(g.size):
        f0, b_hat = res.minimum[i], 1.0 + res["a"][i]
        for factor in (1 - 1e-4, 1 + 1e-4):
            f = poisson_twice_nll(b_hat * factor - 1.0, R[i], r_sm, data=data)
            assert f > f0 - 1e-12 * max(1.0, f0)


def test_newton_converges_in_few_iterations(spectrum):
    """Regression: a converged Newton step that lands on the bracket end must not trigger the
    bisection fallback (which made convergence linear, ~20+ iterations)."""
    r_sm = spectrum[0]
    R = predictions(spectrum, np.logspace(-3, 4, 400))
    assert profile_poisson(R, r_sm, max_iter=6).converged.all()


def test_newton_edge_cases(spectrum):
    r_sm = spectrum[0]
    R = np.stack([np.zeros_like(r_sm), r_sm])
    res = profile_poisson(R, r_sm)  # zero prediction: only the constraint depends on a
    assert res.converged.all() and res["a"][0] == 0.0 and res["a"][1] == pytest.approx(0.0)
    # no background, no counts, free normalisation: the best prediction is zero (a = -1)
    res = profile_poisson(R[1:], r_sm, data=np.zeros_like(r_sm), sigma_bg=0.0, sigma_sys=np.inf)
    assert res.converged.all() and res["a"][0] == -1.0 and res.minimum[0] == 0.0
    # same with a constraint: interior minimum at b = 1 - sigma_sys^2 sum R if positive
    small = 1e-4 * r_sm
    res = profile_poisson(small, r_sm, data=np.zeros_like(r_sm), sigma_bg=0.0)
    assert res.converged and float(res["a"]) == pytest.approx(-0.01 * small.sum(), rel=1e-9)


def test_profile_grid_dispatch(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, np.array([[0.1, 1.0], [2.0, 5.0]]))
    assert profile_grid(R, r_sm).method == "closed_form"
    res = profile_grid(R, r_sm, statistic="poisson")
    assert res.method == "newton" and res.statistic == "twice_nll" and res.minimum.shape == (2, 2)
    assert profile_grid(R[0], r_sm, profiler="minuit").method == "minuit"
    with pytest.raises(InvalidConfig, match="profiler"):
        profile_grid(R, r_sm, profiler="scipy")
    with pytest.raises(InvalidConfig, match="statistic"):
        profile_grid(R, r_sm, statistic="gauss")


def test_sigma_sys_limits(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, [0.5, 2.0])
    fixed = profile_eq26(R, r_sm, sigma_sys=0.0)
    assert np.all(fixed["a"] == 0.0)
    assert_allclose(fixed.minimum, eq26_chi2(0.0, R, r_sm), rtol=1e-14)
    free = profile_eq26(R, r_sm, sigma_sys=np.inf)
    almost_free = profile_eq26(R, r_sm, sigma_sys=1e8)
    assert_allclose(free.minimum, almost_free.minimum, rtol=1e-9)
    assert np.all(profile_poisson(R, r_sm, sigma_sys=0.0)["a"] == 0.0)


# --------------------------------------------------------------------------------------------
# numerics: the profiled chi2 as a sum of non-negative terms (PHYSICS.md sec. 7)
# --------------------------------------------------------------------------------------------
def test_profiled_chi2_is_exact_at_huge_coupling(spectrum):
    r_sm = spectrum[0]
    inv_sigma = 1.0 / np.sqrt(1.1 * r_sm)
    inv_s2 = _inv_sigma_sys2(0.1)
    for g in (1.0, 1e2, 1e3, 1e4):
        R = predictions(spectrum, g)
        v, d = R * inv_sigma, r_sm * inv_sigma
        # exact rational value of the profiled chi2 for these float inputs
        V = [Fraction(x) for x in v]
        U = [Fraction(x) - y for x, y in zip(d, V)]
        uu = sum(x * x for x in U)
        uv = sum(x * y for x, y in zip(U, V))
        vv = sum(x * x for x in V)
        exact = float(uu - uv * uv / (vv + Fraction(inv_s2)))
        got = float(profile_eq26(R, r_sm).minimum)
        # the property that matters: the package's value equals the exact one, on any CPU and BLAS
        # kernel (how wrong the expanded form u.u - (u.v)^2/(v.v + 1/s^2) is depends on the kernel)
        assert got >= 0
        assert got == pytest.approx(exact, rel=1e-12)


def test_profiled_statistics_are_non_negative_over_wide_range(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, np.logspace(-4, 5, 400))
    for res in (profile_eq26(R, r_sm), profile_poisson(R, r_sm)):
        assert np.all(res.minimum >= 0) and np.all(np.isfinite(res.minimum))
    # the large-g limit is finite: chi2 -> |d|^2 - (d.v_hat)^2 + 1/sigma_sys^2 for R ~ g^4 T2
    chi2 = profile_eq26(R, r_sm).minimum
    assert_allclose(chi2[-20:], chi2[-1], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def test_validation_messages(spectrum):
    r_sm = spectrum[0]
    R = predictions(spectrum, 1.0)
    with pytest.raises(UnphysicalInput, match="data.*negative"):
        eq26_chi2(0.0, R, r_sm, data=-r_sm)
    with pytest.raises(InvalidConfig, match="data.*bins"):
        eq26_chi2(0.0, R, r_sm, data=r_sm[:-1])
    with pytest.raises(UnphysicalInput, match="sigma_sys"):
        eq26_chi2(0.0, R, r_sm, sigma_sys=-0.1)
    with pytest.raises(UnphysicalInput, match="sigma_bg"):
        poisson_twice_nll(0.0, R, r_sm, sigma_bg=np.inf)
    zero = r_sm.copy()
    zero[-1] = 0.0
    with pytest.raises(UnphysicalInput, match="min_expected"):
        Eq26Chi2(R, zero)
    with pytest.raises(NumericalError, match="expected"):
        eq26_chi2(0.0, np.full_like(R, np.nan), r_sm)
    with pytest.raises(UnphysicalInput, match="1 \\+ a"):
        poisson_twice_nll(-1.5, R, r_sm)
    with pytest.raises(InvalidConfig, match="one hypothesis"):
        PoissonTwiceNLL(np.stack([R, R]), r_sm)

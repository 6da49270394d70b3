"""8B neutrino spectrum: shape against Bahcall's central table (issue 13, item 3), normalisation,
endpoint, and the R-matrix ingredients (alpha-alpha Coulomb penetrability and shift factor).

Reference: J.N. Bahcall's 8B table, best-estimate column (Bahcall, Lisi, Alburger, De Braeckeleer,
Freedman, Napolitano, "Standard neutrino spectrum from 8B decay", PRC 54 (1996) 411), as found in
``../shared/data/bahcall_solar_spectra`` (two public copies, see PROVENANCE.md there).  The package
never reads that folder; only these tests do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from nuinfer.physics import sources as src
from nuinfer.physics.sources import emissions

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")

# Bahcall et al., PRC 54 (1996) 411, 8B table (E [MeV], best, +3 sigma, -3 sigma); two copies
BAHCALL_B8 = {
    "SNuDD": "bahcall_solar_spectra/from_SNuDD/B8_neutrino_flux.txt",
    "thuxwr_SolarNu": "bahcall_solar_spectra/from_thuxwr_SolarNu/B8.dat",
}


def _b8():
    (e,) = emissions("8B")
    return e


def _table(copy):
    E, best = np.loadtxt(DATA / BAHCALL_B8[copy], usecols=(0, 1)).T
    return E, best / np.trapezoid(best, E)


@needs_data
@pytest.mark.parametrize("copy", list(BAHCALL_B8))
def test_b8_within_3_percent_of_bahcall_1996_central_table(copy):
    """Acceptance bar: |shape / table - 1| < 3 % on 1-15 MeV (Bahcall et al. PRC 54 (1996) 411,
    best estimate).  Measured 1.7 % (worst point 14.94 MeV, where the 7-digit table itself has
    ~1.5 % point-to-point roughness); before the R-matrix fix it was 45 % (15 MeV)."""
    E, best = _table(copy)
    m = _b8().shape(E)
    sel = (E >= 1.0) & (E <= 15.0)
    dev = np.abs(m[sel] / best[sel] - 1.0)
    assert dev.max() < 0.03, f"worst {dev.max():.4f} at {E[sel][np.argmax(dev)]} MeV"
    assert dev.max() < 0.02  # what is achieved (regression guard)
    # the bulk, 2-13 MeV, is much closer
    bulk = (E >= 2.0) & (E <= 13.0)
    assert np.abs(m[bulk] / best[bulk] - 1.0).max() < 0.006


@needs_data
@pytest.mark.parametrize("copy", list(BAHCALL_B8))
def test_b8_tail_above_14_MeV_matches_bahcall(copy):
    """Acceptance bar: unit-normalised integral above 14 MeV within 5 % of the table's.
    Measured 0.995x (table 6.625e-4, ours 6.59e-4); before the fix 1.18x."""
    E, best = _table(copy)
    e = _b8()
    ref = np.trapezoid(best[E >= 14.0], E[E >= 14.0])
    ours = quad(lambda x: float(e.shape(np.array([x]))[0]), 14.0, e.E_max, limit=200, epsrel=1e-10)[0]
    assert ours / ref == pytest.approx(1.0, abs=0.05)
    assert ours / ref == pytest.approx(1.0, abs=0.015)
    # and above 13.5 / 15 MeV (the region that feeds xenon recoils above ~3 keVnr)
    for lo, tol in ((13.5, 0.02), (15.0, 0.05)):
        r = np.trapezoid(best[E >= lo], E[E >= lo])
        o = quad(lambda x: float(e.shape(np.array([x]))[0]), lo, e.E_max, limit=200, epsrel=1e-10)[0]
        assert o / r == pytest.approx(1.0, abs=tol), lo


def test_b8_unit_normalisation_on_forward_model_panels():
    """The forward model integrates on Gauss-Legendre panels between the knots ``_B8_KNOTS``; the
    shape integrates to 1 within 1e-6 there and with adaptive quadrature (measured 3e-7, 2e-7)."""
    e = _b8()
    assert e.knots == src._B8_KNOTS
    for n in (16, 32, 48):
        nodes, w = e.quadrature(n)
        assert np.sum(w * e.shape(nodes)) == pytest.approx(1.0, abs=1e-6)
    k = src._B8_KNOTS
    total = sum(
        quad(lambda x: float(e.shape(np.array([x]))[0]), k[i], k[i + 1], epsabs=0, epsrel=1e-12, limit=200)[0]
        for i in range(len(k) - 1)
    )
    assert total == pytest.approx(1.0, abs=1e-6)


def test_b8_non_negative_and_vanishes_at_endpoint():
    e = _b8()
    E = np.linspace(-1.0, 18.0, 38001)
    y = e.shape(E)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    assert np.all(y[(E <= 0) | (E >= src.B8_E_NU_MAX)] == 0)
    assert e.E_max == src.B8_E_NU_MAX
    assert float(e.shape(np.array([src.B8_E_NU_MAX]))[0]) == 0.0
    # the l = 2 Coulomb barrier empties the last 0.5 MeV below the endpoint (measured 2e-8 MeV^-1
    # at 16.46 MeV, where Bahcall's 7-digit table reads 0.0000000), and it falls monotonically to 0
    near = e.shape(src.B8_E_NU_MAX - np.array([0.5, 0.1, 0.01, 1e-4]))
    assert np.all(np.diff(near) < 0) and near[0] < 5e-8
    # falls monotonically above the peak
    hi = (E > 7.0) & (E < src.B8_E_NU_MAX)
    assert np.all(np.diff(y[hi]) <= 0)


def test_b8_mean_energy():
    """Bahcall's table gives <E> = 6.7354 MeV; ours 6.7348 MeV."""
    assert _b8().mean_energy() == pytest.approx(6.7354, rel=5e-4)


def test_b8_parameters_and_channel_radius_reachable():
    """The computed shape is a function of (E_1, gamma_1^2, b_2) and the channel radius; defaults
    reproduce the cached shape, other values change it."""
    E = np.array([5.0, 10.0, 14.0])
    base = src.b8_spectrum(E)
    assert np.allclose(src.b8_spectrum(E, src.B8_LEVEL_PARAMS, src.BE8_CHANNEL_RADIUS_FM), base, rtol=1e-14)
    other = src.b8_spectrum(E, (3.2778, 2.2335, -18.2816), 4.0)  # the a = 4.0 fm fit
    assert np.all(other > 0)
    r = (other / other[0]) / (base / base[0])
    assert np.abs(r - 1).max() < 0.05


def test_final_state_density_regular_at_level_energies():
    E1 = src.B8_LEVEL_PARAMS[0]
    E2 = src.BE8_DOUBLET[0]
    x = np.array([-0.1, 0.0, 0.5, E1, 5.0, E2, 16.9])
    rho = src.be8_final_state_density(x)
    assert np.all(np.isfinite(rho)) and np.all(rho >= 0)
    assert rho[0] == 0.0
    grid = np.linspace(0.0, 10.0, 2001)
    peak = grid[np.argmax(src.be8_final_state_density(grid))]
    assert 2.0 < peak < 3.5  # the broad 2+ level near 3 MeV


def test_penetrability_against_mpmath():
    """Exact Coulomb P_2, S_2 at a = 4.5 fm against mpmath's Coulomb functions (measured ~1e-12)."""
    mpmath = pytest.importorskip("mpmath")
    E = np.array([src.BE8_GS_ABOVE_2ALPHA, 0.5, 3.0, 17.0])
    P, S = src.alpha_alpha_penetrability(E, 2, 4.5)
    mu = 0.5 * src.M_ALPHA
    for i, e in enumerate(E):
        k = np.sqrt(2 * mu * e) / src.HBARC_MEV_FM
        eta = src._AA_ETA_K / k
        rho = k * 4.5
        F = mpmath.coulombf(2, eta, rho)
        G = mpmath.coulombg(2, eta, rho)
        dF = mpmath.diff(lambda r: mpmath.coulombf(2, eta, r), rho)
        dG = mpmath.diff(lambda r: mpmath.coulombg(2, eta, r), rho)
        assert P[i] == pytest.approx(float(rho / (F**2 + G**2)), rel=1e-8)
        assert S[i] == pytest.approx(float(rho * (F * dF + G * dG) / (F**2 + G**2)), rel=1e-8, abs=1e-9)


def test_penetrability_threshold_behaviour_and_interpolation():
    E = np.geomspace(src.BE8_GS_ABOVE_2ALPHA, 16.0, 50)
    P2, _ = src.alpha_alpha_penetrability(E, 2, 4.5)
    P0, _ = src.alpha_alpha_penetrability(E, 0, 4.5)
    assert np.all(np.diff(P2) > 0) and np.all(P2 < P0)
    assert P2[0] / P0[0] < 0.05  # centrifugal suppression near threshold (absent from an l = 0 form)
    # the cached splines used by the density reproduce the exact functions
    ln_p, s_fn = src._be8_channel_functions(src.BE8_CHANNEL_RADIUS_FM)
    x = np.geomspace(0.1, 17.0, 333)
    P, S = src.alpha_alpha_penetrability(x)
    assert np.abs(np.exp(ln_p(np.log(x))) / P - 1).max() < 1e-7
    assert np.abs(s_fn(np.log(x)) - S).max() < 1e-7


@needs_data
@pytest.mark.slow
def test_b8_cevns_above_3_kevnr_matches_bahcall_table():
    """The symptom of issue 13: 8B CEvNS on xenon above 3 keVnr was ~25 % above the rate computed
    with Bahcall's table.  Now 0.0325 vs 0.0326 events / tonne-year (paper flux 5.29e6)."""
    from nuinfer import Binning, Detector, ForwardModel, Quenching
    from nuinfer.physics.sources import from_table

    tab = from_table("8B", DATA / BAHCALL_B8["SNuDD"], usecols=(0, 1), flux=5.29e6)
    kw = dict(sources=["8B"], binning=Binning(3.0, 200.0, 40), detector=Detector(Quenching("none")))
    ours = float(ForwardModel("cevns", **kw).sm_spectrum()["total"].sum())
    ref = float(ForwardModel("cevns", user_tables={"8B": tab}, **kw).sm_spectrum()["total"].sum())
    assert ours == pytest.approx(ref, rel=0.03)


def test_shipped_table_is_the_exact_spectrum():
    """The default spectrum is read from nuinfer/data/b8_spectrum_table.txt (speed, issue 16): the
    interpolant equals b8_spectrum_exact to 3e-8 of the peak everywhere (the exact quadrature's own
    accuracy) and to 1e-8 relative on 1-15 MeV; a table for other constants is not used."""
    assert src._b8_table() is not None, "the shipped 8B table is missing or stale (scripts/make_b8_table.py)"
    E = np.sort(np.random.default_rng(7).uniform(0.0, src.B8_E_NU_MAX, 4000))
    fast, exact = src.b8_spectrum(E), src.b8_spectrum_exact(E)
    peak = exact.max()
    assert np.max(np.abs(fast - exact)) < 3e-8 * peak
    mid = (E > 1.0) & (E < 15.0)
    assert np.max(np.abs(fast[mid] / exact[mid] - 1.0)) < 1e-8
    # other parameters go to the exact computation (no table)
    p = (3.3, 1.1825, -19.0161)
    np.testing.assert_array_equal(src.b8_spectrum(E[:50], p), src.b8_spectrum_exact(E[:50], p))


def test_shipped_table_regenerates_from_its_script():
    import importlib.util
    script = Path(__file__).parents[1] / "scripts" / "make_b8_table.py"
    spec = importlib.util.spec_from_file_location("make_b8_table", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    E, f, d = src._b8_table()
    t = mod.table()
    np.testing.assert_allclose(t[:, 0], E, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t[:, 1], f, rtol=1e-12, atol=1e-12 * f.max())
    np.testing.assert_allclose(t[:, 2], d, rtol=1e-9, atol=1e-9 * np.abs(d).max())

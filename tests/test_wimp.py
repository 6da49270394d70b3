"""WIMP spin-independent spectra (issue 9, item 1): halo integral, normalisation, binning, 8B mimicry.

Reference numbers and their sources
-----------------------------------
* Lewin & Smith, Astropart. Phys. 6 (1996) 87, Eq. (3.1) with (2.2): total rate of a point nucleus
  at rest in a Maxwellian halo, ``R0 = 503 / (M_D M_T) (sigma_0 / pb) (rho / 0.4 GeV cm^-3)
  (v0 / 230 km/s)`` events / (kg day), masses in GeV.
* wimprates (J. Aalbers et al., github.com/JelleAalbers/wimprates, ``tests/test_wimprates.py``):
  ``rate_wimp_std(1 keV, mw=50, sigma_nucleon=1e-45) = 33.19098343826968`` events/(t yr keV) for
  xenon (A = 131.293, masses in amu), v0 = 220, v_E = 232, v_esc = 544 km/s, rho = 0.3 GeV/cm^3.  That
  version's speed distribution multiplies by the escape normalisation ``N_esc`` where it should divide
  (it integrates to N_esc^2 = 0.9868; checked below), so the comparison divides the reference by N_esc^2.
* Review (De Romeri 2023, Fig. 4 and text, after Billard, Strigari, Figueroa-Feliciano, PRD 89
  (2014) 023524): 8B solar neutrinos mimic a WIMP of ~6 GeV at ~5e-45 cm^2.

About the issue's "0.1-1 events per tonne-year" for 100 GeV, 1e-45 cm^2: that range is per *kilogram*-year.
The rate pinned by the two references above is 175 events per tonne-year above 5 keVnr (0.18 per kg yr),
consistent with XENON1T's 1 t yr excluding ~1e-46 cm^2 at 100 GeV with a handful of events.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf

from nuinfer.constants import AMU, M_E
from nuinfer.physics.detector import Binning, Detector, Quenching
from nuinfer.exceptions import UnphysicalInput
from nuinfer.physics import wimp
from nuinfer.physics.targets import Isotope, Target, get_target

SHM = wimp.StandardHalo()


def _eta_numeric(v_min, halo):
    """int f(v)/v d^3v by direct quadrature of the boosted, truncated Maxwellian (speed x angle)."""
    v0, vE, vesc = halo.v0_km_s, halo.v_E_km_s, halo.v_esc_km_s
    z = vesc / v0
    norm = np.pi**1.5 * v0**3 * (erf(z) - 2 * z * np.exp(-z * z) / np.sqrt(np.pi))

    def ang(v):  # int dcos f(|v + vE|) over the allowed cosines, times 2 pi v^2 / v
        if vE == 0:
            return 4 * np.pi * v * np.exp(-v * v / v0**2) * (v < vesc) / norm
        cmax = min(1.0, (vesc**2 - v * v - vE**2) / (2 * v * vE))
        if cmax <= -1:
            return 0.0
        # int_{-1}^{cmax} exp(-(v^2 + vE^2 + 2 v vE c)/v0^2) dc
        a = 2 * v * vE / v0**2
        val = np.exp(-(v * v + vE * vE) / v0**2) * (np.exp(a) - np.exp(-a * cmax)) / a
        return 2 * np.pi * v * val / norm

    return quad(ang, v_min, vesc + vE, limit=400, epsabs=0, epsrel=1e-11,
                points=[max(v_min, vesc - vE)] if vE else None)[0]


@pytest.mark.parametrize("halo", [SHM, wimp.StandardHalo(v_E_km_s=0.0), wimp.StandardHalo(v0_km_s=220, v_E_km_s=232)])
@pytest.mark.parametrize("v_min", [0.0, 150.0, 300.0, 400.0, 600.0, 780.0])
def test_eta_closed_form_matches_quadrature(halo, v_min):
    ref = _eta_numeric(max(v_min, 1e-9), halo)
    assert float(wimp.eta(v_min, halo)) == pytest.approx(ref, rel=1e-7, abs=1e-14)


def test_eta_vanishes_beyond_maximum_speed_and_is_decreasing():
    v = np.linspace(0, 900, 901)
    e = wimp.eta(v, SHM)
    assert np.all(np.diff(e) <= 1e-15)
    assert np.all(e[v >= SHM.v_max_km_s] == 0)
    assert e[v < SHM.v_max_km_s - 1].min() > 0


def test_lewin_smith_R0_normalisation():
    """Point nucleus (F = 1), detector at rest (v_E = 0), no escape cut: the total rate is Lewin &
    Smith's R0 = 503/(M_D M_T) (sigma_0/pb) (rho/0.4) (v0/230) per kg day (3 significant digits)."""
    halo = wimp.StandardHalo(rho_GeV_cm3=0.4, v0_km_s=230.0, v_esc_km_s=1e5, v_E_km_s=0.0)
    tgt = get_target("Xe132")
    m_T = tgt.isotopes[0].m_N / 1e3
    m_D = 100.0
    R = wimp.total_rate(m_D, 1e-45, target=tgt, halo=halo, form_factor=False)
    mu = lambda a, b: a * b / (a + b)
    sigma0_pb = 1e-45 * 132**2 * (mu(m_D, m_T) / mu(m_D, 0.93827209)) ** 2 / 1e-36
    R0 = 503.0 / (m_D * m_T) * sigma0_pb * 1e3 * 365.25  # per tonne year
    assert R == pytest.approx(R0, rel=1.5e-3)


def test_against_wimprates_reference_value():
    """dR/dE at 1 keVnr, 50 GeV, 1e-45 cm^2 in wimprates' conventions (module docstring)."""
    m_nucleus_u = 131.293
    xe = Target("XeW", 54, (Isotope(54, 131.293, 1.0, m_nucleus_u + 54 * M_E / AMU),))
    halo = wimp.StandardHalo(rho_GeV_cm3=0.3, v0_km_s=220.0, v_esc_km_s=544.0, v_E_km_s=232.0)
    ours = float(wimp.dR_dEnr(1.0, 50.0, 1e-45, target=xe, halo=halo, nucleon_mass_MeV=AMU))
    z = 544.0 / 220.0
    n_esc = erf(z) - 2 * z * np.exp(-z * z) / np.sqrt(np.pi)
    ref = 33.19098343826968 / n_esc**2
    # 0.3 %: the two Helm parametrisations (R = 1.2 A^1/3 fm vs Lewin & Smith's c = 1.23 A^1/3 - 0.6 fm,
    # a = 0.52 fm) differ by 0.13 % in F^2 at 1 keV
    assert ours == pytest.approx(ref, rel=3e-3)


def test_rate_100GeV_1e45_xenon_is_per_kg_year_order_one_tenth():
    """100 GeV, 1e-45 cm^2, natural xenon, SHM of Baxter et al. 2021: the issue says 0.1-1 per
    tonne-year; the correct statement is 0.1-1 per kg-year (module docstring)."""
    above5 = wimp.total_rate(100.0, 1e-45, E_lo_keV=5.0)
    roi = wimp.total_rate(100.0, 1e-45, E_lo_keV=4.9, E_hi_keV=40.9)  # XENON1T's energy window
    assert 0.1 < above5 / 1e3 < 1.0  # per kg year
    # value pinned by the two normalisation tests above; 1 % covers quadrature and Helm differences
    assert above5 == pytest.approx(175.4, rel=1e-2)
    assert roi == pytest.approx(166.1, rel=1e-2)
    # integrating the differential rate agrees with total_rate
    E = np.linspace(5.0, 200.0, 20001)
    trap = np.trapezoid(wimp.dR_dEnr(E, 100.0, 1e-45), E)
    assert trap == pytest.approx(wimp.total_rate(100.0, 1e-45, E_lo_keV=5.0, E_hi_keV=200.0), rel=1e-6)


def test_spectrum_scales_and_kinematics():
    E = np.geomspace(0.01, 100, 50)
    r1 = wimp.dR_dEnr(E, 30.0, 1e-46)
    r2 = wimp.dR_dEnr(E, 30.0, 2e-46)
    np.testing.assert_allclose(r2, 2 * r1, rtol=1e-14)
    emax = max(wimp.e_nr_max(6.0, i.m_N, SHM) for i in get_target("Xe").isotopes) * 1e3
    assert np.all(wimp.dR_dEnr(E[E > emax * 1.001], 6.0) == 0)
    assert wimp.dR_dEnr(0.5 * emax, 6.0) > 0


def test_binned_counts_integrate_between_mapped_edges():
    q = Quenching("lindhard", k=0.166)
    det = Detector(q)
    b = Binning(0.05, 50.0, 30)
    counts = wimp.binned_counts([10.0, 100.0], b, det, sigma_n_cm2=1e-46, exposure_tonne_year=2.0)
    assert counts.shape == (2, 30)
    e_nr = q.e_nr(b.edges)
    for k, m in enumerate((10.0, 100.0)):
        tot = 2.0 * wimp.total_rate(m, 1e-46, E_lo_keV=e_nr[0], E_hi_keV=e_nr[-1], n_panels=400)
        assert counts[k].sum() == pytest.approx(tot, rel=1e-6)
        # one bin by direct quadrature
        i = 12
        ref = 2.0 * wimp.total_rate(m, 1e-46, E_lo_keV=e_nr[i], E_hi_keV=e_nr[i + 1], n_panels=50)
        assert counts[k, i] == pytest.approx(ref, rel=1e-8)
    one = wimp.binned_counts(10.0, b, det, sigma_n_cm2=1e-46, exposure_tonne_year=2.0)
    np.testing.assert_allclose(one, counts[0], rtol=1e-14)


def test_invalid_inputs_name_the_key():
    with pytest.raises(UnphysicalInput, match="halo.v_esc_km_s"):
        wimp.StandardHalo(v_esc_km_s=200.0, v_E_km_s=250.0)
    with pytest.raises(UnphysicalInput, match="m_chi_GeV"):
        wimp.dR_dEnr(1.0, -5.0)
    with pytest.raises(UnphysicalInput, match="sigma_n_cm2"):
        wimp.dR_dEnr(1.0, 5.0, float("nan"))


def test_8B_spectrum_mimics_a_6GeV_wimp():
    """Best-fit WIMP (free normalisation) to the binned 8B CEvNS spectrum alone: 4-9 GeV, ~5e-45 cm^2."""
    from nuinfer.tasks.floor import b8_mimic
    from nuinfer.forward import ForwardModel
    b = Binning(1e-3, 100.0, 60)
    fm = ForwardModel("cevns", sources=("8B",), binning=b)
    B8 = fm.sm_spectrum()["counts"].sel(source="8B").values
    masses = np.geomspace(2.0, 30.0, 90)
    W = wimp.binned_counts(masses, b, fm.detector)
    res = b8_mimic(B8, W, masses)
    assert 4.0 < res["m_GeV"] < 9.0
    assert 1e-45 < res["sigma_cm2"] < 1e-44
    assert res["chi2_per_event"] < 0.01  # the shapes agree to better than 1 % per event
    # the 0.1 keVee threshold of the paper's CEvNS analysis gives the same answer
    b2 = Binning(0.1, 100.0, 60)
    fm2 = ForwardModel("cevns", sources=("8B",), binning=b2)
    res2 = b8_mimic(fm2.sm_spectrum()["counts"].sel(source="8B").values,
                    wimp.binned_counts(masses, b2, fm2.detector), masses)
    assert 4.0 < res2["m_GeV"] < 9.0

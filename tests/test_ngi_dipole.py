"""NGI with simultaneous S, V, T (review Eq. 3) and the sterile-neutrino dipole portal (review Eq. 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from nuinfer.constants import HBARC2_MEV2_CM2, SECONDS_PER_YEAR, tonne_year_targets
from nuinfer.physics.detector import Binning, Detector, Quenching
from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.forward import ForwardModel
from nuinfer.tasks import contour, scan
from nuinfer.physics import cevns, dipole, ngi
from nuinfer.physics import terrestrial as ter
from nuinfer.physics.targets import get_target

GE72 = get_target("Ge72").isotopes[0]


@pytest.fixture(scope="module")
def reactor_fm():
    src = ter.reactor_sources(2.96, 10.39)
    return ForwardModel("cevns", target="Ge", sources=tuple(src), user_tables=src,
                        binning=Binning(0.2, 1.5, 13, "linear"),
                        detector=Detector(Quenching("lindhard_adiabatic", k=0.157, Z=32)),
                        exposure_tonne_year=2.924e-3 * 96.4 / 365.25)


@pytest.fixture(scope="module")
def pidar_fm():
    src = ter.pion_dar_sources(1.76e23, 19.3, 308.1 * 86400)
    return ForwardModel("cevns", target="CsI", sources=tuple(src), user_tables=src,
                        binning=Binning(0.5, 3.0, 10, "linear"),
                        detector=Detector(Quenching("constant", value=0.0878)), exposure_tonne_year=0.0123)


# ------------------------------------------------------------------------------------ NGI
@pytest.mark.parametrize("name", ["S", "V", "T"])
def test_ngi_single_coupling_equals_table_I_model(name):
    E_nu = np.linspace(2.0, 10.0, 9)[:, None]
    E_r = np.geomspace(1e-5, 2e-3, 7)[None, :]
    g, m = 4e-5, 7.0
    a = ngi.dsigma_dEr(E_nu, E_r, GE72, **{f"g_{name}": g, f"m_{name}": m})
    b = cevns.dsigma_dEnr(E_nu, E_r, GE72, name, g, m)
    assert a == pytest.approx(b, rel=1e-12, abs=0)


def test_ngi_sm_limit_and_incoherent_sum():
    E_nu, E_r = 8.0, np.geomspace(1e-5, 1e-3, 5)
    assert ngi.dsigma_dEr(E_nu, E_r, GE72) == pytest.approx(cevns.dsigma_dEnr(E_nu, E_r, GE72), rel=1e-12)
    kw = {"g_S": 3e-5, "m_S": 2.0, "g_V": 2e-5, "m_V": 30.0, "g_T": 1e-5, "m_T": 5.0}
    both = ngi.dsigma_dEr(E_nu, E_r, GE72, **kw)
    sm = cevns.dsigma_dEnr(E_nu, E_r, GE72)
    parts = sum(cevns.dsigma_dEnr(E_nu, E_r, GE72, x, kw[f"g_{x}"], kw[f"m_{x}"]) - sm for x in "SVT") + sm
    assert both == pytest.approx(parts, rel=1e-12)


def test_ngi_model_counts_exact(reactor_fm):
    model = ngi.NGIModel(reactor_fm)
    g = np.array([5e-6, 2e-5])
    m = np.array([1.0, 40.0])
    c = model.counts(g_V=g, m_V=m)
    d = np.stack([reactor_fm.spectrum("V", gi, mi)["total"].values for gi, mi in zip(g, m)])
    assert c == pytest.approx(d, rel=1e-10, abs=1e-12)
    # simultaneous S + V + T = SM + sum of the single-coupling excesses (no S-V-T interference)
    kw = {"g_S": [1e-5], "m_S": [3.0], "g_V": [2e-5], "m_V": [10.0], "g_T": [2e-5], "m_T": [100.0]}
    all3 = model.counts(**kw)[0]
    sm = reactor_fm.sm_spectrum()["total"].values
    single = sum(model.counts(**{f"g_{x}": kw[f"g_{x}"], f"m_{x}": kw[f"m_{x}"]})[0] - sm for x in "SVT")
    assert all3 == pytest.approx(sm + single, rel=1e-10)
    assert model.counts()[0] == pytest.approx(sm, rel=1e-12)
    with pytest.raises(InvalidConfig):
        model.counts(g_V=[1e-5])  # mass missing
    with pytest.raises(UnphysicalInput):
        model.counts(g_V=[1e-5], m_V=[-1.0])


# ------------------------------------------------------------------------------------ dipole
def test_dipole_massless_limit_is_magnetic_moment():
    E_nu = np.linspace(2.0, 50.0, 11)[:, None]
    E_r = np.geomspace(1e-5, 1e-2, 9)[None, :]
    a = dipole.dsigma_dEr(E_nu, E_r, GE72, mu=1e-10, m4=1e-6)
    b = dipole.magnetic_moment_dsigma(E_nu, E_r, GE72, mu=1e-10)
    assert a == pytest.approx(b, rel=1e-9, abs=0)
    # exactly m4 = 0: identical (the massive terms vanish)
    assert dipole.dsigma_dEr(E_nu, E_r, GE72, 1e-10, 0.0) == pytest.approx(b, rel=1e-13, abs=0)
    # Vogel-Engel prefactor: pi alpha^2 / m_e^2 in MeV^-2
    assert dipole.MU_B_PREFACTOR == pytest.approx(math.pi / 137.035999**2 / 0.51099895**2, rel=1e-12)


def test_dipole_rate_tends_to_massless_form(reactor_fm):
    r0 = dipole.dipole_counts(reactor_fm, 0.0)
    on = r0 > 0
    assert on[:4].all()  # bins above the kinematic endpoint of 10 MeV neutrinos are empty
    for m4 in (1e-3, 1e-2):
        r = dipole.dipole_counts(reactor_fm, m4)
        assert r == pytest.approx(r0, rel=5e-4)
    assert np.all(dipole.dipole_counts(reactor_fm, 3.0)[on] < r0[on])


def test_dipole_rate_vanishes_above_kinematic_bound(reactor_fm, pidar_fm):
    # reactor spectrum ends at 10 MeV: m4 <= m4_bound(10 MeV) ~ 10 MeV (review: m4 <~ 8 MeV for
    # Dresden-II, whose spectrum is taken to end at 8 MeV)
    m_ge = get_target("Ge").isotopes[1].m_N
    assert dipole.m4_bound(8.0, m_ge) == pytest.approx(8.0, rel=1e-3)
    bound = dipole.m4_bound(10.0, m_ge)
    assert dipole.dipole_counts(reactor_fm, 1.01 * bound).sum() == 0.0
    assert dipole.dipole_counts(reactor_fm, 12.0).sum() == 0.0
    assert dipole.dipole_counts(reactor_fm, 7.0).sum() > 0.0
    # pi-DAR: everything ends at the Michel endpoint 52.8 MeV
    assert dipole.dipole_counts(pidar_fm, 60.0).sum() == 0.0
    assert dipole.dipole_counts(pidar_fm, 20.0).sum() > 0.0
    # pointwise: zero below E_nu^min(E_r, m4), i.e. when m4 exceeds the bound at that (E_nu, E_r)
    E_r = 1e-3
    mmax = dipole.m4_max(10.0, m_ge, E_r)
    assert dipole.dsigma_dEr(10.0, E_r, GE72, 1.0, 1.001 * mmax) == 0.0
    assert dipole.dsigma_dEr(10.0, E_r, GE72, 1.0, 0.99 * mmax) > 0.0
    assert dipole.enu_min(E_r, m_ge, mmax) == pytest.approx(10.0, rel=1e-9)


def test_dipole_kernel_matches_direct_integral_for_the_prompt_line(pidar_fm):
    # the prompt nu_mu line: counts per bin = flux x targets x time x int dsigma(E_line, E_r) dE_r
    m4 = 5.0
    per = dipole.dipole_counts(pidar_fm, m4, per_source=True)
    line = per[list(pidar_fm.sources).index("pidar_numu")]
    E_line = ter.PION_DAR_LINE_MEV
    phi = pidar_fm.channels[0].line_flux
    q = pidar_fm.detector.quenching
    edges_nr = q.e_nr(pidar_fm.binning.edges) * 1e-3  # MeV
    n_units = tonne_year_targets(pidar_fm.target.molar_mass) * pidar_fm.exposure_tonne_year * SECONDS_PER_YEAR
    expect = np.zeros(pidar_fm.binning.nbins)
    for iso in pidar_fm.target.isotopes:
        for i in range(expect.size):
            val = quad(lambda e, iso=iso: float(dipole.dsigma_dEr(E_line, e, iso, 1.0, m4)), edges_nr[i],
                       edges_nr[i + 1],
                       limit=200, epsrel=1e-10, points=None)[0]
            expect[i] += phi * n_units * iso.abundance * val * HBARC2_MEV2_CM2
    assert line == pytest.approx(expect, rel=1e-3)


def test_dipole_templates_plug_into_the_scan(reactor_fm):
    m4 = np.geomspace(0.1, 15.0, 8)
    T = dipole.dipole_templates(reactor_fm, m4)
    assert T["T"].sel(power=2).values.max() == 0.0
    assert np.all(T["T"].sel(power=1).values[-1] == 0.0)  # 15 MeV > bound
    ds = scan(T, np.geomspace(1e-11, 1e-7, 30), statistic="poisson")
    res = contour(ds)
    assert np.isfinite(res.g90.values[:5]).all()
    assert np.isnan(res.g90.values[-1])  # nothing to exclude above the bound
    assert res.g90.values[0] < res.g90.values[4]
    with pytest.raises(UnphysicalInput):
        dipole.dipole_templates(reactor_fm, [0.0, 1.0])


def test_dipole_in_the_existing_forward_and_config_paths(tmp_path):
    # the dipole is a model name of the existing CEvNS path: spectrum, templates, TOML analyses
    from nuinfer.spec import xenon as config
    from nuinfer.tasks import xenon as workflows
    from nuinfer.physics.mediators import canonical_model
    assert canonical_model("dipole_portal") == "dipole"
    fm = ForwardModel("cevns", sources=("8B",), binning=Binning(0.1, 1.0, 6))
    sm = fm.sm_spectrum()["counts"].values
    sp = fm.spectrum("dipole", 1e-10, 0.5)["counts"].values
    assert sp == pytest.approx(sm + 1e-20 * dipole.dipole_counts(fm, 0.5, per_source=True), rel=1e-12)
    T = fm.templates("dipole", [0.1, 1.0])
    assert T.attrs["model"] == "dipole"
    with pytest.raises(InvalidConfig, match="dipole"):
        cevns.coefficients(1e-3, GE72, "dipole")
    with pytest.raises(InvalidConfig, match="dipole"):
        fm.node_weights("dipole")
    with pytest.raises(InvalidConfig, match="CEvNS only"):
        ForwardModel("eves", binning=Binning(1.0, 10.0, 3)).templates("dipole", [1.0])
    ana = config.load({"process": "cevns", "sources": ["8B"], "models": ["dipole"],
                       "binning": {"lo": 0.1, "hi": 1.0, "n": 6},
                       "scan": {"m_X_MeV": {"lo": 0.01, "hi": 10.0, "n": 5},
                                "g_X": {"lo": 1e-12, "hi": 1e-8, "n": 9}}})
    ds = workflows.scan_model(ana, "dipole")
    assert np.isfinite(contour(ds).g90.values).any()

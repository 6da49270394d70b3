"""Terrestrial sources (reactor, pi-DAR), new targets, form factors and quenching.

Sources of the numbers are given next to each check.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import quad

from nuinfer.physics.detector import Binning, Detector, Quenching, lindhard_k
from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.forward import ForwardModel
from nuinfer.physics import cevns
from nuinfer.physics import terrestrial as ter
from nuinfer.physics.targets import get_target

# ------------------------------------------------------------------------------------ reactor


def test_reactor_bookkeeping_1GW_10m():
    # "about 1.5e13 antineutrinos cm^-2 s^-1 at 10 m from 1 GW thermal": 1e9 W / (200 MeV/fission)
    # x 6 nu/fission / (4 pi (10 m)^2) = 1.49e13 (issue 8; e.g. Bernstein et al., Sci. Glob. Sec. 18
    # (2010) 127 quote 200 MeV and 6 antineutrinos per fission).
    phi = ter.reactor_flux(1.0, 10.0)
    assert 1.2e13 < phi < 1.8e13
    n = ter.neutrinos_per_fission()
    assert 5.0 < n < 7.0  # "about 6 per fission"
    e = ter.mean_energy_per_fission()
    assert 195.0 < e < 215.0  # "about 200 MeV per fission" (Ma et al. 2013: 202-214 MeV per isotope)
    # exact bookkeeping: flux = P / E_f x N / (4 pi L^2)
    fr = ter.fission_rate(1.0)
    assert fr == pytest.approx(1e9 / (e * 1.602176634e-13), rel=1e-12)
    assert phi == pytest.approx(fr * n / (4 * math.pi * 1000.0**2), rel=1e-12)


def test_reactor_integral_above_2MeV_matches_huber_mueller_sum():
    # The forward model's channel carries sum_k f_k exp(poly_k) (Huber 2011 / Mueller 2011
    # coefficients) above 2 MeV: its integral from 2 MeV must match an independent quadrature of
    # that sum to 1% (issue 8 bar); in practice to 1e-6.
    fr = ter.DEFAULT_FISSION_FRACTIONS
    src = ter.reactor_sources(2.0, 15.0, fr)
    fm = ForwardModel("cevns", target="Ge", sources=tuple(src), user_tables=src,
                      binning=Binning(0.3, 1.0, 3), exposure_tonne_year=1e-3)
    ch = fm.channels[0]
    integral_fm = float(ch.moments(np.array([2.0]))[0, 0])

    def hm_sum(E):
        return sum(f * math.exp(sum(a * E**p for p, a in enumerate(ter.HUBER_MUELLER[k]))) for k, f in fr.items())

    per_fission = quad(hm_sum, 2.0, 10.0, limit=200, epsabs=0, epsrel=1e-10)[0]
    expected = ter.fission_rate(2.0, fr) * per_fission / (4 * math.pi * 1500.0**2)
    assert integral_fm == pytest.approx(expected, rel=1e-2)
    assert integral_fm == pytest.approx(expected, rel=1e-5)


def test_reactor_spectrum_values_and_low_energy_treatment():
    # exp(sum a_p E^p) of Huber's 235U fit at 4 MeV
    a = ter.HUBER_MUELLER["U235"]
    assert ter.isotope_spectrum(4.0, "U235") == pytest.approx(math.exp(sum(c * 4.0**p for p, c in enumerate(a))))
    # continuous at 2 MeV (Vogel-Engel below, rescaled), zero below 2 MeV with "none"
    for iso in ter.FISSILE_ISOTOPES:
        lo = ter.isotope_spectrum(2.0 - 1e-9, iso)
        hi = ter.isotope_spectrum(2.0, iso)
        assert lo == pytest.approx(hi, rel=1e-7)
    assert ter.isotope_spectrum(1.0, "U235", low_energy="none") == 0.0
    assert ter.isotope_spectrum(11.0, "U235") == 0.0
    # Mueller 2011 and Huber-Mueller share 238U
    assert ter.isotope_spectrum(5.0, "U238", model="M") == ter.isotope_spectrum(5.0, "U238", model="HM")
    with pytest.raises(UnphysicalInput, match="sum to 1"):
        ter.reactor_flux(1.0, 10.0, {"U235": 0.5})
    with pytest.raises(InvalidConfig, match="fissile"):
        ter.reactor_flux(1.0, 10.0, {"U233": 1.0})
    with pytest.raises(UnphysicalInput):
        ter.reactor_flux(-1.0, 10.0)


def test_reactor_emission_is_unit_normalised_antineutrino():
    src = ter.reactor_sources(2.96, 10.39)
    (em,) = src["reactor"]
    assert em.anti and em.flavour == "e"
    x, w = np.polynomial.legendre.leggauss(64)
    edges = np.r_[0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    total = 0.0
    for a, b in itertools.pairwise(edges):
        total += np.sum(0.5 * (b - a) * w * em.shape(0.5 * (b - a) * x + 0.5 * (a + b)))
    assert total == pytest.approx(1.0, rel=1e-6)
    assert em.flux == pytest.approx(ter.reactor_flux(2.96, 10.39), rel=1e-12)


# ------------------------------------------------------------------------------------ pi-DAR


def test_pion_dar_three_neutrinos_per_decay_line_and_michel_endpoints():
    # pi+ -> mu+ nu_mu (line), mu+ -> e+ nu_e nubar_mu: 3 neutrinos per pi+ decay at rest
    pot, L, T, r = 1.76e23, 19.3, 308.1 * 86400.0, 0.08
    src = ter.pion_dar_sources(pot, L, T, nu_per_proton=r)
    ems = [e for v in src.values() for e in v]
    assert len(ems) == 3
    decays = r * pot / (4 * math.pi * (L * 100.0) ** 2 * T)  # pi+ decays per cm^2 per s at L
    assert sum(e.flux for e in ems) / decays == pytest.approx(3.0, rel=1e-12)
    line = [e for e in ems if e.is_line]
    assert len(line) == 1 and line[0].flavour == "mu" and not line[0].anti
    assert line[0].line_energy == pytest.approx(29.8, abs=0.01)  # (m_pi^2 - m_mu^2)/(2 m_pi) = 29.79 MeV
    assert ter.MICHEL_ENDPOINT_MEV == pytest.approx(52.8, abs=0.05)  # ~ m_mu / 2
    delayed = {(e.flavour, e.anti): e for e in ems if not e.is_line}
    assert set(delayed) == {("e", False), ("mu", True)}
    W = ter.MICHEL_ENDPOINT_MEV
    for e in delayed.values():
        assert e.E_max == pytest.approx(W)
        assert e.shape(W + 1e-6) == 0.0
        assert quad(e.shape, 0.0, W)[0] == pytest.approx(1.0, rel=1e-10)
    # mean energies of the Michel spectra: <x> = 3/5 (nu_e), 7/10 (nubar_mu)
    assert delayed[("e", False)].mean_energy() == pytest.approx(0.6 * W, rel=1e-8)
    assert delayed[("mu", True)].mean_energy() == pytest.approx(0.7 * W, rel=1e-8)
    # nu_e vanishes at the endpoint, nubar_mu is maximal there
    assert ter.michel_nue(W) == pytest.approx(0.0, abs=1e-15)
    assert ter.michel_numubar(W) == pytest.approx(2.0 / W)


# ------------------------------------------------------------------------------------ targets


def test_targets_ge_csi_ar():
    ge = get_target("Ge")
    # standard atomic weight of germanium 72.630(8) (IUPAC)
    assert ge.molar_mass == pytest.approx(72.630, abs=0.01)
    assert [i.name for i in ge.isotopes] == ["Ge70", "Ge72", "Ge73", "Ge74", "Ge76"]
    assert get_target("Ar").molar_mass == pytest.approx(39.948, abs=0.01)  # atmospheric argon
    ar40 = get_target("Ar40")
    assert ar40.isotopes[0].N == 22 and ar40.nuclei_per_unit == 1.0
    csi = get_target("CsI")
    assert [(i.Z, i.A) for i in csi.isotopes] == [(55, 133), (53, 127)]
    assert csi.nuclei_per_unit == 2.0
    assert csi.molar_mass == pytest.approx(132.905 + 126.904, abs=0.01)  # formula unit
    assert csi.mean_A == pytest.approx(130.0)
    assert lindhard_k(32, ge.mean_A) == pytest.approx(0.157, abs=5e-4)  # the Ge value used in the review
    assert get_target("Cs133").isotopes[0].name == "Cs133"
    with pytest.raises(InvalidConfig):
        get_target("Unobtainium")


def test_csi_rate_is_sum_of_cs_and_i():
    src = ter.pion_dar_sources(1e23, 20.0, 1e7)
    kw = {"sources": tuple(src), "user_tables": src, "binning": Binning(1.0, 10.0, 5),
          "detector": Detector(Quenching("constant", value=0.09)), "exposure_tonne_year": 0.01}
    both = ForwardModel("cevns", target="CsI", **kw).sm_spectrum()["total"].values
    cs = ForwardModel("cevns", target="Cs133", **kw).sm_spectrum()["total"].values
    io = ForwardModel("cevns", target="I127", **kw).sm_spectrum()["total"].values
    # per tonne: CsI formula units vs pure Cs / pure I atoms
    mc, mi = get_target("Cs133").molar_mass, get_target("I127").molar_mass
    w = 1.0 / (mc + mi)
    assert both == pytest.approx(cs * mc * w + io * mi * w, rel=1e-10)


def test_form_factors():
    for A in (40, 73, 127, 133):
        assert cevns.klein_nystrand_form_factor(0.0, A) == pytest.approx(1.0)
        assert cevns.helm_form_factor(0.0, A) == pytest.approx(1.0)
    q2 = np.geomspace(1.0, 2e3, 50)
    kn = cevns.klein_nystrand_form_factor(q2, 133)
    helm = cevns.helm_form_factor(q2, 133)
    assert np.all(np.abs(kn - helm) < 0.05)  # same size, slightly different shapes
    with pytest.raises(InvalidConfig):
        cevns.form_factor(1.0, 133, "gaussian")
    with pytest.raises(InvalidConfig):
        ForwardModel("cevns", form_factor="nope")


# ------------------------------------------------------------------------------------ quenching


def test_quenching_scale_and_user_table_reproduce_lindhard():
    ge = get_target("Ge")
    k = 0.157
    lin = Quenching("lindhard", k=k, Z=32)
    E = np.geomspace(0.05, 50.0, 400)
    table = Quenching("table", table=(E, lin.qf(E)))
    Et = np.geomspace(0.2, 20.0, 30)
    assert table.qf(Et) == pytest.approx(lin.qf(Et), rel=2e-3)
    scaled = Quenching("lindhard", k=k, Z=32, scale=1.2)
    assert scaled.qf(Et) == pytest.approx(1.2 * lin.qf(Et), rel=1e-12)
    assert scaled.e_nr(scaled.e_ee(Et)) == pytest.approx(Et, rel=1e-9)
    adi = Quenching("lindhard_adiabatic", k=k, Z=32, xi_keV=0.16)
    assert adi.qf(np.array([0.05]))[0] < 0.3 * lin.qf(np.array([0.05]))[0]  # suppressed well below xi
    assert adi.qf(np.array([5.0]))[0] == pytest.approx(lin.qf(np.array([5.0]))[0], rel=1e-12)
    with pytest.raises(UnphysicalInput):
        Quenching("lindhard", scale=0.0)
    # a forward model with the tabulated curve gives the Lindhard counts
    src = ter.reactor_sources(2.96, 10.39)
    kw = {"target": ge, "sources": tuple(src), "user_tables": src, "binning": Binning(0.3, 1.5, 6, "linear"),
          "exposure_tonne_year": 1e-3}
    a = ForwardModel("cevns", detector=Detector(lin), **kw).sm_spectrum()["total"].values
    b = ForwardModel("cevns", detector=Detector(table), **kw).sm_spectrum()["total"].values
    assert b == pytest.approx(a, rel=5e-3)


def test_germanium_resolution_and_callable_resolution():
    from nuinfer.physics.detector import GermaniumResolution
    r = GermaniumResolution(0.07, 0.11)
    assert r(0.0) == pytest.approx(0.07)
    assert r(1.0) == pytest.approx(math.sqrt(0.07**2 + 2.96e-3 * 0.11))
    d = Detector(Quenching("none"), resolution=r)
    resp = d.response(np.array([0.5, 1.0]), Binning(0.1, 2.0, 19, "linear"))
    assert np.all(resp.sum(axis=1) > 0.99)


# ------------------------------------------------------------------------------------ Dresden-II-like
def test_dresden_asimov_workflow_per_quenching_choice(tmp_path):
    from nuinfer.tasks import terrestrial as tw
    # a user quenching table (here: Lindhard with a 20 % higher QF, standing in for e.g. the
    # iron-filter curve that users supply themselves)
    E = np.geomspace(0.05, 50.0, 200)
    qf = Quenching("lindhard", k=0.157, Z=32).qf(E) * 1.2
    table = tmp_path / "qf.txt"
    table.write_text("\n".join(f"{e:.8g} {q:.8g}" for e, q in zip(E, qf)))
    over = {"scan.m4_MeV.n": 6, "scan.mu_nu.n": 12, "scan.sin2_theta_W.n": 41, "binning.n": 26}
    s = tw.run_dresden(tmp_path / "d.nc", overrides=over, tasks=["sin2w", "dipole"], quenching_table=table,
                       plot=False, quiet=True)
    assert set(s["variants"]) == {"modified_lindhard", "lindhard", "user_table"}
    for v in s["variants"].values():
        assert v["sin2w"]["best_fit"] == pytest.approx(0.2387, abs=1e-4)  # Asimov recovers the injected value
        assert v["sin2w"]["interval_1sigma"][0] < 0.2387 < v["sin2w"]["interval_1sigma"][1]
        assert v["dipole"]["g90"]["1"] is not None and v["dipole"]["g90"]["100"] is None  # above the bound
    # a higher quenching factor puts more CEvNS events above threshold and tightens sin^2 theta_W
    w = {k: np.diff(v["sin2w"]["interval_1sigma"])[0] for k, v in s["variants"].items()}
    assert s["variants"]["user_table"]["sm_total"] > s["variants"]["lindhard"]["sm_total"]
    assert w["user_table"] < w["lindhard"]
    # the file's (mass, coupling) groups hold g90 and the excluded intervals, as every result file
    from nuinfer.tasks.xenon import g90_table
    with xr.open_datatree(tmp_path / "d.nc") as tree:
        for vname, v in s["variants"].items():
            g = tree[f"{vname}/dipole"].to_dataset().load()
            assert {"g90", "g90_status", "interval_g_lo", "interval_g_hi", "contour_m_X"} <= set(g.data_vars)
            ok = g["g90_status"].values != 1
            assert ok.any() and np.all(g["g90"].values[ok] > 0) and np.all(g["g90"].values[~ok] == 0)
            first = g["interval_start"].values[ok]
            np.testing.assert_array_equal(g["interval_g_lo"].values[first], g["g90"].values[ok])
            table = g90_table(g[["g90", "g90_status"]], [float(k) for k in v["dipole"]["g90"]])
            assert table == v["dipole"]["g90"]  # the summary's limits are the file's
            assert "sin2w" in tree[vname].children and "g90" not in tree[f"{vname}/sin2w"]


def test_ngi_posterior_path_evaluates():
    from nuinfer.spec import terrestrial as tcfg
    from nuinfer.tasks import terrestrial as tw
    from nuinfer.tasks.xenon import models_dir
    ana = tcfg.load(models_dir() / "dresden2_asimov.toml", {"binning.n": 13, "variants": {}})
    post, _data = tw.build_posterior(ana, "ngi")
    assert post.names[:6] == ["log10_g_S", "log10_m_S", "log10_g_V", "log10_m_V", "log10_g_T", "log10_m_T"]
    th = np.array([[-6.9, 0, -6.9, 0, -6.9, 0, 0.0, 0.0, 0.0], [-4, 0, -6.9, 0, -6.9, 0, 0.0, 0.0, 0.0]])
    lp = post(th)
    assert np.isfinite(lp).all() and lp[0] > lp[1]  # Asimov SM data disfavour a large scalar coupling


def test_one_cli_runs_terrestrial_analyses_and_refuses_other_tasks(capsys):
    import argparse

    from nuinfer import cli
    from nuinfer.cli import commands
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert {"fit", "profile", "contour", "sample", "coherent", "dresden", "terrestrial-figures", "floor"} <= set(sub.choices)
    args = p.parse_args(["fit", "a.toml", "-o", "x.nc", "--task", "sin2w", "--task", "V"])
    assert args.func is commands.cmd_fit and args.task == ["sin2w", "V"]
    assert cli.main(["fit", "does_not_exist.toml", "-q"]) == 2
    assert cli.main(["fit", "models/dresden2_asimov.toml", "-o", "x.txt"]) == 2
    capsys.readouterr()
    # a terrestrial file cannot run the floor; a xenon file has no 1-parameter profile
    assert cli.main(["floor", "models/dresden2_asimov.toml", "-q"]) == 2
    assert "supports inspect, spectrum, contour, profile, sample, fit" in capsys.readouterr().err
    assert cli.main(["profile", "models/fig2_cevns.toml", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "xenon analysis" in err


def test_ngi_simultaneous_point_profiles():
    from nuinfer.spec import terrestrial as tcfg
    from nuinfer.tasks import terrestrial as tw
    from nuinfer.tasks.xenon import models_dir
    ana = tcfg.load(models_dir() / "dresden2_asimov.toml", {"binning.n": 13, "variants": {}})
    pts = np.array([[-6.9, 0.0, -6.9, 0.0, -6.9, 0.0],     # all couplings negligible: the SM
                    [-5.0, 0.0, -6.9, 0.0, -6.9, 0.0],     # scalar only
                    [-5.0, 0.0, -5.0, 1.0, -5.0, 2.0]])    # S, V and T at once
    res = tw.profile_points(ana, "ngi", pts)
    assert res.converged.all()
    assert res.minimum[0] == pytest.approx(0.0, abs=1e-6)  # Asimov SM data
    assert res.minimum[1] > 1.0 and res.minimum[2] > 1.0
    assert res.minimum[2] != pytest.approx(res.minimum[1], rel=1e-3)  # the vector and tensor matter

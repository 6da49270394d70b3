"""Tests of nuinfer.physics.sources: shapes against the reference tables, lines, normalisations, user tables.

Reference tables are read from ``../shared/data`` (never by the package itself).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from nuinfer.constants import M_E
from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput
from nuinfer.physics import sources as src
from nuinfer.physics.sources import (
    NORMALISATIONS,
    SOLAR_SOURCES,
    SOURCE_NAMES,
    Emission,
    emissions,
    from_table,
)

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")

BAHCALL = "bahcall_solar_spectra/from_SNuDD"
CONTINUUM_SOLAR = ("pp", "hep", "13N", "15O", "17F", "8B")


def _continuum(name, **kw) -> Emission:
    (e,) = emissions(name, **kw)
    return e


# ---------------------------------------------------------------------------------------------
# Acceptance bar: solar continuum shapes vs the Bahcall tables
# ---------------------------------------------------------------------------------------------

# (source, reference file, bound on integral |difference|)
BAHCALL_CASES = [
    ("pp", f"{BAHCALL}/pp_neutrino.txt", 0.02),
    ("hep", f"{BAHCALL}/hep_neutrino.txt", 0.02),
    ("13N", f"{BAHCALL}/N13_neutrino.txt", 0.02),
    ("15O", f"{BAHCALL}/15O_neutrino.txt", 0.02),
    ("17F", f"{BAHCALL}/17F_neutrino.txt", 0.02),
    ("8B", f"{BAHCALL}/B8_neutrino_flux.txt", 0.05),  # column 1 = best estimate
]


@needs_data
@pytest.mark.parametrize("name, ref_file, bound", BAHCALL_CASES, ids=[c[0] for c in BAHCALL_CASES])
def test_solar_shape_matches_bahcall_table(name, ref_file, bound):
    """Integral of |shape - table| on the table grid (trapezoid) < bound; mean energy within 1 %.

    Measured: pp 9e-4, hep 4e-5, 13N 6e-5, 15O 4e-5, 17F 4e-5, 8B 9e-4; mean energies within 0.05 %.
    """
    E, y = np.loadtxt(DATA / ref_file, usecols=(0, 1)).T
    y = y / np.trapezoid(y, E)
    e = _continuum(name)
    diff = np.trapezoid(np.abs(e.shape(E) - y), E)
    assert diff < bound, f"{name}: integral |diff| = {diff:.4f} vs {ref_file}"
    mean_ref = np.trapezoid(E * y, E)
    assert e.mean_energy() == pytest.approx(mean_ref, rel=0.01)
    # the tighter numbers we actually achieve (regression guard)
    assert diff < 2e-3
    assert e.mean_energy() == pytest.approx(mean_ref, rel=1e-3)


@needs_data
def test_b8_within_bahcall_three_sigma_band():
    """8B shape lies inside the +-3 sigma envelope of Bahcall's table (B8_neutrino_flux.txt cols 2-3)
    wherever the spectrum exceeds 1 % of its peak (rounding of the 7-digit table dominates below)."""
    E, best, plus, minus = np.loadtxt(DATA / f"{BAHCALL}/B8_neutrino_flux.txt").T
    m = _continuum("8B").shape(E)
    lo, hi = np.minimum(plus, minus), np.maximum(plus, minus)
    sel = best > 0.01 * best.max()
    slack = 2e-3 * best.max()
    assert np.all((m[sel] >= lo[sel] - slack) & (m[sel] <= hi[sel] + slack))


def test_b8_extends_to_physical_endpoint():
    """8B reaches Q_EC - 2 m_e = 16.958 MeV (E_x -> 0), beyond Table II's 16.36 MeV, with a negligible tail."""
    e = _continuum("8B")
    assert e.E_max == pytest.approx(17.9799 - 2 * M_E)
    tail, _ = quad(lambda x: e.shape(np.array([x]))[0], 16.36, e.E_max)
    assert 0 < tail < 1e-6
    assert src.TABLE_II_ENDPOINTS_MEV["8B"] == 16.36


@pytest.mark.parametrize("name", ["pp", "hep", "13N", "15O", "17F"])
def test_beta_plus_endpoints_match_table_ii(name):
    e = _continuum(name)
    assert e.E_min == 0.0
    assert e.E_max == src.TABLE_II_ENDPOINTS_MEV[name]


# ---------------------------------------------------------------------------------------------
# Acceptance bar: atmospheric and DSN parametrisations
# ---------------------------------------------------------------------------------------------

ATM_CASES = [
    ("e", False, "ohare_neutrinofog_fluxes/atmospheric_FLUKA/AtmNu_e.txt"),
    ("e", True, "ohare_neutrinofog_fluxes/atmospheric_FLUKA/AtmNu_ebar.txt"),
    ("mu", False, "ohare_neutrinofog_fluxes/atmospheric_FLUKA/AtmNu_mu.txt"),
    ("mu", True, "ohare_neutrinofog_fluxes/atmospheric_FLUKA/AtmNu_mubar.txt"),
]


@needs_data
@pytest.mark.parametrize("flavour, anti, ref_file", ATM_CASES, ids=["nue", "nuebar", "numu", "numubar"])
def test_atmospheric_matches_fluka_table(flavour, anti, ref_file):
    """Within 10 % of the FLUKA table on 13.18-944 MeV (measured max 3-6 %).

    The bar asks for 13-~500 MeV (atmospheric CEvNS above 0.1 keVee is dominated by E_nu < 500 MeV);
    we test up to 944 MeV, the last FLUKA node.  Above 944 MeV the O'Hare copy is a linear
    extrapolation that falls to 0.4x at 981.75 MeV; it is not compared.
    Both the raw parametrisation and the emission scaled to the paper total (10.5 vs the table's
    10.55) are checked.
    """
    E, y = np.loadtxt(DATA / ref_file, delimiter=",").T
    sel = E <= 944.0
    rel = src.atmospheric_flux(E[sel], flavour, anti) / y[sel] - 1
    assert np.max(np.abs(rel)) < 0.10
    assert np.max(np.abs(rel[E[sel] <= 500])) < 0.07
    (e,) = [c for c in emissions("atm") if c.flavour == flavour and c.anti == anti]
    rel_em = e.dphi_dE(E[sel]) / y[sel] - 1
    assert np.max(np.abs(rel_em)) < 0.10


@needs_data
def test_dsn_matches_ohare_dsnb_shape():
    """Total DSN shape (reference split) vs ohare_neutrinofog_fluxes/normalised/DSNB.txt.

    Bar: within 10 % for E_nu >= 6 MeV (DSN neutrinos below ~6-10 MeV cannot give xenon recoils above
    0.1 keVee); measured max 6.6 %, and the same holds down to 0.5 MeV.
    """
    E, y = np.loadtxt(DATA / "ohare_neutrinofog_fluxes/normalised/DSNB.txt", delimiter=",").T
    comps = emissions("DSN")
    total = sum(c.flux for c in comps)
    model = sum(c.flux / total * c.shape(E) for c in comps)
    rel = model / y - 1
    assert np.max(np.abs(rel[E >= 6.0])) < 0.10
    assert np.max(np.abs(rel[E >= 0.5])) < 0.10


def test_dsn_components_are_redshifted_fermi_dirac():
    """Each DSN component is softer than its source Fermi-Dirac (mean 3.15 T) and ordered by T."""
    comps = emissions("DSN")
    means = {(c.flavour, c.anti): c.mean_energy() for c in comps}
    for key, T in src.DSN_TEMPERATURES.items():
        assert means[key] < 3.1514 * T
    assert means[("e", False)] < means[("e", True)] < means[("mu", False)]
    assert means[("mu", False)] == pytest.approx(means[("tau", True)])
    assert all(c.E_max == 91.201 for c in comps)


# ---------------------------------------------------------------------------------------------
# Lines, normalisation, support
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, energy", [("pep", 1.44), ("7Be_384", 0.3843), ("7Be_861", 0.8613)])
def test_lines_are_exact(name, energy):
    (e,) = emissions(name)
    assert e.is_line and e.line_energy == energy
    assert e.E_min == e.E_max == energy
    assert e.flux == NORMALISATIONS["paper"][name]
    np.testing.assert_array_equal(e.grid(100), [energy])
    assert e.mean_energy() == energy
    with pytest.raises(InvalidConfig, match="line"):
        e.shape(1.0)


def _all_continua():
    return [c for n in SOURCE_NAMES for c in emissions(n) if not c.is_line]


def test_every_shape_integrates_to_one():
    """Adaptive quadrature of each unit-normalised shape on [E_min, E_max]: |integral - 1| < 1e-6;
    trapezoid on ``grid(200)``: < 1e-3; Gauss-Legendre ``quadrature()``: < 1e-6."""
    seen = set()
    for c in _all_continua():
        key = (c.source, c.flavour, c.anti)
        if key in seen:
            continue
        seen.add(key)
        val, _ = quad(lambda x: c.shape(np.array([x]))[0], c.E_min, c.E_max, points=c.knots[1:-1], limit=400)
        assert val == pytest.approx(1.0, abs=1e-6), c.label
        g = c.grid(200)
        assert np.all(np.diff(g) > 0) and g[0] == c.E_min and g[-1] == c.E_max
        assert 150 <= g.size <= 260
        assert np.trapezoid(c.shape(g), g) == pytest.approx(1.0, abs=1e-3), c.label
        nodes, weights = c.quadrature()
        assert np.sum(weights * c.shape(nodes)) == pytest.approx(1.0, abs=1e-6), c.label


def test_shapes_zero_outside_support_and_vectorised():
    for c in _all_continua():
        outside = np.array([-1.0, c.E_min - 1e-9, c.E_max + 1e-9, c.E_max * 2 + 1])
        np.testing.assert_array_equal(c.shape(outside), 0.0)
        E = np.linspace(c.E_min, c.E_max, 12).reshape(3, 4)
        s = c.shape(E)
        assert s.shape == (3, 4) and np.all(s >= 0) and np.all(np.isfinite(s))
        assert np.ndim(c.shape(0.5 * (c.E_min + c.E_max))) == 0
        assert c.shape(0.5 * (c.E_min + c.E_max)) > 0


def test_source_lists():
    assert SOURCE_NAMES == ("pp", "pep", "7Be_384", "7Be_861", "8B", "hep", "13N", "15O", "17F", "atm", "DSN")
    assert SOLAR_SOURCES == SOURCE_NAMES[:9]
    for n in SOLAR_SOURCES:
        (e,) = emissions(n)
        assert e.flavour == "e" and not e.anti and e.source == n


PAPER = {
    "pp": 5.98e10, "pep": 1.44e8, "7Be_861": 4.99e9, "7Be_384": 4.84e8, "8B": 5.29e6, "hep": 7.98e3,
    "13N": 2.78e8, "15O": 2.05e8, "17F": 5.29e6, "atm": 10.5, "DSN": 107.5,
}


def test_paper_preset_is_table_ii():
    assert NORMALISATIONS["paper"] == PAPER
    for n in SOURCE_NAMES:
        assert sum(c.flux for c in emissions(n)) == pytest.approx(PAPER[n], rel=1e-12)


def test_b16_preset():
    b16 = NORMALISATIONS["b16-gs98"]
    assert b16["8B"] == 5.46e6
    assert b16["7Be_861"] + b16["7Be_384"] == pytest.approx(4.93e9)
    assert b16["7Be_384"] / 4.93e9 == pytest.approx(0.1044)
    assert b16["atm"] == 10.5 and b16["DSN"] == 107.5
    assert emissions("8B", normalisation="b16-gs98")[0].flux == 5.46e6


def test_normalisation_overrides():
    assert emissions("8B", normalisation={"8B": 5.0e6})[0].flux == 5.0e6
    assert emissions("pp", normalisation={"8B": 5.0e6})[0].flux == 5.98e10  # untouched -> paper
    assert emissions("8B", normalisation={"preset": "b16-gs98", "pp": 6e10})[0].flux == 5.46e6
    assert emissions("hep", normalisation=1.0e4)[0].flux == 1.0e4
    atm = emissions("atm", normalisation=21.0)
    assert sum(c.flux for c in atm) == pytest.approx(21.0)
    with pytest.raises(InvalidConfig, match="preset"):
        emissions("pp", normalisation="bs05")
    with pytest.raises(InvalidConfig, match="unknown sources"):
        emissions("pp", normalisation={"B8": 1.0})
    with pytest.raises(UnphysicalInput):
        emissions("pp", normalisation=-1.0)
    with pytest.raises(UnphysicalInput):
        emissions("8B", normalisation={"8B": float("nan")})
    with pytest.raises(InvalidConfig, match="did you mean '8B'"):
        emissions("8b")


def test_atmospheric_components():
    atm = emissions("atm")
    assert [(c.flavour, c.anti) for c in atm] == [("e", False), ("e", True), ("mu", False), ("mu", True)]
    frac = {(c.flavour, c.anti): c.flux / 10.5 for c in atm}
    # FLUKA flavour ratios (O'Hare table integrals 1.84 : 1.65 : 3.52 : 3.53 of 10.55)
    assert frac[("e", False)] == pytest.approx(1.84 / 10.55, rel=0.02)
    assert frac[("mu", True)] == pytest.approx(3.53 / 10.55, rel=0.02)
    assert all(c.E_min == 13.18 and c.E_max == 981.75 for c in atm)


def test_dsn_components_and_splits():
    dsn = emissions("DSN")
    assert [(c.flavour, c.anti) for c in dsn] == [
        ("e", False), ("e", True), ("mu", False), ("mu", True), ("tau", False), ("tau", True)
    ]
    f = {(c.flavour, c.anti): c.flux for c in dsn}
    assert f[("mu", False)] + f[("mu", True)] == pytest.approx(f[("tau", False)] + f[("tau", True)])
    # reference split: equal energy in nu_e, nubar_e and nu_x (total): number ~ 1/T
    assert f[("e", False)] * 3 == pytest.approx(f[("e", True)] * 5)
    assert f[("e", False)] * 3 == pytest.approx(4 * f[("mu", False)] * 8)
    eq = {(c.flavour, c.anti): c.flux for c in emissions("DSN", dsn_split="equal-luminosity")}
    assert eq[("e", False)] * 3 == pytest.approx(eq[("mu", False)] * 8)
    assert sum(eq.values()) == pytest.approx(107.5)
    with pytest.raises(InvalidConfig, match="DSN flavour split"):
        emissions("DSN", dsn_split="equal")


def test_emission_validation():
    with pytest.raises(InvalidConfig):
        Emission(source="x", flavour="electron", anti=False, flux=1.0, line_energy=1.0)
    with pytest.raises(UnphysicalInput):
        Emission(source="x", flavour="e", anti=False, flux=-1.0, line_energy=1.0)
    with pytest.raises(InvalidConfig):
        Emission(source="x", flavour="e", anti=False, flux=1.0)  # neither line nor continuum
    e = _continuum("pp")
    assert e.scaled(2.0).flux == 2.0 and e.scaled(2.0).shape(0.2) == e.shape(0.2)
    with pytest.raises(InvalidConfig):
        e.grid(3)


def test_positron_fermi_function_behaviour():
    """Repulsive Coulomb field: F -> 0 as p -> 0, rises steeply at low W and is nearly flat at high W
    (only the slow p^(2g-2) factor remains); the low-energy suppression is weaker for smaller Z."""
    W = np.array([1.0, 1.0001, 1.01, 1.5, 5.0, 30.0])
    F = src.positron_fermi_function(7, W)
    assert F[0] == 0 and F[1] < 1e-6
    assert np.all(np.diff(F[:5]) > 0)
    assert F[5] == pytest.approx(F[4], rel=0.05)
    assert src.positron_fermi_function(1, 1.01) > src.positron_fermi_function(8, 1.01)


# ---------------------------------------------------------------------------------------------
# User tables
# ---------------------------------------------------------------------------------------------


def _write(tmp_path, text, name="flux.txt"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_table_absolute_and_scaled(tmp_path):
    p = _write(tmp_path, "# E  dPhi/dE\n1.0 0.0\n2.0, 10.0\n3.0 0.0\n")
    (e,) = from_table("custom", p)
    assert e.flux == pytest.approx(10.0)  # trapezoid integral of the absolute table
    assert e.shape(2.0) == pytest.approx(0.1 * 10) and e.shape(1.5) == pytest.approx(0.5)
    assert e.shape(0.5) == 0 and e.shape(3.5) == 0
    g = e.grid(11)
    assert np.trapezoid(e.shape(g), g) == pytest.approx(1.0)
    (s,) = from_table("8B", p, flux=5.0, flavour="mu", anti=True)
    assert s.flux == 5.0 and s.flavour == "mu" and s.anti and s.source == "8B"
    (a,) = from_table("custom", (np.array([1.0, 2.0]), np.array([1.0, 1.0])))
    assert a.flux == pytest.approx(1.0)


@needs_data
def test_user_table_reads_bahcall_files():
    (b8,) = from_table("8B", DATA / f"{BAHCALL}/B8_neutrino_flux.txt", usecols=(0, 1), flux=5.29e6)
    assert b8.flux == 5.29e6 and b8.mean_energy() == pytest.approx(6.735, rel=1e-3)
    (pp,) = from_table("pp", DATA / f"{BAHCALL}/pp_neutrino.txt")
    assert pp.flux == pytest.approx(1.0, rel=1e-4)
    # the SNuDD line files repeat the line energy ("0.3843 1" / "0.3843 0"): a line
    (be,) = from_table("7Be_384", DATA / f"{BAHCALL}/7Be_3843_neutrino.txt", flux=4.84e8)
    assert be.is_line and be.line_energy == 0.3843 and be.flux == 4.84e8


def test_user_table_single_line(tmp_path):
    (e,) = from_table("pep", _write(tmp_path, "1.44 1.4e8\n"))
    assert e.is_line and e.line_energy == 1.44 and e.flux == 1.4e8
    (e2,) = from_table("pep", _write(tmp_path, "1.44 1\n", "b.txt"), flux=2.0)
    assert e2.flux == 2.0


@pytest.mark.parametrize(
    "text, lineno, what",
    [
        ("1.0 1.0\n2.0 2.0\n1.5 3.0\n", 3, "increas"),
        ("1.0 1.0\n2.0 -2.0\n3.0 3.0\n", 2, "negative flux"),
        ("1.0 1.0\n2.0 nan\n3.0 3.0\n", 2, "non-finite"),
        ("1.0 1.0\n2.0 2.0 7.0\n3.0 3.0\n", 2, "expected 2 columns"),
        ("1.0 1.0\n2.0 abc\n", 2, "not numeric"),
        ("1.0 1.0\n\n# comment\n2.0 2.0\n2.0 3.0\n", 5, "increas"),
        ("-1.0 1.0\n2.0 2.0\n", 1, "negative energy"),
    ],
    ids=["non-monotonic", "negative", "nan", "columns", "text", "repeated-E", "negative-E"],
)
def test_user_table_errors_name_file_and_line(tmp_path, text, lineno, what):
    p = _write(tmp_path, text, "bad_flux.txt")
    with pytest.raises(DataFileError, match=what) as exc:
        from_table("custom", p)
    msg = str(exc.value)
    assert "bad_flux.txt" in msg and f"line {lineno}" in msg


def test_user_table_other_errors(tmp_path):
    with pytest.raises(DataFileError, match="no_such_file.txt"):
        from_table("custom", tmp_path / "no_such_file.txt")
    with pytest.raises(DataFileError, match="cannot read"):
        from_table("custom", tmp_path)  # a directory
    with pytest.raises(DataFileError, match="all zero"):
        from_table("custom", _write(tmp_path, "1 0\n2 0\n", "zero.txt"))
    with pytest.raises(DataFileError, match="no data"):
        from_table("custom", _write(tmp_path, "# only a comment\n", "empty.txt"))
    with pytest.raises(DataFileError, match="row 2"):
        from_table("custom", np.array([[1.0, 1.0], [0.5, 1.0]]))
    with pytest.raises(DataFileError, match="shape"):
        from_table("custom", np.ones((3, 3)))
    with pytest.raises(InvalidConfig):
        from_table("custom", _write(tmp_path, "1 1\n2 1\n", "ok.txt"), flavour="x")
    with pytest.raises(UnphysicalInput):
        from_table("custom", _write(tmp_path, "1 1\n2 1\n", "ok2.txt"), flux=-3.0)
    assert math.isclose(from_table("c", _write(tmp_path, "1 1\n2 1\n", "ok3.txt"))[0].flux, 1.0)

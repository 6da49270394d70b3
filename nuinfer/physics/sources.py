"""Astrophysical neutrino sources: normalisations and unit-normalised spectral shapes.

Every source of the reference paper (Majumdar, Papoulias, Srivastava, PRD 106 (2022) 013001,
Table II) is described by a list of :class:`Emission` components: one per produced flavour
(``"e"``, ``"mu"``, ``"tau"``; ``anti`` for antineutrinos), each either a monochromatic line or a
continuum with a unit-normalised shape ``dPhi/dE`` [MeV^-1] and a total flux [cm^-2 s^-1].
The components are *unoscillated* (as produced); :mod:`nuinfer.physics.oscillation` gives the
flavour weights at the detector.

Shapes are computed from physics formulas with a handful of fitted parameters (no tabulated
spectra are shipped and nothing under ``shared/data`` is read at run time):

* ``pp``, ``hep``, ``13N``, ``15O``, ``17F``: allowed beta+ spectra
  ``E_nu^2 W p F(Z', W)`` with the relativistic positron Fermi function
  (:func:`positron_fermi_function`).
* ``8B``: the allowed spectrum folded over the broad 8Be(2+) final state, described by a
  single-channel, two-level R-matrix density with the exact l = 2 alpha-alpha Coulomb
  penetrability and shift factor (:func:`be8_final_state_density`).
* ``atm``: FLUKA (Battistoni et al. 2005) fluxes per flavour, parametrised as a log-log cubic
  continuum plus a smeared muon decay-at-rest (Michel) component and, for muon flavours, the
  29.79 MeV pion decay-at-rest line (:func:`atmospheric_flux`).
* ``DSN``: Fermi-Dirac spectra at the source (T = 3, 5, 8 MeV), redshifted over the cosmic
  supernova history (:func:`dsn_flavour_spectrum`).

The fitted numbers come from ``scripts/fit_source_parametrisations.py``; ``docs/sources.md``
lists how well each shape reproduces the reference tables.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import erf, loggamma

from nuinfer.constants import ALPHA_EM, HBARC_MEV_FM, M_ALPHA, M_E, M_MU, M_PI_CHARGED
from nuinfer.exceptions import DataFileError, InvalidConfig, NumericalError, UnphysicalInput

__all__ = [
    "SOURCE_NAMES",
    "SOLAR_SOURCES",
    "LINE_ENERGIES_MEV",
    "TABLE_II_ENDPOINTS_MEV",
    "NORMALISATIONS",
    "DSN_SPLITS",
    "FLAVOURS",
    "Emission",
    "emissions",
    "from_table",
    "resolve_total_flux",
    "positron_fermi_function",
    "beta_plus_spectrum",
    "alpha_alpha_penetrability",
    "be8_final_state_density",
    "b8_spectrum",
    "b8_spectrum_exact",
    "atmospheric_flux",
    "dsn_flavour_spectrum",
]

# =============================================================================================
# Names, endpoints and normalisations
# =============================================================================================

SOURCE_NAMES: tuple[str, ...] = (
    "pp",
    "pep",
    "7Be_384",
    "7Be_861",
    "8B",
    "hep",
    "13N",
    "15O",
    "17F",
    "atm",
    "DSN",
)
#: the nine solar components (all produced as nu_e)
SOLAR_SOURCES: tuple[str, ...] = SOURCE_NAMES[:9]
#: allowed flavour labels of an :class:`Emission`
FLAVOURS: tuple[str, ...] = ("e", "mu", "tau")

#: monochromatic solar lines [MeV] (paper Table II)
LINE_ENERGIES_MEV: dict[str, float] = {"pep": 1.44, "7Be_384": 0.3843, "7Be_861": 0.8613}

#: endpoints as printed in the paper's Table II [MeV] (lines: the line energy).  The 8B shape
#: computed here extends beyond 16.36 MeV, to Q_EC - 2 m_e = 16.958 MeV (see ``B8_E_NU_MAX``).
TABLE_II_ENDPOINTS_MEV: dict[str, float] = {
    "pp": 0.42341,
    "pep": 1.44,
    "7Be_861": 0.8613,
    "7Be_384": 0.3843,
    "8B": 16.36,
    "hep": 18.784,
    "13N": 1.199,
    "15O": 1.732,
    "17F": 1.74,
    "atm": 981.75,
    "DSN": 91.201,
}

#: 7Be electron-capture branching to the 7Li ground state (861.3 keV line) and to the 477.6 keV
#: excited state (384.3 keV line): 89.56 % / 10.44 % (D.R. Tilley et al., "Energy levels of light
#: nuclei A = 5, 6, 7", Nucl. Phys. A 708 (2002) 3, TUNL evaluation).
BE7_BRANCH_861 = 0.8956
BE7_BRANCH_384 = 0.1044

_B16_BE7_TOTAL = 4.93e9

#: Total fluxes [cm^-2 s^-1] per source.
#:
#: ``"paper"``: Table II of the reference paper exactly as printed (its 7Be split 4.99e9 / 4.84e8
#: does not follow the 89.56 / 10.44 branching, and its 8B equals its 17F value; kept as printed).
#: ``"b16-gs98"``: N. Vinyoles et al., ApJ 835 (2017) 202, Table 6, B16-GS98 model; the total 7Be
#: flux 4.93e9 is split by the branching ratios above.  atm (10.5) and DSN (107.5) keep the paper
#: values (no better single-number convention is cited by the reference paper).
NORMALISATIONS: dict[str, dict[str, float]] = {
    "paper": {
        "pp": 5.98e10,
        "pep": 1.44e8,
        "7Be_861": 4.99e9,
        "7Be_384": 4.84e8,
        "8B": 5.29e6,
        "hep": 7.98e3,
        "13N": 2.78e8,
        "15O": 2.05e8,
        "17F": 5.29e6,
        "atm": 10.5,
        "DSN": 107.5,
    },
    "b16-gs98": {
        "pp": 5.98e10,
        "pep": 1.44e8,
        "7Be_861": _B16_BE7_TOTAL * BE7_BRANCH_861,
        "7Be_384": _B16_BE7_TOTAL * BE7_BRANCH_384,
        "8B": 5.46e6,
        "hep": 7.98e3,
        "13N": 2.78e8,
        "15O": 2.05e8,
        "17F": 5.29e6,
        "atm": 10.5,
        "DSN": 107.5,
    },
}

# =============================================================================================
# Numerical helpers
# =============================================================================================


def _gauss_legendre_panels(edges, n_per_panel: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a composite Gauss-Legendre rule on consecutive panels ``edges``."""
    x, w = np.polynomial.legendre.leggauss(n_per_panel)
    edges = np.asarray(edges, dtype=float)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = 0.5 * (b - a) * x[None, :] + 0.5 * (a + b)
    weights = 0.5 * (b - a) * w[None, :]
    return nodes.ravel(), weights.ravel()


def _clustered_grid(knots, n: int, log: bool = False, mass=None) -> np.ndarray:
    """Increasing grid of about ``n`` points with Chebyshev-Lobatto clustering at every knot.

    Points are shared among the segments between consecutive knots in proportion to the average
    of their length fraction (in log E when ``log``) and, if given, their share ``mass`` of the
    integrand, with at least 4 intervals per segment.
    """
    knots = np.unique(np.asarray(knots, dtype=float))
    if knots.size < 2:
        return knots
    var = np.log(knots) if log else knots
    lengths = np.diff(var)
    share = lengths / lengths.sum()
    if mass is not None:
        mass = np.asarray(mass, dtype=float)
        share = 0.5 * share + 0.5 * mass / mass.sum()
    n_int = max(int(n) - 1, 4 * lengths.size)
    counts = np.maximum(4, np.round(n_int * share).astype(int))
    pieces = []
    for (lo, hi), m in zip(zip(var[:-1], var[1:]), counts):
        j = np.arange(m + 1)
        pieces.append(lo + (hi - lo) * 0.5 * (1.0 - np.cos(np.pi * j / m)))
    grid = np.unique(np.concatenate(pieces))
    grid = np.exp(grid) if log else grid
    grid[0], grid[-1] = knots[0], knots[-1]  # exact endpoints despite exp/log round-off
    return grid


# =============================================================================================
# The Emission record
# =============================================================================================


@dataclass(frozen=True)
class Emission:
    """One production component of a neutrino source.

    A component is either a monochromatic **line** (``line_energy`` set) or a **continuum**
    with a unit-normalised spectral shape on ``[E_min, E_max]``.

    Parameters
    ----------
    source : str
        Source name (one of :data:`SOURCE_NAMES`, or the name given to :func:`from_table`).
    flavour : {"e", "mu", "tau"}
        Produced flavour.
    anti : bool
        True for antineutrinos.
    flux : float
        Total flux of this component [cm^-2 s^-1].
    line_energy : float or None
        Line energy [MeV] for a monochromatic component, else None.
    E_min, E_max : float
        Support of the continuum [MeV] (for a line both equal ``line_energy``).
    knots : tuple of float
        Energies where the shape has structure (endpoints, peaks, edges); :meth:`grid` clusters
        points there.
    log_grid : bool
        Space :meth:`grid` logarithmically (wide-range spectra such as ``atm``).
    piecewise_linear : bool
        The shape interpolates a user table linearly between ``knots`` (the table energies).

    Notes
    -----
    Build components with :func:`emissions` or :func:`from_table`, not directly.
    """

    source: str
    flavour: str
    anti: bool
    flux: float
    line_energy: float | None = None
    E_min: float | None = None
    E_max: float | None = None
    knots: tuple[float, ...] = ()
    log_grid: bool = False
    piecewise_linear: bool = False
    _shape_fn: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.flavour not in FLAVOURS:
            raise InvalidConfig(f"flavour {self.flavour!r} of source {self.source!r} is unknown; use one of {FLAVOURS}")
        if not (np.isfinite(self.flux) and self.flux >= 0):
            raise UnphysicalInput(
                f"flux of source {self.source!r} must be a finite number >= 0 cm^-2 s^-1, got {self.flux!r}"
            )
        if self.line_energy is not None:
            if not (np.isfinite(self.line_energy) and self.line_energy > 0):
                raise UnphysicalInput(
                    f"line energy of source {self.source!r} must be > 0 MeV, got {self.line_energy!r}"
                )
            object.__setattr__(self, "E_min", float(self.line_energy))
            object.__setattr__(self, "E_max", float(self.line_energy))
        else:
            if self._shape_fn is None or self.E_min is None or self.E_max is None:
                raise InvalidConfig(f"continuum source {self.source!r} needs E_min, E_max and a shape function")
            if not (0 <= self.E_min < self.E_max):
                raise UnphysicalInput(
                    f"source {self.source!r}: need 0 <= E_min < E_max, got E_min={self.E_min}, E_max={self.E_max}"
                )
        if not self.knots:
            object.__setattr__(self, "knots", (float(self.E_min), float(self.E_max)))

    # -----------------------------------------------------------------------------------------
    @property
    def is_line(self) -> bool:
        """True for a monochromatic component."""
        return self.line_energy is not None

    @property
    def label(self) -> str:
        """Short human-readable label, e.g. ``"atm nubar_mu"``."""
        return f"{self.source} {'nubar' if self.anti else 'nu'}_{self.flavour}"

    def shape(self, E) -> np.ndarray:
        """Unit-normalised spectrum dPhi/dE / flux [MeV^-1].

        Parameters
        ----------
        E : array_like
            Neutrino energies [MeV].

        Returns
        -------
        numpy.ndarray
            Same shape as ``E``; exactly 0 outside ``[E_min, E_max]``.

        Raises
        ------
        InvalidConfig
            For a line component (a delta function has no pointwise value): use
            ``line_energy`` and ``flux`` instead.
        """
        if self.is_line:
            raise InvalidConfig(
                f"{self.label} is a line at {self.line_energy} MeV: a delta function has no pointwise shape; "
                "use Emission.line_energy and Emission.flux"
            )
        E = np.asarray(E, dtype=float)
        out = np.zeros(E.shape)
        inside = (E >= self.E_min) & (E <= self.E_max)
        if np.any(inside):
            out[inside] = self._shape_fn(E[inside])
        return out

    def dphi_dE(self, E) -> np.ndarray:
        """Differential flux ``flux * shape(E)`` [cm^-2 s^-1 MeV^-1] (continuum only)."""
        return self.flux * self.shape(E)

    def grid(self, n: int = 200) -> np.ndarray:
        """Increasing energy grid [MeV] of about ``n`` points for integrating the shape.

        Points cluster (Chebyshev-Lobatto) at the support ends and at every knot of the shape,
        so that the trapezoid rule on the grid integrates the shape to better than 1e-3 for
        ``n >= 200``.  For a user table, the union of the table energies (where the piecewise
        linear shape has its kinks) and ``n`` evenly spaced points.  For a line, the single line
        energy.

        Parameters
        ----------
        n : int
            Approximate number of points (at least 8).
        """
        if self.is_line:
            return np.array([self.line_energy])
        if int(n) < 8:
            raise InvalidConfig(f"grid size n={n} for {self.label} is too small; use n >= 8")
        if self.piecewise_linear:
            return np.union1d(np.asarray(self.knots, dtype=float), np.linspace(self.E_min, self.E_max, int(n)))
        knots = np.unique(np.asarray(self.knots, dtype=float))
        nodes, weights = _gauss_legendre_panels(knots, 16)
        mass = np.add.reduceat(weights * self.shape(nodes), np.arange(0, nodes.size, 16))
        return _clustered_grid(knots, int(n), log=self.log_grid and self.E_min > 0, mass=mass)

    def quadrature(self, n_per_panel: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Composite Gauss-Legendre nodes [MeV] and weights on the panels between the knots.

        ``sum(weights * g(nodes) * shape(nodes))`` integrates ``g dPhi/dE / flux`` for smooth ``g``
        (error < 1e-6 for the built-in shapes with the default).  For a line, the line energy with
        weight 1 (so that the same sum gives ``g(line_energy)`` when ``shape`` is replaced by 1).
        """
        if self.is_line:
            return np.array([self.line_energy]), np.array([1.0])
        return _gauss_legendre_panels(np.unique(np.asarray(self.knots, dtype=float)), int(n_per_panel))

    def mean_energy(self) -> float:
        """Flux-weighted mean neutrino energy [MeV]."""
        if self.is_line:
            return float(self.line_energy)
        nodes, weights = _gauss_legendre_panels(np.unique(self.knots), 48)
        return float(np.sum(weights * nodes * self.shape(nodes)))

    def scaled(self, flux: float) -> Emission:
        """Copy of this component with a different total flux [cm^-2 s^-1]."""
        return replace(self, flux=float(flux))


def _normalised(fn, E_min: float, E_max: float, knots, n_per_panel: int = 48):
    """Return ``fn / integral(fn, E_min, E_max)`` (integral by composite Gauss-Legendre on knots)."""
    nodes, weights = _gauss_legendre_panels(np.unique(np.r_[E_min, knots, E_max]), n_per_panel)
    norm = float(np.sum(weights * fn(nodes)))
    if not (np.isfinite(norm) and norm > 0):  # pragma: no cover - guards the parametrisations
        raise NumericalError(f"shape normalisation failed (integral {norm}); check the shape parameters")

    def shape(E):
        return fn(E) / norm

    return shape, norm


# =============================================================================================
# Allowed beta+ spectra (pp, hep, 13N, 15O, 17F; the kernel of 8B)
# =============================================================================================

#: (daughter charge Z', neutrino endpoint [MeV]) of the allowed beta+ sources.  The endpoints are
#: the paper's Table II values (= the Bahcall tables): for pp (p + p -> d + e+ + nu, daughter
#: deuteron) and hep (3He + p -> 4He + e+ + nu, daughter 4He) they include the ~keV thermal
#: kinetic energy of the fusing nuclei in the solar core on top of the nuclear Q value.
BETA_PLUS_SOURCES: dict[str, tuple[int, float]] = {
    "pp": (1, 0.42341),
    "hep": (2, 18.784),
    "13N": (6, 1.199),
    "15O": (7, 1.732),
    "17F": (8, 1.740),
}


def positron_fermi_function(Z: float, W) -> np.ndarray:
    """Relativistic Fermi function of a positron in the field of a nucleus of charge ``Z``.

    ``F(Z, W) = 2 (1 + g) (2 p R)^(2g - 2) exp(pi eta) |Gamma(g + i eta)|^2 / Gamma(2g + 1)^2`` with
    ``g = sqrt(1 - (alpha Z)^2)`` and ``eta = -alpha Z W / p`` (negative: the positron is repelled).
    The factors that do not depend on W (including the nuclear radius R) cancel in a
    unit-normalised spectrum and are dropped: the returned value is
    ``p^(2g-2) exp(pi eta) |Gamma(g + i eta)|^2`` (point nucleus, no finite-size or screening
    corrections).

    Parameters
    ----------
    Z : float
        Charge of the daughter nucleus (> 0).
    W : array_like
        Total positron energy in units of m_e (W >= 1).

    Returns
    -------
    numpy.ndarray
        F up to a W-independent factor; 0 at W <= 1.
    """
    W = np.asarray(W, dtype=float)
    out = np.zeros(W.shape)
    ok = W > 1.0
    if not np.any(ok):
        return out
    Wk = W[ok]
    p = np.sqrt((Wk - 1.0) * (Wk + 1.0))
    g = math.sqrt(1.0 - (ALPHA_EM * Z) ** 2)
    eta = -ALPHA_EM * Z * Wk / p
    log_f = (2.0 * g - 2.0) * np.log(p) + np.pi * eta + 2.0 * loggamma(g + 1j * eta).real
    with np.errstate(under="ignore"):  # F -> 0 for slow positrons (exp(pi eta), eta -> -inf): exact 0 is right
        out[ok] = np.exp(log_f)
    return out


def beta_plus_spectrum(E, endpoint: float, Z_daughter: float) -> np.ndarray:
    """Allowed beta+ neutrino spectrum ``E^2 W p F(Z', W)`` (not normalised).

    Parameters
    ----------
    E : array_like
        Neutrino energy [MeV].
    endpoint : float
        Neutrino endpoint = kinetic-energy endpoint of the positron [MeV].
    Z_daughter : float
        Charge of the daughter nucleus.

    Returns
    -------
    numpy.ndarray
        ``E^2 W p F`` with W, p the positron total energy and momentum (units of m_e) and
        ``W = (endpoint + m_e - E) / m_e``; 0 outside ``0 <= E <= endpoint``.
    """
    E = np.asarray(E, dtype=float)
    W = (endpoint + M_E - E) / M_E
    out = np.zeros(np.broadcast(E, W).shape)
    ok = (E >= 0) & (W > 1.0)
    if np.any(ok):
        Eo = np.broadcast_to(E, out.shape)[ok]
        Wo = np.broadcast_to(W, out.shape)[ok]
        p = np.sqrt((Wo - 1.0) * (Wo + 1.0))
        out[ok] = Eo**2 * Wo * p * positron_fermi_function(Z_daughter, Wo)
    return out


# =============================================================================================
# 8B: allowed spectrum folded over the 8Be(2+) final-state density (single-channel R-matrix)
# =============================================================================================

#: 8B -> 8Be(g.s.) electron-capture Q value (atomic mass difference) [MeV]: mass excesses
#: 22921.6 keV (8B) and 4941.67 keV (8Be), AME2020 (M. Wang et al., Chin. Phys. C 45 (2021) 030003).
B8_Q_EC = 17.9799
#: maximum neutrino energy, reached for an 8Be excitation E_x -> 0: Q_EC - 2 m_e [MeV]
B8_E_NU_MAX = B8_Q_EC - 2.0 * M_E
#: 8Be ground state above the 2-alpha threshold [MeV] (TUNL, Tilley et al. NPA 745 (2004) 155)
BE8_GS_ABOVE_2ALPHA = 0.09184
#: alpha-alpha orbital angular momentum of the 2+ final states fed by the allowed 8B(2+) decay
BE8_L = 2
#: R-matrix channel radius [fm].  Chosen with the fit (scripts/fit_source_parametrisations.py), which
#: reproduces Bahcall's table to max 1.2 / 1.4 / 1.7 / 2.2 % (1-15 MeV) for a = 3.5 / 4.0 / 4.5 / 5.0 fm;
#: 4.5 fm is the smallest radius at which the fitted reduced width of the broad level stays below the
#: Wigner limit 3 hbar^2 / (2 mu a^2) = 1.55 MeV (4.0 fm: 2.23 MeV vs 1.96 MeV; 3.5 fm: 6.6 vs 2.6 MeV).
BE8_CHANNEL_RADIUS_FM = 4.5
#: the isospin-mixed 2+ doublet at 16.626 MeV (Gamma = 108 keV) and 16.922 MeV (74 keV) (TUNL,
#: Tilley et al. 2004), treated as one narrow level: (E_x centroid [MeV], alpha width [MeV] at the
#: centroid, from which its reduced width gamma^2 = Gamma / (2 P) follows).  Fixed, not fitted.
BE8_DOUBLET = (16.774, 0.091)
#: fitted final-state parameters ``(E_1, gamma_1^2, b_2)``: E_x of the broad 2+ level [MeV], its
#: reduced alpha width [MeV], and the beta-feeding amplitude of the doublet relative to it.
#: Least squares (relative residuals, 0.5-15.2 MeV) of :func:`b8_spectrum` against J.N. Bahcall's
#: 8B table (Bahcall et al., PRC 54 (1996) 411; best-estimate column), see
#: scripts/fit_source_parametrisations.py.  Measured: max |shape / table - 1| = 1.7 % on 1-15 MeV
#: (the table itself is rough at the 1-2 % level near 15 MeV: piecewise-linear segments); fraction
#: above 14 MeV 0.995x the table's; integral |difference| 7e-4; see docs/sources.md.
B8_LEVEL_PARAMS = (3.2221, 1.1825, -19.0161)

#: eta * k of the alpha-alpha channel, Z_a^2 alpha mu c^2 / (hbar c) [fm^-1], mu = m_alpha / 2
_AA_ETA_K = 4.0 * ALPHA_EM * 0.5 * M_ALPHA / HBARC_MEV_FM


def _coulomb_asymptotic(L: int, eta, rho):
    """Coulomb F_L, G_L, dF_L/drho, dG_L/drho for rho >> eta, L (asymptotic series).

    M. Abramowitz and I.A. Stegun, Handbook of Mathematical Functions (1964), Eqs. 14.5.1-14.5.8:
    ``F = g cos(theta) + f sin(theta)``, ``G = f cos(theta) - g sin(theta)``,
    ``theta = rho - eta ln(2 rho) - L pi/2 + sigma_L``, ``sigma_L = arg Gamma(L + 1 + i eta)``.
    """
    f, g = np.ones_like(rho), np.zeros_like(rho)
    fs, gs = np.zeros_like(rho), 1.0 - eta / rho
    F, G, FS, GS = f.copy(), g.copy(), fs.copy(), gs.copy()
    last = np.inf
    for k in range(80):
        a = (2 * k + 1) * eta / ((2 * k + 2) * rho)
        b = (L * (L + 1) - k * (k + 1) + eta**2) / ((2 * k + 2) * rho)
        f, g = a * f - b * g, a * g + b * f
        fs, gs = a * fs - b * gs - f / rho, a * gs + b * fs - g / rho
        size = float(np.max(np.abs(np.concatenate([f, g, fs, gs]))))
        if size > last and k > 2:  # pragma: no cover - the callers choose rho so this never happens
            raise NumericalError(f"Coulomb asymptotic series diverges (rho = {rho.min():.3g}, eta = {eta.max():.3g})")
        F, G, FS, GS = F + f, G + g, FS + fs, GS + gs
        last = size
        if size < 1e-17:
            break
    theta = rho - eta * np.log(2.0 * rho) - 0.5 * L * np.pi + loggamma(L + 1 + 1j * eta).imag
    c, s = np.cos(theta), np.sin(theta)
    return G * c + F * s, F * c - G * s, GS * c + FS * s, FS * c - GS * s


def alpha_alpha_penetrability(E_aa, L: int = BE8_L, a: float = BE8_CHANNEL_RADIUS_FM):
    """Coulomb penetrability and shift factor of the alpha-alpha channel at radius ``a``.

    ``P_L = rho / (F_L^2 + G_L^2)`` and ``S_L = rho (F_L F_L' + G_L G_L') / (F_L^2 + G_L^2)`` at
    ``rho = k a`` (A.M. Lane and R.G. Thomas, Rev. Mod. Phys. 30 (1958) 257), with the regular and
    irregular Coulomb functions F_L, G_L of ``eta = Z_a^2 alpha sqrt(mu / 2E)``.  F and G are
    started from their asymptotic series far outside the barrier (``k r >= 60``) and integrated
    inwards to ``r = a`` (DOP853, rtol 1e-11): G grows inwards, so this direction is stable.
    Agreement with ``mpmath.coulombf/coulombg`` is ~1e-12 (tests/test_b8_shape.py).

    Parameters
    ----------
    E_aa : array_like
        alpha-alpha relative (c.m.) energy [MeV], > 0.
    L : int
        Orbital angular momentum.
    a : float
        Channel radius [fm].

    Returns
    -------
    (P, S) : tuple of numpy.ndarray
        Dimensionless penetrability and shift factor, shaped like ``E_aa``.
    """
    E = np.atleast_1d(np.asarray(E_aa, dtype=float))
    if not np.all(np.isfinite(E) & (E > 0)):
        raise UnphysicalInput("alpha-alpha energies must be finite and > 0 MeV")
    flat = E.ravel()
    n = flat.size
    k = np.sqrt(2.0 * 0.5 * M_ALPHA * flat) / HBARC_MEV_FM  # [fm^-1]
    eta = _AA_ETA_K / k
    rho_far_needed = np.maximum(60.0, 2.0 * (eta**2 + L * (L + 1)))
    r_far = max(float(np.max(rho_far_needed / k)), 2.0 * a)
    F, G, Fp, Gp = _coulomb_asymptotic(L, eta, k * r_far)
    w_l = L * (L + 1)

    def rhs(r, y):
        w = w_l / r**2 + 2.0 * _AA_ETA_K / r - k**2  # u'' = w u  (radial Coulomb equation in r)
        return np.concatenate([y[n:2 * n], w * y[:n], y[3 * n:], w * y[2 * n:3 * n]])

    from scipy.integrate import solve_ivp  # only for the alpha-alpha penetrability (cached)

    sol = solve_ivp(rhs, (r_far, a), np.concatenate([F, k * Fp, G, k * Gp]), method="DOP853",
                    rtol=1e-11, atol=1e-14, t_eval=[a])
    if not sol.success:  # pragma: no cover
        raise NumericalError(f"Coulomb-function integration failed: {sol.message}")
    y = sol.y[:, -1]
    F, Fp, G, Gp = y[:n], y[n:2 * n] / k, y[2 * n:3 * n], y[3 * n:] / k
    rho = k * a
    m2 = F * F + G * G
    return (rho / m2).reshape(E.shape), (rho * (F * Fp + G * Gp) / m2).reshape(E.shape)


@lru_cache(maxsize=8)
def _be8_channel_functions(a: float):
    """Cubic splines of ln P_2 and S_2 against ln E_aa on [threshold of 8Be g.s., 8B endpoint]."""
    from scipy.interpolate import CubicSpline  # only for the live 8B computation (b8_spectrum_exact)

    x = np.linspace(math.log(BE8_GS_ABOVE_2ALPHA), math.log(B8_E_NU_MAX + BE8_GS_ABOVE_2ALPHA + 0.05), 320)
    P, S = alpha_alpha_penetrability(np.exp(x), BE8_L, a)
    return CubicSpline(x, np.log(P)), CubicSpline(x, S)


def be8_final_state_density(E_x, params=B8_LEVEL_PARAMS, channel_radius: float = BE8_CHANNEL_RADIUS_FM) -> np.ndarray:
    """Density of 8Be(2+) final states populated in 8B beta+ decay (arbitrary normalisation).

    Single-channel (alpha + alpha, l = 2), two-level R-matrix for beta-delayed particle emission
    (A.M. Lane and R.G. Thomas, Rev. Mod. Phys. 30 (1958) 257; applied to 8B and 8Li by
    E.K. Warburton, PRC 33 (1986) 303):

    ``rho(E) = P(E) |sum_l b_l gamma_l / (E_l - E)|^2 / |1 - (S(E) - B + i P(E)) sum_l gamma_l^2 / (E_l - E)|^2``

    with ``E`` the 8Be excitation, ``P``, ``S`` the exact Coulomb penetrability and shift factor
    (:func:`alpha_alpha_penetrability`) at the alpha-alpha energy ``E + 0.09184 MeV``, the
    boundary parameter ``B = S(E_1)``, level 1 the broad 2+ state near 3 MeV
    (``E_1``, ``gamma_1^2`` fitted, ``b_1 = 1``) and level 2 the 16.6/16.9 MeV doublet
    (:data:`BE8_DOUBLET`, fixed; ``b_2`` fitted), whose interference supplies the long high-E_x
    tail.  The l = 2 penetrability makes the density vanish steeply towards E_x -> 0, i.e. fixes the
    high-energy end of the neutrino spectrum.

    Parameters
    ----------
    E_x : array_like
        8Be excitation energy above its ground state [MeV].
    params : tuple of float
        ``(E_1 [MeV], gamma_1^2 [MeV], b_2)``; default :data:`B8_LEVEL_PARAMS`.
    channel_radius : float
        R-matrix channel radius [fm]; the default parameters were fitted with the default
        :data:`BE8_CHANNEL_RADIUS_FM`.

    Returns
    -------
    numpy.ndarray
        rho(E_x) >= 0 (0 for E_x < 0 and above the 8B endpoint).
    """
    E1, g1, b2 = (float(v) for v in params)
    E_x = np.asarray(E_x, dtype=float)
    ln_p, s_fn = _be8_channel_functions(float(channel_radius))
    x_hi = B8_E_NU_MAX + 0.05
    e = np.clip(E_x, 0.0, x_hi)
    ln_e = np.log(e + BE8_GS_ABOVE_2ALPHA)
    P = np.exp(ln_p(ln_e))
    S = s_fn(ln_e)
    B = float(s_fn(math.log(E1 + BE8_GS_ABOVE_2ALPHA)))
    E2, width2 = BE8_DOUBLET
    g2 = width2 / (2.0 * math.exp(float(ln_p(math.log(E2 + BE8_GS_ABOVE_2ALPHA)))))
    # sums multiplied through by d = (E_1 - E)(E_2 - E): no poles at the level energies
    d1, d2 = E1 - e, E2 - e
    amp = math.sqrt(g1) * d2 + b2 * math.sqrt(g2) * d1
    r_d = g1 * d2 + g2 * d1
    den = np.abs(d1 * d2 - (S - B + 1j * P) * r_d) ** 2
    return np.where((E_x >= 0) & (E_x <= x_hi), P * amp * amp / den, 0.0)


#: inner (E_x) quadrature of :func:`b8_spectrum`: composite Gauss-Legendre, 12 nodes per panel.
#: Fixed panels: 6 panels uniform in ln(E_x + 0.09184 MeV) up to E_x = 3.3 MeV (the l = 2 barrier
#: makes rho vary over orders of magnitude there), then linear panels that resolve the 16.6/16.9 MeV
#: doublet; moving breaks at positron kinetic energies 1, 5, 20, 80 keV below the upper limit
#: (the positron Fermi function switches on over ~10 keV).  Measured against adaptive quadrature:
#: relative error < 3e-8 at every E_nu in 0.01-16.9 MeV.
_B8_EX_LOG_TOP = 3.3
_B8_EX_FIXED = np.r_[
    np.r_[0.0, BE8_GS_ABOVE_2ALPHA * np.exp(np.linspace(0.0, math.log((_B8_EX_LOG_TOP + BE8_GS_ABOVE_2ALPHA)
                                                                       / BE8_GS_ABOVE_2ALPHA), 7))[1:]
          - BE8_GS_ABOVE_2ALPHA],
    [4.3, 5.5, 7.0, 9.0, 11.5, 14.0, 15.8, 16.5, 16.65, 16.73, 16.8, 16.87, 17.0],
]
_B8_EX_MOVING = np.array([0.001, 0.005, 0.02, 0.08])
_B8_GL_T, _B8_GL_W = np.polynomial.legendre.leggauss(12)
_B8_GL_T, _B8_GL_W = 0.5 * (_B8_GL_T + 1.0), 0.5 * _B8_GL_W
_B8_CHUNK = 1024  # energies per vectorised block (bounds the (E, node) work arrays to a few MB)


def _b8_block(e: np.ndarray, params, channel_radius: float) -> np.ndarray:
    """Inner E_x integral of :func:`b8_spectrum` for a 1-d block of energies 0 <= e < B8_E_NU_MAX."""
    e = e[:, None]
    x_max = B8_E_NU_MAX - e  # largest excitation that still lets the positron out
    br = np.concatenate([np.broadcast_to(_B8_EX_FIXED, (e.shape[0], _B8_EX_FIXED.size)), x_max - _B8_EX_MOVING], axis=1)
    br = np.clip(np.sort(br, axis=1), 0.0, x_max)
    lo, hi = br[:, :-1], br[:, 1:]
    logp = hi <= _B8_EX_LOG_TOP + 1e-12  # panels integrated in ln(E_x + E_gs)
    u_lo = np.where(logp, np.log(lo + BE8_GS_ABOVE_2ALPHA), lo)
    u_hi = np.where(logp, np.log(hi + BE8_GS_ABOVE_2ALPHA), hi)
    u = u_lo[..., None] + (u_hi - u_lo)[..., None] * _B8_GL_T
    e_x = np.where(logp[..., None], np.exp(u) - BE8_GS_ABOVE_2ALPHA, u)
    w = (u_hi - u_lo)[..., None] * _B8_GL_W * np.where(logp[..., None], e_x + BE8_GS_ABOVE_2ALPHA, 1.0)
    e_x = np.clip(e_x.reshape(e.shape[0], -1), 0.0, x_max)
    kernel = beta_plus_spectrum(e, B8_E_NU_MAX - e_x, 4)
    rho = be8_final_state_density(e_x, params, channel_radius)
    return np.sum(kernel * rho * w.reshape(e.shape[0], -1), axis=1)


#: the default 8B spectrum tabulated by scripts/make_b8_table.py (values and slopes of
#: :func:`b8_spectrum_exact`); :func:`b8_spectrum` interpolates it for the default parameters
B8_TABLE_FILE = "b8_spectrum_table.txt"


@lru_cache(maxsize=1)
def _b8_table():
    """(E, f, df/dE) of the shipped default-parameter table, or None if it is missing or stale."""
    path = Path(__file__).resolve().parent.parent / "data" / B8_TABLE_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    want = f"# params {B8_LEVEL_PARAMS!r} channel_radius_fm {BE8_CHANNEL_RADIUS_FM!r} E_max {B8_E_NU_MAX!r}"
    if len(lines) < 3 or lines[1].strip() != want:  # written for other constants: compute live
        return None
    E, f, d = np.loadtxt(lines, comments="#", unpack=True)
    return E, f, d


def b8_spectrum(E, params=B8_LEVEL_PARAMS, channel_radius: float = BE8_CHANNEL_RADIUS_FM) -> np.ndarray:
    """8B neutrino spectrum (not normalised); see :func:`b8_spectrum_exact`.

    For the default ``params`` and ``channel_radius`` the shipped table
    (``nuinfer/data/b8_spectrum_table.txt``, written by scripts/make_b8_table.py from
    :func:`b8_spectrum_exact`: 2441 energies, denser above 16.4 MeV) is interpolated by cubic
    Hermite polynomials: the same function to 1e-8 of its peak (tests/test_b8_shape.py), within
    the 3e-8 accuracy of the exact quadrature itself, at ~1/100 of the cost (the R-matrix
    penetrability and 264 inner quadrature nodes per energy are not evaluated at run time).
    Other parameters are computed exactly.
    """
    table = _b8_table() if (tuple(float(v) for v in params) == B8_LEVEL_PARAMS
                            and float(channel_radius) == BE8_CHANNEL_RADIUS_FM) else None
    if table is None:
        return b8_spectrum_exact(E, params, channel_radius)
    from nuinfer.physics.interp import hermite
    Et, ft, dt = table
    E = np.asarray(E, dtype=float)
    inside = (E >= 0) & (E < B8_E_NU_MAX)
    out = hermite(Et, ft, dt, np.clip(E, 0.0, B8_E_NU_MAX))
    return np.where(inside, np.maximum(out, 0.0), 0.0)


def b8_spectrum_exact(E, params=B8_LEVEL_PARAMS, channel_radius: float = BE8_CHANNEL_RADIUS_FM) -> np.ndarray:
    """8B neutrino spectrum (not normalised): allowed beta+ shape folded over 8Be final states.

    ``dN/dE_nu = integral dE_x rho(E_x) E_nu^2 W p F(4, W)``, ``W = (Q_EC - 2 m_e - E_x + m_e - E_nu)/m_e``,
    integrated over ``0 <= E_x <= B8_E_NU_MAX - E_nu`` by composite Gauss-Legendre quadrature
    (relative error < 3e-8).

    Parameters
    ----------
    E : array_like
        Neutrino energy [MeV].
    params : tuple of float
        Final-state parameters passed to :func:`be8_final_state_density`.
    channel_radius : float
        R-matrix channel radius [fm] passed to :func:`be8_final_state_density`.

    Returns
    -------
    numpy.ndarray
        Same shape as ``E``; >= 0, and 0 outside ``[0, B8_E_NU_MAX)`` (it vanishes continuously at
        the endpoint).
    """
    E = np.asarray(E, dtype=float)
    flat = E.ravel()
    out = np.zeros(flat.shape)
    idx = np.flatnonzero((flat >= 0) & (flat < B8_E_NU_MAX))
    for start in range(0, idx.size, _B8_CHUNK):
        sel = idx[start:start + _B8_CHUNK]
        out[sel] = _b8_block(flat[sel], params, channel_radius)
    return out.reshape(E.shape)


# =============================================================================================
# Atmospheric neutrinos (FLUKA, Battistoni et al. 2005)
# =============================================================================================

ATM_E_MIN = 13.18  #: lower end of the FLUKA tables [MeV]
ATM_E_MAX = 981.75  #: upper end used by the paper (Table II) [MeV]
#: endpoint of the nu spectra from muon decay at rest, (m_mu^2 - m_e^2) / (2 m_mu) [MeV]
MICHEL_E_MAX = (M_MU**2 - M_E**2) / (2.0 * M_MU)
#: energy of nu_mu from pion decay at rest, (m_pi^2 - m_mu^2) / (2 m_pi) [MeV]
PION_DAR_E = (M_PI_CHARGED**2 - M_MU**2) / (2.0 * M_PI_CHARGED)

#: Fitted atmospheric parametrisation per (flavour, anti):
#: ``dPhi/dE = exp(sum_k poly[k] u^(3-k)) + A_mu M(E) + A_pi G(E)`` [MeV^-1 cm^-2 s^-1],
#: ``u = ln(E / 100 MeV)``; ``M`` the unit-normalised Michel spectrum of muon decay at rest
#: (``"e"``-type ``12 x^2 (1 - x)`` for nu_e / nubar_e, ``"mu"``-type ``2 x^2 (3 - 2x)`` for
#: nu_mu / nubar_mu, ``x = E / MICHEL_E_MAX``) and ``G`` the pion decay-at-rest line, both smeared
#: by a Gaussian of width ``sigma`` [MeV] (muon/pion decay in flight and the FLUKA binning).
#: Least-squares fit in log flux (weight E^-1/2) to the O'Hare copy of the FLUKA tables
#: (shared/data/ohare_neutrinofog_fluxes/atmospheric_FLUKA, 13.18-944 MeV), see
#: scripts/fit_source_parametrisations.py.
ATM_PARAMS: dict[tuple[str, bool], dict] = {
    ("e", False): {
        "poly": (0.0151637, -0.381017, -0.99242, -5.06646),
        "A_mu": 0.144741, "sigma": 3.0432, "A_pi": 0.0, "michel": "e",
    },
    ("e", True): {
        "poly": (0.020698, -0.389531, -1.04572, -5.16613),
        "A_mu": 0.133475, "sigma": 2.8658, "A_pi": 0.0, "michel": "e",
    },
    ("mu", False): {
        "poly": (0.0253413, -0.40503, -1.03952, -4.34766),
        "A_mu": 0.106516, "sigma": 3.5762, "A_pi": 0.0, "michel": "mu",
    },
    ("mu", True): {
        "poly": (0.0242342, -0.403875, -1.04058, -4.3544),
        "A_mu": 0.12785, "sigma": 1.8177, "A_pi": 0.00890527, "michel": "mu",
    },
}

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _gauss_smeared_polynomial(E, coef, upper: float, sigma: float) -> np.ndarray:
    """``integral_0^upper sum_k coef[k] t^k N(t; E, sigma) dt`` in closed form (truncated-normal moments)."""
    E = np.asarray(E, dtype=float)
    a = -E / sigma
    b = (upper - E) / sigma
    with np.errstate(under="ignore"):  # Gaussian tails far from the window: exactly 0 is right
        phi_a = np.exp(-0.5 * a * a) / _SQRT2PI
        phi_b = np.exp(-0.5 * b * b) / _SQRT2PI
    k_max = len(coef) - 1
    moments = [0.5 * (erf(b / _SQRT2) - erf(a / _SQRT2)), phi_a - phi_b]
    with np.errstate(under="ignore"):
        for j in range(2, k_max + 1):
            moments.append((j - 1) * moments[j - 2] + a ** (j - 1) * phi_a - b ** (j - 1) * phi_b)
    out = np.zeros(E.shape)
    for k, c in enumerate(coef):
        if c == 0:
            continue
        term = np.zeros(E.shape)
        with np.errstate(under="ignore"):
            for j in range(k + 1):
                term += math.comb(k, j) * E ** (k - j) * sigma**j * moments[j]
            out += c * term
    return out


def _michel_smeared(E, kind: str, sigma: float) -> np.ndarray:
    """Unit-normalised muon-decay-at-rest neutrino spectrum smeared by a Gaussian of width sigma."""
    em = MICHEL_E_MAX
    if kind == "mu":  # 2 x^2 (3 - 2x) / E_m
        coef = (0.0, 0.0, 6.0 / em**3, -4.0 / em**4)
    else:  # 12 x^2 (1 - x) / E_m
        coef = (0.0, 0.0, 12.0 / em**3, -12.0 / em**4)
    return _gauss_smeared_polynomial(E, coef, em, sigma)


def _atm_model(E, poly, A_mu, sigma, A_pi, michel) -> np.ndarray:
    E = np.asarray(E, dtype=float)
    u = np.log(E / 100.0)
    with np.errstate(under="ignore"):  # the Michel and pion-line tails vanish far from their energies
        flux = np.exp(np.polyval(poly, u)) + A_mu * _michel_smeared(E, michel, sigma)
        if A_pi:
            flux = flux + A_pi * np.exp(-0.5 * ((E - PION_DAR_E) / sigma) ** 2) / (_SQRT2PI * sigma)
    return flux


def atmospheric_flux(E, flavour: str, anti: bool = False, params: Mapping | None = None) -> np.ndarray:
    """Parametrised FLUKA all-sky atmospheric flux dPhi/dE [MeV^-1 cm^-2 s^-1] (unoscillated).

    Parameters
    ----------
    E : array_like
        Neutrino energy [MeV]; the fit is valid on 13.18-944 MeV (used up to 981.75 MeV).
    flavour : {"e", "mu"}
        Produced flavour.
    anti : bool
        Antineutrino.
    params : mapping, optional
        Overrides :data:`ATM_PARAMS` ``[(flavour, anti)]`` (used by the fitting script).

    Returns
    -------
    numpy.ndarray
        Flux in the FLUKA normalisation (the four flavours integrate to ~10.6 cm^-2 s^-1 on
        13.18-981.75 MeV); :func:`emissions` rescales to the requested total.
    """
    if (flavour, bool(anti)) not in ATM_PARAMS:
        raise InvalidConfig(f"atmospheric flavour {flavour!r} is not tabulated; use 'e' or 'mu'")
    p = dict(ATM_PARAMS[(flavour, bool(anti))])
    if params is not None:
        p.update(params)
    E = np.asarray(E, dtype=float)
    out = np.zeros(E.shape)
    ok = E > 0
    out[ok] = _atm_model(E[ok], p["poly"], p["A_mu"], p["sigma"], p["A_pi"], p["michel"])
    return out


# =============================================================================================
# Diffuse supernova neutrinos
# =============================================================================================

DSN_E_MAX = 91.201  #: cut of the DSN spectrum (paper Table II) [MeV]
#: Fermi-Dirac temperatures at the source [MeV] (paper / PHYSICS.md: 3, 5, 8 MeV)
DSN_TEMPERATURES: dict[tuple[str, bool], float] = {
    ("e", False): 3.0,
    ("e", True): 5.0,
    ("mu", False): 8.0,
    ("mu", True): 8.0,
    ("tau", False): 8.0,
    ("tau", True): 8.0,
}
#: Fraction of the DSN *number* flux in each of the six components.
#:
#: ``"reference"`` (default): equal energy emitted in nu_e, in nubar_e and in nu_x (all four heavy
#: flavours together, split equally), i.e. number fractions proportional to 1/T:
#: (1/3, 1/5, 1/8 / 4 x 4) normalised.  This is the split that reproduces the DSNB shape of
#: O'Hare / Billard et al. used by the reference paper (within 7 %); a free fit of the three weights
#: gives 0.54 / 0.28 / 0.17 (vs 0.51 / 0.30 / 0.19 here).
#: ``"equal-luminosity"``: each of the six flavours carries 1/6 of the energy (number fractions
#: proportional to 1/T for each of the six); a harder total spectrum (1.8-2.7x the reference
#: at 20-90 MeV).
DSN_SPLITS: dict[str, dict[tuple[str, bool], float]] = {}


def _dsn_split(weights_per_flavour: dict[tuple[str, bool], float]) -> dict[tuple[str, bool], float]:
    total = sum(weights_per_flavour.values())
    return {k: v / total for k, v in weights_per_flavour.items()}


DSN_SPLITS["reference"] = _dsn_split(
    {
        k: (1.0 / T if k[0] == "e" else 1.0 / T / 4.0)
        for k, T in DSN_TEMPERATURES.items()
    }
)
DSN_SPLITS["equal-luminosity"] = _dsn_split({k: 1.0 / T for k, T in DSN_TEMPERATURES.items()})

#: Supernova-rate history R_SN(z) proportional to the cosmic star-formation rate in the smoothly
#: broken power-law form of H. Yuksel et al., ApJ 683 (2008) L5 (as used by S. Horiuchi, J.F. Beacom,
#: E. Dwek, PRD 79 (2009) 083013): slopes (a, b, c) for z < 1, 1 < z < 4, z > 4, smoothing eta = -10,
#: integrated to z_max = 5 in a flat (Omega_m, Omega_L) = (0.3, 0.7) cosmology.  a = 3.4 and
#: c = -3.5 are Yuksel's; b = 0.046 is a least-squares fit of the total DSN shape ("reference"
#: split) to the O'Hare DSNB table (Yuksel: -0.3, which leaves a 16 % deviation at high E), see
#: scripts/fit_source_parametrisations.py.
DSN_SFR = {"a": 3.4, "b": 0.046, "c": -3.5, "z1": 1.0, "z2": 4.0, "eta": -10.0, "z_max": 5.0}
DSN_COSMOLOGY = {"omega_m": 0.3, "omega_l": 0.7}


def _sfr(z, a, b, c, z1, z2, eta) -> np.ndarray:
    """Smoothly broken power law, continuous at the breaks z1, z2 (value 1 at z = 0)."""
    lz = np.log1p(z)
    l1, l2 = math.log1p(z1), math.log1p(z2)
    t1 = a * lz
    t2 = b * lz + (a - b) * l1
    t3 = c * lz + (a - b) * l1 + (b - c) * l2
    # [sum exp(eta t_i)]^(1/eta) evaluated stably in log space
    m = np.maximum(np.maximum(eta * t1, eta * t2), eta * t3)
    s = np.exp(eta * t1 - m) + np.exp(eta * t2 - m) + np.exp(eta * t3 - m)
    return np.exp((m + np.log(s)) / eta)


def _dsn_z_rule(sfr: Mapping) -> tuple[np.ndarray, np.ndarray]:
    z_max = sfr["z_max"]
    edges = [0.0, 0.5, 1.0, 1.5, 2.5, 4.0, z_max] if z_max > 4.0 else np.linspace(0.0, z_max, 7)
    nodes, weights = _gauss_legendre_panels(edges, 16)
    om, ol = DSN_COSMOLOGY["omega_m"], DSN_COSMOLOGY["omega_l"]
    dens = _sfr(nodes, sfr["a"], sfr["b"], sfr["c"], sfr["z1"], sfr["z2"], sfr["eta"])
    return nodes, weights * dens / np.sqrt(om * (1.0 + nodes) ** 3 + ol)


def dsn_flavour_spectrum(E, T: float, sfr: Mapping | None = None) -> np.ndarray:
    """Redshift-integrated Fermi-Dirac spectrum of one DSN flavour (not normalised).

    ``dPhi/dE ~ integral_0^z_max dz R_SN(z) f_FD(E (1 + z); T) / sqrt(Omega_m (1+z)^3 + Omega_L)``
    with ``f_FD(E; T) = E^2 / (exp(E / T) + 1)`` the zero-chemical-potential Fermi-Dirac spectrum
    at the source (J.F. Beacom, Ann. Rev. Nucl. Part. Sci. 60 (2010) 439, Eq. 1).

    Parameters
    ----------
    E : array_like
        Neutrino energy at Earth [MeV].
    T : float
        Source temperature [MeV].
    sfr : mapping, optional
        Overrides of :data:`DSN_SFR`.

    Returns
    -------
    numpy.ndarray
        Unnormalised spectrum (0 for E < 0).
    """
    s = dict(DSN_SFR)
    if sfr is not None:
        s.update(sfr)
    z, wz = _dsn_z_rule(s)
    E = np.asarray(E, dtype=float)
    e = np.maximum(E, 0.0)[..., None] * (1.0 + z)
    x = e / T
    fd = e**2 * np.exp(-x) / (1.0 + np.exp(-x))
    return np.sum(fd * wz, axis=-1)


# =============================================================================================
# Building the emissions of each source
# =============================================================================================

_BETA_KNOTS_FRACTIONS = (0.0, 0.5, 0.9, 0.99, 1.0)
_B8_KNOTS = (0.0, 4.0, 10.0, 14.0, 16.0, B8_E_NU_MAX)
_ATM_KNOTS = (ATM_E_MIN, 20.0, PION_DAR_E, 40.0, MICHEL_E_MAX, 70.0, 150.0, 400.0, ATM_E_MAX)
_DSN_KNOTS = (0.0, 3.0, 10.0, 25.0, 50.0, DSN_E_MAX)


@lru_cache(maxsize=None)
def _continuum_shape(source: str, flavour: str, anti: bool):
    """(normalised shape function, E_min, E_max, knots, log_grid, normalisation) for a built-in source."""
    if source in BETA_PLUS_SOURCES:
        Z, E0 = BETA_PLUS_SOURCES[source]
        knots = tuple(f * E0 for f in _BETA_KNOTS_FRACTIONS)
        fn, norm = _normalised(lambda E: beta_plus_spectrum(E, E0, Z), 0.0, E0, knots)
        return fn, 0.0, E0, knots, False, norm
    if source == "8B":
        fn, norm = _normalised(b8_spectrum, 0.0, B8_E_NU_MAX, _B8_KNOTS)
        return fn, 0.0, B8_E_NU_MAX, _B8_KNOTS, False, norm
    if source == "atm":
        fn, norm = _normalised(lambda E: atmospheric_flux(E, flavour, anti), ATM_E_MIN, ATM_E_MAX, _ATM_KNOTS)
        return fn, ATM_E_MIN, ATM_E_MAX, _ATM_KNOTS, True, norm
    if source == "DSN":
        T = DSN_TEMPERATURES[(flavour, anti)]
        fn, norm = _normalised(lambda E: dsn_flavour_spectrum(E, T), 0.0, DSN_E_MAX, _DSN_KNOTS)
        return fn, 0.0, DSN_E_MAX, _DSN_KNOTS, False, norm
    raise KeyError(source)  # pragma: no cover


class _BuiltinShape:
    """Picklable handle on the (cached) normalised shape of a built-in source component."""

    __slots__ = ("source", "flavour", "anti")

    def __init__(self, source: str, flavour: str, anti: bool):
        self.source, self.flavour, self.anti = source, flavour, anti

    def __call__(self, E):
        return _continuum_shape(self.source, self.flavour, self.anti)[0](E)

    def __getstate__(self):
        return (self.source, self.flavour, self.anti)

    def __setstate__(self, state):
        self.source, self.flavour, self.anti = state


class _TableShape:
    """Piecewise-linear, unit-normalised shape of a user table (picklable)."""

    __slots__ = ("E", "y")

    def __init__(self, E, y):
        self.E, self.y = E, y

    def __call__(self, x):
        return np.interp(x, self.E, self.y, left=0.0, right=0.0)

    def __getstate__(self):
        return (self.E, self.y)

    def __setstate__(self, state):
        self.E, self.y = state


def _atm_fractions() -> dict[tuple[str, bool], float]:
    """Per-flavour share of the atmospheric flux on [ATM_E_MIN, ATM_E_MAX] from the parametrisation."""
    norms = {k: _continuum_shape("atm", k[0], k[1])[5] for k in ATM_PARAMS}
    total = sum(norms.values())
    return {k: v / total for k, v in norms.items()}


def _check_source(name: str) -> None:
    if name not in SOURCE_NAMES:
        lower = {n.lower(): n for n in SOURCE_NAMES}
        close = difflib.get_close_matches(str(name).lower(), list(lower), n=1)
        hint = f" (did you mean {lower[close[0]]!r}?)" if close else ""
        raise InvalidConfig(f"unknown neutrino source {name!r}{hint}; known sources: {', '.join(SOURCE_NAMES)}")


def _check_total(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidConfig(f"{what} must be a number (cm^-2 s^-1), got {value!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise UnphysicalInput(f"{what} must be a finite flux >= 0 cm^-2 s^-1, got {value!r}")
    return v


def resolve_total_flux(name: str, normalisation: str | Mapping | float = "paper") -> float:
    """Total flux [cm^-2 s^-1] of source ``name`` under ``normalisation``.

    Parameters
    ----------
    name : str
        Source name (:data:`SOURCE_NAMES`).
    normalisation : str, mapping or float
        A preset of :data:`NORMALISATIONS`; a mapping ``{source: flux}`` overriding some sources
        of a preset (the preset is ``mapping["preset"]`` if given, else ``"paper"``); or a number,
        the total flux of this source.
    """
    _check_source(name)
    if isinstance(normalisation, str):
        if normalisation not in NORMALISATIONS:
            raise InvalidConfig(
                f"unknown flux normalisation preset {normalisation!r}; use one of {sorted(NORMALISATIONS)}, "
                "a dict {source: flux} or a number"
            )
        return NORMALISATIONS[normalisation][name]
    if isinstance(normalisation, Mapping):
        preset = normalisation.get("preset", "paper")
        if preset not in NORMALISATIONS:
            raise InvalidConfig(f"unknown flux normalisation preset {preset!r}; use one of {sorted(NORMALISATIONS)}")
        unknown = [k for k in normalisation if k != "preset" and k not in SOURCE_NAMES]
        if unknown:
            raise InvalidConfig(
                f"flux normalisation overrides name unknown sources {unknown}; known sources: {', '.join(SOURCE_NAMES)}"
            )
        if name in normalisation:
            return _check_total(normalisation[name], f"flux normalisation of {name!r}")
        return NORMALISATIONS[preset][name]
    if isinstance(normalisation, bool):
        raise InvalidConfig(f"flux normalisation of {name!r} must be a preset name, a dict or a number, got a bool")
    return _check_total(normalisation, f"flux normalisation of {name!r}")


def emissions(
    name: str,
    *,
    normalisation: str | Mapping | float = "paper",
    dsn_split: str = "reference",
) -> list[Emission]:
    """Unoscillated production components of a built-in source.

    Parameters
    ----------
    name : str
        One of :data:`SOURCE_NAMES`.
    normalisation : str, mapping or float
        Preset name of :data:`NORMALISATIONS` (default ``"paper"``), a mapping overriding some
        sources (optionally with key ``"preset"``), or the total flux of this source
        [cm^-2 s^-1].
    dsn_split : str
        Flavour split of the DSN flux, a key of :data:`DSN_SPLITS` (ignored for other sources).

    Returns
    -------
    list of Emission
        Solar sources: one nu_e component (a line for pep and 7Be).  ``atm``: nu_e, nubar_e,
        nu_mu, nubar_mu with the FLUKA flavour ratios of the parametrisation.  ``DSN``: nu_e,
        nubar_e, nu_mu, nubar_mu, nu_tau, nubar_tau.  Component fluxes sum to the total.
    """
    total = resolve_total_flux(name, normalisation)
    if name in LINE_ENERGIES_MEV:
        return [Emission(source=name, flavour="e", anti=False, flux=total, line_energy=LINE_ENERGIES_MEV[name])]
    if name in SOLAR_SOURCES:
        _, lo, hi, knots, log_grid, _ = _continuum_shape(name, "e", False)
        return [
            Emission(
                source=name, flavour="e", anti=False, flux=total, E_min=lo, E_max=hi,
                knots=knots, log_grid=log_grid, _shape_fn=_BuiltinShape(name, "e", False),
            )
        ]
    if name == "atm":
        fractions = _atm_fractions()
    else:
        if dsn_split not in DSN_SPLITS:
            raise InvalidConfig(f"unknown DSN flavour split {dsn_split!r}; use one of {sorted(DSN_SPLITS)}")
        fractions = DSN_SPLITS[dsn_split]
    out = []
    for (flavour, anti), frac in fractions.items():
        _, lo, hi, knots, log_grid, _ = _continuum_shape(name, flavour, anti)
        out.append(
            Emission(
                source=name, flavour=flavour, anti=anti, flux=total * frac, E_min=lo, E_max=hi,
                knots=knots, log_grid=log_grid, _shape_fn=_BuiltinShape(name, flavour, anti),
            )
        )
    return out


# =============================================================================================
# User tables
# =============================================================================================


def _parse_table_file(path: Path, usecols) -> tuple[np.ndarray, list[str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(
            f"cannot read flux table {str(path)!r} ({exc.__class__.__name__}: {exc}); give the path of a readable "
            "text file with two columns, E [MeV] and dPhi/dE"
        ) from None
    rows, where = [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").replace(";", " ").split()
        loc = f"{path}, line {lineno}"
        if usecols is None:
            if len(fields) != 2:
                raise DataFileError(
                    f"{loc}: expected 2 columns (E [MeV], dPhi/dE), found {len(fields)}: {raw.strip()!r}; "
                    "remove extra columns, comment headers with '#', or pass usecols=(i, j)"
                )
            picked = fields
        else:
            if max(usecols) >= len(fields):
                raise DataFileError(f"{loc}: has {len(fields)} columns, cannot take columns {tuple(usecols)}")
            picked = [fields[usecols[0]], fields[usecols[1]]]
        try:
            rows.append([float(picked[0]), float(picked[1])])
        except ValueError:
            raise DataFileError(
                f"{loc}: not numeric: {raw.strip()!r}; every data line needs two numbers (comment headers with '#')"
            ) from None
        where.append(loc)
    if not rows:
        raise DataFileError(f"flux table {str(path)!r} has no data lines; expected two columns E [MeV], dPhi/dE")
    return np.array(rows, dtype=float), where


def _table_arrays(obj, usecols) -> tuple[np.ndarray, list[str], str]:
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        data, where = _parse_table_file(path, usecols)
        return data, where, str(path)
    try:
        if isinstance(obj, (tuple, list)) and len(obj) == 2 and np.ndim(obj[0]) == 1:
            data = np.column_stack([np.asarray(obj[0], dtype=float), np.asarray(obj[1], dtype=float)])
        else:
            data = np.asarray(obj, dtype=float)
            if data.ndim == 2 and usecols is not None:
                data = data[:, list(usecols)]
    except (TypeError, ValueError, IndexError) as exc:
        raise DataFileError(
            f"flux table arrays could not be read as numbers ({exc}); pass (E, dPhi/dE) or an (n, 2) array"
        ) from None
    if data.ndim != 2 or data.shape[1] != 2 or data.shape[0] == 0:
        raise DataFileError(f"flux table array has shape {data.shape}; expected (n, 2) columns E [MeV], dPhi/dE")
    where = [f"array row {i}" for i in range(1, data.shape[0] + 1)]
    return data, where, "array input"


def from_table(
    name: str,
    path_or_arrays,
    *,
    flavour: str = "e",
    anti: bool = False,
    flux: float | None = None,
    usecols: tuple[int, int] | None = None,
) -> list[Emission]:
    """Build a source component from a user table of E [MeV] and dPhi/dE.

    Parameters
    ----------
    name : str
        Source name given to the component (a built-in name such as ``"8B"`` replaces that
        source's shape; oscillation follows the name, see :mod:`nuinfer.physics.oscillation`).
    path_or_arrays : str, Path, (E, y) pair or (n, 2) array
        Text file with two numeric columns separated by blanks, commas or semicolons ('#' starts
        a comment), or the arrays themselves.
    flavour : {"e", "mu", "tau"}
        Produced flavour.
    anti : bool
        Antineutrino.
    flux : float, optional
        If None the table is absolute (cm^-2 s^-1 MeV^-1) and the total flux is its trapezoid
        integral; otherwise the table gives the shape only and is scaled to ``flux``.
    usecols : (int, int), optional
        Columns to use when the file has more than two (e.g. ``(0, 1)`` for the Bahcall 8B table).

    Returns
    -------
    list of Emission
        One component.  The continuum shape is the piecewise-linear interpolation of the table,
        normalised by its trapezoid integral and zero outside the tabulated range.  A table with a
        single data line (or whose lines all share one energy) is a monochromatic line at that
        energy; its flux is the tabulated value (summed over lines) unless ``flux`` is given.

    Raises
    ------
    DataFileError
        Unreadable file; wrong column count; non-numeric, non-finite or negative values;
        energies not strictly increasing; all values zero.  The message names the file and line.
    """
    if not isinstance(name, str) or not name:
        raise InvalidConfig(f"source name for a user table must be a non-empty string, got {name!r}")
    if flavour not in FLAVOURS:
        raise InvalidConfig(f"flavour {flavour!r} for table {name!r} is unknown; use one of {FLAVOURS}")
    if usecols is not None and (len(usecols) != 2 or min(usecols) < 0):
        raise InvalidConfig(f"usecols must be two non-negative column indices, got {usecols!r}")
    data, where, label = _table_arrays(path_or_arrays, usecols)
    E, y = data[:, 0], data[:, 1]
    for i in range(E.size):
        if not (np.isfinite(E[i]) and np.isfinite(y[i])):
            raise DataFileError(f"{where[i]}: non-finite value (E={E[i]}, dPhi/dE={y[i]}); remove or fix it")
        if E[i] < 0:
            raise DataFileError(f"{where[i]}: negative energy E={E[i]} MeV; energies must be >= 0")
        if y[i] < 0:
            raise DataFileError(f"{where[i]}: negative flux dPhi/dE={y[i]} at E={E[i]} MeV; fluxes must be >= 0")
    if np.all(y == 0):
        raise DataFileError(f"flux table {label!r} is all zero; it must contain a positive flux")
    if flux is not None:
        flux = _check_total(flux, f"flux for table {name!r}")

    if E.size == 1 or np.all(E == E[0]):
        line_flux = float(np.sum(y)) if flux is None else flux
        return [Emission(source=name, flavour=flavour, anti=bool(anti), flux=line_flux, line_energy=float(E[0]))]

    for i in range(1, E.size):
        if not E[i] > E[i - 1]:
            raise DataFileError(
                f"{where[i]}: energy {E[i]} MeV does not increase (previous {E[i - 1]} MeV); "
                "energies must be strictly increasing"
            )
    integral = float(np.trapezoid(y, E))
    if not integral > 0:
        raise DataFileError(f"flux table {label!r} integrates to zero; it must contain a positive flux")
    E_tab = E.copy()
    shape = _TableShape(E_tab, y / integral)
    total = integral if flux is None else flux
    knots = tuple(float(v) for v in E_tab)
    return [
        Emission(
            source=name, flavour=flavour, anti=bool(anti), flux=total, E_min=float(E_tab[0]), E_max=float(E_tab[-1]),
            knots=knots, log_grid=False, piecewise_linear=True, _shape_fn=shape,
        )
    ]

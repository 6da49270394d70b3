"""Spin-independent WIMP-nucleus recoil spectra in the standard halo model.

Rate per target nucleus (Lewin & Smith, Astropart. Phys. 6 (1996) 87, Eqs. 3.9, 3.14 and 7.27)::

    dR/dE_nr = (rho / m_chi) * sigma_n A^2 m_N / (2 mu_n^2) * F^2(q) * eta(v_min),
    v_min    = sqrt(m_N E_nr / (2 mu_N^2)),
    eta      = int_{|v| > v_min} f_E(v) / |v| d^3v,

with mu_n (mu_N) the WIMP-nucleon (WIMP-nucleus) reduced mass, f_p = f_n (isospin-conserving
couplings, so sigma_N = sigma_n A^2 mu_N^2 / mu_n^2), the Helm form factor of
:func:`nuinfer.physics.cevns.helm_form_factor` (PHYSICS.md sec. 3) and a natural target summed over its
isotopes with their abundances, masses and mass numbers.

Standard halo model (SHM)
-------------------------
Galactic-frame velocities follow a Maxwellian ``f(v) ~ exp(-v^2 / v0^2)`` truncated sharply at
``v_esc``; the detector moves with speed ``v_E``.  The defaults follow the conventions recommended by
D. Baxter et al., EPJC 81 (2021) 907 (arXiv:2105.00599): rho = 0.3 GeV/cm^3, v0 = 238 km/s,
v_esc = 544 km/s and the annual mean Earth speed v_E = |v_sun| = 250.5 km/s (v_sun = (11.1, 250.2, 7.3)
km/s).  With ``x = v_min/v0``, ``y = v_E/v0``, ``z = v_esc/v0`` and
``N_esc = erf(z) - 2 z exp(-z^2) / sqrt(pi)`` the velocity integral has the closed form (Lewin & Smith
App. B; C. Savage, K. Freese, P. Gondolo, PRD 74 (2006) 043531, Eq. B3; valid for ``z > y``)::

    eta = 1/(2 N_esc v0 y) [erf(x+y) - erf(x-y) - 4 y exp(-z^2)/sqrt(pi)]          x <  z - y
    eta = 1/(2 N_esc v0 y) [erf(z)   - erf(x-y) - 2 (y+z-x) exp(-z^2)/sqrt(pi)]    z - y <= x < z + y
    eta = 0                                                                          x >= z + y

and ``eta -> 2 (exp(-x^2) - exp(-z^2)) / (sqrt(pi) N_esc v0)`` for ``y -> 0`` (used below ``y = 1e-6``).

Units: energies in MeV internally; rates are returned per tonne-year of target per MeV (or as
binned counts for an exposure), cross sections in cm^2, densities in GeV/cm^3, speeds in km/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from nuinfer.constants import KEV, M_P, SECONDS_PER_YEAR, tonne_year_targets
from nuinfer.exceptions import UnphysicalInput
from nuinfer.physics.cevns import helm_form_factor
from nuinfer.physics.targets import Target, get_target

__all__ = [
    "C_KM_S",
    "StandardHalo",
    "binned_counts",
    "dR_dEnr",
    "e_nr_max",
    "eta",
    "total_rate",
    "v_min",
]

#: speed of light [km/s] (exact, SI)
C_KM_S = 299792.458
_SQRT_PI = np.sqrt(np.pi)


@dataclass(frozen=True)
class StandardHalo:
    """Standard-halo-model parameters (defaults: Baxter et al. 2021, see the module docstring).

    Parameters
    ----------
    rho_GeV_cm3 : float
        Local dark-matter density [GeV/cm^3].
    v0_km_s : float
        Maxwellian most probable speed (circular speed of the local standard of rest) [km/s].
    v_esc_km_s : float
        Galactic escape speed [km/s]; must exceed ``v_E_km_s``.
    v_E_km_s : float
        Detector speed in the galactic frame [km/s] (0 gives the Lewin & Smith rest-frame limit).
    """

    rho_GeV_cm3: float = 0.3
    v0_km_s: float = 238.0
    v_esc_km_s: float = 544.0
    v_E_km_s: float = 250.5

    def __post_init__(self):
        for name in ("rho_GeV_cm3", "v0_km_s", "v_esc_km_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise UnphysicalInput(f"must be finite and > 0, got {v}", key=f"halo.{name}")
        if not (np.isfinite(self.v_E_km_s) and self.v_E_km_s >= 0):
            raise UnphysicalInput(f"must be finite and >= 0, got {self.v_E_km_s}", key="halo.v_E_km_s")
        if self.v_esc_km_s <= self.v_E_km_s:
            raise UnphysicalInput(
                f"escape speed ({self.v_esc_km_s} km/s) must exceed the Earth speed ({self.v_E_km_s} km/s)",
                key="halo.v_esc_km_s")

    @property
    def v_max_km_s(self) -> float:
        """Largest WIMP speed in the detector frame, ``v_esc + v_E`` [km/s]."""
        return self.v_esc_km_s + self.v_E_km_s

    @property
    def n_esc(self) -> float:
        """Normalisation of the truncated Maxwellian, ``erf(z) - 2 z exp(-z^2)/sqrt(pi)``."""
        z = self.v_esc_km_s / self.v0_km_s
        return float(erf(z) - 2.0 * z * np.exp(-z * z) / _SQRT_PI)


def eta(v_min_km_s, halo: StandardHalo = StandardHalo()) -> np.ndarray:
    """Mean inverse speed ``eta(v_min) = int f(v)/v d^3v`` above ``v_min`` [s/km].

    Closed form for the truncated, boosted Maxwellian (module docstring).

    Parameters
    ----------
    v_min_km_s : array_like
        Minimum WIMP speed [km/s], >= 0.
    halo : StandardHalo

    Returns
    -------
    numpy.ndarray
        ``eta`` in s/km, same shape as ``v_min_km_s``; zero above ``v_esc + v_E``.
    """
    v = np.asarray(v_min_km_s, dtype=float)
    v0 = halo.v0_km_s
    x = v / v0
    y = halo.v_E_km_s / v0
    z = halo.v_esc_km_s / v0
    ez = np.exp(-z * z)
    norm = halo.n_esc
    if y < 1e-6:
        out = 2.0 * (np.exp(-x * x) - ez) / (_SQRT_PI * norm * v0)
        return np.where(x < z, out, 0.0)
    low = erf(x + y) - erf(x - y) - 4.0 * y * ez / _SQRT_PI
    mid = erf(z) - erf(x - y) - 2.0 * (y + z - x) * ez / _SQRT_PI
    out = np.where(x < z - y, low, np.where(x < z + y, mid, 0.0))
    return np.maximum(out, 0.0) / (2.0 * norm * v0 * y)


def _reduced(a, b):
    return a * b / (a + b)


def v_min(E_nr_MeV, m_chi_GeV: float, m_N_MeV: float) -> np.ndarray:
    """Minimum WIMP speed for an elastic recoil ``E_nr`` on a nucleus of mass ``m_N`` [km/s]."""
    mu = _reduced(m_chi_GeV * 1e3, m_N_MeV)
    return np.sqrt(m_N_MeV * np.asarray(E_nr_MeV, float) / (2.0 * mu * mu)) * C_KM_S


def e_nr_max(m_chi_GeV: float, m_N_MeV: float, halo: StandardHalo = StandardHalo()) -> float:
    """Largest recoil energy ``2 mu_N^2 (v_esc + v_E)^2 / m_N`` [MeV]."""
    mu = _reduced(m_chi_GeV * 1e3, m_N_MeV)
    beta = halo.v_max_km_s / C_KM_S
    return float(2.0 * mu * mu * beta * beta / m_N_MeV)


def _check_wimp(m_chi_GeV, sigma_n_cm2):
    if not (np.isfinite(m_chi_GeV) and m_chi_GeV > 0):
        raise UnphysicalInput(f"WIMP mass must be finite and > 0 GeV, got {m_chi_GeV}", key="m_chi_GeV")
    if not (np.isfinite(sigma_n_cm2) and sigma_n_cm2 >= 0):
        raise UnphysicalInput(f"cross section must be finite and >= 0 cm^2, got {sigma_n_cm2}",
                              key="sigma_n_cm2")


def _as_target(target) -> Target:
    return target if isinstance(target, Target) else get_target(target)


def _isotope_rate(E, iso, n_per_tonne, m_chi_GeV, sigma_n_cm2, halo, nucleon_mass_MeV, form_factor=True):
    """dR/dE_nr for one isotope [events / (MeV tonne year)], E in MeV."""
    m_chi = m_chi_GeV * 1e3
    mu_n = _reduced(m_chi, nucleon_mass_MeV)
    n_chi = halo.rho_GeV_cm3 / m_chi_GeV  # cm^-3
    F2 = helm_form_factor(2.0 * iso.m_N * E, iso.A) ** 2 if form_factor else 1.0
    # sigma [cm^2] x m_N / (2 mu^2) [MeV^-1] x c [cm/s] x eta [dimensionless, units of 1/c]
    eta_c = eta(v_min(E, m_chi_GeV, iso.m_N), halo) * C_KM_S
    pre = n_chi * sigma_n_cm2 * iso.A**2 * iso.m_N / (2.0 * mu_n * mu_n) * (C_KM_S * 1e5)
    return n_per_tonne * pre * F2 * eta_c * SECONDS_PER_YEAR


def dR_dEnr(E_nr_keV, m_chi_GeV: float, sigma_n_cm2: float = 1e-45, *, target="Xe",
            halo: StandardHalo = StandardHalo(), nucleon_mass_MeV: float = M_P,
            form_factor: bool = True) -> np.ndarray:
    """Spin-independent differential WIMP rate on a target, per tonne-year and keVnr.

    Parameters
    ----------
    E_nr_keV : array_like
        Nuclear recoil energies [keVnr].
    m_chi_GeV : float
        WIMP mass [GeV].
    sigma_n_cm2 : float, optional
        WIMP-nucleon cross section [cm^2] (isospin-conserving). Default 1e-45.
    target : str or Target, optional
        ``"Xe"`` (natural xenon, abundance-weighted isotopes) or a single isotope. Default ``"Xe"``.
    halo : StandardHalo, optional
    nucleon_mass_MeV : float, optional
        Nucleon mass in the reduced mass ``mu_n`` (default the proton mass; ``AMU`` is the other
        common choice, 1.4 % higher rates at 50 GeV).
    form_factor : bool, optional
        Helm form factor (default) or F = 1 (point nucleus, for checks against Lewin & Smith's R0).

    Returns
    -------
    numpy.ndarray
        dR/dE_nr [events / (tonne year keVnr)].

    Examples
    --------
    >>> r = dR_dEnr([1.0, 10.0, 50.0], 100.0, 1e-45)
    >>> bool(r[0] > r[1] > r[2] > 0)
    True
    """
    _check_wimp(m_chi_GeV, sigma_n_cm2)
    tgt = _as_target(target)
    E = np.asarray(E_nr_keV, dtype=float) * KEV
    n_t = tonne_year_targets(tgt.molar_mass)
    out = np.zeros(E.shape)
    for iso in tgt.isotopes:
        if iso.abundance > 0:
            out = out + _isotope_rate(E, iso, n_t * iso.abundance, m_chi_GeV, sigma_n_cm2, halo,
                                      nucleon_mass_MeV, form_factor)
    return out * KEV


_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)


def _gl_log(lo, hi):
    """Gauss-Legendre nodes/weights in log E on [lo, hi] (arrays of intervals) -> (..., 10)."""
    a, b = np.log(lo)[..., None], np.log(hi)[..., None]
    t = 0.5 * (b - a) * _GL_X + 0.5 * (b + a)
    E = np.exp(t)
    return E, 0.5 * (b - a) * _GL_W * E


def total_rate(m_chi_GeV: float, sigma_n_cm2: float = 1e-45, *, E_lo_keV: float = 0.0,
               E_hi_keV: float = np.inf, target="Xe", halo: StandardHalo = StandardHalo(),
               nucleon_mass_MeV: float = M_P, form_factor: bool = True, n_panels: int = 200) -> float:
    """Integrated rate between two nuclear-recoil energies [events / (tonne year)].

    Gauss-Legendre quadrature in log E on ``n_panels`` panels per isotope, up to the kinematic
    endpoint ``2 mu_N^2 (v_esc + v_E)^2 / m_N``.  ``E_lo_keV = 0`` starts at 1e-9 of the endpoint
    (the rate is finite at zero recoil, so the missed part is negligible).  Other parameters as in
    :func:`dR_dEnr`.
    """
    _check_wimp(m_chi_GeV, sigma_n_cm2)
    tgt = _as_target(target)
    n_t = tonne_year_targets(tgt.molar_mass)
    total = 0.0
    for iso in tgt.isotopes:
        if iso.abundance <= 0:
            continue
        emax = e_nr_max(m_chi_GeV, iso.m_N, halo)
        hi = min(E_hi_keV * KEV, emax)
        lo = max(E_lo_keV * KEV, emax * 1e-9)
        if hi <= lo:
            continue
        br = np.geomspace(lo, hi, n_panels + 1)
        E, W = _gl_log(br[:-1], br[1:])
        r = _isotope_rate(E, iso, n_t * iso.abundance, m_chi_GeV, sigma_n_cm2, halo, nucleon_mass_MeV,
                          form_factor)
        total += float(np.sum(W * r))
    return total


def binned_counts(m_chi_GeV, binning, detector, *, sigma_n_cm2: float = 1e-45, target="Xe",
                  halo: StandardHalo = StandardHalo(), exposure_tonne_year: float = 1.0,
                  nucleon_mass_MeV: float = M_P) -> np.ndarray:
    """Expected WIMP counts per keVee bin, for one or several WIMP masses.

    The detector machinery of the neutrino forward model is reused: every keVee bin edge (and the
    true-energy range that can feed the bins when there is a resolution) is mapped to keVnr with
    :meth:`nuinfer.physics.detector.Quenching.e_nr`, ``dR/dE_nr`` is integrated with 10-point
    Gauss-Legendre panels (log E) between consecutive mapped edges, each panel cut at every
    isotope's kinematic endpoint, and :meth:`nuinfer.physics.detector.Detector.response` (efficiency,
    resolution) distributes each node into the bins.

    Parameters
    ----------
    m_chi_GeV : float or array_like
        WIMP mass(es) [GeV].
    binning : nuinfer.physics.detector.Binning
    detector : nuinfer.physics.detector.Detector
    sigma_n_cm2 : float, optional
        WIMP-nucleon cross section [cm^2]. Default 1e-45 (counts are linear in it).
    target : str or Target, optional
    halo : StandardHalo, optional
    exposure_tonne_year : float, optional
    nucleon_mass_MeV : float, optional

    Returns
    -------
    numpy.ndarray
        Counts, shape ``(bin,)`` for a scalar mass, ``(mass, bin)`` otherwise.
    """
    masses = np.asarray(m_chi_GeV, dtype=float)
    scalar = masses.ndim == 0
    masses = np.atleast_1d(masses)
    for m in masses:
        _check_wimp(m, sigma_n_cm2)
    if not (np.isfinite(exposure_tonne_year) and exposure_tonne_year > 0):
        raise UnphysicalInput(f"exposure must be > 0 tonne-years, got {exposure_tonne_year}",
                              key="exposure_tonne_year")
    tgt = _as_target(target)
    q = detector.quenching
    lo_ee, hi_ee = detector.true_range_keVee(binning)
    e = binning.edges
    pts_ee = np.concatenate([[lo_ee], e[(e > lo_ee) & (e < hi_ee)], [hi_ee]])
    pts = q.e_nr(pts_ee) * KEV  # MeV, increasing
    n_t = tonne_year_targets(tgt.molar_mass)
    out = np.zeros((masses.size, binning.nbins))
    a, b = pts[:-1], pts[1:]
    for k, m in enumerate(masses):
        for iso in tgt.isotopes:
            if iso.abundance <= 0:
                continue
            emax = e_nr_max(m, iso.m_N, halo)
            ok = a < emax
            if not np.any(ok):
                continue
            E, W = _gl_log(a[ok], np.minimum(b[ok], emax))
            E, W = E.ravel(), W.ravel()
            r = _isotope_rate(E, iso, n_t * iso.abundance, m, sigma_n_cm2, halo, nucleon_mass_MeV)
            resp = detector.response(q.e_ee(E / KEV), binning)
            out[k] += (W * r) @ resp
    out *= exposure_tonne_year
    return out[0] if scalar else out

"""Sterile-neutrino dipole portal in CEvNS: nu_L + N -> F_4 + N through a transition magnetic moment.

Cross section (review Eq. 4; D. McKeen, M. Pospelov, PRD 82 (2010) 113018)::

    dsigma/dE_r = (pi alpha^2 mu^2 / m_e^2) Z^2 F^2(q^2) [ 1/E_r - 1/E_nu
                  - m4^2/(2 E_nu E_r m_N) (1 - E_r/(2 E_nu) + m_N/(2 E_nu))
                  + m4^4 (E_r - m_N)/(8 E_nu^2 E_r^2 m_N^2) ]

with ``mu`` the effective transition moment in Bohr magnetons (``mu_B = e / 2 m_e``), so that
the review's ``alpha mu_nu^2`` is ``pi alpha^2 mu^2 / m_e^2``.  For ``m4 -> 0`` this is the
massless magnetic-moment cross section ``(pi alpha^2 mu^2/m_e^2) Z^2 F^2 (1/E_r - 1/E_nu)``
(:func:`magnetic_moment_dsigma`).

Kinematics (exact).  For recoil energy E_r the nuclear momentum is ``p = sqrt(E_r^2 + 2 m_N E_r)``
and producing F_4 requires ``m4^2 <= 2 E_nu (p - E_r) - 2 m_N E_r`` (the review's
``m4^2 <~ 2 m_N E_r (sqrt(2/(m_N E_r)) E_nu - 1)`` is its leading form), i.e.

    E_nu >= E_nu^min(E_r, m4) = (m4^2 + 2 m_N E_r) / (2 (p - E_r)),

which reduces to the elastic CEvNS threshold for m4 = 0.  For given E_nu the largest m4 over all
recoils is ``m4^max ~ E_nu`` (:func:`m4_max`); above it the rate vanishes identically.

Structure used for speed: ``dsigma/dE_r = mu^2 sum_j C_j(E_r; m4) E_nu^-j`` (j = 0, 1, 2), so the
forward model's generic hook :meth:`nuinfer.forward.ForwardModel.kernel_counts` integrates it
over any flux, with the m4-dependent lower limit ``E_nu^min(E_r, m4)``.  The rate is
``R = R_SM + mu^2 T_D(m4)``: :func:`dipole_templates` writes ``T_D`` in the (m_X, g_X) templates
contract (``m_X = m4``, ``g_X = mu``, ``T1 = T_D``, ``T2 = 0``), so the scans, contours and
posteriors of :mod:`nuinfer.tasks` and :mod:`nuinfer.tasks.datafit` apply unchanged.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from nuinfer.constants import ALPHA_EM, M_E
from nuinfer.exceptions import UnphysicalInput
from nuinfer.physics.cevns import form_factor as _form_factor

__all__ = [
    "MU_B_PREFACTOR",
    "coefficients",
    "dipole_counts",
    "dipole_templates",
    "dsigma_dEr",
    "enu_min",
    "m4_bound",
    "m4_max",
    "magnetic_moment_dsigma",
]

#: pi alpha^2 / m_e^2 [MeV^-2]: the dipole cross section per unit (mu / mu_B)^2, without Z^2 F^2 [...]
MU_B_PREFACTOR = np.pi * ALPHA_EM**2 / M_E**2


def _check_m4(m4) -> float:
    m4 = float(m4)
    if not (np.isfinite(m4) and m4 >= 0):
        raise UnphysicalInput(f"sterile-neutrino mass must be finite and >= 0 MeV, got {m4}", key="m4_MeV")
    return m4


def enu_min(E_r, m_N: float, m4: float = 0.0) -> np.ndarray:
    """Smallest neutrino energy that produces recoil ``E_r`` and a fermion of mass ``m4`` [MeV]."""
    E = np.asarray(E_r, dtype=float)
    p = np.sqrt(E * E + 2.0 * m_N * E)
    with np.errstate(divide="ignore"):
        return (m4 * m4 + 2.0 * m_N * E) / (2.0 * (p - E))


def m4_max(E_nu, m_N: float, E_r) -> np.ndarray:
    """Largest m4 [MeV] reachable by neutrino energy ``E_nu`` at recoil ``E_r`` (0 if none)."""
    E = np.asarray(E_r, dtype=float)
    p = np.sqrt(E * E + 2.0 * m_N * E)
    return np.sqrt(np.maximum(2.0 * np.asarray(E_nu, float) * (p - E) - 2.0 * m_N * E, 0.0))


def m4_bound(E_nu_max: float, m_N: float) -> float:
    """Kinematic bound on m4 [MeV] for neutrinos up to ``E_nu_max``: the maximum of :func:`m4_max` over E_r.

    Examples
    --------
    >>> round(m4_bound(10.0, 67600.0), 3)  # about E_nu for a heavy nucleus
    9.999
    """
    # f(E) = 2 E_nu (p - E) - 2 m E is maximal where dp/dE = 1 + m/E_nu, i.e. (E + m)/p = 1 + m/E_nu
    k = 1.0 + m_N / E_nu_max
    # (E + m)^2 = k^2 (E^2 + 2 m E)  ->  (k^2 - 1) E^2 + 2 m (k^2 - 1) E - m^2 = 0
    a = k * k - 1.0
    E = (-2.0 * m_N * a + np.sqrt(4.0 * m_N**2 * a * a + 4.0 * a * m_N**2)) / (2.0 * a)
    return float(m4_max(E_nu_max, m_N, E))


def coefficients(E_r, iso, m4: float, *, form_factor: str = "helm") -> np.ndarray:
    """``C_j(E_r; m4)`` [MeV^-3 MeV^j] with dsigma/dE_r = mu^2 sum_j C_j E_nu^-j (module docstring).

    Parameters
    ----------
    E_r : array_like
        Nuclear recoil energies [MeV].
    iso : Isotope
    m4 : float
        Sterile-neutrino mass [MeV].
    form_factor : str
        Nuclear form factor (:func:`nuinfer.physics.cevns.form_factor`).

    Returns
    -------
    numpy.ndarray, shape (3,) + E_r.shape
    """
    m4 = _check_m4(m4)
    E = np.asarray(E_r, dtype=float)
    m = iso.m_N
    pre = MU_B_PREFACTOR * iso.Z**2 * _form_factor(2.0 * m * E, iso.A, form_factor) ** 2
    a2 = m4 * m4 / (2.0 * E * m)  # m4^2 / (2 E_r m_N)
    C = np.empty((3,) + E.shape)
    C[0] = pre / E
    C[1] = -pre * (1.0 + a2)
    C[2] = -pre * (m - E) * (0.5 * a2 + 0.5 * a2 * a2)  # m4^2 (m-E)/(4Em) + m4^4 (m-E)/(8E^2m^2)
    return C


def dsigma_dEr(E_nu, E_r, iso, mu: float = 1.0, m4: float = 0.0, *, form_factor: str = "helm") -> np.ndarray:
    """Direct dipole-portal cross section, review Eq. 4 as printed [MeV^-3].

    ``mu`` in Bohr magnetons; zero below the threshold ``E_nu^min(E_r, m4)``.  Broadcasts over
    ``E_nu`` and ``E_r`` [MeV].
    """
    m4 = _check_m4(m4)
    E_nu = np.asarray(E_nu, dtype=float)
    E = np.asarray(E_r, dtype=float)
    m = iso.m_N
    F2 = _form_factor(2.0 * m * E, iso.A, form_factor) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        bracket = (1.0 / E - 1.0 / E_nu + m4**4 * (E - m) / (8.0 * E_nu**2 * E**2 * m**2)
                   - m4**2 / (2.0 * E_nu * E * m) * (1.0 - E / (2.0 * E_nu) + m / (2.0 * E_nu)))
        out = MU_B_PREFACTOR * mu**2 * iso.Z**2 * F2 * bracket
    return np.where(E_nu >= enu_min(E, m, m4), out, 0.0)


def magnetic_moment_dsigma(E_nu, E_r, iso, mu: float = 1.0, *, form_factor: str = "helm") -> np.ndarray:
    """Massless neutrino magnetic-moment cross section ``(pi alpha^2 mu^2/m_e^2) Z^2 F^2 (1/E_r - 1/E_nu)``.

    (P. Vogel, J. Engel, PRD 39 (1989) 3378; coherent nuclear version.)  Zero below the elastic
    threshold.  ``mu`` in Bohr magnetons.
    """
    E_nu = np.asarray(E_nu, dtype=float)
    E = np.asarray(E_r, dtype=float)
    F2 = _form_factor(2.0 * iso.m_N * E, iso.A, form_factor) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = MU_B_PREFACTOR * mu**2 * iso.Z**2 * F2 * (1.0 / E - 1.0 / E_nu)
    return np.where(E_nu >= enu_min(E, iso.m_N, 0.0), out, 0.0)


def _breaks(fm, m4):
    """Recoil energies where E_nu^min(E_r, m4) crosses a source endpoint (kinks of the integrand)."""
    ends = np.unique([c.E_max for c in fm.channels])

    def extra(k, sp):
        m = sp[1]
        out = []
        for Emax in ends:
            # solve m4^2 = 2 Emax (p - E) - 2 m E for E on both sides of the maximum
            if m4 >= m4_bound(Emax, m):
                continue
            grid = np.geomspace(1e-12, 2.0 * Emax**2 / (m + 2.0 * Emax), 400)
            f = m4_max(Emax, m, grid) - m4
            s = np.flatnonzero(np.diff(np.sign(f)) != 0)
            for i in s:
                lo, hi = grid[i], grid[i + 1]
                for _ in range(60):
                    mid = np.sqrt(lo * hi)
                    if np.sign(m4_max(Emax, m, mid) - m4) == np.sign(f[i]):
                        lo = mid
                    else:
                        hi = mid
                out.append(np.sqrt(lo * hi))
        return np.array(out)

    return extra


def dipole_counts(fm, m4: float, *, per_source: bool = False) -> np.ndarray:
    """Binned counts per unit mu^2 (mu in Bohr magnetons) from the dipole portal at mass ``m4``.

    Parameters
    ----------
    fm : ForwardModel
        A CEvNS forward model (any target and source).
    m4 : float
        Sterile-neutrino mass [MeV] (0 gives the massless magnetic-moment rate).
    per_source : bool
        Counts per source (n_sources, n_bins) instead of the total.
    """
    m4 = _check_m4(m4)
    ff = getattr(fm, "form_factor", "helm")

    def coef(E, iso, flavour, anti):
        return coefficients(E, iso, m4, form_factor=ff)

    def emin(E, iso):
        return enu_min(E, iso.m_N, m4)

    return fm.kernel_counts(coef, enu_min=emin, extra_breaks=_breaks(fm, m4) if m4 > 0 else None,
                            per_source=per_source)


def dipole_templates(fm, m4_MeV) -> xr.Dataset:
    """Dipole-portal templates in the (m_X, g_X) contract: ``R = T0 + mu^2 T1(m4)``, ``T2 = 0``.

    Parameters
    ----------
    fm : ForwardModel
        CEvNS forward model.
    m4_MeV : array_like
        Sterile-neutrino masses [MeV], > 0 and increasing (the ``m_X`` coordinate).

    Returns
    -------
    xarray.Dataset
        ``T(power, m_X, bin)`` and ``R_SM(bin)`` like :meth:`ForwardModel.templates`; attrs
        ``model="dipole"``, ``coupling="mu_nu (Bohr magnetons)"``, ``mass="m4"``.
    """
    m = np.atleast_1d(np.asarray(m4_MeV, dtype=float))
    if m.ndim != 1 or m.size == 0 or np.any(~np.isfinite(m)) or np.any(m <= 0):
        raise UnphysicalInput("sterile-neutrino masses must be finite and > 0 MeV", key="scan.m_X_MeV")
    base = fm.templates("V", m[:1])  # SM part, bins and coordinates
    T = np.zeros((3, m.size, fm.binning.nbins))
    T[0] = base["T"].values[0, 0][None, :]
    for i, mi in enumerate(m):
        T[1, i] = dipole_counts(fm, float(mi))
    ds = xr.Dataset(
        {
            "T": (("power", "m_X", "bin"), T,
                  {"units": "events", "long_name": "template: counts = T0 + mu^2 T1 (dipole portal)"}),
            "R_SM": ("bin", T[0, 0].copy(), {"units": "events", "long_name": "SM expected counts"}),
        },
        coords={
            "power": ("power", [0, 1, 2], {"long_name": "power p of mu^2", "units": "1"}),
            "m_X": ("m_X", m, {"units": "MeV", "long_name": "sterile-neutrino mass m4"}),
            **{k: v for k, v in base.coords.items() if k not in ("power", "m_X")},
        },
        attrs={**base.attrs, "model": "dipole", "coupling": "mu_nu (Bohr magnetons)", "mass": "m4"},
    )
    return ds

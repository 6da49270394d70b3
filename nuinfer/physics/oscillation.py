"""Flavour content at the detector: adiabatic MSW-LMA survival probability and flavour weights.

Solar neutrinos (all produced as nu_e) arrive as an incoherent mixture of mass eigenstates.  In the
adiabatic limit with three flavours (theta13 entering through the effective two-flavour problem),

``P_ee = c13^4 (1/2 + 1/2 cos 2theta12^m cos 2theta12) + s13^4``,

where theta12^m is the mixing angle in matter at the production point,

``cos 2theta12^m = (cos 2theta12 - beta) / sqrt((cos 2theta12 - beta)^2 + sin^2 2theta12)``,
``beta = 2 sqrt2 G_F n_e E c13^2 / dm21^2``.

P_ee depends on the electron density where the neutrino is born, so it is averaged over the
production region of each solar source.  The package does not read solar-model tables at run time:
each source carries a 4-point quadrature rule in n_e (:data:`ELECTRON_DENSITY_RULES`), i.e. the
Gauss-Christoffel rule of the distribution of n_e over the production region, derived once from the
BS05(GS98, OP) standard solar model (Bahcall, Serenelli & Basu, ApJ 621 (2005) L85: electron
density and production fraction per zone) by ``scripts/fit_source_parametrisations.py``.  The rule
integrates the production average of P_ee to better than 1e-4 at all energies (checked in
``tests/test_oscillation.py`` against the full average over the 1219 solar-model zones).
Earth-matter (day-night) effects are neglected.

Flavour split of the oscillated solar flux (PHYSICS.md section 5): nu_mu ``(1 - P_ee) cos^2 theta23``,
nu_tau ``(1 - P_ee) sin^2 theta23``.  Atmospheric neutrinos (reference paper, Sec. 4.2): nu_e
unoscillated, nu_mu -> 2/3 nu_mu + 1/3 nu_tau (:data:`ATM_NUMU_TO`).  DSN: no oscillation (the
nu_x fluxes are already split equally between mu and tau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nuinfer.constants import DM21_EV2, G_F, HBARC_MEV_CM, N_A, SIN2_THETA12, SIN2_THETA13, SIN2_THETA23
from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.physics.sources import FLAVOURS, SOLAR_SOURCES

__all__ = [
    "OscillationParams",
    "ELECTRON_DENSITY_RULES",
    "PRODUCTION_REGION",
    "ATM_NUMU_TO",
    "matter_potential_eV2",
    "pee_at_density",
    "pee",
    "flavour_weights",
]

#: atmospheric nu_mu (and nubar_mu) flavour content at the detector used for L_mu - L_tau
#: (reference paper, Sec. 4.2, following Aristizabal Sierra et al. JHEP 1803 (2018) 197)
ATM_NUMU_TO: dict[str, float] = {"mu": 2.0 / 3.0, "tau": 1.0 / 3.0}

#: production region used for each solar source (both 7Be lines share the 7Be region)
PRODUCTION_REGION: dict[str, str] = {
    "pp": "pp",
    "pep": "pep",
    "7Be_384": "7Be",
    "7Be_861": "7Be",
    "8B": "8B",
    "hep": "hep",
    "13N": "13N",
    "15O": "15O",
    "17F": "17F",
}

#: Production-averaged electron density as a 4-point quadrature rule per production region:
#: ``(n_e nodes in units of N_A cm^-3, weights summing to 1)``.  Gauss-Christoffel rule of the
#: distribution of n_e over the zones of the BS05(GS98, OP) solar model weighted by the zone's
#: production fraction of that source (Stieltjes procedure on the 1219 zones), computed by
#: scripts/fit_source_parametrisations.py.  Mean n_e [N_A cm^-3]: pp 61.8, pep 67.8, 7Be 81.1,
#: 8B 89.6, hep 52.4, 13N 76.2, 15O 87.8, 17F 88.7.
ELECTRON_DENSITY_RULES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "pp": ((18.54, 44.147, 71.091, 93.644), (0.0629785, 0.347247, 0.43903, 0.150745)),
    "pep": ((23.457, 48.86, 74.281, 94.766), (0.0444027, 0.311214, 0.462493, 0.181889)),
    "7Be": ((35.063, 60.342, 81.83, 97.217), (0.0151867, 0.202626, 0.499658, 0.282529)),
    "8B": ((53.485, 73.27, 88.757, 99.218), (0.00785273, 0.155254, 0.497568, 0.339325)),
    "hep": ((18.215, 40.849, 67.913, 92.172), (0.137212, 0.407234, 0.361288, 0.0942655)),
    "13N": ((32.455, 47.24, 82.274, 97.634), (0.108841, 0.169805, 0.38005, 0.341304)),
    "15O": ((51.052, 70.85, 87.54, 98.917), (0.0129312, 0.17419, 0.490099, 0.322779)),
    "17F": ((50.354, 71.265, 87.841, 98.997), (0.00836898, 0.156285, 0.49465, 0.340696)),
}

#: n_e [N_A cm^-3] -> n_e [MeV^3]
_NE_NA_TO_MEV3 = N_A * HBARC_MEV_CM**3
#: MeV^2 -> eV^2
_MEV2_TO_EV2 = 1e12


@dataclass(frozen=True)
class OscillationParams:
    """Three-flavour oscillation parameters relevant to solar neutrinos.

    Parameters
    ----------
    sin2_th12, sin2_th13, sin2_th23 : float
        sin^2 of the mixing angles (defaults: 2020 Valencia global fit, normal ordering).
    dm21_eV2 : float
        Solar mass splitting [eV^2].
    """

    sin2_th12: float = SIN2_THETA12
    sin2_th13: float = SIN2_THETA13
    sin2_th23: float = SIN2_THETA23
    dm21_eV2: float = DM21_EV2

    def __post_init__(self):
        for name in ("sin2_th12", "sin2_th13", "sin2_th23"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise UnphysicalInput(f"oscillation parameter {name}={v!r} must be a number in [0, 1]")
        v = self.dm21_eV2
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UnphysicalInput(f"oscillation parameter dm21_eV2={v!r} must be a positive number (eV^2), e.g. 7.5e-5")


def matter_potential_eV2(E_MeV, n_e_NA) -> np.ndarray:
    """Matter term ``A = 2 sqrt2 G_F n_e E`` [eV^2].

    Parameters
    ----------
    E_MeV : array_like
        Neutrino energy [MeV].
    n_e_NA : array_like
        Electron density in units of N_A cm^-3 (i.e. Y_e rho in g cm^-3).

    Returns
    -------
    numpy.ndarray
        ``A`` [eV^2]; about 1.53e-7 eV^2 per MeV per N_A cm^-3.
    """
    n_e_mev3 = np.asarray(n_e_NA, dtype=float) * _NE_NA_TO_MEV3
    return 2.0 * math.sqrt(2.0) * G_F * n_e_mev3 * np.asarray(E_MeV, dtype=float) * _MEV2_TO_EV2


def pee_at_density(E_MeV, n_e_NA, params: OscillationParams = OscillationParams()) -> np.ndarray:
    """Adiabatic MSW-LMA survival probability for production at electron density ``n_e_NA``.

    Parameters
    ----------
    E_MeV : array_like
        Neutrino energy [MeV].
    n_e_NA : array_like
        Electron density at production [N_A cm^-3]; broadcast against ``E_MeV``.
    params : OscillationParams
        Mixing parameters.

    Returns
    -------
    numpy.ndarray
        ``c13^4 (1/2 + 1/2 cos2th12m cos2th12) + s13^4``, in [0, 1].
    """
    s12sq, s13sq = params.sin2_th12, params.sin2_th13
    c13sq = 1.0 - s13sq
    cos2 = 1.0 - 2.0 * s12sq
    sin2_2 = 4.0 * s12sq * (1.0 - s12sq)
    beta = matter_potential_eV2(E_MeV, n_e_NA) * c13sq / params.dm21_eV2
    d = cos2 - beta
    denom = np.sqrt(d * d + sin2_2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos2m = np.where(denom > 0, d / np.where(denom > 0, denom, 1.0), 0.0)
    return c13sq**2 * (0.5 + 0.5 * cos2m * cos2) + s13sq**2


def _solar_region(source: str) -> str:
    if source not in PRODUCTION_REGION:
        raise InvalidConfig(
            f"P_ee needs a solar production region; {source!r} is not one of {', '.join(SOLAR_SOURCES)} "
            "(atm and DSN are treated as unoscillated)"
        )
    return PRODUCTION_REGION[source]


def pee(E_MeV, source: str, params: OscillationParams = OscillationParams()) -> np.ndarray:
    """Electron-neutrino survival probability averaged over the production region of ``source``.

    Parameters
    ----------
    E_MeV : array_like
        Neutrino energy [MeV].
    source : str
        A solar source (:data:`~nuinfer.physics.sources.SOLAR_SOURCES`); ``"atm"`` and ``"DSN"``
        return 1 (the paper neglects their oscillation; see :func:`flavour_weights`).
    params : OscillationParams
        Mixing parameters.

    Returns
    -------
    numpy.ndarray
        P_ee with the shape of ``E_MeV``.

    Raises
    ------
    InvalidConfig
        For an unknown source name.
    """
    E = np.asarray(E_MeV, dtype=float)
    if source in ("atm", "DSN"):
        return np.ones(E.shape)
    nodes, weights = ELECTRON_DENSITY_RULES[_solar_region(source)]
    out = np.zeros(E.shape)
    for n_e, w in zip(nodes, weights):
        out += w * pee_at_density(E, n_e, params)
    return out


def flavour_weights(
    E_MeV, source: str, params: OscillationParams = OscillationParams(), *, flavour: str = "e"
) -> dict[str, np.ndarray]:
    """Flavour content at the detector of a component produced as ``flavour``.

    Parameters
    ----------
    E_MeV : array_like
        Neutrino energy [MeV].
    source : str
        Source name.  Solar sources: MSW-LMA (only ``flavour="e"``).  ``"atm"``: nu_e unchanged,
        nu_mu -> :data:`ATM_NUMU_TO`.  ``"DSN"`` and any other name (e.g. a user table): no
        oscillation.
    params : OscillationParams
        Mixing parameters.
    flavour : {"e", "mu", "tau"}
        Produced flavour (the same weights apply to antineutrinos).

    Returns
    -------
    dict of str to numpy.ndarray
        Keys ``"e"``, ``"mu"``, ``"tau"``, each with the shape of ``E_MeV``; they sum to 1.
    """
    if flavour not in FLAVOURS:
        raise InvalidConfig(f"flavour {flavour!r} is unknown; use one of {FLAVOURS}")
    E = np.asarray(E_MeV, dtype=float)
    zero, one = np.zeros(E.shape), np.ones(E.shape)
    if source in PRODUCTION_REGION:
        if flavour != "e":
            raise InvalidConfig(f"solar source {source!r} produces nu_e only, got flavour={flavour!r}")
        p = pee(E, source, params)
        c23 = 1.0 - params.sin2_th23
        return {"e": p, "mu": (1.0 - p) * c23, "tau": (1.0 - p) * params.sin2_th23}
    if source == "atm" and flavour == "mu":
        return {"e": zero, "mu": ATM_NUMU_TO["mu"] * one, "tau": ATM_NUMU_TO["tau"] * one}
    return {f: (one if f == flavour else zero.copy()) for f in FLAVOURS}

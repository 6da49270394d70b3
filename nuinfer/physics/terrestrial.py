"""Terrestrial neutrino sources: nuclear reactors and pion decay at rest (pi-DAR).

Both return :class:`~nuinfer.physics.sources.Emission` components, grouped by source name, that
plug into :class:`~nuinfer.forward.ForwardModel` through its ``user_tables`` argument (a mapping
``{source name: [Emission, ...]}``)::

    from nuinfer.forward import ForwardModel
    from nuinfer.physics import terrestrial as ter

    ems = ter.reactor_sources(power_GW=2.96, distance_m=10.39)
    fm = ForwardModel("cevns", target="Ge", sources=tuple(ems), user_tables=ems, ...)

No oscillation is applied: at these baselines (10-30 m) the phases ``dm^2 L / 4E`` of the
three-flavour oscillations are negligible, and CEvNS is flavour blind anyway.

Reactor antineutrinos
---------------------
Per fissile isotope k (235U, 238U, 239Pu, 241Pu) the spectrum per fission is the exponential of a
fifth-order polynomial (Huber-Mueller), ``S_k(E) = exp(sum_p a_kp E^p)`` [MeV^-1 fission^-1], E in MeV:

* ``"HM"`` (default): P. Huber, PRC 84 (2011) 024617 [arXiv:1106.0687], Table 3, for 235U, 239Pu,
  241Pu, and Th.A. Mueller et al., PRC 83 (2011) 054615 [arXiv:1101.2663], Table VI, for 238U;
* ``"M"``: Mueller et al. 2011, Table VI, for all four.

The fits are valid on 2-8 MeV.  Above 8 MeV the polynomial is continued up to ``E_max`` (default
10 MeV; it falls by five orders of magnitude between 8 and 10 MeV for 235U).  **Below 2 MeV**
(``low_energy``):

* ``"vogel-engel"`` (default): the exponential-quadratic fit of P. Vogel and J. Engel,
  PRD 39 (1989) 3378, ``exp(b0 + b1 E + b2 E^2)`` per isotope, rescaled to equal the
  Huber-Mueller value at ``E_match = 2 MeV`` (continuous spectrum), down to E = 0.  The result is
  5.0-6.4 antineutrinos per fission depending on the isotope (about 5.5 for a typical mixture),
  against the "about 6" usually quoted: the long-lived fission products that populate the lowest
  energies are not fully represented.  Recoils from E < 2 MeV are irrelevant for every CEvNS
  threshold of interest here (germanium needs E > 2 MeV for E_nr > 0.13 keV).
* ``"none"``: the spectrum starts at ``E_match`` (only the part where the fits are valid).

Rates: fissions per second = P_th / (sum_k f_k E_k) with the energy released per fission E_k of
X.B. Ma et al., PRC 88 (2013) 014605 (202.36, 205.99, 211.12, 214.26 MeV for 235U, 238U, 239Pu,
241Pu); the isotropic flux at distance L is that times ``sum_k f_k S_k(E) / (4 pi L^2)``.

Pion decay at rest
------------------
Every pi+ that decays at rest gives three neutrinos: a prompt nu_mu line at
``E = (m_pi^2 - m_mu^2) / (2 m_pi) = 29.79 MeV`` and, from mu+ -> e+ nu_e nubar_mu, the delayed
Michel spectra (V-A, electron mass neglected, x = E / W, W = (m_mu^2 - m_e^2)/(2 m_mu) = 52.83 MeV)::

    nu_e:      dN/dE = 12 x^2 (1 - x) / W
    nubar_mu:  dN/dE =  2 x^2 (3 - 2x) / W

each unit-normalised on 0 <= E <= W.  With ``r`` neutrinos per flavour per proton (the pi+ decays
at rest per proton on target; 0.08 for the SNS in COHERENT 2017), ``N_POT`` protons on target
delivered during a live time ``T`` and distance ``L``, each flavour's mean flux is
``r N_POT / (4 pi L^2 T)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.physics.sources import MICHEL_E_MAX, PION_DAR_E, Emission

__all__ = [
    "DEFAULT_FISSION_FRACTIONS",
    "ENERGY_PER_FISSION_MEV",
    "FISSILE_ISOTOPES",
    "HUBER_MUELLER",
    "MICHEL_ENDPOINT_MEV",
    "MUELLER_2011",
    "PION_DAR_LINE_MEV",
    "VOGEL_ENGEL_1989",
    "fission_rate",
    "isotope_spectrum",
    "mean_energy_per_fission",
    "michel_nue",
    "michel_numubar",
    "neutrinos_per_fission",
    "pion_dar_flux_per_flavour",
    "pion_dar_sources",
    "reactor_flux",
    "reactor_sources",
    "reactor_spectrum",
]

MEV_TO_J = 1.602176634e-13  #: 1 MeV in joule (exact, SI 2019)

FISSILE_ISOTOPES = ("U235", "U238", "Pu239", "Pu241")

#: Huber (arXiv:1106.0687, Table 3) for 235U, 239Pu, 241Pu; Mueller et al. (arXiv:1101.2663,
#: Table VI) for 238U.  Coefficients a_0..a_5 of ln(dN/dE [MeV^-1 fission^-1]), E in MeV.
HUBER_MUELLER = {
    "U235": (4.367, -4.577, 2.100, -5.294e-1, 6.186e-2, -2.777e-3),
    "U238": (4.833e-1, 1.927e-1, -1.283e-1, -6.762e-3, 2.233e-3, -1.536e-4),
    "Pu239": (4.757, -5.392, 2.563, -6.596e-1, 7.820e-2, -3.536e-3),
    "Pu241": (2.990, -2.882, 1.278, -3.343e-1, 3.905e-2, -1.754e-3),
}
#: Mueller et al., PRC 83 (2011) 054615, Table VI, all four isotopes.
MUELLER_2011 = {
    "U235": (3.217, -3.111, 1.395, -3.690e-1, 4.445e-2, -2.053e-3),
    "U238": (4.833e-1, 1.927e-1, -1.283e-1, -6.762e-3, 2.233e-3, -1.536e-4),
    "Pu239": (6.413, -7.432, 3.535, -8.820e-1, 1.025e-1, -4.550e-3),
    "Pu241": (3.251, -3.204, 1.428, -3.675e-1, 4.254e-2, -1.896e-3),
}
_MODELS = {"HM": HUBER_MUELLER, "M": MUELLER_2011}
#: P. Vogel, J. Engel, PRD 39 (1989) 3378: b_0..b_2 of ln(dN/dE), used below 2 MeV.
VOGEL_ENGEL_1989 = {
    "U235": (0.870, -0.160, -0.0910),
    "U238": (0.976, -0.162, -0.0790),
    "Pu239": (0.896, -0.239, -0.0981),
    "Pu241": (0.793, -0.080, -0.1085),
}
#: Energy released per fission [MeV], X.B. Ma et al., PRC 88 (2013) 014605.
ENERGY_PER_FISSION_MEV = {"U235": 202.36, "U238": 205.99, "Pu239": 211.12, "Pu241": 214.26}
#: Typical mid-cycle fission fractions of a low-enriched-uranium power reactor (illustrative
#: defaults, not the measured values of any particular reactor; override them for real analyses).
DEFAULT_FISSION_FRACTIONS = {"U235": 0.58, "U238": 0.07, "Pu239": 0.30, "Pu241": 0.05}

LOW_ENERGY_TREATMENTS = ("vogel-engel", "none")
#: lower end of the validity range of the Huber-Mueller fits [MeV]
HM_E_MIN = 2.0
#: upper end of the validity range of the Huber-Mueller fits [MeV]
HM_E_MAX = 8.0


# ------------------------------------------------------------------------------------ reactor
def _check_model(model: str) -> dict:
    if model not in _MODELS:
        raise InvalidConfig(f"unknown reactor spectrum model {model!r}; use 'HM' (Huber-Mueller) or 'M' "
                            "(Mueller 2011)", key="source.model")
    return _MODELS[model]


def _check_isotope(iso: str) -> str:
    if iso not in FISSILE_ISOTOPES:
        raise InvalidConfig(f"unknown fissile isotope {iso!r}; use one of {', '.join(FISSILE_ISOTOPES)}",
                            key="source.fission_fractions")
    return iso


def _check_low(low_energy: str) -> str:
    if low_energy not in LOW_ENERGY_TREATMENTS:
        raise InvalidConfig(f"unknown low-energy treatment {low_energy!r}; use one of "
                            f"{', '.join(LOW_ENERGY_TREATMENTS)}", key="source.low_energy")
    return low_energy


def _check_fractions(fractions) -> dict[str, float]:
    if fractions is None:
        fractions = DEFAULT_FISSION_FRACTIONS
    if not isinstance(fractions, Mapping) or not fractions:
        raise InvalidConfig("fission fractions must be a mapping such as {'U235': 0.58, ...}",
                            key="source.fission_fractions")
    out = {}
    for k, v in fractions.items():
        _check_isotope(k)
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InvalidConfig(f"fission fraction of {k} must be a number, got {v!r}",
                                key=f"source.fission_fractions.{k}") from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise UnphysicalInput(f"fission fraction of {k} must be in [0, 1], got {v}",
                                  key=f"source.fission_fractions.{k}")
        out[k] = v
    total = sum(out.values())
    if abs(total - 1.0) > 1e-3:
        raise UnphysicalInput(f"fission fractions must sum to 1 (got {total:.6g}); fix or renormalise them",
                              key="source.fission_fractions")
    return out


def _poly(coef, E):
    return np.polynomial.polynomial.polyval(E, np.asarray(coef, float))


def isotope_spectrum(E, isotope: str, *, model: str = "HM", low_energy: str = "vogel-engel",
                     E_max: float = 10.0) -> np.ndarray:
    """Antineutrinos per MeV per fission of one fissile isotope.

    Parameters
    ----------
    E : array_like
        Antineutrino energy [MeV].
    isotope : {"U235", "U238", "Pu239", "Pu241"}
    model : {"HM", "M"}
        Huber-Mueller (default) or Mueller 2011 coefficients (module docstring).
    low_energy : {"vogel-engel", "none"}
        Treatment below 2 MeV (module docstring).
    E_max : float
        The spectrum is zero above this energy [MeV] (default 10; the fits end at 8 MeV).

    Returns
    -------
    numpy.ndarray
        dN/dE [MeV^-1 fission^-1], zero outside the support.

    Examples
    --------
    >>> round(float(isotope_spectrum(4.0, "U235")), 4)
    0.2923
    """
    coef = _check_model(model)[_check_isotope(isotope)]
    _check_low(low_energy)
    E = np.asarray(E, dtype=float)
    out = np.zeros(E.shape)
    hi = (E >= HM_E_MIN) & (E <= E_max)
    out[hi] = np.exp(_poly(coef, E[hi]))
    if low_energy == "vogel-engel":
        lo = (E >= 0.0) & (E < HM_E_MIN)
        ve = VOGEL_ENGEL_1989[isotope]
        match = math.exp(float(_poly(coef, HM_E_MIN)) - float(_poly(ve, HM_E_MIN)))
        out[lo] = match * np.exp(_poly(ve, E[lo]))
    return out


def reactor_spectrum(E, fractions=None, **kw) -> np.ndarray:
    """Antineutrinos per MeV per fission of the fuel mixture ``sum_k f_k S_k(E)``.

    ``kw`` are passed to :func:`isotope_spectrum`.
    """
    fr = _check_fractions(fractions)
    return sum(f * isotope_spectrum(E, k, **kw) for k, f in fr.items() if f > 0)


def _support(low_energy: str, E_max: float) -> tuple[float, float]:
    if not (math.isfinite(E_max) and E_max > HM_E_MIN):
        raise UnphysicalInput(f"E_max must be > {HM_E_MIN} MeV, got {E_max}", key="source.E_max_MeV")
    return (0.0 if low_energy == "vogel-engel" else HM_E_MIN), float(E_max)


def _integrate(fn, lo, hi, knots=(), n=48) -> float:
    edges = np.unique(np.r_[lo, [k for k in knots if lo < k < hi], hi])
    x, w = np.polynomial.legendre.leggauss(n)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = 0.5 * (b - a) * x + 0.5 * (a + b)
    return float(np.sum(0.5 * (b - a) * w * fn(nodes)))


def neutrinos_per_fission(fractions=None, *, E_lo: float | None = None, **kw) -> float:
    """Antineutrinos per fission of the mixture, integrated over the support (or above ``E_lo``)."""
    low = kw.get("low_energy", "vogel-engel")
    lo, hi = _support(_check_low(low), kw.get("E_max", 10.0))
    if E_lo is not None:
        lo = max(lo, float(E_lo))
    return _integrate(lambda E: reactor_spectrum(E, fractions, **kw), lo, hi, knots=(1.0, HM_E_MIN, 4.0, 6.0, 8.0))


def mean_energy_per_fission(fractions=None) -> float:
    """Thermal energy released per fission of the mixture [MeV], ``sum_k f_k E_k`` (Ma et al. 2013)."""
    fr = _check_fractions(fractions)
    return float(sum(f * ENERGY_PER_FISSION_MEV[k] for k, f in fr.items()))


def fission_rate(power_GW: float, fractions=None) -> float:
    """Fissions per second at thermal power ``power_GW`` [GW]."""
    p = _positive(power_GW, "source.power_GW")
    return p * 1e9 / (mean_energy_per_fission(fractions) * MEV_TO_J)


def _positive(v, key) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number, got {v!r}", key=key) from None
    if not (math.isfinite(v) and v > 0):
        raise UnphysicalInput(f"must be finite and > 0, got {v}", key=key)
    return v


def reactor_flux(power_GW: float, distance_m: float, fractions=None, **kw) -> float:
    """Total antineutrino flux [cm^-2 s^-1] at ``distance_m`` from a reactor of ``power_GW`` (thermal).

    Examples
    --------
    >>> 1.2e13 < reactor_flux(1.0, 10.0) < 1.8e13
    True
    """
    L_cm = _positive(distance_m, "source.distance_m") * 100.0
    return fission_rate(power_GW, fractions) * neutrinos_per_fission(fractions, **kw) / (4.0 * math.pi * L_cm**2)


class _ReactorShape:
    """Unit-normalised reactor spectrum (picklable callable)."""

    __slots__ = ("fractions", "kw", "norm")

    def __init__(self, fractions, kw, norm):
        self.fractions, self.kw, self.norm = dict(fractions), dict(kw), float(norm)

    def __call__(self, E):
        return reactor_spectrum(E, self.fractions, **self.kw) / self.norm

    def __getstate__(self):
        return (self.fractions, self.kw, self.norm)

    def __setstate__(self, state):
        self.fractions, self.kw, self.norm = state


def reactor_sources(power_GW: float = 1.0, distance_m: float = 10.0, fractions=None, *, model: str = "HM",
                    low_energy: str = "vogel-engel", E_max: float = 10.0,
                    name: str = "reactor") -> dict[str, list[Emission]]:
    """Reactor electron antineutrinos as forward-model sources.

    Parameters
    ----------
    power_GW : float
        Thermal power [GW].
    distance_m : float
        Reactor-detector distance [m] (point source).
    fractions : mapping, optional
        Fission fractions ``{"U235": f, ...}`` summing to 1; default
        :data:`DEFAULT_FISSION_FRACTIONS`.
    model, low_energy, E_max
        See :func:`isotope_spectrum`.
    name : str
        Source name in the forward model.

    Returns
    -------
    dict
        ``{name: [Emission(flavour="e", anti=True, ...)]}`` for ``ForwardModel(user_tables=...)``.
    """
    fr = _check_fractions(fractions)
    _check_model(model)
    _check_low(low_energy)
    lo, hi = _support(low_energy, E_max)
    kw = {"model": model, "low_energy": low_energy, "E_max": hi}
    norm = neutrinos_per_fission(fr, **kw)
    total = reactor_flux(power_GW, distance_m, fr, **kw)
    knots = tuple(k for k in (lo, 0.5, 1.0, HM_E_MIN, 3.0, 4.0, 5.0, 6.0, 7.0, HM_E_MAX, hi) if lo <= k <= hi)
    em = Emission(source=name, flavour="e", anti=True, flux=total, E_min=lo, E_max=hi, knots=knots,
                  _shape_fn=_ReactorShape(fr, kw, norm))
    return {name: [em]}


# ------------------------------------------------------------------------------------ pi-DAR
#: prompt nu_mu energy from pi+ -> mu+ nu_mu at rest, (m_pi^2 - m_mu^2) / (2 m_pi) [MeV]
PION_DAR_LINE_MEV = PION_DAR_E
#: endpoint of the Michel spectra, (m_mu^2 - m_e^2) / (2 m_mu) [MeV]
MICHEL_ENDPOINT_MEV = MICHEL_E_MAX


def michel_nue(E) -> np.ndarray:
    """Unit-normalised nu_e spectrum of mu+ decay at rest, ``12 x^2 (1 - x) / W`` [MeV^-1]."""
    W = MICHEL_ENDPOINT_MEV
    x = np.asarray(E, dtype=float) / W
    return np.where((x >= 0) & (x <= 1), 12.0 * x * x * (1.0 - x) / W, 0.0)


def michel_numubar(E) -> np.ndarray:
    """Unit-normalised nubar_mu spectrum of mu+ decay at rest, ``2 x^2 (3 - 2x) / W`` [MeV^-1]."""
    W = MICHEL_ENDPOINT_MEV
    x = np.asarray(E, dtype=float) / W
    return np.where((x >= 0) & (x <= 1), 2.0 * x * x * (3.0 - 2.0 * x) / W, 0.0)


def pion_dar_flux_per_flavour(pot: float, distance_m: float, live_time_s: float,
                              nu_per_proton: float = 0.08) -> float:
    """Mean flux of each of the three pi-DAR flavours [cm^-2 s^-1]: ``r N_POT / (4 pi L^2 T)``."""
    r = _positive(nu_per_proton, "source.nu_per_proton")
    n = _positive(pot, "source.pot")
    L_cm = _positive(distance_m, "source.distance_m") * 100.0
    T = _positive(live_time_s, "source.live_time_s")
    return r * n / (4.0 * math.pi * L_cm**2 * T)


def pion_dar_sources(pot: float, distance_m: float, live_time_s: float, *, nu_per_proton: float = 0.08,
                     prefix: str = "pidar") -> dict[str, list[Emission]]:
    """The three pi-DAR components as forward-model sources.

    Parameters
    ----------
    pot : float
        Protons on target delivered during the live time.
    distance_m : float
        Target-detector distance [m].
    live_time_s : float
        Live time [s] over which the exposure is counted (the forward model's exposure must use the
        same time).
    nu_per_proton : float
        Neutrinos per flavour per proton (pi+ decays at rest per proton), default 0.08 (SNS,
        COHERENT 2017).
    prefix : str
        Source names are ``{prefix}_numu`` (prompt line), ``{prefix}_numubar`` and ``{prefix}_nue``.

    Returns
    -------
    dict
        ``{name: [Emission]}`` for ``ForwardModel(user_tables=...)``.
    """
    phi = pion_dar_flux_per_flavour(pot, distance_m, live_time_s, nu_per_proton)
    W = MICHEL_ENDPOINT_MEV
    knots = (0.0, 0.25 * W, 0.5 * W, 2.0 * W / 3.0, 0.9 * W, W)
    return {
        f"{prefix}_numu": [Emission(source=f"{prefix}_numu", flavour="mu", anti=False, flux=phi,
                                    line_energy=PION_DAR_LINE_MEV)],
        f"{prefix}_numubar": [Emission(source=f"{prefix}_numubar", flavour="mu", anti=True, flux=phi, E_min=0.0,
                                       E_max=W, knots=knots, _shape_fn=michel_numubar)],
        f"{prefix}_nue": [Emission(source=f"{prefix}_nue", flavour="e", anti=False, flux=phi, E_min=0.0, E_max=W,
                                   knots=knots, _shape_fn=michel_nue)],
    }

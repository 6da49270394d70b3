"""Elastic neutrino-electron scattering (EvES): SM and light mediators, free electrons.

Equations refer to the reference paper (Majumdar, Papoulias, Srivastava, PRD 106 (2022) 013001):
SM Eq. 11-12, V/A mediators Eq. 13, L_mu - L_tau Eq. 14, S/P/T Eqs. 15-17.  Atomic binding
(Eq. 25) multiplies the per-electron cross section by the number of accessible electrons and is
applied by the forward model (:meth:`nuinfer.physics.targets.Target.electrons_accessible`).

Energies in MeV, d sigma / dT in MeV^-3 per electron.  As for CEvNS, every cross section is

    dsigma/dT = sum_{p,j} g^(2p) (2 m_e T + m_X^2)^(-p) C[p, j](T) E_nu^(-j),   E_nu >= E_nu^min(T).

Coupling convention ``g_X = sqrt(g_nuX g_eX)``; universal and B-L both give g_nu g_e = g_X^2
(Sec. 3.2).  Eq. 13's prefactor 1/(4 sqrt2 G_F) is the paper preset; ``eves_vector_norm="standard"``
uses 1/(sqrt2 G_F) (see :mod:`nuinfer.physics.mediators`).
"""

from __future__ import annotations

import numpy as np

from nuinfer.constants import ALPHA_EM, G_F, LOG_MTAU2_MMU2, M_E, SIN2_THETA_W
from nuinfer.physics.mediators import get_interaction

SQRT2 = np.sqrt(2.0)


def t_max(E_nu):
    """Maximum electron recoil 2 E^2 / (m_e + 2 E) [MeV]."""
    E_nu = np.asarray(E_nu, dtype=float)
    return 2.0 * E_nu**2 / (M_E + 2.0 * E_nu)


def enu_min(T):
    """Minimum neutrino energy for an electron recoil T (Eq. 23)."""
    T = np.asarray(T, dtype=float)
    return 0.5 * (T + np.sqrt(T * T + 2.0 * M_E * T))


def sm_couplings(flavour: str, sin2w: float = SIN2_THETA_W) -> tuple[float, float]:
    """(g_V, g_A) of Eq. 12 for a neutrino of the given flavour (antineutrinos: flip g_A)."""
    d = 1.0 if flavour == "e" else 0.0
    return -0.5 + 2.0 * sin2w + d, -0.5 + d


def _shift(inter, flavour: str) -> tuple[float, float]:
    """(k_V, k_A): g'_V = g_V + g^2 k_V / (2 m_e T + m^2), same for A (Eqs. 13, 14)."""
    name = inter.name
    if name in ("V", "B-L", "A"):
        k = 1.0 / (4.0 * SQRT2 * G_F) if inter.eves_vector_norm == "paper" else 1.0 / (SQRT2 * G_F)
        return (0.0, k) if name == "A" else (k, 0.0)
    if name == "Lmu-Ltau":
        s = {"tau": 1.0, "mu": -1.0}.get(flavour, 0.0)
        return s * ALPHA_EM * LOG_MTAU2_MMU2 / (3.0 * SQRT2 * np.pi * G_F), 0.0
    return 0.0, 0.0


def coefficients(T, inter, *, flavour: str = "e", anti: bool = False,
                 sin2w: float = SIN2_THETA_W) -> np.ndarray:
    """Expansion coefficients ``C[p, j, ...]`` of the free-electron d sigma/dT (module docstring)."""
    inter = get_interaction(inter)
    T = np.asarray(T, dtype=float)
    C = np.zeros((3, 3) + T.shape)
    gV, gA = sm_couplings(flavour, sin2w)
    kV, kA = _shift(inter, flavour)
    sgn = -1.0 if anti else 1.0  # antineutrinos: g_A -> -g_A (of the full effective coupling)
    a = (gV + sgn * gA, kV + sgn * kA)  # (g'_V + g'_A) = a0 + s a1, s = g^2 prop
    b = (gV - sgn * gA, kV - sgn * kA)
    d = (gV * gV - gA * gA, 2.0 * (gV * kV - gA * kA), kV * kV - kA * kA)  # g'_V^2 - g'_A^2
    sq = lambda c: (c[0] ** 2, 2.0 * c[0] * c[1], c[1] ** 2)  # noqa: E731
    A_, B_ = sq(a), sq(b)
    pre = G_F**2 * M_E / (2.0 * np.pi)
    for p in range(3):
        C[p, 0] = pre * (A_[p] + B_[p])
        C[p, 1] = -pre * 2.0 * T * B_[p]
        C[p, 2] = pre * (T * T * B_[p] - M_E * T * d[p])
    name = inter.name
    if name == "S":  # g^4 m_e^2 T / (4 pi (2 m_e T + m^2)^2 E^2)
        C[2, 2] = M_E * M_E * T / (4.0 * np.pi)
    elif name == "P":  # g^4 m_e T^2 / (8 pi (...)^2 E^2)
        C[2, 2] = M_E * T * T / (8.0 * np.pi)
    elif name == "T":  # g^4 m_e / (2 pi (...)^2) [1 + 2(1 - T/E) + (1 - T/E)^2 - m_e T / E^2]
        f = M_E / (2.0 * np.pi)
        C[2, 0] = 4.0 * f
        C[2, 1] = -4.0 * f * T
        C[2, 2] = f * (T * T - M_E * T)
    return C


def dsigma_dT(E_nu, T, inter="SM", g_X: float = 0.0, m_X_MeV: float = 1.0, *, flavour: str = "e",
              anti: bool = False, sin2w: float = SIN2_THETA_W) -> np.ndarray:
    """Direct free-electron d sigma / dT [MeV^-3] in the printed forms (Eqs. 11, 13-17).

    Broadcasts over ``E_nu`` and ``T`` (MeV); zero beyond the kinematic endpoint.
    """
    inter = get_interaction(inter)
    E_nu = np.asarray(E_nu, dtype=float)
    T = np.asarray(T, dtype=float)
    allowed = E_nu >= enu_min(T)
    gV, gA = sm_couplings(flavour, sin2w)
    kV, kA = _shift(inter, flavour)
    prop = 1.0 / (2.0 * M_E * T + m_X_MeV**2)
    g2 = g_X**2
    gVp = gV + g2 * kV * prop
    gAp = gA + g2 * kA * prop
    if anti:
        gAp = -gAp
    with np.errstate(divide="ignore", invalid="ignore"):
        y = 1.0 - T / E_nu
        out = G_F**2 * M_E / (2.0 * np.pi) * (
            (gVp + gAp) ** 2 + (gVp - gAp) ** 2 * y * y - (gVp**2 - gAp**2) * M_E * T / E_nu**2
        )
        g4p2 = g2 * g2 * prop * prop
        name = inter.name
        if name == "S":
            out = out + g4p2 * M_E * M_E * T / (4.0 * np.pi * E_nu**2)
        elif name == "P":
            out = out + g4p2 * M_E * T * T / (8.0 * np.pi * E_nu**2)
        elif name == "T":
            out = out + g4p2 * M_E / (2.0 * np.pi) * (1.0 + 2.0 * y + y * y - M_E * T / E_nu**2)
    return np.where(allowed, out, 0.0)

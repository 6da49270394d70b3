"""Coherent elastic neutrino-nucleus scattering (CEvNS): SM and light mediators.

Equations refer to Majumdar, Papoulias, Srivastava, PRD 106 (2022) 013001 (the reference paper).
All energies in MeV; cross sections d sigma / dE_nr in MeV^-3 (multiply by (hbar c)^2 for cm^2/MeV).
Coupling convention: ``g_X = sqrt(g_nuX g_qX)``, universal (see :mod:`nuinfer.physics.mediators`).

Structure used for speed
------------------------
Every cross section is written as

    dsigma/dE_nr = sum_{p=0..2} sum_{j=0..2} g^(2p) (q^2 + m_X^2)^(-p) C[p, j](E_nr) E_nu^(-j),

for E_nu >= E_nu^min(E_nr), with q^2 = 2 m_N E_nr.  :func:`coefficients` returns ``C``;
:func:`dsigma_dEnr` is the direct, printed form (used to test the expansion and as a reference).
"""

from __future__ import annotations

import numpy as np

from nuinfer.constants import (
    ALPHA_EM, G_F, HBARC_MEV_FM, LOG_MTAU2_MMU2, M_D, M_N, M_P, M_U, SIN2_THETA_W,
)
from nuinfer.exceptions import InvalidConfig
from nuinfer.physics.mediators import Interaction, get_interaction
from nuinfer.physics.targets import Isotope

SQRT2 = np.sqrt(2.0)

# Hadronic inputs printed under Eq. 8 of the reference paper
F_Q = {"p": {"u": 0.0208, "d": 0.0411}, "n": {"u": 0.0189, "d": 0.0451}}  #: scalar f_q^N
H_Q = {"u": 1.65, "d": 0.375}  #: pseudoscalar h_q (same for p and n)
DELTA_T = {"u": 0.54, "d": -0.23}  #: tensor delta_q (same for p and n)
DELTA_A = {"u": 0.842, "d": -0.427}  #: axial Delta_q (same for p and n)


def helm_form_factor(q2, A: int, *, s_fm: float = 0.9) -> np.ndarray:
    """Helm form factor (Eq. 6), F(0) = 1.

    ``q2`` is the squared momentum transfer in MeV^2; R = 1.2 A^(1/3) fm, R0^2 = R^2 - 5 s^2.
    """
    q = np.sqrt(np.asarray(q2, dtype=float)) / HBARC_MEV_FM  # fm^-1
    R = 1.2 * A ** (1.0 / 3.0)
    R0 = np.sqrt(R * R - 5.0 * s_fm * s_fm)
    x = q * R0
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    j1_over_x = np.where(small, 1.0 / 3.0 - x * x / 30.0, (np.sin(xs) / xs**2 - np.cos(xs) / xs) / xs)
    return 3.0 * j1_over_x * np.exp(-0.5 * (q * s_fm) ** 2)


def klein_nystrand_form_factor(q2, A: int, *, a_k_fm: float = 0.7) -> np.ndarray:
    """Klein-Nystrand form factor, F(0) = 1 (S. Klein, J. Nystrand, PRC 60 (1999) 014903).

    A hard sphere of radius R_A = 1.2 A^(1/3) fm folded with a Yukawa potential of range
    a_k = 0.7 fm: ``F = 3 j1(q R_A)/(q R_A) / (1 + q^2 a_k^2)``.  This is the form factor of the
    COHERENT CsI 2017 prediction; ``q2`` in MeV^2.
    """
    q = np.sqrt(np.asarray(q2, dtype=float)) / HBARC_MEV_FM  # fm^-1
    x = q * 1.2 * A ** (1.0 / 3.0)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    j1_over_x = np.where(small, 1.0 / 3.0 - x * x / 30.0, (np.sin(xs) / xs**2 - np.cos(xs) / xs) / xs)
    return 3.0 * j1_over_x / (1.0 + (q * a_k_fm) ** 2)


#: nuclear form factors selectable by name (``form_factor=`` of :func:`coefficients`)
FORM_FACTORS = {"helm": helm_form_factor, "klein-nystrand": klein_nystrand_form_factor}


def form_factor(q2, A: int, model: str = "helm") -> np.ndarray:
    """Nuclear form factor ``model`` (``"helm"``, Eq. 6, or ``"klein-nystrand"``) at ``q2`` [MeV^2]."""
    try:
        fn = FORM_FACTORS[model]
    except KeyError:
        raise InvalidConfig(f"unknown form factor {model!r}; use one of {', '.join(FORM_FACTORS)}",
                            key="form_factor") from None
    return fn(q2, A)


_form_factor = form_factor


def er_max(E_nu, m_N: float):
    """Maximum nuclear recoil energy 2 E^2 / (m_N + 2 E) [MeV]."""
    E_nu = np.asarray(E_nu, dtype=float)
    return 2.0 * E_nu**2 / (m_N + 2.0 * E_nu)


def enu_min(E_nr, m_N: float):
    """Minimum neutrino energy for a recoil E_nr (exact inverse of :func:`er_max`; Eq. 19 exact form)."""
    E_nr = np.asarray(E_nr, dtype=float)
    return 0.5 * (E_nr + np.sqrt(E_nr**2 + 2.0 * m_N * E_nr))


def weak_charge_sm(iso: Isotope, sin2w: float = SIN2_THETA_W) -> float:
    """Q_V^SM without the form factor (Eqs. 4-5): g_p^V Z + g_n^V N."""
    return (0.5 - 2.0 * sin2w) * iso.Z - 0.5 * iso.N


def charges(iso: Isotope, inter: Interaction) -> dict[str, float]:
    """Effective new-physics charges of Eq. 8 per unit g_X^2 (form factor excluded)."""
    Z, N = iso.Z, iso.N
    qs = Z * M_P * (F_Q["p"]["u"] / M_U + F_Q["p"]["d"] / M_D) + N * M_N * (
        F_Q["n"]["u"] / M_U + F_Q["n"]["d"] / M_D
    )
    qp = (Z * M_P + N * M_N) * (H_Q["u"] / M_U + H_Q["d"] / M_D)
    sum_da = DELTA_A["u"] + DELTA_A["d"]
    if inter.axial_form == "paper":
        qa = (Z * iso.S_p + N * iso.S_n) * sum_da
    else:
        qa = (iso.S_p + iso.S_n) * sum_da
    qt = (Z + N) * (DELTA_T["u"] + DELTA_T["d"])
    return {
        "S": qs, "P": qp, "A": qa, "T": qt,
        "V": 3.0 * (Z + N),  # universal: g_q = g_nu -> (2+1) Z + (1+2) N
        "B-L": -(Z + N),  # g_q = -g_nu / 3
    }


def _refuse_special(inter: Interaction) -> None:
    if inter.name == "dipole":
        raise InvalidConfig("the dipole portal has an m4-dependent threshold and its own expansion: use "
                            "nuinfer.physics.dipole (or ForwardModel.templates/spectrum, which dispatch to it)",
                            key="model.name")


def _lmu_ltau_sign(flavour: str) -> float:
    return {"tau": 1.0, "mu": -1.0}.get(flavour, 0.0)


def coefficients(E_nr, iso: Isotope, inter, *, flavour: str = "e", anti: bool = False,
                 sin2w: float = SIN2_THETA_W, form_factor: str = "helm") -> np.ndarray:
    """Expansion coefficients ``C[p, j, ...]`` of d sigma/dE_nr (module docstring), MeV^-3 units.

    Parameters
    ----------
    E_nr : array_like
        Nuclear recoil energies [MeV].
    iso : Isotope
    inter : Interaction or str
    flavour, anti : neutrino flavour ("e", "mu", "tau") and antineutrino flag.  CEvNS is flavour
        blind except for L_mu - L_tau.
    sin2w : float
        Weak mixing angle.
    form_factor : {"helm", "klein-nystrand"}
        Nuclear form factor (:func:`form_factor`); Helm (Eq. 6) by default.
    """
    inter = get_interaction(inter)
    _refuse_special(inter)
    E = np.asarray(E_nr, dtype=float)
    m = iso.m_N
    F = _form_factor(2.0 * m * E, iso.A, form_factor)
    F2 = F * F
    C = np.zeros((3, 3) + E.shape)
    qsm = weak_charge_sm(iso, sin2w)
    pre = G_F**2 * m / np.pi
    # SM part (Eq. 3): (1 - m_N E_nr / (2 E_nu^2))
    C[0, 0] = pre * qsm**2 * F2
    C[0, 2] = -pre * qsm**2 * F2 * m * E / 2.0
    name = inter.name
    if name == "SM":
        return C
    q = charges(iso, inter)
    if name in ("V", "B-L", "Lmu-Ltau"):
        if name == "Lmu-Ltau":
            qv = _lmu_ltau_sign(flavour) * ALPHA_EM * LOG_MTAU2_MMU2 * iso.Z / (3.0 * np.pi)
        else:
            qv = q[name]
        # (Q_SM + g^2 qv / (sqrt2 G_F (q^2+m^2)))^2 x (1 - m E/(2E_nu^2)) x G^2 m/pi F^2
        c1 = 2.0 * qsm * qv / (SQRT2 * G_F)
        c2 = qv**2 / (2.0 * G_F**2)
        for p, c in ((1, c1), (2, c2)):
            C[p, 0] = pre * c * F2
            C[p, 2] = -pre * c * F2 * m * E / 2.0
        return C
    if name == "S":  # m_N^2 E_nr Q_S^2 / (4 pi E_nu^2 (q^2+m^2)^2)
        C[2, 2] = m * m * E * q["S"] ** 2 * F2 / (4.0 * np.pi)
    elif name == "P":  # m_N E_nr^2 Q_P^2 / (8 pi E_nu^2 (q^2+m^2)^2)
        C[2, 2] = m * E * E * q["P"] ** 2 * F2 / (8.0 * np.pi)
    elif name == "A":  # m_N Q_A^2 (2 E_nu^2 + m_N E_nr) / (4 pi E_nu^2 (q^2+m^2)^2)
        C[2, 0] = 2.0 * m * q["A"] ** 2 * F2 / (4.0 * np.pi)
        C[2, 2] = m * m * E * q["A"] ** 2 * F2 / (4.0 * np.pi)
    elif name == "T":  # m_N Q_T^2 (4 E_nu^2 - m_N E_nr) / (2 pi E_nu^2 (q^2+m^2)^2)
        C[2, 0] = 4.0 * m * q["T"] ** 2 * F2 / (2.0 * np.pi)
        C[2, 2] = -m * m * E * q["T"] ** 2 * F2 / (2.0 * np.pi)
    return C


def dsigma_dEnr(E_nu, E_nr, iso: Isotope, inter="SM", g_X: float = 0.0, m_X_MeV: float = 1.0, *,
                flavour: str = "e", anti: bool = False, sin2w: float = SIN2_THETA_W,
                form_factor: str = "helm") -> np.ndarray:
    """Direct CEvNS d sigma / dE_nr [MeV^-3] in the printed forms of Eq. 3, Table I and Eq. 9.

    Broadcasts over ``E_nu`` and ``E_nr`` (MeV); zero beyond the kinematic endpoint and never negative.
    The new-physics contribution is *added* to the SM for S, P, A, T and interferes for V, B-L,
    L_mu - L_tau.
    """
    inter = get_interaction(inter)
    _refuse_special(inter)
    E_nu = np.asarray(E_nu, dtype=float)
    E = np.asarray(E_nr, dtype=float)
    m = iso.m_N
    q2 = 2.0 * m * E
    F = _form_factor(q2, iso.A, form_factor)
    prop = 1.0 / (q2 + m_X_MeV**2)
    qsm0 = weak_charge_sm(iso, sin2w)  # without F: the ratio Q_X F / (Q_SM F) must not be 0/0
    qsm = qsm0 * F
    allowed = E_nu >= enu_min(E, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        kin = np.where(allowed, 1.0 - m * E / (2.0 * E_nu**2), 0.0)
        sm = G_F**2 * m / np.pi * qsm**2 * kin
        name = inter.name
        g2 = g_X**2
        if name == "SM":
            out = sm
        elif name in ("V", "B-L", "Lmu-Ltau"):
            if name == "Lmu-Ltau":
                s = _lmu_ltau_sign(flavour)
                x = s * ALPHA_EM * g2 * LOG_MTAU2_MMU2 * iso.Z / (3.0 * SQRT2 * np.pi * G_F * qsm0) * prop
            else:
                x = charges(iso, inter)[name] * g2 / (SQRT2 * G_F * qsm0) * prop
            out = (1.0 + x) ** 2 * sm
        else:
            Q = charges(iso, inter)[name] * g2 * F
            den = prop**2 / E_nu**2
            if name == "S":
                new = m * m * E * Q**2 / (4.0 * np.pi) * den
            elif name == "P":
                new = m * E * E * Q**2 / (8.0 * np.pi) * den
            elif name == "A":
                new = m * Q**2 * (2.0 * E_nu**2 + m * E) / (4.0 * np.pi) * den
            else:  # T
                new = m * Q**2 * (4.0 * E_nu**2 - m * E) / (2.0 * np.pi) * den
            out = sm + np.where(allowed, new, 0.0)
    return np.where(allowed, out, 0.0)

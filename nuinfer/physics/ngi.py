"""Neutrino generalised interactions (NGI) with light mediators: simultaneous S, V, T (review Eq. 3).

The review (De Romeri 2023, Eq. 3, after Aristizabal Sierra, De Romeri, Papoulias, JHEP 09 (2022)
076) writes the CEvNS cross section with scalar, vector and tensor interactions present at once::

    dsigma/dE_r = G_F^2 m_N / (2 pi) F^2(q^2) [ xi_S^2 2 x + xi_V^2 (2 - 2 x) + xi_T^2 (2 - x) ],

    x = E_r / E_r^max  ->  m_N E_r / (2 E_nu^2)   (the leading form, used throughout nuinfer),

and the three structures do not interfere with each other.  With light mediators of masses m_S,
m_V, m_T and nuinfer's coupling convention ``g_X = sqrt(g_nuX g_qX)`` (universal quark couplings,
effective charges Q_X of Table I / Eq. 8 of the reference paper, :func:`nuinfer.physics.cevns.charges`)::

    xi_S = g_S^2 Q_S / (sqrt2 G_F (q^2 + m_S^2))
    xi_V = Q_V^SM + g_V^2 Q_V / (sqrt2 G_F (q^2 + m_V^2))     (Q_V^SM = g_p^V Z + g_n^V N)
    xi_T = sqrt2 g_T^2 Q_T / (G_F (q^2 + m_T^2))

These normalisations make each single-coupling limit *identical* to nuinfer's S, V and T models
(tested), so every existing path (templates, scans, posteriors) is the NGI path with one active
coupling.  (The review's Eq. 1-2 write Q_V = (1 - 4 s_W^2) Z/2 - N/2 with a G_F^2 m_N/(4 pi)
prefactor, a factor 4 below the standard CEvNS rate; nuinfer uses the standard normalisation,
G_F^2 m_N/pi with that Q_V, which Eq. 3 reproduces.)  Pseudoscalar and axial couplings are off,
as in the review.

Simultaneous couplings (the "generic parameter path")
-----------------------------------------------------
Because S, V and T add incoherently, the counts are the SM plus each interaction's own terms::

    R = T0 + g_V^2 T1^V(m_V) + g_V^4 T2^V(m_V) + g_S^4 T2^S(m_S) + g_T^4 T2^T(m_T).

:class:`NGIModel` evaluates this *exactly* (no interpolation) for a batch of parameter points from
the forward model's node weights: each point costs one (nodes x bins) matrix product per active
interaction.  It is the signal of :func:`nuinfer.tasks.datafit` fits and posteriors over any
subset of ``(g_S, m_S, g_V, m_V, g_T, m_T)``.
"""

from __future__ import annotations

import numpy as np

from nuinfer.constants import G_F, SIN2_THETA_W
from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.physics.cevns import charges, enu_min, weak_charge_sm
from nuinfer.physics.cevns import form_factor as _form_factor
from nuinfer.physics.mediators import Interaction

__all__ = ["NGI_PARAMETERS", "NGIModel", "dsigma_dEr", "ngi_xi"]

SQRT2 = np.sqrt(2.0)

#: parameter names of :class:`NGIModel` (couplings dimensionless, masses in MeV)
NGI_PARAMETERS = ("g_S", "m_S", "g_V", "m_V", "g_T", "m_T")


def ngi_xi(E_r, iso, *, g_S=0.0, m_S=1.0, g_V=0.0, m_V=1.0, g_T=0.0, m_T=1.0,
           sin2w: float = SIN2_THETA_W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xi_S, xi_V, xi_T)`` of review Eq. 3 at recoil ``E_r`` [MeV] (module docstring)."""
    E = np.asarray(E_r, dtype=float)
    q2 = 2.0 * iso.m_N * E
    q = charges(iso, Interaction("V"))
    xs = g_S**2 * q["S"] / (SQRT2 * G_F * (q2 + m_S**2))
    xv = weak_charge_sm(iso, sin2w) + g_V**2 * q["V"] / (SQRT2 * G_F * (q2 + m_V**2))
    xt = SQRT2 * g_T**2 * q["T"] / (G_F * (q2 + m_T**2))
    return xs, xv, xt


def dsigma_dEr(E_nu, E_r, iso, *, g_S=0.0, m_S=1.0, g_V=0.0, m_V=1.0, g_T=0.0, m_T=1.0,
               sin2w: float = SIN2_THETA_W, form_factor: str = "helm") -> np.ndarray:
    """Combined NGI cross section, review Eq. 3 [MeV^-3]; zero above the kinematic endpoint.

    Parameters
    ----------
    E_nu, E_r : array_like
        Neutrino and recoil energies [MeV] (broadcast).
    iso : Isotope
    g_S, g_V, g_T : float
        Couplings ``sqrt(g_nu g_q)`` (universal quarks).
    m_S, m_V, m_T : float
        Mediator masses [MeV].
    sin2w : float
        Weak mixing angle of the SM part of xi_V.
    form_factor : str
        Nuclear form factor.
    """
    E_nu = np.asarray(E_nu, dtype=float)
    E = np.asarray(E_r, dtype=float)
    m = iso.m_N
    F2 = _form_factor(2.0 * m * E, iso.A, form_factor) ** 2
    xs, xv, xt = ngi_xi(E, iso, g_S=g_S, m_S=m_S, g_V=g_V, m_V=m_V, g_T=g_T, m_T=m_T, sin2w=sin2w)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = m * E / (2.0 * E_nu**2)
        out = G_F**2 * m / (2.0 * np.pi) * F2 * (xs**2 * 2.0 * x + xv**2 * (2.0 - 2.0 * x) + xt**2 * (2.0 - x))
    return np.where(E_nu >= enu_min(E, m), out, 0.0)


class NGIModel:
    """Exact binned counts for simultaneous S, V, T light mediators (module docstring).

    Parameters
    ----------
    fm : ForwardModel
        A CEvNS forward model.
    active : sequence of {"S", "V", "T"}
        Interactions that may be switched on (default all three).

    Examples
    --------
    ``NGIModel(fm).counts(g_V=[1e-5], m_V=[10.0], g_S=[1e-5], m_S=[1.0])`` -> (1, n_bins).
    """

    def __init__(self, fm, active=("S", "V", "T")):
        if fm.process != "cevns":
            raise InvalidConfig("NGI is a CEvNS interaction; use a 'cevns' forward model", key="process")
        self.active = tuple(active)
        bad = [a for a in self.active if a not in ("S", "V", "T")]
        if bad:
            raise InvalidConfig(f"NGI interactions are S, V, T; got {bad}", key="model")
        self.fm = fm
        self._resp = fm.response()
        self._q2 = fm.q2()
        self._W = {}
        for name in self.active:
            W = fm.node_weights(Interaction(name))
            self._W[name] = sum(W[s] for s in fm.sources)
        W0 = fm.node_weights(Interaction("SM"))
        self.r_sm = sum(W0[s] for s in fm.sources)[0] @ self._resp

    @property
    def n_bins(self) -> int:
        return int(self._resp.shape[1])

    def counts(self, **params) -> np.ndarray:
        """Counts (P, n_bins) for P parameter points.

        Keyword arguments are arrays (broadcast to a common length P) named ``g_S, m_S, g_V, m_V,
        g_T, m_T``; a coupling that is not given is zero.
        """
        unknown = set(params) - set(NGI_PARAMETERS)
        if unknown:
            raise InvalidConfig(f"unknown NGI parameter(s) {sorted(unknown)}; use {NGI_PARAMETERS}", key="params")
        arrs = {k: np.atleast_1d(np.asarray(v, float)) for k, v in params.items()}
        P = max([a.size for a in arrs.values()] + [1])
        out = np.broadcast_to(self.r_sm, (P, self.n_bins)).copy()
        for name in ("S", "V", "T"):
            g = arrs.get(f"g_{name}")
            if g is None:
                continue
            if name not in self.active:
                raise InvalidConfig(f"interaction {name} is not active in this NGIModel", key=f"g_{name}")
            m = arrs.get(f"m_{name}")
            if m is None:
                raise InvalidConfig(f"g_{name} needs its mediator mass m_{name}", key=f"m_{name}")
            g = np.broadcast_to(g, (P,))
            m = np.broadcast_to(m, (P,))
            if np.any(~np.isfinite(g)) or np.any(g < 0) or np.any(~np.isfinite(m)) or np.any(m <= 0):
                raise UnphysicalInput(f"g_{name} must be >= 0 and m_{name} > 0 (finite)", key=f"g_{name}")
            prop = 1.0 / (self._q2[None, :] + m[:, None] ** 2)  # (P, nodes)
            W = self._W[name]
            g2 = (g * g)[:, None]
            node = g2 * g2 * prop * prop * W[2][None, :]
            if np.any(W[1] != 0):
                node = node + g2 * prop * W[1][None, :]
            out += node @ self._resp
        return np.maximum(out, 0.0)

"""Reference pieces for the XENONnT 8B CEvNS release tests (not part of the package).

* :func:`b8_cevns_dR_dEnr`: SM 8B CEvNS differential rate in natural xenon with nuinfer's own
  cross section (Eq. 3, Helm form factor, sin^2 theta_W of the package) and 8B spectrum shape.
  CEvNS is flavour blind at tree level, so the unoscillated total flux is used.
* :func:`reference_fit`: extended binned Poisson likelihood over chosen science runs, minimised with
  iminuit, following the parameters of the collaboration's statistical model
  (XENONnT/light_wimp_data_release test_statistical_model.yaml): 8B flux free, one AC rate
  multiplier per SR, one ER and one neutron multiplier, t_ly, t_qy ~ N(0, 1) in [-3, 3]
  (bilinear on the template grid), a signal-efficiency multiplier (25%, range 0.5-1.5); all rate
  constraints are Gaussian in the multiplier.  This is the cross-check for the package's own profiler.
"""

from __future__ import annotations

import numpy as np
from iminuit import Minuit
from scipy.special import gammaln

from nuinfer.constants import HBARC2_MEV2_CM2, SECONDS_PER_YEAR, tonne_year_targets
from nuinfer.physics.cevns import dsigma_dEnr
from nuinfer.physics.sources import emissions
from nuinfer.physics.targets import natural_xenon

B16_GS98_8B = 5.46e6  #: cm^-2 s^-1 (Vinyoles et al. 2017, B16-GS98)


def b8_cevns_dR_dEnr(E_nr_keV, flux: float = B16_GS98_8B, n_per_panel: int = 64) -> np.ndarray:
    """SM 8B CEvNS rate dR/dE_nr [events / (t yr keVnr)] in natural xenon at ``E_nr_keV``."""
    E = np.asarray(E_nr_keV, dtype=float) * 1e-3  # MeV
    em = emissions("8B", normalisation=flux)[0]
    nodes, w = em.quadrature(n_per_panel)
    phi = w * em.dphi_dE(nodes)  # cm^-2 s^-1 per node
    xe = natural_xenon()
    total = np.zeros(E.shape)
    for iso in xe.isotopes:
        ds = dsigma_dEnr(nodes[:, None], E[None, :], iso)  # MeV^-3
        total += iso.abundance * (phi[:, None] * ds).sum(0)
    per_t_yr = tonne_year_targets(xe.molar_mass) * SECONDS_PER_YEAR
    return total * HBARC2_MEV2_CM2 * 1e-3 * per_t_yr  # MeV^-3 * MeV^2 cm^2 -> cm^2/MeV; /MeV -> /keV


def _poisson_nll(mu, n):
    mu = np.maximum(mu, 1e-300)
    return float(np.sum(mu - n * np.log(mu) + gammaln(n + 1.0)))


class ReferenceLikelihood:
    """-2 ln L of the reference model; parameters ``flux`` [1e6 cm^-2 s^-1], ``ac_<sr>``, ``er``,
    ``neutron``, ``eff``, ``t_ly``, ``t_qy``."""

    def __init__(self, release, srs=("sr0", "sr1")):
        self.rel = release
        self.srs = tuple(srs)
        dR1 = b8_cevns_dR_dEnr(release.E_nr_keV, flux=1e6)  # per 1e6 cm^-2 s^-1
        self.dR1 = dR1
        self.n = {sr: release.observed(sr).astype(float) for sr in self.srs}
        self.ac = {sr: release.background(sr, "ac") for sr in self.srs}
        self.er = {sr: release.background(sr, "er") for sr in self.srs}
        self.names = ["flux", *[f"ac_{sr}" for sr in self.srs], "er", "neutron", "eff", "t_ly", "t_qy"]

    def expected(self, p: dict, sr: str) -> np.ndarray:
        sig = self.rel.fold(self.dR1, sr, p["t_ly"], p["t_qy"])
        nr = self.rel.background(sr, "neutron", p["t_ly"], p["t_qy"])
        return (p["eff"] * p["flux"] * sig + p[f"ac_{sr}"] * self.ac[sr] + p["er"] * self.er[sr]
                + p["neutron"] * nr)

    def twice_nll(self, *x) -> float:
        p = dict(zip(self.names, x))
        u = self.rel.rel_uncertainty
        out = 0.0
        for sr in self.srs:
            out += 2.0 * _poisson_nll(self.expected(p, sr), self.n[sr])
            out += ((p[f"ac_{sr}"] - 1.0) / u[f"ac_{sr}"]) ** 2
        out += ((p["er"] - 1.0) / u["er"]) ** 2 + ((p["neutron"] - 1.0) / u["neutron"]) ** 2
        out += ((p["eff"] - 1.0) / u["signal_efficiency"]) ** 2 + p["t_ly"] ** 2 + p["t_qy"] ** 2
        return out

    def minimize(self, fix_flux: float | None = None) -> Minuit:
        start = {n: 1.0 for n in self.names}
        start.update(t_ly=0.0, t_qy=0.0, flux=5.0 if fix_flux is None else fix_flux)
        m = Minuit(self.twice_nll, *[start[n] for n in self.names], name=self.names)
        m.errordef = Minuit.LEAST_SQUARES  # the cost is -2 ln L
        m.strategy = 2
        m.limits["flux"] = (0.0, 100.0)
        for n in self.names:
            if n.startswith("ac_") or n in ("er", "neutron"):
                m.limits[n] = (0.0, 100.0)
        m.limits["eff"] = (0.5, 1.5)
        m.limits["t_ly"] = (-3.0, 3.0)
        m.limits["t_qy"] = (-3.0, 3.0)
        if fix_flux is not None:
            m.fixed["flux"] = True
        m.migrad()
        return m


def reference_fit(release, srs=("sr0", "sr1")) -> dict:
    """Best-fit 8B flux, profile-likelihood 1 sigma interval and background-only significance.

    Returns a dict with ``flux`` (1e6 cm^-2 s^-1), ``lo``, ``hi`` (Delta(-2 ln L) = 1 crossings of
    the profile), ``sqrt_q0`` (sqrt of -2 ln L(flux=0) minus the minimum), ``minuit`` (the global fit)
    and ``expected_sm`` ({sr: SM 8B counts at B16-GS98 and nominal nuisances}).
    """
    from scipy.optimize import brentq

    L = ReferenceLikelihood(release, srs)
    m = L.minimize()
    fmin, best = m.fval, m.values["flux"]

    def prof(f):
        return L.minimize(fix_flux=f).fval - fmin

    q0 = max(prof(0.0), 0.0)
    lo = brentq(lambda f: prof(f) - 1.0, 1e-6, best) if prof(1e-6) > 1.0 else 0.0
    hi_bracket = best * 2 + 5
    while prof(hi_bracket) < 1.0:
        hi_bracket *= 2
    hi = brentq(lambda f: prof(f) - 1.0, best, hi_bracket, xtol=1e-4)
    expected = {sr: float(release.fold(L.dR1 * B16_GS98_8B / 1e6, sr).sum()) for sr in srs}
    return {"flux": best, "lo": lo, "hi": hi, "sqrt_q0": float(np.sqrt(q0)), "minuit": m,
            "expected_sm": expected, "twice_nll_min": fmin}

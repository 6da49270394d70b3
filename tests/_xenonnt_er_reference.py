"""Reference extended unbinned fit of the XENONnT SR0 ER data (iminuit), for tests only.

Model (reconstructed energy E in the window (1, 30) keV, exposure X = 1.16 t yr)::

    lambda(E) = X [ b R(E) + s ( (1 + a_pp) S_pp(E) + (1 + a_Be) S_7Be(E) + S_other(E) + mu2 M(E) ) ]

* ``R``: remaining background = released B0 minus the package's SM solar-neutrino component
  (:func:`nuinfer.releases.xenonnt_er.remaining_background`); its norm ``b`` is **free** (no
  constraint).
* ``S_g``: SM solar-neutrino ER rates per group (B16-GS98 fluxes); Gaussian constraints on the pp
  and 7Be normalisations: 1 % and 6 % (Vinyoles et al., ApJ 835 (2017) 202, Table 6: pp 0.6 %,
  rounded up to 1 % as in ``nuinfer/floor.py``; 7Be 6 %); "other" fixed.
* ``s``: efficiency scale on every neutrino-induced component, Gaussian width 5 % (an assumption:
  the paper's efficiency band is not in the release).  The remaining background needs none: B0 is
  a fit to these data, with the efficiency already folded in, and ``b`` is free.
* ``M``: effective magnetic-moment rate per (mu_nu / 1e-11 mu_B)^2, ``mu2 = (mu_nu/1e-11 mu_B)^2 >= 0``.

``-ln L = X int lambda / X - sum_i ln lambda(E_i) + constraints`` (errordef 0.5).  The 90 % CL upper
limit on mu_nu is where the profile ``2 Delta(-ln L)`` in mu2 (bounded at 0) reaches
``chi2.ppf(0.9, 1) = 2.71``.
"""

from __future__ import annotations

import numpy as np
from iminuit import Minuit
from scipy.optimize import brentq
from scipy.stats import chi2

from nuinfer.releases import xenonnt_er as X

SIGMA_PP = 0.01
SIGMA_BE7 = 0.06
SIGMA_EFF = 0.05
PARAMS = ("b", "a_pp", "a_be7", "s_eff", "mu2")


class ReferenceFit:
    """Extended unbinned likelihood of the SR0 ER data with the package's templates."""

    def __init__(self, data: X.ERData):
        self.data = data
        solar = X.sm_solar_rate(data)
        rem = X.remaining_background(data, solar)
        mu = X.mu_nu_template(data)
        groups = list(solar["group"].values)
        comps = [rem["rate"].values] + [solar["rate"].sel(group=g).values for g in groups] + [mu["total"].values]
        self.names = ["remaining"] + groups + ["mu"]
        V = np.stack(comps)  # (component, E) events/(t yr keV)
        self.grid = solar["E"].values
        self.at_events = X.density_at_events(V, data, self.grid)  # (component, n_events)
        self.totals = X.expected_total(V, data, self.grid)  # (component,) events
        self.exposure = data.exposure_t_yr
        self.clipped = rem.attrs["n_clipped"]

    def coefficients(self, b, a_pp, a_be7, s_eff, mu2):
        g = dict(zip(self.names, range(len(self.names))))
        c = np.zeros(len(self.names))
        c[g["remaining"]] = b
        c[g["pp"]] = s_eff * (1.0 + a_pp)
        c[g["7Be"]] = s_eff * (1.0 + a_be7)
        c[g["other"]] = s_eff
        c[g["mu"]] = s_eff * mu2
        return c

    def nll(self, b, a_pp, a_be7, s_eff, mu2):
        c = self.coefficients(b, a_pp, a_be7, s_eff, mu2)
        lam = self.exposure * (c @ self.at_events)
        if np.any(lam <= 0):
            return 1e30
        return float(c @ self.totals - np.sum(np.log(lam))
                     + 0.5 * (a_pp / SIGMA_PP) ** 2 + 0.5 * (a_be7 / SIGMA_BE7) ** 2
                     + 0.5 * ((s_eff - 1.0) / SIGMA_EFF) ** 2)

    def fit(self, mu2=None):
        """Minimise; ``mu2`` fixed if given, else free (>= 0).  Returns the Minuit object."""
        m = Minuit(self.nll, b=1.0, a_pp=0.0, a_be7=0.0, s_eff=1.0, mu2=0.0 if mu2 is None else mu2)
        m.errordef = Minuit.LIKELIHOOD
        m.limits["b"] = (0.0, 10.0)
        m.limits["s_eff"] = (0.1, 3.0)
        m.limits["mu2"] = (0.0, None)
        if mu2 is not None:
            m.fixed["mu2"] = True
        m.migrad()
        return m

    def mu_upper_limit(self, cl: float = 0.9):
        """90 % CL upper limit on mu_nu [mu_B] from the 1-d profile likelihood in mu2."""
        free = self.fit()
        best = free.fval
        thr = chi2.ppf(cl, 1)
        q = lambda m2: 2.0 * (self.fit(m2).fval - best) - thr  # noqa: E731
        hi = max(1.0, 2.0 * free.values["mu2"])
        while q(hi) < 0:
            hi *= 2.0
        m2 = brentq(q, free.values["mu2"], hi, xtol=1e-6, rtol=1e-8)
        return {"mu90_muB": float(np.sqrt(m2) * X.MU_NU_UNIT), "mu2_hat": float(free.values["mu2"]),
                "b_hat": float(free.values["b"]), "threshold": float(thr), "free_fit": free}


def reference_results(data=None) -> dict:
    data = X.load() if data is None else data
    rf = ReferenceFit(data)
    sm = rf.fit(mu2=0.0)
    ul = rf.mu_upper_limit()
    return {"b_hat_sm": float(sm.values["b"]), "b_err_sm": float(sm.errors["b"]), "valid_sm": sm.valid,
            "a_pp": float(sm.values["a_pp"]), "a_be7": float(sm.values["a_be7"]), "s_eff": float(sm.values["s_eff"]),
            **{k: v for k, v in ul.items() if k != "free_fit"}, "valid_free": ul["free_fit"].valid,
            "n_clipped": rf.clipped, "totals": dict(zip(rf.names, rf.totals.tolist()))}


if __name__ == "__main__":  # pragma: no cover
    import json
    r = reference_results()
    print(json.dumps(r, indent=1, default=str))

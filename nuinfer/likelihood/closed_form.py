"""Closed-form profile of a Gaussian cost over one normalisation parameter (the paper's Eq. 26).

With ``mu = b R + B`` (``R`` the components multiplied by the free normalisation ``b``, ``B`` the
rest), the cost ``sum_i (n_i - B_i - b R_i)^2 / var_i + ((b - c)/sigma)^2`` is quadratic in ``b``::

    b_hat = (d.v + c/sigma^2) / (v.v + 1/sigma^2),   v_i = R_i/sqrt(var_i),  d_i = (n_i - B_i)/sqrt(var_i)

``b_hat`` is a ratio of sums of non-negative terms for Asimov-like data, and the minimum is then
evaluated as ``sum_i (d_i - b_hat v_i)^2 + ((b_hat - c)/sigma)^2``: non-negative terms only.  The
algebraically equal expanded form ``u.u - (u.v)^2 / (v.v + 1/sigma^2)`` cancels catastrophically at
large couplings (PHYSICS.md, section 7) and is never used.
"""

from __future__ import annotations

import numpy as np

from nuinfer.exceptions import InvalidConfig
from nuinfer.likelihood.result import FitResult
from nuinfer.likelihood.single import _profile_eq26_scaled

__all__ = ["profile_single_norm"]


def profile_single_norm(model, prep, n, var, cost, centres, free, stat):
    """Closed form for :func:`nuinfer.likelihood.profile.profile` (``method="closed_form"``)."""
    idx = np.flatnonzero(free)
    if cost != "gauss" or idx.size != 1 or idx[0] >= model.n_global:
        raise InvalidConfig("the closed-form profile needs the gauss cost and exactly one free normalisation "
                            "parameter; use the newton profiler", key="statistics.profiler")
    p = int(idx[0])
    name = model.parameters[p].name
    N = centres.shape[0]
    rows = np.arange(N)
    th0 = centres.copy()
    th0[:, p] = 1.0
    R = np.zeros((N, prep["_n_bins"]))
    B = np.zeros_like(R)
    for c in model.components:
        if c.morph is not None and name in c.morph.params:
            raise InvalidConfig(f"{name!r} morphs a template: no closed form", key="statistics.profiler")
        sub = type(model)(components=(c,), parameters=model.parameters, shapesys=model.shapesys)
        part = sub.evaluate(prep, th0, rows)
        (R if name in c.norms else B)[:] += part
        if c.norms.count(name) > 1:
            raise InvalidConfig(f"{name!r} appears twice in {c.name!r}", key="nuisances")
    nn = n if n.shape[0] == N else np.broadcast_to(n, (N, n.shape[1]))
    inv_sd = 1.0 / np.sqrt(var)
    minimum, b = _profile_eq26_scaled(R * inv_sd, (nn - B) * inv_sd, model.parameters[p].sigma, centres[:, p])
    theta = centres.copy()
    theta[:, p] = b
    return FitResult(stat, minimum, theta, np.isfinite(minimum), "closed_form", model.parameter_names)

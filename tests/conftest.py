"""Shared fixtures: synthetic forward-model templates that satisfy the infer/ input contract.

The templates are built like a real forward model: per bin, a quadrature over energy nodes of
``|A(E) -/+ g^2 B(E; m)|^2`` with an SM amplitude ``A`` and a mediator amplitude
``B = A * c / (m^2 + q^2(E))``.  Hence ``T0 = sum w A^2``, ``T1 = -/+ 2 sum w A B`` (vector-type
interference, destructive by default) and ``T2 = sum w B^2``; ``T1^2 <= 4 T0 T2`` holds, so the
prediction is never negative.  Nothing here is physics: it is a generic, smooth stand-in.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def build_templates(
    m_X=None,
    n_bins: int = 30,
    *,
    interference: str = "destructive",
    sm_scale: float = 1e3,
    empty_bins: int = 0,
    nodes_per_bin: int = 4,
) -> xr.Dataset:
    """Synthetic templates ``T(power, m_X, bin)`` and ``R_SM(bin)``.

    Parameters
    ----------
    m_X : array_like, optional
        Mediator masses [MeV]. Default ``np.logspace(-1, 2, 12)``.
    n_bins : int
        Number of non-empty bins (log-spaced in 0.1-100 keVee).
    interference : {"destructive", "constructive", "none"}
        Sign of T1 (``"none"``: scalar-like, T1 = 0).
    sm_scale : float
        Overall SM rate scale [events / keVee at E = 0].
    empty_bins : int
        Extra bins appended at high energy with zero expectation (beyond an endpoint).
    nodes_per_bin : int
        Quadrature nodes per bin (midpoint rule in log E).
    """
    m = np.logspace(-1, 2, 12) if m_X is None else np.asarray(m_X, dtype=float)
    edges = np.logspace(-1, 2, n_bins + 1)
    # midpoint rule in log E per bin
    t = (np.arange(nodes_per_bin) + 0.5) / nodes_per_bin
    lo, hi = edges[:-1], edges[1:]
    E = lo[:, None] * (hi / lo)[:, None] ** t[None, :]  # (bin, node)
    w = E * np.log(hi / lo)[:, None] / nodes_per_bin  # dE = E dlnE
    A = np.sqrt(sm_scale * np.exp(-E / 3.0))
    q2 = 0.5 * E  # "momentum transfer" [MeV^2] per keVee, arbitrary
    B = A[None] * 10.0 / (m[:, None, None] ** 2 + q2[None])  # (m, bin, node)
    T0 = (w * A * A).sum(-1)
    T2 = (w[None] * B * B).sum(-1)
    sign = {"destructive": -1.0, "constructive": 1.0, "none": 0.0}[interference]
    T1 = sign * 2.0 * (w[None] * A[None] * B).sum(-1)
    T = np.stack([np.broadcast_to(T0, T2.shape), T1, T2])
    if empty_bins:
        extra = np.logspace(2, 3, empty_bins + 1)[1:]
        edges = np.r_[edges, extra]
        T = np.concatenate([T, np.zeros((3, m.size, empty_bins))], axis=-1)
        T0 = np.r_[T0, np.zeros(empty_bins)]
    n = edges.size - 1
    e_attrs = {"units": "keVee", "quantity": "electron-equivalent recoil energy"}
    return xr.Dataset(
        {
            "T": (("power", "m_X", "bin"), T,
                  {"units": "events", "long_name": "coefficient of g_X^(2 power)"}),
            "R_SM": (("bin",), T0.copy(), {"units": "events", "long_name": "SM expected counts"}),
        },
        coords={
            "power": ("power", [0, 1, 2], {"units": "1", "long_name": "power of g_X^2"}),
            "m_X": ("m_X", m, {"units": "MeV", "long_name": "mediator mass"}),
            "bin": ("bin", np.arange(n), {"units": "1", "long_name": "bin index"}),
            "E_lo": ("bin", edges[:-1], {**e_attrs, "long_name": "bin lower edge"}),
            "E_hi": ("bin", edges[1:], {**e_attrs, "long_name": "bin upper edge"}),
            "E_center": ("bin", np.sqrt(edges[:-1] * edges[1:]),
                         {**e_attrs, "long_name": "bin centre (geometric)"}),
        },
        attrs={"process": "synthetic", "model": f"toy_{interference}",
               "exposure_tonne_year": 1.0, "config_json": "{}"},
    )


@pytest.fixture
def make_templates():
    """Factory for synthetic templates (see :func:`build_templates`)."""
    return build_templates


@pytest.fixture
def templates():
    """Default synthetic templates: 12 masses, 30 bins, destructive interference."""
    return build_templates()

"""Inputs of the data-fit likelihood: observed binned data and the nuisance widths.

:class:`BinnedData` (observed counts or residuals, background, per-bin uncertainties, bin edges)
and :class:`Nuisances` (flux, efficiency, quenching and background widths: 0 fixes, inf frees), with
:func:`qf_nodes`, the quenching-scale morphing nodes.  Used by the analysis spec (terrestrial
family) and the data-fit tasks (:mod:`nuinfer.tasks.datafit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nuinfer.exceptions import InvalidConfig, UnphysicalInput

__all__ = ["BinnedData", "Nuisances", "qf_nodes"]


def _sigma(v, key) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number (a fractional uncertainty, e.g. 0.1); got {v!r}", key=key) from None
    if math.isnan(v) or v < 0:
        raise UnphysicalInput(f"must be >= 0 (0 fixes the nuisance, inf leaves it free); got {v}", key=key)
    return v


@dataclass(frozen=True)
class Nuisances:
    """Gaussian constraint widths of the nuisance parameters (fractions; 0 fixed, inf free).

    Parameters
    ----------
    flux, efficiency, quenching, background : float
        Widths of ``a_flux``, ``a_eff``, ``a_qf``, ``a_bg``.
    """

    flux: float = 0.1
    efficiency: float = 0.0
    quenching: float = 0.0
    background: float = 0.0

    def __post_init__(self):
        for k in ("flux", "efficiency", "quenching", "background"):
            object.__setattr__(self, k, _sigma(getattr(self, k), f"nuisances.{k}"))
        if math.isinf(self.quenching):
            raise UnphysicalInput("the quenching nuisance needs a finite width (it sets the morphing nodes)",
                                  key="nuisances.quenching")

    @property
    def sigmas(self) -> np.ndarray:
        """Widths in the order of :data:`NUISANCES`."""
        return np.array([self.flux, self.efficiency, self.quenching, self.background])

    @property
    def active(self) -> np.ndarray:
        return self.sigmas > 0

    def to_attrs(self) -> dict:
        return {f"sigma_{k}": float(v) for k, v in zip(("flux", "eff", "qf", "bg"), self.sigmas)}


def qf_nodes(sigma_qf: float, n: int = 7) -> np.ndarray:
    """Quenching-normalisation nodes ``a_qf`` for template morphing: ``sigma_qf * linspace(-3, 3, n)``.

    A single node ``[0.]`` when ``sigma_qf == 0``.  Nodes are kept above -0.8 (Q_f > 0).
    """
    sigma_qf = _sigma(sigma_qf, "nuisances.quenching")
    if sigma_qf == 0:
        return np.zeros(1)
    if n < 4:
        raise InvalidConfig("need at least 4 morphing nodes (cubic spline)", key="nuisances.qf_nodes")
    return np.maximum(sigma_qf * np.linspace(-3.0, 3.0, n), -0.8)


@dataclass(frozen=True)
class BinnedData:
    """Observed binned counts with their background and uncertainties.

    Parameters
    ----------
    observed : array_like, shape (bin,)
        Counts (``"poisson"``: >= 0) or background-subtracted residuals (``"gauss"`` only).
    background : array_like, shape (bin,), optional
        Expected background added to the prediction (0 for residual data). Default zeros.
    sigma : array_like, shape (bin,), optional
        Per-bin standard deviations for ``"gauss"``; default ``sqrt(S_ref + B)``.
    edges : array_like, shape (bin + 1,), optional
        Bin edges (for coordinates) in ``units``.
    units : str
        Unit of the edges (``"keVee"``, ``"PE"``).
    label : str
        Where the data come from (recorded in outputs).
    """

    observed: np.ndarray
    background: np.ndarray | None = None
    sigma: np.ndarray | None = None
    edges: np.ndarray | None = None
    units: str = "keVee"
    label: str = "user"

    def __post_init__(self):
        obs = np.asarray(self.observed, dtype=float)
        if obs.ndim != 1 or obs.size == 0 or not np.all(np.isfinite(obs)):
            raise InvalidConfig("observed counts must be a finite 1-D array (one value per bin)", key="data.observed")
        object.__setattr__(self, "observed", obs)
        bg = np.zeros_like(obs) if self.background is None else np.asarray(self.background, float)
        if bg.shape != obs.shape or not np.all(np.isfinite(bg)) or np.any(bg < 0):
            raise InvalidConfig(f"background must have {obs.size} finite values >= 0", key="data.background")
        object.__setattr__(self, "background", bg)
        if self.sigma is not None:
            sg = np.asarray(self.sigma, float)
            if sg.shape != obs.shape or not np.all(np.isfinite(sg)) or np.any(sg <= 0):
                raise InvalidConfig(f"sigma must have {obs.size} finite values > 0", key="data.sigma")
            object.__setattr__(self, "sigma", sg)
        if self.edges is not None:
            e = np.asarray(self.edges, float)
            if e.shape != (obs.size + 1,) or np.any(np.diff(e) <= 0):
                raise InvalidConfig(f"edges must be {obs.size + 1} increasing values", key="data.edges")
            object.__setattr__(self, "edges", e)

    @property
    def n_bins(self) -> int:
        return int(self.observed.size)

    def coords(self) -> dict:
        """``bin`` coordinates (``E_lo``, ``E_hi``, ``E_center``) when edges are known."""
        c = {"bin": ("bin", np.arange(self.n_bins), {"units": "1", "long_name": "bin index"})}
        if self.edges is not None:
            e = self.edges
            a = {"units": self.units}
            c.update(E_lo=("bin", e[:-1], {**a, "long_name": "lower bin edge"}),
                     E_hi=("bin", e[1:], {**a, "long_name": "upper bin edge"}),
                     E_center=("bin", 0.5 * (e[:-1] + e[1:]), {**a, "long_name": "bin centre"}))
        return c



"""The one result type of every profiler (:func:`nuinfer.likelihood.profile`, the discovery and
data fits, the closed form)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """Minimised statistic over a batch.

    Attributes
    ----------
    statistic : str
        ``"chi2"`` or ``"twice_nll"``.
    minimum : numpy.ndarray, shape (N,) (or any batch shape)
    theta : numpy.ndarray, shape (N, n_par) (or batch shape + (n_par,))
        Parameters at the minimum (columns named by ``names``; ``result["name"]`` selects one).
    converged : numpy.ndarray of bool, shape (N,)
        Newton decrement below tolerance (``newton``), MIGRAD's ``valid`` (``minuit``), always true
        for the closed form.
    method : str
    names : list of str
    n_iter : int
    """

    statistic: str
    minimum: np.ndarray
    theta: np.ndarray
    converged: np.ndarray
    method: str
    names: list
    n_iter: int = 0

    def __getitem__(self, name: str) -> np.ndarray:
        """The fitted values of one parameter (leading batch shape)."""
        return self.theta[..., self.names.index(name)]

    def block(self, prefix: str) -> np.ndarray:
        """The fitted values of every parameter named ``prefix...`` (e.g. ``"phi["``), shape (..., k)."""
        return self.theta[..., [i for i, n in enumerate(self.names) if n.startswith(prefix)]]

    def __repr__(self):
        return (f"FitResult({self.statistic}, n={self.minimum.size}, min={np.min(self.minimum):.6g}, "
                f"converged={int(self.converged.sum())}/{self.converged.size}, method={self.method!r})")

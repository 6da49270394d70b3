"""Small interpolation kernels used on every forward-model path.

They are written with numpy alone so that computing a spectrum does not import
``scipy.interpolate`` (about 0.4 s of every command's start-up); see docs/performance.md.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hermite"]


def hermite(x: np.ndarray, y: np.ndarray, dydx: np.ndarray, xq) -> np.ndarray:
    """Piecewise cubic Hermite interpolation with given slopes.

    Same interpolant as ``scipy.interpolate.CubicHermiteSpline(x, y, dydx)`` inside
    ``[x[0], x[-1]]`` (tests/test_forward.py compares the two).

    Parameters
    ----------
    x : numpy.ndarray
        Knots, 1-d, strictly increasing.
    y, dydx : numpy.ndarray
        Values and first derivatives at the knots; the last axis runs over the knots.
    xq : array_like
        Query points; they must lie in ``[x[0], x[-1]]`` (clip them first).

    Returns
    -------
    numpy.ndarray
        Interpolated values, shape ``y.shape[:-1] + xq.shape``.
    """
    xq = np.asarray(xq, dtype=float)
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, x.size - 2)
    h = x[i + 1] - x[i]
    t = (xq - x[i]) / h
    t2, t3 = t * t, t * t * t
    h00 = 2.0 * t3 - 3.0 * t2 + 1.0
    h10 = t3 - 2.0 * t2 + t
    h01 = 3.0 * t2 - 2.0 * t3
    h11 = t3 - t2
    return h00 * y[..., i] + h10 * h * dydx[..., i] + h01 * y[..., i + 1] + h11 * h * dydx[..., i + 1]

"""Small interpolation kernels used on every forward-model path.

They are written with numpy alone so that computing a spectrum does not import
``scipy.interpolate`` (about 0.4 s of every command's start-up); see docs/performance.md.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hermite", "not_a_knot"]


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


def not_a_knot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of the cubic spline with not-a-knot ends through ``(x, y)``.

    The same piecewise polynomial as ``scipy.interpolate.CubicSpline(x, y, axis=0,
    bc_type="not-a-knot").c`` for ``x.size >= 4`` (tests/test_posterior.py compares the two):
    slopes from the tridiagonal continuity system with the not-a-knot rows (third derivative
    continuous at the second and the second-to-last knot), then the Hermite coefficients.  The two
    end rows are eliminated into their neighbours, which leaves a strictly diagonally dominant
    tridiagonal system (diagonal ``dx[i-1] + dx[i]`` or more against ``dx[i-1]``, ``dx[i]``), solved
    without pivoting in O(n) time and memory.

    Parameters
    ----------
    x : numpy.ndarray
        Knots, shape (n,), strictly increasing, ``n >= 4``.
    y : numpy.ndarray
        Values, shape (n, ...).

    Returns
    -------
    numpy.ndarray
        ``c`` of shape (4, n - 1, ...): on ``[x[i], x[i+1]]`` the spline is
        ``c[0, i] t**3 + c[1, i] t**2 + c[2, i] t + c[3, i]`` with ``t = x - x[i]``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if x.ndim != 1 or n < 4 or y.shape[0] != n:
        raise ValueError("not_a_knot needs >= 4 knots and values of shape (n, ...)")
    yf = y.reshape(n, -1)
    dx = np.diff(x)
    h = dx[:, None]
    slope = np.diff(yf, axis=0) / h
    # rows 1..n-2: dx[i] s[i-1] + 2 (dx[i-1] + dx[i]) s[i] + dx[i-1] s[i+1] = rhs[i]
    lower, diag, upper = dx[1:], 2.0 * (dx[:-1] + dx[1:]), dx[:-1]
    rhs = 3.0 * (h[1:] * slope[:-1] + h[:-1] * slope[1:])
    # not-a-knot end rows: d0 s[0] + c0 s[1] = b0 and an s[n-2] + dn s[n-1] = bn
    d0, c0 = dx[1], x[2] - x[0]
    b0 = ((h[0] + 2.0 * c0) * h[1] * slope[0] + h[0] ** 2 * slope[1]) / c0
    dn, an = dx[-2], x[-1] - x[-3]
    bn = (h[-1] ** 2 * slope[-2] + (2.0 * an + h[-1]) * h[-2] * slope[-1]) / an
    diag = diag.copy()
    diag[0] -= lower[0] * c0 / d0  # s[0] eliminated from row 1
    rhs[0] -= lower[0] / d0 * b0
    diag[-1] -= upper[-1] * an / dn  # s[n-1] eliminated from row n-2
    rhs[-1] -= upper[-1] / dn * bn
    N = n - 2
    cp = np.empty(N)
    cp[0] = upper[0] / diag[0]
    rhs[0] /= diag[0]
    for i in range(1, N):  # Thomas algorithm (forward sweep)
        m = diag[i] - lower[i] * cp[i - 1]
        cp[i] = upper[i] / m
        rhs[i] -= lower[i] * rhs[i - 1]
        rhs[i] /= m
    for i in range(N - 2, -1, -1):  # back substitution
        rhs[i] -= cp[i] * rhs[i + 1]
    s = np.empty_like(yf)
    s[1:-1] = rhs
    s[0] = (b0 - c0 * s[1]) / d0
    s[-1] = (bn - an * s[-2]) / dn
    t = (s[:-1] + s[1:] - 2.0 * slope) / h
    c = np.empty((4, n - 1, yf.shape[1]))
    c[0] = t / h
    c[1] = (slope - s[:-1]) / h - t
    c[2] = s[:-1]
    c[3] = yf[:-1]
    return c.reshape((4, n - 1) + y.shape[1:])

"""Profiling the normalisation nuisance ``a`` out of a statistic, over whole grids at once.

Three profilers, all returning the package's :class:`~nuinfer.likelihood.FitResult` (column ``"a"``)
over the leading (grid) dimensions:

* :func:`profile_eq26` -- closed form.  Eq. (26) is quadratic in ``a``; with the scaled
  quantities ``v_i = R_i / sigma_i`` and ``d_i = D_i / sigma_i`` the minimum is at::

      1 + a_hat = (d.v + 1/sigma_sys^2) / (v.v + 1/sigma_sys^2)
      a_hat     = sum_i w_i (D_i - R_i) R_i / (sum_i w_i R_i^2 + 1/sigma_sys^2),  w_i = 1/sigma_i^2

  ``1 + a_hat`` is formed first (all terms non-negative) and the minimum is then evaluated as
  ``sum_i (d_i - (1 + a_hat) v_i)^2 + (a_hat/sigma_sys)^2``, a sum of non-negative terms.  The
  expanded form ``u.u - (u.v)^2 / (v.v + 1/sigma_sys^2)`` with ``u = d - v`` is algebraically the
  same but cancels catastrophically at large couplings (``PHYSICS.md`` section 7).
* :func:`profile_poisson` -- vectorised safeguarded Newton iteration for the Poisson statistic
  (no closed form), with a per-point ``converged`` flag.
* :func:`profile_minuit` -- one ``iminuit.Minuit`` fit per point: the reference for both.

:func:`profile_grid` dispatches on ``statistic`` and ``profiler``.
"""

from __future__ import annotations

import math

import numpy as np

from nuinfer.exceptions import InvalidConfig
from nuinfer.likelihood.result import FitResult
from nuinfer.likelihood.costs import (
    STATISTICS,
    Eq26Chi2,
    PoissonTwiceNLL,
    _check_statistic,
    _eq26_inputs,
    _eq26_kernel,
    _constraint,
    _inv_sigma_sys2,
    _poisson_inputs,
    _poisson_kernel,
)

__all__ = [
    "PROFILERS",
    "profile_grid",
    "profile_eq26",
    "profile_minuit",
    "profile_poisson",
]

#: Accepted values of ``profiler``: closed form / vectorised Newton, or one Minuit fit per point.
PROFILERS = ("analytic", "minuit")


def _result(statistic: str, minimum, a_hat, converged, method: str) -> FitResult:
    """The profile over the normalisation ``a`` as the package's one result type (column ``"a"``)."""
    minimum = np.asarray(minimum, float)
    return FitResult(statistic, minimum, np.asarray(a_hat, float)[..., None], np.asarray(converged, bool), method,
                     ["a"])


# --------------------------------------------------------------------------------------------
# kernels on prepared arrays (no validation; used by scan.py on chunks of the grid)
# --------------------------------------------------------------------------------------------
def _profile_eq26_scaled(v, d, sigma_sys: float, centre=1.0):
    """Closed-form profile of Eq. (26) from ``v = R/sigma`` (..., n) and ``d = D/sigma``.

    ``b_hat = (d.v + centre/sigma_sys^2) / (v.v + 1/sigma_sys^2)``: a ratio of sums, then the
    minimum as a sum of non-negative terms (:func:`~nuinfer.likelihood.costs._eq26_kernel`).
    ``centre`` is the constraint's auxiliary value (1; a toy's draw).  Returns ``(chi2_min, b_hat)``
    with ``b_hat = 1 + a_hat``.
    """
    if sigma_sys == 0.0:
        b = np.broadcast_to(np.asarray(centre, float), v.shape[:-1]).copy()
    else:
        inv_s2 = _inv_sigma_sys2(sigma_sys)
        dv = v @ d if d.ndim == 1 else np.einsum("...i,...i->...", v, d)
        vv = np.einsum("...i,...i->...", v, v)
        den = vv + inv_s2
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(den > 0, (dv + centre * inv_s2) / np.where(den > 0, den, 1.0), centre)
    return _eq26_kernel(b, v, d, sigma_sys, centre), b


def _profile_eq26_templates(Ts, g2, d, sigma_sys: float):
    """Closed-form Eq. (26) profile over a (mass, g) grid straight from scaled templates.

    ``Ts`` is (3, M, n) with ``T_k / sigma``; ``g2`` (G,) the squared couplings; ``d = D/sigma``.
    The profiled normalisation b = 1 + a needs only v.d and v.v, which are polynomials in g^2 with
    coefficients from the template Gram matrices (O(M G) work, accurate to a few ulp times the
    interference cancellation, which only perturbs chi2 at second order).  chi2 itself is then
    evaluated as the sum of its non-negative terms, sum_i (d_i - b v_i)^2 + ((b-1)/sigma_sys)^2,
    never as u.u - (u.v)^2/(...) (PHYSICS.md sec. 7).  Returns ``(chi2_min, b_hat)``, (M, G).
    """
    M, G = Ts.shape[1], g2.size
    gp = np.stack([np.ones_like(g2), g2, g2 * g2])  # (3, G)
    if sigma_sys == 0.0:
        b = np.ones((M, G))
    else:
        inv_s2 = _inv_sigma_sys2(sigma_sys)
        A = np.einsum("kmi,i->km", Ts, d)  # (3, M): t_k . d (einsum: chunk-independent sums)
        Gm = np.einsum("kmi,lmi->mkl", Ts, Ts)  # (M, 3, 3)
        dv = np.einsum("km,kg->mg", A, gp)
        vv = np.einsum("mkl,kg,lg->mg", Gm, gp, gp)
        den = vv + inv_s2
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(den > 0, (dv + inv_s2) / np.where(den > 0, den, 1.0), 1.0)
    # residuals r = d - b t0 - (b g^2) t1 - (b g^4) t2, built in place
    r = np.empty((M, G, Ts.shape[2]))
    np.multiply(b[:, :, None], Ts[0][:, None, :], out=r)
    r += (b * g2[None, :])[:, :, None] * Ts[1][:, None, :]
    r += (b * (g2 * g2)[None, :])[:, :, None] * Ts[2][:, None, :]
    np.subtract(d[None, None, :], r, out=r)
    chi2 = np.einsum("...i,...i->...", r, r) + _constraint(b - 1.0, sigma_sys)
    return chi2, b


def _newton_poisson(R, D, B, sigma_sys: float, *, rtol: float, max_iter: int):
    """Minimise the Poisson twice_nll over ``b = 1 + a > 0`` for every row of ``R`` (P, n).

    ``f(b)`` is convex and ``f'(b)`` is increasing and concave, so Newton steps from the left of
    the minimum never overshoot.  If ``f'(0+) >= 0`` the minimum is at ``b = 0``.  Otherwise a
    bracket ``[lo, hi]`` with ``f'(lo) < 0 <= f'(hi)`` is kept (``lo = 0``; ``hi = max(1, N/sum
    R)`` with ``N`` the counts in bins with ``R > 0``) and a step leaving it is replaced by the
    geometric midpoint (or ``hi/10`` while ``lo = 0``).  Returns ``(b, converged)``.
    """
    P = R.shape[0]
    b = np.ones(P)
    converged = np.zeros(P, dtype=bool)
    if sigma_sys == 0.0:
        converged[:] = True
        return b, converged
    inv_s2 = _inv_sigma_sys2(sigma_sys)
    n_obs = D + B  # broadcasts (n,) or (P, n)
    sum_r = R.sum(axis=-1)
    trivial = sum_r <= 0  # prediction identically zero: f = const + ((b-1)/sigma_sys)^2
    converged[trivial] = True
    n_in = np.where(R > 0, n_obs, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        hi = np.maximum(1.0, np.where(trivial, 1.0, n_in / np.where(trivial, 1.0, sum_r)))
        # start: Eq. (26)-like closed form with Pearson weights 1/(R + B) at b = 1
        mu1 = R + B
        w = np.where(mu1 > 0, 1.0 / np.where(mu1 > 0, mu1, 1.0), 0.0)
        num = (w * D * R).sum(axis=-1) + inv_s2
        den = (w * R * R).sum(axis=-1) + inv_s2
        b0 = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    lo = np.zeros(P)
    b = np.where((b0 > 0) & (b0 < hi), b0, 0.5 * hi)
    b[trivial] = 1.0
    # f'(0+) >= 0 (only possible without background and with no counts where R > 0, e.g. all-zero
    # data): the minimum is on the boundary b = 0, i.e. a prediction of zero.
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = np.where(B > 0, -D / np.where(B > 0, B, 1.0), np.where(D > 0, -np.inf, 1.0))
        slope0 = 2.0 * np.where(R > 0, R * lim, 0.0).sum(axis=-1) - 2.0 * inv_s2
    at_zero = (slope0 >= 0) & ~trivial
    b[at_zero] = 0.0
    converged[at_zero] = True

    active = np.flatnonzero(~converged)
    if active.size == P:  # avoid copying the whole chunk on the first pass
        Ra, na, Da, Ba = R, n_obs, D, B
    else:
        Ra, na, Da, Ba = R[active], _rows(n_obs, active), _rows(D, active), B
    for _ in range(max_iter):
        if active.size == 0:
            break
        ba, loa, hia = b[active], lo[active], hi[active]
        bR = ba[:, None] * Ra
        mu = bR + Ba
        pos = mu > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_mu = np.where(pos, 1.0 / np.where(pos, mu, 1.0), 0.0)
        rR = Ra * inv_mu
        grad = 2.0 * np.einsum("ij,ij->i", rR, bR - Da) + 2.0 * (ba - 1.0) * inv_s2
        curv = 2.0 * np.einsum("ij,ij->i", rR * rR, np.broadcast_to(na, rR.shape)) + 2.0 * inv_s2
        loa = np.where(grad < 0, ba, loa)
        hia = np.where(grad > 0, ba, hia)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = grad / curv
        b_new = ba - step
        # a negligible step is convergence (b_new may then equal the bracket end in floating point)
        small = (grad == 0) | (np.abs(step) <= rtol * ba)
        outside = ~small & ~((b_new > loa) & (b_new < hia))
        fallback = np.where(loa > 0, np.sqrt(loa * hia), 0.1 * hia)
        b_new = np.where(outside, fallback, np.where(grad == 0, ba, b_new))
        done = small | (hia - loa <= rtol * hia)
        b[active], lo[active], hi[active] = b_new, loa, hia
        converged[active[done]] = True
        if np.any(done):
            keep = ~done
            active = active[keep]
            Ra, na, Da = Ra[keep], _rows(na, keep), _rows(Da, keep)
    return b, converged


def _rows(x, index):
    """Select rows of a (P, n) array; pass a shared (n,) array through."""
    return x if x.ndim == 1 else x[index]


# --------------------------------------------------------------------------------------------
# public profilers
# --------------------------------------------------------------------------------------------
def profile_eq26(expected, r_sm, *, data=None, sigma_sys: float = 0.1, sigma_bg: float = 0.1):
    """Profile ``a`` out of Eq. (26) in closed form, over all leading dimensions at once.

    Parameters
    ----------
    expected : array_like, shape (..., bin)
        Predictions ``R_i`` of the hypotheses [events].
    r_sm : array_like, shape (bin,)
        SM expectation [events], > 0 in every bin.
    data : array_like, shape (..., bin), optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    sigma_sys : float, optional
        Constraint width on ``a``. Default 0.1 (``0``: ``a`` fixed; ``inf``: free).
    sigma_bg : float, optional
        Background fraction entering the variance. Default 0.1.

    Returns
    -------
    FitResult
        ``statistic="chi2"``, ``method="closed_form"``.

    Examples
    --------
    >>> import numpy as np
    >>> r_sm = np.array([100.0, 50.0])
    >>> res = profile_eq26(np.stack([r_sm, 2 * r_sm]), r_sm)
    >>> res.minimum.round(6).tolist(), res["a"].round(6).tolist()
    ([0.0, 21.126761], [0.0, -0.422535])
    """
    R, D, inv_sigma, sigma_sys = _eq26_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
    chi2, b = _profile_eq26_scaled(R * inv_sigma, D * inv_sigma, sigma_sys)
    chi2 = np.asarray(chi2, dtype=float)
    return _result("chi2", chi2, np.asarray(b - 1.0), np.isfinite(chi2), "closed_form")


def profile_poisson(
    expected,
    r_sm,
    *,
    data=None,
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    rtol: float = 1e-10,
    max_iter: int = 100,
):
    """Profile ``a`` out of the Poisson ``twice_nll`` by vectorised safeguarded Newton.

    Parameters
    ----------
    expected : array_like, shape (..., bin)
        Predictions ``R_i`` of the hypotheses [events], non-negative.
    r_sm : array_like, shape (bin,)
        SM expectation [events]; background ``R_bg = sigma_bg R_SM``.
    data : array_like, shape (..., bin), optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    sigma_sys : float, optional
        Constraint width on ``a``. Default 0.1.
    sigma_bg : float, optional
        Background fraction. Default 0.1.
    rtol : float, optional
        Convergence when the Newton step in ``1 + a`` is below ``rtol (1 + a)``. Default 1e-10.
    max_iter : int, optional
        Iteration limit; points not converged by then have ``converged = False``. Default 100.

    Returns
    -------
    FitResult
        ``statistic="twice_nll"``, ``method="newton"``.

    Notes
    -----
    ``f(b) = twice_nll(b - 1)`` is convex in ``b = 1 + a`` and ``f'(0+) < 0`` whenever there is
    background (``sigma_bg > 0``) and ``sigma_sys`` is finite, so the minimum is unique and lies at
    ``1 + a > 0``.  Without background and with no counts where ``R > 0`` the minimum can be on
    the boundary ``a = -1``, which is returned as converged.
    """
    R, D, B, sigma_sys = _poisson_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
    lead = np.broadcast_shapes(R.shape[:-1], D.shape[:-1])
    n = R.shape[-1]
    R2 = np.broadcast_to(R, lead + (n,)).reshape(-1, n)
    D2 = D if D.ndim == 1 else np.broadcast_to(D, lead + (n,)).reshape(-1, n)
    b, conv = _newton_poisson(R2, D2, B, sigma_sys, rtol=float(rtol), max_iter=int(max_iter))
    val = _poisson_kernel(b, R2, D2, B, sigma_sys)
    return _result("twice_nll", val.reshape(lead), (b - 1.0).reshape(lead), conv.reshape(lead), "newton")


def profile_minuit(
    expected,
    r_sm,
    *,
    data=None,
    statistic: str = "eq26",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    strategy: int = 2,
    tol: float = 1e-6,
):
    """Profile ``a`` with one ``iminuit.Minuit`` MIGRAD fit per point (reference profiler).

    Parameters
    ----------
    expected : array_like, shape (..., bin)
        Predictions ``R_i`` of the hypotheses [events].
    r_sm : array_like, shape (bin,)
        SM expectation [events].
    data : array_like, shape (..., bin), optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    statistic : {"eq26", "poisson"}, optional
        Cost to minimise (:class:`~nuinfer.likelihood.costs.Eq26Chi2` or
        :class:`~nuinfer.likelihood.costs.PoissonTwiceNLL`). Default ``"eq26"``.
    sigma_sys, sigma_bg : float, optional
        As in the costs. Default 0.1 each.
    strategy : int, optional
        Minuit strategy. Default 2 (most careful).
    tol : float, optional
        Minuit EDM tolerance (MIGRAD stops at EDM < 0.002 tol errordef). Default 1e-6.

    Returns
    -------
    FitResult
        ``method="minuit"``; ``converged`` is ``FMin.is_valid`` per point.

    Notes
    -----
    About 0.3-1 ms per point: use it on small grids or as a cross-check.
    """
    from iminuit import Minuit

    _check_statistic(statistic)
    if statistic == "eq26":
        R, D, _, sigma_sys = _eq26_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
        cost_cls = Eq26Chi2
    else:
        R, D, _, sigma_sys = _poisson_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
        cost_cls = PoissonTwiceNLL
    lead = np.broadcast_shapes(R.shape[:-1], D.shape[:-1])
    n = R.shape[-1]
    Rb = np.broadcast_to(R, lead + (n,))
    Db = np.broadcast_to(D, lead + (n,))
    val = np.empty(lead)
    a_hat = np.empty(lead)
    conv = np.zeros(lead, dtype=bool)
    for idx in np.ndindex(*lead):
        cost = cost_cls(Rb[idx], r_sm, data=Db[idx], sigma_sys=sigma_sys, sigma_bg=sigma_bg)
        if sigma_sys == 0.0:  # nothing to fit
            val[idx], a_hat[idx], conv[idx] = cost(0.0), 0.0, True
            continue
        m = Minuit(cost, a=0.0)
        m.strategy = strategy
        m.tol = tol
        m.errors["a"] = 0.1 * sigma_sys if math.isfinite(sigma_sys) else 0.1
        m.migrad()
        val[idx], a_hat[idx], conv[idx] = m.fval, m.values["a"], m.fmin.is_valid
    return _result(STATISTICS[statistic], val, a_hat, conv, "minuit")


def profile_grid(
    expected,
    r_sm,
    *,
    data=None,
    statistic: str = "eq26",
    profiler: str = "analytic",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
):
    """Profile ``a`` with the chosen statistic and profiler.

    Parameters
    ----------
    expected : array_like, shape (..., bin)
        Predictions of the hypotheses [events].
    r_sm : array_like, shape (bin,)
        SM expectation [events].
    data : array_like, optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    statistic : {"eq26", "poisson"}, optional
        Default ``"eq26"``.
    profiler : {"analytic", "minuit"}, optional
        ``"analytic"`` (default): closed form for Eq. (26), vectorised Newton for Poisson.
        ``"minuit"``: one Minuit fit per point (reference).
    sigma_sys, sigma_bg : float, optional
        Default 0.1 each.

    Returns
    -------
    FitResult
    """
    _check_statistic(statistic)
    kw = dict(data=data, sigma_sys=sigma_sys, sigma_bg=sigma_bg)
    if profiler == "minuit":
        return profile_minuit(expected, r_sm, statistic=statistic, **kw)
    if profiler != "analytic":
        raise InvalidConfig(
            f"unknown profiler {profiler!r}; use 'analytic' (closed form / Newton) or 'minuit'",
            key="profiler",
        )
    if statistic == "eq26":
        return profile_eq26(expected, r_sm, **kw)
    return profile_poisson(expected, r_sm, **kw)

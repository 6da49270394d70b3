"""Test statistics for binned counts: the paper's Eq. (26) chi2 and its Poisson counterpart.

Both statistics compare counts ``D_i`` in bins ``i`` with the prediction ``(1 + a) R_i`` of a
hypothesis ``X`` (SM plus new physics), where ``a`` is a normalisation nuisance parameter with a
Gaussian constraint of width ``sigma_sys``.  Both are on the chi2 scale (iminuit ``errordef = 1``),
so differences are Delta chi2 directly.

Eq. (26) of Majumdar, Papoulias, Srivastava (PRD 106 (2022) 013001)::

    chi2(a) = sum_i ((D_i - (1 + a) R_i) / sigma_i)^2 + (a / sigma_sys)^2
    sigma_i^2 = R_SM,i + R_bg,i,      R_bg,i = sigma_bg * R_SM,i

with the Asimov data set ``D = R_SM`` by default.  The background enters only through the
variance; it is assumed known and is never fitted.  Data are therefore *background-subtracted*
counts: an observation ``n ~ Poisson((1 + a) R + R_bg)`` is passed as ``D = n - R_bg``, which may
be negative in sparse bins; only ``D + R_bg >= 0`` is required.

The Poisson counterpart (Baker-Cousins saturated form, chi2 scale, as iminuit's binned costs)::

    twice_nll(a) = 2 sum_i [mu_i - n_i + n_i ln(n_i / mu_i)] + (a / sigma_sys)^2
    mu_i = (1 + a) R_i + R_bg,i,      n_i = D_i + R_bg,i

Here the known background ``R_bg`` is *added* to both the data and the prediction.  It cancels
from the mean residual ``n_i - mu_i = D_i - (1 + a) R_i`` exactly as in Eq. (26), and it inflates
the Poisson variance ``mu_i`` by ``R_bg,i`` exactly as Eq. (26) inflates ``sigma_i^2``: for large
counts ``twice_nll`` tends to Eq. (26) with the variance evaluated at the hypothesis instead of at
the SM.  Bins with zero expected counts are handled exactly (no ``sigma_i -> 0`` problem).

Every statistic is evaluated as a sum of non-negative terms (``PHYSICS.md`` section 7): the
algebraically equivalent expanded forms cancel catastrophically at large couplings.

Two interfaces are provided:

* vectorised functions :func:`eq26_chi2` and :func:`poisson_twice_nll` that evaluate over any
  leading (grid) dimensions at once;
* cost classes :class:`Eq26Chi2` and :class:`PoissonTwiceNLL` for one hypothesis, following
  the iminuit cost protocol (``errordef``, ``_parameters``, ``ndata``, ``npar``, ``grad``), so
  ``iminuit.Minuit(cost, a=0.0)`` works without setting ``errordef`` by hand.
"""

from __future__ import annotations

import math

import numpy as np

from nuinfer.exceptions import InvalidConfig, NumericalError, UnphysicalInput

__all__ = [
    "CHISQUARE",
    "STATISTICS",
    "Eq26Chi2",
    "PoissonTwiceNLL",
    "background_counts",
    "eq26_chi2",
    "eq26_variance",
    "poisson_twice_nll",
]

#: errordef of every nuinfer cost: values are on the chi2 scale (as ``iminuit.cost.CHISQUARE``).
CHISQUARE = 1.0

#: Statistic name -> name of the quantity it returns (the statistical scale is in the name).
STATISTICS = {"eq26": "chi2", "poisson": "twice_nll"}


# --------------------------------------------------------------------------------------------
# validation helpers (shared with profile.py and scan.py)
# --------------------------------------------------------------------------------------------
def _check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise InvalidConfig(
            f"unknown statistic {statistic!r}; use one of {sorted(STATISTICS)} "
            "('eq26' is the paper's Gaussian chi2, 'poisson' its Poisson counterpart)",
            key="statistic",
        )
    return statistic


def _check_sigma(value: float, name: str, *, allow_inf: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number; got {value!r}", key=name) from None
    if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        allowed = "[0, inf]" if allow_inf else "[0, inf)"
        raise UnphysicalInput(
            f"must be a fraction in {allowed} (e.g. 0.1 for 10%); got {value!r}", key=name
        )
    return value


def _check_per_bin(x, name: str, n_bins: int | None) -> np.ndarray:
    """Return ``x`` as a float array of finite values per bin, with ``n_bins`` (if given) last."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        raise InvalidConfig("must be an array of counts per bin; got a scalar", key=name)
    if n_bins is not None and arr.shape[-1] != n_bins:
        raise InvalidConfig(
            f"must have {n_bins} bins along its last axis (one per energy bin); "
            f"got shape {arr.shape}",
            key=name,
        )
    if not np.all(np.isfinite(arr)):
        raise UnphysicalInput(f"contains NaN or inf at {_first_bad(~np.isfinite(arr))}", key=name)
    return arr


def _check_counts(x, name: str, *, n_bins: int | None = None) -> np.ndarray:
    """Return ``x`` as a float array of finite, non-negative counts with ``n_bins`` last."""
    arr = _check_per_bin(x, name, n_bins)
    if np.any(arr < 0):
        raise UnphysicalInput(
            f"contains negative counts at {_first_bad(arr < 0)}; counts must be >= 0", key=name
        )
    return arr


def _check_data(x, r_sm: np.ndarray, sigma_bg: float, name: str = "data") -> np.ndarray:
    """Observed counts ``D`` per bin: finite, ``n_bins`` last, with ``D + R_bg >= 0``.

    ``D`` is the *background-subtracted* count (the statistics compare it with the neutrino
    prediction ``(1 + a) R``; the known background ``R_bg = sigma_bg R_SM`` enters Eq. (26)
    through the variance and the Poisson statistic through ``n = D + R_bg``).  A Poisson
    observation ``n ~ Poisson((1 + a) R + R_bg)`` is therefore passed as ``D = n - R_bg``, which is
    negative in bins with ``n < R_bg``; only the observed total ``n = D + R_bg`` must be
    non-negative (up to a relative rounding of 1e-12).
    """
    arr = _check_per_bin(x, name, r_sm.size)
    bg = background_counts(r_sm, sigma_bg)
    bad = arr + bg * (1.0 + 1e-12) < 0
    if np.any(bad):
        raise UnphysicalInput(
            f"contains negative counts at {_first_bad(bad)}: data are background-subtracted "
            "counts D = n - R_bg (R_bg = sigma_bg R_SM), so D + R_bg must be >= 0",
            key=name,
        )
    return arr


def _first_bad(mask: np.ndarray) -> str:
    idx = np.argwhere(mask)
    return f"index {tuple(int(i) for i in idx[0])} ({len(idx)} entries in total)"


def _inv_sigma_sys2(sigma_sys: float) -> float:
    """1 / sigma_sys^2, with sigma_sys = inf meaning a free normalisation (0)."""
    return 0.0 if math.isinf(sigma_sys) else 1.0 / sigma_sys**2


def _constraint(a, sigma_sys: float):
    """(a / sigma_sys)^2 with the limits sigma_sys = 0 (a fixed to 0) and inf (a free)."""
    a = np.asarray(a, dtype=float)
    if sigma_sys == 0.0:
        return np.where(a == 0.0, 0.0, np.inf)
    if math.isinf(sigma_sys):
        return np.zeros_like(a)
    return (a / sigma_sys) ** 2


def background_counts(r_sm, sigma_bg: float = 0.1) -> np.ndarray:
    """Known background counts of Eq. (26), ``R_bg = sigma_bg * R_SM``.

    Parameters
    ----------
    r_sm : array_like
        SM expected counts per bin [events].
    sigma_bg : float, optional
        Background as a fraction of the SM rate. Default 0.1.

    Returns
    -------
    numpy.ndarray
        Background counts per bin [events].
    """
    return float(sigma_bg) * np.asarray(r_sm, dtype=float)


def eq26_variance(r_sm, sigma_bg: float = 0.1) -> np.ndarray:
    """Variance of Eq. (26), ``sigma_i^2 = R_SM,i + R_bg,i = (1 + sigma_bg) R_SM,i``.

    Parameters
    ----------
    r_sm : array_like
        SM expected counts per bin [events].
    sigma_bg : float, optional
        Background as a fraction of the SM rate. Default 0.1.

    Returns
    -------
    numpy.ndarray
        ``sigma_i^2`` per bin [events^2].
    """
    return (1.0 + float(sigma_bg)) * np.asarray(r_sm, dtype=float)


def _sigmas_and_r_sm(sigma_sys, sigma_bg, r_sm):
    """Validate and return (sigma_sys, sigma_bg, r_sm) as both statistics take them."""
    sigma_sys = _check_sigma(sigma_sys, "sigma_sys", allow_inf=True)
    sigma_bg = _check_sigma(sigma_bg, "sigma_bg", allow_inf=False)
    r_sm = _check_counts(r_sm, "r_sm")
    if r_sm.ndim != 1:
        raise InvalidConfig(f"must be one-dimensional (bin,); got shape {r_sm.shape}", key="r_sm")
    return sigma_sys, sigma_bg, r_sm


def _eq26_inputs(expected, r_sm, data, sigma_sys, sigma_bg):
    """Validate and return (R, D, 1/sigma, sigma_sys) for Eq. (26)."""
    sigma_sys, sigma_bg, r_sm = _sigmas_and_r_sm(sigma_sys, sigma_bg, r_sm)
    if np.any(r_sm == 0):
        raise UnphysicalInput(
            f"is zero in bins {np.flatnonzero(r_sm == 0).tolist()}, so sigma_i = 0 in Eq. (26) "
            "and the chi2 is undefined; drop those bins (scan(..., min_expected=...)) or use "
            "the Poisson statistic",
            key="r_sm",
        )
    R = _check_finite(expected, "expected", r_sm.size)
    D = r_sm if data is None else _check_data(data, r_sm, sigma_bg)
    inv_sigma = 1.0 / np.sqrt(eq26_variance(r_sm, sigma_bg))
    return R, D, inv_sigma, sigma_sys


def _poisson_inputs(expected, r_sm, data, sigma_sys, sigma_bg):
    """Validate and return (R, D, R_bg, sigma_sys) for the Poisson statistic."""
    sigma_sys, sigma_bg, r_sm = _sigmas_and_r_sm(sigma_sys, sigma_bg, r_sm)
    R = _check_counts(expected, "expected", n_bins=r_sm.size)
    D = r_sm if data is None else _check_data(data, r_sm, sigma_bg)
    return R, D, background_counts(r_sm, sigma_bg), sigma_sys


def _check_finite(x, name: str, n_bins: int) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0 or arr.shape[-1] != n_bins:
        raise InvalidConfig(
            f"must have {n_bins} bins along its last axis; got shape {arr.shape}", key=name
        )
    if not np.all(np.isfinite(arr)):
        raise NumericalError(
            f"{name} contains NaN or inf at {_first_bad(~np.isfinite(arr))}; "
            "check the forward model that produced it"
        )
    return arr


# --------------------------------------------------------------------------------------------
# numerically careful kernels (no validation; used in hot paths)
# --------------------------------------------------------------------------------------------
def _eq26_kernel(b, v, d, sigma_sys: float, centre=1.0):
    """Eq. (26) at normalisation ``b = 1 + a`` from scaled inputs ``v = R/sigma``, ``d = D/sigma``.

    Sum of squares of the residuals ``d - b v`` plus the constraint ``((b - centre)/sigma_sys)^2``
    (``centre`` = 1, or an auxiliary value drawn for a toy): non-negative terms only.
    """
    b = np.asarray(b, dtype=float)
    r = d - b[..., None] * v
    return np.einsum("...i,...i->...", r, r) + _constraint(b - centre, sigma_sys)


def _x_minus_log1p(x):
    """``x - log(1 + x)`` for ``x >= -1``, accurate (relative) also for tiny ``|x|``."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = x - np.log1p(x)
    # sum_{k=2}^{9} (-1)^k x^k / k by Horner; truncation error < |x|^10/10, i.e. a relative
    # 2e-17 of the leading term x^2/2 at |x| = 1e-2, while the direct form loses digits there.
    poly = np.full_like(x, -1.0 / 9.0)
    for k in range(8, 1, -1):
        poly = poly * x + (1.0 if k % 2 == 0 else -1.0) / k
    series = x * x * poly
    return np.where(np.abs(x) < 1e-2, series, direct)


def _poisson_terms(D, bR, B):
    """Per-bin ``2 [mu - n + n ln(n/mu)]`` with ``mu = bR + B``, ``n = D + B`` (all >= 0).

    ``mu - n = bR - D`` is formed without the background, so nothing cancels at the Asimov point;
    for ``n > 0`` the term is ``2 n (x - log1p(x))`` with ``x = (mu - n)/n``.  Bins with ``n = 0``
    contribute ``2 mu``; ``mu = 0 < n`` gives ``+inf`` (the hypothesis forbids observed counts).
    """
    n = D + B
    mu = bR + B
    diff = bR - D
    pos = n > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(pos, diff / np.where(pos, n, 1.0), 0.0)
    return 2.0 * np.where(pos, n * _x_minus_log1p(x), mu)


def _poisson_kernel(b, R, D, B, sigma_sys: float):
    """Poisson twice_nll at ``b = 1 + a`` over leading dimensions (no validation)."""
    b = np.asarray(b, dtype=float)
    terms = _poisson_terms(D, b[..., None] * R, B)
    return terms.sum(axis=-1) + _constraint(b - 1.0, sigma_sys)


# --------------------------------------------------------------------------------------------
# vectorised statistics
# --------------------------------------------------------------------------------------------
def eq26_chi2(a, expected, r_sm, *, data=None, sigma_sys: float = 0.1, sigma_bg: float = 0.1):
    """The paper's Eq. (26) chi2 at nuisance ``a``, vectorised over leading dimensions.

    Parameters
    ----------
    a : float or array_like
        Normalisation nuisance; broadcast against ``expected.shape[:-1]``.
    expected : array_like, shape (..., bin)
        Prediction ``R_i`` of the hypothesis (SM plus new physics) [events].
    r_sm : array_like, shape (bin,)
        SM expectation [events]; sets ``sigma_i^2 = (1 + sigma_bg) R_SM,i``. Must be > 0 in
        every bin (drop empty bins first).
    data : array_like, shape (..., bin), optional
        Observed counts ``D_i``, background subtracted (``D_i + R_bg,i >= 0``). Default ``None``
        uses the Asimov data set ``D = R_SM``.
    sigma_sys : float, optional
        Width of the Gaussian constraint on ``a``. Default 0.1. ``0`` fixes ``a = 0``;
        ``inf`` leaves it free.
    sigma_bg : float, optional
        Background as a fraction of the SM rate, entering the variance only. Default 0.1.

    Returns
    -------
    numpy.ndarray
        chi2, shape of the broadcast leading dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> r_sm = np.array([100.0, 50.0])
    >>> float(eq26_chi2(0.0, r_sm, r_sm))
    0.0
    >>> round(float(eq26_chi2(0.1, r_sm, r_sm)), 6)  # 150/1.1 * 0.01 + 1
    2.363636
    """
    R, D, inv_sigma, sigma_sys = _eq26_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
    return _eq26_kernel(1.0 + np.asarray(a, dtype=float), R * inv_sigma, D * inv_sigma, sigma_sys)


def poisson_twice_nll(
    a, expected, r_sm, *, data=None, sigma_sys: float = 0.1, sigma_bg: float = 0.1
):
    """Poisson ``twice_nll`` (Baker-Cousins, chi2 scale) at nuisance ``a``, vectorised.

    ``2 sum_i [mu_i - n_i + n_i ln(n_i/mu_i)] + (a/sigma_sys)^2`` with
    ``mu_i = (1 + a) R_i + R_bg,i`` and ``n_i = D_i + R_bg,i``, ``R_bg = sigma_bg R_SM``.

    Parameters
    ----------
    a : float or array_like
        Normalisation nuisance, ``1 + a >= 0``; broadcast against ``expected.shape[:-1]``.
    expected : array_like, shape (..., bin)
        Prediction ``R_i`` of the hypothesis [events], non-negative.
    r_sm : array_like, shape (bin,)
        SM expectation [events]; sets the known background ``R_bg = sigma_bg R_SM``.
    data : array_like, shape (..., bin), optional
        Observed counts ``D_i = n_i - R_bg,i`` (background subtracted, need not be integers;
        ``D_i + R_bg,i >= 0``). Default ``None`` uses ``D = R_SM``.
    sigma_sys : float, optional
        Width of the Gaussian constraint on ``a``. Default 0.1.
    sigma_bg : float, optional
        Background as a fraction of the SM rate. Default 0.1.

    Returns
    -------
    numpy.ndarray
        twice_nll, shape of the broadcast leading dimensions; 0 when the prediction equals the
        data and ``a = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> r_sm = np.array([100.0, 50.0])
    >>> float(poisson_twice_nll(0.0, r_sm, r_sm))
    0.0
    """
    R, D, B, sigma_sys = _poisson_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
    b = 1.0 + np.asarray(a, dtype=float)
    if np.any(b < 0):
        raise UnphysicalInput("must satisfy 1 + a >= 0 (non-negative prediction)", key="a")
    return _poisson_kernel(b, R, D, B, sigma_sys)


# --------------------------------------------------------------------------------------------
# iminuit cost classes
# --------------------------------------------------------------------------------------------
class _NuisanceCost:
    """Shared part of the one-parameter cost classes (iminuit protocol)."""

    #: chi2 scale: Minuit reads this, never set ``Minuit.errordef`` by hand.
    errordef = CHISQUARE
    has_grad = True

    _parameters: dict
    sigma_sys: float
    _n: int

    @property
    def ndata(self) -> int:
        """Number of bins (used by Minuit for the reduced chi2)."""
        return self._n

    @property
    def npar(self) -> int:
        """Number of parameters (1: the nuisance ``a``)."""
        return len(self._parameters)

    def __call__(self, a: float) -> float:
        """Evaluate the statistic at nuisance ``a``."""
        return float(self._value(float(a)))

    def grad(self, a: float) -> np.ndarray:
        """Gradient with respect to ``a``, shape (1,)."""
        return np.array([self._grad(float(a))])

    def _grad_constraint(self, a: float) -> float:
        if math.isinf(self.sigma_sys):
            return 0.0
        if self.sigma_sys == 0.0:
            return 0.0 if a == 0.0 else math.copysign(math.inf, a)
        return 2.0 * a / self.sigma_sys**2


class Eq26Chi2(_NuisanceCost):
    """The paper's Eq. (26) for one hypothesis, as an iminuit cost of the nuisance ``a``.

    Equivalent to ``iminuit.cost.LeastSquares(x, D, sigma, lambda x, a: (1 + a) R) +
    NormalConstraint("a", 0, sigma_sys)``.

    Parameters
    ----------
    expected : array_like, shape (bin,)
        Prediction ``R_i`` of the hypothesis [events].
    r_sm : array_like, shape (bin,)
        SM expectation [events], > 0 in every bin.
    data : array_like, shape (bin,), optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    sigma_sys : float, optional
        Constraint width on ``a``. Default 0.1.
    sigma_bg : float, optional
        Background fraction entering the variance. Default 0.1.

    Examples
    --------
    >>> import numpy as np
    >>> from iminuit import Minuit
    >>> r_sm = np.array([100.0, 50.0])
    >>> cost = Eq26Chi2(1.2 * r_sm, r_sm)
    >>> m = Minuit(cost, a=0.0)
    >>> _ = m.migrad()
    >>> bool(m.valid), cost.errordef
    (True, 1.0)
    """

    def __init__(self, expected, r_sm, *, data=None, sigma_sys: float = 0.1, sigma_bg: float = 0.1):
        R, D, inv_sigma, sigma_sys = _eq26_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
        if R.ndim != 1 or D.ndim != 1:
            raise InvalidConfig(
                "Eq26Chi2 takes one hypothesis: expected and data must have shape (bin,); "
                "use eq26_chi2 or profile_eq26 for grids",
                key="expected",
            )
        self._v = R * inv_sigma
        self._d = D * inv_sigma
        self._n = R.size
        self.sigma_sys = sigma_sys
        self._parameters = {"a": None}

    def _value(self, a: float) -> float:
        return _eq26_kernel(1.0 + a, self._v, self._d, self.sigma_sys)

    def _grad(self, a: float) -> float:
        r = self._d - (1.0 + a) * self._v
        return float(-2.0 * np.dot(r, self._v)) + self._grad_constraint(a)


class PoissonTwiceNLL(_NuisanceCost):
    """Poisson ``twice_nll`` for one hypothesis, as an iminuit cost of the nuisance ``a``.

    See :func:`poisson_twice_nll` for the definition. The parameter ``a`` carries the limit
    ``a >= -1`` (non-negative prediction), which Minuit reads from ``_parameters``.

    Parameters
    ----------
    expected : array_like, shape (bin,)
        Prediction ``R_i`` of the hypothesis [events], non-negative.
    r_sm : array_like, shape (bin,)
        SM expectation [events]; background ``R_bg = sigma_bg R_SM``.
    data : array_like, shape (bin,), optional
        Observed counts. Default ``None``: Asimov ``D = R_SM``.
    sigma_sys : float, optional
        Constraint width on ``a``. Default 0.1.
    sigma_bg : float, optional
        Background fraction. Default 0.1.
    """

    def __init__(self, expected, r_sm, *, data=None, sigma_sys: float = 0.1, sigma_bg: float = 0.1):
        R, D, B, sigma_sys = _poisson_inputs(expected, r_sm, data, sigma_sys, sigma_bg)
        if R.ndim != 1 or D.ndim != 1:
            raise InvalidConfig(
                "PoissonTwiceNLL takes one hypothesis: expected and data must have shape "
                "(bin,); use poisson_twice_nll or profile_poisson for grids",
                key="expected",
            )
        self._R, self._D, self._B = R, D, B
        self._n = R.size
        self.sigma_sys = sigma_sys
        self._parameters = {"a": (-1.0, math.inf)}

    def _value(self, a: float) -> float:
        if 1.0 + a < 0:
            return math.inf
        return _poisson_kernel(1.0 + a, self._R, self._D, self._B, self.sigma_sys)

    def _grad(self, a: float) -> float:
        mu = (1.0 + a) * self._R + self._B
        diff = (1.0 + a) * self._R - self._D
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(mu > 0, diff / np.where(mu > 0, mu, 1.0), 0.0)
        return float(2.0 * np.dot(self._R, ratio)) + self._grad_constraint(a)

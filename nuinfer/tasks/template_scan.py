"""Profile-likelihood scans over a (m_X, g_X) grid.

Every model of ``PHYSICS.md`` gives expected counts that are a polynomial in ``g^2`` with
mass-dependent coefficients (the templates of :mod:`nuinfer.forward`)::

    R(g, m) = T0 + g^2 T1(m) + g^4 T2(m)

so the whole grid of predictions is three broadcast multiply-adds (:func:`expected_counts`) and
the nuisance is profiled over the whole grid at once (:mod:`nuinfer.likelihood.single`).  The grid is
processed in chunks of masses so that temporaries stay below about 200 MB.

Templates contract (``xr.Dataset``)
-----------------------------------
* coords ``power = [0, 1, 2]``, ``m_X`` [MeV, increasing], ``bin`` with non-index coords
  ``E_lo``, ``E_hi``, ``E_center``;
* ``T(power, m_X, bin)`` [events], with ``T[0]`` the SM (equal for every mass);
* ``R_SM(bin)`` [events] = ``T[0]``;
* attrs: str or numbers (carried over to the scan).
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import xarray as xr

from nuinfer.exceptions import EmptyWindow, InvalidConfig, NumericalError, UnphysicalInput
from nuinfer.likelihood.costs import (
    STATISTICS,
    _check_counts,
    _check_data as _check_data_counts,
    _check_sigma,
    _check_statistic,
    _poisson_kernel,
    background_counts,
    eq26_variance,
)
from nuinfer.likelihood.single import (
    PROFILERS,
    _newton_poisson,
    _profile_eq26_scaled,
    _profile_eq26_templates,
    profile_minuit,
)
from nuinfer.progress import Progress

__all__ = [
    "DEFAULT_MIN_EXPECTED",
    "delta_chi2_threshold",
    "expected_counts",
    "scan",
]

log = logging.getLogger(__name__)

#: Bins whose SM expectation is at or below this many events are dropped (numerically empty
#: bins, e.g. beyond a kinematic endpoint, where sigma_i -> 0 makes Eq. (26) meaningless).
DEFAULT_MIN_EXPECTED = 1e-9

#: Relative tolerance on the most negative prediction T0 + g^2 T1 + g^4 T2 (over all g) per bin.
_NEGATIVE_RTOL = 1e-6
#: Relative tolerance for "T[0] is the same at every mass and equals R_SM".
_SM_RTOL = 1e-9
#: Budget for the temporaries of one chunk of masses: small enough to stay cache-friendly
#: (measured: 8 MB chunks are ~1.5x faster than 200 MB ones on a 200 x 200 x 100 grid).
_MAX_CHUNK_BYTES = 8 * 2**20
#: Number of (chunk, g_X, bin) float64 arrays alive at once, per profiler.
_TEMPORARIES = {"eq26": 4, "poisson": 10}


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------
def delta_chi2_threshold(cl: float = 0.9, ndof: int = 2) -> float:
    """Wilks threshold on Delta chi2: ``chi2.ppf(cl, ndof)`` (computed as ``scipy.special.chdtri``).

    Parameters
    ----------
    cl : float, optional
        Confidence level in (0, 1). Default 0.9.
    ndof : {1, 2}, optional
        Degrees of freedom: 2 for the joint (m_X, g_X) region, 1 for a raster scan in g_X at
        fixed m_X. Default 2.

    Returns
    -------
    float
        The threshold (4.605170 for 90% CL with 2 dof, 2.705543 with 1 dof).

    Examples
    --------
    >>> round(delta_chi2_threshold(0.9, 2), 6), round(delta_chi2_threshold(0.9, 1), 6)
    (4.60517, 2.705543)
    """
    from nuinfer.tasks.model_scan import chi2_threshold
    cl, ndof = _check_cl(cl), _check_ndof(ndof)
    return chi2_threshold(cl, ndof)


def _check_cl(cl) -> float:
    try:
        cl = float(cl)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number in (0, 1); got {cl!r}", key="cl") from None
    if not 0.0 < cl < 1.0:
        raise InvalidConfig(f"must be in (0, 1), e.g. 0.9 for 90% CL; got {cl!r}", key="cl")
    return cl


def _check_ndof(ndof) -> int:
    if isinstance(ndof, bool) or ndof not in (1, 2):
        raise InvalidConfig(
            f"must be 2 (joint (m_X, g_X) region) or 1 (raster scan in g_X per mass); "
            f"got {ndof!r}",
            key="ndof",
        )
    return int(ndof)


# --------------------------------------------------------------------------------------------
# templates and expected counts
# --------------------------------------------------------------------------------------------
def _template_array(templates) -> np.ndarray:
    """Return templates as a float array (power=3, m_X, bin)."""
    if isinstance(templates, xr.Dataset):
        if "T" not in templates:
            raise InvalidConfig(
                "templates dataset has no variable 'T'; pass the output of the forward model "
                "(T(power, m_X, bin) and R_SM(bin))",
                key="templates",
            )
        templates = templates["T"]
    if isinstance(templates, xr.DataArray):
        need = {"power", "m_X", "bin"}
        if set(templates.dims) != need:
            raise InvalidConfig(
                f"T must have dims {sorted(need)}; got {templates.dims}", key="templates.T"
            )
        if "power" in templates.coords:
            if sorted(np.asarray(templates["power"]).tolist()) != [0, 1, 2]:
                raise InvalidConfig(
                    "T must have coordinate power = [0, 1, 2] (coefficients of g^0, g^2, g^4); "
                    f"got {np.asarray(templates['power']).tolist()}",
                    key="templates.T.power",
                )
            templates = templates.sel(power=[0, 1, 2])
        arr = np.asarray(templates.transpose("power", "m_X", "bin").values, dtype=float)
    else:
        arr = np.asarray(templates, dtype=float)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise InvalidConfig(
            f"T must have shape (power=3, m_X, bin); got {arr.shape}", key="templates.T"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise NumericalError(
            f"templates.T contains NaN or inf (first at power={bad[0]}, m_X index {bad[1]}, "
            f"bin {bad[2]}); check the forward model's quadrature for that mass and bin"
        )
    return arr


def _check_g(g_X, *, strict: bool) -> np.ndarray:
    g = np.atleast_1d(np.asarray(g_X, dtype=float))
    if g.ndim != 1 or g.size == 0:
        raise InvalidConfig(f"must be a non-empty 1-D grid; got shape {g.shape}", key="g_X")
    if not np.all(np.isfinite(g)):
        raise InvalidConfig("contains NaN or inf; give finite couplings", key="g_X")
    if strict:
        if np.any(g <= 0):
            raise UnphysicalInput(
                "must be > 0 (the SM point g_X = 0 is added by the scan itself); "
                "use e.g. np.logspace(-6, -2, 200)",
                key="g_X",
            )
        if np.any(np.diff(g) <= 0):
            raise InvalidConfig("must be strictly increasing; sort it and drop duplicates",
                                key="g_X")
    elif np.any(g < 0):
        raise UnphysicalInput("must be >= 0 (R depends on g_X^2 only)", key="g_X")
    return g


def _grid_counts(T, g2, out=None):
    """``T[0] + g^2 T[1] + g^4 T[2]`` for T (3, M, n) and g2 (G,) -> (M, G, n)."""
    M, n = T.shape[1], T.shape[2]
    if out is None:
        out = np.empty((M, g2.size, n))
    np.multiply(T[1][:, None, :], g2[None, :, None], out=out)
    out += T[2][:, None, :] * (g2 * g2)[None, :, None]
    out += T[0][:, None, :]
    return out


def expected_counts(templates, g_X):
    """Expected counts ``R(g, m) = T0 + g^2 T1(m) + g^4 T2(m)`` over a whole (m_X, g_X) grid.

    Parameters
    ----------
    templates : xarray.Dataset, xarray.DataArray or array_like
        Forward-model templates: a dataset with ``T(power, m_X, bin)``, the ``T`` DataArray
        itself, or an array of shape (3, m_X, bin).
    g_X : float or array_like
        Couplings (>= 0), 1-D.

    Returns
    -------
    xarray.DataArray or numpy.ndarray
        Counts [events] with dims (m_X, g_X, bin): a DataArray (with the templates' m_X and bin
        coordinates) for xarray input, an ndarray otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.array([[[10.0, 5.0]], [[-2.0, 0.0]], [[1.0, 1.0]]])  # (power, m_X=1, bin=2)
    >>> expected_counts(T, [0.0, 1.0, 2.0])[0].tolist()
    [[10.0, 5.0], [9.0, 6.0], [18.0, 21.0]]
    """
    T = _template_array(templates)
    g = _check_g(g_X, strict=False)
    R = _grid_counts(T, g * g)
    if not isinstance(templates, (xr.Dataset, xr.DataArray)):
        return R
    src = templates["T"] if isinstance(templates, xr.Dataset) else templates
    coords = {k: c for k, c in src.coords.items() if set(c.dims) <= {"m_X", "bin"}}
    coords["g_X"] = ("g_X", g, _G_ATTRS)
    return xr.DataArray(
        R,
        dims=("m_X", "g_X", "bin"),
        coords=coords,
        name="R",
        attrs={"units": "events", "long_name": "expected counts T0 + g_X^2 T1 + g_X^4 T2"},
    )


_G_ATTRS = {"units": "1", "long_name": "mediator coupling g_X"}


def _check_templates(templates):
    """Validate a templates dataset; return (T, R_SM, m_X)."""
    if not isinstance(templates, xr.Dataset):
        raise InvalidConfig(
            f"must be an xarray.Dataset with T(power, m_X, bin) and R_SM(bin) (the forward "
            f"model's templates); got {type(templates).__name__}",
            key="templates",
        )
    T = _template_array(templates)
    if "R_SM" not in templates:
        raise InvalidConfig("templates dataset has no variable 'R_SM(bin)'", key="templates")
    r_sm = _check_counts(templates["R_SM"].values, "templates.R_SM", n_bins=T.shape[2])
    if r_sm.ndim != 1:
        raise InvalidConfig("R_SM must have dims (bin,)", key="templates.R_SM")
    m = np.asarray(templates["m_X"].values, dtype=float)
    if m.ndim != 1 or np.any(~np.isfinite(m)) or np.any(m <= 0) or np.any(np.diff(m) <= 0):
        raise InvalidConfig(
            "coordinate m_X must be finite, > 0 and strictly increasing [MeV]",
            key="templates.m_X",
        )
    tol = _SM_RTOL * np.abs(r_sm) + 1e-300
    if np.any(np.abs(T[0] - r_sm) > tol):
        bad = np.argwhere(np.abs(T[0] - r_sm) > tol)[0]
        raise InvalidConfig(
            f"T.sel(power=0) must equal R_SM for every mass (the SM part does not depend on "
            f"m_X); they differ at m_X = {m[bad[0]]} MeV, bin {bad[1]}",
            key="templates.T",
        )
    _check_nonnegative_prediction(T, m)
    return T, r_sm, m


def _check_nonnegative_prediction(T, m):
    """Raise if T0 + x T1 + x^2 T2 < 0 for some x = g^2 >= 0 beyond rounding."""
    T0, T1, T2 = T
    scale = np.abs(T0) + 1e-300
    if np.any(T2 < -_NEGATIVE_RTOL * (np.abs(T1) + scale)):
        bad = np.argwhere(T2 < -_NEGATIVE_RTOL * (np.abs(T1) + scale))[0]
        raise UnphysicalInput(
            f"T.sel(power=2) is negative at m_X = {m[bad[0]]} MeV, bin {bad[1]}: the g^4 term "
            "is a squared amplitude and must be >= 0; check the forward model",
            key="templates.T",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        x_star = np.where((T1 < 0) & (T2 > 0), -T1 / (2.0 * np.where(T2 > 0, T2, 1.0)), 0.0)
    r_min = T0 + x_star * (T1 + x_star * T2)
    r_min = np.where((T1 < 0) & (T2 <= 0), -np.inf, r_min)  # linear and decreasing in g^2
    bad_mask = r_min < -_NEGATIVE_RTOL * scale
    if np.any(bad_mask):
        i, j = np.argwhere(bad_mask)[0]
        where = f"g_X = {math.sqrt(x_star[i, j]):.4g}" if np.isfinite(r_min[i, j]) else "large g_X"
        raise UnphysicalInput(
            f"the prediction T0 + g^2 T1 + g^4 T2 becomes negative ({r_min[i, j]:.4g} events at "
            f"{where}, m_X = {m[i]} MeV, bin {j}): the interference term T1 is too large for "
            "T0 and T2 (it must satisfy T1^2 <= 4 T0 T2); check the forward model",
            key="templates.T",
        )


# --------------------------------------------------------------------------------------------
# the scan
# --------------------------------------------------------------------------------------------
def _check_min_expected(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidConfig(f"must be a number of events; got {value!r}",
                            key="min_expected") from None
    if not (math.isfinite(value) and value >= 0):
        raise UnphysicalInput(
            f"must be a finite number of events >= 0 (default {DEFAULT_MIN_EXPECTED:g}); "
            f"got {value!r}",
            key="min_expected",
        )
    return value


def _check_data(data, r_sm, sigma_bg):
    if data is None:
        return r_sm, "asimov_sm"
    if isinstance(data, xr.DataArray):
        if data.dims != ("bin",):
            raise InvalidConfig(f"must have dims ('bin',); got {data.dims}", key="data")
        data = data.values
    arr = _check_data_counts(data, r_sm, sigma_bg)
    if arr.ndim != 1:
        raise InvalidConfig(
            f"must be one count per bin, shape ({r_sm.size},); got {arr.shape}", key="data"
        )
    return arr, "user"


def scan(
    templates: xr.Dataset,
    g_X,
    *,
    data=None,
    statistic: str = "eq26",
    sigma_sys: float = 0.1,
    sigma_bg: float = 0.1,
    cl: float = 0.9,
    ndof: int = 2,
    profiler: str = "analytic",
    min_expected: float = DEFAULT_MIN_EXPECTED,
    reference: str = "global",
    progress: bool = False,
) -> xr.Dataset:
    """Profile the nuisance over a (m_X, g_X) grid and return Delta statistic surfaces.

    Parameters
    ----------
    templates : xarray.Dataset
        Forward-model templates (see the module docstring); the scan uses every ``m_X``.
    g_X : array_like
        Coupling grid: 1-D, > 0, strictly increasing (log-spaced is typical). The SM point
        ``g_X = 0`` is always evaluated in addition.
    data : array_like or xarray.DataArray, shape (bin,), optional
        Observed counts with the known background subtracted, ``D = n - R_bg``
        (``R_bg = sigma_bg R_SM``); ``D`` may be negative where ``n < R_bg`` but ``D + R_bg``
        must be >= 0. Default ``None``: the Asimov data set ``R_SM``.
    statistic : {"eq26", "poisson"}, optional
        ``"eq26"`` (default): the paper's chi2; ``"poisson"``: its Poisson counterpart
        (:func:`~nuinfer.likelihood.costs.poisson_twice_nll`).
    sigma_sys : float, optional
        Constraint width of the normalisation nuisance. Default 0.1.
    sigma_bg : float, optional
        Background as a fraction of the SM rate. Default 0.1.
    cl : float, optional
        Confidence level for the recorded threshold. Default 0.9.
    ndof : {1, 2}, optional
        2 (default): joint (m_X, g_X) region (``scan_mode="joint_2d"``); 1: raster scan in
        g_X at fixed m_X (``scan_mode="raster_1d"``).
    profiler : {"analytic", "minuit"}, optional
        ``"analytic"`` (default): closed form for Eq. (26), vectorised Newton for Poisson;
        ``"minuit"``: one Minuit fit per point (slow reference).
    min_expected : float, optional
        Bins with ``R_SM <= min_expected`` events are dropped and recorded in the attrs
        ``dropped_bins``/``drop_rule``. Default :data:`DEFAULT_MIN_EXPECTED` = 1e-9 (numerically
        empty bins only). Larger values (e.g. 1) restrict Eq. (26) to bins where a Gaussian
        approximation is sensible.
    reference : {"global", "per_mass"}, optional
        Minimum the Delta is taken from: ``"global"`` (default) -- over the whole grid and the SM
        point; ``"per_mass"`` -- over g_X at each mass and the SM point (the textbook raster
        choice). Both coincide on SM Asimov data, where the minimum is 0 at g_X = 0.
    progress : bool, optional
        Print a one-line progress indicator on stderr. Default False.

    Returns
    -------
    xarray.Dataset
        Dims (m_X, g_X) [and bin]: ``delta_chi2`` + ``chi2`` (eq26) or ``delta_twice_nll`` +
        ``twice_nll`` (poisson), ``a_hat``, ``converged`` (int8), and per bin
        ``observed_counts``, ``R_SM``, ``bin_used``. Attrs record the statistic and its
        variable name (``statistic_variable``), ``cl``, ``ndof``, ``threshold``,
        ``scan_mode``, ``sidedness``, ``sigma_sys``, ``sigma_bg``, ``profiler``,
        ``dropped_bins`` (JSON list), ``drop_rule``, the minimum and best-fit point
        (``best_fit_m_X_MeV = best_fit_g_X = 0`` when the SM is the best fit), plus the
        templates' attrs.  Every attribute is finite (no NaN reaches a NetCDF file).

    Raises
    ------
    InvalidConfig, UnphysicalInput
        Bad arguments or templates (the message names the argument and the fix).
    EmptyWindow
        Every bin is dropped.
    """
    statistic = _check_statistic(statistic)
    if profiler not in PROFILERS:
        raise InvalidConfig(
            f"unknown profiler {profiler!r}; use 'analytic' (closed form / Newton) or 'minuit'",
            key="profiler",
        )
    if reference not in ("global", "per_mass"):
        raise InvalidConfig(f"must be 'global' or 'per_mass'; got {reference!r}", key="reference")
    cl, ndof = _check_cl(cl), _check_ndof(ndof)
    sigma_sys = _check_sigma(sigma_sys, "sigma_sys", allow_inf=True)
    sigma_bg = _check_sigma(sigma_bg, "sigma_bg", allow_inf=False)
    min_expected = _check_min_expected(min_expected)
    g = _check_g(g_X, strict=True)
    T, r_sm, m = _check_templates(templates)
    D, data_source = _check_data(data, r_sm, sigma_bg)

    used = r_sm > min_expected
    dropped = np.flatnonzero(~used)
    if not np.any(used):
        raise EmptyWindow(
            f"every bin has R_SM <= min_expected = {min_expected:g} events; lower min_expected "
            "or widen the energy window / exposure",
            key="min_expected",
        )
    Tu, Ru, Du = T[:, :, used], r_sm[used], D[used]
    M, G, nu = m.size, g.size, int(used.sum())
    stat_name = STATISTICS[statistic]
    method = "minuit" if profiler == "minuit" else (
        "closed_form" if statistic == "eq26" else "newton"
    )
    log.debug("scan %s/%s: %d m_X x %d g_X x %d bins (%d dropped)",
              statistic, method, M, G, nu, dropped.size)

    minimum = np.empty((M, G))
    a_hat = np.empty((M, G))
    conv = np.empty((M, G), dtype=bool)
    g2 = g * g

    if method == "minuit":
        chunk = 1
    else:
        per_row = G * nu * 8 * _TEMPORARIES[statistic]
        chunk = max(1, min(M, _MAX_CHUNK_BYTES // per_row))
    bar = Progress(M, f"[nuinfer] scan {stat_name}", unit=" m_X", enabled=bool(progress))

    if method == "closed_form":
        inv_sigma = 1.0 / np.sqrt(eq26_variance(Ru, sigma_bg))
        Ts = Tu * inv_sigma  # scaled templates: the grid of v = R/sigma is built directly
        d = Du * inv_sigma
        sm_value = float(_profile_eq26_scaled(Ru * inv_sigma, d, sigma_sys)[0])
    elif method == "newton":
        B = background_counts(Ru, sigma_bg)
        b_sm, _ = _newton_poisson(Ru[None, :], Du, B, sigma_sys, rtol=1e-12, max_iter=200)
        sm_value = float(_poisson_kernel(b_sm, Ru[None, :], Du, B, sigma_sys)[0])
    else:
        sm_value = float(profile_minuit(Ru, Ru, data=Du, statistic=statistic,
                                        sigma_sys=sigma_sys, sigma_bg=sigma_bg).minimum)
    try:
        for start in range(0, M, chunk):
            sl = slice(start, min(start + chunk, M))
            if method == "closed_form":
                val, b = _profile_eq26_templates(Ts[:, sl], g2, d, sigma_sys)
                minimum[sl], a_hat[sl], conv[sl] = val, b - 1.0, np.isfinite(val)
            elif method == "newton":
                R = _grid_counts(Tu[:, sl], g2)
                np.maximum(R, 0.0, out=R)  # rounding only: negatives beyond it were rejected
                shape = R.shape[:2]
                R = R.reshape(-1, nu)
                b, ok = _newton_poisson(R, Du, B, sigma_sys, rtol=1e-10, max_iter=100)
                val = _poisson_kernel(b, R, Du, B, sigma_sys)
                minimum[sl] = val.reshape(shape)
                a_hat[sl], conv[sl] = (b - 1.0).reshape(shape), ok.reshape(shape)
            else:
                R = np.maximum(_grid_counts(Tu[:, sl], g2), 0.0)
                res = profile_minuit(R, Ru, data=Du, statistic=statistic,
                                     sigma_sys=sigma_sys, sigma_bg=sigma_bg)
                minimum[sl], a_hat[sl], conv[sl] = res.minimum, res["a"], res.converged
            bar.update(sl.stop - sl.start)
    finally:
        bar.close()

    # A point whose profile failed (NaN: e.g. overflow at extreme couplings) is flagged
    # (converged = 0, NaN statistic, attr n_failed) and the scan goes on; only a failed SM point
    # (the reference of every Delta) or a grid where every point failed is an error.
    failed = np.isnan(minimum)
    conv &= ~failed
    if math.isnan(sm_value) or failed.all():
        bad = np.argwhere(failed)
        where = "g_X = 0" if math.isnan(sm_value) else f"every grid point ({len(bad)})"
        raise NumericalError(
            f"the profiled {stat_name} is NaN at {where}; "
            "check the templates and data for extreme values"
        )
    if failed.any():
        bad = np.argwhere(failed)
        log.warning("scan: the profiled %s is NaN at %d grid points (first: m_X = %g MeV, "
                    "g_X = %g); flagged converged = 0", stat_name, len(bad), m[bad[0][0]],
                    g[bad[0][1]])
    finite_min = np.where(failed, np.inf, minimum)

    # Delta with respect to the minimum over the grid and the SM point g_X = 0
    i_best, j_best = np.unravel_index(np.argmin(finite_min), minimum.shape)
    grid_min = float(minimum[i_best, j_best])
    best_is_sm = sm_value <= grid_min
    global_min = min(grid_min, sm_value)
    if reference == "global":
        delta = minimum - global_min
    else:
        delta = minimum - np.minimum(finite_min.min(axis=1, keepdims=True), sm_value)

    thr = delta_chi2_threshold(cl, ndof)
    delta_name = f"delta_{stat_name}"
    scale_txt = "chi2 of Eq. (26)" if statistic == "eq26" else "Poisson -2 ln(L/L_saturated)"
    ref_txt = "the grid and g_X = 0" if reference == "global" else "g_X (and g_X = 0) per m_X"
    grid_dims = ("m_X", "g_X")
    attrs_1 = {"units": "1"}
    data_vars = {
        delta_name: (grid_dims, delta, {
            **attrs_1, "long_name": f"{scale_txt} minus its minimum over {ref_txt}"}),
        stat_name: (grid_dims, minimum, {
            **attrs_1, "long_name": f"{scale_txt}, minimised over the nuisance a"}),
        "a_hat": (grid_dims, a_hat, {
            **attrs_1, "long_name": "profiled normalisation nuisance a (prediction x (1 + a))"}),
        "converged": (grid_dims, conv.astype(np.int8), {
            **attrs_1, "long_name": "profile converged (1) or not (0)"}),
        "observed_counts": (("bin",), D, {
            "units": "events",
            "long_name": "counts used as data" + (" (Asimov: R_SM)" if data is None else "")}),
        "R_SM": (("bin",), r_sm, {
            "units": "events", "long_name": "SM expected counts", **_attrs(templates["R_SM"])}),
        "bin_used": (("bin",), used.astype(np.int8), {
            **attrs_1, "long_name": f"bin used (1) or dropped (0): R_SM > {min_expected:g}"}),
    }
    coords = {
        "m_X": ("m_X", m, {"units": "MeV", "long_name": "mediator mass m_X",
                          **_attrs(templates["m_X"])}),
        "g_X": ("g_X", g, dict(_G_ATTRS)),
    }
    for name, c in templates.coords.items():
        if c.dims == ("bin",):
            coords[name] = ("bin", c.values, {"long_name": str(name), **_attrs(c)})
    if "bin" not in coords:
        coords["bin"] = ("bin", np.arange(r_sm.size), {"units": "1", "long_name": "bin index"})

    attrs = {k: v for k, v in templates.attrs.items()}
    attrs.update(
        calibration="asymptotic",
        calibration_rule=(f"threshold chi2.ppf({cl}, {ndof}) (Wilks); toy-calibrated limits: "
                          "nuinfer.tasks.calibrated / nuinfer.tasks.calibration"),
        statistic=statistic,
        statistic_variable=delta_name,
        statistic_scale=stat_name,
        cl=cl,
        ndof=ndof,
        threshold=thr,
        threshold_rule=f"scipy.stats.chi2.ppf({cl}, {ndof})",
        scan_mode="joint_2d" if ndof == 2 else "raster_1d",
        sidedness="two_sided",
        delta_reference=reference,
        sigma_sys=sigma_sys,
        sigma_bg=sigma_bg,
        profiler=profiler,
        profile_method=method,
        data_source=data_source,
        min_expected=min_expected,
        dropped_bins=json.dumps([int(i) for i in dropped]),
        drop_rule=(f"bins with R_SM <= min_expected = {min_expected:g} events are dropped "
                   "(sigma_i -> 0 makes Eq. (26) meaningless there)"),
        dropped_sm_counts=float(r_sm[~used].sum()),
        dropped_observed_counts=float(D[~used].sum()),
        n_bins_used=nu,
        statistic_min=global_min,
        statistic_sm=sm_value,
        best_fit_is_sm=int(best_is_sm),
        # m_X is undefined at the SM point; 0.0 (not NaN: no NaN may reach a result file)
        best_fit_m_X_MeV=0.0 if best_is_sm else float(m[i_best]),
        best_fit_g_X=0.0 if best_is_sm else float(g[j_best]),
        n_not_converged=int((~conv).sum()),
        n_failed=int(failed.sum()),
        converged_rule=("closed form (eq26): exact, converged = finite" if method == "closed_form"
                        else "Newton (poisson): step below rtol inside a kept bracket"
                        if method == "newton" else "MIGRAD valid minimum"),
    )
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _attrs(obj) -> dict:
    return dict(getattr(obj, "attrs", {}))

"""Excluded regions, contour lines and per-mass limits from a Delta-statistic surface.

A point (m_X, g_X) is excluded when ``Delta >= threshold`` (the scan's ``threshold`` attr,
``chi2.ppf(cl, ndof)``).  Everything here is derived from the *full* surface, never from one
root per mass: vector-type mediators interfere destructively with the SM, so at fixed m_X the
excluded set in g_X can have holes ("islands", ``PHYSICS.md`` section 7).

* ``excluded`` -- the full mask on the grid;
* ``lines`` -- threshold contour lines traced by contourpy in (log10 m_X, log10 g_X), where the
  surface is smooth on a log grid, returned in (m_X [MeV], g_X);
* ``intervals`` -- for each mass, the excluded g_X intervals, with the crossings interpolated
  linearly in log10 g_X (the same interpolation contourpy uses along grid lines, so the two agree
  at every grid mass);
* ``g90`` -- the lowest excluded g_X per mass (the usual exclusion curve), NaN with status
  ``none_excluded`` when nothing is excluded in the grid.  The name follows the paper's 90% CL;
  the level actually used is the scan's ``cl`` (recorded in attrs and in ``long_name``).

:func:`contour` returns a typed :class:`ContourResult`; :func:`exclusion` returns the same as one
NetCDF-ready ``xr.Dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import contourpy
import numpy as np
import xarray as xr

from nuinfer.exceptions import InvalidConfig, NumericalError

__all__ = ["G90_STATUS", "ContourResult", "contour", "excluded_intervals", "exclusion"]

#: Meaning of the per-mass ``g90_status`` codes.
G90_STATUS = {
    0: "crossing",  # g90 interpolated between an allowed and an excluded grid point
    1: "none_excluded",  # nothing excluded at this mass within the grid: g90 = NaN
    2: "excluded_at_grid_min",  # excluded already at the smallest g_X: g90 = min(g_X) is
    #                             only an upper bound on the true limit (extend the grid down)
}


def _crossing(lg0, lg1, d0, d1, threshold):
    """log10 g where the linear interpolation of Delta between two grid points hits threshold."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (threshold - d0) / (d1 - d0)
    t = float(np.clip(t, 0.0, 1.0)) if np.isfinite(t) else 0.5
    return lg0 + t * (lg1 - lg0)


def excluded_intervals(g_X, delta, threshold: float) -> np.ndarray:
    """Excluded intervals in g_X at one mass, crossings interpolated in log10 g_X.

    Parameters
    ----------
    g_X : array_like, shape (G,)
        Coupling grid, > 0 and increasing.
    delta : array_like, shape (G,)
        Delta statistic along the grid (NaN not allowed; +inf counts as excluded).
    threshold : float
        Excluded where ``delta >= threshold``.

    Returns
    -------
    numpy.ndarray, shape (k, 2)
        Rows ``[g_lo, g_hi]`` in increasing order, one per excluded interval. Intervals that
        reach an end of the grid are cut at ``g_X[0]`` or ``g_X[-1]``.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.logspace(0, 4, 5)  # 1, 10, ..., 1e4
    >>> excluded_intervals(g, [0.0, 10.0, 0.0, 5.0, 10.0], 5.0).round(6).tolist()
    [[3.162278, 31.622777], [1000.0, 10000.0]]
    """
    g = np.asarray(g_X, dtype=float)
    d = np.asarray(delta, dtype=float)
    if g.ndim != 1 or d.shape != g.shape:
        raise InvalidConfig(f"delta must have the shape of g_X {g.shape}; got {d.shape}",
                            key="delta")
    if np.any(np.isnan(d)):
        raise NumericalError("the Delta surface contains NaN; the scan did not produce a "
                             "valid statistic there (see its 'converged' variable)")
    ex = d >= threshold
    if not ex.any():
        return np.empty((0, 2))
    lg = np.log10(g)
    edges = np.diff(ex.astype(np.int8))
    starts = np.flatnonzero(edges == 1) + 1  # first excluded index of each run
    ends = np.flatnonzero(edges == -1)  # last excluded index of each run
    if ex[0]:
        starts = np.r_[0, starts]
    if ex[-1]:
        ends = np.r_[ends, g.size - 1]
    out = np.empty((starts.size, 2))
    for k, (s, e) in enumerate(zip(starts, ends)):
        lo = lg[0] if s == 0 else _crossing(lg[s - 1], lg[s], d[s - 1], d[s], threshold)
        hi = lg[-1] if e == g.size - 1 else _crossing(lg[e], lg[e + 1], d[e], d[e + 1], threshold)
        out[k] = lo, hi
    out = 10.0**out
    # exact grid ends (10**log10(g) may differ from g in the last bit)
    out[starts == 0, 0] = g[0]
    out[ends == g.size - 1, 1] = g[-1]
    return out


@dataclass(frozen=True)
class ContourResult:
    """Exclusion derived from a scan (see :func:`contour`).

    Attributes
    ----------
    excluded : xarray.DataArray of bool, dims (m_X, g_X)
        ``Delta >= threshold``.
    lines : tuple of numpy.ndarray
        Threshold contour lines, each of shape (k, 2) with columns (m_X [MeV], g_X); a closed
        line repeats its first vertex at the end.
    intervals : tuple of numpy.ndarray
        One (k, 2) array of excluded ``[g_lo, g_hi]`` intervals per mass.
    g90 : xarray.DataArray, dims (m_X,)
        Lowest excluded g_X per mass at the scan's CL (NaN where nothing is excluded).
    g90_status : xarray.DataArray of int8, dims (m_X,)
        Codes of :data:`G90_STATUS`.
    threshold, cl : float
        Threshold on the Delta statistic and its confidence level.
    ndof : int
        Degrees of freedom of the threshold.
    variable : str
        Name of the Delta variable used (``delta_chi2`` or ``delta_twice_nll``).
    attrs : dict
        Scan attrs carried over (str / numbers).
    """

    excluded: xr.DataArray
    lines: tuple
    intervals: tuple
    g90: xr.DataArray
    g90_status: xr.DataArray
    threshold: float
    cl: float
    ndof: int
    variable: str
    attrs: dict = field(default_factory=dict)

    def to_dataset(self) -> xr.Dataset:
        """Everything as one NetCDF-ready dataset (ragged parts padded / flattened).

        Returns
        -------
        xarray.Dataset
            ``excluded`` (int8; m_X, g_X), ``g90`` and ``g90_status`` (m_X),
            ``n_intervals`` (m_X), ``interval_lo``/``interval_hi`` (m_X, interval; NaN
            padded), and the lines as vertices ``contour_m_X``, ``contour_g_X``,
            ``contour_line`` (vertex; line index of each vertex).
        """
        m = self.g90["m_X"]
        k_max = max((len(iv) for iv in self.intervals), default=0)
        lo = np.full((m.size, k_max), np.nan)
        hi = np.full((m.size, k_max), np.nan)
        for i, iv in enumerate(self.intervals):
            lo[i, : len(iv)] = iv[:, 0]
            hi[i, : len(iv)] = iv[:, 1]
        verts = np.concatenate(self.lines) if self.lines else np.empty((0, 2))
        line_id = np.concatenate(
            [np.full(len(ln), i, dtype=np.int32) for i, ln in enumerate(self.lines)]
        ) if self.lines else np.empty(0, dtype=np.int32)
        rule = f"{self.variable} >= {self.threshold:.6g}"
        cl_txt = f"{100 * self.cl:g}% CL" if np.isfinite(self.cl) else rule
        ds = xr.Dataset(
            {
                "excluded": (self.excluded.dims, self.excluded.values.astype(np.int8), {
                    "units": "1", "long_name": f"excluded ({rule})"}),
                "g90": self.g90,
                "g90_status": self.g90_status,
                "n_intervals": (("m_X",), np.array([len(iv) for iv in self.intervals], np.int32),
                                {"units": "1", "long_name": "number of excluded g_X intervals"}),
                "interval_lo": (("m_X", "interval"), lo, {
                    "units": "1", "long_name": f"lower end of excluded g_X interval ({cl_txt})"}),
                "interval_hi": (("m_X", "interval"), hi, {
                    "units": "1", "long_name": f"upper end of excluded g_X interval ({cl_txt})"}),
                "contour_m_X": (("vertex",), verts[:, 0], {
                    "units": "MeV", "long_name": "m_X of threshold contour vertex"}),
                "contour_g_X": (("vertex",), verts[:, 1], {
                    "units": "1", "long_name": "g_X of threshold contour vertex"}),
                "contour_line": (("vertex",), line_id, {
                    "units": "1", "long_name": "index of the contour line of each vertex"}),
            },
            coords={"m_X": m, "g_X": self.excluded["g_X"]},
            attrs={
                **self.attrs,
                "threshold": self.threshold,
                "cl": self.cl,
                "ndof": self.ndof,
                "statistic_variable": self.variable,
                "contour_space": "log10(m_X / MeV), log10(g_X)",
                "interval_rule": ("crossings interpolated linearly in log10 g_X; intervals "
                                  "reaching an end of the grid are cut there"),
            },
        )
        return ds


def _surface(scan: xr.Dataset, variable: str | None) -> tuple[str, xr.DataArray]:
    if not isinstance(scan, xr.Dataset):
        raise InvalidConfig(f"must be the xarray.Dataset returned by scan(); got "
                            f"{type(scan).__name__}", key="scan")
    name = variable or scan.attrs.get("statistic_variable")
    if name is None:
        raise InvalidConfig("the dataset has no 'statistic_variable' attr; pass "
                            "variable='delta_chi2' (or the Delta variable's name)", key="variable")
    if name not in scan:
        raise InvalidConfig(f"no variable {name!r} in the scan; have {sorted(scan.data_vars)}",
                            key="variable")
    da = scan[name]
    if set(da.dims) != {"m_X", "g_X"}:
        raise InvalidConfig(f"{name} must have dims (m_X, g_X); got {da.dims}", key="variable")
    da = da.transpose("m_X", "g_X")
    for c in ("m_X", "g_X"):
        x = np.asarray(da[c].values, dtype=float)
        if np.any(~np.isfinite(x)) or np.any(x <= 0) or np.any(np.diff(x) <= 0):
            raise InvalidConfig(f"coordinate {c} must be finite, > 0 and strictly increasing "
                                "(contours are traced in log space)", key=f"scan.{c}")
    return name, da


def contour(scan: xr.Dataset, *, threshold: float | None = None,
            variable: str | None = None) -> ContourResult:
    """Excluded region, threshold contour lines and per-mass limits from a scan.

    Parameters
    ----------
    scan : xarray.Dataset
        Output of :func:`~nuinfer.infer.scan.scan` (or any dataset with a Delta variable on
        (m_X, g_X) and, unless given here, the attrs ``threshold`` and ``statistic_variable``).
    threshold : float, optional
        Threshold on Delta. Default: the scan's ``threshold`` attr.
    variable : str, optional
        Name of the Delta variable. Default: the scan's ``statistic_variable`` attr.

    Returns
    -------
    ContourResult
        With ``.to_dataset()`` for NetCDF output.

    Notes
    -----
    Contour lines are traced in (log10 m_X, log10 g_X) by contourpy (linear interpolation on
    grid edges); the per-mass intervals use the same interpolation along g_X, so interval ends
    coincide with the line vertices on the grid masses.  Excluded regions touching the edge of
    the grid are open there: lines end at the boundary and intervals are cut at it.
    """
    name, da = _surface(scan, variable)
    attrs = dict(scan.attrs)
    if threshold is None:
        if "threshold" not in attrs:
            raise InvalidConfig("the scan has no 'threshold' attr; pass threshold=... "
                                "(e.g. scipy.stats.chi2.ppf(0.9, 2))", key="threshold")
        threshold = attrs["threshold"]
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold <= 0:
        raise InvalidConfig(f"must be a finite positive Delta; got {threshold!r}", key="threshold")
    cl = float(attrs.get("cl", np.nan))
    ndof = int(attrs.get("ndof", -1))

    delta = np.asarray(da.values, dtype=float)
    if np.any(np.isnan(delta)):
        raise NumericalError(f"{name} contains NaN; rerun the scan (see its 'converged' "
                             "variable) before extracting contours")
    m = np.asarray(da["m_X"].values, dtype=float)
    g = np.asarray(da["g_X"].values, dtype=float)

    excluded = xr.DataArray(delta >= threshold, coords={"m_X": da["m_X"], "g_X": da["g_X"]},
                            dims=("m_X", "g_X"), name="excluded")
    intervals = tuple(excluded_intervals(g, row, threshold) for row in delta)
    g90_values = np.array([iv[0, 0] if len(iv) else np.nan for iv in intervals])
    status = np.array([1 if len(iv) == 0 else (2 if row[0] >= threshold else 0)
                       for iv, row in zip(intervals, delta)], dtype=np.int8)
    cl_txt = f"{100 * cl:g}% CL" if np.isfinite(cl) else f"{name} >= {threshold:.6g}"
    g90 = xr.DataArray(g90_values, coords={"m_X": da["m_X"]}, dims=("m_X",), name="g90",
                           attrs={"units": "1", "long_name": f"lowest excluded g_X ({cl_txt})"})
    g90_status = xr.DataArray(
        status, coords={"m_X": da["m_X"]}, dims=("m_X",), name="g90_status",
        attrs={"units": "1", "long_name": "status of g90",
               "flag_values": np.array(sorted(G90_STATUS), dtype=np.int8),
               "flag_meanings": " ".join(G90_STATUS[k] for k in sorted(G90_STATUS))})

    lines: tuple = ()
    if m.size >= 2 and g.size >= 2:
        z = delta.T.copy()  # contourpy wants z[y, x] = z[g, m]
        inf = np.isinf(z)
        if inf.any():
            finite_max = np.max(z[~inf], initial=threshold)
            z[inf] = 10.0 * max(finite_max, threshold)
        gen = contourpy.contour_generator(np.log10(m), np.log10(g), z, line_type="Separate")
        lines = tuple(10.0 ** np.asarray(ln, dtype=float) for ln in gen.lines(threshold))
    return ContourResult(excluded=excluded, lines=lines, intervals=intervals, g90=g90,
                         g90_status=g90_status, threshold=threshold, cl=cl, ndof=ndof,
                         variable=name, attrs=attrs)


def exclusion(scan: xr.Dataset, *, threshold: float | None = None,
              variable: str | None = None) -> xr.Dataset:
    """:func:`contour` as one dataset: ``contour(scan, ...).to_dataset()``.

    Parameters
    ----------
    scan : xarray.Dataset
        Output of :func:`~nuinfer.infer.scan.scan`.
    threshold : float, optional
        Threshold on Delta. Default: the scan's ``threshold`` attr.
    variable : str, optional
        Name of the Delta variable. Default: the scan's ``statistic_variable`` attr.

    Returns
    -------
    xarray.Dataset
        See :meth:`ContourResult.to_dataset` (``excluded``, ``g90``, ``g90_status``,
        intervals and contour vertices).
    """
    return contour(scan, threshold=threshold, variable=variable).to_dataset()

"""Xenon analyses of astrophysical neutrinos (the paper's family): load, observed data, one-model
scans, limits tables, spectra and contours (usable from Python and behind ``nuinfer spectrum`` and
``nuinfer contour``).  :mod:`nuinfer.tasks.paper` builds the paper's figures, systematics
comparisons and ``reproduce`` on these; the posterior (:mod:`.bayes`), the toy calibration
(:mod:`.calibrated`), the floor and the terrestrial fits use them too.

Each function takes an analysis (TOML path, mapping or :class:`~nuinfer.spec.xenon.Analysis`), runs the
forward model and inference, writes NetCDF (atomically, with provenance attributes) and figures,
and returns a small JSON-able summary whose keys carry their units (``g90_at_m_X_MeV``) and whose
numeric keys are in numeric order.  Heavy modules are imported inside the functions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from nuinfer.exceptions import InvalidConfig
from nuinfer.spec import xenon as _config
from nuinfer.spec.files import models_dir

#: masses at which limits are tabulated in summaries [MeV]
REFERENCE_MASSES_MEV = (0.01, 1.0, 100.0, 1000.0)
#: masses of the report's limits tables [MeV]
TABLE_MASSES_MEV = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
#: the paper's model order
MODEL_ORDER = ("S", "P", "V", "A", "T", "B-L", "Lmu-Ltau")


def _analysis(a, overrides=None) -> _config.Analysis:
    if isinstance(a, _config.Analysis):
        return a.replace(**overrides) if overrides else a
    return _config.load(a, overrides)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


def model_sorted(models) -> list:
    """Models in the paper's order (S, P, V, A, T, B-L, Lmu-Ltau), others after them."""
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(models, key=lambda m: (order.get(m, len(order)), str(m)))


def mass_keyed(values: dict) -> dict:
    """``{"<m>": v}`` with the mass keys in numeric order."""
    return {k: values[k] for k in sorted(values, key=float)}


# --------------------------------------------------------------------------- spectrum (Fig. 1)
def spectrum_dataset(ana: _config.Analysis, fm=None):
    """SM spectrum per source plus SM+X totals for every model of the analysis at its benchmark point."""
    from nuinfer.io import provenance_attrs
    fm = fm or ana.forward_model()
    sm = fm.sm_spectrum()
    g, m = ana.cfg["spectrum"]["g_X"], ana.cfg["spectrum"]["m_X_MeV"]
    models = ana.models
    tot = np.stack([fm.spectrum(ana.interaction(mo), g, m)["total"].values for mo in models])
    ds = sm.copy()
    ds["total_model"] = (("model", "bin"), tot,
                         {"units": "events", "long_name": "expected counts, SM + new physics at (g_X, m_X)"})
    ds = ds.assign_coords(model=("model", models, {"long_name": "interaction model"}))
    ds.attrs.update(g_X=float(g), m_X_MeV=float(m), model=",".join(models))
    ds.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
    return ds


def run_spectrum(analysis, out, *, plot: bool = True, quiet: bool = False):
    from nuinfer.io import write_netcdf
    from nuinfer.plotting import PROCESS_LABEL, plot_spectra, save
    ana = _analysis(analysis)
    _say(f"spectrum: {ana.name} ({ana.process}, models {', '.join(ana.models)})", quiet)
    ds = spectrum_dataset(ana)
    out = Path(out)
    write_netcdf(ds, out)
    png = None
    if plot:
        per = {}
        for mo in ana.models:
            one = ds[["total"]].copy()
            one["total"] = ("bin", ds["total_model"].sel(model=mo).values)
            per[mo] = one
        fig = plot_spectra(ds, per, title=f"{PROCESS_LABEL[ana.process]}: $g_X^2$ = {ds.attrs['g_X']**2:.0e}, "
                                          f"$m_X$ = {ds.attrs['m_X_MeV']:g} MeV")
        png = save(fig, out.with_suffix(".png"))
    _say(f"wrote {out}" + (f" and {png}" if png else ""), quiet)
    return ds, png


# --------------------------------------------------------------------------- contours (Figs. 2-4)
def observed_signal(ana: _config.Analysis, r_sm) -> np.ndarray | None:
    """Data for the costs from ``[statistics].data``: ``None`` (Asimov SM) or observed counts minus
    the expected background.

    A counts file holds what a detector observes: neutrino events plus background.  The costs compare
    the neutrino part ``D`` with ``(1 + a) R_X`` and treat the background ``R_bg = sigma_bg R_SM`` as known
    (Eq. 26 adds its variance; the Poisson statistic adds it to data and prediction), so
    ``D = n - sigma_bg R_SM``, which may be negative in bins where n < R_bg.
    """
    d = ana.cfg["statistics"]["data"]
    if d == "asimov":
        return None
    from nuinfer.likelihood.costs import background_counts
    r_sm = np.asarray(r_sm, float)
    from nuinfer.spec.schema import translated
    with translated(ana.family):
        n = _config.load_counts(ana._resolve(d), r_sm.size)
    return n - background_counts(r_sm, ana.cfg["statistics"]["sigma_bg"])


def scan_model(ana: _config.Analysis, model: str, *, fm=None, templates=None, progress: bool = False,
               return_templates: bool = False):
    """Templates and profile scan for one model of the analysis -> scan Dataset (m_X, g_X).

    ``templates`` (from an earlier call with the same forward model and mass grid) are reused:
    scenarios that change only the statistics need no new physics.  ``return_templates=True``
    returns ``(scan, templates)`` (e.g. for :func:`~nuinfer.tasks.contours.template_refiner`).
    """
    from nuinfer.tasks import scan
    st = ana.cfg["statistics"]
    if templates is None:
        fm = fm or ana.forward_model()
        templates = fm.templates(ana.interaction(model), ana.grid("m_X_MeV"))
    data = observed_signal(ana, templates["R_SM"].values)
    ds = scan(templates, ana.grid("g_X"), data=data, statistic=st["statistic"], sigma_sys=st["sigma_sys"],
              sigma_bg=st["sigma_bg"], cl=st["cl"], ndof=st["ndof"], profiler=st["profiler"],
              min_expected=st["min_expected"], progress=progress)
    return (ds, templates) if return_templates else ds


def refiner(templates, scan_ds):
    """:func:`~nuinfer.tasks.contours.template_refiner` for Gaussian/Poisson template scans, else None."""
    from nuinfer.tasks.contours import template_refiner
    try:
        return template_refiner(templates, scan_ds)
    except Exception:  # noqa: BLE001 - a statistic without a refiner: plot on the grid
        return None


def exclusion_dataset(results: dict, dim: str = "model"):
    """Per-label :class:`~nuinfer.tasks.contours.ContourResult` -> one dataset stacked along ``dim``.

    Per mass (``dim``, m_X): ``g90`` (0 where nothing is excluded), ``g90_status``, the flags,
    ``n_intervals`` and ``interval_start`` (index into the flat list).  Flat list of excluded
    g_X intervals of every label (dim ``interval``, with ``interval_<dim>_index``), and the region
    boundary vertices (dim ``vertex``; ``contour_line`` indexes the lines, dim ``line``, with
    ``line_<dim>_index``).  No NaN is written.
    """
    import xarray as xr
    labels = list(results)
    if not labels:
        raise InvalidConfig("no contour results to stack", key="results")
    # built from the results' plain columns in one Dataset (stacking their datasets with xr.concat
    # took 66 ms a call, 1.4 of the 15.4 s of a quick reproduce's own process under cProfile)
    parts = [results[k]._columns() for k in labels]
    cols = [p[0] for p in parts]
    coords = parts[0][1]
    for k, (_, c, _) in zip(labels, parts):
        for name in ("m_X", "g_X"):
            if not np.array_equal(np.asarray(c[name]), np.asarray(coords[name])):
                raise InvalidConfig(f"the {name} grid of {k!r} differs from that of {labels[0]!r}; "
                                    f"stack results of scans on one grid", key="results")
    first = cols[0]
    data = {v: ((dim, *first[v][0]), np.stack([c[v][1] for c in cols]), first[v][2])
            for v in ("excluded", "g90", "g90_status", "g90_upper_bound", "excluded_to_grid_top", "n_intervals")}
    offs_i = np.cumsum([0] + [c["interval_m_index"][1].size for c in cols])
    offs_l = np.cumsum([0] + [c["contour_line_closed"][1].size for c in cols])
    start = np.stack([c["interval_start"][1] + offs_i[k] for k, c in enumerate(cols)]).astype(np.int32)
    data["interval_start"] = ((dim, "m_X"), start, {"units": "1", "long_name": "index of the first interval of "
                                                    "this label and mass in the flat interval list"})
    flat = {v: first[v][0] for v in ("interval_m_index", "interval_m_X", "interval_g_lo", "interval_g_hi",
                                     "interval_lo_kind", "interval_hi_kind", "contour_m_X", "contour_g_X",
                                     "contour_line_closed")}
    for v, dims in flat.items():
        data[v] = (dims, np.concatenate([c[v][1] for c in cols]), first[v][2])
    data[f"interval_{dim}_index"] = ("interval", np.concatenate(
        [np.full(c["interval_m_index"][1].size, k, np.int32) for k, c in enumerate(cols)]),
        {"units": "1", "long_name": f"index along {dim} of the excluded interval"})
    data["contour_line"] = ("vertex", np.concatenate(
        [c["contour_line"][1] + offs_l[k] for k, c in enumerate(cols)]).astype(np.int32),
        {"units": "1", "long_name": "index of the boundary line of each vertex"})
    data[f"line_{dim}_index"] = ("line", np.concatenate(
        [np.full(c["contour_line_closed"][1].size, k, np.int32) for k, c in enumerate(cols)]),
        {"units": "1", "long_name": f"index along {dim} of the boundary line"})
    for _, _, at in data.values():  # CF flag_values as text: scalar attrs compare and round-trip simply
        for key, val in list(at.items()):
            if isinstance(val, np.ndarray):
                at[key] = " ".join(str(x) for x in np.ravel(val))
    return xr.Dataset(data, coords={**coords, dim: (dim, labels)})


def with_exclusion(stacked, results: dict, dim: str = "model"):
    """A stacked scan dataset plus g90 and the excluded intervals of every label (see above)."""
    return _merged(stacked, exclusion_dataset(results, dim), dim)


def with_limits(scan_ds, result=None):
    """One (m_X, g_X) scan dataset plus the g90 and the excluded intervals and boundary lines of
    its contour (the variables of :meth:`ContourResult.to_dataset`; ``result`` default: the plain
    grid contour of ``scan_ds``), for a result file holding a single surface."""
    from nuinfer.tasks.contours import contour
    return _merged(scan_ds, (result if result is not None else contour(scan_ds)).to_dataset())


def _merged(scan_ds, ex, dim: str | None = None):
    """``scan_ds`` with the variables of the exclusion dataset ``ex`` (which replace any of the same
    name), on the scan's coordinates; the scan's attrs."""
    keep = scan_ds.drop_vars([v for v in ex.data_vars if v in scan_ds.data_vars])
    return keep.merge(ex.drop_vars([c for c in ex.coords if c in keep.coords and c != dim]),
                      compat="override", combine_attrs="override")


def contour_results(scans: dict, refine: dict | None = None) -> dict:
    from nuinfer.tasks.contours import contour
    return {k: contour(s, refine=(refine or {}).get(k)) for k, s in scans.items()}


def g90_table(scan_ds, masses=REFERENCE_MASSES_MEV) -> dict:
    """Lowest excluded coupling at reference masses (log-interpolated in mass between grid points)."""
    from nuinfer.tasks import exclusion
    from nuinfer.tasks.contours import ContourResult
    if isinstance(scan_ds, ContourResult):
        g90, status = scan_ds.g90.fillna(0.0).values, scan_ds.g90_status.values
        m = scan_ds.g90["m_X"].values
    else:
        ex = scan_ds if ("g90" in scan_ds and "g90_status" in scan_ds and "delta_chi2" not in scan_ds
                         and "delta_twice_nll" not in scan_ds) else exclusion(scan_ds)
        g90, status, m = ex["g90"].values, ex["g90_status"].values, ex["m_X"].values
    ok = (status != 1) & (g90 > 0)  # status 1: nothing excluded (g90 = 0)
    log_g = np.log(np.where(ok, g90, 1.0)) + np.where(ok, 0.0, np.nan)
    out = {}
    for mm in masses:
        if mm < m[0] * (1 - 1e-9) or mm > m[-1] * (1 + 1e-9):
            out[f"{mm:g}"] = None
            continue
        v = np.interp(np.log(mm), np.log(m), log_g)
        out[f"{mm:g}"] = float(np.exp(v)) if np.isfinite(v) else None
    return out


def upper_bound_flags(ds, g90: dict) -> dict:
    """Per model: which reference masses of ``g90`` (and which grid masses) have a g90 equal to the
    smallest grid coupling, i.e. only an upper bound on the limit (``g90_upper_bound`` of a
    stacked scan with exclusion, :func:`with_exclusion`)."""
    flags = {}
    for mo in (str(m) for m in ds["model"].values):
        one = ds.sel(model=mo)
        ub = np.asarray(one["g90_upper_bound"].values, bool)
        m = np.asarray(one["m_X"].values, float)
        per = {}
        for key in g90.get(mo, {}):
            mm = float(key)
            if not m[0] * (1 - 1e-9) <= mm <= m[-1] * (1 + 1e-9):
                continue
            j = int(np.searchsorted(m, mm))
            per[key] = bool(any(ub[i] for i in (j - 1, j) if 0 <= i < m.size))
        flags[mo] = {"reference_masses": per, "grid_masses_MeV": [float(x) for x in m[ub]]}
    return flags


def g90_curve(res) -> dict:
    """``{"m_X_MeV": [...], "g90": [...]}`` of a ContourResult (None where nothing is excluded)."""
    m = np.asarray(res.g90["m_X"].values, float)
    g = np.asarray(res.g90.values, float)
    return {"m_X_MeV": [float(f"{x:.6g}") for x in m],
            "g90": [float(f"{x:.6g}") if np.isfinite(x) and x > 0 else None for x in g]}


def stack_scans(scans: dict, dim: str = "model"):
    """Scans stacked along ``dim`` (attributes they disagree on dropped).  Scans copied from another
    model's identical scan (``same_scan_as``, :mod:`nuinfer.tasks.xenonnt`) are listed in the
    attribute ``same_scans`` (JSON: label -> the model it copies), not taken for the whole stack."""
    import xarray as xr
    labels = list(scans)
    ds = xr.concat([scans[k] for k in labels], dim=dim, combine_attrs="drop_conflicts")
    ds = ds.assign_coords({dim: (dim, labels)})
    same = {k: scans[k].attrs["same_scan_as"] for k in labels if "same_scan_as" in scans[k].attrs}
    ds.attrs.pop("same_scan_as", None)
    if same:
        ds.attrs["same_scans"] = json.dumps(same)
    return ds


def data_label(ana: _config.Analysis) -> str:
    """What the limits are computed from, e.g. "Asimov SM data (projection), 1 t yr"."""
    d = ana.cfg["statistics"]["data"]
    what = "Asimov SM data (projection)" if d == "asimov" else f"observed counts {Path(str(d)).name}"
    return f"{what}, {ana.cfg['exposure_tonne_year']:g} t yr"


def calibration_note(scan_ds, data: str | None = None) -> str:
    """Legend heading naming the data set and the calibration of the threshold."""
    a = scan_ds.attrs
    var = r"\Delta(-2\ln L)" if "nll" in str(a.get("statistic_variable", "")) else r"\Delta\chi^2"
    cal = str(a.get("calibration", "asymptotic"))
    txt = (f"{100 * float(a.get('cl', 0.9)):g}% CL, {cal} (Wilks): ${var}$ = {float(a['threshold']):.2f}, "
           f"{int(a.get('ndof', 2))} dof")
    return f"{data}\n{txt}" if data else txt


def run_contour(analysis, out, *, overrides=None, plot: bool = True, quiet: bool = False, models=None,
                figures=None):
    """Scan every model of the analysis, write the stacked scan with g90 and the excluded intervals
    (NetCDF) and the contour figure.  ``figures``: a :class:`nuinfer.render.Renderer` that draws the
    figure beside the rest of the command (the file appears when it finishes); default: drawn here."""
    from nuinfer.io import provenance_attrs, write_netcdf
    ana = _analysis(analysis, overrides)
    t0 = time.perf_counter()
    fm = ana.forward_model()
    scans, tmpl = {}, {}
    use = list(models) if models else ana.models
    for mo in use:
        _say(f"contour: {ana.name}: scanning {mo} on {ana.cfg['scan']['m_X_MeV']['n']} x "
             f"{ana.cfg['scan']['g_X']['n']} points", quiet)
        scans[mo], tmpl[mo] = scan_model(ana, mo, fm=fm, progress=not quiet, return_templates=True)
    refine = {mo: refiner(tmpl[mo], scans[mo]) for mo in use}
    results = contour_results(scans, refine)
    out = Path(out)
    png = None
    if plot:  # first: a figure worker draws it while the file is written
        from nuinfer.render import Renderer
        r = figures if figures is not None else Renderer(parallel=False)
        png = r.submit(out.with_suffix(".png"), _contour_figure, results, ana.process, ana.name,
                       calibration_note(scans[use[0]], data_label(ana)))
    ds = with_exclusion(stack_scans(scans), results)
    ds.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
    ds.attrs.update(models=",".join(use), data_set=data_label(ana),
                    calibration=str(scans[use[0]].attrs.get("calibration", "asymptotic")))
    write_netcdf(ds, out)
    g90 = {mo: mass_keyed(g90_table(results[mo])) for mo in use}
    res = {
        "output": str(out),
        "plot": str(png) if png else None,
        "threshold": float(ds.attrs["threshold"]),
        "data_set": data_label(ana),
        "calibration": ds.attrs["calibration"],
        "g90_at_m_X_MeV": g90,
        "g90": g90,  # alias of g90_at_m_X_MeV kept for existing callers
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "g90_upper_bound": upper_bound_flags(ds, g90),
    }
    _say(f"wrote {out}" + (f" and {png}" if png else ""), quiet)
    return res


def _contour_figure(results, process, name, note):
    """The figure of :func:`run_contour` (a figure job: module level, picklable arguments)."""
    from nuinfer.plotting import PROCESS_LABEL, plot_contours
    return plot_contours(results, title=f"{PROCESS_LABEL[process]}: {name}", note=note)


def preset(name: str, overrides: dict | None = None) -> _config.Analysis:
    return _config.load(models_dir() / f"{name}.toml", overrides)

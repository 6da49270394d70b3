"""End-to-end workflows behind the CLI (usable from Python too).

Each function takes an analysis (TOML path, mapping or :class:`~nuinfer.config.Analysis`), runs the
forward model and inference, writes NetCDF (atomically, with provenance attributes) and figures,
and returns a small JSON-able summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from . import config as _config
from .io import provenance_attrs, write_netcdf

#: masses at which limits are tabulated in summaries and reports [MeV]
REFERENCE_MASSES_MEV = (0.01, 1.0, 100.0, 1000.0)


def _analysis(a, overrides=None) -> _config.Analysis:
    if isinstance(a, _config.Analysis):
        return a.replace(**overrides) if overrides else a
    return _config.load(a, overrides)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- spectrum (Fig. 1)
def spectrum_dataset(ana: _config.Analysis) -> xr.Dataset:
    """SM spectrum per source plus SM+X totals for every model of the analysis at its benchmark point."""
    fm = ana.forward_model()
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
    from .plotting import PROCESS_LABEL, plot_spectra, save
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
def _load_data(ana: _config.Analysis, nbins: int):
    d = ana.cfg["statistics"]["data"]
    if d == "asimov":
        return None
    arr = np.loadtxt(ana._resolve(d), ndmin=1) if not str(d).endswith(".nc") else xr.open_dataset(d)["counts"].values
    if arr.ndim == 2:
        arr = arr[:, -1]
    if arr.shape != (nbins,):
        from .exceptions import DataFileError
        raise DataFileError(f"observed counts need {nbins} values (one per bin), found {arr.shape[0]}",
                            key="statistics.data")
    return arr


def scan_model(ana: _config.Analysis, model: str, *, fm=None, templates=None, progress: bool = False):
    """Templates and profile scan for one model of the analysis -> scan Dataset (m_X, g_X)."""
    from .infer import scan
    fm = fm or ana.forward_model()
    st = ana.cfg["statistics"]
    if templates is None:
        templates = fm.templates(ana.interaction(model), ana.grid("m_X_MeV"))
    data = _load_data(ana, fm.binning.nbins)
    ds = scan(templates, ana.grid("g_X"), data=data, statistic=st["statistic"], sigma_sys=st["sigma_sys"],
              sigma_bg=st["sigma_bg"], cl=st["cl"], ndof=st["ndof"], profiler=st["profiler"],
              min_expected=st["min_expected"], progress=progress)
    return ds


def g90_table(scan_ds: xr.Dataset, masses=REFERENCE_MASSES_MEV) -> dict:
    """Lowest excluded coupling at reference masses (log-interpolated in mass between grid points)."""
    from .infer import exclusion
    ex = exclusion(scan_ds)
    g90 = ex["g90"]
    m = scan_ds["m_X"].values
    out = {}
    for mm in masses:
        if mm < m[0] * (1 - 1e-9) or mm > m[-1] * (1 + 1e-9):
            out[f"{mm:g}"] = None
            continue
        v = np.interp(np.log(mm), np.log(m), np.log(np.where(np.isfinite(g90.values), g90.values, np.nan)))
        out[f"{mm:g}"] = float(np.exp(v)) if np.isfinite(v) else None
    return out


def stack_scans(scans: dict, dim: str = "model") -> xr.Dataset:
    labels = list(scans)
    ds = xr.concat([scans[k] for k in labels], dim=dim, combine_attrs="drop_conflicts")
    ds = ds.assign_coords({dim: (dim, labels)})
    return ds


def run_contour(analysis, out, *, overrides=None, plot: bool = True, quiet: bool = False):
    from .plotting import PROCESS_LABEL, plot_contours, save
    ana = _analysis(analysis, overrides)
    t0 = time.perf_counter()
    fm = ana.forward_model()
    scans = {}
    for mo in ana.models:
        _say(f"contour: {ana.name}: scanning {mo} on {ana.cfg['scan']['m_X_MeV']['n']} x "
             f"{ana.cfg['scan']['g_X']['n']} points", quiet)
        scans[mo] = scan_model(ana, mo, fm=fm, progress=not quiet)
    ds = stack_scans(scans)
    ds.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
    ds.attrs["models"] = ",".join(ana.models)
    out = Path(out)
    write_netcdf(ds, out)
    png = None
    if plot:
        fig = plot_contours(scans, title=f"{PROCESS_LABEL[ana.process]}, {fm.exposure_tonne_year:g} t yr")
        png = save(fig, out.with_suffix(".png"))
    res = {
        "output": str(out),
        "plot": str(png) if png else None,
        "threshold": float(ds.attrs["threshold"]),
        "g90": {mo: g90_table(scans[mo]) for mo in ana.models},
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    _say(f"wrote {out}" + (f" and {png}" if png else ""), quiet)
    return res

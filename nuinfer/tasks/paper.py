"""The paper's workflows behind the CLI (usable from Python too): spectra (Fig. 1), contours
(Figs. 2-4), systematics comparisons and ``reproduce`` with its report (Markdown and HTML).

Each function takes an analysis (TOML path, mapping or :class:`~nuinfer.spec.xenon.Analysis`), runs the
forward model and inference, writes NetCDF (atomically, with provenance attributes) and figures,
and returns a small JSON-able summary whose keys carry their units (``g90_at_m_X_MeV``) and whose
numeric keys are in numeric order.

Heavy modules (xarray, matplotlib, the physics) are imported inside the functions that need them,
so importing this module is cheap.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nuinfer.spec import xenon as _config
from nuinfer.tasks.xenon import (
    TABLE_MASSES_MEV,
    MODEL_ORDER,
    _analysis,
    _say,
    model_sorted,
    mass_keyed,
    spectrum_dataset,
    scan_model,
    refiner,
    with_exclusion,
    contour_results,
    g90_table,
    g90_curve,
    stack_scans,
    data_label,
    calibration_note,
    models_dir,
    preset,
)

# --------------------------------------------------------------------------- systematics comparisons
#: short scenario names accepted by ``--vary`` and what they set
SCENARIO_KEYS = {
    "sigma_sys": "statistics.sigma_sys",
    "sigma_bg": "statistics.sigma_bg",
    "exposure": "exposure_tonne_year",
    "threshold": "binning.lo",
    "binding": "detector.binding",
    "statistic": "statistics.statistic",
    "ndof": "statistics.ndof",
    "bins": "binning.n",
    "flux": "flux.preset",
    "axial": "model.axial_form",
    "eves_norm": "model.eves_vector_norm",
    "quenching": None,  # special: lindhard k value, "adiabatic", "constant"
    "detector": None,  # special: "ideal" | "xenonnt"
}

#: what each scenario key means and its unit ("" = dimensionless or a name)
SCENARIO_INFO = {
    "sigma_sys": ("normalisation uncertainty sigma_sys (Gaussian width of the nuisance a)", "fraction of the rate"),
    "sigma_bg": ("background sigma_bg, as a fraction of the SM rate", "fraction of the SM rate"),
    "exposure": ("exposure", "t yr"),
    "threshold": ("analysis threshold (lower edge of the first bin)", "keVee"),
    "binding": ("EvES atomic binding steps (Eq. 25)", ""),
    "statistic": ("test statistic", ""),
    "ndof": ("degrees of freedom of the Wilks threshold", ""),
    "bins": ("number of energy bins", ""),
    "flux": ("flux normalisation preset", ""),
    "axial": ("axial form of Eq. 8", ""),
    "eves_norm": ("EvES vector normalisation of Eq. 13", ""),
    "quenching": ("quenching: Lindhard k, or the adiabatic Lindhard form", ""),
    "detector": ("detector response (ideal, or XENONnT efficiency + resolution)", ""),
}

#: how the ratio columns of a comparison are defined
RATIO_DEFINITION = ("ratio to baseline = g90(scenario) / g90(baseline) at the same m_X: > 1 means the "
                    "scenario's limit is weaker, < 1 stronger")


def scenario_label(key: str, value) -> str:
    """Human label with key, value and unit, e.g. ``exposure = 20 t yr``."""
    if key == "baseline":
        return "baseline (paper preset)"
    if isinstance(value, bool):
        v = "on" if value else "off"
    else:
        v = f"{value:g}" if isinstance(value, (int, float)) else str(value)
    if key == "quenching":
        return (f"quenching: Lindhard k = {v}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                else f"quenching: {v} Lindhard")
    if key in ("sigma_sys", "sigma_bg") and isinstance(value, (int, float)):
        return f"{key} = {v} ({100 * value:g}% of the {'rate' if key == 'sigma_sys' else 'SM rate'})"
    unit = SCENARIO_INFO.get(key, ("", ""))[1]
    return f"{key} = {v}" + (f" {unit}" if unit and key in ("exposure", "threshold") else "")


def _parse_value(s: str):
    t = s.strip()
    low = t.lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def scenario_overrides(key: str, value) -> dict:
    """Dotted-key overrides that realise one scenario value."""
    from nuinfer.exceptions import InvalidConfig
    if key == "quenching":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"detector.quenching": "lindhard", "detector.k": float(value)}
        if value in ("adiabatic", "lindhard_adiabatic"):
            return {"detector.quenching": "lindhard_adiabatic"}
        if value in ("lindhard",):
            return {"detector.quenching": "lindhard"}
        raise InvalidConfig(f"quenching scenario {value!r}: give a Lindhard k (e.g. 0.166) or 'adiabatic'",
                            key="--vary quenching")
    if key == "detector":
        if value == "ideal":
            return {"detector.efficiency": "ideal", "detector.resolution": "none"}
        if value == "xenonnt":
            return {"detector.efficiency": "xenonnt", "detector.resolution": "xenon"}
        raise InvalidConfig(f"detector scenario {value!r}: use 'ideal' or 'xenonnt'", key="--vary detector")
    from nuinfer.spec.schema import internal_key
    target = SCENARIO_KEYS.get(key)
    if target is None and "." in key:
        target = internal_key("xenon", key)  # an analysis-file key, e.g. nuisances.sigma_sys
    if target is None or ("." not in target and target not in _config.SCHEMA):
        raise InvalidConfig(f"unknown scenario key {key!r}; use one of {', '.join(SCENARIO_KEYS)} "
                            "or a dotted analysis-file key such as nuisances.sigma_sys", key="--vary")
    return {target: value}


def parse_vary(items) -> list[tuple[str, list]]:
    from nuinfer.exceptions import InvalidConfig
    out = []
    for it in items:
        if "=" not in it:
            raise InvalidConfig(f"{it!r}: write KEY=V1,V2,... (e.g. sigma_sys=0,0.1)", key="--vary")
        k, vals = it.split("=", 1)
        values = [_parse_value(v) for v in vals.split(",") if v.strip()]
        if not values:
            raise InvalidConfig(f"{it!r}: no values given", key="--vary")
        out.append((k.strip(), values))
    return out


def _scan_only(ds):
    keep = [v for v in ds.data_vars if set(ds[v].dims) <= {"m_X", "g_X"}]
    return ds[keep]


_PHYSICS_FREE = ("statistics", "name", "description", "posterior", "spectrum", "models")


def physics_key(ana: _config.Analysis) -> str:
    """What the forward model and templates depend on (everything but the statistics and labels)."""
    return json.dumps({k: v for k, v in ana.cfg.items() if k not in _PHYSICS_FREE}, sort_keys=True, default=str)


class TemplateCache:
    """Forward models and templates shared by analyses that differ only in their statistics."""

    def __init__(self):
        self.fms: dict = {}
        self.templates: dict = {}

    def forward_model(self, ana: _config.Analysis):
        k = json.dumps({kk: v for kk, v in json.loads(physics_key(ana)).items() if kk != "scan"}, sort_keys=True)
        if k not in self.fms:
            self.fms[k] = ana.forward_model()
        return self.fms[k]

    def scan(self, ana: _config.Analysis, model: str):
        """(scan, templates) of one model; templates computed once per physics and mass grid."""
        k = (physics_key(ana), model)
        if k not in self.templates:
            fm = self.forward_model(ana)
            self.templates[k] = fm.templates(ana.interaction(model), ana.grid("m_X_MeV"))
        return scan_model(ana, model, templates=self.templates[k], return_templates=True)


def _scan_with_templates(model: str, ana):
    """(scan, templates) of one scenario (a unit of work for the Dask engine)."""
    return scan_model(ana, model, return_templates=True)


def compare(analysis, vary, *, model: str | None = None, grid: int | None = None, quiet: bool = False,
            cache: TemplateCache | None = None, scheduler: str | None = None, n_workers: int | None = None):
    """Scan the baseline and every one-at-a-time scenario; returns (stacked Dataset, scans, table rows).

    Rows: ``scenario`` (``key=value``, the NetCDF coordinate), ``label`` (key, value and unit),
    ``key``, ``value``, ``unit``, ``g90_at_m_X_MeV`` and ``g90_ratio_to_baseline_at_m_X_MeV``
    (:data:`RATIO_DEFINITION`), mass keys in numeric order.  Scenarios changing only the statistics
    reuse the baseline's templates.  ``scheduler`` ("local", "local-threads", a Dask address) runs
    one task per scenario on the Dask engine (:func:`nuinfer.engine.map_tasks`); same numbers.
    """
    import xarray as xr
    from nuinfer.io import provenance_attrs
    ana = _analysis(analysis)
    if grid:
        ana = ana.replace(**{"scan.m_X_MeV.n": grid, "scan.g_X.n": grid})
    model = model or ana.models[0]
    cache = cache or TemplateCache()
    scenarios = {"baseline": ("baseline", None, ana)}
    for key, values in parse_vary(vary):
        for v in values:
            scenarios[f"{key}={v}"] = (key, v, ana.replace(**scenario_overrides(key, v)))
    scans, tmpl = {}, {}
    if scheduler in (None, "inprocess"):
        t0 = time.perf_counter()
        for i, (label, (_, _, a)) in enumerate(scenarios.items()):
            _say(f"compare [{i + 1}/{len(scenarios)}] {model}: {label} (elapsed {time.perf_counter() - t0:.1f} s)",
                 quiet)
            scans[label], tmpl[label] = cache.scan(a, model)
    else:
        import functools

        from nuinfer.engine import map_tasks
        _say(f"compare: {len(scenarios)} scenarios of {model} on the Dask engine ({scheduler})", quiet)
        out = map_tasks(functools.partial(_scan_with_templates, model), [a for _, _, a in scenarios.values()],
                        scheduler=scheduler, n_workers=n_workers, progress=not quiet)
        for label, (sc, tp) in zip(scenarios, out):
            scans[label], tmpl[label] = sc, tp
    var = scans["baseline"].attrs.get("statistic_variable", "delta_chi2")
    parts = []
    for label, s in scans.items():
        d = _scan_only(s)
        sv = s.attrs.get("statistic_variable", var)
        d = d.rename({sv: "delta"}) if sv in d else d
        for other in ("chi2", "twice_nll"):
            if other in d:
                d = d.rename({other: "statistic_min"})
        d["threshold"] = ((), float(s.attrs["threshold"]), {"units": "1", "long_name": "Delta threshold"})
        d["statistic"] = ((), str(s.attrs.get("statistic", "")))
        parts.append(d)
    stacked = xr.concat(parts, dim="scenario", combine_attrs="drop_conflicts")
    labels = [scenario_label(k, v) for k, v, _ in scenarios.values()]
    stacked = stacked.assign_coords(scenario=("scenario", list(scans), {"long_name": "scenario (key=value)"}),
                                    scenario_label=("scenario", labels, {"long_name": "scenario: key, value, unit"}))
    stacked["delta"].attrs.update(long_name="Delta of the scenario's statistic (chi2 scale)", units="1")
    results = contour_results(scans, {k: refiner(tmpl[k], scans[k]) for k in scans})
    stacked = with_exclusion(stacked, results, dim="scenario")
    rows = []
    base = g90_table(results["baseline"])
    for (label, (key, value, _)), text in zip(scenarios.items(), labels):
        g = g90_table(results[label])
        info = SCENARIO_INFO.get(key, ("", ""))
        rows.append({"scenario": label, "label": text, "key": key,
                     "value": None if key == "baseline" else value, "unit": info[1],
                     "g90_at_m_X_MeV": mass_keyed(g),
                     "g90_ratio_to_baseline_at_m_X_MeV": mass_keyed(
                         {k: (v / base[k] if v and base[k] else None) for k, v in g.items()})})
    stacked.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
    stacked.attrs.update(model=model, vary=json.dumps(list(vary)), data_set=data_label(ana),
                         ratio_definition=RATIO_DEFINITION)
    return stacked, results, rows


def table_columns(rows: list[dict]) -> tuple[list, list]:
    """(csv names, Markdown headers) of a comparison table: label, then g90 and ratio per mass."""
    masses = list(rows[0]["g90_at_m_X_MeV"])
    csv = ["scenario", "key", "value", "unit"] + [f"g90_at_{m}_MeV" for m in masses] + \
        [f"ratio_to_baseline_at_{m}_MeV" for m in masses]
    md = ["scenario (key = value unit)"] + [f"g90 at m_X = {m} MeV" for m in masses] + \
        [f"ratio at {m} MeV" for m in masses]
    return csv, md


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_table(rows: list[dict], stem: Path) -> tuple[Path, Path]:
    """Write comparison rows as CSV (one column per value) and Markdown (labelled, with definitions)."""
    from nuinfer.io import atomic_write_text
    masses = list(rows[0]["g90_at_m_X_MeV"])
    csv_cols, md_cols = table_columns(rows)
    csv_lines = [",".join(csv_cols)]
    md_rows = []
    for r in rows:
        g = [r["g90_at_m_X_MeV"][m] for m in masses]
        q = [r["g90_ratio_to_baseline_at_m_X_MeV"][m] for m in masses]
        csv_lines.append(",".join(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
                                   for v in [r["scenario"], r["key"], r["value"], r["unit"], *g, *q]]))
        md_rows.append([r["label"], *[_fmt(v) for v in g], *[_fmt(v) for v in q]])
    md = "| " + " | ".join(md_cols) + " |\n| " + " | ".join("---" for _ in md_cols) + " |\n"
    md += "".join("| " + " | ".join(x) + " |\n" for x in md_rows)
    md += f"\ng90: lowest excluded g_X (90% CL) at that m_X; {RATIO_DEFINITION}.\n"
    p1, p2 = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(p1, "\n".join(csv_lines) + "\n")
    atomic_write_text(p2, md)
    return p1, p2


def _comparison_figure(results: dict, rows: list, note: str, process: str, model: str):
    """The figure of :func:`run_compare` (a figure job)."""
    from nuinfer.plotting import PROCESS_LABEL
    return plot_comparison(results, rows, note=note, title=f"{PROCESS_LABEL[process]}, {model}: systematic assumptions")


def plot_comparison(results: dict, rows: list, *, title: str, note: str):
    """Scenario overlay: distinct (colour, dash) per scenario, the baseline black and on top."""
    from nuinfer.plotting import BASELINE_STYLE, SCENARIO_STYLES, legend_figure, plot_contours
    fig, (ax,) = legend_figure(legend_width=3.6)
    styles, labels = {}, {}
    for i, r in enumerate(rows):
        k = r["scenario"]
        styles[k] = dict(BASELINE_STYLE, fill=True) if k == "baseline" else dict(
            SCENARIO_STYLES[(i - 1) % len(SCENARIO_STYLES)], lw=1.3, zorder=3, fill=False)
        q = [abs(v - 1.0) for v in r["g90_ratio_to_baseline_at_m_X_MeV"].values() if v is not None]
        close = k != "baseline" and q and max(q) < 0.03
        labels[k] = r["label"] + (f" (within {100 * max(q):.1f}% of the baseline)" if close else "")
    plot_contours(results, ax=ax, styles=styles, labels=labels, title=title, note=note)
    return fig


def run_compare(analysis, vary, out, *, model=None, quiet=False, grid=None, plot=True, cache=None, scheduler=None,
                n_workers=None):
    from nuinfer.io import write_netcdf
    from nuinfer.render import draw
    ana = _analysis(analysis)
    stacked, results, rows = compare(ana, vary, model=model, grid=grid, quiet=quiet, cache=cache,
                                     scheduler=scheduler, n_workers=n_workers)
    out = Path(out)
    write_netcdf(stacked, out, beside=True)
    csv, md = write_table(rows, out.with_name(out.stem + "_g90"))
    png = None
    if plot:
        base = results["baseline"]
        note = (f"baseline: {stacked.attrs['data_set']}\n{100 * base.cl:g}% CL, asymptotic (Wilks), "
                f"{base.ndof} dof")
        png = draw(out.with_suffix(".png"), _comparison_figure, results, rows, note, ana.process,
                   stacked.attrs["model"])
    return {"output": str(out), "plot": str(png) if png else None, "table_csv": str(csv), "table_md": str(md),
            "scenarios": [r["scenario"] for r in rows], "ratio_definition": RATIO_DEFINITION, "g90": rows}

# --------------------------------------------------------------------------- reproduce the paper
DEFAULT_SYSTEMATICS = (
    "sigma_sys=0,0.2",
    "exposure=20,200",
    "threshold=1.0",
    "statistic=poisson",
    "binding=false",
)


def systematics_study(outdir: Path, *, grid: int | None = None, quiet: bool = False, plot: bool = True,
                      cache: TemplateCache | None = None, models=("V", "S")) -> dict:
    """Default study: sigma_sys, exposure, threshold, statistic, binding (EvES), quenching (CEvNS) for
    ``models`` (default V and S) in both processes."""
    cache = cache or TemplateCache()
    results = {}
    for proc in ("cevns", "eves"):
        for mo in models:
            vary = [v for v in DEFAULT_SYSTEMATICS if not (proc == "cevns" and v.startswith("binding"))]
            if proc == "cevns":
                vary.append("quenching=0.1735,adiabatic")
            ana = preset(f"fig3_{proc}")
            res = run_compare(ana, vary, outdir / f"systematics_{proc}_{mo}.nc", model=mo, quiet=quiet,
                              grid=grid, plot=plot, cache=cache)
            results[f"{proc}_{mo}"] = res
    return results


#: the steps of ``reproduce``, in the order they run
STEPS = ("fig1", "fig2", "fig3", "fig4", "systematics", "bayes", "current")
#: what each step makes
STEP_HELP = {
    "fig1": "Fig. 1 spectra",
    "fig2": "Fig. 2 S, P, V, A, T limits",
    "fig3": "Fig. 3 universal vector and scalar, CEvNS vs EvES",
    "fig4": "Fig. 4 B-L and Lmu-Ltau",
    "systematics": "systematic-assumption comparisons",
    "bayes": "emcee posterior, universal vector EvES",
    "current": "current data: XENONnT 8B and SR0 ER, COHERENT CsI limits over the projections",
}
#: grids per mode: template scans (m_X x g_X), systematics, real data (m_X x g_X), COHERENT CsI
#: (m_X x g_X; None: the preset's 41 x 81), emcee
MODES = {
    "full": {"grid": None, "systematics_grid": 100, "systematics_models": ("V", "S"), "real_grid": (40, 60),
             "real_models": MODEL_ORDER, "coherent_grid": None,
             "walkers": None, "steps": None},
    "quick": {"grid": 40, "systematics_grid": 16, "systematics_models": ("V",), "real_grid": (12, 16),
              "real_models": ("S", "V"), "coherent_grid": (21, 41),
              "walkers": 16, "steps": 300},
}
SECTIONS_FILE = "report_sections.json"
_PANEL_MODELS = {"fig2": ("S", "P", "V", "A", "T"), "fig3": ("V", "S"), "fig4": ("B-L", "Lmu-Ltau")}


def parse_steps(only) -> list:
    """``--only`` values (comma lists, repeatable) -> steps in run order; unknown names raise."""
    from nuinfer.exceptions import InvalidConfig
    if not only:
        return list(STEPS)
    if isinstance(only, str):
        only = [only]
    names = [n.strip() for item in only for n in str(item).split(",") if n.strip()]
    bad = [n for n in names if n not in STEPS]
    if bad or not names:
        raise InvalidConfig(f"unknown step(s) {', '.join(map(repr, bad)) or '(none given)'}; valid steps: "
                            f"{', '.join(STEPS)} (comma list or repeated --only)", key="--only")
    return [s for s in STEPS if s in names]


def _now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Run:
    """State shared by the steps of one ``reproduce`` call."""

    def __init__(self, outdir: Path, mode: str, quiet: bool):
        self.outdir, self.mode, self.quiet = outdir, mode, quiet
        self.cfg = MODES[mode]
        g = self.cfg["grid"]
        self.ov = {"scan.m_X_MeV.n": g, "scan.g_X.n": g} if g else None
        self.cache = TemplateCache()
        self.scans: dict = {}
        self.tmpl: dict = {}
        self.results: dict = {}
        self.files: list = []
        self.figures = None  # the Renderer of the run (set by reproduce)
        self.prefetch = None  # process computing the real-data scans beside the steps (reproduce)

    def ana(self, fig, proc):
        return preset(f"{fig}_{proc}", self.ov)

    def contour_scans(self, fig, proc):
        ana = self.ana(fig, proc)
        for mo in ana.models:
            if (proc, mo) not in self.scans:
                self.scans[(proc, mo)], self.tmpl[(proc, mo)] = self.cache.scan(ana, mo)
                self.results[(proc, mo)] = contour_results(
                    {mo: self.scans[(proc, mo)]}, {mo: refiner(self.tmpl[(proc, mo)], self.scans[(proc, mo)])})[mo]
        return ana


def _setup_section(run: _Run) -> dict:
    """The analysis set-up of the paper presets (windows, sources, SM counts, options, statistic)."""
    from nuinfer.tasks.model_scan import chi2_threshold
    out = {"processes": {}}
    for proc in ("cevns", "eves"):
        ana = run.ana("fig2", proc)
        c = ana.cfg
        fm = run.cache.forward_model(ana)
        sm = fm.sm_spectrum()
        counts = {str(s): float(v) for s, v in zip(sm["source"].values, sm["counts"].sum("bin").values)}
        same = {f: physics_key(run.ana(f, proc)) == physics_key(ana) for f in ("fig3", "fig4")}
        st = c["statistics"]
        det = c["detector"]
        out["processes"][proc] = {
            "preset": f"models/fig2_{proc}.toml (fig3, fig4 identical apart from the models: "
                      f"{'yes' if all(same.values()) else 'no: ' + str(same)})",
            "target": c["target"], "exposure_tonne_year": c["exposure_tonne_year"],
            "window_keVee": [c["binning"]["lo"], c["binning"]["hi"]], "bins": c["binning"]["n"],
            "bin_scale": c["binning"]["scale"], "sources": list(fm.sources), "flux_preset": c["flux"]["preset"],
            "sm_counts_per_source": counts, "sm_counts_total": float(sum(counts.values())),
            "quenching": (f"{det['quenching']}" + (f", k = {det['k']:g}" if det["quenching"].startswith("lindhard")
                                                    and "k" in det else "")) if proc == "cevns" else
                         "none (electron recoils are measured in keVee)",
            "binding": ("Eq. 25 steps with the Chen et al. 2017 energies" if det.get("binding", True) else "off")
                       if proc == "eves" else "not applicable (nuclear recoils)",
            "efficiency": det["efficiency"], "resolution": det["resolution"],
            "named_options": dict(c["model"]),
            "numerics": dict(c["numerics"]),
            "statistic": st["statistic"], "sigma_sys": st["sigma_sys"], "sigma_bg": st["sigma_bg"],
            "data": st["data"], "cl": st["cl"], "ndof": st["ndof"], "threshold": chi2_threshold(st["cl"], st["ndof"]),
            "profiler": st["profiler"], "calibration": "asymptotic (Wilks' theorem; no toys run)",
            "scan_grid": {k: dict(c["scan"][k]) for k in ("m_X_MeV", "g_X")},
        }
    return out


def _step_fig1(run: _Run) -> dict:
    from nuinfer.io import write_netcdf
    from nuinfer.render import draw
    sec = {"figure": "fig1.png", "benchmark": {}}
    panels = []
    for proc in ("cevns", "eves"):
        ana = preset(f"fig1_{proc}")
        ds = spectrum_dataset(ana, fm=run.cache.forward_model(ana))
        p = run.outdir / f"fig1_{proc}.nc"
        write_netcdf(ds, p, beside=True)
        run.files.append(p)
        models = model_sorted(str(m) for m in ds["model"].values)
        g, m = ds.attrs["g_X"], ds.attrs["m_X_MeV"]
        sec["benchmark"][proc] = {"g_X": g, "m_X_MeV": m, "models": models,
                                  "total_counts": {mo: float(ds["total_model"].sel(model=mo).sum())
                                                   for mo in models},
                                  "sm_total_counts": float(ds["total"].sum())}
        panels.append((proc, ds, ana.cfg["exposure_tonne_year"]))
    run.files.append(draw(run.outdir / "fig1.png", _fig1_figure, panels))
    return sec


def _fig1_figure(panels):
    """Fig. 1 from (process, spectrum dataset, exposure) panels (a figure job: module level,
    picklable arguments, matplotlib imported here)."""
    from nuinfer.plotting import PROCESS_LABEL, legend_figure, plot_spectra
    fig, axes = legend_figure(2, legend_width=1.55)
    for ax, (proc, ds, exposure) in zip(axes, panels):
        per = {}  # SM + X total of each model, in the layout plot_spectra draws
        for mo in model_sorted(str(m) for m in ds["model"].values):
            one = ds[["total"]].copy()
            one["total"] = ("bin", ds["total_model"].sel(model=mo).values)
            per[mo] = one
        g, m = ds.attrs["g_X"], ds.attrs["m_X_MeV"]
        plot_spectra(ds, per, ax=ax, title=f"{PROCESS_LABEL[proc]}: $g_X^2$ = {g * g:.0e}, $m_X$ = {m:g} MeV, "
                                           f"{exposure:g} t yr")
    return fig


def _step_contours(run: _Run, fig_name: str) -> dict:
    from nuinfer.io import provenance_attrs, write_netcdf
    from nuinfer.render import draw
    sec = {"figure": f"{fig_name}.png", "limits": {}, "curves": {}}
    anas = {}
    for proc in ("cevns", "eves"):
        ana = anas[proc] = run.contour_scans(fig_name, proc)
        mos = model_sorted(ana.models)
        ds = with_exclusion(stack_scans({mo: run.scans[(proc, mo)] for mo in mos}),
                            {mo: run.results[(proc, mo)] for mo in mos})
        ds.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
        ds.attrs.update(data_set=data_label(ana), calibration="asymptotic")
        p = run.outdir / f"{fig_name}_{proc}.nc"
        write_netcdf(ds, p, beside=True)
        run.files.append(p)
        for mo in mos:
            r = run.results[(proc, mo)]
            sec["limits"].setdefault(proc, {})[mo] = mass_keyed(g90_table(r, TABLE_MASSES_MEV))
            sec["curves"].setdefault(proc, {})[mo] = g90_curve(r)
        sec["threshold"] = float(run.scans[(proc, mos[0])].attrs["threshold"])
        sec["grid"] = [ana.cfg["scan"]["m_X_MeV"]["n"], ana.cfg["scan"]["g_X"]["n"]]
    note = calibration_note(run.scans[("cevns", _PANEL_MODELS[fig_name][0])], data_label(anas["cevns"]))
    curves = {proc: {mo: run.results[(proc, mo)] for mo in model_sorted(anas[proc].models)}
              for proc in ("cevns", "eves")}
    run.files.append(draw(run.outdir / f"{fig_name}.png", _contours_figure, fig_name, curves, note))
    return sec


def _contours_figure(fig_name: str, curves: dict, note: str):
    """Fig. 2, 3 or 4 from ``{process: {model: ContourResult}}`` (a figure job)."""
    from nuinfer.plotting import MODEL_LABEL, PROCESS_LABEL, legend_figure, plot_contours
    fig, axes = legend_figure(2, legend_width=2.3)
    if fig_name == "fig2":
        for ax, proc in zip(axes, ("cevns", "eves")):
            plot_contours(curves[proc], ax=ax, title=PROCESS_LABEL[proc], note=note)
    else:
        for ax, mo in zip(axes, _PANEL_MODELS[fig_name]):
            name = {"V": "universal vector", "S": "scalar"}.get(mo, MODEL_LABEL.get(mo, mo))
            plot_contours({"cevns": curves["cevns"][mo], "eves": curves["eves"][mo]}, ax=ax,
                          title=name, note=note, labels={"cevns": r"CE$\nu$NS", "eves": r"E$\nu$ES"},
                          styles={"cevns": {"color": "tab:blue"}, "eves": {"color": "tab:red", "ls": "--"}})
    return fig


def _step_systematics(run: _Run) -> dict:
    syst = systematics_study(run.outdir, grid=run.cfg["systematics_grid"], quiet=True, cache=run.cache,
                             models=run.cfg["systematics_models"])
    sec = {"studies": {}, "grid": run.cfg["systematics_grid"], "ratio_definition": RATIO_DEFINITION}
    for key, r in syst.items():
        run.files += [Path(r["output"]), Path(r["plot"]), Path(r["table_csv"]), Path(r["table_md"])]
        sec["studies"][key] = {"figure": Path(r["plot"]).name, "table_csv": Path(r["table_csv"]).name,
                               "rows": r["g90"]}
    sec["scenario_info"] = {k: {"meaning": v[0], "unit": v[1]} for k, v in SCENARIO_INFO.items()}
    return sec


def _step_bayes(run: _Run) -> dict:
    from nuinfer.tasks import bayes as _bayes
    ana = preset("bayes_eves_vector")
    post = run.outdir / "posterior_eves_vector.nc"
    # no per-bin log_likelihood group (~10^7 values, 15 MB of the file and a third of the step); the
    # report does not use it, and `nuinfer sample` on the preset writes it
    res = _bayes.run_sample(ana, post, walkers=run.cfg["walkers"], steps=run.cfg["steps"], seed=None,
                            progress=False, log_likelihood=False)
    run.files.append(post)
    plots = _bayes.run_plot(post, outdir=run.outdir)
    pending = {str(p) for p in run.figures.paths}  # figures still being drawn by the worker
    for v in plots.values():
        if isinstance(v, str) and (Path(v).exists() or v in pending):
            run.files.append(Path(v))
    summ = plots.get("summary", {})
    return {"figures": [Path(plots[k]).name for k in ("corner", "mass_coupling") if plots.get(k)],
            "table_csv": Path(plots["table_csv"]).name if plots.get("table_csv") else None,
            "model": summ.get("model"), "n_samples": summ.get("n_samples"), "burn": summ.get("burn"),
            "thin": summ.get("thin"), "frequentist": summ.get("frequentist"),
            "posterior_summary": summ.get("posterior_summary"), "prior_dominated": summ.get("prior_dominated"),
            "g90_by_mass": summ.get("g90_by_mass"), "warnings": summ.get("warnings"),
            "log_likelihood_group": False,
            "sampler": {k: res[k] for k in sorted(res) if isinstance(res[k], (int, float, str, bool))
                        and not str(k).endswith("path")}}


#: real data sets of the "current data" step: (key, process, preset, label)
REAL_DATA = (
    ("xenonnt_8b", "cevns", "xenonnt_8b_cevns", "XENONnT 8B CEvNS, SR0+SR1 (PRL 133, 191002)"),
    ("xenonnt_er", "eves", "xenonnt_sr0_er", "XENONnT SR0 electron recoils, 1.16 t yr (PRL 129, 161805)"),
)


def _real_scans(run: _Run, key: str, preset_name: str, models) -> dict:
    """Real-data scans on the mode's grid; reused from an earlier file with the same set-up."""
    import xarray as xr

    from nuinfer import __version__
    from nuinfer.io import write_netcdf
    from nuinfer.spec.xenonnt import grid as grid_of
    from nuinfer.tasks import xenonnt
    path = models_dir() / f"{preset_name}.toml"
    cfg = xenonnt._config(str(path))
    M, G = run.cfg["real_grid"]
    sc = cfg["signal"]["scan"]
    masses = np.geomspace(sc["m_X_MeV"]["lo"], sc["m_X_MeV"]["hi"], M)
    gs = np.geomspace(sc["g_X"]["lo"], sc["g_X"]["hi"], G)
    del grid_of
    reuse_key = json.dumps({"version": __version__, "preset": path.read_text(), "M": M, "G": G,
                            "models": list(models)}, sort_keys=True)
    out = run.outdir / f"current_{key}.nc"
    if out.exists():
        try:
            with xr.open_dataset(out) as old:
                if old.attrs.get("reuse_key") == reuse_key:
                    old = old.load()
                    return {str(mo): old.sel(model=mo) for mo in old["model"].values}, True
        except (OSError, ValueError, KeyError):
            pass
    lk = xenonnt.build(cfg)
    scans = {}
    for mo in models:
        ds = lk.scan(mo, masses, gs, cl=cfg["statistics"]["cl"], ndof=cfg["statistics"]["ndof"])
        scans[mo] = ds
    results = contour_results(scans)
    stacked = with_exclusion(stack_scans(scans), results)
    from nuinfer.io import provenance_attrs
    cfg_json = {k: v for k, v in cfg.items() if not str(k).startswith("_")}
    stacked.attrs.update(provenance_attrs(config=json.loads(json.dumps(cfg_json, default=str))))
    stacked.attrs.update(reuse_key=reuse_key, data_set=scans[models[0]].attrs.get("data_set", key),
                         calibration="asymptotic")
    write_netcdf(stacked, out, beside=True)
    return scans, False


def _coherent_results(run: _Run) -> tuple[dict, str | None]:
    """COHERENT CsI 2017 V and S scans (None and a note when the user data folder is missing)."""
    from nuinfer.tasks import terrestrial
    grid = run.cfg["coherent_grid"]
    over = {"scan.m_X_MeV.n": grid[0], "scan.g_X.n": grid[1]} if grid else None
    try:
        ana = terrestrial._analysis(str(models_dir() / "coherent_csi2017.toml"), over)
        res = terrestrial.analyse(ana, tasks=["V", "S"], quiet=True)
    except Exception as exc:  # noqa: BLE001 - user data missing: skip the curve, say why
        return {}, f"COHERENT CsI curves skipped: {str(exc).splitlines()[0]}"
    from nuinfer.io import provenance_attrs
    try:
        cfg = json.loads(ana.to_json())
    except Exception:  # noqa: BLE001 - provenance without the config rather than no file
        cfg = {"preset": "models/coherent_csi2017.toml"}
    out = {mo: res[mo] for mo in ("V", "S")}
    for d in out.values():
        d.attrs.update(provenance_attrs(config=cfg))
    return out, None


def _prefetch_real(run: _Run) -> None:  # pragma: no cover - runs in a forked child
    """Child process: compute (or find) the real-data scan files of the "current" step."""
    import os

    from nuinfer.render import forked_child_setup
    forked_child_setup()
    status = _PREFETCH_OK
    try:
        for k, (key, _proc, name, _label) in enumerate(REAL_DATA):
            _, reused = _real_scans(run, key, name, list(run.cfg["real_models"]))
            if not reused:
                status |= 1 << k  # computed here, not found from an earlier run
    except BaseException:  # noqa: BLE001 - the parent computes them itself then
        status = 1
    os._exit(status)


#: exit status of the prefetch process: this bit set, plus bit k when data set k was computed
_PREFETCH_OK = 16


def start_prefetch(run: _Run):
    """Fork a process that writes the real-data scans (``current_*.nc``) while the other steps run;
    :func:`_step_current` waits for it and reads the files (or computes them if it failed).
    Returns the process, or None where figures are not parallel either (one core, no fork)."""
    from nuinfer.render import parallel_default
    if not parallel_default():
        return None
    import multiprocessing as mp
    proc = mp.get_context("fork").Process(target=_prefetch_real, args=(run,), daemon=True,
                                          name="nuinfer-real-data")
    proc.start()
    return proc


def _step_current(run: _Run) -> dict:
    from nuinfer.io import write_netcdf
    from nuinfer.render import draw
    for fig in ("fig2", "fig3", "fig4"):
        for proc in ("cevns", "eves"):
            run.contour_scans(fig, proc)
    models = list(run.cfg["real_models"])
    computed = 0  # bit k: data set k computed by the prefetch process of this run
    sec = {"data_sets": {}, "figures": [], "notes": [], "limits": {}, "grid": list(run.cfg["real_grid"]),
           "models": models}
    if run.mode == "quick":
        sec["notes"].append("Quick run: real-data scans for S and V only, on a coarse grid (the full run scans "
                            "all seven models).")
    real = {}
    for k, (key, proc, name, label) in enumerate(REAL_DATA):
        if run.prefetch is not None:  # the real-data scans ran beside the earlier steps
            run.prefetch.join()
            code = run.prefetch.exitcode
            computed = code & ~_PREFETCH_OK if code is not None and code & _PREFETCH_OK else 0
            run.prefetch = None
        scans, reused = _real_scans(run, key, name, models)
        reused = reused and not computed & (1 << k)
        real[proc] = (label, contour_results(scans), scans)
        sec["data_sets"][key] = {"label": label, "process": proc, "preset": f"models/{name}.toml",
                                 "file": f"current_{key}.nc", "reused_from_earlier_run": reused,
                                 "statistic": str(next(iter(scans.values())).attrs.get("statistic", ""))}
        run.files.append(run.outdir / f"current_{key}.nc")
        for mo, r in real[proc][1].items():
            sec["limits"].setdefault(key, {})[mo] = mass_keyed(g90_table(r, TABLE_MASSES_MEV))
    coh_res, note = {}, None
    # the EvES figure first: the figure worker draws it while the COHERENT fit runs here
    for proc in ("eves", "cevns"):
        if proc == "cevns":
            coh, note = _coherent_results(run)
            coh_res = contour_results(coh) if coh else {}
            if coh:
                p = run.outdir / "current_coherent_csi.nc"
                write_netcdf(with_exclusion(stack_scans(coh), coh_res), p, beside=True)
                run.files.append(p)
                sec["data_sets"]["coherent_csi"] = {
                    "label": "COHERENT CsI 2017 (Science 357, 1123)", "process": "cevns",
                    "preset": "models/coherent_csi2017.toml", "file": p.name,
                    "statistic": str(coh["V"].attrs.get("statistic", ""))}
                for mo, r in coh_res.items():
                    sec["limits"].setdefault("coherent_csi", {})[mo] = mass_keyed(g90_table(r, TABLE_MASSES_MEV))
            if note:
                sec["notes"].append(note)
        label, res, _ = real[proc]
        projections = {mo: run.results[(proc, mo)] for mo in models}
        png = draw(run.outdir / f"current_{proc}.png", _current_figure, proc, models, label, res, projections,
                   coh_res if proc == "cevns" else {}, note if proc == "cevns" else None)
        run.files.append(png)
    sec["figures"] += ["current_cevns.png", "current_eves.png"]
    return sec


def _current_figure(proc: str, models: list, label: str, res: dict, projections: dict, coherent: dict,
                    note: str | None):
    """The current-data figure of one process: per model the real-data limit over the projection
    (and the COHERENT CsI limit for CEvNS) (a figure job)."""
    from matplotlib.lines import Line2D

    from nuinfer.plotting import MODEL_LABEL, PROCESS_LABEL, legend_figure, plot_contours
    ncols = min(4, len(models) + 1)
    nrows = -(-(len(models) + 1) // ncols)
    fig, axes = legend_figure(ncols, nrows, panel=(3.3, 2.8), legend_width=0.15, top=0.5, bottom=0.55,
                              suptitle=f"{PROCESS_LABEL[proc]}: current data (90% CL, asymptotic) over the "
                                       f"paper's 1 t yr projections")
    handles = None
    for ax in axes[len(models) + 1:]:
        ax.axis("off")
    for ax, mo in zip(axes, models):
        curves = {"projection": projections[mo], "data": res[mo]}
        styles = {"projection": {"color": "k", "ls": "--", "lw": 1.3},
                  "data": {"color": "tab:red", "lw": 1.8, "zorder": 4}}
        labels = {"projection": "projection: Asimov SM data, 1 t yr (paper set-up)", "data": label}
        if mo in coherent:
            curves["coherent"] = coherent[mo]
            styles["coherent"] = {"color": "tab:blue", "lw": 1.6, "zorder": 3}
            labels["coherent"] = "COHERENT CsI 2017 (package fit, user data)"
        plot_contours(curves, ax=ax, styles=styles, labels=labels, legend="none",
                      title=MODEL_LABEL.get(mo, mo))
        ax.set_xlim(1e-2, 1e4)
        ax.set_ylim(1e-8, 1.0)
        h = [Line2D([], [], color=styles[k]["color"], ls=styles[k].get("ls", "-"), lw=styles[k]["lw"],
                    label=labels[k]) for k in curves]
        if handles is None or len(h) > len(handles):
            handles = h
    leg_ax = axes[len(models)]
    leg_ax.axis("off")
    leg_ax.legend(handles=handles, loc="center left", fontsize=7, frameon=False,
                  title="90% CL excluded above each curve;\nthresholds from Wilks' theorem",
                  title_fontsize=7, alignment="left")
    if note:
        leg_ax.text(0.0, 0.05, note, fontsize=6, wrap=True, transform=leg_ax.transAxes)
    return fig


_STEP_FUNCS = {"fig1": _step_fig1, "fig2": lambda r: _step_contours(r, "fig2"),
               "fig3": lambda r: _step_contours(r, "fig3"), "fig4": lambda r: _step_contours(r, "fig4"),
               "systematics": _step_systematics, "bayes": _step_bayes, "current": _step_current}


def load_sections(outdir) -> dict:
    p = Path(outdir) / SECTIONS_FILE
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def reproduce(outdir="outputs", *, quick: bool = False, quiet: bool = False, only=None) -> dict:
    """Run the paper's steps (:data:`STEPS`, or those of ``only``) and rebuild the report.

    Every step's results go to ``<outdir>/report_sections.json``; the report (``report.md`` and
    ``report.html``) is rebuilt from all sections there, so ``only=["fig1"]`` updates Fig. 1 and
    keeps the other sections of an earlier run.  Progress: one line per step on stderr with its
    elapsed time (silenced by ``quiet``).
    """
    from nuinfer.io import atomic_write_text
    steps = parse_steps(only)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    from nuinfer.render import Renderer
    run = _Run(outdir, mode, quiet)
    sections = load_sections(outdir)
    t_start = time.perf_counter()
    timings = {}
    # figures are drawn by a second process while the next steps compute (nuinfer.render)
    with Renderer(lazy=True) as run.figures, run.figures.active():
        # the real-data scans run in a forked process beside the other steps: for the full scans
        # forked at once (its imports and likelihood builds overlap this process's; the scans take
        # longest), for the quick ones after the first step, inheriting this process's imports
        # (measured in alternation on the slow 2-core VM, docs/performance.md section g: full
        # 19.1-19.3 s forked at once vs 20.5-21.1 s after the first step; quick 8.9-9.2 s forked
        # after the first step vs 9.5-9.7 s without a second process)
        M, G = run.cfg["real_grid"]
        fork_at = 0 if M * G >= 1000 else 1
        for i, name in enumerate(steps):
            if i == fork_at and "current" in steps[i + 1:]:
                run.prefetch = start_prefetch(run)
            t = time.perf_counter()
            sec = _STEP_FUNCS[name](run)
            dt = time.perf_counter() - t
            timings[name] = dt
            sec.update(mode=mode, elapsed_s=round(dt, 2), finished_at=_now())
            sections[name] = sec
            _say(f"reproduce [{i + 1}/{len(steps)}] {name}: {STEP_HELP[name]}: done in {dt:.1f} s "
                 f"(total {time.perf_counter() - t_start:.1f} s)", quiet)
        t = time.perf_counter()
    timings["figures"] = time.perf_counter() - t
    _say(f"reproduce: figures drawn beside the steps, finished {timings['figures']:.1f} s after the last step "
         f"(total {time.perf_counter() - t_start:.1f} s)", quiet)
    t = time.perf_counter()
    sections["setup"] = _setup_section(run)
    sections["setup"].update(mode=mode, finished_at=_now())
    sections["format"] = 1
    atomic_write_text(outdir / SECTIONS_FILE, json.dumps(sections, indent=1, default=str) + "\n")
    report, html = write_report(outdir, sections)
    run.files += [outdir / SECTIONS_FILE, report, html]
    timings["report"] = time.perf_counter() - t
    _say(f"reproduce: report {report} and {html} in {timings['report']:.1f} s "
         f"(total {time.perf_counter() - t_start:.1f} s)", quiet)
    return {"outdir": str(outdir), "mode": mode, "steps": steps,
            "files": sorted({str(f) for f in run.files}), "report": str(report), "report_html": str(html),
            "timings_s": {k: round(v, 2) for k, v in timings.items()}}


# --------------------------------------------------------------------------- the report
_PROC_NAME = {"cevns": "CEvNS", "eves": "EvES"}
_MODEL_NAME = {"S": "S (scalar)", "P": "P (pseudoscalar)", "V": "V (universal vector)", "A": "A (axial vector)",
               "T": "T (tensor)", "B-L": "B-L (U(1)_B-L vector)", "Lmu-Ltau": "Lmu-Ltau (U(1)_Lmu-Ltau vector)"}

#: departures of the paper presets from the paper's printed text (PHYSICS.md)
DEPARTURES = (
    ("Lindhard k", "Eq. 20 prints k = 0.133 Z^(-2/3) A^(-1/2) (k ~ 8e-4); nuinfer uses 0.133 Z^(2/3) A^(-1/2) "
                   "= 0.166 for xenon (0.1735, also used in the literature, is a systematics scenario)."),
    ("Table III binding energies", "the printed table is mis-transcribed (j labels swapped, 4p1/2 missing, "
                                   "3d5/2 printed as 694.9 eV); nuinfer uses the Hartree-Fock energies of Chen et al. "
                                   "2017 (arXiv:1610.04177), 54 electrons."),
    ("Eq. 13 normalisation", "printed with 1/(4 sqrt2 G_F); matching Eq. 10 gives 1/(sqrt2 G_F). Paper preset: as "
                             "printed (`eves_vector_norm = \"paper\"`); `\"standard\"` makes the EvES V, A and B-L "
                             "limits a factor 2 stronger."),
    ("Axial form (Eq. 8)", "printed with S_p Z and S_n N; paper preset as printed (`axial_form = \"paper\"`), "
                           "the standard spin-dependent form is `\"standard\"`."),
    ("Lmu-Ltau signs", "Eqs. 9 and 14 print + for nu_tau and - for nu_mu although kinetic mixing couples protons "
                       "and electrons with opposite signs; the printed signs are kept."),
    ("nu_e in Lmu-Ltau", "the paper drops nu_e entirely (from R_SM too); paper preset as printed "
                         "(`lmu_ltau_nue = \"paper\"`), `\"background\"` keeps nu_e as SM background "
                         "(limits ~5-30% weaker)."),
)


class _Doc:
    """Report blocks rendered to Markdown and to HTML (figures inline as data URIs)."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def ul(self, items):
        self.blocks.append(("ul", list(items)))

    def table(self, header, rows):
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def img(self, path, caption):
        self.blocks.append(("img", path, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out += ["#" * b[1] + " " + b[2], ""]
            elif b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "ul":
                out += [f"- {x}" for x in b[1]] + [""]
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("| " + " | ".join("---" for _ in b[1]) + " |")
                out += ["| " + " | ".join(str(c) for c in r) + " |" for r in b[2]]
                out.append("")
            elif b[0] == "img":
                out += [f"![{b[2]}]({Path(b[1]).name})", "", f"*{b[2]}*", ""]
        return "\n".join(out)

    def html(self, outdir: Path, title: str) -> str:
        import base64
        import html as _h
        import re

        def inline(t):
            t = _h.escape(t)
            t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
            return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)

        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_h.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
               "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
               "font-size:0.9em}th{background:#eee}img{max-width:100%}figcaption{font-style:italic}"
               "code{background:#f4f4f4}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{inline(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in b[1]) + "</tr>" +
                           "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in r) + "</tr>"
                                   for r in b[2]) + "</table>")
            elif b[0] == "img":
                p = outdir / Path(b[1]).name
                if p.exists():
                    data = base64.b64encode(p.read_bytes()).decode("ascii")
                    out.append(f'<figure><img alt="{_h.escape(b[2])}" src="data:image/png;base64,{data}">'
                               f"<figcaption>{inline(b[2])}</figcaption></figure>")
                else:
                    out.append(f"<p><i>figure {_h.escape(p.name)} not found</i></p>")
        out.append("</body></html>")
        return "\n".join(out)


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _limits_by_process(sections) -> dict:
    """{proc: {model: {mass: g90}}} from the fig2/fig3/fig4 sections (fig2 and fig4 first)."""
    out: dict = {}
    for fig in ("fig3", "fig4", "fig2"):
        for proc, d in sections.get(fig, {}).get("limits", {}).items():
            out.setdefault(proc, {}).update(d)
    return out


def _curves(sections, proc, model):
    for fig in ("fig3", "fig2", "fig4"):
        c = sections.get(fig, {}).get("curves", {}).get(proc, {}).get(model)
        if c:
            return c
    return None


def crossover_mass(curve_a, curve_b):
    """Lowest mass above which curve_a stops being below curve_b (log-interpolated), or None.

    Both curves ``{"m_X_MeV": [...], "g90": [...]}`` on the same masses.  Returns
    ``(m_cross, a_below_at_low_mass)``.
    """
    m = np.asarray(curve_a["m_X_MeV"], float)
    a = np.array([np.nan if v is None else v for v in curve_a["g90"]], float)
    b = np.array([np.nan if v is None else v for v in curve_b["g90"]], float)
    if m.size != len(curve_b["m_X_MeV"]) or not np.allclose(m, curve_b["m_X_MeV"]):
        return None, None
    r = np.log(a) - np.log(b)
    ok = np.isfinite(r)
    if ok.sum() < 2:
        return None, None
    m, r = m[ok], r[ok]
    low = bool(r[0] < 0)
    idx = np.nonzero(np.sign(r[1:]) != np.sign(r[:-1]))[0]
    if not idx.size:
        return None, low
    i = idx[0]
    lm = np.log10(m[i]) + (np.log10(m[i + 1]) - np.log10(m[i])) * r[i] / (r[i] - r[i + 1])
    return float(10 ** lm), low


def paper_checks(sections) -> list:
    """The paper's stated results as checked statements: (statement, PASS/FAIL/not run, numbers)."""
    lim = _limits_by_process(sections)
    rows = []

    def ordering(proc, most, least, paper):
        g = {mo: v for mo, v in lim.get(proc, {}).items() if mo in ("S", "P", "V", "A", "T")}
        if len(g) < 5:
            rows.append((paper, "not run", "needs the fig2 step"))
            return
        ok, nums = True, []
        for m in ("0.01", "1", "100"):
            vals = {mo: g[mo].get(m) for mo in g if g[mo].get(m)}
            if not vals:
                continue
            lo, hi = min(vals, key=vals.get), max(vals, key=vals.get)
            ok &= lo == most and hi == least
            nums.append(f"m_X = {m} MeV: {lo} {vals[lo]:.3g} (lowest g90), {hi} {vals[hi]:.3g} (highest)")
        rows.append((paper, "PASS" if ok else "FAIL", "; ".join(nums)))

    ordering("cevns", "S", "P", "CEvNS: scalar most, pseudoscalar least constrained (Sec. 4.2)")
    ordering("eves", "T", "P", "EvES: tensor most, pseudoscalar least constrained (Sec. 4.2)")
    ca, cb = _curves(sections, "eves", "V"), _curves(sections, "cevns", "V")
    if ca and cb:
        mx, low = crossover_mass(ca, cb)
        if mx is None:
            rows.append(("EvES beats CEvNS for the universal vector below ~2 MeV (Fig. 3)", "FAIL",
                         "no crossover of the two g90 curves on the grid"))
        else:
            ok = bool(low) and 2.0 / 3 <= mx <= 6.0
            rows.append(("EvES beats CEvNS for the universal vector below ~2 MeV (Fig. 3)", "PASS" if ok else "FAIL",
                         f"EvES g90 < CEvNS g90 {'below' if low else 'above'} the crossover m_X = {mx:.3g} MeV "
                         "(log-interpolated between grid masses; PASS within a factor 3 of 2 MeV)"))
    else:
        rows.append(("EvES beats CEvNS for the universal vector below ~2 MeV (Fig. 3)", "not run",
                     "needs the fig3 step"))
    for proc in ("cevns", "eves"):
        d = lim.get(proc, {})
        if "B-L" in d and "Lmu-Ltau" in d:
            nums, ok = [], True
            for m in ("0.01", "1", "100"):
                a, b = d["B-L"].get(m), d["Lmu-Ltau"].get(m)
                if a and b:
                    ok &= a < b
                    nums.append(f"m_X = {m} MeV: B-L {a:.3g} vs Lmu-Ltau {b:.3g} (x{b / a:.2g})")
            rows.append((f"{_PROC_NAME[proc]}: B-L more constrained than Lmu-Ltau (Fig. 4)", "PASS" if ok else "FAIL",
                         "; ".join(nums)))
        else:
            rows.append((f"{_PROC_NAME[proc]}: B-L more constrained than Lmu-Ltau (Fig. 4)", "not run",
                         "needs the fig4 step"))
    return rows


def _run_line(sec) -> str:
    if not sec:
        return "not run"
    return f"{sec.get('mode', '?')} run, {sec.get('elapsed_s', 0):.1f} s, finished {sec.get('finished_at', '?')}"


def build_report(sections: dict) -> _Doc:
    from nuinfer import __version__
    d = _Doc()
    d.h(1, "nuinfer reproduction of Majumdar, Papoulias & Srivastava, PRD 106 (2022) 013001")
    d.p(f"nuinfer {__version__}. Each section records how it was made (`report_sections.json` keeps every "
        "section's results; `nuinfer reproduce --only STEP` updates one section and keeps the others).")
    d.table(["step", "what", "run"], [[s, STEP_HELP[s], _run_line(sections.get(s))] for s in STEPS])

    # ---- set-up
    su = sections.get("setup", {}).get("processes", {})
    if su:
        d.h(2, "Analysis set-up (paper presets)")
        c, e = su.get("cevns", {}), su.get("eves", {})

        def row(name, f):
            return [name, f(c) if c else "-", f(e) if e else "-"]

        opts = sorted(set(c.get("named_options", {})) | set(e.get("named_options", {})))
        rows = [
            row("preset", lambda x: x["preset"]),
            row("target, exposure", lambda x: f"{x['target']} (natural), {x['exposure_tonne_year']:g} t yr"),
            row("energy window", lambda x: f"{x['window_keVee'][0]:g}-{x['window_keVee'][1]:g} keVee"),
            row("bins", lambda x: f"{x['bins']} ({x['bin_scale']})"),
            row("sources", lambda x: ", ".join(x["sources"])),
            row("flux normalisation", lambda x: f"{x['flux_preset']} (paper Table II)"
                if x["flux_preset"] == "paper" else x["flux_preset"]),
            row("SM counts (total)", lambda x: f"{x['sm_counts_total']:.4g}"),
            row("quenching", lambda x: x["quenching"]),
            row("atomic binding", lambda x: x["binding"]),
            row("efficiency, resolution", lambda x: f"{x['efficiency']}, {x['resolution']}"),
            row("coupling convention", lambda x: "g_X = sqrt(g_nuX g_fX), universal g_nu = g_q = g_e = g_X; "
                                                 "R = T0 + g_X^2 T1 + g_X^4 T2"),
            *[row(f"option `{o}`", lambda x, o=o: str(x["named_options"].get(o, "-"))) for o in opts],
            row("statistic", lambda x: f"{x['statistic']} (Eq. 26), sigma_sys = {x['sigma_sys']:g}, "
                                       f"sigma_bg = {x['sigma_bg']:g} of the SM rate"),
            row("data", lambda x: "Asimov (SM expectation)" if x["data"] == "asimov" else str(x["data"])),
            row("threshold", lambda x: f"Delta chi2 = {x['threshold']:.3f} ({100 * x['cl']:g}% CL, {x['ndof']} dof)"),
            row("calibration", lambda x: x["calibration"]),
            row("profiler", lambda x: x["profiler"]),
            row("scan grid (Figs. 2-4, this run)", lambda x: "m_X {lo:g}-{hi:g} MeV x {n}".format(**x["scan_grid"]["m_X_MeV"])
                + ", g_X {lo:g}-{hi:g} x {n} (log)".format(**x["scan_grid"]["g_X"])),
            row("numerics", lambda x: ", ".join(f"{k} = {v}" for k, v in x["numerics"].items())),
        ]
        d.table(["quantity", "CEvNS", "EvES"], rows)
        srcs = list(dict.fromkeys(c.get("sources", []) + e.get("sources", [])))
        d.p("SM counts per source (events in the window, 1 t yr; EvES uses the solar sources only):")
        d.table(["source", "CEvNS", "EvES"],
                [[s, _g(c.get("sm_counts_per_source", {}).get(s)), _g(e.get("sm_counts_per_source", {}).get(s))]
                 for s in srcs])
        modes = sorted({sections[s].get("mode") for s in STEPS if s in sections})
        d.p("Grids used: full run = the preset grid (200 x 200 for Figs. 2-4), 100 x 100 for the systematics, "
            "40 x 60 real-data scans of all seven models, the COHERENT preset's 41 x 81; quick run = 40 x 40, "
            "16 x 16 (V only), 12 x 16 real-data scans of S and V, 21 x 41 for COHERENT, and a 16 x 300 chain. "
            f"Modes in this "
            f"report: {', '.join(m for m in modes if m)}.")

    # ---- figures
    caps = {"fig1": "Fig. 1: CEvNS (left) and EvES (right) spectra, SM per source and SM + X at the benchmark "
                    "point (g_X^2 = 1e-4, m_X = 1 GeV)",
            "fig2": "Fig. 2: 90% CL sensitivities for S, P, V, A, T in CEvNS (left) and EvES (right)",
            "fig3": "Fig. 3: universal vector (left) and scalar (right), CEvNS vs EvES",
            "fig4": "Fig. 4: B-L (left) and Lmu-Ltau (right), CEvNS vs EvES"}
    for s, cap in caps.items():
        if s in sections:
            d.h(2, cap.split(":")[0])
            d.img(sections[s]["figure"], cap + f" ({sections[s].get('mode')} run)")

    # ---- limits
    lim = _limits_by_process(sections)
    if lim:
        d.h(2, "Limits: lowest excluded coupling g90 at reference masses")
        d.ul(["**g90** [dimensionless]: the lowest coupling g_X excluded at 90% CL at that mass (profile of the "
              "normalisation nuisance a, Delta chi2 >= threshold, asymptotic calibration); log-interpolated in "
              "m_X between grid masses; `-` where nothing is excluded on the grid or the mass is off the grid.",
              "**m_X** [MeV]: mediator mass; **process**: CEvNS (nuclear recoils) or EvES (electron recoils); "
              "**model**: the interaction, in the paper's order.",
              "Above g90 the region can have allowed bands (destructive interference for V-like models): the "
              "excluded intervals per mass are in the NetCDF files (`interval_g_lo`, `interval_g_hi`)."])
        for proc in ("cevns", "eves"):
            if proc not in lim:
                continue
            ms = [f"{m:g}" for m in TABLE_MASSES_MEV]
            d.h(3, f"{_PROC_NAME[proc]}")
            d.table(["model"] + [f"g90 at m_X = {m} MeV" for m in ms],
                    [[_MODEL_NAME.get(mo, mo)] + [_g(lim[proc][mo].get(m)) for m in ms]
                     for mo in model_sorted(lim[proc])])

    # ---- comparison with the paper
    if any(s in sections for s in ("fig2", "fig3", "fig4")):
        d.h(2, "Comparison with the paper's stated results")
        d.table(["paper's statement", "result", "numbers (g90)"], paper_checks(sections))

    # ---- systematics
    sy = sections.get("systematics")
    if sy:
        d.h(2, "Systematic-assumption comparisons")
        d.p(f"One assumption changed at a time from the paper preset (fig3 presets, {sy['grid']} x {sy['grid']} "
            "grid). Scenario keys, meaning and unit:")
        d.table(["key", "meaning", "unit"], [[k, v["meaning"], v["unit"] or "-"]
                                            for k, v in sy["scenario_info"].items()])
        d.p("Columns: g90 at m_X [MeV] = lowest excluded g_X at 90% CL; " + sy["ratio_definition"] + ".")
        for key, st in sy["studies"].items():
            proc, mo = key.split("_")
            d.h(3, f"{_PROC_NAME[proc]}, {_MODEL_NAME.get(mo, mo)}")
            d.img(st["figure"], f"{_PROC_NAME[proc]} {mo}: baseline (black, on top) and one-at-a-time scenarios")
            ms = list(st["rows"][0]["g90_at_m_X_MeV"])
            d.table(["scenario (key = value unit)"] + [f"g90 at {m} MeV" for m in ms] +
                    [f"ratio at {m} MeV" for m in ms],
                    [[r["label"]] + [_g(r["g90_at_m_X_MeV"][m]) for m in ms] +
                     [_g(r["g90_ratio_to_baseline_at_m_X_MeV"][m]) for m in ms] for r in st["rows"]])

    # ---- Bayesian
    by = sections.get("bayes")
    if by:
        d.h(2, "Bayesian example: universal vector, EvES")
        d.p(f"emcee posterior of ({', '.join((by.get('posterior_summary') or {}).keys())}) for model "
            f"{by.get('model')}: {by.get('n_samples')} samples after burn-in {by.get('burn')}, thin {by.get('thin')} "
            f"({by.get('mode')} run). Frequentist reference: {by.get('frequentist')}." +
            (" The file `posterior_eves_vector.nc` has no per-bin `log_likelihood` group (for LOO/WAIC run "
             "`nuinfer sample models/bayes_eves_vector.toml -o posterior.nc`, which writes it)."
             if by.get("log_likelihood_group") is False else ""))
        for f in by.get("figures", []):
            d.img(f, "corner plot (68% and 90% credible levels)" if "corner" in f else
                  "(m_X, g_X) posterior samples (colour: samples per bin), 90% credible upper limit per mass slice "
                  "and the frequentist 90% CL contour")
        ps = by.get("posterior_summary") or {}
        dom = set(by.get("prior_dominated") or [])
        d.table(["parameter", "median", "5%", "95%", "mean", "sd", "ESS", "note"],
                [[n, _g(r.get("q50")), _g(r.get("q5")), _g(r.get("q95")), _g(r.get("mean")), _g(r.get("sd")),
                  _g(r.get("ess")), "prior-dominated: reflects the prior, not the data" if n in dom else ""]
                 for n, r in ps.items()])
        rows = by.get("g90_by_mass") or []
        if rows:
            d.p("90% credible upper limit on g_X per mass slice (MCSE = Monte Carlo standard error) next to the "
                "frequentist g90 at the slice centre:")
            d.table(["m_X [MeV]", "credible g90", "MCSE", "frequentist g90", "samples", "prior-dominated"],
                    [[_g(r.get("m_X_MeV")), _g(r.get("g90_credible")), _g(r.get("g90_credible_mcse")),
                      _g(r.get("g90_frequentist")), r.get("n_samples"), "yes" if r.get("prior_dominated") else "no"]
                     for r in rows])
        if by.get("warnings"):
            d.ul(by["warnings"])

    # ---- current data
    cu = sections.get("current")
    if cu:
        d.h(2, "Current data: real-data 90% CL limits over the paper's projections")
        d.p("Each panel shows the paper's 1 t yr projection (Asimov SM data, dashed) and the limits from data "
            "already taken, each labelled with its data set; thresholds from Wilks' theorem (asymptotic, "
            f"2 dof). Real-data grids {cu['grid'][0]} x {cu['grid'][1]} (m_X x g_X, log).")
        d.table(["data set", "process", "preset", "statistic", "file"],
                [[v["label"], _PROC_NAME[v["process"]], f"`{v['preset']}`", v.get("statistic", ""),
                  v["file"] + (" (reused: same set-up)" if v.get("reused_from_earlier_run") else "")]
                 for v in cu["data_sets"].values()])
        for n in cu.get("notes", []):
            d.p(n)
        for f in cu["figures"]:
            d.img(f, f"{'CEvNS' if 'cevns' in f else 'EvES'}: current data vs projection, "
                     + ", ".join(cu.get("models", MODEL_ORDER)))
        ms = [f"{m:g}" for m in TABLE_MASSES_MEV]
        for key, per in cu["limits"].items():
            d.h(3, f"g90 from {cu['data_sets'][key]['label']}")
            d.table(["model"] + [f"g90 at m_X = {m} MeV" for m in ms],
                    [[_MODEL_NAME.get(mo, mo)] + [_g(per[mo].get(m)) for m in ms] for mo in model_sorted(per)])

    # ---- departures
    d.h(2, "Known departures from the paper's printed text")
    d.p("From PHYSICS.md; the paper presets follow the printed text where a named option exists.")
    d.table(["item", "what nuinfer does"], [list(x) for x in DEPARTURES])
    return d


def write_report(outdir: Path, sections: dict | None = None, **_legacy) -> tuple[Path, Path]:
    """Rebuild ``report.md`` and ``report.html`` (figures inline) from the sections."""
    from nuinfer.io import atomic_write_text
    outdir = Path(outdir)
    sections = load_sections(outdir) if sections is None else sections
    doc = build_report(sections)
    md = atomic_write_text(outdir / "report.md", doc.markdown())
    html = atomic_write_text(outdir / "report.html", doc.html(outdir, "nuinfer reproduction report"))
    return Path(md), Path(html)

"""End-to-end workflows behind the CLI (usable from Python too).

Each function takes an analysis (TOML path, mapping or :class:`~nuinfer.spec.xenon.Analysis`), runs the
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

from nuinfer.spec import xenon as _config
from nuinfer.io import atomic_write_text, provenance_attrs, write_netcdf

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
    from nuinfer.spec import translated
    with translated(ana.family):
        n = _config.load_counts(ana._resolve(d), r_sm.size)
    return n - background_counts(r_sm, ana.cfg["statistics"]["sigma_bg"])


def scan_model(ana: _config.Analysis, model: str, *, fm=None, templates=None, progress: bool = False):
    """Templates and profile scan for one model of the analysis -> scan Dataset (m_X, g_X)."""
    from nuinfer.tasks import scan
    fm = fm or ana.forward_model()
    st = ana.cfg["statistics"]
    if templates is None:
        templates = fm.templates(ana.interaction(model), ana.grid("m_X_MeV"))
    data = observed_signal(ana, templates["R_SM"].values)
    ds = scan(templates, ana.grid("g_X"), data=data, statistic=st["statistic"], sigma_sys=st["sigma_sys"],
              sigma_bg=st["sigma_bg"], cl=st["cl"], ndof=st["ndof"], profiler=st["profiler"],
              min_expected=st["min_expected"], progress=progress)
    return ds


def g90_table(scan_ds: xr.Dataset, masses=REFERENCE_MASSES_MEV) -> dict:
    """Lowest excluded coupling at reference masses (log-interpolated in mass between grid points)."""
    from nuinfer.tasks import exclusion
    ex = exclusion(scan_ds)
    g90 = ex["g90"]
    m = scan_ds["m_X"].values
    out = {}
    for mm in masses:
        if mm < m[0] * (1 - 1e-9) or mm > m[-1] * (1 + 1e-9):
            out[f"{mm:g}"] = None
            continue
        ok = (ex["g90_status"].values != 1) & (g90.values > 0)  # status 1: nothing excluded (g90 = 0)
        v = np.interp(np.log(mm), np.log(m), np.log(np.where(ok, g90.values, 1.0)) + np.where(ok, 0.0, np.nan))
        out[f"{mm:g}"] = float(np.exp(v)) if np.isfinite(v) else None
    return out


def stack_scans(scans: dict, dim: str = "model") -> xr.Dataset:
    labels = list(scans)
    ds = xr.concat([scans[k] for k in labels], dim=dim, combine_attrs="drop_conflicts")
    ds = ds.assign_coords({dim: (dim, labels)})
    return ds


def run_contour(analysis, out, *, overrides=None, plot: bool = True, quiet: bool = False):
    from nuinfer.plotting import PROCESS_LABEL, plot_contours, save
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
    from nuinfer.spec import internal_key
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


def _scan_only(ds: xr.Dataset) -> xr.Dataset:
    keep = [v for v in ds.data_vars if set(ds[v].dims) <= {"m_X", "g_X"}]
    return ds[keep]


def compare(analysis, vary, *, model: str | None = None, grid: int | None = None, quiet: bool = False):
    """Scan the baseline and every one-at-a-time scenario; returns (stacked Dataset, scans, table rows)."""
    ana = _analysis(analysis)
    if grid:
        ana = ana.replace(**{"scan.m_X_MeV.n": grid, "scan.g_X.n": grid})
    model = model or ana.models[0]
    scenarios = {"baseline": ana}
    for key, values in parse_vary(vary):
        for v in values:
            scenarios[f"{key}={v}"] = ana.replace(**scenario_overrides(key, v))
    scans = {}
    for i, (label, a) in enumerate(scenarios.items()):
        _say(f"compare [{i + 1}/{len(scenarios)}] {model}: {label}", quiet)
        scans[label] = scan_model(a, model)
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
    stacked = stacked.assign_coords(scenario=("scenario", list(scans), {"long_name": "scenario"}))
    stacked["delta"].attrs.update(long_name="Delta of the scenario's statistic (chi2 scale)", units="1")
    rows = []
    base = g90_table(scans["baseline"])
    for label, s in scans.items():
        g = g90_table(s)
        rows.append({"scenario": label, **{f"g90@{k}MeV": v for k, v in g.items()},
                     **{f"ratio@{k}MeV": (v / base[k] if v and base[k] else None) for k, v in g.items()}})
    stacked.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
    stacked.attrs.update(model=model, vary=json.dumps(list(vary)))
    return stacked, scans, rows


def write_table(rows: list[dict], stem: Path) -> tuple[Path, Path]:
    """Write a list of dict rows as CSV and Markdown (atomic)."""
    cols = list(rows[0])
    fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    csv = "\n".join([",".join(cols)] + [",".join(fmt(r[c]) for c in cols) for r in rows]) + "\n"
    md = "| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |\n"
    md += "".join("| " + " | ".join(fmt(r[c]) for c in cols) + " |\n" for r in rows)
    p1, p2 = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(p1, csv)
    atomic_write_text(p2, md)
    return p1, p2


def run_compare(analysis, vary, out, *, model=None, quiet=False, grid=None, plot=True):
    from nuinfer.plotting import PROCESS_LABEL, plot_contours, save
    ana = _analysis(analysis)
    stacked, scans, rows = compare(ana, vary, model=model, grid=grid, quiet=quiet)
    out = Path(out)
    write_netcdf(stacked, out)
    csv, md = write_table(rows, out.with_name(out.stem + "_g90"))
    png = None
    if plot:
        styles = {lab: {"color": f"C{i % 10}", "ls": "-" if i == 0 else "--"} for i, lab in enumerate(scans)}
        fig = plot_contours(scans, styles=styles,
                            title=f"{PROCESS_LABEL[ana.process]}, {stacked.attrs['model']}: systematics")
        png = save(fig, out.with_suffix(".png"))
    return {"output": str(out), "plot": str(png) if png else None, "table_csv": str(csv), "table_md": str(md),
            "scenarios": list(scans), "g90": rows}


# --------------------------------------------------------------------------- reproduce the paper
def models_dir() -> Path:
    from nuinfer.exceptions import InvalidConfig
    d = Path(__file__).resolve().parents[2] / "models"
    if not d.is_dir():
        raise InvalidConfig(f"preset folder {d} not found: run from a source checkout (pip install -e .)",
                            key="models")
    return d


def preset(name: str, overrides: dict | None = None) -> _config.Analysis:
    return _config.load(models_dir() / f"{name}.toml", overrides)


DEFAULT_SYSTEMATICS = (
    "sigma_sys=0,0.2",
    "exposure=20,200",
    "threshold=1.0",
    "statistic=poisson",
    "binding=false",
)


def systematics_study(outdir: Path, *, grid: int | None = None, quiet: bool = False, plot: bool = True) -> dict:
    """Default study: sigma_sys, exposure, threshold, statistic, binding for V and S in both processes."""
    results = {}
    for proc in ("cevns", "eves"):
        for mo in ("V", "S"):
            vary = [v for v in DEFAULT_SYSTEMATICS if not (proc == "cevns" and v.startswith("binding"))]
            if proc == "cevns":
                vary.append("quenching=0.1735,adiabatic")
            ana = preset(f"fig3_{proc}")
            res = run_compare(ana, vary, outdir / f"systematics_{proc}_{mo}.nc", model=mo, quiet=quiet,
                              grid=grid, plot=plot)
            results[f"{proc}_{mo}"] = res
    return results


def reproduce(outdir="outputs", *, quick: bool = False, quiet: bool = False, only=None) -> dict:
    """Run Figs. 1-4, the default systematics study and a Bayesian example; write a report."""
    from nuinfer.plotting import PROCESS_LABEL, plot_contours, plot_spectra, save
    import matplotlib.pyplot as plt
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    steps = list(only) if only else ["fig1", "fig2", "fig3", "fig4", "systematics", "bayes"]
    grid = 40 if quick else None
    ov = {"scan.m_X_MeV.n": grid, "scan.g_X.n": grid} if grid else None
    t_start = time.perf_counter()
    files, limits, timings = [], {}, {}
    scans: dict = {}

    def step(name):
        _say(f"== {name} ({len(timings) + 1}/{len(steps)}) ==", quiet)
        return time.perf_counter()

    def contour_scans(fig, proc):
        ana = preset(f"{fig}_{proc}", ov)
        fm = ana.forward_model()
        for mo in ana.models:
            if (proc, mo) not in scans:
                scans[(proc, mo)] = scan_model(ana, mo, fm=fm)
        return ana

    if "fig1" in steps:
        t = step("fig1")
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        for ax, proc in zip(axes, ("cevns", "eves")):
            ds = spectrum_dataset(preset(f"fig1_{proc}"))
            p = outdir / f"fig1_{proc}.nc"
            write_netcdf(ds, p)
            files.append(p)
            per = {}
            for mo in ds["model"].values:
                one = ds[["total"]].copy()
                one["total"] = ("bin", ds["total_model"].sel(model=mo).values)
                per[str(mo)] = one
            plot_spectra(ds, per, ax=ax, title=f"{PROCESS_LABEL[proc]}: $g_X^2=10^{{-4}}$, $m_X$ = 1 GeV")
        files.append(save(fig, outdir / "fig1.png"))
        timings["fig1"] = time.perf_counter() - t

    panels = {
        "fig2": [(proc, ["S", "P", "V", "A", "T"], PROCESS_LABEL[proc]) for proc in ("cevns", "eves")],
        "fig3": [(None, ["V"], "universal vector"), (None, ["S"], "scalar")],
        "fig4": [(None, ["B-L"], r"$U(1)_{B-L}$"), (None, ["Lmu-Ltau"], r"$U(1)_{L_\mu-L_\tau}$")],
    }
    for fig_name in ("fig2", "fig3", "fig4"):
        if fig_name not in steps:
            continue
        t = step(fig_name)
        for proc in ("cevns", "eves"):
            ana = contour_scans(fig_name, proc)
            sel = {mo: scans[(proc, mo)] for mo in ana.models}
            ds = stack_scans(sel)
            ds.attrs.update(provenance_attrs(config=json.loads(ana.to_json())))
            p = outdir / f"{fig_name}_{proc}.nc"
            write_netcdf(ds, p)
            files.append(p)
            for mo in ana.models:
                limits[(proc, mo)] = g90_table(scans[(proc, mo)])
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        for ax, (proc, mos, title) in zip(axes, panels[fig_name]):
            if proc is not None:
                plot_contours({mo: scans[(proc, mo)] for mo in mos}, ax=ax, title=title)
            else:
                mo = mos[0]
                plot_contours({r"CE$\nu$NS": scans[("cevns", mo)], r"E$\nu$ES": scans[("eves", mo)]}, ax=ax,
                              title=title, styles={r"CE$\nu$NS": {"color": "tab:blue"},
                                                   r"E$\nu$ES": {"color": "tab:red", "ls": "--"}})
        files.append(save(fig, outdir / f"{fig_name}.png"))
        timings[fig_name] = time.perf_counter() - t

    syst = {}
    if "systematics" in steps:
        t = step("systematics")
        syst = systematics_study(outdir, grid=grid if quick else 100, quiet=True)
        for r in syst.values():
            files += [Path(r["output"]), Path(r["plot"]), Path(r["table_csv"]), Path(r["table_md"])]
        timings["systematics"] = time.perf_counter() - t

    bayes = {}
    if "bayes" in steps:
        t = step("bayes")
        from nuinfer.tasks import bayes as _bayes
        ana = preset("bayes_eves_vector")
        walkers = 16 if quick else None
        nsteps = 300 if quick else None
        post = outdir / "posterior_eves_vector.nc"
        bayes = _bayes.run_sample(ana, post, walkers=walkers, steps=nsteps, seed=None, progress=not quiet)
        files.append(post)
        bayes["plots"] = _bayes.run_plot(post, outdir=outdir)
        for v in bayes["plots"].values():
            if isinstance(v, str) and Path(v).exists():
                files.append(Path(v))
        timings["bayes"] = time.perf_counter() - t

    total = time.perf_counter() - t_start
    report = write_report(outdir, limits=limits, syst=syst, bayes=bayes, timings=timings, quick=quick,
                          total=total, scans=scans)
    files.append(report)
    return {"outdir": str(outdir), "files": sorted({str(f) for f in files}), "report": str(report),
            "timings_s": {k: round(v, 2) for k, v in timings.items()}}


def write_report(outdir: Path, *, limits, syst, bayes, timings, quick, total, scans) -> Path:
    from nuinfer import __version__
    lines = ["# nuinfer reproduction of Majumdar, Papoulias & Srivastava, PRD 106 (2022) 013001", ""]
    lines.append(f"nuinfer {__version__}; {'quick (coarse grids)' if quick else 'full'} run; total "
                 f"{total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ").")
    lines.append("")
    figs = [("fig1", "Fig. 1: CEvNS (left) and EvES (right) spectra, SM per source and SM + X at "
                     "g_X^2 = 1e-4, m_X = 1 GeV"),
            ("fig2", "Fig. 2: 90% CL sensitivities for S, P, V, A, T in CEvNS (left) and EvES (right)"),
            ("fig3", "Fig. 3: universal vector (left) and scalar (right), CEvNS vs EvES"),
            ("fig4", "Fig. 4: B-L (left) and Lmu-Ltau (right), CEvNS vs EvES")]
    for stem, cap in figs:
        if (outdir / f"{stem}.png").exists():
            lines += [f"## {cap}", "", f"![{stem}]({stem}.png)", ""]
    if limits:
        thr = next(iter(scans.values())).attrs.get("threshold")
        lines += ["## Limits: lowest excluded g_X (g90) at reference masses", "",
                  f"Eq. 26, sigma_sys = sigma_bg = 10%, 1 t yr, Delta chi2 threshold {thr:.3f} "
                  "(90% CL, 2 dof).", ""]
        cols = [f"{m:g}" for m in REFERENCE_MASSES_MEV]
        lines.append("| process | model | " + " | ".join(f"m_X = {c} MeV" for c in cols) + " |")
        lines.append("| --- | --- | " + " | ".join("---" for _ in cols) + " |")
        for (proc, mo), g in sorted(limits.items()):
            lines.append(f"| {proc} | {mo} | " + " | ".join(
                "-" if g.get(c) is None else f"{g[c]:.3g}" for c in cols) + " |")
        lines.append("")
    if syst:
        lines += ["## Systematic-assumption comparisons", ""]
        for key, r in syst.items():
            png = Path(r["plot"]).name
            lines += [f"### {key.replace('_', ', ')}", "", f"![{key}]({png})", "",
                      Path(r["table_md"]).read_text(), ""]
    if bayes:
        lines += ["## Bayesian example: universal vector, EvES", ""]
        for k, v in bayes.get("plots", {}).items():
            if isinstance(v, str) and v.endswith(".png"):
                lines += [f"![{k}]({Path(v).name})", ""]
        summ = {k: v for k, v in bayes.items() if k != "plots"}
        lines += ["```", json.dumps(summ, indent=2, sort_keys=True, default=str), "```", ""]
    p = outdir / "report.md"
    atomic_write_text(p, "\n".join(lines))
    return p

"""Toy-calibrated (Neyman) limits for an analysis file: one NetCDF with both calibrations.

:func:`run_calibrated_contour` is the task behind ``nuinfer contour --calibrate toys`` (see the
issue-15 wiring in ``docs/coverage.md``).  For one model of a xenon-family analysis it

1. computes the templates on the analysis grid and the ordinary (asymptotic) profile scan with
   the threshold ``chi2.ppf(cl, ndof)``: ``ndof = 1`` and the Delta taken per mass for
   ``mode="raster"``, ``ndof = 2`` and the global Delta for ``mode="joint"`` (the same
   statistic ``t`` as the toys, :mod:`nuinfer.tasks.calibration`);
2. extracts the asymptotic excluded intervals and region boundary
   (:func:`~nuinfer.tasks.contours.contour` with the exact template refiner);
3. runs :func:`~nuinfer.tasks.calibration.calibrated_limits` on the same templates, grid,
   statistic and data: per mass the calibrated g90, the asymptotic g90 (same rule) and the toy
   critical value with its Monte Carlo error;
4. on request (``coverage=True``) measures a coverage map (fraction of toys excluding their own
   truth, asymptotic and calibrated thresholds, binomial errors) at a few masses and couplings
   around the limit;

and writes everything to ONE NetCDF whose root attrs say ``calibration = "toys"`` with
``n_toys``, ``seed``, ``chunk_size``, ``nuisances``, ``statistic`` and ``mode``.  Every random
number comes from :func:`nuinfer.engine.run_chunks` (``SeedSequence(seed)``): the file is the
same for any scheduler and any number of workers.

Only the lower boundary of the excluded region above the best fit is calibrated (as in
:func:`~nuinfer.tasks.calibration.calibrated_limits`); the file's ``interval_g_lo_calibrated``
replaces the lower end of that interval and keeps every other interval end asymptotic (flag
``interval_calibrated``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer.engine import check_scheduler, check_seed
from nuinfer.exceptions import InvalidConfig

__all__ = ["CONFIG_SCHEDULER_KEY", "calibrated_contour_dataset", "run_calibrated_contour"]

#: Analysis-file key read for the scheduler when ``scheduler=None`` (owned by nuinfer/spec/).
CONFIG_SCHEDULER_KEY = "statistics.scheduler"
#: Coupling factors (times the asymptotic g90 at that mass) of the coverage map.
COVERAGE_FACTORS = (0.5, 1.0, 2.0)


def _config_scheduler(ana):
    st = ana.cfg.get("statistics", {})
    sch = st.get("scheduler")
    if sch in (None, "", "inprocess"):
        return None
    return check_scheduler(sch, key=CONFIG_SCHEDULER_KEY)


def _say(msg, quiet):
    from nuinfer.tasks.xenon import _say as say
    say(msg, quiet)


def _coverage_masses(m, g90, n):
    """Up to ``n`` masses spread in log over those with a finite limit (deterministic)."""
    ok = np.flatnonzero(np.isfinite(g90) & (g90 > 0))
    if ok.size == 0:
        return np.empty(0, dtype=int)
    pick = np.unique(np.round(np.linspace(0, ok.size - 1, min(n, ok.size))).astype(int))
    return ok[pick]


def calibrated_contour_dataset(
    ana,
    *,
    model: str | None = None,
    n_toys: int = 1000,
    mode: str = "raster",
    nuisances: str = "sampled",
    seed: int = 1,
    statistic: str | None = None,
    n_bisect: int = 5,
    chunk_size: int = 1,
    scheduler=None,
    n_workers: int | None = None,
    coverage: bool = False,
    coverage_masses: int = 5,
    coverage_toys: int | None = None,
    templates=None,
    progress=None,
    quiet: bool = True,
) -> xr.Dataset:
    """The dataset written by :func:`run_calibrated_contour` (no file I/O; see there)."""
    from nuinfer.io import provenance_attrs
    from nuinfer.tasks.calibration import (
        MODES,
        NUISANCES,
        TOY_STATISTICS,
        _check_choice,
        _check_n,
        calibrated_limits,
    )
    from nuinfer.tasks.calibration import coverage as coverage_fn
    from nuinfer.tasks.contours import contour, template_refiner
    from nuinfer.tasks.xenon import observed_signal
    from nuinfer.tasks.template_scan import scan

    mode = _check_choice(mode, tuple(MODES), "mode")
    nuisances = _check_choice(nuisances, NUISANCES, "nuisances")
    n_toys = _check_n(n_toys, "n_toys")
    seed = check_seed(seed)
    chunk_size = _check_n(chunk_size, "chunk_size")
    coverage_masses = _check_n(coverage_masses, "coverage_masses")
    cov_toys = n_toys if coverage_toys is None else _check_n(coverage_toys, "coverage_toys")
    st = ana.cfg["statistics"]
    statistic = statistic or st["statistic"]
    _check_choice(statistic, tuple(TOY_STATISTICS), "statistic")
    if statistic not in ("eq26", "poisson"):
        # the asymptotic scan has no gauss_hyp profile over a grid; the toys do
        raise InvalidConfig(f"the calibrated contour needs a scan statistic ('eq26' or "
                            f"'poisson'); got {statistic!r}", key="statistic")
    model = model or ana.models[0]
    if model not in ana.models:
        raise InvalidConfig(f"model {model!r} is not in the analysis (models: "
                            f"{', '.join(ana.models)})", key="model")
    if scheduler is None:
        scheduler = _config_scheduler(ana)
    else:
        scheduler = check_scheduler(scheduler)
    kw = dict(statistic=statistic, sigma_sys=st["sigma_sys"], sigma_bg=st["sigma_bg"],
              min_expected=st["min_expected"])
    cl = float(st["cl"])
    timings = {}

    t0 = time.perf_counter()
    if templates is None:
        fm = ana.forward_model()
        templates = fm.templates(ana.interaction(model), ana.grid("m_X_MeV"))
    g_grid = ana.grid("g_X")
    data = observed_signal(ana, templates["R_SM"].values)
    timings["templates_s"] = time.perf_counter() - t0

    # 1-2. asymptotic scan and its intervals (same t as the toys)
    t0 = time.perf_counter()
    ndof = MODES[mode]
    sc = scan(templates, g_grid, data=data, cl=cl, ndof=ndof, profiler="analytic",
              reference="per_mass" if mode == "raster" else "global", **kw)
    cres = contour(sc, refine=template_refiner(templates, sc))
    ex = cres.to_dataset()
    timings["asymptotic_s"] = time.perf_counter() - t0
    _say(f"calibrated contour: {ana.name} {model}: asymptotic scan {sc.sizes['m_X']} x "
         f"{sc.sizes['g_X']} in {timings['asymptotic_s']:.1f} s; calibrating with {n_toys} toys "
         f"per tested point ({mode}, {statistic}, nuisances {nuisances})", quiet)

    # 3. calibrated limits
    t0 = time.perf_counter()
    lim = calibrated_limits(templates, g_grid, data=data, mode=mode, n_toys=n_toys, cl=cl,
                            seed=seed, nuisances=nuisances, n_bisect=n_bisect,
                            scheduler=scheduler, n_workers=n_workers, chunk_size=chunk_size,
                            progress=progress, **kw)
    timings["calibration_s"] = time.perf_counter() - t0

    ds = sc.copy()
    ds.attrs = {}
    sv = sc.attrs["statistic_variable"]
    for v in (sv, sc.attrs["statistic_scale"]):
        ds[v].attrs["calibration"] = "asymptotic"
    keep_ex = [v for v in ex.data_vars if v not in ("g90", "g90_status")]
    for v in keep_ex:
        ds[v] = ex[v]
    ds["excluded"].attrs["calibration"] = "asymptotic"
    ds = ds.rename({"excluded": "excluded_asymptotic"})
    ds["g90_asymptotic_scan"] = ex["g90"]
    ds["g90_asymptotic_scan"].attrs.update(
        calibration="asymptotic",
        long_name="lowest excluded g_X on the refined asymptotic scan (0: none)")
    ds["g90_asymptotic_scan_status"] = ex["g90_status"]
    for v in lim.data_vars:
        name = v if v in ("g90_calibrated", "g90_asymptotic") else f"calibration_{v}"
        if v in ("t_crit", "t_crit_err"):
            name = v
        ds[name] = ("m_X", lim[v].values, dict(lim[v].attrs))
    ds["g90_calibrated"].attrs["calibration"] = "toys"
    ds["g90_asymptotic"].attrs["calibration"] = "asymptotic"

    # calibrated excluded intervals: the lower end of the interval holding the first
    # asymptotic crossing above the best fit is replaced by the calibrated g90
    lo = ds["interval_g_lo"].values.copy()
    hi = ds["interval_g_hi"].values
    flag = np.zeros(lo.size, dtype=np.int8)
    start, nint = ds["interval_start"].values, ds["n_intervals"].values
    g_a, g_c = lim["g90_asymptotic"].values, lim["g90_calibrated"].values
    for i in range(g_a.size):
        if not (np.isfinite(g_a[i]) and np.isfinite(g_c[i])):
            continue
        for k in range(int(start[i]), int(start[i] + nint[i])):
            if lo[k] * (1 - 1e-6) <= g_a[i] <= hi[k] * (1 + 1e-6):
                lo[k], flag[k] = min(g_c[i], hi[k]), 1
                break
    ds["interval_g_lo_calibrated"] = ("interval", lo, {
        "units": "1", "calibration": "toys",
        "long_name": "lower end of the excluded interval with the toy-calibrated boundary "
                     "(interval_calibrated == 1) or the asymptotic one (0)"})
    ds["interval_calibrated"] = ("interval", flag, {
        "units": "1", "long_name": "interval lower end calibrated with toys (1) or asymptotic (0)"})

    # 4. coverage map
    cov_summary = None
    if coverage:
        t0 = time.perf_counter()
        mi = _coverage_masses(templates["m_X"].values, g_a, coverage_masses)
        if mi.size:
            m_sel = templates["m_X"].values[mi]
            truths = [(float(m_sel[a]), float(f * g_a[mi[a]]))
                      for a in range(mi.size) for f in COVERAGE_FACTORS]
            cov = coverage_fn(templates, g_grid, truths, mode=mode, n_toys=cov_toys, cl=cl,
                              seed=seed + 1 if seed + 1 < 2**63 else 0, nuisances=nuisances,
                              scheduler=scheduler, n_workers=n_workers, chunk_size=chunk_size,
                              progress=progress, **kw)
            shape = (mi.size, len(COVERAGE_FACTORS))
            cdims = ("coverage_m_X", "coverage_factor")
            for v in cov.data_vars:
                ds[f"coverage_{v}" if not v.startswith("fraction") else v] = (
                    cdims, cov[v].values.reshape(shape), dict(cov[v].attrs))
            ds["coverage_g_X"] = (cdims, cov["g_X"].values.reshape(shape), {
                "units": "1", "long_name": "true g_X of the coverage toys"})
            ds = ds.assign_coords(
                coverage_m_X=("coverage_m_X", m_sel, {"units": "MeV",
                                                      "long_name": "true m_X of the coverage toys"}),
                coverage_factor=("coverage_factor", np.asarray(COVERAGE_FACTORS), {
                    "units": "1", "long_name": "true g_X / g90_asymptotic at that mass"}))
            fa = cov["fraction_excluded_asymptotic"].values
            fc = cov["fraction_excluded_calibrated"].values
            cov_summary = dict(
                n_truths=len(truths), n_toys=cov_toys, nominal=1.0 - cl,
                asymptotic_mean=float(fa.mean()), calibrated_mean=float(fc.mean()),
                asymptotic_range=[float(fa.min()), float(fa.max())],
                calibrated_range=[float(fc.min()), float(fc.max())])
        timings["coverage_s"] = time.perf_counter() - t0

    attrs = {k: v for k, v in lim.attrs.items()}
    attrs.update({f"asymptotic_{k}": v for k, v in sc.attrs.items()
                  if k in ("threshold", "threshold_rule", "scan_mode", "delta_reference",
                           "statistic_min", "statistic_sm", "best_fit_is_sm",
                           "best_fit_m_X_MeV", "best_fit_g_X", "n_not_converged",
                           "data_source", "profile_method")})
    attrs.update({k: v for k, v in sc.attrs.items()
                  if k in ("process", "target", "exposure_tonne_year") and k not in attrs})
    attrs.update(
        calibration="toys",
        calibration_comment=(
            "g90_calibrated, t_crit, interval_g_lo_calibrated and coverage_* from toys; the "
            f"{sv} surface, excluded_asymptotic, interval_g_lo/hi, g90_asymptotic and the "
            "contour_* lines use the asymptotic threshold chi2.ppf(cl, ndof)"),
        model=model,
        analysis=ana.name,
        coverage=int(bool(coverage)),
        coverage_rule=("truths at coverage_m_X x coverage_factor * g90_asymptotic; toys seeded "
                       "with seed + 1" if coverage else ""),
        scheduler_independent=1,
    )
    attrs.update(provenance_attrs(config=json.loads(ana.to_json()), seed=seed))
    ds.attrs = attrs
    ds.attrs["timings_json"] = json.dumps({k: round(v, 3) for k, v in timings.items()})
    ds.attrs["_coverage_summary_json"] = json.dumps(cov_summary)
    return ds


def run_calibrated_contour(
    analysis,
    out,
    *,
    model: str | None = None,
    n_toys: int = 1000,
    mode: str = "raster",
    nuisances: str = "sampled",
    seed: int = 1,
    statistic: str | None = None,
    n_bisect: int = 5,
    chunk_size: int = 1,
    scheduler=None,
    n_workers: int | None = None,
    coverage: bool = False,
    coverage_masses: int = 5,
    coverage_toys: int | None = None,
    overrides=None,
    progress=None,
    quiet: bool = False,
) -> dict:
    """Toy-calibrated 90% CL limits of one model of an analysis; ONE NetCDF, JSON-able summary.

    Parameters
    ----------
    analysis : str, path, mapping or Analysis
        A xenon-family analysis (``nuinfer.spec.xenon.load``).
    out : str or path
        Output NetCDF (its directory must exist).
    model : str, optional
        One of the analysis' models. Default: the first.
    n_toys : int
        Toys per tested point. Default 1000.
    mode : {"raster", "joint"}
        1-d per-mass construction (ndof 1) or the joint 2-d region (ndof 2).
    nuisances : {"sampled", "fixed"}
        True normalisation of the toys: drawn from its constraint (default) or 0.
    seed : int
        In [0, 2**63); with ``chunk_size`` it fixes every toy (coverage toys use ``seed + 1``).
    statistic : {"eq26", "poisson"}, optional
        Default: the analysis' ``[statistics] statistic``.
    n_bisect : int
        Bisections of the calibrated boundary per mass. Default 5.
    chunk_size : int
        Masses per engine chunk (one random stream each). Default 1.
    scheduler : None, str or distributed.Client
        ``None``: the analysis' ``[statistics] scheduler`` if present, else in-process;
        ``"local"``, ``"local-threads"``, ``"tcp://host:port"`` (:func:`nuinfer.engine.run_chunks`).
    n_workers : int, optional
        Workers of a local cluster (default 2).
    coverage : bool
        Also write the coverage map (``coverage_masses`` masses x :data:`COVERAGE_FACTORS`).
    coverage_masses, coverage_toys
        Size of the coverage map and its toys per truth (default ``n_toys``).
    overrides : dict, optional
        Dotted-key overrides of the analysis (``{"scan.m_X_MeV.n": 40}``).
    progress : None, bool or callable
        Engine progress (see :func:`nuinfer.engine.run_chunks`).
    quiet : bool
        No ``[nuinfer]`` lines on stderr.

    Returns
    -------
    dict
        JSON-able: ``out``, ``model``, ``mode``, ``statistic``, ``n_toys``, ``seed``,
        ``nuisances``, ``g90_calibrated`` / ``g90_asymptotic`` at the reference masses,
        ``ratio_median`` (calibrated / asymptotic over masses), ``status_counts``,
        ``t_crit_median`` and ``t_crit_err_median``, ``coverage`` (means, or None),
        ``timings``.
    """
    from nuinfer.io import write_netcdf
    from nuinfer.tasks.xenon import REFERENCE_MASSES_MEV, _analysis

    ana = _analysis(analysis, overrides)
    t0 = time.perf_counter()
    ds = calibrated_contour_dataset(
        ana, model=model, n_toys=n_toys, mode=mode, nuisances=nuisances, seed=seed,
        statistic=statistic, n_bisect=n_bisect, chunk_size=chunk_size, scheduler=scheduler,
        n_workers=n_workers, coverage=coverage, coverage_masses=coverage_masses,
        coverage_toys=coverage_toys, progress=progress, quiet=quiet)
    cov = json.loads(ds.attrs.pop("_coverage_summary_json"))
    out = Path(out)
    write_netcdf(ds, out)
    total = time.perf_counter() - t0
    m = ds["m_X"].values
    gc, ga = ds["g90_calibrated"].values, ds["g90_asymptotic"].values

    def at(g, mm):
        if mm < m[0] * (1 - 1e-9) or mm > m[-1] * (1 + 1e-9):
            return None
        ok = np.isfinite(g) & (g > 0)
        if not ok.any():
            return None
        v = np.interp(np.log(mm), np.log(m), np.log(np.where(ok, g, 1.0))
                      + np.where(ok, 0.0, np.nan))
        return float(np.exp(v)) if np.isfinite(v) else None

    ratio = gc / ga
    ratio = ratio[np.isfinite(ratio)]
    status = ds["calibration_status"].values
    tc = ds["t_crit"].values
    summary = dict(
        out=str(out), analysis=ana.name, model=ds.attrs["model"], mode=ds.attrs["mode"],
        statistic=ds.attrs["statistic"], calibration="toys", n_toys=int(ds.attrs["n_toys"]),
        seed=int(ds.attrs["seed"]), chunk_size=int(ds.attrs["chunk_size"]),
        nuisances=ds.attrs["nuisances"], n_masses=int(m.size),
        g90_calibrated={f"{mm:g}": at(gc, mm) for mm in REFERENCE_MASSES_MEV},
        g90_asymptotic={f"{mm:g}": at(ga, mm) for mm in REFERENCE_MASSES_MEV},
        ratio_median=float(np.median(ratio)) if ratio.size else None,
        ratio_range=[float(ratio.min()), float(ratio.max())] if ratio.size else None,
        status_counts={str(k): int(v) for k, v in zip(*np.unique(status, return_counts=True))},
        t_crit_median=float(np.nanmedian(tc)) if np.isfinite(tc).any() else None,
        t_crit_err_median=(float(np.nanmedian(ds["t_crit_err"].values))
                           if np.isfinite(tc).any() else None),
        t_asymptotic=float(ds.attrs["threshold_asymptotic"]),
        coverage=cov,
        timings={**json.loads(ds.attrs["timings_json"]), "total_s": round(total, 3)},
    )
    _say(f"calibrated contour: wrote {out} ({total:.1f} s; calibrated / asymptotic g90 median "
         f"{summary['ratio_median']})", quiet)
    return summary

"""Bayesian workflow behind ``nuinfer sample`` and ``nuinfer plot`` (usable from Python too).

* :func:`run_sample` -- posterior over ``(log10 m_X, log10 g_X, a)`` for one model of an
  analysis, sampled with emcee and written atomically as ArviZ-layout NetCDF (see
  :mod:`nuinfer.tasks.posterior`); ``resume=True`` continues a file to a *total* number of steps.
* :func:`run_plot` -- corner plot, the (m_X, g_X) marginal with the frequentist 90% CL contour
  of the same analysis, and the 90% credible upper limit on g_X in mass slices (CSV + Markdown),
  every limit with its Monte Carlo standard error and a prior-dominance flag.
* :func:`prior_check` -- prior sensitivity: each prior bound moved by a stated number of decades
  and the shift of every credible limit, with its MCSE.

The frequentist contour is computed at sample time (profile scan of the same analysis, same data
and statistic, on the template mass grid and 201 log-spaced couplings spanning the prior box, with
the analysis's ``[statistics]`` ``cl``/``ndof`` threshold) and stored in the group
``/frequentist``, so plotting needs no physics.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer.spec import xenon as _config
from nuinfer.exceptions import DataFileError, InvalidConfig, NuinferError, UnphysicalInput
from nuinfer.tasks import posterior as _post
from nuinfer.io import provenance_attrs, read_datatree, write_netcdf

__all__ = ["credible_upper_limits", "posterior_report", "prior_check", "run_plot", "run_sample"]

#: Couplings of the frequentist scan stored with every posterior (log-spaced over the prior box).
FREQ_G_POINTS = 201
#: Largest per-bin log-likelihood array (walkers x steps x bins) written by default.
POINTWISE_MAX_VALUES = 10_000_000
#: Interpolation error above which ``run_sample`` prints a warning.
INTERP_WARN = 1e-3
#: Config keys that may differ between a stored run and a resumed one.
_RESUME_FREE = ("steps", "burn", "thin")


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


def _analysis(a) -> _config.Analysis:
    if isinstance(a, _config.Analysis):
        return a
    return _config.load(a)


def _drop_none(d):
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    return d


def _replace(ana: _config.Analysis, **overrides) -> _config.Analysis:
    """``ana`` with dotted-key overrides, re-validated.

    Like ``Analysis.replace`` but drops keys whose merged default is ``None`` first (e.g.
    ``posterior.a.sigma``), which the schema would reject on re-validation.
    """
    raw = _drop_none(copy.deepcopy(ana.cfg))
    for key, val in overrides.items():
        _config.set_dotted(raw, key, val)
    return _config.Analysis(_config.validate(raw), ana.path)


def _pick_model(ana: _config.Analysis, model: str | None) -> str:
    if model is None:
        return ana.models[0]
    from nuinfer.physics.mediators import canonical_model
    try:
        name = canonical_model(model)
    except InvalidConfig as exc:
        raise InvalidConfig(str(exc).split(": ", 1)[-1], key="--model") from None
    if name not in ana.models:
        raise InvalidConfig(f"model {model!r} is not in this analysis; choose one of "
                            f"{', '.join(ana.models)}", key="--model")
    return name


def parameters_from_config(ana: _config.Analysis) -> tuple:
    """The sampled parameters and priors of an analysis's ``[posterior]`` table.

    ``log10_m_X`` and ``log10_g_X`` are uniform in their boxes; ``a`` has a Gaussian prior of
    width ``[posterior.a].sigma`` or, when unset, ``[statistics].sigma_sys`` (0 fixes ``a``).
    """
    p = ana.cfg["posterior"]
    sigma = p["a"].get("sigma")
    if sigma is None:
        sigma = ana.cfg["statistics"]["sigma_sys"]
    pm, pg = p["log10_m_X"], p["log10_g_X"]
    return _post.mediator_parameters((pm["lo"], pm["hi"]), (pg["lo"], pg["hi"]), float(sigma),
                                     m_label=pm.get("label"), g_label=pg.get("label"))


def _diff_keys(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            kp = f"{prefix}.{k}" if prefix else str(k)
            if k not in a or k not in b:
                out.append(kp)
            else:
                out += _diff_keys(a[k], b[k], kp)
        return out
    return [] if a == b else [prefix]


def _comparable(cfg: dict) -> dict:
    c = copy.deepcopy(cfg)
    for k in _RESUME_FREE:
        c.get("posterior", {}).pop(k, None)
    return json.loads(json.dumps(c, sort_keys=True, default=str))


def _bin_coords(templates: xr.Dataset) -> dict:
    return {k: ("bin", v.values, dict(v.attrs)) for k, v in templates.coords.items()
            if v.dims == ("bin",) and k != "bin"}


def _frequentist(ana: _config.Analysis, model: str, fm, templates: xr.Dataset, pars) -> xr.Dataset:
    """Profile scan of the same analysis over the prior box -> Delta surface and g90 per mass."""
    from nuinfer.tasks.contours import contour
    from nuinfer.tasks.xenon import scan_model, with_limits
    pg = pars[1]
    box = _replace(ana, **{"scan.g_X.lo": 10.0 ** pg.lo, "scan.g_X.hi": 10.0 ** pg.hi,
                         "scan.g_X.n": FREQ_G_POINTS, "scan.g_X.scale": "log",
                         "statistics.profiler": "analytic"})
    scan = scan_model(box, model, fm=fm, templates=templates)
    var = scan.attrs["statistic_variable"]
    keep = ("statistic", "statistic_variable", "cl", "ndof", "threshold", "threshold_rule",
            "scan_mode", "sigma_sys", "sigma_bg", "profiler", "data_source", "dropped_bins")
    ds = xr.Dataset({var: scan[var].transpose("m_X", "g_X")},
                    attrs={k: scan.attrs[k] for k in keep if k in scan.attrs})
    ds[var].attrs = {"units": "1", "long_name": scan[var].attrs.get("long_name", var)}
    ds = ds.drop_vars([c for c in ds.coords if c not in ("m_X", "g_X")])
    ds.attrs["description"] = ("frequentist counterpart: profile scan of the same analysis "
                               "(nuinfer.tasks.xenon.scan_model) on the template mass grid, with g90 "
                               "(0 where nothing is excluded) and the excluded g_X intervals per mass")
    return with_limits(ds, contour(scan))


def run_sample(analysis, out, **kwargs) -> dict:
    """Sample the posterior of an analysis (see :func:`_run_sample` for every argument).

    Errors about analysis-file keys name the keys as written in the file.
    """
    from nuinfer.spec.schema import translated
    ana = _analysis(analysis)
    with translated(ana.family):
        return _run_sample(ana, out, **kwargs)


def _run_sample(analysis, out, *, walkers: int | None = None, steps: int | None = None,
               seed: int | None = None, resume: bool = False, progress: bool = True,
               model: str | None = None, log_likelihood: bool | None = None,
               data=None) -> dict:
    """Sample the posterior of one model of an analysis and write it as NetCDF.

    Parameters
    ----------
    analysis : str, os.PathLike, dict or nuinfer.spec.xenon.Analysis
        The analysis (TOML path, mapping or validated object); its ``[posterior]`` table gives
        the priors, walkers, steps, seed, burn-in, thinning and template mass grid.
    out : str or os.PathLike
        Output NetCDF file (written atomically).
    walkers, steps, seed : int, optional
        Override ``[posterior]``; ``steps`` is the *total* number of steps (also with
        ``resume``).  With ``resume`` and ``walkers``/``seed`` unset, the stored values are used.
    resume : bool
        Continue ``out`` to a total of ``steps`` steps.  The analysis must be the stored one
        (apart from ``posterior.steps``, ``burn``, ``thin``); the continued chain is bit-for-bit
        the chain of an uninterrupted run with the same seed.
    progress : bool
        Progress line and diagnostics on stderr (``False`` silences both).
    model : str, optional
        Which model of the analysis (default: the first; with ``resume``, the stored one).
    log_likelihood : bool, optional
        Write the per-bin ``log_likelihood`` group.  Default ``None``: only when it has at most
        :data:`POINTWISE_MAX_VALUES` values (walkers x steps x bins).
    data : str or os.PathLike, optional
        Override ``[statistics].data``: a counts file (observed events per bin, background
        included, as for ``nuinfer contour``) or ``"asimov"``.

    Returns
    -------
    dict
        JSON-able summary: output path, model, walkers, steps, seed, diagnostics (tau, ESS,
        acceptance, burn-in), interpolation error, posterior summaries (quantiles, mean) each
        with its Monte Carlo standard error, the prior-dominated parameters and the 90% credible
        limit on g_X per mass slice with its MCSE, the warnings, and timings.

    Raises
    ------
    InvalidConfig, UnphysicalInput
        Bad configuration or arguments (too few walkers, ``steps < 1``, a resume with a
        different configuration or fewer steps than stored).
    DataFileError
        ``resume`` on a missing or foreign file; unreadable observed counts.
    """
    t_start = time.perf_counter()
    quiet = not progress
    out = Path(out)
    ana = _analysis(analysis)
    tree = None
    if resume:
        if not out.is_file():
            raise DataFileError(f"cannot resume: {str(out)!r} does not exist; run without "
                                "--resume first", key="--resume")
        tree = read_datatree(out)
        try:
            stored_cfg = json.loads(tree.attrs["config_json"])
            stored_model = str(tree.attrs["model"])
        except (KeyError, ValueError):
            raise DataFileError(f"{out} is not a nuinfer posterior file (no config_json/model "
                                "attrs); start a new run without --resume", key="--resume") from None
        walkers = stored_cfg["posterior"]["walkers"] if walkers is None else walkers
        seed = stored_cfg["posterior"]["seed"] if seed is None else seed
        model = stored_model if model is None else model
    overrides = {f"posterior.{k}": v for k, v in
                 (("walkers", walkers), ("steps", steps), ("seed", seed)) if v is not None}
    if data is not None:
        overrides["statistics.data"] = str(data)
    if overrides:
        ana = _replace(ana, **overrides)
    model = _pick_model(ana, model)
    post_cfg = ana.cfg["posterior"]
    pars = parameters_from_config(ana)

    if tree is not None:
        diff = _diff_keys(_comparable(stored_cfg), _comparable(ana.cfg))
        if diff:
            raise InvalidConfig(f"cannot resume {out}: the analysis differs from the stored one "
                                f"in {', '.join(diff)}; use the same file and options, or start "
                                "a new run", key="--resume")
        if model != stored_model:
            raise InvalidConfig(f"cannot resume {out}: it samples model {stored_model!r}, not "
                                f"{model!r}", key="--model")
        like = _post.TemplateLikelihood.from_constant_data(tree["constant_data"].to_dataset(),
                                                           tree["observed_data"].to_dataset())
        previous = _post.run_from_datatree(tree)
        freq = tree["frequentist"].to_dataset() if "frequentist" in tree.children else None
        observed = tree["observed_data"].to_dataset()
        constant = tree["constant_data"].to_dataset()
        interp_attrs = {k: v for k, v in tree.attrs.items() if k.startswith("interpolation")}
        keep_attrs = {k: tree.attrs[k] for k in ("process", "config_path") if k in tree.attrs}
        _say(f"sample: resuming {out} at step {previous.nsteps} -> {post_cfg['steps']}", quiet)
        t_phys = 0.0
    else:
        previous = None
        t0 = time.perf_counter()
        fm = ana.forward_model()
        inter = ana.interaction(model)
        n_grid = int(post_cfg["mass_grid_n"])
        x = np.linspace(pars[0].lo, pars[0].hi, n_grid)
        _say(f"sample: {ana.name}: model {model}, templates on {n_grid} masses "
             f"(log10 m_X in [{pars[0].lo:g}, {pars[0].hi:g}])", quiet)
        templates = fm.templates(inter, 10.0 ** x)
        T = templates["T"].values
        r_sm = templates["R_SM"].values
        from nuinfer.tasks.xenon import observed_signal
        obs = observed_signal(ana, r_sm)
        st = ana.cfg["statistics"]
        like = _post.TemplateLikelihood(x, T[1], T[2], r_sm, data=obs, statistic=st["statistic"],
                                        sigma_bg=st["sigma_bg"], min_expected=st["min_expected"])
        # interpolation error at the grid midpoints, where it is largest
        xm = 0.5 * (x[1:] + x[:-1])
        Tm = fm.templates(inter, 10.0 ** xm)["T"].values
        lg = np.linspace(pars[1].lo, pars[1].hi, 41)
        err = _post.interpolation_error(like, xm, Tm[1], Tm[2], lg)
        interp_attrs = {
            "interpolation": "cubic spline (not-a-knot) of T1, T2 in log10 m_X",
            "interpolation_grid_n": n_grid,
            "interpolation_max_rel_error": err["max_rel_counts"],
            "interpolation_check": ("max |R_interp - R_exact| / R_exact over the "
                                    f"{xm.size} grid midpoints, 41 couplings spanning the prior "
                                    "box and all used bins"),
        }
        if err["max_rel_counts"] > INTERP_WARN:
            _say(f"WARNING: template interpolation error {err['max_rel_counts']:.1e} > "
                 f"{INTERP_WARN:g} relative on counts; raise [posterior].mass_grid_n", quiet)
        freq = _frequentist(ana, model, fm, templates, pars)
        counts = like.data
        observed = xr.Dataset(
            {"counts": ("bin", counts, {
                "units": "events",
                "long_name": ("observed counts (Asimov: SM expectation)" if obs is None else
                              "observed counts minus the known background, D = n - R_bg "
                              "(may be negative)")})},
            coords=_bin_coords(templates))
        constant = like.constant_data().assign_coords(_bin_coords(templates))
        sig_a = pars[2].sigma if len(pars) > 2 else 0.0
        constant["exposure_tonne_year"] = ((), float(fm.exposure_tonne_year), {
            "units": "t yr", "long_name": "exposure"})
        constant["sigma_sys"] = ((), float(st["sigma_sys"]), {
            "units": "1", "long_name": "systematic normalisation uncertainty ([statistics])"})
        constant["sigma_a"] = ((), float(sig_a), {
            "units": "1", "long_name": "width of the Gaussian prior on a (0: a fixed)"})
        keep_attrs = {"process": ana.process, "config_path": str(ana.path or "")}
        t_phys = time.perf_counter() - t0

    posterior = _post.Posterior.from_likelihood(pars, like)
    run = _post.run_sampler(posterior, nwalkers=int(post_cfg["walkers"]),
                            nsteps=int(post_cfg["steps"]), seed=int(post_cfg["seed"]),
                            previous=previous, progress=progress)
    diag = _post.diagnostics(run, burn=post_cfg.get("burn"), thin=int(post_cfg.get("thin", 1)))
    for line in diag.messages:
        _say(line, quiet)

    # the post-burn-in draws laid out as chains_from_tree gives them from the file (a C-ordered
    # (walker, step) array per parameter, then sliced), so run_plot can reuse this report
    kept = {n: np.ascontiguousarray(run.chain[:, :, j])[:, diag.burn::diag.thin]
            for j, n in enumerate(run.names)}
    report = posterior_report(kept, pars)
    for line in report["messages"]:
        _say(line, quiet)
    lim = report["credible_limits"]

    n_values = run.nwalkers * run.nsteps * like.r_sm.size
    pointwise = (n_values <= POINTWISE_MAX_VALUES) if log_likelihood is None else bool(log_likelihood)
    attrs = provenance_attrs(config=json.loads(ana.to_json()), seed=int(post_cfg["seed"]))
    attrs.update(keep_attrs)
    attrs.update(interp_attrs)
    attrs.update(
        creation_library_version=attrs.get("nuinfer_version", ""),
        model=model, statistic=like.statistic, data_source=like.data_source,
        analysis_name=ana.name, bins_used=int(like.n_bins),
        dropped_bins=json.dumps(np.flatnonzero(~like.bin_used).tolist()),
        log_likelihood_written=int(pointwise),
        likelihood=("log L = -chi2_data/2 (Eq. 26 without its constraint term)"
                    if like.statistic == "eq26" else
                    "log L = -twice_nll_data/2 (Poisson, saturated, without constraint)"),
        priors=json.dumps({p.name: p.describe() for p in pars}),
        posterior_summary=json.dumps(_jsonable(report["summary"])),
        prior_dominated=json.dumps(report["prior_dominated"]),
        prior_dominance=json.dumps(_jsonable(report["prior_dominance"])),
        prior_dominance_rule=PRIOR_DOMINANCE_RULE,
        g90_prior_dominated_slices_MeV=json.dumps(
            [_num(m, 4) for m in lim["m_center"][lim["prior_dominated"]]]),
        warnings=json.dumps(report["messages"]),
    )
    extra = {"frequentist": freq} if freq is not None else {}
    tree_out = _post.to_datatree(run, posterior, diag, observed=observed, constant=constant,
                                 extra_groups=extra, attrs=attrs, pointwise=pointwise)
    out.parent.mkdir(parents=True, exist_ok=True)
    before = _file_id(out)
    _PLOT_MEMO.clear()
    write_netcdf(tree_out, out)
    _remember(out, before, tree_out, kept, pars, report)
    _say(f"wrote {out}", quiet)

    summ = report["summary"]
    q = {n: [round(r[k], 4) for k in ("q5", "q50", "q95")] for n, r in summ.items()}
    q_err = {n: [_num(r[k], 2) for k in ("q5_mcse", "q50_mcse", "q95_mcse")]
             for n, r in summ.items()}
    return {
        "output": str(out),
        "model": model,
        "statistic": like.statistic,
        "walkers": run.nwalkers,
        "steps": run.nsteps,
        "steps_run": run.steps_run,
        "seed": run.seed,
        "resumed": bool(resume),
        "diagnostics": diag.to_dict(),
        "quantiles_5_50_95": q,
        "quantiles_mcse_5_50_95": q_err,
        "summary": _jsonable(summ),
        "prior_dominated": report["prior_dominated"],
        "prior_dominance": _jsonable(report["prior_dominance"]),
        "g90_by_mass": _limit_rows(lim),
        "warnings": report["messages"],
        "interpolation_max_rel_error": float(interp_attrs.get("interpolation_max_rel_error", math.nan)),
        "log_prob_evaluations": int(posterior.n_evaluations),
        "timings_s": {"physics": round(t_phys, 2), "sampling": round(run.wall_time_s, 2),
                      "total": round(time.perf_counter() - t_start, 2)},
    }


# --------------------------------------------------------------------------------------------
# plots and credible limits
# --------------------------------------------------------------------------------------------
def credible_upper_limits(log10_m, log10_g, *, box=None, n_slices: int = 20, cred: float = 0.9,
                          min_samples: int = 50, edges=None, g_prior=None,
                          ks_threshold: float = _post.PRIOR_KS_THRESHOLD) -> dict:
    """``cred`` credible upper limit on g_X in slices of log10 m_X, with its MCSE.

    Parameters
    ----------
    log10_m, log10_g : array_like, shape (walker, step) or (n,)
        Posterior draws after burn-in, in chain order (:func:`nuinfer.tasks.posterior.
        chains_from_tree`).  A 1-D array is read as one chain; stacked walkers lose the
        autocorrelation structure and give too small an MCSE.
    box : (float, float)
        Prior range of log10 m_X, cut into ``n_slices`` equal slices (unless ``edges``).
    n_slices : int
        Number of mass slices.
    cred : float
        Credibility (0.9 for 90%).
    min_samples : int
        Slices with fewer draws get NaN.
    edges : array_like, optional
        Slice edges in log10 m_X (overrides ``box``/``n_slices``); draws outside are ignored.
    g_prior : nuinfer.tasks.posterior.Parameter, optional
        The prior of ``log10_g_X``: enables the prior-dominance flags.
    ks_threshold : float
        Kolmogorov-Smirnov distance below which a slice's g_X posterior counts as its prior.

    Returns
    -------
    dict of numpy.ndarray
        ``m_lo``, ``m_hi``, ``m_center`` (geometric) [MeV], ``n_samples``; ``g_upper`` (the
        ``cred`` quantile of g_X among the draws in the slice: the credible limit conditional
        on the slice) and its Monte Carlo standard error ``g_upper_mcse`` (``g ln10`` times
        ``log10_g_upper_mcse``, the MCSE of the quantile of log10 g_X from
        :func:`~nuinfer.tasks.posterior.quantile_mcse`); ``ess`` (effective draws behind the
        limit); ``ks_to_prior`` and ``prior_dominated`` (KS distance of the slice's g_X
        posterior to the prior below ``max(ks_threshold, 2 x 0.87 / sqrt(ess))``, or the limit
        within ``PRIOR_BOUND_MCSE`` MCSE of a prior bound; False without ``g_prior``).
    """
    lm = np.asarray(log10_m, dtype=float)
    lg = np.asarray(log10_g, dtype=float)
    if lm.ndim == 1:
        lm, lg = lm[None, :], lg[None, :]
    if lm.shape != lg.shape:
        raise InvalidConfig(f"log10_m and log10_g must have the same shape; got {lm.shape} and "
                            f"{lg.shape}", key="samples")
    edges = (np.linspace(box[0], box[1], n_slices + 1) if edges is None
             else np.asarray(edges, dtype=float))
    ns = edges.size - 1
    idx = np.searchsorted(edges, lm, side="right") - 1
    idx[lm == edges[-1]] = ns - 1
    n = np.bincount(idx[(idx >= 0) & (idx < ns)], minlength=ns)
    q = np.full(ns, np.nan)
    err = np.full(ns, np.nan)
    ess = np.full(ns, np.nan)
    ks = np.full(ns, np.nan)
    dom = np.zeros(ns, dtype=bool)
    k_bound = _post.PRIOR_BOUND_MCSE
    for k in range(ns):
        if n[k] < min_samples:
            continue
        w = idx == k
        q[k], err[k], ess[k] = _post.quantile_mcse(lg, cred, where=w)
        if g_prior is not None:
            ks[k] = _post.ks_distance_to_prior(lg[w], g_prior)
            noise = _post._KS_NULL_MEAN / math.sqrt(ess[k]) if ess[k] > 0 else math.nan
            near = min(g_prior.hi - q[k], q[k] - g_prior.lo) <= k_bound * err[k]
            dom[k] = bool(ks[k] < _post._ks_cut(ks_threshold, noise) or near)
    g = 10.0 ** q
    return {"m_lo": 10.0 ** edges[:-1], "m_hi": 10.0 ** edges[1:],
            "m_center": 10.0 ** (0.5 * (edges[:-1] + edges[1:])), "n_samples": n,
            "g_upper": g, "g_upper_mcse": g * math.log(10.0) * err, "log10_g_upper": q,
            "log10_g_upper_mcse": err, "ess": ess, "ks_to_prior": ks, "prior_dominated": dom}


MCSE_RULE = (
    "quantile MCSE = half the width of the empirical-quantile image of p -+ se_F, "
    "se_F = binomial standard error of the indicator I(x <= q) with the effective sample size "
    "of that indicator (integrated autocorrelation time over the walker ensemble); "
    "MCSE of g90 = g90 ln10 x MCSE of the log10 g_X quantile")


def _stored_parameters(tree, names) -> tuple:
    """The sampled parameters of a posterior file: from its analysis when stored, else uniform
    priors on the stored ``prior_lo``/``prior_hi`` of each variable."""
    try:
        pars = parameters_from_config(_config.load(json.loads(tree.attrs["config_json"])))
        if [p.name for p in pars] == list(names):
            return pars
    except (KeyError, ValueError, TypeError, NuinferError):  # foreign config: use the attrs
        pass
    post = tree["posterior"]
    out = []
    for n in names:
        a = post[n].attrs
        lo, hi = float(a.get("prior_lo", -np.inf)), float(a.get("prior_hi", np.inf))
        if np.isfinite(lo) and np.isfinite(hi):
            out.append(_post.Parameter(n, str(a.get("latex_label", n)), "1", lo, hi))
    return tuple(out)


PRIOR_DOMINANCE_RULE = (
    f"a parameter is prior-dominated when the Kolmogorov-Smirnov distance between its marginal "
    f"posterior and its prior is below max({_post.PRIOR_KS_THRESHOLD:g}, 2 x 0.87/sqrt(ESS)) "
    f"(0.87/sqrt(ESS): the typical distance of ESS independent prior draws); a credible limit "
    f"on g_X in a mass slice is prior-dominated when the slice's g_X posterior is that close to "
    f"the prior or the limit lies within {_post.PRIOR_BOUND_MCSE:g} MCSE of a prior bound of "
    f"log10_g_X")


def _num(x, digits: int = 6):
    """A float for JSON: rounded to ``digits`` significant digits, ``None`` if not finite."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating, bool, np.bool_)):
        return _num(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _limit_rows(tab: dict, freq_g90=None) -> list:
    rows = []
    for k in range(len(tab["m_center"])):
        row = {"m_X_MeV": _num(tab["m_center"][k], 4),
               "n_samples": int(tab["n_samples"][k]),
               "g90_credible": _num(tab["g_upper"][k], 4),
               "g90_credible_mcse": _num(tab["g_upper_mcse"][k], 2),
               "ess": _num(tab["ess"][k], 3),
               "prior_dominated": bool(tab["prior_dominated"][k])}
        if freq_g90 is not None:
            row["g90_frequentist"] = _num(freq_g90[k], 4)
        rows.append(row)
    return rows


def _prior_key(p) -> tuple | None:
    """What the report's numbers depend on in a parameter's prior."""
    return None if p is None else (p.prior, p.lo, p.hi, p.mu, p.sigma)


def posterior_report(chains: dict, parameters, *, n_slices: int = 20, cred: float = 0.9,
                     _reuse: tuple | None = None) -> dict:
    """Summaries with MCSE, prior dominance and the credible limits per mass slice of a run.

    Parameters
    ----------
    chains : dict of name -> array (walker, step)
        Post-burn-in draws (:func:`nuinfer.tasks.posterior.chains_from_tree`).
    parameters : sequence of Parameter
        The sampled parameters (priors).
    _reuse : (report, parameters, n_slices, cred), optional
        Internal: a report of the very same ``chains`` arrays and the arguments it was made
        with; the parts that do not depend on what differs (the summary always, each
        parameter's prior dominance when its prior is the same, the credible limits when the
        mass and coupling priors, ``n_slices`` and ``cred`` are) are taken from it.

    Returns
    -------
    dict
        ``summary`` (:func:`nuinfer.tasks.posterior.summarize`), ``prior_dominance``
        (:func:`nuinfer.tasks.posterior.prior_dominance`), ``prior_dominated`` (names),
        ``credible_limits`` (the :func:`credible_upper_limits` table, when both log10_m_X and
        log10_g_X are sampled) and ``messages`` (warnings as text; never Python warnings).
    """
    pars = {p.name: p for p in parameters}
    old, old_pars, old_slices, old_cred = _reuse if _reuse is not None else (None, (), None, None)
    old_keys = {q.name: _prior_key(q) for q in old_pars}
    same = {n for n, p in pars.items() if n in old_keys and old_keys[n] == _prior_key(p)}
    summ = old["summary"] if old is not None else _post.summarize(chains)
    ess = {n: r["ess"] for n, r in summ.items()}
    if old is None:
        dom = _post.prior_dominance(chains, parameters, ess=ess)
    else:
        new = _post.prior_dominance(chains, [p for p in parameters if p.name not in same], ess=ess)
        dom = {p.name: old["prior_dominance"][p.name] if p.name in same else new[p.name]
               for p in parameters if p.name in chains}
    dominated = [n for n, d in dom.items() if d["prior_dominated"]]
    msgs = []
    for n in dominated:  # one line each: dominated, or (too few draws) not told apart from the prior
        ks = f"KS distance to its prior {dom[n]['ks_distance']:.3f}, Monte Carlo noise {dom[n]['ks_noise']:.3f}"
        if dom[n]["ks_noise"] > 0.5 * _post.PRIOR_KS_THRESHOLD:
            msgs.append(f"WARNING: the posterior of {n} cannot be told apart from its prior with so few "
                        f"effective draws ({ks}): quote no median or interval for it; run longer")
        else:
            msgs.append(f"WARNING: the posterior of {n} is prior-dominated ({ks}); it reflects the prior, "
                        "not the data: quote no median or interval for it")
    lim = None
    if "log10_m_X" in chains and "log10_g_X" in chains:
        pm = pars["log10_m_X"]
        if (old is not None and old["credible_limits"] is not None and old_slices == n_slices
                and old_cred == cred and {"log10_m_X", "log10_g_X"} <= same):
            lim = old["credible_limits"]
        else:
            lim = credible_upper_limits(chains["log10_m_X"], chains["log10_g_X"],
                                        box=(pm.lo, pm.hi), n_slices=n_slices, cred=cred,
                                        g_prior=pars["log10_g_X"])
        bad = lim["prior_dominated"]
        if bad.any():
            ms = ", ".join(f"{m:.3g}" for m in lim["m_center"][bad])
            msgs.append(f"WARNING: the {100 * cred:g}% credible limit on g_X is prior-dominated "
                        f"in {int(bad.sum())} of {n_slices} mass slices (m_X = {ms} MeV): "
                        "there it is set by the prior box; see bayes.prior_check")
    return {"summary": summ, "prior_dominance": dom, "prior_dominated": dominated,
            "credible_limits": lim, "messages": msgs}


def _freq_g90_at(freq: xr.Dataset | None, m) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    if freq is None or "g90" not in freq:
        return np.full(m.shape, np.nan)
    mg = freq["m_X"].values
    g = freq["g90"].values
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.interp(np.log(m), np.log(mg), np.log(np.where(g > 0, g, np.nan)),
                      left=np.nan, right=np.nan)
    return np.exp(v)


def _atomic_text(path: Path, text: str) -> Path:
    from nuinfer.io import atomic_write_text
    return atomic_write_text(path, text)


def _fmt(x) -> str:
    return "" if not np.isfinite(x) else f"{x:.4g}"


def _fmt_err(x) -> str:
    return "" if not np.isfinite(x) else f"{x:.2g}"


def _write_tables(stem: Path, tab: dict, freq_g90, meta: dict) -> tuple[Path, Path]:
    cols = ["m_lo_MeV", "m_hi_MeV", "m_center_MeV", "n_samples", "g90_credible",
            "g90_frequentist", "ratio_credible_to_frequentist", "g90_credible_mcse",
            "ess", "prior_dominated"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = tab["g_upper"] / freq_g90
    rows = [[_fmt(tab["m_lo"][k]), _fmt(tab["m_hi"][k]), _fmt(tab["m_center"][k]),
             str(int(tab["n_samples"][k])), _fmt(tab["g_upper"][k]), _fmt(freq_g90[k]),
             _fmt(ratio[k]), _fmt_err(tab["g_upper_mcse"][k]),
             "" if not np.isfinite(tab["ess"][k]) else f"{tab['ess'][k]:.0f}",
             "yes" if tab["prior_dominated"][k] else "no"] for k in range(len(tab["m_lo"]))]
    head = [f"# {k}: {v}" for k, v in meta.items()]
    csv = "\n".join(head + [",".join(cols)] + [",".join(r) for r in rows]) + "\n"
    md = [f"90% credible upper limit on g_X per mass slice ({meta['model']}, "
          f"{meta['statistic']}); frequentist: {meta['frequentist']}.", "",
          f"Samples: {meta['samples']}.", "",
          f"Monte Carlo error: {meta['mcse']}", "",
          f"Prior dominance: {meta['prior_dominance']}", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r or "-" for r in row) + " |" for row in rows]
    p_csv = _atomic_text(stem.with_name(stem.name + "_g90.csv"), csv)
    p_md = _atomic_text(stem.with_name(stem.name + "_g90.md"), "\n".join(md) + "\n")
    return p_csv, p_md


def run_plot(posterior_path, *, outdir=None, n_slices: int = 20) -> dict:
    """Figures and the credible-limit table of a posterior file.

    Writes (atomically, next to the file or in ``outdir``, named after the file's stem):

    * ``<stem>_corner.png`` -- corner plot of the sampled parameters (burn-in removed) with
      explicit 68% and 90% 2-D credible levels, 5/50/95% quantiles and titles;
    * ``<stem>_mass_coupling.png`` -- the (m_X, g_X) marginal (2-D histogram in log10) with the
      90% credible upper limit per mass slice and the frequentist 90% CL contour of the same
      analysis (threshold from the file).  No highest-density contours here: the posterior is
      flat over the allowed region, where they would trace noise (the corner plot has them);
    * ``<stem>_g90.csv`` and ``<stem>_g90.md`` -- the credible upper limit per mass slice next
      to the frequentist g90 at the slice centre.

    Parameters
    ----------
    posterior_path : str or os.PathLike
        File written by :func:`run_sample`.
    outdir : str or os.PathLike, optional
        Folder for the outputs (created if needed). Default: the file's folder.
    n_slices : int
        Number of mass slices for the credible limit.

    Returns
    -------
    dict
        Paths of the figures and tables and a small summary (``summary`` key).

    Notes
    -----
    Called on the file :func:`run_sample` of this process has just written (and that is still
    there unchanged), the data come from memory instead of being read back, together with the
    summaries already computed: the outputs are the same as from the file.
    """
    path = Path(posterior_path)
    data = _recall(path)
    if data is None:
        data = _plot_data(read_datatree(path), path)
    outdir = Path(outdir) if outdir is not None else path.parent
    outdir.mkdir(parents=True, exist_ok=True)
    return _plot(data, path, outdir / path.stem, n_slices)


#: What ``run_sample`` of this process wrote last, for ``run_plot`` of the same file (one entry:
#: ``path``, ``file_id``, ``data``); see :func:`_remember`.
_PLOT_MEMO: dict = {}


def _file_id(path) -> tuple | None:
    """Identity of the file at ``path`` (device, inode, size, mtime), ``None`` if there is none."""
    import os
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(out: Path, before, tree: xr.DataTree, kept: dict, pars, report: dict) -> None:
    """Keep what :func:`run_plot` reads from a file ``run_sample`` has just written.

    Only when the file at ``out`` is now a new one (another inode than ``before``: written and
    renamed into place, not deferred by an output group); :func:`_recall` gives it back while
    the file there is unchanged.  The data are those the file holds (attributes sanitised as
    :func:`nuinfer.io.write_netcdf` writes them) and the chains are laid out as
    :func:`_plot_data` reads them, so plotting from memory or from the file gives the same
    figures, tables and summary.
    """
    from nuinfer.io import sanitize_attrs

    after = _file_id(out)
    if after is None or (before is not None and after[:2] == before[:2]):
        return
    names = json.loads(tree.attrs["sampled_variables"])
    post = tree["posterior"]
    freq = None
    if "frequentist" in tree.children:
        freq = tree["frequentist"].to_dataset(inherit=False).copy(deep=False)
        freq.attrs = sanitize_attrs(freq.attrs)
    data = {
        "names": names,
        "chains": {n: kept[n] for n in names},
        "var_attrs": {n: sanitize_attrs(post[n].attrs) for n in names},
        "root_attrs": sanitize_attrs(tree.attrs),
        "ss_attrs": sanitize_attrs(tree["sample_stats"].attrs),
        "freq": freq,
        "pars": _stored_parameters(tree, names),  # as run_plot reads them from the file
        "reuse": (report, tuple(pars), 20, 0.9),  # report = posterior_report(kept, pars)
    }
    _PLOT_MEMO.update(path=str(out.resolve()), file_id=after, data=data)


def _recall(path: Path) -> dict | None:
    """The data :func:`_remember` kept for ``path`` if the file there is still that one."""
    if not _PLOT_MEMO or _PLOT_MEMO["path"] != str(path.resolve()):
        return None
    if _file_id(path) != _PLOT_MEMO["file_id"]:
        return None
    return _PLOT_MEMO["data"]


def _plot_data(tree: xr.DataTree, path: Path) -> dict:
    """What :func:`run_plot` needs from a posterior file (read with :func:`read_datatree`)."""
    if "posterior" not in tree.children or "sampled_variables" not in tree.attrs:
        raise DataFileError(f"{path} is not a nuinfer posterior file (no posterior group)",
                            key="posterior")
    names = json.loads(tree.attrs["sampled_variables"])
    post = tree["posterior"]
    return {
        "names": names,
        "chains": _post.chains_from_tree(tree, names),
        "var_attrs": {n: dict(post[n].attrs) for n in names},
        "root_attrs": dict(tree.attrs),
        "ss_attrs": dict(tree["sample_stats"].attrs),
        "freq": tree["frequentist"].to_dataset() if "frequentist" in tree.children else None,
        "pars": _stored_parameters(tree, names),
        "reuse": None,
    }


def _corner_figure(samples, boxes, labels, quantile_values, titles, model):
    """The corner plot of :func:`run_plot` (a figure job: module level, picklable arguments)."""
    import corner
    fig = corner.corner(samples, bins=30, range=boxes, labels=labels, levels=(0.68, 0.9),
                        quantiles=(), show_titles=False, plot_datapoints=False, fill_contours=True, smooth=0.8)
    nd = len(labels)
    for i, (qs, title) in enumerate(zip(quantile_values, titles)):
        ax = fig.axes[i * (nd + 1)]
        for q in qs:
            ax.axvline(q, ls="--", color="k", lw=1)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{model}: posterior (levels 68%, 90%; titles: median and 5-95%)", y=1.02)
    return fig


def _freq_surface(freq: xr.Dataset | None) -> dict | None:
    """What the mass-coupling figure draws of the stored frequentist scan (plain arrays)."""
    if freq is None:
        return None
    var = str(freq.attrs.get("statistic_variable", "delta_chi2"))
    d = freq[var].transpose("m_X", "g_X").values
    d = np.where(np.isfinite(d), d, np.nanmax(np.where(np.isfinite(d), d, np.nan)))
    return {"m_X": freq["m_X"].values, "g_X": freq["g_X"].values, "delta": d,
            "threshold": float(freq.attrs["threshold"]), "cl": float(freq.attrs["cl"]),
            "ndof": int(freq.attrs["ndof"]),
            "symbol": r"$\Delta\chi^2$" if var == "delta_chi2" else r"$-2\Delta\ln L$"}


def _mass_coupling_figure(log_m, log_g, box_m, box_g, m_center, g_upper, freq, model, data_txt):
    """The (m_X, g_X) marginal of :func:`run_plot` with the credible limits per mass slice and the
    frequentist contour (``freq`` from :func:`_freq_surface`) (a figure job)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    H, xe, ye = np.histogram2d(log_m, log_g, bins=50, range=[box_m, box_g])
    mesh = ax.pcolormesh(10.0 ** xe, 10.0 ** ye, np.where(H > 0, H, np.nan).T, cmap="Greys",
                         shading="flat")
    cbar = fig.colorbar(mesh, ax=ax, pad=0.02, fraction=0.05)
    cbar.set_label("posterior samples per bin (50 x 50 in log10)", fontsize=8)
    handles = [Line2D([], [], color="0.5", lw=6, alpha=0.5, label="posterior samples (2-D histogram)")]
    ok = np.isfinite(g_upper)
    if ok.any():
        ax.plot(m_center[ok], g_upper[ok], "o-", color="tab:green", ms=3, lw=1.2)
        handles.append(Line2D([], [], color="tab:green", marker="o", ms=3,
                              label="90% credible upper limit per mass slice"))
    if freq is not None:
        ax.contour(freq["m_X"], freq["g_X"], freq["delta"].T, levels=[freq["threshold"]], colors=["tab:red"],
                   linewidths=1.6)
        handles.append(Line2D([], [], color="tab:red",
                              label=f"frequentist {100 * freq['cl']:g}% CL ({freq['symbol']} = "
                                    f"{freq['threshold']:.2f}, {freq['ndof']} dof)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10.0 ** box_m[0], 10.0 ** box_m[1])
    ax.set_ylim(10.0 ** box_g[0], 10.0 ** box_g[1])
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    ax.set_title(f"{model}: posterior of ($m_X$, $g_X$) vs frequentist contour\n"
                 f"{data_txt}; frequentist threshold asymptotic (Wilks)", fontsize=9)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=2,
              frameon=False)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    return fig


def _plot(data: dict, path: Path, stem: Path, n_slices: int) -> dict:
    """Figures, tables and summary of :func:`run_plot` from :func:`_plot_data` output (the two
    figures are built by :func:`_corner_figure` and :func:`_mass_coupling_figure`, drawn by the
    active renderer's worker when there is one)."""
    from nuinfer.render import draw

    names, chains, var_attrs = data["names"], data["chains"], data["var_attrs"]
    root, ss_attrs, freq, pars = data["root_attrs"], data["ss_attrs"], data["freq"], data["pars"]
    samples = np.column_stack([chains[n].reshape(-1) for n in names])
    labels = [var_attrs[n].get("latex_label", n) for n in names]
    boxes = []
    for i, n in enumerate(names):
        a = var_attrs[n]
        lo, hi = float(a.get("prior_lo", -np.inf)), float(a.get("prior_hi", np.inf))
        if np.isfinite(lo) and np.isfinite(hi):
            boxes.append((lo, hi))
        else:
            boxes.append(tuple(np.quantile(samples[:, i], (0.0005, 0.9995))))
    model = str(root.get("model", ""))
    burn, thin = int(ss_attrs.get("burn", 0)), int(ss_attrs.get("thin", 1))
    sample_txt = (f"{samples.shape[0]} = {int(root['nwalkers'])} walkers x "
                  f"{(int(root['nsteps']) - burn + thin - 1) // thin} steps after burn-in "
                  f"{burn} ({ss_attrs.get('burn_rule', '')}), thin {thin}")

    report = posterior_report(chains, pars, n_slices=n_slices, _reuse=data["reuse"])
    summ, dom = report["summary"], report["prior_dominance"]

    # corner plot: quantile lines and "median and 5-95%" titles only where the data, not the prior,
    # speak (nuinfer.tasks.posterior.corner_annotations decides, per parameter)
    ann = _post.corner_annotations(summ, dom, labels=dict(zip(names, labels)))
    titles = {n: ann[n]["title"] for n in names}
    p_corner = draw(stem.with_name(stem.name + "_corner.png"), _corner_figure, samples, boxes, labels,
                    [list(ann[n]["quantile_values"]) for n in names], [titles[n] for n in names], model)

    # credible upper limits per mass slice
    tab = report["credible_limits"]
    fg = _freq_g90_at(freq, tab["m_center"])
    if freq is not None:
        cl, ndof, thr = float(freq.attrs["cl"]), int(freq.attrs["ndof"]), float(freq.attrs["threshold"])
        var = str(freq.attrs.get("statistic_variable", "delta_chi2"))
        freq_txt = (f"{100 * cl:g}% CL profile scan, {var} >= {thr:.3f} "
                    f"(scipy.stats.chi2.ppf({cl:g}, {ndof}), {freq.attrs.get('scan_mode', '')})")
    else:
        freq_txt = "not stored"
    meta = {"model": model, "statistic": str(root.get("statistic", "")),
            "frequentist": freq_txt, "samples": sample_txt, "file": str(path),
            "mcse": MCSE_RULE, "prior_dominance": PRIOR_DOMINANCE_RULE}
    p_csv, p_md = _write_tables(stem, tab, fg, meta)

    # (m_X, g_X) marginal
    im, ig = names.index("log10_m_X"), names.index("log10_g_X")
    try:
        obs = json.loads(root.get("config_json", "{}")).get("statistics", {}).get("data", "asimov")
    except ValueError:
        obs = "asimov"
    data_txt = (str(root["data_set"]) if root.get("data_set") else  # real-data posteriors name their data set
                "Asimov SM data" if obs == "asimov" else f"observed counts {Path(str(obs)).name}")
    p_mg = draw(stem.with_name(stem.name + "_mass_coupling.png"), _mass_coupling_figure,
                samples[:, im], samples[:, ig], boxes[im], boxes[ig], tab["m_center"], tab["g_upper"],
                _freq_surface(freq), model, data_txt)

    summary = {
        "model": model,
        "n_samples": int(samples.shape[0]),
        "burn": burn,
        "thin": thin,
        "frequentist": freq_txt,
        "g90_by_mass": _limit_rows(tab, fg),
        "posterior_summary": _jsonable(summ),
        "prior_dominated": report["prior_dominated"],
        "prior_dominance": _jsonable(dom),
        "corner_titles": titles,
        "warnings": report["messages"],
    }
    return {"corner": str(p_corner), "mass_coupling": str(p_mg), "table_csv": str(p_csv),
            "table_md": str(p_md), "summary": summary}


# --------------------------------------------------------------------------------------------
# prior sensitivity
# --------------------------------------------------------------------------------------------
#: The prior bounds ``prior_check`` moves by default.
PRIOR_BOUNDS = ("log10_g_X.lo", "log10_g_X.hi", "log10_m_X.lo", "log10_m_X.hi")
#: A credible limit "moves" when its shift exceeds this many combined MCSE.
PRIOR_SHIFT_SIGNIFICANCE = 3.0


def prior_check(analysis, shift_dex: float = 0.5, *, bounds=PRIOR_BOUNDS, directions=(-1, 1),
                model: str | None = None, walkers: int | None = None, steps: int | None = None,
                seed: int | None = None, n_slices: int = 20, cred: float = 0.9,
                outdir=None, progress: bool = False) -> dict:
    """Prior-sensitivity run: move each prior bound and report how the credible limits move.

    The baseline posterior and one posterior per (bound, direction) are sampled with
    :func:`run_sample` (same analysis, model, walkers, steps and seed: common random numbers).
    In every variant the 90% credible upper limit on g_X is computed in the *baseline* mass
    slices (slices not wholly inside a variant's mass box are left out) and compared with the
    baseline: ``rel_shift = g90_variant / g90_baseline - 1`` with its MCSE from the two limits'
    MCSEs, ``ln10 (1 + rel_shift) sqrt(mcse_v^2 + mcse_b^2)`` (in dex).

    Parameters
    ----------
    analysis : str, os.PathLike, dict or nuinfer.spec.xenon.Analysis
    shift_dex : float
        How far each bound moves, in decades (default 0.5).
    bounds : sequence of str
        Which bounds to move, among ``log10_g_X.lo``, ``log10_g_X.hi``, ``log10_m_X.lo`` and
        ``log10_m_X.hi`` (``[posterior]`` keys).
    directions : sequence of {-1, +1}
        Move each bound down (-1) and/or up (+1).  A move that empties the box is skipped.
    model, walkers, steps, seed : optional
        As for :func:`run_sample`.
    n_slices, cred : int, float
        Mass slices and credibility of the limits.
    outdir : str or os.PathLike, optional
        Keep the posterior files there (``prior_check_base.nc``, ``prior_check_<bound>
        <+-shift>.nc``); default: a temporary folder, removed afterwards.
    progress : bool
        Pass progress output of the runs through to stderr.

    Returns
    -------
    dict
        JSON-able: ``shift_dex``, ``cred``, ``rule``, ``m_center_MeV`` (slices),
        ``baseline`` (``box``, ``g90``, ``g90_mcse``, ``prior_dominated``) and ``variants``: one
        entry per moved bound with ``name``, ``bound``, ``shift_dex``, ``box``, ``g90``,
        ``g90_mcse``, ``rel_shift``, ``rel_shift_mcse``, ``moved`` (|shift| >
        :data:`PRIOR_SHIFT_SIGNIFICANCE` combined MCSE), ``max_abs_rel_shift`` and
        ``n_slices_moved``; ``skipped`` lists moves that were not run.

    Examples
    --------
    ``prior_check("models/bayes_eves_vector.toml", 0.5)`` samples 9 posteriors (baseline and
    4 bounds x 2 directions).
    """
    import tempfile

    shift = float(shift_dex)
    if not (math.isfinite(shift) and shift > 0):
        raise UnphysicalInput(f"must be a finite number of decades > 0; got {shift_dex!r}",
                              key="--prior-check")
    for b in bounds:
        if b not in PRIOR_BOUNDS:
            raise InvalidConfig(f"unknown prior bound {b!r}; choose among "
                                f"{', '.join(PRIOR_BOUNDS)}", key="prior_check.bounds")
    dirs = []
    for d in directions:
        if d not in (-1, 1):
            raise InvalidConfig(f"directions must be -1 or +1; got {d!r}", key="prior_check")
        dirs.append(int(d))
    ana = _analysis(analysis)
    over = {f"posterior.{k}": v for k, v in
            (("walkers", walkers), ("steps", steps), ("seed", seed)) if v is not None}
    if over:
        ana = _replace(ana, **over)
    model = _pick_model(ana, model)
    base_pars = parameters_from_config(ana)
    pm = base_pars[0]
    edges = np.linspace(pm.lo, pm.hi, n_slices + 1)

    def limits(a, path):
        run_sample(a, path, model=model, progress=progress, log_likelihood=False)
        tree = read_datatree(path)
        ch = _post.chains_from_tree(tree, ["log10_m_X", "log10_g_X"])
        pars = parameters_from_config(a)
        lim = credible_upper_limits(ch["log10_m_X"], ch["log10_g_X"], edges=edges, cred=cred,
                                    g_prior=pars[1])
        inside = (edges[:-1] >= pars[0].lo - 1e-12) & (edges[1:] <= pars[0].hi + 1e-12)
        for k in ("log10_g_upper", "log10_g_upper_mcse", "g_upper", "g_upper_mcse"):
            lim[k] = np.where(inside, lim[k], np.nan)
        return lim

    with tempfile.TemporaryDirectory(prefix="nuinfer_prior_check_") as tmp:
        folder = Path(outdir) if outdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        base = limits(ana, folder / "prior_check_base.nc")
        variants, skipped = [], []
        for b in bounds:
            par, end = b.split(".")
            cur = ana.cfg["posterior"][par]
            for d in dirs:
                name = f"{b}{'+' if d > 0 else '-'}{shift:g}"
                box = {"lo": float(cur["lo"]), "hi": float(cur["hi"])}
                box[end] += d * shift
                if not box["lo"] < box["hi"]:
                    skipped.append({"name": name, "reason": "the box would be empty"})
                    continue
                _say(f"prior check: {name} ({par} in [{box['lo']:g}, {box['hi']:g}])",
                     not progress)
                a = _replace(ana, **{f"posterior.{b}": box[end]})
                fname = "prior_check_" + name.replace(".", "_").replace("+", "_up").replace(
                    "-", "_down") + ".nc"
                lim = limits(a, folder / fname)
                delta = lim["log10_g_upper"] - base["log10_g_upper"]
                err = np.hypot(lim["log10_g_upper_mcse"], base["log10_g_upper_mcse"])
                rel = 10.0 ** delta - 1.0
                rel_err = math.log(10.0) * 10.0 ** delta * err
                with np.errstate(invalid="ignore"):
                    moved = np.abs(delta) > PRIOR_SHIFT_SIGNIFICANCE * err
                fin = np.isfinite(rel)
                variants.append({
                    "name": name, "bound": b, "shift_dex": d * shift, "box": {par: box},
                    "g90": _jsonable(lim["g_upper"]), "g90_mcse": _jsonable(lim["g_upper_mcse"]),
                    "rel_shift": _jsonable(rel), "rel_shift_mcse": _jsonable(rel_err),
                    "moved": [bool(v) for v in (moved & fin)],
                    "max_abs_rel_shift": _num(np.max(np.abs(rel[fin]))) if fin.any() else None,
                    "n_slices_moved": int((moved & fin).sum()),
                    "file": str(folder / fname) if outdir is not None else None,
                })
    return {
        "shift_dex": shift, "cred": cred, "model": model,
        "rule": (f"each prior bound moved by -+{shift:g} decades, one at a time, same seed; "
                 f"{100 * cred:g}% credible upper limit on g_X in the baseline mass slices; "
                 "rel_shift = g90_variant / g90_baseline - 1 with MCSE from both limits' MCSE; "
                 f"'moved' = |shift| > {PRIOR_SHIFT_SIGNIFICANCE:g} MCSE"),
        "m_center_MeV": _jsonable(base["m_center"]),
        "baseline": {"box": {p.name: {"lo": p.lo, "hi": p.hi} for p in base_pars[:2]},
                     "g90": _jsonable(base["g_upper"]), "g90_mcse": _jsonable(base["g_upper_mcse"]),
                     "prior_dominated": [bool(v) for v in base["prior_dominated"]],
                     "file": str(folder / "prior_check_base.nc") if outdir is not None else None},
        "variants": variants,
        "skipped": skipped,
    }

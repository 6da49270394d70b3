"""Bayesian workflow behind ``nuinfer sample`` and ``nuinfer plot`` (usable from Python too).

* :func:`run_sample` -- posterior over ``(log10 m_X, log10 g_X, a)`` for one model of an
  analysis, sampled with emcee and written atomically as ArviZ-layout NetCDF (see
  :mod:`nuinfer.infer.posterior`); ``resume=True`` continues a file to a *total* number of steps.
* :func:`run_plot` -- corner plot, the (m_X, g_X) marginal with the frequentist 90% CL contour
  of the same analysis, and the 90% credible upper limit on g_X in mass slices (CSV + Markdown).

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

from . import config as _config
from .exceptions import DataFileError, InvalidConfig
from .infer import posterior as _post
from .io import provenance_attrs, read_datatree, write_netcdf

__all__ = ["credible_upper_limits", "run_plot", "run_sample"]

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
    from .physics.mediators import canonical_model
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
    from .infer.contours import contour
    from .workflows import scan_model
    pg = pars[1]
    box = _replace(ana, **{"scan.g_X.lo": 10.0 ** pg.lo, "scan.g_X.hi": 10.0 ** pg.hi,
                         "scan.g_X.n": FREQ_G_POINTS, "scan.g_X.scale": "log",
                         "statistics.profiler": "analytic"})
    scan = scan_model(box, model, fm=fm, templates=templates)
    res = contour(scan)
    var = scan.attrs["statistic_variable"]
    g90 = getattr(res, "g90", None)
    if g90 is None:  # older name of the same quantity
        g90 = res.g_limit
    keep = ("statistic", "statistic_variable", "cl", "ndof", "threshold", "threshold_rule",
            "scan_mode", "sigma_sys", "sigma_bg", "profiler", "data_source", "dropped_bins")
    ds = xr.Dataset(
        {var: scan[var].transpose("m_X", "g_X"),
         "g90": (("m_X",), np.asarray(g90.values, dtype=float), {
             "units": "1", "long_name": f"lowest excluded g_X at {100 * float(scan.attrs['cl']):g}% CL "
                                        f"({var} >= {float(scan.attrs['threshold']):.4f})"})},
        attrs={k: scan.attrs[k] for k in keep if k in scan.attrs},
    )
    ds[var].attrs = {"units": "1", "long_name": scan[var].attrs.get("long_name", var)}
    ds = ds.drop_vars([c for c in ds.coords if c not in ("m_X", "g_X")])
    ds.attrs["description"] = ("frequentist counterpart: profile scan of the same analysis "
                               "(nuinfer.workflows.scan_model) on the template mass grid")
    return ds


def run_sample(analysis, out, *, walkers: int | None = None, steps: int | None = None,
               seed: int | None = None, resume: bool = False, progress: bool = True,
               model: str | None = None, log_likelihood: bool | None = None) -> dict:
    """Sample the posterior of one model of an analysis and write it as NetCDF.

    Parameters
    ----------
    analysis : str, os.PathLike, dict or nuinfer.config.Analysis
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

    Returns
    -------
    dict
        JSON-able summary: output path, model, walkers, steps, seed, diagnostics (tau,
        acceptance, burn-in), interpolation error, posterior quantiles and timings.

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
        from .workflows import observed_signal
        data = observed_signal(ana, r_sm)
        st = ana.cfg["statistics"]
        like = _post.TemplateLikelihood(x, T[1], T[2], r_sm, data=data, statistic=st["statistic"],
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
                "long_name": "observed counts" + (" (Asimov: SM expectation)"
                                                  if data is None else "")})},
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
    )
    extra = {"frequentist": freq} if freq is not None else {}
    tree_out = _post.to_datatree(run, posterior, diag, observed=observed, constant=constant,
                                 extra_groups=extra, attrs=attrs, pointwise=pointwise)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_netcdf(tree_out, out)
    _say(f"wrote {out}", quiet)

    samples, names = _post.stacked_samples(tree_out)
    q = {n: [round(float(v), 4) for v in np.quantile(samples[:, i], (0.05, 0.5, 0.95))]
         for i, n in enumerate(names)}
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
        "interpolation_max_rel_error": float(interp_attrs.get("interpolation_max_rel_error", math.nan)),
        "log_prob_evaluations": int(posterior.n_evaluations),
        "timings_s": {"physics": round(t_phys, 2), "sampling": round(run.wall_time_s, 2),
                      "total": round(time.perf_counter() - t_start, 2)},
    }


# --------------------------------------------------------------------------------------------
# plots and credible limits
# --------------------------------------------------------------------------------------------
def credible_upper_limits(log10_m, log10_g, *, box, n_slices: int = 20, cred: float = 0.9,
                          min_samples: int = 50) -> dict:
    """``cred`` credible upper limit on g_X in slices of log10 m_X (conditional on the slice).

    Parameters
    ----------
    log10_m, log10_g : array_like
        Posterior samples (burn-in removed).
    box : (float, float)
        Prior range of log10 m_X, cut into ``n_slices`` equal slices.
    n_slices : int
        Number of mass slices.
    cred : float
        Credibility (0.9 for 90%).
    min_samples : int
        Slices with fewer samples get NaN.

    Returns
    -------
    dict of numpy.ndarray
        ``m_lo``, ``m_hi``, ``m_center`` (geometric) [MeV], ``n_samples`` and ``g_upper``
        (the ``cred`` quantile of g_X among the samples in the slice).
    """
    lm = np.asarray(log10_m, dtype=float)
    lg = np.asarray(log10_g, dtype=float)
    edges = np.linspace(box[0], box[1], n_slices + 1)
    idx = np.clip(np.searchsorted(edges, lm, side="right") - 1, 0, n_slices - 1)
    n = np.bincount(idx, minlength=n_slices)
    up = np.full(n_slices, np.nan)
    for k in range(n_slices):
        if n[k] >= min_samples:
            up[k] = 10.0 ** np.quantile(lg[idx == k], cred)
    return {"m_lo": 10.0 ** edges[:-1], "m_hi": 10.0 ** edges[1:],
            "m_center": 10.0 ** (0.5 * (edges[:-1] + edges[1:])), "n_samples": n, "g_upper": up}


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
    from .io import atomic_write_text
    return atomic_write_text(path, text)


def _fmt(x) -> str:
    return "" if not np.isfinite(x) else f"{x:.4g}"


def _write_tables(stem: Path, tab: dict, freq_g90, meta: dict) -> tuple[Path, Path]:
    cols = ["m_lo_MeV", "m_hi_MeV", "m_center_MeV", "n_samples", "g90_credible",
            "g90_frequentist", "ratio_credible_to_frequentist"]
    ratio = tab["g_upper"] / freq_g90
    rows = [[_fmt(tab["m_lo"][k]), _fmt(tab["m_hi"][k]), _fmt(tab["m_center"][k]),
             str(int(tab["n_samples"][k])), _fmt(tab["g_upper"][k]), _fmt(freq_g90[k]),
             _fmt(ratio[k])] for k in range(len(tab["m_lo"]))]
    head = [f"# {k}: {v}" for k, v in meta.items()]
    csv = "\n".join(head + [",".join(cols)] + [",".join(r) for r in rows]) + "\n"
    md = [f"90% credible upper limit on g_X per mass slice ({meta['model']}, "
          f"{meta['statistic']}); frequentist: {meta['frequentist']}.", "",
          f"Samples: {meta['samples']}.", "",
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
    """
    import corner
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .plotting import save

    path = Path(posterior_path)
    tree = read_datatree(path)
    if "posterior" not in tree.children or "sampled_variables" not in tree.attrs:
        raise DataFileError(f"{path} is not a nuinfer posterior file (no posterior group)",
                            key="posterior")
    outdir = Path(outdir) if outdir is not None else path.parent
    outdir.mkdir(parents=True, exist_ok=True)
    stem = outdir / path.stem
    samples, names = _post.stacked_samples(tree)
    post = tree["posterior"].to_dataset()
    ss = tree["sample_stats"].to_dataset()
    freq = tree["frequentist"].to_dataset() if "frequentist" in tree.children else None
    labels = [post[n].attrs.get("latex_label", n) for n in names]
    boxes = []
    for i, n in enumerate(names):
        a = post[n].attrs
        lo, hi = float(a.get("prior_lo", -np.inf)), float(a.get("prior_hi", np.inf))
        if np.isfinite(lo) and np.isfinite(hi):
            boxes.append((lo, hi))
        else:
            boxes.append(tuple(np.quantile(samples[:, i], (0.0005, 0.9995))))
    model = str(tree.attrs.get("model", ""))
    burn, thin = int(ss.attrs.get("burn", 0)), int(ss.attrs.get("thin", 1))
    sample_txt = (f"{samples.shape[0]} = {int(tree.attrs['nwalkers'])} walkers x "
                  f"{(int(tree.attrs['nsteps']) - burn + thin - 1) // thin} steps after burn-in "
                  f"{burn} ({ss.attrs.get('burn_rule', '')}), thin {thin}")

    # corner plot
    fig = corner.corner(samples, bins=30, range=boxes, labels=labels, levels=(0.68, 0.9),
                        quantiles=(0.05, 0.5, 0.95), show_titles=True, title_fmt=".2g",
                        plot_datapoints=False, fill_contours=True, smooth=0.8)
    fig.suptitle(f"{model}: posterior (levels 68%, 90%)", y=1.02)
    p_corner = save(fig, stem.with_name(stem.name + "_corner.png"))

    # credible upper limits per mass slice
    im, ig = names.index("log10_m_X"), names.index("log10_g_X")
    tab = credible_upper_limits(samples[:, im], samples[:, ig], box=boxes[im], n_slices=n_slices)
    fg = _freq_g90_at(freq, tab["m_center"])
    if freq is not None:
        cl, ndof, thr = float(freq.attrs["cl"]), int(freq.attrs["ndof"]), float(freq.attrs["threshold"])
        var = str(freq.attrs.get("statistic_variable", "delta_chi2"))
        freq_txt = (f"{100 * cl:g}% CL profile scan, {var} >= {thr:.3f} "
                    f"(scipy.stats.chi2.ppf({cl:g}, {ndof}), {freq.attrs.get('scan_mode', '')})")
    else:
        freq_txt = "not stored"
    meta = {"model": model, "statistic": str(tree.attrs.get("statistic", "")),
            "frequentist": freq_txt, "samples": sample_txt, "file": str(path)}
    p_csv, p_md = _write_tables(stem, tab, fg, meta)

    # (m_X, g_X) marginal
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    H, xe, ye = np.histogram2d(samples[:, im], samples[:, ig], bins=50, range=[boxes[im], boxes[ig]])
    ax.pcolormesh(10.0 ** xe, 10.0 ** ye, np.where(H > 0, H, np.nan).T, cmap="Greys",
                  shading="flat")
    handles = [Line2D([], [], color="0.5", lw=6, alpha=0.5, label="posterior samples (2-D histogram)")]
    ok = np.isfinite(tab["g_upper"])
    if ok.any():
        ax.plot(tab["m_center"][ok], tab["g_upper"][ok], "o-", color="tab:green", ms=3, lw=1.2)
        handles.append(Line2D([], [], color="tab:green", marker="o", ms=3,
                              label="90% credible upper limit per mass slice"))
    if freq is not None:
        var = str(freq.attrs.get("statistic_variable", "delta_chi2"))
        d = freq[var].transpose("m_X", "g_X").values
        d = np.where(np.isfinite(d), d, np.nanmax(np.where(np.isfinite(d), d, np.nan)))
        ax.contour(freq["m_X"].values, freq["g_X"].values, d.T, levels=[thr], colors=["tab:red"],
                   linewidths=1.6)
        handles.append(Line2D([], [], color="tab:red",
                              label=f"frequentist {100 * cl:g}% CL ($\\Delta\\chi^2$ = {thr:.2f}, "
                                    f"{ndof} dof)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10.0 ** boxes[im][0], 10.0 ** boxes[im][1])
    ax.set_ylim(10.0 ** boxes[ig][0], 10.0 ** boxes[ig][1])
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    ax.set_title(f"{model}: posterior of ($m_X$, $g_X$) vs frequentist contour", fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both", lw=0.3)
    p_mg = save(fig, stem.with_name(stem.name + "_mass_coupling.png"))

    summary = {
        "model": model,
        "n_samples": int(samples.shape[0]),
        "burn": burn,
        "thin": thin,
        "frequentist": freq_txt,
        "g90_by_mass": [
            {"m_X_MeV": float(f"{m:.4g}"),
             "g90_credible": None if not np.isfinite(g) else float(f"{g:.4g}"),
             "g90_frequentist": None if not np.isfinite(f) else float(f"{f:.4g}")}
            for m, g, f in zip(tab["m_center"], tab["g_upper"], fg)],
    }
    return {"corner": str(p_corner), "mass_coupling": str(p_mg), "table_csv": str(p_csv),
            "table_md": str(p_md), "summary": summary}

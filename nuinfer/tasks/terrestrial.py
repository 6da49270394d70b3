"""Terrestrial analyses: COHERENT CsI (pi-DAR) and Dresden-II-like (reactor) data-driven fits.

Every function takes a terrestrial analysis (TOML path, mapping or
:class:`~nuinfer.spec.terrestrial.TerrestrialAnalysis`), builds the forward models at the
quenching-morphing nodes, fits with :mod:`nuinfer.tasks.datafit`, writes NetCDF atomically with
provenance and returns a JSON-able summary.  Figures follow the review's Figs. 1-3: the
Delta chi2 profile of sin^2 theta_W (:func:`plot_sin2w_profiles`), the sin^2 theta_W
determinations against the low-energy SM value (:func:`plot_sin2w_summary`) and the
(mass, coupling) regions at 1, 2, 3 sigma for the light vector, light scalar and dipole portal
per quenching choice (:func:`plot_region_grid`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer.spec import terrestrial as tcfg
from nuinfer.tasks import datafit as df
from nuinfer.io import provenance_attrs, write_netcdf
from nuinfer.tasks.xenon import with_limits

#: masses at which limits are tabulated in summaries [MeV]
REFERENCE_MASSES_MEV = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: SM sin^2 theta_W at low energy (MS-bar, Q -> 0; the paper preset value) and at the Z pole (PDG 2022)
SIN2W_LOW_ENERGY = 0.2387
SIN2W_Z_POLE = (91187.6, 0.23122)
_SIN2W_PROBES = (0.0, 0.25, 0.5)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


def _analysis(a, overrides=None, data_dir=None) -> tcfg.TerrestrialAnalysis:
    return tcfg.load(a, overrides, data_dir=data_dir)


# --------------------------------------------------------------------------------------------
# forward models and templates
# --------------------------------------------------------------------------------------------
class Models:
    """Forward models of one analysis at the quenching-morphing nodes, and their templates."""

    def __init__(self, ana: tcfg.TerrestrialAnalysis):
        self.ana = ana
        self.nodes = ana.qf_nodes()
        self.fms = [ana.forward_model(qf_scale=1.0 + a) for a in self.nodes]
        self.k0 = int(np.argmin(np.abs(self.nodes)))

    @property
    def nominal(self):
        return self.fms[self.k0]

    def sm_signal(self) -> np.ndarray:
        return self.nominal.sm_spectrum()["total"].values

    def sin2w_templates(self) -> np.ndarray:
        """(K, 3, bin): counts = U0 + s U1 + s^2 U2 exactly (Q_W is linear in s = sin^2 theta_W)."""
        s = np.asarray(_SIN2W_PROBES)
        V = np.vander(s, 3, increasing=True)
        out = []
        for fm in self.fms:
            R = np.stack([replace(fm, sin2w=float(v)).sm_spectrum()["total"].values for v in s])
            out.append(np.linalg.solve(V, R))
        return np.stack(out)

    def mediator_templates(self, model: str, masses) -> list:
        return [fm.templates(model, masses) for fm in self.fms]

    def dipole_templates(self, masses) -> list:
        from nuinfer.physics.dipole import dipole_templates
        return [dipole_templates(fm, masses) for fm in self.fms]


def prediction_dataset(ana: tcfg.TerrestrialAnalysis, models: Models, data: df.BinnedData) -> xr.Dataset:
    """SM prediction per source, background and data in the analysis bins."""
    sm = models.nominal.sm_spectrum()
    ds = xr.Dataset(
        {"counts": (("source", "bin"), sm["counts"].values, sm["counts"].attrs),
         "sm_signal": (("bin",), sm["total"].values, {"units": "events", "long_name": "SM CEvNS prediction"}),
         "background": (("bin",), data.background, {"units": "events", "long_name": "expected background"}),
         "observed_counts": (("bin",), data.observed, {"units": "events", "long_name": "observed counts (or Asimov)"})},
        coords={"source": ("source", list(sm["source"].values), {"long_name": "neutrino source"}), **data.coords()},
        attrs={k: v for k, v in sm.attrs.items() if k not in ("g_X", "m_X_MeV", "model")},
    )
    if data.sigma is not None:
        ds["sigma_obs"] = (("bin",), data.sigma, {"units": "events", "long_name": "per-bin uncertainty of the data"})
    ds.attrs.update(sm_total=float(sm["total"].sum()), data_total=float(data.observed.sum()),
                    background_total=float(data.background.sum()), binning_units=data.units,
                    exposure_kg_day=float(ana.cfg["detector"]["mass_kg"]) * float(ana.cfg["detector"]["live_days"]))
    return ds


def full_range_prediction(ana: tcfg.TerrestrialAnalysis) -> dict:
    """SM total over ``[report].full_range`` (e.g. all of 0-50 PE) and the published comparison."""
    rep = ana.cfg["report"]
    out = {}
    if "full_range" in rep:
        lo, hi = rep["full_range"]
        fm = ana.forward_model(edges_units=[lo, hi])
        sm = fm.sm_spectrum()
        out["sm_total_full_range"] = float(sm["total"].sum())
        out["sm_per_source_full_range"] = {str(s): float(v) for s, v in
                                           zip(sm["source"].values, sm["counts"].sum("bin").values)}
        out["full_range"] = [float(lo), float(hi)]
    if "published_sm_total" in rep:
        pub = float(rep["published_sm_total"])
        out["published_sm_total"] = pub
        if "published_sm_total_error" in rep:
            out["published_sm_total_error"] = float(rep["published_sm_total_error"])
        if "sm_total_full_range" in out:
            out["ratio_to_published"] = out["sm_total_full_range"] / pub
    if "reference_spectrum" in rep:
        ref = np.loadtxt(ana.resolve(rep["reference_spectrum"]), ndmin=2)
        out["reference_spectrum_total"] = float(ref[:, -1].sum())
        if "sm_total_full_range" in out:
            out["ratio_to_reference_spectrum"] = out["sm_total_full_range"] / out["reference_spectrum_total"]
    return out


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------
def fit_sin2w(ana, models: Models, data: df.BinnedData) -> xr.Dataset:
    """Delta statistic profile of sin^2 theta_W (review Fig. 1 analogue)."""
    st = ana.cfg["statistics"]
    U = models.sin2w_templates()
    ds = df.scan_parameter(U, ana.grid("sin2_theta_W"), data, ana.nuisances(), statistic=st["statistic"],
                           cl=st["cl"], eta_nodes=models.nodes, reference=ana.cfg["sin2w_reference"])
    ds.attrs.update(task="sin2w", q_typical_MeV=typical_momentum_transfer(models.nominal))
    return ds


def fit_mediator(ana, models: Models, data: df.BinnedData, model: str) -> xr.Dataset:
    """Profiled (m_X, g_X) surface for a light mediator (universal couplings)."""
    st = ana.cfg["statistics"]
    T = models.mediator_templates(model, ana.grid("m_X_MeV"))
    ds = df.scan_mass_coupling(T, ana.grid("g_X"), data, ana.nuisances(), statistic=st["statistic"], cl=st["cl"],
                               ndof=st["ndof"], eta_nodes=models.nodes, attrs={"task": model, "model": model})
    return ds


def fit_dipole(ana, models: Models, data: df.BinnedData) -> xr.Dataset:
    """Profiled (m4, mu_nu) surface for the sterile-neutrino dipole portal (m_X = m4, g_X = mu)."""
    st = ana.cfg["statistics"]
    T = models.dipole_templates(ana.grid("m4_MeV"))
    ds = df.scan_mass_coupling(T, ana.grid("mu_nu"), data, ana.nuisances(), statistic=st["statistic"], cl=st["cl"],
                               ndof=st["ndof"], eta_nodes=models.nodes,
                               attrs={"task": "dipole", "model": "dipole", "coupling": "mu_nu [Bohr magnetons]",
                                      "mass": "m4 [MeV]"})
    ds["m_X"].attrs["long_name"] = "sterile-neutrino mass m4"
    ds["g_X"].attrs["long_name"] = "transition magnetic moment mu_nu [mu_B]"
    return ds


def typical_momentum_transfer(fm) -> float:
    """SM-event-weighted mean momentum transfer sqrt(2 m_N E_r) [MeV] of a forward model."""
    W = fm.node_weights("SM")
    w = sum(W[s][0] for s in fm.sources) * fm.response().sum(axis=1)
    q = np.sqrt(fm.q2())
    return float(np.sum(w * q) / np.sum(w)) if np.sum(w) > 0 else 0.0


def g90_table(scan_ds: xr.Dataset, masses=REFERENCE_MASSES_MEV) -> dict:
    """Lowest excluded coupling at reference masses (reuses :func:`nuinfer.tasks.xenon.g90_table`)."""
    from nuinfer.tasks.xenon import g90_table as _g90
    return _g90(scan_ds, masses)


def analyse(ana, *, tasks=None, quiet: bool = False) -> dict:
    """Run the prediction and every task of one analysis (no variants). Returns datasets by name."""
    t0 = time.perf_counter()
    models = Models(ana)
    data = ana.binned_data(models.sm_signal())
    out = {"prediction": prediction_dataset(ana, models, data)}
    for task in (tasks or ana.tasks):
        _say(f"fit: {ana.name}: {task}", quiet)
        if task == "sin2w":
            out["sin2w"] = fit_sin2w(ana, models, data)
        elif task == "dipole":
            out["dipole"] = fit_dipole(ana, models, data)
        else:
            out[task] = fit_mediator(ana, models, data, task)
    out["prediction"].attrs["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return out


def _summary(ana, results: dict) -> dict:
    pred = results["prediction"]
    s = {"sm_total": pred.attrs["sm_total"], "data_total": pred.attrs["data_total"],
         "background_total": pred.attrs["background_total"],
         "sm_per_source": {str(k): float(v) for k, v in zip(pred["source"].values, pred["counts"].sum("bin").values)}}
    if "sin2w" in results:
        a = results["sin2w"].attrs
        s["sin2w"] = {"best_fit": a["best_fit"], "interval_1sigma": [a["interval_1sigma_lo"], a["interval_1sigma_hi"]],
                      f"interval_{round(100 * a['cl'])}cl": [a["interval_cl_lo"], a["interval_cl_hi"]],
                      "statistic_min": a["statistic_min"], "delta_at_reference": a.get("delta_at_reference"),
                      "q_typical_MeV": a.get("q_typical_MeV")}
    for k, ds in results.items():
        if k in ("prediction", "sin2w"):
            continue
        s[k] = {"g90": g90_table(ds), "best_fit_is_sm": ds.attrs["best_fit_is_sm"],
                "cl": ds.attrs["cl"], "ndof": ds.attrs["ndof"], "threshold": ds.attrs["threshold"]}
    return s


def run_fit(analysis, out, *, overrides=None, data_dir=None, tasks=None, plot: bool = True,
            quiet: bool = False, extra_variants: dict | None = None) -> dict:
    """Run every variant and task of an analysis; write ``out`` (NetCDF groups ``/<variant>/<task>``).

    Parameters
    ----------
    analysis : str, dict or TerrestrialAnalysis
    out : path
        NetCDF output (a data tree); figures are written next to it (``<stem>_*.png``).
    overrides : dict, optional
        Dotted-key overrides applied before the variants.
    data_dir : str, optional
        Folder of the user data files (overrides ``[data].dir``).
    tasks : list, optional
        Subset of tasks to run.
    extra_variants : dict, optional
        More ``{name: {dotted overrides}}`` variants (e.g. a user quenching table).

    Returns
    -------
    dict
        JSON-able summary per variant (SM counts, sin^2 theta_W fit, g90 tables) and file names.
    """
    ana = _analysis(analysis, overrides, data_dir)
    if extra_variants:
        raw = dict(ana.raw)
        base = ana.cfg["variants"] or {"nominal": {}}
        raw["variants"] = {**base, **extra_variants}
        ana = tcfg.TerrestrialAnalysis(tcfg.validate(raw), ana.path, raw, ana.data_dir, ana.family)
    t0 = time.perf_counter()
    groups = {}
    summary = {"name": ana.name, "variants": {}}
    allres = {}
    for vname, va in ana.variants().items():
        res = analyse(va, tasks=tasks, quiet=quiet)
        allres[vname] = res
        summary["variants"][vname] = _summary(va, res)
        for k, ds in res.items():
            if "m_X" in ds.dims and "g_X" in ds.dims:  # (mass, coupling) surfaces: with g90 and the intervals
                ds = with_limits(ds)
            groups[f"/{vname}/{k}"] = ds
    fr = full_range_prediction(ana)
    if fr:
        summary["full_range"] = fr
    root = xr.Dataset(attrs={**provenance_attrs(config=json.loads(ana.to_json())), "analysis": ana.name,
                             "variants": json.dumps(list(allres)), "summary_json": json.dumps(summary, default=float)})
    tree = xr.DataTree.from_dict({"/": root, **groups})
    out = Path(out)
    write_netcdf(tree, out)
    summary["output"] = str(out)
    if plot:
        summary["plots"] = [str(p) for p in make_plots(ana, allres, out)]
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    _say(f"wrote {out}", quiet)
    return summary


# --------------------------------------------------------------------------------------------
# posteriors (emcee) on the data-driven likelihood
# --------------------------------------------------------------------------------------------
def task_signal(ana, task: str, models: Models) -> tuple:
    """Sampled physics parameters and the signal callable of a task (for posteriors and point fits).

    Returns ``(parameters, signal)`` with ``signal(phys) -> (K, P, bin)`` at the quenching nodes.
    ``task``: ``"sin2w"`` (sin^2 theta_W, uniform on the scan range), a mediator model or
    ``"dipole"`` (log10 mass and coupling, uniform on the scan box; templates interpolated in
    log10 m), or ``"ngi"``: simultaneous S, V, T with ``(log10 g_S, log10 m_S, log10 g_V,
    log10 m_V, log10 g_T, log10 m_T)`` evaluated exactly by :class:`~nuinfer.physics.ngi.NGIModel`.
    """
    from nuinfer.tasks.posterior import Parameter
    if task == "sin2w":
        r = ana.cfg["scan"]["sin2_theta_W"]
        phys = (Parameter("sin2_theta_W", r"$\sin^2\theta_W$", "1", float(r["lo"]), float(r["hi"])),)
        return phys, df.polynomial_signal(models.sin2w_templates())
    if task == "ngi":
        from nuinfer.physics.ngi import NGIModel
        mr, gr = ana.cfg["scan"]["m_X_MeV"], ana.cfg["scan"]["g_X"]
        phys = tuple(Parameter(f"log10_{p}_{x}", rf"$\log_{{10}} {p}_{x}$", "MeV" if p == "m" else "1",
                               float(np.log10(r["lo"])), float(np.log10(r["hi"])), scale="log10")
                     for x in ("S", "V", "T") for p, r in (("g", gr), ("m", mr)))
        ngis = [NGIModel(fm) for fm in models.fms]

        def signal(th):
            th = np.atleast_2d(np.asarray(th, float))
            kw = {}
            for j, x in enumerate(("S", "V", "T")):
                kw[f"g_{x}"] = 10.0 ** th[:, 2 * j]
                kw[f"m_{x}"] = 10.0 ** th[:, 2 * j + 1]
            return np.stack([n.counts(**kw) for n in ngis])
        return phys, signal
    if task == "dipole":
        mr, gr = ana.cfg["scan"]["m4_MeV"], ana.cfg["scan"]["mu_nu"]
        T = models.dipole_templates(np.geomspace(mr["lo"], mr["hi"], max(int(mr["n"]), 40)))
        names = (r"$\log_{10}(m_4/\mathrm{MeV})$", r"$\log_{10}\mu_\nu/\mu_B$")
    else:
        mr, gr = ana.cfg["scan"]["m_X_MeV"], ana.cfg["scan"]["g_X"]
        T = models.mediator_templates(task, np.geomspace(mr["lo"], mr["hi"], max(int(mr["n"]), 40)))
        names = (r"$\log_{10}(m_X/\mathrm{MeV})$", r"$\log_{10} g_X$")
    phys = (Parameter("log10_m_X", names[0], "MeV", float(np.log10(mr["lo"])), float(np.log10(mr["hi"])),
                      scale="log10"),
            Parameter("log10_g_X", names[1], "1", float(np.log10(gr["lo"])), float(np.log10(gr["hi"])),
                      scale="log10"))
    return phys, df.mass_coupling_signal(T)


def profile_points(ana, task: str, phys, *, models: Models | None = None) -> df.FitResult:
    """Profile the nuisances at arbitrary physics points of a task (the generic frequentist path).

    ``phys`` has shape (P, n_phys) in the columns of :func:`task_signal` (e.g. the six log10 NGI
    parameters); returns the profiled statistic per point.
    """
    ana = _analysis(ana)
    models = models or Models(ana)
    data = ana.binned_data(models.sm_signal())
    _, signal = task_signal(ana, task, models)
    return df.profile_nuisances(signal(np.atleast_2d(np.asarray(phys, float))), data, ana.nuisances(),
                                eta_nodes=models.nodes, statistic=ana.cfg["statistics"]["statistic"],
                                s_ref=models.sm_signal())


def build_posterior(ana, task: str | None = None, *, models: Models | None = None):
    """:class:`~nuinfer.tasks.posterior.Posterior` of a task with the nuisances sampled.

    Physics parameters and signals as in :func:`task_signal`; nuisances with their Gaussian priors
    (:func:`nuinfer.tasks.datafit.nuisance_parameters`).  Returns ``(posterior, data)``.
    """
    from nuinfer.tasks.posterior import Posterior
    task = task or ana.cfg["posterior"]["task"]
    models = models or Models(ana)
    data = ana.binned_data(models.sm_signal())
    nus = ana.nuisances()
    phys, signal = task_signal(ana, task, models)
    like = df.DataFitLikelihood(signal, len(phys), data, nus, statistic=ana.cfg["statistics"]["statistic"],
                                s_ref=models.sm_signal(), eta_nodes=models.nodes)
    post = Posterior(phys + df.nuisance_parameters(nus), like, pointwise=like.pointwise)
    return post, data


def run_posterior(analysis, out, *, task=None, walkers=None, steps=None, seed=None, overrides=None, data_dir=None,
                  quiet: bool = False) -> dict:
    """Sample a task's posterior with emcee and write the ArviZ-layout NetCDF."""
    from nuinfer.tasks.posterior import diagnostics, run_sampler, to_datatree
    ana = _analysis(analysis, overrides, data_dir)
    p = ana.cfg["posterior"]
    task = task or p["task"]
    post, data = build_posterior(ana, task)
    run = run_sampler(post, nwalkers=int(walkers or p["walkers"]), nsteps=int(steps or p["steps"]),
                      seed=int(p["seed"] if seed is None else seed), progress=not quiet)
    diag = diagnostics(run, burn=p.get("burn"), thin=int(p["thin"]))
    observed = xr.Dataset({"counts": (("bin",), data.observed, {"units": "events", "long_name": "observed counts"})},
                          coords=data.coords())
    constant = xr.Dataset({"background": (("bin",), data.background, {"units": "events",
                                                                       "long_name": "expected background"})},
                          coords=data.coords())
    tree = to_datatree(run, post, diag, observed=observed, constant=constant,
                       attrs={**provenance_attrs(config=json.loads(ana.to_json()), seed=run.seed), "task": task,
                              "likelihood": f"datafit {ana.cfg['statistics']['statistic']}"})
    out = Path(out)
    write_netcdf(tree, out)
    # quantiles with their Monte Carlo standard errors (from the effective sample size), from the
    # post-burn-in draws in chain order as stored in the file
    from nuinfer.tasks.posterior import chains_from_tree, summarize
    full = summarize(chains_from_tree(tree, post.names), probs=(0.05, 0.16, 0.5, 0.84, 0.95))
    keys = {"median": "q50", "q5": "q5", "q16": "q16", "q84": "q84", "q95": "q95"}
    summ = {n: {**{k: r[q] for k, q in keys.items()},
                **{f"{k}_mcse": r[q + "_mcse"] for k, q in keys.items()},
                "mean": r["mean"], "mean_mcse": r["mean_mcse"], "sd": r["sd"], "ess": r["ess"]}
            for n, r in full.items()}
    return {"output": str(out), "task": task, "diagnostics": diag.to_dict(), "summary": summ}


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------
def preset_path(name: str) -> Path:
    """Path of a preset in the repository's ``models/`` folder (e.g. ``"coherent_csi2017"``)."""
    from nuinfer.tasks.xenon import models_dir
    return models_dir() / (name if name.endswith(".toml") else f"{name}.toml")


def run_coherent(out, *, preset: str = "coherent_csi2017", data_dir=None, overrides=None, tasks=None,
                 plot: bool = True, quiet: bool = False) -> dict:
    """The COHERENT CsI 2017 worked analysis (SM prediction, sin^2 theta_W, V and S limits)."""
    return run_fit(preset_path(preset), out, overrides=overrides, data_dir=data_dir, tasks=tasks, plot=plot,
                   quiet=quiet)


def run_dresden(out, *, preset: str = "dresden2_asimov", data_dir=None, overrides=None, tasks=None,
                quenching_table=None, plot: bool = True, quiet: bool = False) -> dict:
    """The Dresden-II-like reactor analysis (Asimov unless user data are given) per quenching choice.

    ``quenching_table``: a user file (E_nr keV, Q_f), e.g. the iron-filter curve, added as the
    variant ``"user_table"``.
    """
    extra = None
    if quenching_table is not None:
        extra = {"user_table": {"detector.quenching": "table", "detector.table": str(Path(quenching_table).resolve())}}
    return run_fit(preset_path(preset), out, overrides=overrides, data_dir=data_dir, tasks=tasks, plot=plot,
                   quiet=quiet, extra_variants=extra)


# --------------------------------------------------------------------------------------------
# plots (review Figs. 1-3)
# --------------------------------------------------------------------------------------------
def plot_sin2w_profiles(profiles: dict, *, ax=None, title: str = ""):
    """Delta statistic vs sin^2 theta_W for several analyses (review Fig. 1)."""
    from nuinfer.plotting import plt
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for i, (label, ds) in enumerate(profiles.items()):
        var = ds.attrs["statistic_variable"]
        x = ds[ds.attrs["parameter"]].values
        ax.plot(x, ds[var].values, color=f"C{i}", label=f"{label}: {ds.attrs['best_fit']:.3f}"
                f" [{ds.attrs['interval_1sigma_lo']:.3f}, {ds.attrs['interval_1sigma_hi']:.3f}]")
    for lvl, txt in ((1.0, r"1$\sigma$"), (4.0, r"2$\sigma$"), (9.0, r"3$\sigma$")):
        ax.axhline(lvl, color="0.5", lw=0.7, ls=":")
        ax.text(ax.get_xlim()[1], lvl, txt, fontsize=7, va="bottom", ha="right", color="0.4")
    ax.axvline(SIN2W_LOW_ENERGY, color="k", lw=0.8, ls="--", label=f"SM low energy ({SIN2W_LOW_ENERGY})")
    ax.set_ylim(0, 12)
    ax.set_xlabel(r"$\sin^2\theta_W$")
    ax.set_ylabel(r"$\Delta\chi^2$")
    ax.legend(fontsize=7, title="best fit [1$\\sigma$]", title_fontsize=7)
    ax.set_title(title)
    ax.grid(alpha=0.3, lw=0.3)
    return fig if fig is not None else ax.figure


def plot_sin2w_summary(profiles: dict, *, ax=None, title: str = ""):
    """sin^2 theta_W determinations (1 sigma) at their typical momentum transfer (review Fig. 2).

    Shown with the SM low-energy value and the Z-pole value for orientation; the RGE running curve
    itself is not computed.
    """
    from nuinfer.plotting import plt
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for i, (label, ds) in enumerate(profiles.items()):
        a = ds.attrs
        q = max(float(a.get("q_typical_MeV", 1.0)), 1e-3) * (1.0 + 0.08 * i)
        lo, hi, b = a["interval_1sigma_lo"], a["interval_1sigma_hi"], a["best_fit"]
        ax.errorbar([q], [b], yerr=[[b - lo], [hi - b]], fmt="o", color=f"C{i}", capsize=3, label=label)
    ax.axhline(SIN2W_LOW_ENERGY, color="k", lw=0.8, ls="--", label=r"SM, $Q\to 0$ ($\overline{\rm MS}$)")
    ax.plot([SIN2W_Z_POLE[0]], [SIN2W_Z_POLE[1]], "k*", label="Z pole (PDG)")
    ax.set_xscale("log")
    ax.set_xlabel(r"$Q$ [MeV]")
    ax.set_ylabel(r"$\sin^2\theta_W$")
    ax.legend(fontsize=7)
    ax.set_title(title)
    ax.grid(alpha=0.3, lw=0.3, which="both")
    return fig if fig is not None else ax.figure


def plot_region_grid(rows: dict, *, title: str = ""):
    """Excluded regions at 1, 2, 3 sigma (2 dof) in (mass, coupling): rows = models, columns = variants.

    ``rows`` maps a row label to ``{column label: scan dataset}`` (review Fig. 3).
    """
    from nuinfer.plotting import plt
    nr = len(rows)
    cols = sorted({c for r in rows.values() for c in r}, key=lambda c: list(next(iter(rows.values()))).index(c)
                  if c in next(iter(rows.values())) else 99)
    nc = max(len(cols), 1)
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 3.4 * nr), squeeze=False)
    for i, (rlabel, per) in enumerate(rows.items()):
        for j, clabel in enumerate(cols):
            ax = axes[i, j]
            ds = per.get(clabel)
            if ds is None:
                ax.set_visible(False)
                continue
            var = ds.attrs["statistic_variable"]
            d = ds[var].transpose("m_X", "g_X").values
            m, g = ds["m_X"].values, ds["g_X"].values
            lv = json.loads(ds.attrs["thresholds_1_2_3_sigma"])
            dd = np.where(np.isfinite(d), d, 1e6)
            ax.contourf(m, g, dd.T, levels=[lv[0], lv[1], lv[2], np.inf], colors=["#d8b9ef", "#a970d6", "#6a2c9c"],
                        alpha=0.85)
            ax.contour(m, g, dd.T, levels=lv, colors="k", linewidths=0.5)
            if not ds.attrs.get("best_fit_is_sm", 1):
                ax.plot([ds.attrs["best_fit_m_X_MeV"]], [ds.attrs["best_fit_g_X"]], "*", color="navy", ms=9)
            ax.set_xscale("log")
            ax.set_yscale("log")
            dip = ds.attrs.get("model") == "dipole"
            ax.set_xlabel(r"$m_4$ [MeV]" if dip else r"$m_X$ [MeV]")
            ax.set_ylabel(r"$\mu_\nu$ [$\mu_B$]" if dip else rf"$g_{{{rlabel}}}$")
            ax.set_title(f"{rlabel} - {clabel}", fontsize=9)
            ax.grid(alpha=0.3, lw=0.3, which="both")
    fig.suptitle(title + r"  (excluded at 1, 2, 3$\sigma$, 2 dof)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_spectrum(pred: xr.Dataset, *, ax=None, title: str = "", reference=None):
    """Data (with error bars) against the SM prediction plus background, per bin."""
    from nuinfer.plotting import plt
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.5))
    lo, hi = pred["E_lo"].values, pred["E_hi"].values
    x = 0.5 * (lo + hi)
    tot = pred["sm_signal"].values + pred["background"].values
    ax.step(np.r_[lo, hi[-1]], np.r_[tot, tot[-1]], where="post", color="k", label="SM prediction + background")
    for s in pred["source"].values:
        y = pred["counts"].sel(source=s).values
        ax.step(np.r_[lo, hi[-1]], np.r_[y, y[-1]], where="post", lw=0.8, ls="--", label=str(s))
    err = pred["sigma_obs"].values if "sigma_obs" in pred else np.sqrt(np.maximum(pred["observed_counts"].values, 1.0))
    ax.errorbar(x, pred["observed_counts"].values, yerr=err, fmt="o", color="tab:red", ms=3, label="data")
    if reference is not None:
        ax.plot(reference[:, 0], reference[:, 1], "s", mfc="none", color="tab:blue", ms=4,
                label="published SM expectation")
    ax.set_xlabel(f"energy [{pred['E_lo'].attrs.get('units', '')}]")
    ax.set_ylabel("events per bin")
    ax.legend(fontsize=7)
    ax.set_title(title)
    ax.grid(alpha=0.3, lw=0.3)
    return fig if fig is not None else ax.figure


def make_plots(ana, allres: dict, out: Path) -> list[Path]:
    """Figures of a :func:`run_fit` run next to ``out``."""
    from nuinfer.plotting import save
    out = Path(out)
    stem = out.with_suffix("")
    paths = []
    for vname, res in allres.items():
        ref = None
        rep = ana.cfg["report"]
        if "reference_spectrum" in rep:
            try:
                ref = np.loadtxt(ana.resolve(rep["reference_spectrum"]), ndmin=2)
            except OSError:
                ref = None
        paths.append(save(plot_spectrum(res["prediction"], title=f"{ana.name}: {vname}", reference=ref),
                          Path(f"{stem}_{vname}_spectrum.png")))
    prof = {v: r["sin2w"] for v, r in allres.items() if "sin2w" in r}
    if prof:
        paths.append(save(plot_sin2w_profiles(prof, title=ana.name), Path(f"{stem}_sin2w.png")))
        paths.append(save(plot_sin2w_summary(prof, title=ana.name), Path(f"{stem}_sin2w_summary.png")))
    rows = {}
    for v, r in allres.items():
        for k, ds in r.items():
            if k in ("prediction", "sin2w"):
                continue
            rows.setdefault(k, {})[v] = ds
    if rows:
        paths.append(save(plot_region_grid(rows, title=ana.name), Path(f"{stem}_regions.png")))
    return paths


def review_figures(outdir="outputs", *, coherent_data_dir=None, quenching_table=None, quick: bool = False,
                   quiet: bool = False) -> dict:
    """Run the COHERENT and Dresden-II-like analyses and draw the review's Figs. 1-3 together.

    Writes ``coherent_csi2017.nc``, ``dresden2.nc`` (plus their own figures) and
    ``review_fig1_sin2w_profiles.png`` (Delta chi2 of sin^2 theta_W: COHERENT data and the
    Dresden-II-like Asimov per quenching choice), ``review_fig2_sin2w.png`` (the 1 sigma
    determinations at their momentum transfer) and ``review_fig3_regions.png`` (light vector,
    light scalar and dipole portal at 1, 2, 3 sigma per quenching choice) into ``outdir``.
    ``quick`` uses coarse grids.
    """
    from nuinfer.io import read_datatree
    from nuinfer.plotting import save
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    over_c = {"scan.m_X_MeV.n": 21, "scan.g_X.n": 41, "scan.sin2_theta_W.n": 81} if quick else None
    over_d = ({"scan.m_X_MeV.n": 17, "scan.g_X.n": 41, "scan.sin2_theta_W.n": 81, "scan.m4_MeV.n": 14,
               "scan.mu_nu.n": 31} if quick else None)
    coh = run_coherent(outdir / "coherent_csi2017.nc", data_dir=coherent_data_dir, overrides=over_c, quiet=quiet)
    dre = run_dresden(outdir / "dresden2.nc", overrides=over_d, quenching_table=quenching_table, quiet=quiet)
    tc = read_datatree(outdir / "coherent_csi2017.nc")
    td = read_datatree(outdir / "dresden2.nc")
    prof = {"COHERENT CsI 2017 (data)": tc["nominal/sin2w"].to_dataset()}
    rows: dict = {}
    for v in json.loads(td.attrs["variants"]):
        prof[f"Dresden-II-like Asimov, {v}"] = td[f"{v}/sin2w"].to_dataset()
        for k in ("V", "S", "dipole"):
            if k in td[v].children:
                rows.setdefault(k, {})[v] = td[f"{v}/{k}"].to_dataset()
    paths = [save(plot_sin2w_profiles(prof, title=r"$\sin^2\theta_W$ (review Fig. 1 analogue)"),
                  outdir / "review_fig1_sin2w_profiles.png"),
             save(plot_sin2w_summary(prof, title=r"$\sin^2\theta_W$ at low $Q$ (review Fig. 2 analogue)"),
                  outdir / "review_fig2_sin2w.png")]
    if rows:
        paths.append(save(plot_region_grid(rows, title="Dresden-II-like Asimov (review Fig. 3 analogue)"),
                          outdir / "review_fig3_regions.png"))
    return {"coherent": coh, "dresden": dre, "figures": [str(p) for p in paths]}

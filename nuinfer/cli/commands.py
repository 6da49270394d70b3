"""The commands of ``nuinfer``: one function per task, each accepting every analysis family for
which the task makes sense (:mod:`nuinfer.spec`) and refusing the others with a one-line message.

Every command validates everything before any work: the analysis file, the options, a memory
estimate of the largest arrays (:mod:`nuinfer.spec.limits`) and its output paths
(:func:`nuinfer.io.check_writable`; the default ``outputs/`` is created, a missing folder given
with ``-o`` is not).  The outputs of one command are then written together
(:func:`nuinfer.io.output_group`: all replaced at the end, or none; the lock of every output is
held for the whole run, so a second run writing the same file fails at once).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from nuinfer import io, spec
from nuinfer.exceptions import ConfigError, InvalidConfig
from nuinfer.spec.limits import estimate_floor, estimate_terrestrial, estimate_xenon, require_memory

_OUT_KEY = "--output-file"


def _out_path(args, default: str) -> Path:
    """The NetCDF output of a command, checked before any work (the default folder is created)."""
    given = getattr(args, "output_file", None)
    p = Path(given or default)
    if p.suffix != ".nc":
        raise ConfigError(f"output file {str(p)!r} must end in .nc", key=_OUT_KEY)
    io.check_writable(p, key=_OUT_KEY, create_parent=not given)
    return p


def _outdir(path, given: bool, key: str = "--outdir") -> Path:
    """An output folder: must be a directory (created if it is the default)."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{str(d)!r} is not a directory; give a folder", key=key)
    io.check_writable(d / "report.md", key=key, create_parent=not given or d.exists())
    return d


def _with(out: Path, *suffixes: str) -> list[Path]:
    """``out`` and the files next to it: ``".png"`` replaces the suffix, ``"_g90.csv"`` extends the stem."""
    paths = [out]
    for s in suffixes:
        paths.append(out.with_suffix(s) if s.startswith(".") else out.with_name(out.stem + s))
    return paths


@contextlib.contextmanager
def _group(paths):
    """Write the outputs of one command together (locks held for the whole block)."""
    with io.output_group(paths, key=_OUT_KEY, check=False):
        yield


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    print(f"nuinfer: warning: {msg}", file=sys.stderr, flush=True)


def _print(res) -> int:
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


# ----------------------------------------------------------------------------- family helpers
def _xenon(path, overrides=None):
    from nuinfer.spec import xenon as config
    return config.load(path, overrides)


def _xenon_memory(ana, command: str) -> None:
    with spec.translated(ana.family):
        require_memory(estimate_xenon(ana.cfg, command))


def _terrestrial(path, data_dir, command: str, preset: bool = False):
    from nuinfer.spec import terrestrial as tcfg
    ana = tcfg.load(path, data_dir=data_dir)
    with spec.translated(ana.family):
        require_memory(estimate_terrestrial(ana.cfg, command))
        for va in ana.variants().values():  # variants are validated here, before any work
            require_memory(estimate_terrestrial(va.cfg, command))
    return ana


def _terrestrial_outputs(ana, out: Path, extra_variants=()) -> list[Path]:
    """The NetCDF and every figure ``run_fit`` may write next to it."""
    stem = str(out.with_suffix(""))
    names = list(ana.cfg["variants"] or ["nominal"]) + list(extra_variants)
    paths = [out] + [Path(f"{stem}_{v}_spectrum.png") for v in names]
    paths += [Path(f"{stem}{s}.png") for s in ("_sin2w", "_sin2w_summary", "_regions")]
    return paths


def _terrestrial_tasks(ana, given, key: str) -> list[str] | None:
    """Check ``--task``/``--model`` names against the analysis (canonical model names)."""
    if not given:
        return None
    from nuinfer.physics.mediators import canonical_model
    out = []
    for t in given:
        name = t
        if t not in ("sin2w", "dipole", "ngi"):
            try:
                name = canonical_model(t)
            except InvalidConfig:
                name = None
        if name is None or name not in ana.tasks:
            raise ConfigError(f"{t!r} is not a task of {ana.name}; its tasks are {', '.join(ana.tasks)} "
                              "(signal.models)", key=key)
        out.append(name)
    return out


# ----------------------------------------------------------------------------- commands
def cmd_inspect(args) -> int:
    fam = spec.require(args.analysis, "inspect")
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        ana = tw._analysis(args.analysis, None, args.data_dir)
        models = tw.Models(ana)
        sm = models.sm_signal()
        return _print({"name": ana.name, "family": fam, "tasks": ana.tasks, "supports": list(spec.TASKS[fam]),
                       "target": ana.cfg["detector"]["target"], "bins": int(sm.size),
                       "binning_units": ana.cfg["binning"]["units"], "sm_total": float(sm.sum())})
    if fam == "xenonnt":
        from nuinfer.tasks import xenonnt
        return _print(xenonnt.inspect(args.analysis))
    if fam == "floor":
        from nuinfer.tasks import floor as floor
        cfg = floor.load_floor_config(args.analysis)
        fm = floor.forward_model(cfg)
        sm = fm.sm_spectrum()
        return _print({"name": cfg["name"], "family": fam, "supports": list(spec.TASKS[fam]),
                       "scenarios": list(cfg["scenarios"]),
                       "sm_counts_per_tonne_year_per_source": {str(s): float(v) for s, v in
                                                               sm["counts"].sum("bin").to_series().items()},
                       "sm_total_per_tonne_year": float(sm["total"].sum())})
    from nuinfer.spec import xenon as config
    ana = config.load(args.analysis)
    fm = ana.forward_model()
    sm = fm.sm_spectrum()
    summary = {
        "name": ana.name,
        "family": fam,
        "supports": list(spec.TASKS[fam]),
        "process": ana.process,
        "models": ana.models,
        "target": fm.target.name,
        "exposure_tonne_year": fm.exposure_tonne_year,
        "bins": [float(fm.binning.edges[0]), float(fm.binning.edges[-1]), fm.binning.nbins],
        "sm_counts_per_source": {str(s): float(v) for s, v in sm["counts"].sum("bin").to_series().items()},
        "sm_total": float(sm["total"].sum()),
    }
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def cmd_spectrum(args) -> int:
    if spec.require(args.analysis, "spectrum") == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        return _print(tw.run_fit(args.analysis, _out_path(args, "outputs/spectrum.nc"), data_dir=args.data_dir,
                                 tasks=[], plot=not args.no_plot, quiet=args.quiet))
    from nuinfer.tasks import paper as workflows
    out = _out_path(args, "outputs/spectrum.nc")
    ds, png = workflows.run_spectrum(args.analysis, out, plot=not args.no_plot, quiet=args.quiet)
    totals = {m: float(ds["total_model"].sel(model=m).sum()) for m in ds["model"].values}
    print(json.dumps({"output": str(out), "plot": str(png) if png else None,
                      "sm_total": float(ds["total"].sum()), "model_totals": totals}, indent=2, sort_keys=True))
    return 0


def cmd_contour(args) -> int:
    fam = spec.require(args.analysis, "contour")
    out = _out_path(args, "outputs/scan.nc")
    if fam == "xenonnt":
        from nuinfer.tasks import xenonnt
        return _print(xenonnt.run_contour(args.analysis, out, models=[args.model] if args.model else None,
                                          plot=not args.no_plot, quiet=args.quiet))
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        ana = tw._analysis(args.analysis, None, args.data_dir)
        tasks = [t for t in ana.tasks if t != "sin2w"]
        if args.model:
            tasks = [args.model]
        if not tasks:
            raise ConfigError(f"{args.analysis} has no (m_X, g_X) task; its tasks are {ana.tasks} "
                              "(use `nuinfer profile` for sin2w)", key="tasks")
        return _print(tw.run_fit(args.analysis, out, data_dir=args.data_dir, tasks=tasks,
                                 plot=not args.no_plot, quiet=args.quiet))
    from nuinfer.tasks import paper as workflows
    overrides = {}
    if args.statistic:
        overrides["statistics.statistic"] = args.statistic
    if args.profiler:
        overrides["statistics.profiler"] = args.profiler
    if args.ndof:
        overrides["statistics.ndof"] = args.ndof
    if args.grid is not None:
        overrides["scan.m_X_MeV.n"] = args.grid
        overrides["scan.g_X.n"] = args.grid
    if args.model:
        overrides["models"] = [args.model]
    res = workflows.run_contour(args.analysis, out, overrides=overrides, plot=not args.no_plot,
                                quiet=args.quiet)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_sample(args) -> int:
    out = _out_path(args, "outputs/posterior.nc")
    fam = spec.require(args.analysis, "sample")
    if fam == "xenonnt":
        from nuinfer.tasks import xenonnt
        return _print(xenonnt.run_sample(args.analysis, out, model=args.model, walkers=args.walkers or 32,
                                         steps=args.steps or 2000, seed=1 if args.seed is None else args.seed,
                                         quiet=args.quiet))
    if fam == "terrestrial":
        from nuinfer.tasks import terrestrial as tw
        return _print(tw.run_posterior(args.analysis, out, task=args.model, walkers=args.walkers, steps=args.steps,
                                       seed=args.seed, data_dir=args.data_dir, quiet=args.quiet))
    from nuinfer.tasks import bayes as bayes
    res = bayes.run_sample(args.analysis, out, walkers=args.walkers, steps=args.steps, seed=args.seed,
                               resume=args.resume, progress=not args.quiet, model=args.model)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_plot(args) -> int:
    from nuinfer.tasks import bayes as bayes
    res = bayes.run_plot(args.posterior, outdir=args.outdir)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_compare(args) -> int:
    spec.require(args.analysis, "compare")
    from nuinfer.tasks import paper as workflows
    out = _out_path(args, "outputs/compare.nc")
    res = workflows.run_compare(args.analysis, args.vary, out, model=args.model, quiet=args.quiet,
                                grid=args.grid)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_reproduce(args) -> int:
    from nuinfer.tasks import paper as workflows
    t0 = time.perf_counter()
    res = workflows.reproduce(args.outdir, quick=args.quick, quiet=args.quiet, only=args.only)
    res["wall_time_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_profile(args) -> int:
    """One-parameter profile (sin^2 theta_W; the 8B flux; the neutrino magnetic moment) of an analysis."""
    if spec.require(args.analysis, "profile") == "xenonnt":
        from nuinfer.tasks import xenonnt
        return _print(xenonnt.run_profile(args.analysis, _out_path(args, "outputs/profile.nc"),
                                          plot=not args.no_plot, quiet=args.quiet))
    from nuinfer.tasks import terrestrial as tw
    return _print(tw.run_fit(args.analysis, _out_path(args, "outputs/profile.nc"), data_dir=args.data_dir,
                             tasks=["sin2w"], plot=not args.no_plot, quiet=args.quiet))


def cmd_fit(args) -> int:
    spec.require(args.analysis, "fit")
    from nuinfer.tasks import terrestrial as tw
    return _print(tw.run_fit(args.analysis, _out_path(args, "outputs/fit.nc"), data_dir=args.data_dir,
                             tasks=args.task or None, plot=not args.no_plot, quiet=args.quiet))


def cmd_coherent(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    return _print(tw.run_coherent(_out_path(args, "outputs/coherent_csi2017.nc"), preset=args.preset,
                                  data_dir=args.data_dir, tasks=args.task or None, plot=not args.no_plot,
                                  quiet=args.quiet))


def cmd_dresden(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    return _print(tw.run_dresden(_out_path(args, "outputs/dresden2.nc"), preset=args.preset, data_dir=args.data_dir,
                                 tasks=args.task or None, quenching_table=args.quenching_table,
                                 plot=not args.no_plot, quiet=args.quiet))


def cmd_review_figures(args) -> int:
    from nuinfer.tasks import terrestrial as tw
    return _print(tw.review_figures(args.outdir, coherent_data_dir=args.data_dir,
                                    quenching_table=args.quenching_table, quick=args.quick, quiet=args.quiet))


def cmd_floor(args) -> int:
    spec.require(args.analysis, "floor")
    from nuinfer.tasks.floor import run_floor
    return _print(run_floor(args.analysis, _out_path(args, "outputs/floor.nc"), quick=args.quick,
                            quiet=args.quiet, plot=not args.no_plot))
